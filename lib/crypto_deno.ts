// The fast Suite for Deno: node:crypto ChaCha20-Poly1305 and scrypt, node:zlib zstd, and BLAKE3
// from the native C library when it is installed (scripts/setup/perf.sh), else from hash-wasm.
// Everything here is checked against the portable suite in the tests.

import { createCipheriv, createDecipheriv, randomFillSync, scrypt } from "node:crypto";
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { Buffer } from "node:buffer";
import { wasmBlake3 } from "./format/blake3_wasm.ts";
import { nativeBlake3 } from "./format/blake3_native.ts";
import { nobleDeriveKey } from "./format/suite_js.ts";
import type { Aead, Suite } from "./format/suite.ts";

/** ChaCha20-Poly1305 through node:crypto (OpenSSL): about 1 GB/s here. */
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

/** The fast suite used by the CLI and library in Deno. */
export async function denoSuite(): Promise<Suite> {
  const newHasher = nativeBlake3() ?? await wasmBlake3();
  return {
    aead: nodeAead,
    newHasher,
    deriveKey: nobleDeriveKey,
    // The pledged size lets zstd size its tables to the input (small files compress about twice
    // as fast), and an output buffer of the input's size avoids growing it.
    compress: (data, level) =>
      zstdCompressSync(
        data,
        {
          params: { [constants.ZSTD_c_compressionLevel]: level },
          pledgedSrcSize: data.length,
          chunkSize: Math.max(1024, data.length + 64),
        } as Parameters<typeof zstdCompressSync>[1],
      ),
    decompress: (data, maxSize) =>
      zstdDecompressSync(Buffer.from(data.buffer, data.byteOffset, data.length), {
        maxOutputLength: maxSize,
      }),
    scrypt: nodeScrypt,
    randomBytes: (n) => randomFillSync(new Uint8Array(n)),
  };
}
