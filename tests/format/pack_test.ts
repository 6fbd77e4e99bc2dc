// Packs: entries found by their frames, each a complete blob container; one destroyed entry,
// frame included, never hides the others; nothing in a pack names a path or an unkeyed id.

import assert from "node:assert/strict";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { openBlob } from "../../lib/format/blob.ts";
import { concat, toHex, utf8 } from "../../lib/format/bytes.ts";
import { blobIdInput, repoKeys } from "../../lib/format/ids.ts";
import { findPackEntries, isPack, PACK_PREAMBLE } from "../../lib/format/pack.ts";
import { sealBatch, sealSmall } from "../../lib/workers/seal_jobs.ts";
import { seededBytes } from "../helpers/fs.ts";

const suite = await denoSuite();
const keys = repoKeys(suite, seededBytes(32, 7));

function hash(data: Uint8Array): string {
  const h = suite.newHasher();
  h.update(data);
  return toHex(h.digest());
}

/** A pack of `n` blobs of a few KiB each (some compressible), and what each holds. */
function pack(n: number) {
  const items = Array.from({ length: n }, (_, i) => {
    const bytes = i % 3 === 0
      ? utf8(`line ${i} of a text that compresses well\n`.repeat(50 + i))
      : seededBytes(500 + 97 * i, i + 1);
    const path = `dir ${i % 4}/file-${i}.dat`;
    const fileHash = hash(bytes);
    return {
      blobId: toHex(suite.keyedHash(keys.idKey, blobIdInput(path, fileHash))),
      path,
      fileHash,
      bytes,
      header: {
        v: 2 as const,
        path,
        file_hash: fileHash,
        size: bytes.length,
        mtime: 1_700_000_000_000 + i,
        mode: 0o640,
        source: "s",
        changeset: "01KB0000000000000000000000",
        created: "2026-12-02T00:00:00.000Z",
      },
    };
  });
  const sealed = sealBatch(suite, keys, items, 1 << 20, 3);
  assert.equal(sealed.fragmentEnd, sealed.buffer.length, "every blob is under the threshold");
  return { items, bytes: concat([PACK_PREAMBLE, sealed.buffer]) };
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/** The content of every entry that opens, by path. */
async function openAll(bytes: Uint8Array): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const e of findPackEntries(bytes)) {
    const parts: Uint8Array[] = [];
    let path = "";
    try {
      for await (
        const p of openBlob(
          suite,
          keys,
          e.blobId,
          once(bytes.subarray(e.offset, e.offset + e.length)),
        )
      ) {
        if ("header" in p) path = p.header.path;
        else parts.push(p.data.slice());
      }
      out.set(path, concat(parts));
    } catch {
      // a damaged entry: reported by the callers that need to
    }
  }
  return out;
}

Deno.test("every entry of a pack is found by its frame and opens as a blob", async () => {
  const { items, bytes } = pack(40);
  assert.ok(isPack(bytes));
  const entries = findPackEntries(bytes);
  assert.deepEqual(entries.map((e) => e.blobId), items.map((i) => i.blobId));
  const got = await openAll(bytes);
  for (const i of items) assert.deepEqual(got.get(i.path), i.bytes, i.path);
});

Deno.test("destroying one entry's bytes, frame included, leaves every other entry readable", async () => {
  const { items, bytes } = pack(30);
  const entries = findPackEntries(bytes);
  for (const victim of [0, 7, 29]) {
    for (const fill of ["zeros", "random", "frame only", "length field"] as const) {
      const bad = bytes.slice();
      const e = entries[victim];
      const frame = e.offset - 40;
      if (fill === "zeros") bad.fill(0, frame, e.offset + e.length);
      else if (fill === "random") bad.set(seededBytes(e.offset + e.length - frame, victim), frame);
      else if (fill === "frame only") bad.fill(0xff, frame, e.offset);
      // A length that points into the middle of the next entry.
      else new DataView(bad.buffer).setUint32(frame + 36, e.length + 100, false);
      const got = await openAll(bad);
      for (const [k, i] of items.entries()) {
        if (k === victim) assert.ok(!got.has(i.path), `${fill}: the destroyed entry must not open`);
        else assert.deepEqual(got.get(i.path), i.bytes, `${fill} at ${victim}: ${i.path}`);
      }
    }
  }
});

Deno.test("a truncated pack keeps every entry before the cut", async () => {
  const { items, bytes } = pack(12);
  const entries = findPackEntries(bytes);
  const cut = entries[8].offset + 10;
  const got = await openAll(bytes.subarray(0, cut));
  assert.deepEqual([...got.keys()].sort(), items.slice(0, 8).map((i) => i.path).sort());
});

Deno.test("a pack names no path, no content hash and no unkeyed blob id", () => {
  const { items, bytes } = pack(20);
  const text = new TextDecoder("latin1").decode(bytes);
  for (const i of items) {
    const unkeyed = suite.hash!(blobIdInput(i.path, i.fileHash));
    for (const needle of [i.path, i.fileHash, toHex(unkeyed), "file-", "dir "]) {
      assert.ok(!text.includes(needle), `"${needle}" appears in the pack`);
    }
    for (
      const raw of [
        unkeyed,
        Uint8Array.from(i.fileHash.match(/../g)!.map((h) => parseInt(h, 16))),
      ]
    ) {
      assert.ok(!text.includes(new TextDecoder("latin1").decode(raw)), "raw digest in the pack");
    }
  }
});

Deno.test("sealBatch seals each file exactly as ContainerWriter does, framed or loose", () => {
  const salt = Uint8Array.from({ length: 16 }, (_, i) => 200 - i);
  const fixed = {
    ...suite,
    randomBytes: (n: number) => n === 16 ? salt.slice() : suite.randomBytes(n),
  };
  const contents = [
    new Uint8Array(0),
    utf8("x"),
    seededBytes(63, 1),
    utf8("y".repeat(64)),
    utf8("compressible text\n".repeat(300)),
    seededBytes(5000, 2),
    seededBytes(1 << 20, 3),
    utf8("z".repeat(1 << 20)),
  ];
  const items = contents.map((bytes, i) => {
    const path = `f${i}`;
    const fileHash = hash(bytes);
    return {
      blobId: toHex(suite.keyedHash(keys.idKey, blobIdInput(path, fileHash))),
      bytes,
      header: {
        v: 2 as const,
        path,
        file_hash: fileHash,
        size: bytes.length,
        mtime: i,
        mode: 0o644,
        source: "s",
        changeset: "01KB0000000000000000000000",
        created: "2026-12-02T00:00:00.000Z",
      },
    };
  });
  for (const level of [0, 3]) {
    const sealed = sealBatch(fixed, keys, items, 4096, level);
    items.forEach((it, k) => {
      const want = concat(sealSmall(fixed, keys, it.blobId, it.header, it.bytes, level));
      const span = sealed.spans[k];
      assert.deepEqual(
        sealed.buffer.subarray(span.start, span.end),
        want,
        `item ${k}, level ${level}`,
      );
      assert.equal(span.packed, want.length < 4096, `item ${k} packed`);
    });
  }
});
