// A Suite from pure JavaScript and WASM (no node: modules): for browsers, the recovery page, and
// as the independent implementation the fast paths are tested against.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { blake3 } from "@noble/hashes/blake3.js";
import { scryptAsync } from "@noble/hashes/scrypt.js";
import { decompress as zstdDecompress } from "fzstd";
import { utf8 } from "./bytes.ts";
import { wasmBlake3 } from "./blake3_wasm.ts";
import type { Aead, Hasher, Suite } from "./suite.ts";

/** ChaCha20-Poly1305 from @noble/ciphers. */
export const nobleAead: Aead = {
  seal(key, nonce, aad, plain) {
    const out = chacha20poly1305(key, nonce, aad).encrypt(plain);
    return [out.subarray(0, out.length - 16), out.subarray(out.length - 16)];
  },
  open(key, nonce, aad, cipher, tag) {
    const joined = new Uint8Array(cipher.length + tag.length);
    joined.set(cipher);
    joined.set(tag, cipher.length);
    return chacha20poly1305(key, nonce, aad).decrypt(joined);
  },
};

/** BLAKE3 derive_key with @noble/hashes (inputs are tiny, so speed does not matter). */
export function nobleDeriveKey(context: string, material: Uint8Array): Uint8Array {
  return blake3(material, { context: utf8(context), dkLen: 32 });
}

/** BLAKE3 keyed_hash with @noble/hashes (a 32-byte key; about 8 µs for a blob id's input). */
export function nobleKeyedHash(key: Uint8Array, data: Uint8Array): Uint8Array {
  return blake3(data, { key });
}

/** An incremental BLAKE3 from @noble/hashes (slow; a test oracle). */
export function nobleHasher(): Hasher {
  let h = blake3.create();
  return {
    update(d) {
      h.update(d);
    },
    digest() {
      const out = h.digest();
      h = blake3.create();
      return out;
    },
  };
}

/**
 * The portable suite: hash-wasm BLAKE3 (keyed_hash and derive_key from noble), noble
 * ChaCha20-Poly1305 and scrypt, fzstd.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { denoSuite, portableSuite } from "@n2s/n2s";
 *
 * // The same primitives in pure JavaScript and WASM: the same bytes as the native suite.
 * const [js, native] = [await portableSuite(), await denoSuite()];
 * const key = new Uint8Array(32).fill(7);
 * const data = new TextEncoder().encode("hello");
 * assert.deepEqual(js.keyedHash(key, data), native.keyedHash(key, data));
 * ```
 */
export async function portableSuite(): Promise<Suite> {
  const newHasher = await wasmBlake3();
  return {
    aead: nobleAead,
    newHasher,
    deriveKey: nobleDeriveKey,
    keyedHash: nobleKeyedHash,
    decompress(data, maxSize) {
      const out = zstdDecompress(data);
      if (out.length > maxSize) throw new Error("segment decompresses beyond its limit");
      return out;
    },
    scrypt: (pass, salt, { N, r, p, dkLen }) =>
      scryptAsync(pass, salt, { N, r, p, dkLen, maxmem: 2 ** 31 }),
    randomBytes: (n) => crypto.getRandomValues(new Uint8Array(n)),
  };
}
