// Optional native ChaCha20-Poly1305 and zstd: the system's OpenSSL (libcrypto.so.3) and libzstd
// (libzstd.so.1) loaded with Deno.dlopen, with one reusable context each. OpenSSL's assembly runs
// ChaCha20-Poly1305 about three times faster than node:crypto here, and a reused zstd context
// saves setting one up for every small file. Each loader returns null when the library, the FFI
// permission or Deno.dlopen is missing (or N2S_NO_NATIVE=1), so callers fall back to node:.
// Every result is checked against @noble/ciphers and fzstd in tests/perf.

import { concat } from "./bytes.ts";
import type { Aead } from "./suite.ts";

const CRYPTO_LIBS = ["libcrypto.so.3", "libcrypto.so"];
const ZSTD_LIBS = ["libzstd.so.1", "libzstd.so"];

const CRYPTO_SYMBOLS = {
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_chacha20_poly1305: { parameters: [], result: "pointer" },
  EVP_CipherInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  EVP_CipherUpdate: { parameters: ["pointer", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  EVP_CipherFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
} as const;

const ZSTD_SYMBOLS = {
  ZSTD_createCCtx: { parameters: [], result: "pointer" },
  ZSTD_createDCtx: { parameters: [], result: "pointer" },
  ZSTD_compressCCtx: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize", "i32"],
    result: "usize",
  },
  ZSTD_decompressDCtx: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "usize",
  },
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
} as const;

const CTRL_AEAD_GET_TAG = 0x10;
const CTRL_AEAD_SET_TAG = 0x11;
/** The AEAD calls take an `int` length; larger inputs go to the fallback. */
const INT_MAX = 0x7fffffff;

/** True unless N2S_NO_NATIVE=1 or the runtime has no FFI. */
export function nativeAllowed(): boolean {
  if (typeof Deno?.dlopen !== "function") return false;
  try {
    return Deno.env.get("N2S_NO_NATIVE") !== "1";
  } catch {
    return true;
  }
}

