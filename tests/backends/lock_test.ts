// Repository locks with real CLI processes on a local directory, on S3 (s3rver) and over SSH
// (sshd): pushes of one source wait for each other and never fork its chain or upload anything
// twice, with one index or with two (two machines); pushes of other sources go on; --no-wait
// fails with one line; stale locks are ignored, reported and removed by `n2s unlock`; an
// exclusive lock holds pushes and pulls back until it is released. A lock held by the test
// itself keeps the pushes waiting, so that they are waiting at once, whatever the timing.

import assert from "node:assert/strict";
import { hostname } from "node:os";
import { openBackend } from "../../lib/backends/open.ts";
import { readAll } from "../../lib/backends/backend.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { findPackEntries } from "../../lib/format/pack.ts";
import { listManifests, readManifest } from "../../lib/repository/manifest.ts";
import {
  acquireLock,
  conflicts,
  type LockHandle,
  type LockKind,
  type LockRecord,
} from "../../lib/repository/lock.ts";
import { openRepository, type Repository } from "../../lib/repository/repository.ts";
import { KEY_CONTEXT } from "../../lib/format/container.ts";
import { lockKey } from "../../lib/repository/layout.ts";
import { CLI_PATH, type CliRun, n2s, n2sOk } from "../helpers/cli.ts";
import { tempDir, writeTree } from "../helpers/fs.ts";
import { startS3 } from "../servers/s3.ts";
import { startSshd } from "../servers/sshd.ts";

const PASS = "lock test passphrase";
const HOST = hostname();

/** A CLI process running in the background, whose stderr can be waited on line by line. */
interface Running {
  /** Resolves with the first stderr line that matches; rejects if the process ends first. */
  stderrLine(re: RegExp): Promise<string>;
  done: Promise<CliRun>;
}

function spawnN2s(args: string[], env: Record<string, string>): Running {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI_PATH, ...args],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  let ended = false;
  const waiters: { re: RegExp; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  const settle = () => {
    for (const w of [...waiters]) {
      const line = stderr.split("\n").find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      } else if (ended) {
        waiters.splice(waiters.indexOf(w), 1);
        w.reject(new Error(`n2s ${args.join(" ")} ended without printing ${w.re}:\n${stderr}`));
      }
    }
  };
  const readErr = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += text;
      settle();
    }
  })();
  const stdout = new Response(child.stdout).text();
  const done = (async () => {
    const [status, out] = await Promise.all([child.status, stdout, readErr]);
    ended = true;
    settle();
    return { code: status.code, stdout: out, stderr };
  })();
  return {
    stderrLine(re) {
      const p = new Promise<string>((resolve, reject) => waiters.push({ re, resolve, reject }));
      settle();
      return p;
    },
    done,
  };
}

/** Where a test repository lives and what the CLI needs to reach it. */
interface Target {
  location(name: string): string;
  env: Record<string, string>;
}

/** Opens the repository at `location` in this process, as a second client would. */
async function openRepo(target: Target, location: string): Promise<Repository> {
  const backend = await openBackend(location, { env: { ...Deno.env.toObject(), ...target.env } });
  return await openRepository(backend, await denoSuite(), PASS);
}

/** The ids of every stored blob, loose or in a pack, with repeats. */
async function storedBlobIds(repo: Repository): Promise<string[]> {
  const ids: string[] = [];
  for await (const b of repo.listBlobs()) ids.push(b.id);
  for await (const p of repo.listPacks()) {
    for (const e of findPackEntries(await repo.readPack(p.id))) ids.push(e.blobId);
  }
  return ids.sort();
}

/** The manifest headers of one source, as stored in the repository. */
async function chainOf(repo: Repository, source: string) {
  const out = [];
  for (const id of await listManifests(repo)) {
    const { header } = await readManifest(repo, id);
    if (header.source === source) out.push(header);
  }
  return out;
}

