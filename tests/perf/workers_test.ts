// The seal Workers: what they compute equals the reference code (blob ids, sealed blobs that
// open and verify), a push and a pull give the same repository content and restored tree with
// Workers and on the main thread alone, a Worker that cannot start falls back to the main
// thread, and Workers start from the one-file bundle too.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { N2S, scanClient } from "../../mod.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { openBlob, sealBlob } from "../../lib/format/blob.ts";
import { blobIdFor, repoKeys } from "../../lib/format/ids.ts";
import { findPackEntries } from "../../lib/format/pack.ts";
import { concat, toHex } from "../../lib/format/bytes.ts";
import { portableSuite } from "../../lib/format/suite_js.ts";
import { joined, SealPool } from "../../lib/workers/pool.ts";
import { hashFile, sealLarge, sealLargeTo, SMALL_FILE } from "../../lib/workers/seal_jobs.ts";
import { blobKey } from "../../lib/repository/layout.ts";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { DirMaker } from "../../lib/backends/local/files.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function text(n: number, seed: number): string {
  let s = "";
  for (let i = 0; s.length < n; i++) s += `line ${i * seed} of a compressible file\n`;
  return s.slice(0, n);
}

const TREE = (seed: number): Record<string, string | Uint8Array> => ({
  "empty.txt": "",
  "one.txt": "1",
  "a/text.txt": text(20_000, seed),
  "a/b/random.bin": seededBytes(70_000, seed),
  "a/b/exact.bin": seededBytes(SMALL_FILE, seed + 1),
  "big/over.bin": seededBytes(SMALL_FILE + 1, seed + 2),
  "big/large.bin": seededBytes(3 * SMALL_FILE + 12_345, seed + 3),
  "big/large.txt": text(2 * SMALL_FILE + 7, seed),
});

Deno.test("hashFile gives the content hash and the blob id of lib/format, small and large", async () => {
  using t = tempDir();
  writeTree(t.path, TREE(1));
  const suite = await denoSuite();
  const keys = repoKeys(suite, crypto.getRandomValues(new Uint8Array(32)));
  const buf = new Uint8Array(SMALL_FILE);
  for (const path of Object.keys(TREE(1))) {
    const data = Deno.readFileSync(`${t.path}/${path}`);
    const h = suite.newHasher();
    h.update(data);
    const fileHash = toHex(h.digest());
    const r = hashFile(suite, keys, t.path, path, buf);
    assert.ok(r.hashed.ok, path);
    assert.equal(r.hashed.fileHash, fileHash, path);
    assert.equal(r.hashed.blobId, blobIdFor(suite, keys.idKey, path, fileHash), path);
    assert.equal(r.hashed.size, data.length, path);
    assert.equal(r.bytes !== null, data.length <= SMALL_FILE, path);
    if (r.bytes) assert.deepEqual(r.bytes, data, path);
  }
  const missing = hashFile(suite, keys, t.path, "no/such/file", buf);
  assert.deepEqual(missing.hashed, { ok: false, message: "vanished before it could be read" });
});

