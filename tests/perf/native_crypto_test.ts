// The native primitives (OpenSSL ChaCha20-Poly1305 and libzstd) agree with the independent
// JavaScript implementations on random inputs of many sizes, and the suite the CLI uses agrees
// with them whichever implementation it picked. BLAKE3's are in tests/perf/blake3_napi_test.ts.

import assert from "node:assert/strict";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { decompress as fzstd } from "fzstd";
import { nativeAead, nativeZstd } from "../../lib/format/native_crypto.ts";
import { denoSuite, nodeAead } from "../../lib/crypto_deno.ts";
import { nobleAead } from "../../lib/format/suite_js.ts";
import type { Aead } from "../../lib/format/suite.ts";

const SIZES = [0, 1, 15, 16, 17, 63, 64, 65, 255, 4096, 65537, (1 << 20) + 1];

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, o + 65536));
  return out;
}

function text(n: number): Uint8Array {
  const words = ["alpha ", "beta ", "gamma ", "delta\n", "epsilon "];
  let s = "";
  let i = 0;
  while (s.length < n) s += words[(i++ * 7) % words.length];
  return new TextEncoder().encode(s.slice(0, n));
}

/** Byte equality whatever the view type (node:crypto returns Buffers). */
function same(a: Uint8Array, b: Uint8Array, what: string): void {
  assert.deepEqual(Uint8Array.from(a), Uint8Array.from(b), what);
}

function checkAead(aead: Aead): void {
  for (const n of SIZES) {
    const key = random(32);
    const nonce = random(12);
    const aad = random(n % 50);
    const plain = random(n);
    const [ct, tag] = aead.seal(key, nonce, aad, plain);
    const joined = chacha20poly1305(key, nonce, aad).encrypt(plain);
    same(ct, joined.subarray(0, n), `ciphertext, size ${n}`);
    same(tag, joined.subarray(n), `tag, size ${n}`);
    same(aead.open(key, nonce, aad, ct, tag), plain, `open, size ${n}`);
    // Any flipped bit fails, in the ciphertext, the tag or the additional data.
    const bad = tag.slice();
    bad[n % 16] ^= 1;
    assert.throws(() => aead.open(key, nonce, aad, ct, bad), `bad tag, size ${n}`);
    if (n > 0) {
      const badCt = ct.slice();
      badCt[n >> 1] ^= 0x80;
      assert.throws(() => aead.open(key, nonce, aad, badCt, tag), `bad ciphertext, size ${n}`);
    }
    assert.throws(() => aead.open(key, nonce, random(3), ct, tag), `bad aad, size ${n}`);
  }
}

Deno.test("OpenSSL ChaCha20-Poly1305 through FFI matches @noble/ciphers", () => {
  const aead = nativeAead(nodeAead);
  assert.ok(aead, "libcrypto.so.3 did not load (is OpenSSL installed? run bash scripts/setup.sh)");
  checkAead(aead);
});

Deno.test("the suite's ChaCha20-Poly1305 and the fallbacks match @noble/ciphers", async () => {
  checkAead((await denoSuite()).aead);
  checkAead(nodeAead);
  checkAead(nobleAead);
});

Deno.test("libzstd through FFI round-trips and its frames open with fzstd", () => {
  const z = nativeZstd();
  assert.ok(z, "libzstd.so.1 did not load (is libzstd installed? run bash scripts/setup.sh)");
  for (const n of SIZES) {
    for (const data of [text(n), random(n)]) {
      const c = z.compress(data, 3);
      if (c === data) {
        // Not smaller: the container stores such a segment as is.
        continue;
      }
      assert.ok(c.length < data.length || n < 64, `size ${n}`);
      assert.deepEqual(fzstd(c), data, `fzstd, size ${n}`);
      assert.deepEqual(z.decompress(c, 1 << 20 | 64), data, `libzstd, size ${n}`);
    }
  }
  assert.throws(() => z.decompress(random(100), 1 << 20));
  const big = text(1 << 20);
  assert.throws(() => z.decompress(z.compress(big, 3), 1000), "output beyond maxSize");
});

Deno.test("OpenSSL sealPartsTo and openTo match @noble/ciphers", () => {
  const aead = nativeAead(nodeAead);
  assert.ok(aead, "libcrypto.so.3 did not load (is OpenSSL installed? run bash scripts/setup.sh)");
  for (const n of SIZES) {
    const key = random(32);
    const nonce = random(12);
    const aad = random(40);
    const plain = random(n);
    const cut = Math.max(1, n >> 1);
    const out = new Uint8Array(n + 16 + 9);
    const written = aead.sealPartsTo(
      key,
      nonce,
      aad,
      [plain.subarray(0, 1), plain.subarray(1, cut), plain.subarray(cut)],
      out,
      9,
    );
    assert.equal(written, n + 16);
    same(
      out.subarray(9, 9 + n + 16),
      chacha20poly1305(key, nonce, aad).encrypt(plain),
      `size ${n}`,
    );
    const into = new Uint8Array(n + 5);
    const back = aead.openTo(
      key,
      nonce,
      aad,
      out.subarray(9, 9 + n),
      out.subarray(9 + n, 25 + n),
      into,
    );
    same(back, plain, `openTo, size ${n}`);
  }
});
