// Prints the test vectors of docs/FORMAT.md: a blob sealed with a fixed master key and salt, and
// a pack holding it.
// usage: deno run -A scripts/format_vectors.ts

import { denoSuite } from "../lib/crypto_deno.ts";
import { type BlobHeader, sealBlob, type SealResult } from "../lib/format/blob.ts";
import { concat, fromHex, toHex, utf8 } from "../lib/format/bytes.ts";
import { blobIdFor, ID_KEY_CONTEXT, repoKeys } from "../lib/format/ids.ts";
import { containerKey, KEY_CONTEXT } from "../lib/format/container.ts";
import { entryFrame, PACK_PREAMBLE } from "../lib/format/pack.ts";

/** The fixed inputs of the vectors. */
export const VECTOR_INPUT = {
  master: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
  salt: "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
  content: "hello, n2s\n",
  path: "docs/hello.txt",
};

/** Computes every vector value. */
export async function formatVectors(): Promise<Record<string, string>> {
  const suite = await denoSuite();
  const content = utf8(VECTOR_INPUT.content);
  const h = suite.newHasher();
  h.update(content);
  const fileHash = toHex(h.digest());
  const keys = repoKeys(suite, fromHex(VECTOR_INPUT.master));
  const blobId = blobIdFor(suite, keys.idKey, VECTOR_INPUT.path, fileHash);
  const header: BlobHeader = {
    v: 2,
    path: VECTOR_INPUT.path,
    file_hash: fileHash,
    size: content.length,
    mtime: 1764028800000,
    mode: 0o644,
    source: "example",
    changeset: "01KB0000000000000000000000",
    created: "2025-11-25T00:00:00.000Z",
  };
  let off = 0;
  const reader = {
    read(buf: Uint8Array) {
      if (off >= content.length) return Promise.resolve(null);
      buf.set(content);
      off = content.length;
      return Promise.resolve(content.length);
    },
  };
  const parts: Uint8Array[] = [];
  const res: SealResult = { fileHash: "", size: 0 };
  for await (
    const seg of sealBlob(suite, keys, header, reader, res, {
      salt: fromHex(VECTOR_INPUT.salt),
      compressLevel: 0,
    })
  ) parts.push(...seg);
  const key = containerKey(
    suite,
    "blob",
    fromHex(VECTOR_INPUT.master),
    fromHex(blobId),
    fromHex(VECTOR_INPUT.salt),
  );
  const blob = concat(parts);
  const pack = concat([PACK_PREAMBLE, entryFrame(blobId, blob.length), blob]);
  return {
    file_hash: fileHash,
    id_key_context: ID_KEY_CONTEXT,
    id_key: toHex(keys.idKey),
    blob_id: blobId,
    blob_key_context: KEY_CONTEXT.blob,
    blob_key: toHex(key),
    header_json: JSON.stringify(header),
    blob_hex: toHex(blob),
    pack_hex: toHex(pack),
  };
}

if (import.meta.main) {
  for (const [k, v] of Object.entries(await formatVectors())) console.log(`${k}: ${v}`);
}
