// The everyday questions on the command line: ls of the full tree, diff, latest, dump, stats,
// pull --dry-run and --overwrite, and patterns that match nothing. Real CLI runs on real trees.

import assert from "node:assert/strict";
import { CLI_PATH, n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const ENV = { N2S_PASSPHRASE: "correct horse battery staple" };

function setup(dir: string) {
  const args = ["--repo", `${dir}/repo`, "--index", `${dir}/index.sqlite`];
  return { repo: `${dir}/repo`, args, src: `${dir}/src` };
}

/** Runs the CLI with stdout as bytes (dump writes binary). */
async function raw(args: string[]): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI_PATH, ...args],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...ENV },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, stdout: o.stdout, stderr: new TextDecoder().decode(o.stderr) };
}

/** Runs a command and returns its stdout; fails the test on a non-zero exit. */
async function sh(cmd: string, args: string[], cwd?: string): Promise<string> {
  const o = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const err = new TextDecoder().decode(o.stderr);
  assert.equal(o.code, 0, `${cmd} ${args.join(" ")}: ${err}`);
  return new TextDecoder().decode(o.stdout);
}

async function pushJson(args: string[], src: string, source: string) {
  return JSON.parse(await n2sOk(["push", src, "--source", source, "--json", ...args], ENV));
}

Deno.test("ls lists the full tree at a changeset; --changed lists only its own entries", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "a.txt": "a", "keep/b.txt": "b", "gone.txt": "g" });
  await n2sOk(["init", ...args], ENV);
  const first = await pushJson(args, src, "s");
  writeTree(src, { "a.txt": "a, edited" });
  Deno.removeSync(`${src}/gone.txt`);
  const second = await pushJson(args, src, "s");

  const tree = JSON.parse(await n2sOk(["ls", second.changeset, "--json", ...args], ENV));
  assert.deepEqual(tree.map((f: { path: string }) => f.path), ["a.txt", "keep", "keep/b.txt"]);
  const a = tree[0];
  for (const k of ["path", "action", "size", "blobId", "fileHash", "target", "mode", "mtime"]) {
    assert.ok(k in a, `ls has ${k}`);
  }
  assert.equal(a.size, 9);
  // The same state a pull restores.
  await n2sOk([
    "pull",
    "--changeset-id",
    second.changeset,
    "--target-path",
    `${tmp.path}/o`,
    ...args,
  ], ENV);
  assert.deepEqual(Object.keys(readTree(`${tmp.path}/o`)).sort(), ["a.txt", "keep/b.txt"]);

  const changed = JSON.parse(
    await n2sOk(["ls", second.changeset, "--changed", "--json", ...args], ENV),
  );
  assert.deepEqual(
    changed.map((f: { path: string; action: string }) => `${f.action} ${f.path}`).sort(),
    ["delete gone.txt", "write a.txt"],
  );
  // The first changeset's tree still has gone.txt; patterns narrow the listing.
  const old = JSON.parse(await n2sOk(["ls", first.changeset, "*.txt", "--json", ...args], ENV));
  assert.deepEqual(old.map((f: { path: string }) => f.path), ["a.txt", "gone.txt", "keep/b.txt"]);
  const text = await n2sOk(["ls", second.changeset, "keep", ...args], ENV);
  assert.match(text, /keep\/b\.txt/);
  assert.doesNotMatch(text, /a\.txt/);
});

Deno.test("a pattern that matches nothing exits 1 naming it, in ls, find, pull and dump", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "a.txt": "a", "d/b.csv": "b" });
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");
  for (
    const cmd of [
      ["ls", changeset, "d", "nothing*", ...args],
      ["ls", changeset, "--changed", "nothing*", ...args],
      ["find", "nothing*", ...args],
      ["dump", changeset, "nothing*", ...args],
      ["pull", "--changeset-id", changeset, "--target-path", `${tmp.path}/o`, "d", "nothing*"]
        .concat(args),
    ]
  ) {
    const r = await n2s(cmd, ENV);
    assert.equal(r.code, 1, `${cmd[0]}: ${r.stderr}`);
    assert.match(r.stderr, /pattern "nothing\*" matches nothing/, cmd[0]);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.equal(r.stdout, "", `${cmd[0]} prints nothing else`);
  }
  // The pull wrote nothing, not even the pattern that matched.
  assert.throws(() => Deno.statSync(`${tmp.path}/o`), Deno.errors.NotFound);
});

