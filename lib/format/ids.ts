// Identifiers: file hashes, keyed blob ids and time-sortable changeset ids (ULIDs).

import { concat, toHex, utf8 } from "./bytes.ts";
import { pathBytes } from "./names.ts";
import type { Suite } from "./suite.ts";

const COLON = utf8(":");

/** BLAKE3 derive_key context of the key that blob ids are computed with (format 2). */
export const ID_KEY_CONTEXT = "n2s 2026-12-02 blob id key v2";

/** id_key = BLAKE3-derive_key(ID_KEY_CONTEXT, master): the key of every blob id. */
export function idKeyFor(suite: Suite, master: Uint8Array): Uint8Array {
  return suite.deriveKey(ID_KEY_CONTEXT, master);
}

/**
 * The bytes a blob id is computed from: the path's bytes (exactly the file system's, see
 * names.ts), ":", and the hex content hash.
 */
export function blobIdInput(path: string | Uint8Array, fileHash: string): Uint8Array {
  return concat([typeof path === "string" ? pathBytes(path) : path, COLON, utf8(fileHash)]);
}

/**
 * blob_id = BLAKE3-keyed(id_key, path ":" file_hash), lowercase hex. Keyed, so that someone
 * holding the repository cannot test whether a known file is stored at a guessed path.
 */
export function blobIdFor(
  suite: Suite,
  idKey: Uint8Array,
  path: string | Uint8Array,
  fileHash: string,
): string {
  return toHex(suite.keyedHash(idKey, blobIdInput(path, fileHash)));
}

/** True for a 64-character lowercase hex string. */
export function isHex256(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

/** True for a 32-character lowercase hex string (repository and pack ids). */
export function isHex128(s: string): boolean {
  return /^[0-9a-f]{32}$/.test(s);
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/**
 * A ULID: 48-bit millisecond time and 80 random bits in Crockford base32. Ids made in the same
 * millisecond by one generator still sort in creation order (the random part is incremented).
 */
export class UlidGenerator {
  #lastTime = -1;
  #lastRandom: Uint8Array = new Uint8Array(10);
  constructor(
    private readonly now: () => number = Date.now,
    private readonly random: (n: number) => Uint8Array = (n) =>
      crypto.getRandomValues(new Uint8Array(n)),
  ) {}

  /** The next id. */
  next(): string {
    let t = this.now();
    if (t <= this.#lastTime) {
      t = this.#lastTime;
      for (let i = 9; i >= 0; i--) {
        if (++this.#lastRandom[i] !== 256) break;
        this.#lastRandom[i] = 0;
      }
    } else {
      this.#lastTime = t;
      this.#lastRandom = this.random(10);
    }
    let s = "";
    let time = t;
    for (let i = 0; i < 10; i++) {
      s = CROCKFORD[time % 32] + s;
      time = Math.floor(time / 32);
    }
    // 80 random bits = 16 base32 characters.
    let bits = 0n;
    for (const b of this.#lastRandom) bits = (bits << 8n) | BigInt(b);
    let r = "";
    for (let i = 0; i < 16; i++) {
      r = CROCKFORD[Number(bits & 31n)] + r;
      bits >>= 5n;
    }
    return s + r;
  }
}

/** True for a well-formed ULID string. */
export function isUlid(s: string): boolean {
  return /^[0-9A-HJKMNP-TV-Z]{26}$/.test(s);
}

/** The keys a repository's blobs are sealed and identified with. */
export interface RepoKeys {
  /** The 32-byte master key. */
  master: Uint8Array;
  /** The key of blob ids, derived from the master key. */
  idKey: Uint8Array;
}

/** The keys derived from a master key. */
export function repoKeys(suite: Suite, master: Uint8Array): RepoKeys {
  return { master, idKey: idKeyFor(suite, master) };
}
