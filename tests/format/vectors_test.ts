// docs/FORMAT.md and the code agree: the vectors on the page are what the code produces, and
// the page's blob opens with the portable (browser) implementation.

import assert from "node:assert/strict";
import { formatVectors, VECTOR_INPUT } from "../../scripts/format_vectors.ts";
import { openBlob } from "../../lib/format/blob.ts";
import { fromHex, fromUtf8 } from "../../lib/format/bytes.ts";
import { portableSuite } from "../../lib/format/suite_js.ts";

const doc = Deno.readTextFileSync(new URL("../../docs/FORMAT.md", import.meta.url));

Deno.test("every vector in docs/FORMAT.md equals what the code computes", async () => {
  const v = await formatVectors();
  for (const k of ["file_hash", "blob_id", "blob_key", "header_json", "blob_key_context"]) {
    assert.ok(doc.includes(v[k]), `FORMAT.md lacks the current ${k}`);
  }
  const block = doc.slice(doc.indexOf("The whole blob object")).split("```")[1].replace(/\s+/g, "");
  assert.equal(block, v.blob_hex);
});

Deno.test("the blob of docs/FORMAT.md opens with the portable implementation", async () => {
  const v = await formatVectors();
  const suite = await portableSuite();
  const parts: Uint8Array[] = [];
  async function* src() {
    yield fromHex(v.blob_hex);
  }
  for await (const p of openBlob(suite, fromHex(VECTOR_INPUT.master), v.blob_id, src())) {
    if ("data" in p) parts.push(p.data);
  }
  assert.equal(fromUtf8(parts[0]), VECTOR_INPUT.content);
});