Deno.test("latest and latest:SOURCE stand for a changeset id in every command", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(`${src}/one`, { "f.txt": "1" });
  writeTree(`${src}/two`, { "g.txt": "2" });
  await n2sOk(["init", ...args], ENV);
  await pushJson(args, `${src}/one`, "one");
  writeTree(`${src}/one`, { "f.txt": "1, again" });
  const newest = (await pushJson(args, `${src}/one`, "one")).changeset;

  // One source: latest is its newest changeset.
  const st = JSON.parse(await n2sOk(["status", "latest", "--json", ...args], ENV));
  assert.equal(st[0].id, newest);
  const tree = JSON.parse(await n2sOk(["ls", "latest", "--json", ...args], ENV));
  assert.equal(tree[0].size, 8);

  const two = (await pushJson(args, `${src}/two`, "two")).changeset;
  const r = await n2s(["ls", "latest", ...args], ENV);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /"latest" is ambiguous.*latest:one, latest:two/);

  assert.equal(
    JSON.parse(await n2sOk(["stats", "latest:two", "--json", ...args], ENV)).changeset,
    two,
  );
  assert.equal(
    JSON.parse(await n2sOk(["stats", "latest:one", "--json", ...args], ENV)).changeset,
    newest,
  );
  const d = JSON.parse(await n2sOk(["diff", "latest:one", "latest:two", "--json", ...args], ENV));
  assert.deepEqual([d.from, d.to], [newest, two]);
  const dumped = await raw(["dump", "latest:one", "f.txt", ...args]);
  assert.equal(new TextDecoder().decode(dumped.stdout), "1, again");
  await n2sOk(
    ["pull", "--changeset-id", "latest:two", "--target-path", `${tmp.path}/o`, ...args],
    ENV,
  );
  assert.deepEqual(Object.keys(readTree(`${tmp.path}/o`)), ["g.txt"]);
  const none = await n2s(["ls", "latest:three", ...args], ENV);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no complete changeset of source "three"; sources: one, two/);
});

Deno.test("latest works without an index, from the manifests in the repository", async () => {
  using tmp = tempDir();
  const { args, src, repo } = setup(tmp.path);
  writeTree(src, { "f.txt": "first" });
  await n2sOk(["init", ...args], ENV);
  await pushJson(args, src, "s");
  writeTree(src, { "f.txt": "second" });
  const newest = (await pushJson(args, src, "s")).changeset;
  const fresh = ["--repo", repo, "--index", `${tmp.path}/fresh.sqlite`];
  const tree = JSON.parse(await n2sOk(["ls", "latest", "--json", ...fresh], ENV));
  assert.equal(tree[0].size, 6);
  const st = JSON.parse(await n2sOk(["stats", "latest", "--json", ...fresh], ENV));
  assert.equal(st.changeset, newest);
});

Deno.test("diff names what was added, removed, modified, and what changed only in metadata", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, {
    "same.txt": "same",
    "edit.txt": "before",
    "gone.txt": "gone",
    "mode.txt": "mode",
    "time.txt": "time",
    "attr.txt": "attr",
  });
  Deno.symlinkSync("same.txt", `${src}/link`);
  await n2sOk(["init", ...args], ENV);
  const a = (await pushJson(args, src, "s")).changeset;
  writeTree(src, { "edit.txt": "after!", "new.txt": "new" });
  Deno.removeSync(`${src}/gone.txt`);
  Deno.chmodSync(`${src}/mode.txt`, 0o600);
  Deno.utimeSync(`${src}/time.txt`, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
  Deno.removeSync(`${src}/link`);
  Deno.symlinkSync("edit.txt", `${src}/link`);
  await sh("python3", ["-c", `import os; os.setxattr("${src}/attr.txt", "user.tag", b"v")`]);
  const b = (await pushJson(args, src, "s")).changeset;

  const d = JSON.parse(await n2sOk(["diff", a, b, "--json", ...args], ENV));
  assert.equal(d.from, a);
  assert.equal(d.to, b);
  const by = Object.fromEntries(
    d.changes.map((c: { path: string; change: string; fields?: string[] }) => [
      c.path,
      c.fields ? `${c.change} ${c.fields.join(",")}` : c.change,
    ]),
  );
  assert.deepEqual(by, {
    "attr.txt": "metadata xattrs",
    "edit.txt": "modified",
    "gone.txt": "removed",
    "link": "metadata mtime,target",
    "mode.txt": "metadata mode",
    "new.txt": "added",
    "time.txt": "metadata mtime",
  });
  const text = await n2sOk(["diff", a, b, ...args], ENV);
  assert.match(text, /^modified +edit\.txt$/m);
  assert.match(text, /^added +new\.txt$/m);
  assert.match(text, /^metadata +mode\.txt \(mode\)$/m);
  assert.match(text, /1 added, 1 removed, 1 modified, 4 with other metadata only/);
  // The other way round, added and removed swap.
  const back = JSON.parse(await n2sOk(["diff", b, a, "--json", ...args], ENV));
  const change = (p: string) => back.changes.find((c: { path: string }) => c.path === p).change;
  assert.equal(change("new.txt"), "removed");
  assert.equal(change("gone.txt"), "added");
  assert.match(await n2sOk(["diff", a, a, ...args], ENV), /no differences/);
});

