// Rebuilding the index from the repository and a key (manifests, then the packs and loose blobs
// of pushes that never completed), and pulling with no index at all.

import assert from "node:assert/strict";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { scanClient } from "../../lib/clients/scan.ts";
import { N2S } from "../../lib/n2s.ts";
import { countingBackend } from "../helpers/backends.ts";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const ENV = { N2S_PASSPHRASE: "recovery test passphrase" };

/** A repository with three changesets of one source: writes, a change, a delete, a link. */
async function threeChangesets(root: string) {
  const repo = `${root}/repo`;
  const index = `${root}/index.sqlite`;
  const src = `${root}/src`;
  const at = ["--repo", repo, "--index", index];
  await n2sOk(["init", ...at], ENV);
  writeTree(src, {
    "a.txt": "alpha\n",
    "docs/b.md": "# bravo\n",
    "data/big.bin": seededBytes(2_500_000, 7),
    "data/ünïcode.txt": "ü",
  });
  await n2sOk(["push", src, "--source", "s", ...at], ENV);
  writeTree(src, { "a.txt": "alpha, changed\n", "c.txt": "charlie\n" });
  Deno.removeSync(`${src}/docs/b.md`);
  await n2sOk(["push", src, "--source", "s", "--changeset-name", "second", ...at], ENV);
  // The first version of a.txt comes back: its blob is already stored ("present").
  writeTree(src, { "a.txt": "alpha\n" });
  Deno.symlinkSync("c.txt", `${src}/link`);
  await n2sOk(["push", src, "--source", "s", ...at], ENV);
  const ids = (JSON.parse(await n2sOk(["status", "--json", ...at], ENV)) as { id: string }[])
    .map((c) => c.id);
  assert.equal(ids.length, 3);
  return { repo, index, src, at, ids };
}

/** What status, ls and find answer, as JSON. */
async function answers(at: string[], ids: string[]) {
  const out: Record<string, unknown> = {};
  out.status = JSON.parse(await n2sOk(["status", "--json", ...at], ENV));
  for (const id of ids) out[`ls ${id}`] = JSON.parse(await n2sOk(["ls", id, "--json", ...at], ENV));
  for (const p of ["a.txt", "**/*.txt", "data"]) {
    out[`find ${p}`] = JSON.parse(await n2sOk(["find", p, "--json", ...at], ENV));
  }
  return out;
}

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

function removeIndex(index: string): void {
  Deno.removeSync(index);
  for (const s of ["-wal", "-shm"]) {
    try {
      Deno.removeSync(index + s);
    } catch {
      // absent once the index was closed cleanly
    }
  }
}

Deno.test("recover index rebuilds an index that answers status, ls and find exactly as before", async () => {
  using t = tempDir();
  const { index, at, ids } = await threeChangesets(t.path);
  const before = await answers(at, ids);
  removeIndex(index);
  const r = JSON.parse(await n2sOk(["recover", "index", "--json", ...at], ENV));
  assert.equal(r.changesets, 3);
  assert.deepEqual(r.problems, []);
  const after = await answers(at, ids);
  assert.deepStrictEqual(after, before);
});

Deno.test("recover index refuses to replace an index that lists changesets unless forced", async () => {
  using t = tempDir();
  const { index, at } = await threeChangesets(t.path);
  const r = await n2s(["recover", "index", ...at], ENV);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /exists.*--force/);
  await n2sOk(["recover", "index", "--force", ...at], ENV);
  assert.ok(Deno.statSync(`${index}.old`).isFile);
});

