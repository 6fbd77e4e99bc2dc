// The CPU-heavy half of a push, as plain functions that run in any thread: read and hash files,
// seal the small ones from the bytes hashed (framed as pack entries when they are under the
// pack threshold), and seal a large one segment by segment. A Worker runs them
// (lib/workers/seal_worker.ts) and so does the main thread when no Worker can start.

import type { BlobHeader } from "../format/blob.ts";
import { concat, concat as join, fromHex, toHex, utf8 } from "../format/bytes.ts";
import {
  containerKey,
  ContainerWriter,
  preambleFor,
  SALT_BYTES,
  SEGMENT_DATA_MAX,
  segmentNonce,
} from "../format/container.ts";
import { blobIdFor, type RepoKeys } from "../format/ids.ts";
import { ENTRY_FRAME_BYTES, entryFrame } from "../format/pack.ts";
import type { NativeAead } from "../format/native_crypto.ts";
import { type DirMaker, ObjectFileWriter } from "../backends/local/files.ts";
import { CODEC_STORED, CODEC_ZSTD, type Suite } from "../format/suite.ts";
import { type FileIn, isDenied, isNotFound, openIn } from "../fs/in.ts";
import { PosixError } from "../fs/posix.ts";

/** Files up to this size are read whole and sealed from memory in one body segment. */
export const SMALL_FILE = SEGMENT_DATA_MAX;
/** How many times a file that changes while it is read is read again. */
export const CHANGE_RETRIES = 3;

/** What hashing one file found, or why it could not be read. */
export type Hashed =
  | {
    ok: true;
    fileHash: string;
    blobId: string;
    size: number;
    mtime: number;
    mode: number;
    inode: number | null;
  }
  | { ok: false; message: string };

/** Why a file could not be read, in words for the user. */
export function describeReadError(e: unknown): string {
  if (isNotFound(e)) return "vanished before it could be read";
  if (isDenied(e)) return "permission denied; it was not stored";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory now; it was not stored";
  if (e instanceof PosixError && e.code === "ELOOP") return "is a symlink now; it was not stored";
  return e instanceof Error ? e.message : String(e);
}

/** `root/path` with one slash between them. */
export function fullPath(root: string, path: string): string {
  return root.endsWith("/") ? root + path : `${root}/${path}`;
}

/**
 * Reads and hashes one file. A file of at most SMALL_FILE bytes is read whole and its bytes are
 * returned too (sealed later without reading again); a larger one is hashed through `buf`.
 * A file that changes while it is read (size or mtime) is read again, up to CHANGE_RETRIES times.
 */
export function hashFile(
  suite: Suite,
  keys: RepoKeys,
  root: string,
  path: string,
  buf: Uint8Array,
  alloc: (n: number) => Uint8Array = (n) => new Uint8Array(n),
): { hashed: Hashed; bytes: Uint8Array | null } {
  for (let attempt = 1;; attempt++) {
    let f: FileIn;
    try {
      f = openIn(fullPath(root, path));
    } catch (e) {
      return { hashed: { ok: false, message: describeReadError(e) }, bytes: null };
    }
    try {
      const st = f.stat();
      let bytes: Uint8Array | null = null;
      let fileHash: string;
      let total = 0;
      if (st.size <= SMALL_FILE) {
        // One byte more than the size, to see a file that grew.
        const whole = alloc(st.size + 1);
        while (total < whole.length) {
          const k = f.read(whole.subarray(total));
          if (k === 0) break;
          total += k;
        }
        bytes = whole.subarray(0, total);
        fileHash = toHex(suite.hash ? suite.hash(bytes) : hashOnce(suite, bytes));
      } else {
        const h = suite.newHasher();
        while (true) {
          let n = 0;
          while (n < buf.length) {
            const k = f.read(n === 0 ? buf : buf.subarray(n));
            if (k === 0) break;
            n += k;
          }
          if (n === 0) break;
          h.update(buf.subarray(0, n));
          total += n;
        }
        fileHash = toHex(h.digest());
      }
      const after = f.stat();
      if (after.size !== st.size || after.mtime !== st.mtime || total !== st.size) {
        if (attempt < CHANGE_RETRIES) continue;
        return {
          hashed: {
            ok: false,
            message: `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`,
          },
          bytes: null,
        };
      }
      return {
        hashed: {
          ok: true,
          fileHash,
          blobId: blobIdFor(suite, keys.idKey, path, fileHash),
          size: st.size,
          mtime: st.mtime,
          mode: st.mode,
          inode: st.inode,
        },
        bytes,
      };
    } catch (e) {
      return { hashed: { ok: false, message: describeReadError(e) }, bytes: null };
    } finally {
      f.close();
    }
  }
}

