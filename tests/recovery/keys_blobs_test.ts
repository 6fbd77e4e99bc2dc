// Key management, and restoring pack files and loose blob files with a key file alone.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, readTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const OLD = { N2S_PASSPHRASE: "first passphrase" };

/** The files under a folder of the repository (blobs/ or packs/), two levels down. */
function objectFiles(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].flatMap((d) =>
      [...Deno.readDirSync(`${dir}/${d.name}`)].map((f) => `${dir}/${d.name}/${f.name}`)
    ).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** A repository with one push: four small files (one pack) and one large one (a loose blob). */
async function repoWithFiles(root: string) {
  const repo = `${root}/repo`;
  const at = ["--repo", repo, "--index", `${root}/index.sqlite`];
  await n2sOk(["init", ...at], OLD);
  writeTree(`${root}/src`, {
    "notes/today.txt": "remember the milk\n",
    "notes/tomorrow.txt": "buy bread\n",
    "docs/readme.md": "# read me\n".repeat(200),
    "photos/cat.raw": seededBytes(1_300_000, 11),
    "empty": "",
  });
  Deno.chmodSync(`${root}/src/notes/today.txt`, 0o600);
  const changeset = JSON.parse(
    await n2sOk(["push", `${root}/src`, "--source", "s", "--json", ...at], OLD),
  ).changeset as string;
  const packs = objectFiles(`${repo}/packs`);
  const loose = objectFiles(`${repo}/blobs`);
  assert.equal(packs.length, 1, "the small files are in one pack");
  assert.equal(loose.length, 1, "photos/cat.raw is a loose blob");
  const key = `${repo}/keys/${[...Deno.readDirSync(`${repo}/keys`)][0].name}`;
  return { repo, at, changeset, key, packs, loose, files: [...packs, ...loose] };
}

/** Every file name under a directory, at any depth (temporary files included). */
function namesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      if (e.isDirectory) walk(`${d}/${e.name}`);
      else out.push(e.name);
    }
  };
  walk(dir);
  return out.sort();
}

type KeyRow = { id: string; label: string };
const keyList = async (at: string[]) =>
  JSON.parse(await n2sOk(["key", "list", "--json", ...at])) as KeyRow[];

Deno.test("key add, list, remove and passwd keep the repository open with the right passphrases", async () => {
  using t = tempDir();
  const { at } = await repoWithFiles(t.path);
  const [first] = await keyList(at);
  await n2sOk(["key", "add", "--label", "spare", ...at], { ...OLD, N2S_NEW_PASSPHRASE: "second" });
  const keys = await keyList(at);
  assert.equal(keys.length, 2);
  const spare = keys.find((k) => k.label === "spare")!;
  // The key in use cannot be removed with its own passphrase.
  const self = await n2s(["key", "remove", first.id, ...at], OLD);
  assert.equal(self.code, 1);
  assert.match(self.stderr, /another key/);
  // With the spare passphrase, the first key goes, by unique prefix.
  await n2sOk(["key", "remove", first.id.slice(0, 6), ...at], { N2S_PASSPHRASE: "second" });
  assert.deepEqual((await keyList(at)).map((k) => k.id), [spare.id]);
  const gone = await n2s(["key", "export", ...at], OLD);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /wrong passphrase/);
  // passwd replaces the key; the label stays.
  await n2sOk(["key", "passwd", ...at], { N2S_PASSPHRASE: "second", N2S_NEW_PASSPHRASE: "third" });
  const after = await keyList(at);
  assert.equal(after.length, 1);
  assert.notEqual(after[0].id, spare.id);
  assert.equal(after[0].label, "spare");
  assert.equal((await n2s(["key", "list", ...at], { N2S_PASSPHRASE: "second" })).code, 0);
  assert.equal((await n2s(["key", "export", ...at], { N2S_PASSPHRASE: "second" })).code, 1);
  await n2sOk(["key", "export", ...at], { N2S_PASSPHRASE: "third" });
});

Deno.test("removing the last key is refused", async () => {
  using t = tempDir();
  const { at } = await repoWithFiles(t.path);
  const [only] = await keyList(at);
  const r = await n2s(["key", "remove", only.id, ...at], OLD);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /last key; removing it is refused/);
  assert.equal((await keyList(at)).length, 1);
});

