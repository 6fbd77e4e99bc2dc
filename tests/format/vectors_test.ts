// docs/FORMAT.md and the code agree: the vectors on the page are what the code produces, and
// the page's blob and pack open with the portable (browser) implementation.

import assert from "node:assert/strict";
import { formatVectors, VECTOR_INPUT } from "../../scripts/format_vectors.ts";
import { openBlob } from "../../lib/format/blob.ts";
import { fromHex, fromUtf8 } from "../../lib/format/bytes.ts";
import { repoKeys } from "../../lib/format/ids.ts";
import { findPackEntries } from "../../lib/format/pack.ts";
import { portableSuite } from "../../lib/format/suite_js.ts";

const doc = Deno.readTextFileSync(new URL("../../docs/FORMAT.md", import.meta.url));

function block(after: string): string {
  return doc.slice(doc.indexOf(after)).split("```")[1].replace(/\s+/g, "");
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

Deno.test("every vector in docs/FORMAT.md equals what the code computes", async () => {
  const v = await formatVectors();
  for (
    const k of [
      "file_hash",
      "id_key",
      "id_key_context",
      "blob_id",
      "blob_key",
      "header_json",
      "blob_key_context",
    ]
  ) {
    assert.ok(doc.includes(v[k]), `FORMAT.md lacks the current ${k}`);
  }
  assert.equal(block("The whole blob object"), v.blob_hex);
  assert.equal(block("The same blob as the only entry of a pack"), v.pack_hex);
});

Deno.test("the blob and the pack of docs/FORMAT.md open with the portable implementation", async () => {
  const v = await formatVectors();
  const suite = await portableSuite();
  const keys = repoKeys(suite, fromHex(VECTOR_INPUT.master));
  const open = async (blobId: string, bytes: Uint8Array) => {
    const parts: Uint8Array[] = [];
    for await (const p of openBlob(suite, keys, blobId, once(bytes))) {
      if ("data" in p) parts.push(p.data);
    }
    return fromUtf8(parts[0]);
  };
  assert.equal(
    await open(v.blob_id, fromHex(block("The whole blob object"))),
    VECTOR_INPUT.content,
  );
  const pack = fromHex(block("The same blob as the only entry of a pack"));
  const entries = findPackEntries(pack);
  assert.deepEqual(entries, [{ blobId: v.blob_id, offset: 48, length: 326 }]);
  assert.equal(await open(v.blob_id, pack.subarray(48, 48 + 326)), VECTOR_INPUT.content);
});