/**
 * Hashes a small file's content that another thread read (a client's own `open`), with what
 * that thread saw of the file; the bytes are kept for sealing like hashFile's.
 */
export function hashBytes(
  suite: Suite,
  keys: RepoKeys,
  path: string,
  bytes: Uint8Array,
  st: { size: number; mtime: number; mode: number; inode: number | null },
): { hashed: Hashed; bytes: Uint8Array | null } {
  const fileHash = toHex(suite.hash ? suite.hash(bytes) : hashOnce(suite, bytes));
  return {
    hashed: {
      ok: true,
      fileHash,
      blobId: blobIdFor(suite, keys.idKey, path, fileHash),
      size: bytes.length,
      mtime: st.mtime,
      mode: st.mode,
      inode: st.inode,
    },
    bytes,
  };
}

function hashOnce(suite: Suite, data: Uint8Array): Uint8Array {
  const h = suite.newHasher();
  h.update(data);
  return h.digest();
}

/**
 * Seals a small file's bytes (those hashed in pass 1) into a whole blob container: the layout
 * sealBlob gives a file of at most one segment.
 */
export function sealSmall(
  suite: Suite,
  keys: RepoKeys,
  blobId: string,
  header: BlobHeader,
  bytes: Uint8Array,
  compressLevel: number | undefined,
): Uint8Array[] {
  const w = new ContainerWriter(suite, "blob", keys.master, fromHex(blobId), { compressLevel });
  return [...w.start(header), ...w.body(bytes, true)];
}

/** Where one sealed blob lies in a sealed batch's buffer. */
export interface SealedSpan {
  /** Offset and end of the container in the buffer. */
  start: number;
  end: number;
  /** True when it lies in the batch's pack fragment (framed), false when it is loose. */
  packed: boolean;
}

/** A thread's scratch space for compressed segments, reused from batch to batch. */
let scratch = new Uint8Array(0);

/**
 * Seals small files into one buffer: first a pack fragment (each container under `threshold`
 * bytes behind its entry frame, ready to be appended to a pack), then the containers that are
 * not under it (stored as loose objects). The bytes are exactly ContainerWriter's for a file of
 * at most one segment (tests compare them), but every container is sealed straight into the
 * batch's one buffer: one allocation and one transfer per batch, not several per file.
 */
export function sealBatch(
  suite: Suite,
  keys: RepoKeys,
  items: { blobId: string; header: BlobHeader; bytes: Uint8Array }[],
  threshold: number,
  compressLevel: number | undefined,
): { buffer: Uint8Array; fragmentEnd: number; spans: SealedSpan[] } {
  const level = suite.compress ? (compressLevel ?? 3) : 0;
  let room = 0;
  for (const it of items) room += it.bytes.length;
  if (scratch.length < room) scratch = new Uint8Array(Math.max(room, 1 << 20));
  // Pass 1: each container's header text and body plaintext, and so its exact size.
  let used = 0;
  const plan = items.map((it) => {
    const json = utf8(JSON.stringify(it.header));
    const data = it.bytes;
    let body: Uint8Array[] = [];
    if (data.length > 0) {
      body = [STORED_BYTE, data];
      if (level > 0 && data.length >= 64) {
        let z: Uint8Array | null = null;
        if (suite.compressTo) {
          const n = suite.compressTo(data, level, scratch.subarray(used, used + data.length));
          if (n >= 0) z = scratch.subarray(used, used + n);
        } else z = suite.compress!(data, level);
        if (z !== null && z.length + 64 < data.length && z.length < data.length * 0.97) {
          body = [ZSTD_BYTE, z];
          used += z.length;
        }
      }
    }
    const bodyLen = body.length === 0 ? 0 : 1 + body[1].length;
    const size = 8 + SALT_BYTES + 4 + json.length + TAG_BYTES + 4 + bodyLen + TAG_BYTES;
    return { json, body, size, packed: size < threshold };
  });
  let fragmentEnd = 0;
  let total = 0;
  for (const p of plan) {
    if (p.packed) fragmentEnd += ENTRY_FRAME_BYTES + p.size;
    total += p.packed ? ENTRY_FRAME_BYTES + p.size : p.size;
  }
  // Pass 2: seal into the buffer.
  const buffer = new Uint8Array(total);
  const view = new DataView(buffer.buffer);
  const aead = suite.aead as Partial<NativeAead>;
  const preamble = preambleFor("blob");
  const aad = new Uint8Array(8 + 32);
  aad.set(preamble);
  const sealTo = (key: Uint8Array, i: number, last: boolean, parts: Uint8Array[], at: number) => {
    let n = 0;
    for (const p of parts) n += p.length;
    view.setUint32(at, n + TAG_BYTES, false);
    const nonce = segmentNonce(i, last);
    if (aead.sealPartsTo) aead.sealPartsTo(key, nonce, aad, parts, buffer, at + 4);
    else {
      const [ct, tag] = suite.aead.seal(
        key,
        nonce,
        aad,
        parts.length === 1 ? parts[0] : join(parts),
      );
      buffer.set(ct, at + 4);
      buffer.set(tag, at + 4 + ct.length);
    }
    return at + 4 + n + TAG_BYTES;
  };
  const spans: SealedSpan[] = new Array(plan.length);
  let inPack = 0;
  let loose = fragmentEnd;
  plan.forEach((p, k) => {
    const { blobId } = items[k];
    let o: number;
    if (p.packed) {
      buffer.set(entryFrame(blobId, p.size), inPack);
      o = inPack + ENTRY_FRAME_BYTES;
      inPack = o + p.size;
    } else {
      o = loose;
      loose += p.size;
    }
    spans[k] = { start: o, end: o + p.size, packed: p.packed };
    const rawId = fromHex(blobId);
    const salt = suite.randomBytes(SALT_BYTES);
    aad.set(rawId, 8);
    const key = containerKey(suite, "blob", keys.master, rawId, salt);
    buffer.set(preamble, o);
    buffer.set(salt, o + 8);
    const at = sealTo(key, 0, false, [p.json], o + 8 + SALT_BYTES);
    sealTo(key, 1, true, p.body, at);
  });
  return { buffer, fragmentEnd, spans };
}

