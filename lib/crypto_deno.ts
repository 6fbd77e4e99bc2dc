// The fast Suite for Deno: ChaCha20-Poly1305 and zstd from the system's OpenSSL and libzstd
// through FFI when they load (else node:crypto and node:zlib), scrypt from node:crypto, and
// BLAKE3 from the native addon that comes from npm with n2s (@napi-rs/blake-hash, see
// format/blake3_napi.ts), else from hash-wasm. Everything here is checked against the portable
// suite in the tests.

import { createCipheriv, createDecipheriv, randomFillSync, scrypt } from "node:crypto";
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { Buffer } from "node:buffer";
import { napiBlake3 } from "./format/blake3_napi.ts";
import { nativeAead, nativeZstd } from "./format/native_crypto.ts";
import type { Aead, Hasher, Suite } from "./format/suite.ts";

/** ChaCha20-Poly1305 through node:crypto: about 0.8 GB/s here (the fallback). */
export const nodeAead: Aead = {
  seal(key, nonce, aad, plain) {
    const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: plain.length });
    const ct = c.update(plain);
    c.final();
    return [ct, c.getAuthTag()];
  },
  open(key, nonce, aad, cipher, tag) {
    const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
    d.setAAD(aad, { plaintextLength: cipher.length });
    d.setAuthTag(tag);
    const pt = d.update(cipher);
    d.final(); // throws when the tag does not verify; `pt` is then discarded
    return pt;
  },
};

function nodeScrypt(
  pass: Uint8Array,
  salt: Uint8Array,
  { N, r, p, dkLen }: { N: number; r: number; p: number; dkLen: number },
): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    scrypt(pass, salt, dkLen, { N, r, p, maxmem: 256 * N * r + (1 << 20) }, (err, key) => {
      if (err) reject(err);
      else resolve(new Uint8Array(key.buffer, key.byteOffset, key.length));
    })
  );
}

/** zstd through node:zlib (a new context per call). */
const nodeZstd = {
  // The pledged size lets zstd size its tables to the input (small files compress about twice
  // as fast), and an output buffer of the input's size avoids growing it.
  compress: (data: Uint8Array, level: number): Uint8Array =>
    zstdCompressSync(
      data,
      {
        params: { [constants.ZSTD_c_compressionLevel]: level },
        pledgedSrcSize: data.length,
        chunkSize: Math.max(1024, data.length + 64),
      } as Parameters<typeof zstdCompressSync>[1],
    ),
  decompress: (data: Uint8Array, maxSize: number): Uint8Array =>
    zstdDecompressSync(Buffer.from(data.buffer, data.byteOffset, data.length), {
      maxOutputLength: maxSize,
    }),
};

/** Which implementation each primitive of `denoSuite` uses, for benchmarks and messages. */
export interface SuiteInfo {
  /** "napi": @napi-rs/blake-hash; "hash-wasm" when it cannot load or N2S_NO_NATIVE=1. */
  blake3: "napi" | "hash-wasm";
  /** "openssl": the system's libcrypto through FFI; else node:crypto. */
  aead: "openssl" | "node:crypto";
  /** "libzstd": the system's libzstd through FFI; else node:zlib. */
  zstd: "libzstd" | "node:zlib";
}

/**
 * The fast suite used by the CLI and library in Deno. Each call makes its own native contexts,
 * so a suite belongs to one thread (a Worker makes its own).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { denoSuite } from "@n2s/n2s";
 *
 * const suite = await denoSuite();
 * assert.equal(suite.keyedHash(new Uint8Array(32), new Uint8Array(0)).length, 32);
 * // Which implementation each primitive uses: native ones where they load.
 * assert.ok(["napi", "hash-wasm"].includes(suite.info.blake3));
 * ```
 */
export async function denoSuite(): Promise<Suite & { info: SuiteInfo }> {
  const b3 = await napiBlake3();
  let newHasher: () => Hasher;
  let keyedHash: (key: Uint8Array, data: Uint8Array) => Uint8Array;
  let deriveKey: (context: string, material: Uint8Array) => Uint8Array;
  if (b3) {
    ({ newHasher, keyedHash, deriveKey } = b3);
  } else {
    // The WASM and JavaScript fallbacks are loaded only when needed: every Worker loads this
    // module, and their code is megabytes of each thread's memory.
    const wasm = await import("./format/blake3_wasm.ts");
    [newHasher, keyedHash] = await Promise.all([wasm.wasmBlake3(), wasm.wasmKeyedHash()]);
    deriveKey = (await import("./format/suite_js.ts")).nobleDeriveKey;
  }
  const aead = nativeAead(nodeAead);
  const zstd = nativeZstd();
  return {
    aead: aead ?? nodeAead,
    newHasher,
    hash: b3?.hash,
    keyedHash,
    deriveKey,
    compress: (zstd ?? nodeZstd).compress,
    compressTo: zstd?.compressTo,
    decompressTo: zstd?.decompressTo,
    decompress: (zstd ?? nodeZstd).decompress,
    scrypt: nodeScrypt,
    randomBytes: (n) => randomFillSync(new Uint8Array(n)),
    info: {
      blake3: b3 ? "napi" : "hash-wasm",
      aead: aead ? "openssl" : "node:crypto",
      zstd: zstd ? "libzstd" : "node:zlib",
    },
  };
}