function ffiGranted(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

function open<S extends Deno.ForeignLibraryInterface>(
  names: string[],
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | null {
  if (!nativeAllowed() || !ffiGranted()) return null;
  for (const name of names) {
    try {
      return Deno.dlopen(name, symbols).symbols;
    } catch {
      // not installed under this name, or another ABI: try the next one
    }
  }
  return null;
}

let cryptoLib: Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>["symbols"] | null | undefined;

/**
 * ChaCha20-Poly1305 from the system's OpenSSL, or null. The contexts are per instance and the
 * calls synchronous, so one instance serves a whole thread (each Worker makes its own).
 */
export function nativeAead(fallback: Aead): NativeAead | null {
  if (cryptoLib === undefined) cryptoLib = open(CRYPTO_LIBS, CRYPTO_SYMBOLS);
  const lib = cryptoLib;
  if (!lib) return null;
  try {
    const cipher = lib.EVP_chacha20_poly1305();
    const enc = lib.EVP_CIPHER_CTX_new();
    const dec = lib.EVP_CIPHER_CTX_new();
    if (!cipher || !enc || !dec) return null;
    if (
      lib.EVP_CipherInit_ex(enc, cipher, null, null, null, 1) !== 1 ||
      lib.EVP_CipherInit_ex(dec, cipher, null, null, null, 0) !== 1
    ) return null;
    const outLen = new Int32Array(1);
    const outLenBytes = new Uint8Array(outLen.buffer);
    const scratch = new Uint8Array(16);
    const fail = (what: string): never => {
      throw new Error(`OpenSSL ChaCha20-Poly1305 ${what} failed`);
    };
    const aead: NativeAead = {
      seal(key, nonce, aad, plain) {
        if (plain.length > INT_MAX || aad.length > INT_MAX) {
          return fallback.seal(key, nonce, aad, plain);
        }
        const ct = new Uint8Array(plain.length);
        const tag = new Uint8Array(16);
        if (lib.EVP_CipherInit_ex(enc, null, null, key, nonce, 1) !== 1) fail("init");
        if (aad.length > 0 && lib.EVP_CipherUpdate(enc, null, outLenBytes, aad, aad.length) !== 1) {
          fail("aad");
        }
        if (
          plain.length > 0 && lib.EVP_CipherUpdate(enc, ct, outLenBytes, plain, plain.length) !== 1
        ) {
          fail("update");
        }
        if (lib.EVP_CipherFinal_ex(enc, scratch, outLenBytes) !== 1) fail("final");
        if (lib.EVP_CIPHER_CTX_ctrl(enc, CTRL_AEAD_GET_TAG, 16, tag) !== 1) fail("tag");
        return [ct, tag];
      },
      sealPartsTo(key, nonce, aad, parts, out, offset) {
        let n = 0;
        for (const p of parts) n += p.length;
        if (n > INT_MAX || aad.length > INT_MAX || out.length < offset + n + 16) {
          const [ct, tag] = fallback.seal(
            key,
            nonce,
            aad,
            parts.length === 1 ? parts[0] : concat(parts),
          );
          out.set(ct, offset);
          out.set(tag, offset + ct.length);
          return ct.length + 16;
        }
        if (lib.EVP_CipherInit_ex(enc, null, null, key, nonce, 1) !== 1) fail("init");
        if (aad.length > 0 && lib.EVP_CipherUpdate(enc, null, outLenBytes, aad, aad.length) !== 1) {
          fail("aad");
        }
        let o = offset;
        for (const p of parts) {
          if (p.length === 0) continue;
          if (lib.EVP_CipherUpdate(enc, out.subarray(o), outLenBytes, p, p.length) !== 1) {
            fail("update");
          }
          o += outLen[0];
        }
        if (lib.EVP_CipherFinal_ex(enc, scratch, outLenBytes) !== 1) fail("final");
        if (lib.EVP_CIPHER_CTX_ctrl(enc, CTRL_AEAD_GET_TAG, 16, scratch) !== 1) fail("tag");
        out.set(scratch, o);
        return o + 16 - offset;
      },
      open(key, nonce, aad, cipherText, tag) {
        return this.openTo(key, nonce, aad, cipherText, tag, new Uint8Array(cipherText.length));
      },
      openTo(key, nonce, aad, cipherText, tag, out) {
        if (cipherText.length > INT_MAX || aad.length > INT_MAX || out.length < cipherText.length) {
          return fallback.open(key, nonce, aad, cipherText, tag);
        }
        const pt = out.subarray(0, cipherText.length);
        if (lib.EVP_CipherInit_ex(dec, null, null, key, nonce, 0) !== 1) fail("init");
        // OpenSSL takes the tag through a non-const pointer: hand it a copy.
        scratch.set(tag.subarray(0, 16));
        if (lib.EVP_CIPHER_CTX_ctrl(dec, CTRL_AEAD_SET_TAG, 16, scratch) !== 1) fail("set tag");
        if (aad.length > 0 && lib.EVP_CipherUpdate(dec, null, outLenBytes, aad, aad.length) !== 1) {
          fail("aad");
        }
        if (
          cipherText.length > 0 &&
          lib.EVP_CipherUpdate(dec, pt, outLenBytes, cipherText, cipherText.length) !== 1
        ) fail("update");
        if (lib.EVP_CipherFinal_ex(dec, scratch, outLenBytes) !== 1) {
          pt.fill(0);
          throw new Error("ChaCha20-Poly1305: the tag does not verify");
        }
        return pt;
      },
    };
    // One known answer (RFC 8439, 2.8.2) before trusting the library.
    return selfTest(aead) ? aead : null;
  } catch {
    return null;
  }
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
}

function selfTest(aead: NativeAead): boolean {
  const key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  const nonce = hex("070000004041424344454647");
  const aad = hex("50515253c0c1c2c3c4c5c6c7");
  const plain = new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the " +
      "future, sunscreen would be it.",
  );
  const [ct, tag] = aead.seal(key, nonce, aad, plain);
  const hexOf = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  if (hexOf(tag) !== "1ae10b594f09e26a7e902ecbd0600691") return false;
  if (!hexOf(ct).startsWith("d31a8d34648e60db7b86afbc53ef7ec2")) return false;
  const back = aead.open(key, nonce, aad, ct, tag);
  return back.length === plain.length && back.every((b, i) => b === plain[i]);
}

/** The native AEAD, which can also work in buffers the caller owns. */
export interface NativeAead extends Aead {
  /**
   * Encrypts the concatenation of `parts` into `out` at `offset`: ciphertext, then the 16-byte
   * tag. Returns the bytes written (the parts' length + 16).
   */
  sealPartsTo(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
    parts: Uint8Array[],
    out: Uint8Array,
    offset: number,
  ): number;
  /** Like `open`, but the plaintext is written to the start of `out` (a view of it returned). */
  openTo(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
    cipher: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): Uint8Array;
}

/** zstd through a reused context: compress and decompress one segment at a time. */
export interface NativeZstd {
  compress(data: Uint8Array, level: number): Uint8Array;
  /** Compresses into `out`; the bytes written, or -1 when the frame does not fit. */
  compressTo(data: Uint8Array, level: number, out: Uint8Array): number;
  /** Decompresses into `out` (at most its length); the bytes written. */
  decompressTo(data: Uint8Array, out: Uint8Array): number;
  decompress(data: Uint8Array, maxSize: number): Uint8Array;
}

let zstdLib: Deno.DynamicLibrary<typeof ZSTD_SYMBOLS>["symbols"] | null | undefined;

/** zstd from the system's libzstd, or null. One instance per thread. */
export function nativeZstd(): NativeZstd | null {
  if (zstdLib === undefined) zstdLib = open(ZSTD_LIBS, ZSTD_SYMBOLS);
  const lib = zstdLib;
  if (!lib) return null;
  const cctx = lib.ZSTD_createCCtx();
  const dctx = lib.ZSTD_createDCtx();
  if (!cctx || !dctx) return null;
  let out = new Uint8Array(0);
  const scratch = (n: number) => {
    if (out.length < n) out = new Uint8Array(Math.max(n, 64 << 10));
    return out;
  };
  const errorName = (r: number | bigint) => {
    const p = lib.ZSTD_getErrorName(BigInt(r));
    return p ? new Deno.UnsafePointerView(p).getCString() : "unknown error";
  };
  return {
    compress(data, level) {
      // Room for the input's size only: output that does not fit is not worth storing. Then the
      // input itself comes back, which the container stores as is (it is not smaller).
      const buf = scratch(data.length);
      const n = BigInt(data.length);
      const r = lib.ZSTD_compressCCtx(cctx, buf, n, data, n, level);
      if (lib.ZSTD_isError(r)) return data;
      return buf.slice(0, Number(r));
    },
    decompressTo(data, dst) {
      const r = lib.ZSTD_decompressDCtx(dctx, dst, BigInt(dst.length), data, BigInt(data.length));
      if (lib.ZSTD_isError(r)) throw new Error(`zstd: ${errorName(r)}`);
      return Number(r);
    },
    compressTo(data, level, dst) {
      const r = lib.ZSTD_compressCCtx(
        cctx,
        dst,
        BigInt(dst.length),
        data,
        BigInt(data.length),
        level,
      );
      return lib.ZSTD_isError(r) ? -1 : Number(r);
    },
    decompress(data, maxSize) {
      const buf = scratch(maxSize);
      const r = lib.ZSTD_decompressDCtx(dctx, buf, BigInt(maxSize), data, BigInt(data.length));
      if (lib.ZSTD_isError(r)) throw new Error(`zstd: ${errorName(r)}`);
      return buf.slice(0, Number(r));
    },
  };
}
