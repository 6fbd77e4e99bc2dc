// The primitives the format needs, behind one interface, so that the same container code
// runs on node:crypto in Deno and on pure JavaScript/WASM in a browser.

/** An incremental BLAKE3-256 hasher. */
export interface Hasher {
  /** Feeds more bytes. */
  update(data: Uint8Array): void;
  /** The 32-byte digest; the hasher is reset and may be reused after this call. */
  digest(): Uint8Array;
}

/** ChaCha20-Poly1305 (RFC 8439) with a 32-byte key, 12-byte nonce and 16-byte tag. */
export interface Aead {
  /** Encrypts; returns ciphertext and tag as separate arrays (no copy to join them). */
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array): [
    Uint8Array,
    Uint8Array,
  ];
  /** Decrypts and authenticates; throws if the tag does not verify. */
  open(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
    cipher: Uint8Array,
    tag: Uint8Array,
  ): Uint8Array;
}

/** Codec numbers used as the first plaintext byte of a body segment. */
export const CODEC_STORED = 0;
/** zstd frame, one per segment. */
export const CODEC_ZSTD = 1;

/** The primitive set a container reader or writer uses. */
export interface Suite {
  /** ChaCha20-Poly1305. */
  aead: Aead;
  /** A new incremental BLAKE3-256 hasher. */
  newHasher(): Hasher;
  /** BLAKE3 derive_key mode: a 32-byte key from a context string and key material. */
  deriveKey(context: string, material: Uint8Array): Uint8Array;
  /**
   * BLAKE3-256 in keyed mode (keyed_hash) of bytes in memory, with a 32-byte key. Called once per
   * file on short inputs (blob ids), so implementations keep the per-call cost low.
   */
  keyedHash(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** One-shot BLAKE3-256 of bytes in memory, when the suite has a faster way than a hasher. */
  hash?(data: Uint8Array): Uint8Array;
  /**
   * zstd-compresses a segment; undefined when the suite cannot compress. It may return its input
   * itself (never smaller) when compression would not make it smaller.
   */
  compress?(data: Uint8Array, level: number): Uint8Array;
  /**
   * zstd-compresses `data` into `out` and returns the bytes written, or -1 when the frame does
   * not fit in `out` (so not worth storing). Optional: suites without it use `compress`.
   */
  compressTo?(data: Uint8Array, level: number, out: Uint8Array): number;
  /** Decompresses a zstd frame of at most `maxSize` bytes of output. */
  decompress(data: Uint8Array, maxSize: number): Uint8Array;
  /** Decompresses into `out` and returns the bytes written (optional, like compressTo). */
  decompressTo?(data: Uint8Array, out: Uint8Array): number;
  /** scrypt with the given cost parameters. */
  scrypt(
    passphrase: Uint8Array,
    salt: Uint8Array,
    params: { N: number; r: number; p: number; dkLen: number },
  ): Promise<Uint8Array>;
  /** Cryptographically secure random bytes. */
  randomBytes(n: number): Uint8Array;
}

/** One-shot BLAKE3-256 with a suite's hasher. */
export function hashBytes(suite: Suite, data: Uint8Array): Uint8Array {
  const h = suite.newHasher();
  h.update(data);
  return h.digest();
}