Deno.test("objects sealed by a Worker open and verify with the portable implementation", async () => {
  using t = tempDir();
  writeTree(t.path, TREE(2));
  const master = crypto.getRandomValues(new Uint8Array(32));
  // A threshold between the small files' sealed sizes: some are framed for a pack, some loose.
  const threshold = 30_000;
  const pool = await SealPool.start({ master, workers: 1, threshold });
  try {
    assert.equal(pool.workers, 1, "the Worker did not start");
    const paths = Object.keys(TREE(2));
    const { batch, results } = await pool.hash(t.path, paths);
    const header = (i: number) => {
      const h = results[i];
      assert.ok(h.ok);
      return {
        v: 2 as const,
        path: paths[i],
        file_hash: h.fileHash,
        size: h.size,
        mtime: h.mtime,
        mode: h.mode,
        source: "s",
        changeset: "01KB0000000000000000000000",
        created: "2026-11-25T00:00:00.000Z",
      };
    };
    const small = paths.map((_, i) => i).filter((i) =>
      results[i].ok && (results[i] as { size: number }).size <= SMALL_FILE
    );
    const large = paths.map((_, i) => i).filter((i) => !small.includes(i));
    const sealed = await pool.seal(batch!, small, {
      source: "s",
      changeset: "01KB0000000000000000000000",
      created: "2026-11-25T00:00:00.000Z",
    });
    const objects = new Map<number, Uint8Array>();
    small.forEach((i, k) => {
      const span = sealed.spans[k];
      objects.set(i, sealed.buffer.subarray(span.start, span.end));
      assert.equal(span.packed, span.end - span.start < threshold, paths[i]);
      assert.equal(span.packed, span.end <= sealed.fragmentEnd, paths[i]);
    });
    assert.ok(sealed.spans.some((s) => s.packed) && sealed.spans.some((s) => !s.packed));
    // The fragment's frames name exactly the packed containers, where they are.
    const framed = findPackEntries(sealed.buffer.subarray(0, sealed.fragmentEnd));
    assert.deepEqual(
      framed,
      small.flatMap((i, k) =>
        sealed.spans[k].packed
          ? [{
            blobId: (results[i] as { blobId: string }).blobId,
            offset: sealed.spans[k].start,
            length: sealed.spans[k].end - sealed.spans[k].start,
          }]
          : []
      ),
    );
    for (const i of large) {
      const parts: Uint8Array[] = [];
      for await (const seg of pool.large(t.path, header(i))) parts.push(...seg);
      const all = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) all.set(p, (o += p.length) - p.length);
      objects.set(i, all);
    }
    const portable = await portableSuite();
    for (const [i, obj] of objects) {
      const got: Uint8Array[] = [];
      const src = async function* () {
        yield obj;
      };
      const blobId = (results[i] as { blobId: string }).blobId;
      for await (const p of openBlob(portable, repoKeys(portable, master), blobId, src())) {
        if ("data" in p) got.push(p.data);
        else assert.equal(p.header.path, paths[i]);
      }
      const data = Deno.readFileSync(`${t.path}/${paths[i]}`);
      const joined = new Uint8Array(got.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of got) joined.set(p, (o += p.length) - p.length);
      assert.deepEqual(joined, data, paths[i]);
    }
  } finally {
    pool.close();
  }
});

Deno.test("a large file that changes while it is sealed is refused, not stored", async () => {
  using t = tempDir();
  writeTree(t.path, { "f.bin": seededBytes(3 * SMALL_FILE, 5) });
  const pool = await SealPool.start({ master: new Uint8Array(32), workers: 1 });
  try {
    const { results } = await pool.hash(t.path, ["f.bin"]);
    const h = results[0];
    assert.ok(h.ok);
    Deno.writeFileSync(`${t.path}/f.bin`, seededBytes(3 * SMALL_FILE, 6));
    const header = {
      v: 2 as const,
      path: "f.bin",
      file_hash: h.fileHash,
      size: h.size,
      mtime: h.mtime,
      mode: h.mode,
      source: "s",
      changeset: "c",
      created: "2026-11-25T00:00:00.000Z",
    };
    await assert.rejects(async () => {
      for await (const _ of pool.large(t.path, header)) { /* drain */ }
    }, /changed while it was read/);
  } finally {
    pool.close();
  }
});

Deno.test("a Worker that cannot start leaves the work to the main thread", async () => {
  using t = tempDir();
  writeTree(t.path, { "x.txt": "x" });
  const pool = await SealPool.start({
    master: new Uint8Array(32),
    workers: 2,
    workerUrl: "data:text/javascript,throw new Error('no worker here')",
  });
  try {
    assert.equal(pool.workers, 0);
    const { batch, results } = await pool.hash(t.path, ["x.txt"]);
    assert.ok(results[0].ok);
    await pool.seal(batch!, [], { source: "s", changeset: "c", created: "" });
  } finally {
    pool.close();
  }
});

async function pushAndPull(workers: string, dir: string, src: string): Promise<string> {
  Deno.env.set("N2S_WORKERS", workers);
  try {
    const repo = `${dir}/repo-${workers}`;
    const index = `${dir}/index-${workers}.sqlite`;
    const store = await N2S.init({ repository: repo, index, passphrase: "pw", logN: 10 });
    try {
      const r = await store.push({ client: scanClient({ dir: src }), source: "s", concurrency: 3 });
      assert.deepEqual(r.problems, []);
      assert.equal(r.uploaded, Object.keys(TREE(3)).length);
      // A second push of the same tree finds every file unchanged.
      const again = await store.push({ client: scanClient({ dir: src }), source: "s" });
      assert.equal(again.changeset, null);
      const out = `${dir}/out-${workers}`;
      const p = await store.pull(r.changeset!, out);
      assert.deepEqual(p.problems, []);
      assertSameTree(out, src);
      return out;
    } finally {
      await store.close();
    }
  } finally {
    Deno.env.delete("N2S_WORKERS");
  }
}