Deno.test("dump writes a file's verified bytes, or a tar that tar lists and extracts exactly", async () => {
  using tmp = tempDir();
  const { args, src, repo } = setup(tmp.path);
  const big = seededBytes(9 * 1024 * 1024 + 3, 7);
  writeTree(src, { "d/small.txt": "small\n", "d/big.bin": big, "other.txt": "o" });
  const long = "d/" + "x".repeat(120) + "/" + "y".repeat(130) + "/" + "z".repeat(200) + ".txt";
  writeTree(src, { [long]: "long path\n" });
  Deno.symlinkSync("small.txt", `${src}/d/link`);
  // A name that is not UTF-8, and a hard link to it.
  await sh("python3", [
    "-c",
    `import os; open(b"${src}/d/caf\\xe9.txt", "wb").write(b"raw name\\n"); ` +
    `os.link(b"${src}/d/caf\\xe9.txt", b"${src}/d/hard")`,
  ]);
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");

  const one = await raw(["dump", changeset, "d/big.bin", ...args]);
  assert.equal(one.code, 0, one.stderr);
  assert.deepEqual(one.stdout, big);
  const rawName = await raw(["dump", changeset, "d/caf\\xe9.txt", ...args]);
  assert.equal(new TextDecoder().decode(rawName.stdout), "raw name\n");

  const tar = await raw(["dump", changeset, "d", ...args]);
  assert.equal(tar.code, 0, tar.stderr);
  Deno.writeFileSync(`${tmp.path}/d.tar`, tar.stdout);
  const listed = (await sh("tar", ["-tf", `${tmp.path}/d.tar`])).trim().split("\n");
  assert.ok(listed.includes(long), "the long path is listed whole");
  assert.ok(listed.includes("d/caf\\351.txt"), listed.join(", "));
  assert.ok(!listed.some((p) => p.startsWith("other")), "only what the path names");
  Deno.mkdirSync(`${tmp.path}/x`);
  await sh("tar", ["-xf", `${tmp.path}/d.tar`, "-C", `${tmp.path}/x`]);
  // Byte for byte, names that are not UTF-8 included (GNU diff compares links as links).
  await sh("diff", ["-r", "--no-dereference", `${tmp.path}/x/d`, `${src}/d`]);
  assert.equal(Deno.readLinkSync(`${tmp.path}/x/d/link`), "small.txt");
  const hard = Deno.statSync(`${tmp.path}/x/d/hard`);
  assert.equal(hard.nlink, 2, "the hard link is a link again");
  assert.equal(hard.mtime!.getTime(), Deno.statSync(`${src}/d/hard`).mtime!.getTime());

  // A damaged blob: nothing of it reaches stdout, and the error names the path.
  const blobs = [...Deno.readDirSync(`${repo}/blobs`)].flatMap((d) =>
    [...Deno.readDirSync(`${repo}/blobs/${d.name}`)].map((f) => `${repo}/blobs/${d.name}/${f.name}`)
  );
  assert.equal(blobs.length, 1, "only big.bin is stored loose");
  const f = await Deno.open(blobs[0], { read: true, write: true });
  await f.seek(5 * 1024 * 1024, Deno.SeekMode.Start);
  await f.write(new Uint8Array([0x55, 0xaa]));
  f.close();
  const bad = await raw(["dump", changeset, "d/big.bin", ...args]);
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout.length, 0);
  assert.match(bad.stderr, /big\.bin/);
});