/** A tree of `n` small files, and a copy of it (mtimes kept) with one file more. */
function twoTrees(root: string, n: number): { a: string; b: string; files: number } {
  const files: Record<string, string> = {};
  for (let i = 0; i < n; i++) files[`d${i % 4}/f${i}.txt`] = `content of file ${i}\n`.repeat(i + 1);
  writeTree(`${root}/a`, files);
  const cp = new Deno.Command("cp", { args: ["-a", `${root}/a`, `${root}/b`] }).outputSync();
  assert.ok(cp.success);
  writeTree(`${root}/b`, { "extra.txt": "only in b\n" });
  return { a: `${root}/a`, b: `${root}/b`, files: n + 1 };
}

const holderLine = (what: string) =>
  new RegExp(
    `${what} test \\(pid ${Deno.pid} on ${HOST.replaceAll(".", "\\.")}, user \\S+, since `,
  );

/**
 * Two pushes of one source from two trees (the second one file larger) wait for a lock the test
 * holds, then run: whichever goes first, the other's changeset has it as parent, and every file
 * was uploaded once.
 */
async function twoPushesOfOneSource(target: Target, twoIndexes: boolean): Promise<void> {
  using tmp = tempDir();
  const loc = target.location(`one-source-${twoIndexes ? "two" : "one"}-${crypto.randomUUID()}`);
  const env = { N2S_PASSPHRASE: PASS, ...target.env };
  const index1 = `${tmp.path}/machine1.sqlite`;
  const index2 = twoIndexes ? `${tmp.path}/machine2.sqlite` : index1;
  await n2sOk(["init", "--repo", loc, "--index", index1], env);
  const trees = twoTrees(tmp.path, 40);
  const source = "shared";
  const repo = await openRepo(target, loc);
  try {
    const held = await acquireLock(repo, { kind: "source", source, command: "test" });
    const args = ["--repo", loc, "--source", source, "--json"];
    const a = spawnN2s(["push", "--scan", trees.a, ...args, "--index", index1], env);
    const b = spawnN2s(["push", "--scan", trees.b, ...args, "--index", index2], env);
    for (const p of [a, b]) {
      const line = await p.stderrLine(/waiting for it/);
      assert.match(line, /^n2s push: source "shared" is locked by /);
      assert.match(line, holderLine("locked by"));
    }
    assert.equal((await listManifests(repo)).length, 0, "nothing committed while they wait");
    await held.release();
    const [ra, rb] = await Promise.all([a.done, b.done]);
    for (const r of [ra, rb]) assert.equal(r.code, 0, r.stderr);
    const [ja, jb] = [JSON.parse(ra.stdout), JSON.parse(rb.stdout)];

    const chain = await chainOf(repo, source);
    assert.equal(chain.length, 2, "two changesets");
    const first = chain.find((h) => h.parent === null);
    const second = chain.find((h) => h.parent !== null);
    assert.ok(first && second, `one root, one child: ${JSON.stringify(chain)}`);
    assert.equal(second.parent, first.id, "no fork: the second builds on the first");
    assert.equal(second.parent_chain, first.chain);
    assert.deepEqual([ja.changeset, jb.changeset].sort(), [first.id, second.id].sort());

    const blobs = await storedBlobIds(repo);
    assert.equal(new Set(blobs).size, blobs.length, "no blob stored twice");
    assert.equal(blobs.length, trees.files, "every file stored once");
    assert.equal(ja.uploaded + jb.uploaded, trees.files, "every file uploaded once");
    assert.equal(await repo.listLockIds().then((l) => l.length), 0, "every lock released");
  } finally {
    await repo.close();
  }
}