Deno.test("key export writes a key file that decrypt-blob opens; it never overwrites", async () => {
  using t = tempDir();
  const { at, files } = await repoWithFiles(t.path);
  await n2sOk(["key", "export", "--output", `${t.path}/key.json`, ...at], OLD);
  assert.equal(Deno.statSync(`${t.path}/key.json`).mode! & 0o777, 0o600);
  const again = await n2s(["key", "export", "--output", `${t.path}/key.json`, ...at], OLD);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /not overwriting/);
  const r = JSON.parse(
    await n2sOk(
      [
        "decrypt-blob",
        ...files,
        "--key-file",
        `${t.path}/key.json`,
        "--target-path",
        `${t.path}/out`,
        "--json",
      ],
      OLD,
    ),
  );
  assert.equal(r.files, 5);
  assertSameTree(`${t.path}/out`, `${t.path}/src`);
  assert.equal(Deno.statSync(`${t.path}/out/notes/today.txt`).mode! & 0o777, 0o600);
  assert.equal(
    Deno.statSync(`${t.path}/out/photos/cat.raw`).mtime!.getTime(),
    Deno.statSync(`${t.path}/src/photos/cat.raw`).mtime!.getTime(),
  );
});

Deno.test("decrypt-blob restores good files and names each bad one: a corrupted blob, a renamed blob; a renamed pack still opens", async () => {
  using t = tempDir();
  const { key, packs, loose } = await repoWithFiles(t.path);
  const copies = `${t.path}/copies`;
  Deno.mkdirSync(copies);
  const looseName = loose[0].slice(loose[0].lastIndexOf("/") + 1);
  // The loose blob twice: corrupted under its own name, and intact under another name.
  const bytes = Deno.readFileSync(loose[0]);
  bytes[bytes.length - 20] ^= 1;
  Deno.writeFileSync(`${copies}/${looseName}`, bytes);
  Deno.copyFileSync(loose[0], `${copies}/renamed.bin`);
  // The pack under a name of its own: a pack's entries carry their blob ids.
  Deno.copyFileSync(packs[0], `${copies}/my pack.bin`);
  const r = await n2s([
    "decrypt-blob",
    ...[...Deno.readDirSync(copies)].map((e) => `${copies}/${e.name}`),
    "--key-file",
    key,
    "--target-path",
    `${t.path}/out`,
  ], OLD);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /restored 4 files/);
  // Its header opens, so the message names its path; the blob id is its file's name.
  assert.match(r.stderr, new RegExp(`photos/cat\\.raw: blob ${looseName}: .*not authenticate`));
  assert.match(
    r.stderr,
    /renamed\.bin: the file name renamed\.bin is not a blob id\..*rename it back.*pack files.*may have any name/,
  );
  assert.doesNotMatch(r.stderr, /my pack\.bin/);
  // Nothing unverified was written: the pack's four files only, and no temporary files.
  assert.deepEqual(namesUnder(`${t.path}/out`), [
    "empty",
    "readme.md",
    "today.txt",
    "tomorrow.txt",
  ]);
  const want = readTree(`${t.path}/src`);
  delete want["photos/cat.raw"];
  assert.deepEqual(readTree(`${t.path}/out`), want);
});

/** The entries of a pack file as decrypt-blob lists them. */
async function packEntries(pack: string, key: string) {
  return JSON.parse(
    await n2sOk(["decrypt-blob", "--list", "--json", pack, "--key-file", key], OLD),
  ) as { blobId: string; header: { path: string }; offset: number; length: number }[];
}

/**
 * Destroys one entry of the repository's pack (the one of notes/today.txt): 32 bytes in the
 * middle of its container become zeros, and its 40-byte frame too when `frame` is set.
 */
async function damageEntry(root: string, frame: boolean) {
  const r = await repoWithFiles(root);
  const entries = await packEntries(r.packs[0], r.key);
  assert.equal(entries.length, 4);
  const hit = entries.find((e) => e.header.path === "notes/today.txt")!;
  const bytes = Deno.readFileSync(r.packs[0]);
  const mid = hit.offset + (hit.length >> 1);
  bytes.fill(0, mid - 16, mid + 16);
  if (frame) bytes.fill(0, hit.offset - 40, hit.offset);
  Deno.chmodSync(r.packs[0], 0o644);
  Deno.writeFileSync(r.packs[0], bytes);
  const want = readTree(`${root}/src`);
  delete want["notes/today.txt"];
  return { ...r, hit, want };
}