Deno.test("stats counts a changeset's files, bytes, stored bytes and packs, and the repository's", async () => {
  using tmp = tempDir();
  const { args, src, repo } = setup(tmp.path);
  // Compressible: text repeated.
  writeTree(src, {
    "a.txt": "abc".repeat(100_000),
    "b.txt": "xyz".repeat(10_000),
    "big.bin": seededBytes(2 * 1024 * 1024, 3),
    "dir/c.txt": "c",
  });
  Deno.symlinkSync("a.txt", `${src}/l`);
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");
  const s = JSON.parse(await n2sOk(["stats", changeset, "--json", ...args], ENV));
  assert.equal(s.changeset, changeset);
  assert.equal(s.files, 4);
  assert.equal(s.bytes, 300_000 + 30_000 + 2 * 1024 * 1024 + 1);
  assert.equal(s.dirs, 1);
  assert.equal(s.links, 1);
  assert.equal(s.blobs, 4);
  assert.equal(s.packs, 1);
  assert.equal(s.looseBlobs, 1);
  const onDisk = (sub: string) =>
    [...Deno.readDirSync(`${repo}/${sub}`)].flatMap((d) =>
      [...Deno.readDirSync(`${repo}/${sub}/${d.name}`)].map((f) =>
        Deno.statSync(`${repo}/${sub}/${d.name}/${f.name}`).size
      )
    );
  const looseSize = onDisk("blobs")[0];
  // The packed blobs' containers plus the loose one: at most the pack (which has frames too).
  assert.ok(s.storedBytes > looseSize && s.storedBytes <= looseSize + onDisk("packs")[0]);
  assert.equal(s.compressionRatio, Math.round((s.bytes / s.storedBytes) * 1000) / 1000);
  assert.ok(s.compressionRatio > 1, "text compresses");

  const whole = JSON.parse(await n2sOk(["stats", "--json", ...args], ENV));
  assert.equal(whole.changesets, 1);
  assert.equal(whole.sources, 1);
  assert.equal(whole.packs, 1);
  assert.equal(whole.looseBlobs, 1);
  assert.equal(whole.storedBytes, onDisk("blobs")[0] + onDisk("packs")[0]);
  assert.equal(whole.bytes, s.bytes);
  const text = await n2sOk(["stats", changeset, ...args], ENV);
  assert.match(text, /files: +4 /);
});

Deno.test("pull --dry-run says what it would write, replace and keep, and writes nothing", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "same.txt": "same", "changed.txt": "stored", "new.txt": "new" });
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");
  const target = `${tmp.path}/t`;
  const pull = ["pull", "--changeset-id", changeset, "--target-path", target, ...args];
  await n2sOk(pull, ENV);
  Deno.removeSync(`${target}/new.txt`);
  writeTree(target, { "changed.txt": "local edit", "mine.txt": "not in the changeset" });
  writeTree(target, { ".n2s-pull-0123abcd": "left by a killed pull" });
  const before = readTree(target);

  const text = await n2sOk([...pull, "--dry-run"], ENV);
  assert.match(text, /^would write new\.txt$/m);
  assert.match(text, /^would replace changed\.txt$/m);
  assert.match(text, /^unchanged same\.txt$/m);
  assert.match(text, /would remove 1 temporary files/);
  assert.match(text, /nothing was written/);
  assert.deepEqual(readTree(target), before);

  const never = JSON.parse(
    await n2sOk([...pull, "--dry-run", "--overwrite", "never", "--json"], ENV),
  );
  assert.deepEqual(never.kept, ["changed.txt"]);
  assert.deepEqual(never.created, ["new.txt"]);
  assert.deepEqual(never.unchanged, ["same.txt"]);
  assert.deepEqual(readTree(target), before);
  // Into a directory that does not exist: everything would be written, nothing is made.
  const fresh = JSON.parse(
    await n2sOk([
      ...pull.slice(0, 3),
      "--target-path",
      `${tmp.path}/none`,
      ...args,
      "--dry-run",
      "--json",
    ], ENV),
  );
  assert.equal(fresh.created.length, 3);
  assert.throws(() => Deno.statSync(`${tmp.path}/none`), Deno.errors.NotFound);
});

