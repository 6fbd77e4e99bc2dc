// The command line end to end on a local repository: init, push, change, push, pull each
// changeset, status/ls/find/log with --json, id prefixes, exit codes and error lines.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, readTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import { storedBlobIds } from "../helpers/repo.ts";

const ENV = { N2S_PASSPHRASE: "correct horse battery staple" };

function setup(dir: string) {
  const repo = `${dir}/repo`;
  const index = `${dir}/index.sqlite`;
  const args = ["--repo", repo, "--index", index];
  return { repo, index, args, src: `${dir}/src` };
}

function snapshot(src: string, dest: string): void {
  Deno.mkdirSync(dest, { recursive: true });
  new Deno.Command("cp", { args: ["-a", `${src}/.`, dest] }).outputSync();
}

Deno.test("push, change, push again, and pull each changeset byte for byte", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, {
    "a.txt": "alpha\n",
    "docs/readme.md": "# readme\n",
    "data/big.bin": seededBytes(3 * 1024 * 1024 + 7, 1),
    "data/empty": "",
    "names/with space.txt": "spaces",
    "names/ünïcødé.txt": "unicode",
  });
  Deno.symlinkSync("../a.txt", `${src}/docs/link`);
  Deno.chmodSync(`${src}/a.txt`, 0o600);
  await n2sOk(["init", ...args], ENV);
  const first = JSON.parse(
    await n2sOk(["push", src, "--changeset-name", "daily-backup", "--json", ...args], ENV),
  );
  snapshot(src, `${tmp.path}/state1`);

  Deno.writeTextFileSync(`${src}/a.txt`, "alpha, edited\n");
  Deno.removeSync(`${src}/docs/readme.md`);
  writeTree(src, { "new/file.txt": "new" });
  const second = JSON.parse(await n2sOk(["push", src, "--json", ...args], ENV));
  assert.equal(second.deleted, 1);
  assert.equal(second.uploaded, 2);
  // Five files and links, and the directories data and names (docs and new changed).
  assert.equal(second.unchanged, 7);

  await n2sOk([
    "pull",
    "--changeset-id",
    first.changeset,
    "--target-path",
    `${tmp.path}/out1`,
    ...args,
  ], ENV);
  await n2sOk([
    "pull",
    "--changeset-id",
    second.changeset,
    "--target-path",
    `${tmp.path}/out2`,
    ...args,
  ], ENV);
  assertSameTree(`${tmp.path}/out1`, `${tmp.path}/state1`);
  assertSameTree(`${tmp.path}/out2`, src);
  // Modes and mtimes come back too.
  const a1 = Deno.statSync(`${tmp.path}/out1/a.txt`);
  const s1 = Deno.statSync(`${tmp.path}/state1/a.txt`);
  assert.equal(a1.mode! & 0o777, 0o600);
  assert.equal(a1.mtime!.getTime(), s1.mtime!.getTime());
});

Deno.test("status, ls, find and log answer in JSON with the documented fields", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "x/report.csv": "a,b\n", "y.txt": "y" });
  await n2sOk(["init", ...args], ENV);
  const p1 = JSON.parse(
    await n2sOk(
      ["push", src, "--source", "reports", "--changeset-name", "one", "--json", ...args],
      ENV,
    ),
  );
  writeTree(src, { "x/report.csv": "a,b\n1,2\n" });
  const p2 = JSON.parse(await n2sOk(["push", src, "--source", "reports", "--json", ...args], ENV));

  const status = JSON.parse(await n2sOk(["status", "--json", ...args]));
  assert.equal(status.length, 2);
  for (const k of ["id", "name", "source", "status", "files", "bytes", "created", "completed"]) {
    assert.ok(k in status[0], `status has ${k}`);
  }
  assert.equal(status[0].id, p1.changeset);
  assert.equal(status[0].name, "one");
  assert.equal(status[0].source, "reports");
  assert.equal(status[0].status, "complete");
  assert.equal(status[0].files, 3, "two files and the directory x");
  assert.equal(status[0].bytes, 5);
  assert.match(status[0].created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.match(status[0].completed, /Z$/);

  // Ids are accepted by unique prefix, like git hashes.
  const one = JSON.parse(await n2sOk(["status", p2.changeset.slice(0, 20), "--json", ...args]));
  assert.equal(one.length, 1);
  assert.equal(one[0].id, p2.changeset);

  const ls = JSON.parse(await n2sOk(["ls", p1.changeset, "--changed", "--json", ...args]));
  assert.deepEqual(ls.map((f: { path: string }) => f.path), ["x", "x/report.csv", "y.txt"]);
  assert.deepEqual(ls.map((f: { action: string }) => f.action), ["dir", "write", "write"]);
  for (const k of ["path", "action", "size", "blobId", "confirmed"]) {
    assert.ok(k in ls[1], `ls has ${k}`);
  }
  assert.match(ls[1].blobId, /^[0-9a-f]{64}$/);
  assert.match(ls[1].confirmed, /Z$/);

  const found = JSON.parse(await n2sOk(["find", "**/*.csv", "--json", ...args]));
  assert.equal(found.length, 2);
  assert.deepEqual(found.map((f: { changeset: string }) => f.changeset), [
    p1.changeset,
    p2.changeset,
  ]);
  assert.deepEqual(found.map((f: { size: number }) => f.size), [4, 8]);

  const log = JSON.parse(await n2sOk(["log", "--source", "reports", "--json", ...args]));
  assert.deepEqual(log.map((c: { id: string }) => c.id), [p1.changeset, p2.changeset]);
  assert.equal(log[1].parent, p1.changeset);

  const text = await n2sOk(["status", ...args]);
  assert.match(text, new RegExp(p1.changeset));
});