Deno.test("recover index records a push that never completed from its packs and loose blobs; the next push uploads none of them", async () => {
  using t = tempDir();
  const { repo, index, src, at, ids } = await threeChangesets(t.path);
  // The third push's manifest never reached storage: its blobs did.
  Deno.removeSync(`${repo}/changesets/${ids[2]}`);
  removeIndex(index);
  const r = JSON.parse(await n2sOk(["recover", "index", "--json", ...at], ENV));
  assert.equal(r.changesets, 2);
  // That push stored no new blob (a.txt's blob was already there), so nothing else is found.
  assert.deepEqual(r.incomplete, []);
  const status = JSON.parse(await n2sOk(["status", "--json", ...at], ENV));
  assert.deepEqual(status.map((c: { status: string }) => c.status), ["complete", "complete"]);

  // A push whose manifest is lost after uploading new content: small files, which go into a
  // pack, and one large incompressible file, a loose blob.
  const packsBefore = objectFiles(`${repo}/packs`);
  const looseBefore = objectFiles(`${repo}/blobs`);
  const added: Record<string, string | Uint8Array> = {
    "new/small.bin": seededBytes(10_000, 3),
    "new/notes.txt": "new notes\n",
    "new/table.csv": "k,v\n".repeat(30_000),
    "new/large.bin": seededBytes(1_400_000, 4),
  };
  writeTree(src, added);
  await n2sOk(["push", src, "--source", "s", ...at], ENV);
  const newPacks = objectFiles(`${repo}/packs`).filter((f) => !packsBefore.includes(f));
  const newLoose = objectFiles(`${repo}/blobs`).filter((f) => !looseBefore.includes(f));
  assert.equal(newPacks.length, 1, "the new small files are in one new pack");
  assert.equal(newLoose.length, 1, "new/large.bin is a new loose blob");
  const last = JSON.parse(await n2sOk(["status", "--json", ...at], ENV)).at(-1).id;
  Deno.removeSync(`${repo}/changesets/${last}`);
  removeIndex(index);
  const r2 = JSON.parse(await n2sOk(["recover", "index", "--json", ...at], ENV));
  assert.equal(r2.changesets, 2);
  assert.deepEqual(r2.incomplete, [last]);
  assert.equal(r2.orphanBlobs, 4, "three blobs from the pack, one loose");
  assert.deepEqual(r2.problems, []);
  const rows = JSON.parse(await n2sOk(["status", "--json", ...at], ENV));
  assert.equal(rows.at(-1).id, last);
  assert.equal(rows.at(-1).status, "failed");
  const hits = JSON.parse(await n2sOk(["find", "new", "--json", ...at], ENV)) as {
    path: string;
    changeset: string;
  }[];
  assert.deepEqual(hits.map((h) => h.path).sort(), Object.keys(added).sort());
  for (const h of hits) assert.equal(h.changeset, last, h.path);

  // The next push uploads none of them again: they are recorded as stored. Every put is
  // counted; only the new changeset's manifest is written.
  const counting = countingBackend(new LocalBackend(repo));
  const store = await N2S.open({
    repository: repo,
    index,
    passphrase: ENV.N2S_PASSPHRASE,
    backend: counting,
  });
  try {
    const again = await store.push({ client: scanClient({ paths: [src] }), source: "s" });
    assert.equal(again.uploaded, 0);
    assert.deepEqual(again.problems, []);
    assert.deepEqual(
      counting.puts.filter((k) => k.startsWith("blobs/") || k.startsWith("packs/")),
      [],
      `puts: ${counting.puts.join(", ")}`,
    );
    assert.equal(counting.puts.filter((k) => k.startsWith("changesets/")).length, 1);
    await store.pull(again.changeset!, `${t.path}/out`);
  } finally {
    await store.close();
  }
  assertSameTree(`${t.path}/out`, src);
});

Deno.test("pull restores a changeset with no index at all, from the manifests", async () => {
  using t = tempDir();
  const { repo, src, ids } = await threeChangesets(t.path);
  const fresh = ["--repo", repo, "--index", `${t.path}/fresh/index.sqlite`];
  await n2sOk([
    "pull",
    "--changeset-id",
    ids[2].slice(0, 10),
    "--target-path",
    `${t.path}/out`,
    ...fresh,
  ], ENV);
  assertSameTree(`${t.path}/out`, src);
  // An older changeset, and a pattern.
  await n2sOk([
    "pull",
    "--changeset-id",
    ids[0],
    "--target-path",
    `${t.path}/old`,
    "docs/*",
    ...fresh,
  ], ENV);
  assert.equal(Deno.readTextFileSync(`${t.path}/old/docs/b.md`), "# bravo\n");
  assert.deepEqual([...Deno.readDirSync(`${t.path}/old`)].map((e) => e.name), ["docs"]);
});

Deno.test("pull falls back to the manifests for a changeset the index never saw", async () => {
  using t = tempDir();
  const { repo, src, ids } = await threeChangesets(t.path);
  // Another machine's index knows only a changeset of its own source.
  const other = ["--repo", repo, "--index", `${t.path}/other.sqlite`];
  writeTree(`${t.path}/elsewhere`, { "x.txt": "x" });
  await n2sOk(["push", `${t.path}/elsewhere`, "--source", "other", ...other], ENV);
  await n2sOk(["pull", "--changeset-id", ids[2], "--target-path", `${t.path}/out`, ...other], ENV);
  assertSameTree(`${t.path}/out`, src);
});