Deno.test("push and pull give the same result with Workers and on the main thread", async () => {
  using t = tempDir();
  writeTree(`${t.path}/src`, TREE(3));
  const a = await pushAndPull("2", t.path, `${t.path}/src`);
  const b = await pushAndPull("0", t.path, `${t.path}/src`);
  assertSameTree(a, b);
});

Deno.test("Workers start from the one-file bundle", async () => {
  using t = tempDir();
  writeTree(t.path, { "f.txt": "bundled worker\n" });
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "-o",
      `${t.path}/probe.js`,
      "tests/perf/fixtures/pool_probe.ts",
    ],
    cwd: ROOT,
    stderr: "piped",
  }).output();
  assert.ok(built.success, new TextDecoder().decode(built.stderr));
  for (const entry of [`${ROOT}/tests/perf/fixtures/pool_probe.ts`, `${t.path}/probe.js`]) {
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--cached-only", entry, t.path, "f.txt"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assert.equal(run.code, 0, dec.decode(run.stderr));
    const out = JSON.parse(dec.decode(run.stdout));
    assert.equal(out.workers, 1, `${entry}: the Worker did not start`);
    assert.equal(out.result.ok, true);
    assert.equal(out.result.size, 15);
  }
});

Deno.test("large files are sealed byte for byte as sealBlob seals them", async () => {
  using t = tempDir();
  const files: Record<string, string | Uint8Array> = {
    "r1.bin": seededBytes(SMALL_FILE + 1, 11),
    "r2.bin": seededBytes(2 * SMALL_FILE, 12),
    "r3.bin": seededBytes(20 * SMALL_FILE + 999, 13),
    "t1.txt": text(3 * SMALL_FILE + 5, 14),
    "mix.bin": new Uint8Array([
      ...seededBytes(SMALL_FILE + 17, 15),
      ...new TextEncoder().encode(text(2 * SMALL_FILE, 16)),
    ]),
  };
  writeTree(t.path, files);
  const base = await denoSuite();
  const salt = Uint8Array.from({ length: 16 }, (_, i) => i * 7);
  const suite = {
    ...base,
    randomBytes: (n: number) => n === 16 ? salt.slice() : base.randomBytes(n),
  };
  const keys = repoKeys(suite, crypto.getRandomValues(new Uint8Array(32)));
  const repoDir = `${t.path}/repo`;
  const dirs = new DirMaker();
  for (const [path, content] of Object.entries(files)) {
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    const h = suite.newHasher();
    h.update(data);
    const header = {
      v: 2 as const,
      path,
      file_hash: toHex(h.digest()),
      size: data.length,
      mtime: 1,
      mode: 0o644,
      source: "s",
      changeset: "c",
      created: "2026-11-25T00:00:00.000Z",
    };
    const mine: Uint8Array[] = [];
    for await (const seg of sealLarge(suite, keys, t.path, header, 3)) mine.push(...seg);
    let off = 0;
    const reader = {
      read(buf: Uint8Array) {
        const n = Math.min(buf.length, data.length - off);
        if (n === 0) return Promise.resolve(null);
        buf.set(data.subarray(off, off + n));
        off += n;
        return Promise.resolve(n);
      },
    };
    const ref: Uint8Array[] = [];
    const res = { fileHash: "", size: 0 };
    for await (const seg of sealBlob(suite, keys, header, reader, res, { salt })) {
      ref.push(...seg);
    }
    assert.deepEqual(concat(mine), concat(ref), path);
    // Sealed straight into a local repository, through one reused segment buffer: the same
    // bytes, under the blob's key.
    const blobId = blobIdFor(suite, keys.idKey, path, header.file_hash);
    const key = blobKey(blobId);
    // Under a threshold above its sealed size, nothing is written and the container comes back
    // (it belongs in a pack); under one below it, the object file is written.
    const held = await sealLargeTo(suite, keys, t.path, header, 3, {
      objects: repoDir,
      key,
      threshold: concat(ref).length + 1,
    }, dirs);
    assert.ok("container" in held, path);
    assert.deepEqual(held.container, concat(ref), path);
    const written = await sealLargeTo(suite, keys, t.path, header, 3, {
      objects: repoDir,
      key,
      threshold: 0,
    }, dirs);
    assert.ok("size" in written, path);
    const stored = Deno.readFileSync(`${repoDir}/${key}`);
    assert.equal(written.size, stored.length, path);
    assert.deepEqual(stored, concat(ref), path);
  }
  const left = [...Deno.readDirSync(repoDir + "/blobs")].flatMap((d) =>
    [...Deno.readDirSync(`${repoDir}/blobs/${d.name}`)].map((f) => f.name)
  );
  assert.equal(left.length, Object.keys(files).length, "no temporary file is left behind");
});

