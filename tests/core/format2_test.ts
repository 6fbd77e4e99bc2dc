// Format 2 as a repository holds it: small files in packs (few objects), keyed blob ids (no
// path, content hash or unkeyed id anywhere in storage), pulls that read only the ranges they
// need, a damaged pack entry that costs only its own file, and format 1 refused by name.

import assert from "node:assert/strict";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { scanClient } from "../../lib/clients/scan.ts";
import { toHex } from "../../lib/format/bytes.ts";
import { blobIdInput } from "../../lib/format/ids.ts";
import { N2S } from "../../lib/n2s.ts";
import { recordingGets } from "../helpers/backends.ts";
import { n2s } from "../helpers/cli.ts";
import { assertSameTree, readTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import { blobBytes, looseBlobFiles, packFiles } from "../helpers/repo.ts";

function smallFiles(n: number, seed: number): Record<string, string | Uint8Array> {
  const files: Record<string, string | Uint8Array> = {};
  for (let i = 0; i < n; i++) {
    const name = `projekt-${seed}/unterordner-${i % 17}/bericht-nummer-${i}.txt`;
    files[name] = i % 2 === 0
      ? `Zeile ${i}: vertraulicher Bericht über Fall ${i * seed}\n`.repeat(20 + (i % 50))
      : seededBytes(1000 + (i * 131) % 15000, i + seed);
  }
  return files;
}

async function store(dir: string, opts: { packSize?: number } = {}) {
  return await N2S.init({
    repository: `${dir}/repo`,
    index: `${dir}/index.sqlite`,
    passphrase: "pw",
    logN: 10,
    ...opts,
  });
}

/** Every object file of a repository directory: its key and its bytes. */
function objects(repo: string): { key: string; bytes: Uint8Array }[] {
  const out: { key: string; bytes: Uint8Array }[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(`${repo}/${rel}`)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) walk(r);
      else out.push({ key: r, bytes: Deno.readFileSync(`${repo}/${r}`) });
    }
  };
  walk("");
  return out;
}

Deno.test("small files go into packs: at most one object per 4 MiB of packed data", async () => {
  using t = tempDir();
  writeTree(`${t.path}/src`, smallFiles(3000, 1));
  const s = await store(t.path);
  try {
    const r = await s.push({ client: scanClient({ paths: [`${t.path}/src`] }), source: "s" });
    assert.equal(r.uploaded, 3000);
    const packs = packFiles(`${t.path}/repo`);
    const packed = packs.reduce((a, p) => a + Deno.statSync(p).size, 0);
    assert.ok(packs.length >= 1);
    assert.ok(packs.length <= Math.ceil(packed / (4 << 20)), `${packs.length} packs, ${packed} B`);
    assert.deepEqual(looseBlobFiles(`${t.path}/repo`), []);
    const config = JSON.parse(Deno.readTextFileSync(`${t.path}/repo/config`));
    assert.equal(config.format, 2);
    assert.equal(config.pack_size, 16 << 20);
    assert.equal(config.pack_threshold, 1 << 20);
    await s.pull(r.changeset!, `${t.path}/out`);
    assertSameTree(`${t.path}/out`, `${t.path}/src`);
  } finally {
    await s.close();
  }
});

Deno.test("no path, content hash or unkeyed blob id appears in the repository, in names or bytes", async () => {
  using t = tempDir();
  const files = smallFiles(200, 2);
  files["groß/datei mit namen.bin"] = seededBytes(3 << 20, 9); // a loose blob too
  writeTree(`${t.path}/src`, files);
  const s = await store(t.path);
  const needles: string[] = [];
  try {
    const r = await s.push({ client: scanClient({ paths: [`${t.path}/src`] }), source: "s" });
    assert.ok(looseBlobFiles(`${t.path}/repo`).length === 1 && packFiles(`${t.path}/repo`).length);
    for (const f of s.index.filesOf(r.changeset!).filter((f) => f.action === "write")) {
      const unkeyed = s.suite.hash!(blobIdInput(f.path, f.file_hash!));
      const rawHash = Uint8Array.from(f.file_hash!.match(/../g)!.map((h) => parseInt(h, 16)));
      needles.push(f.path, f.file_hash!, toHex(unkeyed));
      needles.push(new TextDecoder("latin1").decode(unkeyed));
      needles.push(new TextDecoder("latin1").decode(rawHash));
    }
    needles.push("projekt-2", "bericht-nummer", "datei mit namen");
  } finally {
    await s.close();
  }
  for (const o of objects(`${t.path}/repo`)) {
    if (o.key === "recovery.html") continue; // the page holds no data, only code
    const text = new TextDecoder("latin1").decode(o.bytes);
    for (const n of needles) {
      assert.ok(!o.key.includes(n), `${o.key}: its name holds a path, hash or unkeyed id`);
      assert.ok(!text.includes(n), `${o.key}: its bytes hold ${JSON.stringify(n).slice(0, 40)}`);
    }
  }
});

