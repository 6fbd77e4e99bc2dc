// The sealed container shared by blobs, changeset manifests and locks: an 8-byte preamble, a salt,
// and a STREAM of ChaCha20-Poly1305 segments whose nonces count up and flag the last one. No I/O
// here.

import { concat, fromUtf8, u32be, utf8 } from "./bytes.ts";
import { CODEC_STORED, CODEC_ZSTD, type Suite } from "./suite.ts";

/** What a container holds. */
export type ContainerKind = "blob" | "changeset" | "lock";

/** The 4-byte magic of each kind ("N2SB", "N2SC", "N2SL"). */
export const MAGIC: Record<ContainerKind, Uint8Array> = {
  blob: utf8("N2SB"),
  changeset: utf8("N2SC"),
  lock: utf8("N2SL"),
};
/** Format version written in byte 4 of the preamble (format 2: keyed blob ids, packs). */
export const FORMAT_VERSION = 2;
/** Largest amount of file data in one body segment. */
export const SEGMENT_DATA_MAX = 1 << 20;
/** Largest header segment plaintext accepted. */
export const HEADER_MAX = 16 << 20;
/** Salt length in bytes. */
export const SALT_BYTES = 16;
const TAG_BYTES = 16;
const PREAMBLE_BYTES = 8;

/** BLAKE3 derive_key context strings, one per purpose, with the format version in them. */
export const KEY_CONTEXT: Record<ContainerKind, string> = {
  blob: "n2s 2026-12-02 blob container key v2",
  changeset: "n2s 2026-12-02 changeset manifest key v2",
  lock: "n2s 2026-12-02 repository lock key v2",
};

/** An error opening a container: tampering, truncation, a wrong key, or a malformed stream. */
export class ContainerError extends Error {
  /** The error's name. */
  override name = "ContainerError";
}

/** The 8-byte preamble for a kind: magic, version, flags, two reserved zero bytes. */
export function preambleFor(kind: ContainerKind, flags = 0): Uint8Array {
  const p = new Uint8Array(PREAMBLE_BYTES);
  p.set(MAGIC[kind], 0);
  p[4] = FORMAT_VERSION;
  p[5] = flags;
  return p;
}

/** Nonce of segment `i`: 11-byte big-endian counter, then 1 on the last segment, else 0. */
export function segmentNonce(i: number, last: boolean): Uint8Array {
  const n = new Uint8Array(12);
  let v = i;
  for (let b = 10; b >= 0 && v > 0; b--) {
    n[b] = v % 256;
    v = Math.floor(v / 256);
  }
  n[11] = last ? 1 : 0;
  return n;
}

/** key = BLAKE3 derive_key(context, master || id || salt). */
export function containerKey(
  suite: Suite,
  kind: ContainerKind,
  master: Uint8Array,
  rawId: Uint8Array,
  salt: Uint8Array,
): Uint8Array {
  return suite.deriveKey(KEY_CONTEXT[kind], concat([master, rawId, salt]));
}

/** Options for writing a container. */
export interface WriterOptions {
  /** 16 bytes; random when absent. */
  salt?: Uint8Array;
  /** zstd level for body segments; 0 stores everything as is. */
  compressLevel?: number;
}

/**
 * Seals a container segment by segment. Call `start` once, then `body` for each piece of at
 * most SEGMENT_DATA_MAX bytes, the last call with `last = true` (its data may be empty).
 * Each call returns the bytes to append to the object, in order.
 */
export class ContainerWriter {
  readonly #suite: Suite;
  readonly #key: Uint8Array;
  readonly #aad: Uint8Array;
  readonly #salt: Uint8Array;
  readonly #level: number;
  readonly #preamble: Uint8Array;
  #index = 0;
  #done = false;
  #skipCompression = 0;

