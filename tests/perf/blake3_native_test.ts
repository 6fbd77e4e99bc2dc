// The native BLAKE3 (when installed) and the suite the CLI uses agree with @noble/hashes on
// random inputs of many sizes, fed in uneven pieces.

import assert from "node:assert/strict";
import { blake3 } from "@noble/hashes/blake3.js";
import { nativeBlake3, nativeBlake3Paths } from "../../lib/format/blake3_native.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import type { Hasher } from "../../lib/format/suite.ts";

const SIZES = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 4097, 65536, 100_003, (1 << 20) + 7];

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, o + 65536));
  return out;
}

function checkAgainstNoble(newHasher: () => Hasher): void {
  const h = newHasher();
  for (const n of SIZES) {
    const data = random(n);
    // Uneven pieces exercise the chunk buffering; reusing `h` checks the reset after digest.
    let o = 0;
    for (let step = 1; o < n; step = step * 3 + 1) {
      h.update(data.subarray(o, o + step));
      o += step;
    }
    assert.deepEqual(h.digest(), blake3(data), `size ${n}`);
  }
}

const installed = nativeBlake3Paths().some((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

Deno.test({
  name: "native BLAKE3 matches @noble/hashes on inputs of many sizes",
  ignore: !installed,
  fn() {
    const f = nativeBlake3();
    assert.ok(f, "the library is installed but did not load");
    checkAgainstNoble(f);
  },
});

Deno.test("the suite's BLAKE3 (native or hash-wasm) matches @noble/hashes", async () => {
  checkAgainstNoble((await denoSuite()).newHasher);
});

Deno.test("interleaved native hashers keep separate states", () => {
  const f = nativeBlake3();
  if (!f) return;
  const a = f();
  const b = f();
  const x = random(5000);
  const y = random(7000);
  a.update(x.subarray(0, 100));
  b.update(y.subarray(0, 3000));
  a.update(x.subarray(100));
  b.update(y.subarray(3000));
  assert.deepEqual(a.digest(), blake3(x));
  assert.deepEqual(b.digest(), blake3(y));
});