Deno.test("a pull of a few files reads only their ranges of the packs", async () => {
  using t = tempDir();
  writeTree(`${t.path}/src`, smallFiles(2000, 3));
  const s0 = await store(t.path);
  let id: string;
  try {
    id = (await s0.push({ client: scanClient({ paths: [`${t.path}/src`] }), source: "s" }))
      .changeset!;
  } finally {
    await s0.close();
  }
  const rec = recordingGets(new LocalBackend(`${t.path}/repo`));
  // No index: the manifests say where each blob is.
  const s = await N2S.open({
    repository: `${t.path}/repo`,
    index: `${t.path}/fresh.sqlite`,
    passphrase: "pw",
    backend: rec,
  });
  try {
    const r = await s.pull(id, `${t.path}/out`, { patterns: ["**/bericht-nummer-17.txt"] });
    assert.equal(r.files, 1);
    const packReads = rec.gets.filter((g) => g.key.startsWith("packs/"));
    assert.equal(packReads.length, 1);
    const want = Deno.statSync(`${t.path}/src/projekt-3/unterordner-0/bericht-nummer-17.txt`).size;
    assert.ok(packReads[0].length! < want + 4096, `read ${packReads[0].length} bytes`);
  } finally {
    await s.close();
  }
});

Deno.test("one destroyed pack entry costs only its file: the pull restores the rest and exits 1", async () => {
  using t = tempDir();
  const files = smallFiles(100, 4);
  writeTree(`${t.path}/src`, files);
  const s = await store(t.path);
  let id: string;
  let victim: string;
  try {
    id = (await s.push({ client: scanClient({ paths: [`${t.path}/src`] }), source: "s" }))
      .changeset!;
    const row = s.index.filesOf(id).find((f) => f.path.endsWith("/bericht-nummer-42.txt"))!;
    victim = row.path;
    const where = blobBytes(`${t.path}/repo`, row);
    const bytes = Deno.readFileSync(where.file);
    bytes.fill(0, where.offset - 40, where.offset + where.length); // frame and container
    Deno.writeFileSync(where.file, bytes);
  } finally {
    await s.close();
  }
  for (const index of [`${t.path}/index.sqlite`, `${t.path}/none.sqlite`]) {
    const out = `${t.path}/out-${index.length}`;
    const r = await n2s([
      "pull",
      "--changeset-id",
      id,
      "--target-path",
      out,
      "--repo",
      `${t.path}/repo`,
      "--index",
      index,
    ], { N2S_PASSPHRASE: "pw" });
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(victim), r.stderr);
    const got = readTree(out);
    const want = readTree(`${t.path}/src`);
    delete want[victim];
    assert.deepEqual(got, want);
  }
});

Deno.test("a large file that compresses into a pack streams out of it; a damaged one leaves nothing", async () => {
  using t = tempDir();
  const line = "2026-12-02,region-07,verified,witness statement on file\n";
  writeTree(`${t.path}/src`, {
    "zeros.bin": new Uint8Array(24 << 20),
    "text.csv": line.repeat(Math.ceil((12 << 20) / line.length)),
    "small.txt": "small\n",
  });
  const s = await store(t.path);
  let id: string;
  try {
    id = (await s.push({ client: scanClient({ paths: [`${t.path}/src`] }), source: "s" }))
      .changeset!;
    const rows = s.index.filesOf(id);
    for (const name of ["zeros.bin", "text.csv"]) {
      const row = rows.find((f) => f.path.endsWith(name))!;
      assert.ok(row.pack, `${name} compresses below the pack threshold and is packed`);
    }
    // Through the repository (a remote backend's path) and through the CLI (Workers reading the
    // local pack themselves).
    await s.pull(id, `${t.path}/api`);
    assertSameTree(`${t.path}/api`, `${t.path}/src`);
    const row = rows.find((f) => f.path.endsWith("zeros.bin"))!;
    const where = blobBytes(`${t.path}/repo`, row);
    const bytes = Deno.readFileSync(where.file);
    bytes[where.offset + where.length - 30] ^= 1; // in the last segment: the rest verifies first
    Deno.writeFileSync(where.file, bytes);
  } finally {
    await s.close();
  }
  const out = `${t.path}/cli`;
  const r = await n2s([
    "pull",
    "--changeset-id",
    id,
    "--target-path",
    out,
    "--repo",
    `${t.path}/repo`,
    "--index",
    `${t.path}/index.sqlite`,
  ], { N2S_PASSPHRASE: "pw" });
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes("zeros.bin"), r.stderr);
  // Nothing of the damaged file, not even under a temporary name.
  assert.deepEqual(Object.keys(readTree(out)).sort(), ["small.txt", "text.csv"]);
  assert.deepEqual(readTree(out)["text.csv"], readTree(`${t.path}/src`)["text.csv"]);
});

Deno.test("a format-1 repository is refused with one line that names its format", async () => {
  using t = tempDir();
  Deno.mkdirSync(`${t.path}/repo/keys`, { recursive: true });
  Deno.writeTextFileSync(
    `${t.path}/repo/config`,
    JSON.stringify({ n2s_repository: 1, id: "0".repeat(32), format: 1, created: "2026-01-01" }),
  );
  const r = await n2s(["status", "--repo", `${t.path}/repo`, "--index", `${t.path}/i.sqlite`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /format 1/);
  assert.match(r.stderr, /format 2/);
});