Deno.test("a damaged pack entry: decrypt-blob restores every other file and names the entry; so does pull, by path", async () => {
  using t = tempDir();
  const { repo, at, changeset, key, files, hit, want } = await damageEntry(t.path, false);
  const r = await n2s(
    ["decrypt-blob", ...files, "--key-file", key, "--target-path", `${t.path}/out`],
    OLD,
  );
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /restored 4 files.*; 1 could not be restored/);
  assert.match(r.stderr, new RegExp(`entry at offset ${hit.offset}: blob ${hit.blobId}: `));
  assert.deepEqual(readTree(`${t.path}/out`), want);
  assert.doesNotMatch(namesUnder(`${t.path}/out`).join(" "), /today|n2s/);

  const p = await n2s(
    ["pull", "--changeset-id", changeset, "--target-path", `${t.path}/pulled`, ...at],
    OLD,
  );
  assert.equal(p.code, 1, p.stderr);
  assert.match(p.stdout, /restored 4 files.*1 could not be restored/);
  assert.match(p.stderr, new RegExp(`notes/today\\.txt: blob ${hit.blobId}: `));
  assert.deepEqual(readTree(`${t.path}/pulled`), want);
  // The same without an index: the locations come from the manifest.
  const fresh = ["--repo", repo, "--index", `${t.path}/fresh.sqlite`];
  const q = await n2s(
    ["pull", "--changeset-id", changeset, "--target-path", `${t.path}/fresh`, ...fresh],
    OLD,
  );
  assert.equal(q.code, 1, q.stderr);
  assert.match(q.stderr, /notes\/today\.txt: /);
  assert.deepEqual(readTree(`${t.path}/fresh`), want);
});

Deno.test("a pack entry destroyed with its frame: decrypt-blob still restores every other file; pull names the path", async () => {
  using t = tempDir();
  const { at, changeset, key, files, hit, want } = await damageEntry(t.path, true);
  const r = await n2s(
    ["decrypt-blob", ...files, "--key-file", key, "--target-path", `${t.path}/out`],
    OLD,
  );
  assert.match(r.stdout, /restored 4 files/);
  assert.deepEqual(readTree(`${t.path}/out`), want);
  const p = await n2s(
    ["pull", "--changeset-id", changeset, "--target-path", `${t.path}/pulled`, ...at],
    OLD,
  );
  assert.equal(p.code, 1, p.stderr);
  assert.match(p.stderr, new RegExp(`notes/today\\.txt: blob ${hit.blobId}: `));
  assert.deepEqual(readTree(`${t.path}/pulled`), want);
});

// With its frame gone, the entry is not found at all: decrypt-blob names the bytes that no
// entry covers, so the loss is never silent.
Deno.test({
  name: "decrypt-blob names the bytes of a pack entry destroyed with its frame, and exits 1",
  async fn() {
    using t = tempDir();
    const { key, packs, hit } = await damageEntry(t.path, true);
    const r = await n2s(
      ["decrypt-blob", ...packs, "--key-file", key, "--target-path", `${t.path}/out`],
      OLD,
    );
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stderr, new RegExp(`${hit.offset - 40}\\b`));
  },
});

Deno.test("decrypt-blob with a wrong passphrase restores nothing", async () => {
  using t = tempDir();
  const { key, files } = await repoWithFiles(t.path);
  const r = await n2s(
    [
      "decrypt-blob",
      ...files,
      "--key-file",
      key,
      "--target-path",
      `${t.path}/out`,
    ],
    { N2S_PASSPHRASE: "not it" },
  );
  assert.equal(r.code, 1);
  assert.match(r.stderr, /wrong passphrase/);
  assert.throws(() => Deno.statSync(`${t.path}/out`));
});

Deno.test("init writes the recovery page into the repository, the same page recovery-page prints", async () => {
  using t = tempDir();
  const { repo } = await repoWithFiles(t.path);
  const printed = await n2sOk(["recovery-page"]);
  assert.equal(Deno.readTextFileSync(`${repo}/recovery.html`), printed);
  assert.match(printed, /^<!DOCTYPE html>/);
  await n2sOk(["recovery-page", "--output", `${t.path}/page.html`]);
  assert.equal(Deno.readTextFileSync(`${t.path}/page.html`), printed);
});