Deno.test("a second push with no change creates nothing and uploads nothing", async () => {
  using tmp = tempDir();
  const { args, src, repo } = setup(tmp.path);
  writeTree(src, { "a": "1", "b/c": "2" });
  await n2sOk(["init", ...args], ENV);
  await n2sOk(["push", src, ...args], ENV);
  const before = readTree(repo);
  const r = JSON.parse(await n2sOk(["push", src, "--json", ...args], ENV));
  assert.equal(r.changeset, null);
  assert.equal(r.unchanged, 3, "two files and the directory b");
  assert.deepEqual(readTree(repo), before);
});

Deno.test("the same content at the same path is never uploaded twice", async () => {
  using tmp = tempDir();
  const { args, src, repo } = setup(tmp.path);
  writeTree(src, { "f.txt": "version one" });
  await n2sOk(["init", ...args], ENV);
  await n2sOk(["push", src, ...args], ENV);
  writeTree(src, { "f.txt": "version two" });
  await n2sOk(["push", src, ...args], ENV);
  const blobs = storedBlobIds(repo).length;
  // Back to the first content (new mtime, so the file is read): stored as already present.
  writeTree(src, { "f.txt": "version one" });
  const r = JSON.parse(await n2sOk(["push", src, "--json", ...args], ENV));
  assert.equal(r.uploaded, 0);
  assert.equal(r.present, 1);
  assert.equal(storedBlobIds(repo).length, blobs);
});

Deno.test("pull restores a subset chosen by path or glob", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "a/1.csv": "1", "a/2.txt": "2", "b/3.csv": "3", "c/d/4.txt": "4" });
  await n2sOk(["init", ...args], ENV);
  const p = JSON.parse(await n2sOk(["push", src, "--json", ...args], ENV));
  await n2sOk([
    "pull",
    "--changeset-id",
    p.changeset,
    "--target-path",
    `${tmp.path}/o`,
    "**/*.csv",
    "c",
    ...args,
  ], ENV);
  assert.deepEqual(Object.keys(readTree(`${tmp.path}/o`)).sort(), [
    "a/1.csv",
    "b/3.csv",
    "c/d/4.txt",
  ]);
});

Deno.test("several files pushed at once share their common directory as the root", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "file1.txt": "one", "file2.txt": "two", "other.txt": "not pushed" });
  await n2sOk(["init", ...args], ENV);
  const p = JSON.parse(
    await n2sOk([
      "push",
      `${src}/file1.txt`,
      `${src}/file2.txt`,
      "--changeset-name",
      "daily-backup",
      "--json",
      ...args,
    ], ENV),
  );
  const ls = JSON.parse(await n2sOk(["ls", p.changeset, "--json", ...args]));
  assert.deepEqual(ls.map((f: { path: string }) => f.path), ["file1.txt", "file2.txt"]);
});

Deno.test("usage errors exit 2 and operational errors exit 1, each with one line on stderr", async () => {
  using tmp = tempDir();
  const { args } = setup(tmp.path);
  let r = await n2s(["frobnicate"]);
  assert.equal(r.code, 2);
  r = await n2s(["pull", ...args]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--changeset-id and --target-path are required/);
  r = await n2s(["push", ...args], ENV);
  assert.equal(r.code, 2);
  r = await n2s(["status", "--no-such-flag", ...args]);
  assert.equal(r.code, 2);
  r = await n2s(["status", ...args]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no n2s repository at .*repo; create one with "n2s init"/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, "no stack trace without --verbose");
  await n2sOk(["init", ...args], ENV);
  r = await n2s(["ls", "ZZZZ", ...args]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no changeset matches "ZZZZ"/);
  r = await n2s(["init", ...args], ENV);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /already holds an n2s repository/);
  r = await n2s([
    "status",
    "--verbose",
    "--repo",
    `${tmp.path}/nothing`,
    "--index",
    `${tmp.path}/i2`,
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\.ts:\d+/, "--verbose shows the stack");
});

Deno.test("with no configuration, the first push creates the default repository and says where", async () => {
  using tmp = tempDir();
  const home = `${tmp.path}/home`;
  Deno.mkdirSync(home);
  writeTree(`${tmp.path}/src`, { "notes.txt": "hello" });
  const env = { ...ENV, HOME: home, XDG_DATA_HOME: "", XDG_CONFIG_HOME: "" };
  const r = await n2s(["push", `${tmp.path}/src`, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  const repo = `${home}/.local/share/n2s/repository`;
  assert.match(r.stderr, new RegExp(`created a new repository at ${repo}`));
  assert.match(r.stderr, /index: .*\.local\/share\/n2s\/index\/[0-9a-f]{32}\.sqlite/);
  assert.match(r.stderr, /key file: .*\/keys\/[0-9a-f]{16}/);
  const id = JSON.parse(r.stdout).changeset;
  const r2 = await n2s(["pull", "--changeset-id", id, "--target-path", `${tmp.path}/out`], env);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(Deno.readTextFileSync(`${tmp.path}/out/notes.txt`), "hello");
});
