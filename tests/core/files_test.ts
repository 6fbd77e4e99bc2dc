// The files n2s leaves on this machine: the index, its directory and a repository n2s creates
// are private; an index others can read is named in a warning; exported keys are 0600. A pull
// killed with kill -9 leaves temporary files that the next pull into the target removes.

import assert from "node:assert/strict";
import { CLI_PATH, type CliRun, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, tempDir, writeTree } from "../helpers/fs.ts";
import { removePullLeftovers } from "../../lib/pull/leftovers.ts";

const PASS = "correct horse battery staple";

/** Deno's cache directory: a run with another HOME must still find the cached packages there. */
async function denoDir(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
  assert.ok(out.success, "deno info --json failed");
  return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
}

/**
 * Runs the CLI under umask 0, so that a file or directory made without an explicit mode would
 * come out open to everyone (and fail these tests whatever the caller's umask is).
 */
async function n2sUmask0(args: string[], env: Record<string, string>): Promise<CliRun> {
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      'umask 0 && exec "$@"',
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      CLI_PATH,
      ...args,
    ],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", N2S_PASSPHRASE: PASS, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const r = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  if (r.code !== 0) throw new Error(`n2s ${args.join(" ")} exited ${r.code}\n${r.stderr}`);
  return r;
}

/** Every directory and file under `root` (root included) with its permission bits. */
function modesUnder(root: string): Map<string, { dir: boolean; mode: number }> {
  const out = new Map<string, { dir: boolean; mode: number }>();
  const walk = (path: string) => {
    const st = Deno.lstatSync(path);
    out.set(path, { dir: st.isDirectory, mode: st.mode! & 0o7777 });
    if (st.isDirectory) { for (const e of Deno.readDirSync(path)) walk(`${path}/${e.name}`); }
  };
  walk(root);
  return out;
}

const octal = (m: number) => m.toString(8).padStart(4, "0");

/** Asserts that every directory under `root` is `dir` and every file `file`; returns the count. */
function assertModes(root: string, dir: number, file: number): number {
  const all = modesUnder(root);
  for (const [path, m] of all) {
    assert.equal(octal(m.mode), octal(m.dir ? dir : file), `${path} (${m.dir ? "dir" : "file"})`);
  }
  return all.size;
}

Deno.test("the first push with default locations makes the data directory, repository and index private", async () => {
  using tmp = tempDir();
  const home = `${tmp.path}/home`;
  Deno.mkdirSync(home, { mode: 0o755 });
  Deno.chmodSync(home, 0o755);
  writeTree(`${tmp.path}/src`, { "a.txt": "alpha\n", "d/b.bin": new Uint8Array(3 << 20) });
  // The XDG variables empty: the defaults under HOME apply.
  const env = { HOME: home, XDG_DATA_HOME: "", XDG_CONFIG_HOME: "", DENO_DIR: await denoDir() };
  const push = await n2sUmask0(["push", `${tmp.path}/src`], env);
  const data = `${home}/.local/share/n2s`;
  assert.match(push.stderr, new RegExp(`created a new repository at ${data}/repository`));
  const [index] = [...Deno.readDirSync(`${data}/index`)].map((e) => `${data}/index/${e.name}`);
  assert.match(index, /\.sqlite$/);

  // ~/.local, ~/.local/share, the data directory, the repository, the index directory: 0700;
  // the repository's objects and the index: 0600.
  const n = assertModes(`${home}/.local`, 0o700, 0o600);
  assert.ok(n >= 10, `only ${n} files and directories were made`);
  for (const sub of ["config", "keys", "packs", "changesets", "recovery.html"]) {
    assert.ok(modesUnder(`${data}/repository`).has(`${data}/repository/${sub}`), `${sub} exists`);
  }

  // SQLite gives the index's -wal and -shm files the index's own mode: open it as n2s does and
  // look while they exist.
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(index);
  try {
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("INSERT INTO meta(key, value) VALUES ('files-test', 'x')");
    for (const f of [index, `${index}-wal`, `${index}-shm`]) {
      assert.equal(octal(Deno.statSync(f).mode! & 0o777), "0600", f);
    }
  } finally {
    db.close();
  }

  // An exported key file is private too.
  await n2sUmask0(["key", "export", "--output", `${tmp.path}/key.json`], env);
  assert.equal(octal(Deno.statSync(`${tmp.path}/key.json`).mode! & 0o777), "0600");
});

Deno.test("a repository in a directory that already exists takes that directory's permissions", async () => {
  using tmp = tempDir();
  const repo = `${tmp.path}/shared`;
  Deno.mkdirSync(repo);
  Deno.chmodSync(repo, 0o750);
  writeTree(`${tmp.path}/src`, { "a.txt": "alpha\n", "big.bin": new Uint8Array(3 << 20) });
  const args = ["--repo", repo, "--index", `${tmp.path}/ix/index.sqlite`];
  await n2sUmask0(["init", ...args], {});
  await n2sUmask0(["push", `${tmp.path}/src`, ...args], {});
  const n = assertModes(repo, 0o750, 0o640);
  assert.ok(n >= 8, `only ${n} files and directories were made`);
  // The index and the directory made for it are private whatever the repository's modes.
  assert.equal(octal(Deno.statSync(`${tmp.path}/ix`).mode! & 0o777), "0700");
  assert.equal(octal(Deno.statSync(`${tmp.path}/ix/index.sqlite`).mode! & 0o777), "0600");
});