Deno.test("a push whose Workers cannot write into the local repository stores through the backend", async () => {
  using t = tempDir();
  writeTree(`${t.path}/src`, TREE(4));
  // The objects go to a real local backend, but the directory it hands the Workers is a plain
  // file: every direct write fails (not a directory), and each object must take the usual way.
  const real = new LocalBackend(`${t.path}/repo`);
  Deno.writeTextFileSync(`${t.path}/not-a-dir`, "");
  let puts = 0;
  const backend = {
    name: real.name,
    put: (k: string, b: Parameters<LocalBackend["put"]>[1]) => {
      if (k.startsWith("blobs/")) puts++;
      return real.put(k, b);
    },
    get: (k: string, r?: Parameters<LocalBackend["get"]>[1]) => real.get(k, r),
    stat: (k: string) => real.stat(k),
    list: (p: string) => real.list(p),
    delete: (k: string) => real.delete(k),
    flush: () => real.flush(),
    close: () => real.close(),
    objectFiles: (purpose: "read" | "write") =>
      purpose === "write" ? { root: `${t.path}/not-a-dir` } : null,
  };
  const store = await N2S.init({
    repository: real.root,
    backend,
    index: `${t.path}/index.sqlite`,
    passphrase: "pw",
    logN: 10,
  });
  try {
    const r = await store.push({ client: scanClient({ dir: `${t.path}/src` }), source: "s" });
    assert.deepEqual(r.problems, []);
    assert.equal(r.uploaded, Object.keys(TREE(4)).length);
    // The large incompressible files are loose objects: each went through the backend's put.
    const loose = store.index.filesOf(r.changeset!).filter((f) =>
      f.action === "write" && f.pack === null
    ).length;
    // exact.bin, over.bin and large.bin seal to more than the 1 MiB threshold; the rest (the
    // compressible large.txt too) went into packs.
    assert.equal(loose, 3, "the three incompressible files of 1 MiB and more are loose");
    assert.equal(puts, loose, "every loose object went through the backend's put");
    const p = await store.pull(r.changeset!, `${t.path}/out`);
    assert.deepEqual(p.problems, []);
    assertSameTree(`${t.path}/out`, `${t.path}/src`);
  } finally {
    await store.close();
  }
});

Deno.test("a streamed blob travels to the restoring thread in messages of at least 1 MiB, bytes unchanged", async () => {
  const data = seededBytes(3 * 1024 * 1024 + 12345, 5);
  async function* pieces() {
    // Pieces as a backend yields them: 7 KiB socket reads, one larger than the minimum.
    let o = 0;
    for (const size of [7168, 7168, 2 * 1024 * 1024, 1, 7168]) {
      yield data.subarray(o, o + size);
      o += size;
    }
    while (o < data.length) {
      yield data.subarray(o, Math.min(data.length, o + 7168));
      o += 7168;
    }
  }
  const sizes: number[] = [];
  const parts: Uint8Array[] = [];
  for await (const m of joined(pieces(), 1 << 20)) {
    sizes.push(m.length);
    parts.push(m.slice());
  }
  assert.deepEqual(concat(parts), data);
  assert.ok(sizes.slice(0, -1).every((s) => s >= 1 << 20), sizes.join(" "));
  assert.ok(sizes.length <= 4, sizes.join(" "));
});