Deno.test("pull --overwrite: if-changed (the default) replaces what differs, never keeps it, always rewrites all", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "same.txt": "same", "changed.txt": "stored" });
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");
  const target = `${tmp.path}/t`;
  const pull = ["pull", "--changeset-id", changeset, "--target-path", target, ...args];
  await n2sOk(pull, ENV);
  const ctime = (p: string) => Deno.statSync(`${target}/${p}`).ctime!.getTime();
  const sameCtime = ctime("same.txt");

  writeTree(target, { "changed.txt": "local edit" });
  const never = JSON.parse(await n2sOk([...pull, "--overwrite", "never", "--json"], ENV));
  assert.deepEqual(never.kept, ["changed.txt"]);
  assert.equal(Deno.readTextFileSync(`${target}/changed.txt`), "local edit");

  const text = await n2sOk(pull, ENV);
  assert.match(text, /^replaced changed\.txt$/m);
  assert.match(text, /1 replaced, 1 already up to date/);
  assert.equal(Deno.readTextFileSync(`${target}/changed.txt`), "stored");
  assert.equal(ctime("same.txt"), sameCtime, "an equal file is not touched");

  const always = JSON.parse(await n2sOk([...pull, "--overwrite", "always", "--json"], ENV));
  assert.deepEqual(always.replaced, ["changed.txt", "same.txt"]);
  assert.notEqual(ctime("same.txt"), sameCtime, "always rewrites equal files too");
  const bad = await n2s([...pull, "--overwrite", "sometimes"], ENV);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--overwrite takes always, if-changed, never/);
});

Deno.test("dump writes no tar to a terminal, and one file's bytes to it", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "d/a.txt": "shown on the terminal\n" });
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");
  // util-linux script(1) gives the command a terminal as stdout.
  const onTerminal = async (path: string) => {
    const cmd = [
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      CLI_PATH,
      "dump",
      changeset,
      path,
      ...args,
    ]
      .join(" ");
    const o = await new Deno.Command("script", {
      args: ["-qec", cmd, "/dev/null"],
      env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...ENV },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: o.code, text: new TextDecoder().decode(o.stdout) };
  };
  const tar = await onTerminal("d");
  assert.equal(tar.code, 1, tar.text);
  assert.match(tar.text, /"d" is not one file .* redirect the output to a file or a pipe/);
  const file = await onTerminal("d/a.txt");
  assert.equal(file.code, 0, file.text);
  assert.match(file.text, /shown on the terminal/);
});

Deno.test("a file behind a symlink in the target is never taken as up to date", async () => {
  using tmp = tempDir();
  const { args, src } = setup(tmp.path);
  writeTree(src, { "d/file.txt": "content" });
  await n2sOk(["init", ...args], ENV);
  const { changeset } = await pushJson(args, src, "s");
  // The very same file, mode and mtime included, outside the target behind a symlink.
  const outside = `${tmp.path}/outside`;
  await sh("cp", ["-a", `${src}/d`, outside]);
  Deno.mkdirSync(`${tmp.path}/t`);
  Deno.symlinkSync(outside, `${tmp.path}/t/d`);
  const pull = ["pull", "--changeset-id", changeset, "--target-path", `${tmp.path}/t`, ...args];
  const r = await n2s(pull, ENV);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /d\/file\.txt: refused: d is a symlink/);
  assert.doesNotMatch(r.stdout, /up to date/);
  const dry = JSON.parse(await n2sOk([...pull, "--dry-run", "--json"], ENV));
  assert.deepEqual(dry.unchanged, []);
});

Deno.test("ls, diff and stats of a state whose chain has a hole list what they can and exit 1", async () => {
  using tmp = tempDir();
  const { args, src, repo } = setup(tmp.path);
  writeTree(src, { "one.txt": "1" });
  await n2sOk(["init", ...args], ENV);
  const first = (await pushJson(args, src, "s")).changeset;
  writeTree(src, { "two.txt": "2" });
  const middle = (await pushJson(args, src, "s")).changeset;
  writeTree(src, { "three.txt": "3" });
  const last = (await pushJson(args, src, "s")).changeset;
  // The middle manifest is lost; a machine without the index reads the others.
  Deno.removeSync(`${repo}/changesets/${middle}`);
  const fresh = ["--repo", repo, "--index", `${tmp.path}/fresh.sqlite`];
  const ls = await n2s(["ls", last, "--json", ...fresh], ENV);
  assert.equal(ls.code, 1);
  assert.match(ls.stderr, new RegExp(`changeset ${middle}, in the chain of ${last}`));
  assert.deepEqual(
    JSON.parse(ls.stdout).map((f: { path: string }) => f.path),
    ["one.txt", "three.txt"],
  );
  const diff = await n2s(["diff", first, last, "--json", ...fresh], ENV);
  assert.equal(diff.code, 1);
  assert.deepEqual(JSON.parse(diff.stdout).changes.map((c: { path: string }) => c.path), [
    "three.txt",
  ]);
  const stats = await n2s(["stats", last, "--json", ...fresh], ENV);
  assert.equal(stats.code, 1);
  assert.equal(JSON.parse(stats.stdout).files, 2);
});
