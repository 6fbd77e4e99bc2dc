// The container and blob format: round trips at the segment edges, the fast ChaCha20-Poly1305
// against @noble/ciphers, and every kind of damage detected as an error, never wrong output.

import assert from "node:assert/strict";
import { denoSuite, nodeAead } from "../../lib/crypto_deno.ts";
import { nobleAead, portableSuite } from "../../lib/format/suite_js.ts";
import { type BlobHeader, openBlob, sealBlob, type SealResult } from "../../lib/format/blob.ts";
import { concat, toHex } from "../../lib/format/bytes.ts";
import { blobIdFor, repoKeys } from "../../lib/format/ids.ts";
import type { Suite } from "../../lib/format/suite.ts";
import { seededBytes } from "../helpers/fs.ts";
import { alignedChunks } from "../../lib/workers/restore_jobs.ts";

const fast = await denoSuite();
const portable = await portableSuite();
const MASTER = seededBytes(32, 99);
const KEYS = repoKeys(fast, MASTER);
const MiB = 1 << 20;

function hashOf(suite: Suite, data: Uint8Array): string {
  const h = suite.newHasher();
  h.update(data);
  return toHex(h.digest());
}

function headerFor(data: Uint8Array, path = "dir/file.bin"): BlobHeader {
  return {
    v: 2,
    path,
    file_hash: hashOf(fast, data),
    size: data.length,
    mtime: 1_700_000_000_000,
    mode: 0o640,
    source: "test",
    changeset: "01JTEST0000000000000000000",
    created: "2026-11-25T00:00:00.000Z",
  };
}