  constructor(
    suite: Suite,
    kind: ContainerKind,
    master: Uint8Array,
    rawId: Uint8Array,
    opts: WriterOptions = {},
  ) {
    this.#suite = suite;
    this.#salt = opts.salt ?? suite.randomBytes(SALT_BYTES);
    if (this.#salt.length !== SALT_BYTES) throw new Error("salt must be 16 bytes");
    this.#level = suite.compress ? (opts.compressLevel ?? 3) : 0;
    this.#preamble = preambleFor(kind);
    this.#aad = concat([this.#preamble, rawId]);
    this.#key = containerKey(suite, kind, master, rawId, this.#salt);
  }

  /** Preamble, salt and the sealed header segment. */
  start(header: unknown): Uint8Array[] {
    if (this.#index !== 0) throw new Error("container already started");
    const json = utf8(JSON.stringify(header));
    if (json.length > HEADER_MAX) throw new Error("container header too large");
    return [this.#preamble, this.#salt, ...this.#seal([json], false)];
  }

  /** Seals one body segment of file data. */
  body(data: Uint8Array, last: boolean): Uint8Array[] {
    if (this.#index === 0) throw new Error("container not started");
    if (this.#done) throw new Error("container already finished");
    if (data.length > SEGMENT_DATA_MAX) throw new Error("segment too large");
    if (data.length === 0) {
      if (!last) throw new Error("only the final segment may be empty");
      return this.#seal([], true);
    }
    return this.#seal(this.#encode(data), last);
  }

  #encode(data: Uint8Array): Uint8Array[] {
    // Incompressible data is stored; after a futile attempt, skip a few segments before trying
    // again so that large random files do not pay for compression at every segment.
    if (this.#level > 0 && this.#skipCompression === 0 && data.length >= 64) {
      const z = this.#suite.compress!(data, this.#level);
      if (z.length + 64 < data.length && z.length < data.length * 0.97) {
        return [CODEC_ZSTD_BYTE, z];
      }
      this.#skipCompression = 16;
    } else if (this.#skipCompression > 0) {
      this.#skipCompression--;
    }
    return [CODEC_STORED_BYTE, data];
  }

  #seal(parts: Uint8Array[], last: boolean): Uint8Array[] {
    const nonce = segmentNonce(this.#index++, last);
    if (last) this.#done = true;
    const plain = parts.length === 1 ? parts[0] : concat(parts);
    const [ct, tag] = this.#suite.aead.seal(this.#key, nonce, this.#aad, plain);
    return [u32be(ct.length + TAG_BYTES), ct, tag];
  }
}

const CODEC_STORED_BYTE = Uint8Array.of(CODEC_STORED);
const CODEC_ZSTD_BYTE = Uint8Array.of(CODEC_ZSTD);

/** What reading a container yields: the header first, then file data in order. */
export type ContainerPart =
  | { type: "header"; header: Record<string, unknown> }
  | { type: "data"; data: Uint8Array };

/** Pulls exact byte counts from an async stream of arbitrary chunks. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #ended = false;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  async #fill(n: number): Promise<void> {
    while (this.#size < n && !this.#ended) {
      const r = await this.it.next();
      if (r.done) this.#ended = true;
      else if (r.value.length > 0) {
        this.#chunks.push(r.value);
        this.#size += r.value.length;
      }
    }
  }

  /** Exactly n bytes, or fewer only at the end of the stream. */
  async take(n: number): Promise<Uint8Array> {
    await this.#fill(n);
    const want = Math.min(n, this.#size);
    if (want === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    let out: Uint8Array;
    if (first.length >= want) {
      out = first.subarray(0, want);
      if (first.length === want) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(want);
    } else {
      out = new Uint8Array(want);
      let o = 0;
      while (o < want) {
        const c = this.#chunks[0];
        const k = Math.min(c.length, want - o);
        out.set(c.subarray(0, k), o);
        o += k;
        if (k === c.length) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(k);
      }
    }
    this.#size -= want;
    return out;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    await this.#fill(1);
    return this.#size === 0;
  }
}

/** What opening a container keeps from segment to segment. */
interface Opening {
  suite: Suite;
  kind: ContainerKind;
  key: Uint8Array;
  aad: Uint8Array;
  what: string;
}

function failWith(what: string, why: string): never {
  throw new ContainerError(`${what}: ${why}`);
}

/** Checks the preamble and derives the key: what every segment is opened with. */
function beginOpening(
  suite: Suite,
  kind: ContainerKind,
  master: Uint8Array,
  rawId: Uint8Array,
  preamble: Uint8Array,
  salt: Uint8Array,
  what: string,
): Opening {
  if (preamble.length < PREAMBLE_BYTES) failWith(what, "truncated before the preamble ended");
  const magic = MAGIC[kind];
  for (let i = 0; i < 4; i++) {
    if (preamble[i] !== magic[i]) failWith(what, `not an n2s ${kind} (bad magic)`);
  }
  if (preamble[4] !== FORMAT_VERSION) failWith(what, `unsupported format version ${preamble[4]}`);
  if (preamble[6] !== 0 || preamble[7] !== 0) {
    failWith(what, "reserved preamble bytes are not zero");
  }
  if (salt.length < SALT_BYTES) failWith(what, "truncated in the salt");
  return {
    suite,
    kind,
    key: containerKey(suite, kind, master, rawId, salt),
    aad: concat([preamble, rawId]),
    what,
  };
}

/** Checks a segment's length field; returns the sealed length that follows it. */
function segmentLength(o: Opening, index: number, lenBytes: Uint8Array): number {
  if (lenBytes.length === 0) failWith(o.what, "truncated: the final segment is missing");
  if (lenBytes.length < 4) failWith(o.what, "truncated inside a segment length");
  const len = new DataView(lenBytes.buffer, lenBytes.byteOffset, 4).getUint32(0, false);
  const max = (index === 0 ? HEADER_MAX : SEGMENT_DATA_MAX + 1) + TAG_BYTES;
  if (len < TAG_BYTES || len > max) {
    failWith(o.what, `segment ${index} has an impossible length ${len}`);
  }
  return len;
}

/**
 * Opens one sealed segment. The last-segment flag is part of the nonce: a segment verifies
 * only under the flag it was sealed with, so trying both detects truncation and extension. The
 * flag tried first is the one the stream suggests (last when no byte follows), which saves
 * decrypting twice.
 */
function openSegment(
  o: Opening,
  index: number,
  sealed: Uint8Array,
  atEnd: boolean,
): { last: boolean; part: ContainerPart | null } {
  const ct = sealed.subarray(0, sealed.length - TAG_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  let plain: Uint8Array | undefined;
  let last = false;
  for (const flag of atEnd ? [true, false] : [false, true]) {
    try {
      plain = o.suite.aead.open(o.key, segmentNonce(index, flag), o.aad, ct, tag);
      last = flag;
      break;
    } catch {
      // try the other flag
    }
  }
  if (plain === undefined) {
    failWith(
      o.what,
      `segment ${index} does not authenticate (wrong key, or the object was altered)`,
    );
  }
  if (index === 0) {
    if (last) failWith(o.what, "the header segment is marked final; the body is missing");
    let header: unknown;
    try {
      header = JSON.parse(fromUtf8(plain));
    } catch {
      failWith(o.what, "header is not valid JSON");
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      failWith(o.what, "header is not a JSON object");
    }
    return { last, part: { type: "header", header: header as Record<string, unknown> } };
  }
  if (plain.length === 0) {
    if (!last) failWith(o.what, `empty body segment ${index} is not the final one`);
    return { last, part: null };
  }
  const codec = plain[0];
  const payload = plain.subarray(1);
  if (codec === CODEC_STORED) return { last, part: { type: "data", data: payload } };
  if (codec !== CODEC_ZSTD) failWith(o.what, `segment ${index} has unknown codec ${codec}`);
  try {
    return { last, part: { type: "data", data: o.suite.decompress(payload, SEGMENT_DATA_MAX) } };
  } catch (e) {
    throw new ContainerError(`${o.what}: segment ${index} does not decompress: ${e}`);
  }
}

/**
 * Opens a container from a byte stream, authenticating every segment before its plaintext is
 * yielded, and throws ContainerError on any tampering, truncation, extension or wrong key.
 * `what` names the object in error messages. Data is yielded as soon as its segment verifies;
 * callers must treat it as unconfirmed until the generator finishes without an error.
 */
export async function* openContainer(
  suite: Suite,
  kind: ContainerKind,
  master: Uint8Array,
  rawId: Uint8Array,
  source: AsyncIterable<Uint8Array>,
  what: string,
): AsyncGenerator<ContainerPart> {
  const q = new ByteQueue(source[Symbol.asyncIterator]());
  const preamble = await q.take(PREAMBLE_BYTES);
  const salt = preamble.length < PREAMBLE_BYTES ? preamble : await q.take(SALT_BYTES);
  const o = beginOpening(suite, kind, master, rawId, preamble, salt, what);
  let index = 0;
  let last = false;
  while (!last) {
    const len = segmentLength(o, index, await q.take(4));
    const sealed = await q.take(len);
    if (sealed.length < len) failWith(what, `truncated inside segment ${index}`);
    const r = openSegment(o, index, sealed, await q.atEnd());
    last = r.last;
    if (r.part) yield r.part;
    index++;
  }
  if (!(await q.atEnd())) failWith(what, "unexpected bytes after the final segment");
}

/**
 * Opens a whole container held in memory, synchronously, one part at a time: the same checks as
 * openContainer. A data part may live in a buffer the suite reuses: it is valid until the next
 * part is asked for. Data is unverified until the generator finishes without an error.
 */
export function* containerPartsSync(
  suite: Suite,
  kind: ContainerKind,
  master: Uint8Array,
  rawId: Uint8Array,
  bytes: Uint8Array,
  what: string,
): Generator<ContainerPart> {
  const o = beginOpening(
    suite,
    kind,
    master,
    rawId,
    bytes.subarray(0, PREAMBLE_BYTES),
    bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + SALT_BYTES),
    what,
  );
  let at = PREAMBLE_BYTES + SALT_BYTES;
  let index = 0;
  let last = false;
  while (!last) {
    const len = segmentLength(o, index, bytes.subarray(at, at + 4));
    at += 4;
    if (at + len > bytes.length) failWith(what, `truncated inside segment ${index}`);
    const r = openSegment(o, index, bytes.subarray(at, at + len), at + len === bytes.length);
    at += len;
    last = r.last;
    if (r.part) yield r.part;
    index++;
  }
  if (at !== bytes.length) failWith(what, "unexpected bytes after the final segment");
}