/**
 * Memory that a batch's small files are read into: one buffer, handed out piece by piece and
 * reused for a later batch once the batch is sealed, instead of a new buffer per file.
 */
export class Arena {
  #buf: Uint8Array;
  #used = 0;
  constructor(size: number) {
    this.#buf = new Uint8Array(size);
  }

  /** `n` bytes of the arena, or of a buffer of their own once the arena is full. */
  take(n: number): Uint8Array {
    if (this.#used + n > this.#buf.length) return new Uint8Array(n);
    const out = this.#buf.subarray(this.#used, this.#used + n);
    this.#used += n;
    return out;
  }

  /** Makes the whole arena available again (what was handed out must no longer be used). */
  reset(): void {
    this.#used = 0;
  }
}

/** Thrown while sealing a large file when the file is not the one hashed in pass 1. */
export class ChangedError extends Error {}

/** After an attempt to compress that did not pay, segments stored before trying again. */
const SKIP_AFTER_FUTILE = 16;

/**
 * Seals a large file segment by segment, hashing it again; yields each sealed segment as the
 * object's next bytes. The layout is exactly ContainerWriter's (tests/perf compares the bytes):
 * the header through ContainerWriter, then body segments sealed here from one reused read
 * buffer straight into one output buffer per segment, with no copy in between (the native
 * AEAD takes the codec byte and the data as two pieces). Throws ChangedError when the content
 * differs from `header.file_hash`, or when the file cannot be read. With `reuse`, every body
 * segment is sealed into one output buffer: the caller must be done with a segment before it
 * asks for the next one.
 */
export async function* sealLarge(
  suite: Suite,
  keys: RepoKeys,
  root: string,
  header: BlobHeader,
  compressLevel: number | undefined,
  buf: Uint8Array = new Uint8Array(SEGMENT_DATA_MAX),
  reuse = false,
): AsyncGenerator<Uint8Array[]> {
  let f: FileIn;
  try {
    f = openIn(fullPath(root, header.path));
  } catch (e) {
    throw new ChangedError(describeReadError(e));
  }
  try {
    const blobId = fromHex(blobIdFor(suite, keys.idKey, header.path, header.file_hash));
    const salt = suite.randomBytes(SALT_BYTES);
    const level = suite.compress ? (compressLevel ?? 3) : 0;
    const w = new ContainerWriter(suite, "blob", keys.master, blobId, {
      salt,
      compressLevel: level,
    });
    const key = containerKey(suite, "blob", keys.master, blobId, salt);
    const aad = join([preambleFor("blob"), blobId]);
    // The parts yielded may move to another thread (their buffers detached): nothing of them is
    // used after this point.
    yield w.start(header);
    const aead = suite.aead as Partial<NativeAead>;
    const h = suite.newHasher();
    const seg = buf.subarray(0, SEGMENT_DATA_MAX);
    let size = 0;
    let index = 1;
    let skip = 0;
    const read = (into: Uint8Array) => {
      let n = 0;
      while (n < into.length) {
        let k: number;
        try {
          k = f.read(n === 0 ? into : into.subarray(n));
        } catch (e) {
          throw new ChangedError(describeReadError(e));
        }
        if (k === 0) break;
        n += k;
      }
      return n;
    };
    // One segment of look-ahead tells the last segment (its nonce says so): the next segment's
    // first byte is read ahead into `peek`.
    const peek = new Uint8Array(1);
    const outBuf = reuse ? new Uint8Array(4 + 1 + SEGMENT_DATA_MAX + 16) : null;
    let have = read(seg);
    let peeked = have === SEGMENT_DATA_MAX ? read(peek) : 0;
    while (true) {
      const data = seg.subarray(0, have);
      h.update(data);
      size += have;
      const last = peeked === 0;
      if (last) {
        const fileHash = toHex(h.digest());
        if (fileHash !== header.file_hash || size !== header.size) {
          throw new ChangedError("changed while it was read");
        }
      }
      let codec = CODEC_STORED;
      let payload = data;
      if (have === 0) {
        payload = data;
      } else if (level > 0 && skip === 0 && have >= 64) {
        const z = suite.compress!(data, level);
        if (z.length + 64 < have && z.length < have * 0.97) {
          codec = CODEC_ZSTD;
          payload = z;
        } else skip = SKIP_AFTER_FUTILE;
      } else if (skip > 0) skip--;
      const parts = have === 0 ? [] : [codec === CODEC_ZSTD ? ZSTD_BYTE : STORED_BYTE, payload];
      let plainLen = 0;
      for (const p of parts) plainLen += p.length;
      const out = outBuf
        ? outBuf.subarray(0, 4 + plainLen + 16)
        : new Uint8Array(4 + plainLen + 16);
      new DataView(out.buffer, out.byteOffset, 4).setUint32(0, plainLen + 16, false);
      const nonce = segmentNonce(index++, last);
      if (aead.sealPartsTo) aead.sealPartsTo(key, nonce, aad, parts, out, 4);
      else {
        const [ct, tag] = suite.aead.seal(key, nonce, aad, join(parts));
        out.set(ct, 4);
        out.set(tag, 4 + ct.length);
      }
      yield [out];
      if (last) break;
      // The peeked byte starts the next segment.
      seg[0] = peek[0];
      have = 1 + read(seg.subarray(1));
      peeked = have === SEGMENT_DATA_MAX ? read(peek) : 0;
    }
  } finally {
    f.close();
  }
}

/**
 * Seals a large file straight into a local repository's object file (`objects` is the
 * repository's directory, `key` the blob's key in it), from one read buffer into one reused
 * segment buffer. The first bytes are held back until they reach `threshold`: a file that
 * compresses below it is returned whole instead (it belongs in a pack) and no file is made.
 * Otherwise returns the object's size. Throws ChangedError when the file is not the one hashed
 * in pass 1 or cannot be read; any other error is the repository's (the object is then absent).
 */
export async function sealLargeTo(
  suite: Suite,
  keys: RepoKeys,
  root: string,
  header: BlobHeader,
  compressLevel: number | undefined,
  target: { objects: string; key: string; threshold: number },
  dirs: DirMaker,
  buf?: Uint8Array,
): Promise<{ size: number } | { container: Uint8Array }> {
  let held: Uint8Array[] | null = [];
  let heldBytes = 0;
  let w: ObjectFileWriter | null = null;
  try {
    for await (const parts of sealLarge(suite, keys, root, header, compressLevel, buf, true)) {
      if (held !== null) {
        // Parts live in a reused buffer: what is held back is copied.
        for (const p of parts) {
          held.push(p.slice());
          heldBytes += p.length;
        }
        if (heldBytes < target.threshold) continue;
        w = new ObjectFileWriter(target.objects, target.key, dirs);
        for (const p of held) w.write(p);
        held = null;
      } else {
        for (const p of parts) w!.write(p);
      }
      await w!.pace();
    }
    if (held !== null) return { container: concat(held) };
    return { size: await w!.commit() };
  } catch (e) {
    await w?.abort();
    throw e;
  }
}

const STORED_BYTE = Uint8Array.of(CODEC_STORED);
const ZSTD_BYTE = Uint8Array.of(CODEC_ZSTD);
const TAG_BYTES = 16;