function reader(data: Uint8Array, step = 100_003) {
  let off = 0;
  return {
    read(buf: Uint8Array) {
      if (off >= data.length) return Promise.resolve(null);
      const n = Math.min(buf.length, data.length - off, step);
      buf.set(data.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
  };
}

/** Seals data into a blob; returns the object bytes and the segment boundaries. */
async function seal(
  data: Uint8Array,
  opts: { compressLevel?: number; path?: string; master?: Uint8Array } = {},
): Promise<{ bytes: Uint8Array; blobId: string; boundaries: number[] }> {
  const header = headerFor(data, opts.path);
  const keys = repoKeys(fast, opts.master ?? MASTER);
  const res: SealResult = { fileHash: "", size: 0 };
  const parts: Uint8Array[] = [];
  const boundaries: number[] = [];
  let off = 0;
  for await (
    const seg of sealBlob(fast, keys, header, reader(data), res, {
      compressLevel: opts.compressLevel,
    })
  ) {
    for (const p of seg) {
      parts.push(p);
      off += p.length;
    }
    boundaries.push(off);
  }
  assert.equal(res.fileHash, header.file_hash);
  return {
    bytes: concat(parts),
    blobId: blobIdFor(fast, keys.idKey, header.path, header.file_hash),
    boundaries,
  };
}

async function open(
  suite: Suite,
  bytes: Uint8Array,
  blobId: string,
  master = MASTER,
): Promise<{ header: BlobHeader; data: Uint8Array }> {
  async function* src() {
    // Odd-sized chunks exercise the stream reassembly.
    for (let i = 0; i < bytes.length; i += 65_537) yield bytes.subarray(i, i + 65_537);
  }
  const parts: Uint8Array[] = [];
  let header: BlobHeader | undefined;
  for await (const p of openBlob(suite, repoKeys(suite, master), blobId, src())) {
    if ("header" in p) header = p.header;
    else parts.push(p.data);
  }
  return { header: header!, data: concat(parts) };
}

Deno.test("node:crypto ChaCha20-Poly1305 equals @noble/ciphers on random inputs", () => {
  let seed = 10;
  for (const size of [0, 1, 15, 16, 17, 64, 1000, 65536, MiB + 1]) {
    const key = seededBytes(32, seed++);
    const nonce = seededBytes(12, seed++);
    const aad = seededBytes(size % 50, seed++);
    const plain = seededBytes(size, seed++);
    const [c1, t1] = nodeAead.seal(key, nonce, aad, plain);
    const [c2, t2] = nobleAead.seal(key, nonce, aad, plain);
    assert.equal(toHex(c1), toHex(c2), `ciphertext, ${size} bytes`);
    assert.equal(toHex(t1), toHex(t2), `tag, ${size} bytes`);
    assert.deepEqual(nobleAead.open(key, nonce, aad, c1, t1), plain);
    assert.deepEqual(new Uint8Array(nodeAead.open(key, nonce, aad, c2, t2)), plain);
    if (size > 0) {
      const bad = c1.slice();
      bad[size >> 1] ^= 1;
      assert.throws(() => nodeAead.open(key, nonce, aad, bad, t1));
      assert.throws(() => nobleAead.open(key, nonce, aad, bad, t1));
    }
  }
});

for (const size of [0, 1, MiB - 1, MiB, MiB + 1, 10 * MiB]) {
  Deno.test(`a ${size}-byte blob round-trips through both implementations`, async () => {
    const data = seededBytes(size, size + 1);
    const { bytes, blobId } = await seal(data);
    for (const suite of [fast, portable]) {
      const got = await open(suite, bytes, blobId);
      assert.equal(got.data.length, size);
      assert.ok(got.data.every((b, i) => b === data[i]), "content differs");
      assert.equal(got.header.path, "dir/file.bin");
    }
  });
}

Deno.test("compressible content is stored smaller and opens with the portable zstd decoder", async () => {
  const text = new TextEncoder().encode(
    "the quick brown fox jumps over the lazy dog\n".repeat(60_000),
  );
  const { bytes, blobId } = await seal(text, { compressLevel: 3 });
  assert.ok(bytes.length < text.length / 5, `stored ${bytes.length} of ${text.length}`);
  const got = await open(portable, bytes, blobId);
  assert.deepEqual(got.data, text);
});

async function assertRejected(bytes: Uint8Array, blobId: string, why: string, master = MASTER) {
  for (const suite of [fast, portable]) {
    await assert.rejects(() => open(suite, bytes, blobId, master), Error, why);
  }
}

Deno.test("a flipped bit anywhere in a small blob is an error", async () => {
  const { bytes, blobId } = await seal(seededBytes(300, 3));
  for (let i = 0; i < bytes.length; i++) {
    const bad = bytes.slice();
    bad[i] ^= 0x01;
    await assert.rejects(() => open(fast, bad, blobId), Error, `flip at ${i}`);
  }
});

Deno.test("a flipped byte around every segment boundary of a large blob is an error", async () => {
  const { bytes, blobId, boundaries } = await seal(seededBytes(3 * MiB + 10, 4));
  const spots = new Set<number>();
  for (const b of boundaries) {
    for (const d of [-17, -1, 0, 1, 2, 3, 4, 5]) {
      if (b + d >= 0 && b + d < bytes.length) spots.add(b + d);
    }
  }
  for (const i of spots) {
    const bad = bytes.slice();
    bad[i] ^= 0x80;
    await assertRejected(bad, blobId, `flip at ${i}`);
  }
});

Deno.test("truncation at every segment boundary is an error", async () => {
  const { bytes, blobId, boundaries } = await seal(seededBytes(2 * MiB + 5, 5));
  for (const b of [0, 4, 8, 24, ...boundaries.slice(0, -1), bytes.length - 1]) {
    await assertRejected(bytes.subarray(0, b), blobId, `truncated at ${b}`);
  }
});

Deno.test("bytes appended after the final segment are an error", async () => {
  const { bytes, blobId } = await seal(seededBytes(5000, 6));
  await assertRejected(concat([bytes, new Uint8Array([0])]), blobId, "one byte appended");
  // A whole extra segment copied from the end is an error too.
  await assertRejected(
    concat([bytes, bytes.subarray(bytes.length - 40)]),
    blobId,
    "segment appended",
  );
});

Deno.test("swapped segments are an error", async () => {
  const { bytes, blobId, boundaries } = await seal(seededBytes(3 * MiB, 7));
  // boundaries: [header end, seg1 end, seg2 end, seg3 end]
  const [h, s1, s2] = boundaries;
  const swapped = concat([
    bytes.subarray(0, h),
    bytes.subarray(s1, s2),
    bytes.subarray(h, s1),
    bytes.subarray(s2),
  ]);
  assert.equal(swapped.length, bytes.length);
  await assertRejected(swapped, blobId, "swapped segments");
});

Deno.test("a blob stored under another blob's id is an error", async () => {
  const a = await seal(seededBytes(1000, 8), { path: "a.txt" });
  const b = await seal(seededBytes(1000, 9), { path: "b.txt" });
  await assertRejected(a.bytes, b.blobId, "a under b's id");
});

Deno.test("a wrong master key is an error", async () => {
  const { bytes, blobId } = await seal(seededBytes(1000, 10));
  await assertRejected(bytes, blobId, "wrong key", seededBytes(32, 11));
});

Deno.test("content that does not match the header's hash is an error", async () => {
  // Seal content under a header that claims another hash: AEAD passes, the hash check must not.
  const data = seededBytes(2000, 12);
  const header = { ...headerFor(data), file_hash: hashOf(fast, seededBytes(2000, 13)) };
  const res: SealResult = { fileHash: "", size: 0 };
  const parts: Uint8Array[] = [];
  for await (const seg of sealBlob(fast, KEYS, header, reader(data), res)) parts.push(...seg);
  const blobId = blobIdFor(fast, KEYS.idKey, header.path, header.file_hash);
  await assertRejected(concat(parts), blobId, "hash mismatch");
});

/** Byte equality without node:assert's diff of megabytes when they differ. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

Deno.test("alignedChunks cuts a blob on segment boundaries, and it opens through the two reused buffers", async () => {
  const data = concat([
    seededBytes(5 * MiB + 12_345, 41),
    new TextEncoder().encode("x".repeat(MiB)),
  ]);
  const { bytes, blobId, boundaries } = await seal(data, { compressLevel: 3 });
  const readerOf = (b: Uint8Array) => {
    let off = 0;
    return (into: Uint8Array) => {
      // Short reads, as a file may give.
      const n = Math.min(into.length, b.length - off, 700_001);
      into.set(b.subarray(off, off + n));
      off += n;
      return n;
    };
  };
  const fill = (read: (into: Uint8Array) => number) => (into: Uint8Array) => {
    let n = 0;
    while (n < into.length) {
      const k = read(into.subarray(n));
      if (k === 0) break;
      n += k;
    }
    return n;
  };
  const size = 2 * MiB + 100;
  // Each chunk is copied before the next is read: the buffers take turns.
  const copies: Uint8Array[] = [];
  const chunks: number[] = [];
  let end = 0;
  for (const c of alignedChunks(fill(readerOf(bytes)), size)) {
    copies.push(c.slice());
    chunks.push(end += c.length);
  }
  assert.ok(same(concat(copies), bytes));
  for (const e of chunks.slice(0, -1)) assert.ok(boundaries.includes(e), `chunk ends at ${e}`);
  assert.ok(chunks.length >= 4);
  // Opened straight from the reused buffers: every byte verifies and comes out right.
  async function* src() {
    yield* alignedChunks(fill(readerOf(bytes)), size);
  }
  const parts: Uint8Array[] = [];
  for await (const p of openBlob(fast, KEYS, blobId, src())) {
    if ("data" in p) parts.push(p.data.slice());
  }
  assert.ok(same(concat(parts), data));
  // A segment length too long for a chunk (a damaged object) ends the alignment: the bytes
  // still all arrive, and opening fails.
  const bad = bytes.slice();
  new DataView(bad.buffer).setUint32(boundaries[1], 3 * MiB, false);
  const badCopies: Uint8Array[] = [];
  for (const c of alignedChunks(fill(readerOf(bad)), size)) badCopies.push(c.slice());
  assert.ok(same(concat(badCopies), bad));
  async function* badSrc() {
    yield* alignedChunks(fill(readerOf(bad)), size);
  }
  await assert.rejects(async () => {
    for await (const _ of openBlob(fast, KEYS, blobId, badSrc())) { /* drain */ }
  }, /impossible length|authenticate/);
});