Deno.test("an existing index that others can read is named in a warning and left as it is", async () => {
  using tmp = tempDir();
  const index = `${tmp.path}/index.sqlite`;
  const args = ["--repo", `${tmp.path}/repo`, "--index", index];
  await n2sUmask0(["init", ...args], {});
  Deno.chmodSync(index, 0o644);
  const r = await n2sUmask0(["status", ...args], {});
  const warnings = r.stderr.split("\n").filter((l) => l.includes("warning"));
  assert.deepEqual(warnings, [
    `n2s: warning: index ${index} is readable or writable by other users (mode 0644); ` +
    `make it private with: chmod go= ${index}*`,
  ]);
  assert.equal(octal(Deno.statSync(index).mode! & 0o777), "0644", "the mode is not changed");
  // After the chmod it names, no warning.
  Deno.chmodSync(index, 0o600);
  assert.doesNotMatch((await n2sUmask0(["status", ...args], {})).stderr, /warning/);
});

Deno.test("removing pull leftovers: only n2s's temporary files, only regular files, never through a symlink", () => {
  using tmp = tempDir();
  const t = `${tmp.path}/target`;
  const outside = `${tmp.path}/outside`;
  writeTree(t, {
    ".n2s-pull-0123abcd": "left by a killed pull",
    "deep/er/.n2s-pull-89abcdef": "another",
    ".n2s-pull-notours": "a name of the user's",
    ".n2s-pull-0123abcd.txt": "a name of the user's",
    "keep.txt": "kept",
  });
  Deno.mkdirSync(`${t}/.n2s-pull-ffffffff`); // a directory, not a temporary file
  writeTree(outside, { ".n2s-pull-00000000": "outside the target" });
  Deno.symlinkSync(outside, `${t}/link-out`);
  Deno.symlinkSync(`${outside}/.n2s-pull-00000000`, `${t}/.n2s-pull-11111111`);

  assert.equal(removePullLeftovers(t), 2);
  const left = [...Deno.readDirSync(t)].map((e) => e.name).sort();
  assert.deepEqual(left, [
    ".n2s-pull-0123abcd.txt",
    ".n2s-pull-11111111",
    ".n2s-pull-ffffffff",
    ".n2s-pull-notours",
    "deep",
    "keep.txt",
    "link-out",
  ]);
  assert.deepEqual([...Deno.readDirSync(`${t}/deep/er`)], []);
  assert.equal(Deno.readTextFileSync(`${outside}/.n2s-pull-00000000`), "outside the target");
  assert.equal(removePullLeftovers(t), 0);
});

Deno.test("a pull killed with kill -9 while writing a large file: the next pull removes its temporary file", async () => {
  using tmp = tempDir();
  const src = `${tmp.path}/src`;
  const target = `${tmp.path}/target`;
  const args = ["--repo", `${tmp.path}/repo`, "--index", `${tmp.path}/index.sqlite`];
  const env = { N2S_PASSPHRASE: PASS };
  // 200 MiB that does not compress, written a piece at a time.
  Deno.mkdirSync(src);
  {
    using f = Deno.openSync(`${src}/big.bin`, { write: true, create: true });
    const piece = new Uint8Array(1 << 20);
    for (let i = 0; i < 200; i++) {
      for (let o = 0; o < piece.length; o += 65536) {
        crypto.getRandomValues(piece.subarray(o, o + 65536));
      }
      f.writeSync(piece);
    }
  }
  writeTree(src, { "small.txt": "small\n" });
  await n2sOk(["init", ...args], env);
  const pushed = JSON.parse(await n2sOk(["push", src, "--json", ...args], env));

  // Watch the target for the pull's temporary file, and kill the pull the moment it appears.
  Deno.mkdirSync(target);
  const watcher = Deno.watchFs(target, { recursive: false });
  const pull = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      CLI_PATH,
      "pull",
      "--changeset-id",
      pushed.changeset,
      "--target-path",
      target,
      ...args,
    ],
    env: { N2S_KDF_LOG_N: "10", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Should the pull end without making one, the watch ends too (and the assertions fail).
  pull.status.then(() => watcher.close()).catch(() => {});
  let seen: string | null = null;
  try {
    for await (const ev of watcher) {
      seen = ev.paths.map((p) =>
        p.slice(p.lastIndexOf("/") + 1)
      ).find((n) => n.startsWith(".n2s-pull-")) ?? null;
      if (seen !== null) {
        break;
      }
    }
  } finally {
    try {
      pull.kill("SIGKILL");
    } catch {
      // it ended already; the assertions below say so
    }
  }
  const status = await pull.status;
  assert.equal(status.signal, "SIGKILL", "the pull was killed, not finished");
  assert.match(seen!, /^\.n2s-pull-[0-9a-f]{8}$/);
  const leftover = [...Deno.readDirSync(target)].filter((e) => e.name.startsWith(".n2s-pull-"));
  assert.equal(leftover.length, 1, "the killed pull left its temporary file");

  const again = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      CLI_PATH,
      "pull",
      "--changeset-id",
      pushed.changeset,
      "--target-path",
      target,
      ...args,
    ],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(again.stderr);
  assert.equal(again.code, 0, stderr);
  assert.ok(
    stderr.split("\n").includes(
      `n2s: removed 1 temporary file that an interrupted pull left in ${target}`,
    ),
    `the pull says what it removed:\n${stderr}`,
  );
  assert.deepEqual(
    [...Deno.readDirSync(target)].filter((e) => e.name.startsWith(".n2s-pull-")),
    [],
    "no temporary file remains",
  );
  assertSameTree(target, src);
});