/** The CLI scenarios, on one backend. */
async function lockScenarios(t: Deno.TestContext, target: Target): Promise<void> {
  const env = { N2S_PASSPHRASE: PASS, ...target.env };

  await t.step(
    "two pushes of one source at once, one index: no fork, nothing twice",
    () => twoPushesOfOneSource(target, false),
  );

  await t.step(
    "two machines (two indexes) push one source: no fork, nothing twice",
    () => twoPushesOfOneSource(target, true),
  );

  await t.step("pushes of other sources go on; --no-wait fails with one line", async () => {
    using tmp = tempDir();
    const loc = target.location(`sources-${crypto.randomUUID()}`);
    const index = `${tmp.path}/index.sqlite`;
    await n2sOk(["init", "--repo", loc, "--index", index], env);
    writeTree(`${tmp.path}/x`, { "x.txt": "x" });
    writeTree(`${tmp.path}/y`, { "y.txt": "y" });
    const repo = await openRepo(target, loc);
    try {
      const held = await acquireLock(repo, { kind: "source", source: "busy", command: "test" });
      try {
        const args = ["--repo", loc, "--index", index, "--no-wait", "--json"];
        const [x, y] = await Promise.all([
          n2s(["push", "--scan", `${tmp.path}/x`, "--source", "other-1", ...args], env),
          n2s(["push", "--scan", `${tmp.path}/y`, "--source", "other-2", ...args], env),
        ]);
        for (const r of [x, y]) {
          assert.equal(r.code, 0, r.stderr);
          assert.notEqual(JSON.parse(r.stdout).changeset, null);
        }
        const busy = await n2s(
          ["push", "--scan", `${tmp.path}/x`, "--source", "busy", ...args],
          env,
        );
        assert.equal(busy.code, 1);
        const lines = busy.stderr.trim().split("\n");
        assert.equal(lines.length, 1, busy.stderr);
        assert.match(lines[0], /^n2s push: source "busy" is locked by test \(pid /);
        assert.match(lines[0], holderLine("locked by"));
        assert.match(lines[0], /; not waiting \(--no-wait\)$/);
        assert.equal((await chainOf(repo, "busy")).length, 0);
      } finally {
        await held.release();
      }
      assert.deepEqual(await repo.listLockIds(), []);
    } finally {
      await repo.close();
    }
  });

  await t.step("stale locks are ignored, reported, and removed by n2s unlock", async () => {
    using tmp = tempDir();
    const loc = target.location(`stale-${crypto.randomUUID()}`);
    const index = `${tmp.path}/index.sqlite`;
    await n2sOk(["init", "--repo", loc, "--index", index], env);
    writeTree(`${tmp.path}/src`, { "a.txt": "a" });
    const repo = await openRepo(target, loc);
    try {
      // A push of the same source whose process died on this host, and an exclusive lock of
      // another host that nobody refreshed for 31 minutes.
      const dead = await deadProcess();
      const now = Date.now();
      const record = (r: Partial<LockRecord>): LockRecord => ({
        v: 1,
        kind: "shared",
        command: "push",
        host: HOST,
        pid: dead.pid,
        pid_start: dead.start,
        user: "someone",
        created: new Date(now - 60_000).toISOString(),
        refreshed: new Date(now - 60_000).toISOString(),
        ...r,
      });
      await repo.putLock(repo.newLockId(), record({ kind: "source", source: "data" }));
      const old = new Date(now - 31 * 60_000).toISOString();
      await repo.putLock(
        repo.newLockId(),
        record({
          kind: "exclusive",
          host: "elsewhere.invalid",
          pid: 1,
          created: old,
          refreshed: old,
        }),
      );
      const r = await n2s([
        "push",
        "--scan",
        `${tmp.path}/src`,
        "--source",
        "data",
        "--no-wait",
        "--repo",
        loc,
        "--index",
        index,
      ], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^n2s push: ignoring a stale lock of push of source "data" \\(pid ${dead.pid} on .*\\): ` +
            `its process ${dead.pid} is gone; "n2s unlock" removes it$`,
          "m",
        ),
      );
      assert.match(
        r.stderr,
        /^n2s push: ignoring a stale lock of push \(pid 1 on elsewhere\.invalid, .*\): not refreshed for 31 minutes; "n2s unlock" removes it$/m,
      );
      assert.equal((await repo.listLockIds()).length, 2, "the push left them in place");

      const live = await acquireLock(repo, { kind: "shared", command: "test" });
      try {
        const un = await n2s(["unlock", "--repo", loc], env);
        assert.equal(un.code, 0, un.stderr);
        assert.equal(un.stdout.match(/^removed the lock of /gm)?.length, 2, un.stdout);
        assert.match(un.stdout, /^kept the lock of test \(pid \d+ .*\): it may still run$/m);
        assert.deepEqual(await repo.listLockIds(), [live.info!.id]);
        const all = await n2s(["unlock", "--remove-all", "--repo", loc, "--json"], env);
        assert.equal(all.code, 0, all.stderr);
        assert.equal(JSON.parse(all.stdout).removed.length, 1);
        assert.deepEqual(await repo.listLockIds(), []);
      } finally {
        await live.release();
      }
    } finally {
      await repo.close();
    }
  });

  await t.step("an exclusive lock holds a push and a pull back until it is released", async () => {
    using tmp = tempDir();
    const loc = target.location(`exclusive-${crypto.randomUUID()}`);
    const index = `${tmp.path}/index.sqlite`;
    await n2sOk(["init", "--repo", loc, "--index", index], env);
    writeTree(`${tmp.path}/src`, { "a.txt": "a", "b/c.txt": "c" });
    const args = ["--repo", loc, "--index", index];
    const first = JSON.parse(
      await n2sOk(["push", "--scan", `${tmp.path}/src`, "--source", "s", "--json", ...args], env),
    ).changeset;
    writeTree(`${tmp.path}/src`, { "a.txt": "a, changed" });
    const repo = await openRepo(target, loc);
    try {
      const held = await acquireLock(repo, { kind: "exclusive", command: "test" });
      const push = spawnN2s(["push", "--scan", `${tmp.path}/src`, "--source", "s", ...args], env);
      const pull = spawnN2s(
        ["pull", "--changeset-id", first, "--target-path", `${tmp.path}/out`, ...args],
        env,
      );
      const re = /the repository is locked exclusively by test \(pid .*; waiting for it$/;
      assert.match(await push.stderrLine(re), /^n2s push: /);
      assert.match(await pull.stderrLine(re), /^n2s pull: /);
      assert.equal((await listManifests(repo)).length, 1, "the push waits");
      await assert.rejects(Deno.stat(`${tmp.path}/out/a.txt`), Deno.errors.NotFound);
      await held.release();
      for (const r of await Promise.all([push.done, pull.done])) assert.equal(r.code, 0, r.stderr);
      assert.equal((await listManifests(repo)).length, 2);
      assert.equal(await Deno.readTextFile(`${tmp.path}/out/a.txt`), "a");
      assert.deepEqual(await repo.listLockIds(), []);
    } finally {
      await repo.close();
    }
  });
}

/** The pid of a process that has ended, and when it had started (from /proc). */
async function deadProcess(): Promise<{ pid: number; start: string }> {
  const child = new Deno.Command("sleep", { args: ["600"], stdout: "null", stderr: "null" })
    .spawn();
  const stat = await Deno.readTextFile(`/proc/${child.pid}/stat`);
  const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  child.kill("SIGKILL");
  await child.status;
  return { pid: child.pid, start };
}

Deno.test("locks on a local repository: pushes, sources, --no-wait, stale locks, exclusive", async (t) => {
  using tmp = tempDir();
  await lockScenarios(t, { location: (name) => `${tmp.path}/${name}`, env: {} });
});

Deno.test("locks on S3 (s3rver): pushes, sources, --no-wait, stale locks, exclusive", async (t) => {
  const s3 = await startS3();
  try {
    await lockScenarios(t, {
      location: (name) => `s3://${s3.bucket}/${name}?endpoint=${s3.endpoint}`,
      env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
    });
  } finally {
    await s3.stop();
  }
});

Deno.test("locks over SSH (sshd): pushes, sources, --no-wait, stale locks, exclusive", async (t) => {
  const sshd = await startSshd();
  try {
    await lockScenarios(t, {
      location: (name) => `sftp://${sshd.alias}${sshd.dir}/${name}`,
      env: { N2S_SSH_CONFIG: sshd.configFile },
    });
  } finally {
    await sshd.stop();
  }
});

/** A local repository opened in this process, for the tests of the lock protocol itself. */
async function localRepo(dir: string): Promise<Repository> {
  await n2sOk(["init", "--repo", `${dir}/repo`, "--index", `${dir}/index.sqlite`], {
    N2S_PASSPHRASE: PASS,
  });
  return await openRepo({ location: () => "", env: {} }, `${dir}/repo`);
}

Deno.test("a lock is sealed: a random name, and neither source, host nor user in its bytes", async () => {
  using tmp = tempDir();
  const repo = await localRepo(tmp.path);
  try {
    const source = "secret-project-source";
    const held = await acquireLock(repo, { kind: "source", source, command: "push" });
    try {
      const id = held.info!.id;
      assert.match(id, /^[0-9a-f]{32}$/);
      assert.deepEqual(await repo.listLockIds(), [id]);
      const raw = await readAll(await repo.backend.get(lockKey(id)));
      assert.equal(new TextDecoder().decode(raw.subarray(0, 4)), "N2SL");
      const text = new TextDecoder("latin1").decode(raw);
      for (const secret of [source, HOST, "push", String(Deno.pid)]) {
        assert.ok(!text.includes(secret), `"${secret}" does not appear in the lock object`);
      }
      const read = await repo.readLock(id);
      assert.equal(read.source, source);
      assert.equal(read.pid, Deno.pid);
      assert.equal(read.host, HOST);
      assert.equal(read.kind, "source");
    } finally {
      await held.release();
    }
    assert.deepEqual(await repo.listLockIds(), []);
  } finally {
    await repo.close();
  }
});

Deno.test("which locks exclude each other: same source and exclusive only", async () => {
  using tmp = tempDir();
  const repo = await localRepo(tmp.path);
  try {
    const kinds: { kind: LockKind; source?: string }[] = [
      { kind: "shared" },
      { kind: "source", source: "a" },
      { kind: "source", source: "b" },
      { kind: "exclusive" },
    ];
    for (const first of kinds) {
      for (const second of kinds) {
        const held = await acquireLock(repo, { ...first, command: "first" });
        let other: LockHandle | undefined;
        let busy = "";
        try {
          other = await acquireLock(repo, { ...second, command: "second", wait: false });
        } catch (e) {
          busy = e instanceof Error ? e.message : String(e);
        } finally {
          await other?.release();
          await held.release();
        }
        const clash = conflicts(first, second);
        assert.equal(busy !== "", clash, `${JSON.stringify(first)} then ${JSON.stringify(second)}`);
        if (clash) {
          assert.match(busy, /by first( of source "[ab]")? \(pid .*; not waiting \(--no-wait\)$/);
        }
        assert.deepEqual(await repo.listLockIds(), [], "the loser left no lock behind");
      }
    }
    assert.ok(conflicts({ kind: "source", source: "a" }, { kind: "source", source: "a" }));
    assert.ok(!conflicts({ kind: "source", source: "a" }, { kind: "source", source: "b" }));
    assert.ok(!conflicts({ kind: "shared" }, { kind: "source", source: "a" }));
    assert.ok(conflicts({ kind: "shared" }, { kind: "exclusive" }));
  } finally {
    await repo.close();
  }
});

Deno.test("a held lock is refreshed until it is released", async () => {
  using tmp = tempDir();
  const repo = await localRepo(tmp.path);
  try {
    let clock = Date.parse("2026-12-02T10:00:00.000Z");
    const held = await acquireLock(repo, {
      kind: "shared",
      command: "test",
      now: () => clock,
      refreshMs: 5,
    });
    try {
      const id = held.info!.id;
      assert.equal((await repo.readLock(id)).refreshed, "2026-12-02T10:00:00.000Z");
      clock += 3 * 60_000;
      // Wait for the refresh to land (an event: the stored time changes), a minute at most.
      for (const deadline = Date.now() + 60_000;;) {
        const refreshed = (await repo.readLock(id)).refreshed;
        if (refreshed === "2026-12-02T10:03:00.000Z") break;
        if (Date.now() > deadline) {
          throw new Error(`the held lock was not refreshed within a minute (still ${refreshed})`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      held.check();
      assert.equal(held.info!.refreshed, "2026-12-02T10:03:00.000Z");
    } finally {
      await held.release();
    }
    // Released: gone, and its timer cleared (the test's op sanitizer fails on a live interval).
    assert.deepEqual(await repo.listLockIds(), []);
  } finally {
    await repo.close();
  }
});

Deno.test("FORMAT.md documents the lock container and its key context", () => {
  const doc = Deno.readTextFileSync(new URL("../../docs/FORMAT.md", import.meta.url));
  assert.ok(doc.includes(KEY_CONTEXT.lock), "the lock key context is on the page");
  assert.ok(doc.includes("N2SL"), "the lock magic is on the page");
  assert.ok(doc.includes("locks/<id>"), "the lock objects are in the layout");
});

Deno.test("push --resume takes the source's lock; a changeset superseded from another machine fails instead of forking", async () => {
  using tmp = tempDir();
  const loc = `${tmp.path}/repo`;
  const env = { N2S_PASSPHRASE: PASS };
  const machine1 = ["--repo", loc, "--index", `${tmp.path}/one.sqlite`];
  const machine2 = ["--repo", loc, "--index", `${tmp.path}/two.sqlite`];
  await n2sOk(["init", ...machine1], env);
  writeTree(`${tmp.path}/src`, { "a.txt": "a", "b.txt": "b" });
  const push = ["push", "--scan", `${tmp.path}/src`, "--source", "s", "--json"];
  // Machine 1's push dies with every file stored, just before its manifest.
  const killed = await n2s([...push, ...machine1], { ...env, N2S_CRASH_AT: "manifest:1" });
  assert.notEqual(killed.code, 0);
  const repo = await openRepo({ location: () => "", env: {} }, loc);
  try {
    const held = await acquireLock(repo, { kind: "source", source: "s", command: "test" });
    try {
      const busy = await n2s(["push", "--resume", "--no-wait", ...machine1], env);
      assert.equal(busy.code, 1);
      assert.match(busy.stderr, /^n2s push: source "s" is locked by test .*; not waiting/m);
      // The dead push's lock is met, reported, and not in the way.
      assert.match(busy.stderr, /^n2s push: ignoring a stale lock of push of source "s" .*gone/m);
    } finally {
      await held.release();
    }
    // Machine 2 pushes the source meanwhile; machine 1's interrupted changeset would fork it.
    const other = JSON.parse(await n2sOk([...push, ...machine2], env));
    const resumed = await n2s(["push", "--resume", "--json", ...machine1], env);
    assert.equal(resumed.code, 1, resumed.stderr);
    assert.match(
      resumed.stderr,
      new RegExp(`interrupted changeset \\w+ was superseded by ${other.changeset}`),
    );
    const again = JSON.parse(await n2sOk([...push, ...machine1], env));
    assert.equal(again.changeset, null, "machine 1 finds nothing new after machine 2's push");
    const chain = await chainOf(repo, "s");
    assert.deepEqual(chain.map((h) => [h.id, h.parent]), [[other.changeset, null]], "no fork");
  } finally {
    await repo.close();
  }
});
