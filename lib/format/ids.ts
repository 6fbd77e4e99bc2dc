// Identifiers: file hashes, blob ids and time-sortable changeset ids (ULIDs).

import { concat, toHex, utf8 } from "./bytes.ts";
import { hashBytes, type Suite } from "./suite.ts";

const COLON = utf8(":");

/** blob_id = BLAKE3-256(utf8(path) ":" file_hash), lowercase hex. */
export function blobIdFor(suite: Suite, path: string, fileHash: string): string {
  return toHex(hashBytes(suite, concat([utf8(path), COLON, utf8(fileHash)])));
}

/** True for a 64-character lowercase hex string. */
export function isHex256(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
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
