// Key management, and restoring loose blob files with a key file alone.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const OLD = { N2S_PASSPHRASE: "first passphrase" };

async function repoWithFiles(root: string) {
  const repo = `${root}/repo`;
  const at = ["--repo", repo, "--index", `${root}/index.sqlite`];
  await n2sOk(["init", ...at], OLD);
  writeTree(`${root}/src`, {
    "notes/today.txt": "remember the milk\n",
    "photos/cat.raw": seededBytes(1_300_000, 11),
    "empty": "",
  });
  Deno.chmodSync(`${root}/src/notes/today.txt`, 0o600);
  await n2sOk(["push", `${root}/src`, "--source", "s", ...at], OLD);
  const blobs = [...Deno.readDirSync(`${repo}/blobs`)].flatMap((d) =>
    [...Deno.readDirSync(`${repo}/blobs/${d.name}`)].map((f) => `${repo}/blobs/${d.name}/${f.name}`)
  );
  return { repo, at, blobs };
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
  const { at, blobs } = await repoWithFiles(t.path);
  await n2sOk(["key", "export", "--output", `${t.path}/key.json`, ...at], OLD);
  assert.equal(Deno.statSync(`${t.path}/key.json`).mode! & 0o777, 0o600);
  const again = await n2s(["key", "export", "--output", `${t.path}/key.json`, ...at], OLD);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /not overwriting/);
  const r = JSON.parse(
    await n2sOk(
      [
        "decrypt-blob",
        ...blobs,
        "--key-file",
        `${t.path}/key.json`,
        "--target-path",
        `${t.path}/out`,
        "--json",
      ],
      OLD,
    ),
  );
  assert.equal(r.files, 3);
  assertSameTree(`${t.path}/out`, `${t.path}/src`);
  assert.equal(Deno.statSync(`${t.path}/out/notes/today.txt`).mode! & 0o777, 0o600);
  assert.equal(
    Deno.statSync(`${t.path}/out/photos/cat.raw`).mtime!.getTime(),
    Deno.statSync(`${t.path}/src/photos/cat.raw`).mtime!.getTime(),
  );
});

Deno.test("decrypt-blob restores good blobs and names each bad one: corrupted, renamed", async () => {
  using t = tempDir();
  const { repo, blobs } = await repoWithFiles(t.path);
  const key = [...Deno.readDirSync(`${repo}/keys`)][0].name;
  const copies = `${t.path}/copies`;
  Deno.mkdirSync(copies);
  const names = blobs.map((b) => b.slice(b.lastIndexOf("/") + 1));
  for (let i = 0; i < blobs.length; i++) Deno.copyFileSync(blobs[i], `${copies}/${names[i]}`);
  const bad = `${copies}/${names[0]}`;
  const bytes = Deno.readFileSync(bad);
  bytes[bytes.length - 20] ^= 1;
  Deno.writeFileSync(bad, bytes);
  Deno.renameSync(`${copies}/${names[1]}`, `${copies}/renamed.bin`);
  const r = await n2s([
    "decrypt-blob",
    ...[...Deno.readDirSync(copies)].map((e) => `${copies}/${e.name}`),
    "--key-file",
    `${repo}/keys/${key}`,
    "--target-path",
    `${t.path}/out`,
  ], OLD);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /restored 1 files/);
  assert.match(r.stderr, new RegExp(`: blob ${names[0]}: `));
  assert.match(r.stderr, /renamed\.bin: the file name renamed\.bin is not a blob id/);
  // Nothing unverified was written: one file only, and no temporary files.
  const written: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      if (e.isDirectory) walk(`${d}/${e.name}`);
      else written.push(e.name);
    }
  };
  walk(`${t.path}/out`);
  assert.equal(written.length, 1);
});

Deno.test("decrypt-blob with a wrong passphrase restores nothing", async () => {
  using t = tempDir();
  const { repo, blobs } = await repoWithFiles(t.path);
  const key = [...Deno.readDirSync(`${repo}/keys`)][0].name;
  const r = await n2s(
    [
      "decrypt-blob",
      ...blobs,
      "--key-file",
      `${repo}/keys/${key}`,
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
