// The scan client: find-style walks with globs, `since`, special files, deletions, resume, and
// a second push that uploads nothing.

import assert from "node:assert/strict";
import { parseSince, scanClient } from "../../lib/clients/scan.ts";
import { compileGlob } from "../../lib/glob.ts";
import { assertSameTree, emptyPrevious, makeStore, sh, testBackend } from "./helpers.ts";

Deno.test("globs: * within a name, ** across directories, bare names at any depth", () => {
  assert.ok(compileGlob("*.tmp").matches("a/b/c.tmp"));
  assert.ok(!compileGlob("*.tmp").matches("a/b/c.tmpx"));
  assert.ok(compileGlob("cache").matches("x/cache"));
  assert.ok(compileGlob("/cache").matches("cache"));
  assert.ok(!compileGlob("/cache").matches("x/cache"));
  assert.ok(compileGlob("data/**/*.csv").matches("data/a/b/x.csv"));
  assert.ok(compileGlob("data/**/*.csv").matches("data/x.csv"));
  assert.ok(!compileGlob("data/*.csv").matches("data/a/x.csv"));
  assert.ok(compileGlob("file[0-9].txt").matches("file7.txt"));
  assert.ok(compileGlob("file[!0-9].txt").matches("filex.txt"));
});

Deno.test("since accepts durations and ISO-8601 times", () => {
  const now = Date.parse("2025-06-13T12:00:00Z");
  assert.equal(parseSince("24h", now), now - 86400_000);
  assert.equal(parseSince("30m", now), now - 1800_000);
  assert.equal(parseSince("2w", now), now - 14 * 86400_000);
  assert.equal(parseSince("2025-06-01T00:00:00Z", now), Date.parse("2025-06-01T00:00:00Z"));
  assert.throws(() => parseSince("yesterday", now), /--since/);
});

async function collect(client: ReturnType<typeof scanClient>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of client.entries(emptyPrevious())) {
    out.push(
      e.action === "link"
        ? `${e.path} -> ${e.target}`
        : e.action === "dir"
        ? `${e.path}/`
        : e.action === "special"
        ? `${e.path} (${e.meta?.kind})`
        : e.path,
    );
  }
  return out;
}

Deno.test("a scan walks directories, files, links and FIFOs, skips excluded paths and notes sockets", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/a/cache`, { recursive: true });
    await Deno.mkdir(`${dir}/b`);
    await Deno.writeTextFile(`${dir}/a/one.csv`, "1");
    await Deno.writeTextFile(`${dir}/a/skip.tmp`, "t");
    await Deno.writeTextFile(`${dir}/a/cache/big`, "c");
    await Deno.writeTextFile(`${dir}/b/two.txt`, "2");
    await Deno.writeTextFile(`${dir}/name with\nnewline`, "n");
    await Deno.symlink("a/one.csv", `${dir}/link`);
    await sh("mkfifo", `${dir}/pipe`);
    const sock = Deno.listen({ transport: "unix", path: `${dir}/sock` });
    const client = scanClient({ dir, exclude: ["*.tmp", "cache"] });
    assert.deepEqual(await collect(client), [
      "a/",
      "b/",
      "link -> a/one.csv",
      "name with\nnewline",
      "pipe (fifo)",
      "a/one.csv",
      "b/two.txt",
    ]);
    sock.close();
    assert.deepEqual(client.problems, [{ path: "sock", message: "socket skipped", note: true }]);
    assert.deepEqual(client.completeWithin, [""]);
    // Include globs choose files; directories stay, so that the tree restores.
    const only = scanClient({ dir, include: ["*.csv"] });
    assert.deepEqual(await collect(only), ["a/", "b/", "a/cache/", "a/one.csv"]);
    const paths = scanClient({ paths: [`${dir}/a/one.csv`, `${dir}/b`] });
    assert.equal(paths.root, dir);
    assert.deepEqual(await collect(paths), ["a/one.csv", "b/", "b/two.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a scan with since yields only recently modified files and no deletions", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const old = new Date("2020-01-01T00:00:00Z");
    for (const n of ["old1", "old2", "new1"]) await Deno.writeTextFile(`${dir}/${n}`, n);
    await Deno.utime(`${dir}/old1`, old, old);
    await Deno.utime(`${dir}/old2`, old, old);
    const client = scanClient({ dir, since: "24h" });
    assert.deepEqual(await collect(client), ["new1"]);
    assert.deepEqual(client.completeWithin, []);
    const iso = scanClient({ dir, since: "2019-12-31T00:00:00Z" });
    assert.deepEqual(await collect(iso), ["new1", "old1", "old2"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scan pushes: deletions recorded, resumed after interruption, no-change uploads nothing", async () => {
  const work = await Deno.makeTempDir({ prefix: "n2s-scan-" });
  try {
    const dir = `${work}/src`;
    await Deno.mkdir(`${dir}/sub`, { recursive: true });
    for (let i = 0; i < 8; i++) await Deno.writeTextFile(`${dir}/sub/f${i}`, `file ${i}\n`);
    await Deno.symlink("sub/f0", `${dir}/link`);
    const store = await makeStore(work);

    const failing = testBackend(store.repo, 3);
    let s = await store.open(failing);
    await assert.rejects(
      s.push({ client: scanClient({ dir }), source: "scan", concurrency: 1, confirmBatch: 1 }),
      /injected/,
    );
    await s.close();

    const backend = testBackend(store.repo);
    s = await store.open(backend);
    const r1 = await s.push({ client: scanClient({ dir }), source: "scan" });
    assert.equal(r1.resumed.length, 1);
    assert.equal(r1.changeset, null);
    assert.equal(backend.blobPuts.length, 5);
    await s.pull(r1.resumed[0], `${work}/pull1`);
    await assertSameTree(`${work}/pull1`, dir, "first");

    const again = testBackend(store.repo);
    await s.close();
    s = await store.open(again);
    const r2 = await s.push({ client: scanClient({ dir }), source: "scan" });
    assert.equal(r2.changeset, null);
    assert.equal(r2.unchanged, 10, "8 files, the link and the directory sub");
    assert.equal(again.blobPuts.length, 0);

    await Deno.remove(`${dir}/sub/f3`);
    await Deno.writeTextFile(`${dir}/sub/f4`, "edited, and longer\n");
    const r3 = await s.push({ client: scanClient({ dir }), source: "scan" });
    assert.deepEqual(
      s.ls(r3.changeset!).map((f) => `${f.action} ${f.path}`).sort(),
      ["delete sub/f3", "dir sub", "write sub/f4"],
    );
    await s.pull(r3.changeset!, `${work}/pull3`);
    await assertSameTree(`${work}/pull3`, dir, "third");

    // With since, a deletion is not recorded: only what was modified is pushed (the file, and
    // the directory the deletion changed).
    await Deno.remove(`${dir}/sub/f5`);
    await Deno.writeTextFile(`${dir}/sub/f6`, "edited again, longer still\n");
    const r4 = await s.push({ client: scanClient({ dir, since: "1h" }), source: "scan" });
    assert.deepEqual(s.ls(r4.changeset!).map((f) => `${f.action} ${f.path}`), [
      "dir sub",
      "write sub/f6",
    ]);
    await s.close();
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
