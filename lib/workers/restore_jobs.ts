// The restore half of a pull, as plain functions that run in any thread: open a blob (every
// segment authenticated, the content hash and blob id checked), write its content to a new
// temporary file beside the target, set mode and mtime, and rename it into place. A Worker runs
// them (lib/workers/seal_worker.ts) and so does the main thread when no Worker can start.

import { blobPartsSync, openBlob } from "../format/blob.ts";
import type { RepoKeys } from "../format/ids.ts";
import { SALT_BYTES, SEGMENT_DATA_MAX } from "../format/container.ts";
import type { NativeAead } from "../format/native_crypto.ts";
import type { Suite } from "../format/suite.ts";
import { FileOut } from "../fs/out.ts";
import type { FileMeta } from "../fs/meta.ts";

/**
 * For one stream of segments (one streamed blob, or one batch of small blobs restored one after
 * the other): the suite with an AEAD that decrypts every segment into one buffer, reused from
 * segment to segment, instead of a new buffer per segment. The buffer belongs to that stream
 * only: a stream opens its next segment only after the previous one's data was used (written,
 * or copied), but other streams of the thread run in between. Suites without a native AEAD are
 * used as they are.
 */
export function reusingSuite(suite: Suite): Suite {
  const aead = suite.aead as Partial<NativeAead>;
  if (!aead.openTo) return suite;
  let out = new Uint8Array(SEGMENT_DATA_MAX + 64);
  const openTo = aead.openTo.bind(aead);
  // Decompressed segments go to a buffer of their own, reused the same way.
  const unzip = suite.decompressTo?.bind(suite);
  const plain = unzip ? new Uint8Array(SEGMENT_DATA_MAX) : null;
  return {
    ...suite,
    aead: {
      seal: suite.aead.seal.bind(suite.aead),
      open(key, nonce, aad, cipher, tag) {
        if (cipher.length > out.length) out = new Uint8Array(cipher.length);
        return openTo(key, nonce, aad, cipher, tag, out);
      },
    },
    decompress: unzip
      ? (data, maxSize) => plain!.subarray(0, unzip(data, plain!.subarray(0, maxSize)))
      : suite.decompress,
  };
}

/** One file to restore; directories up to `full` were checked by the caller. */
export interface RestoreItem {
  blobId: string;
  /** The blob's object file, for a thread that reads a local repository itself. */
  object?: string;
  /**
   * The path the blob must say it belongs to (for a hard link restored as a copy: the path it
   * links to), and its content hash.
   */
  path: string;
  fileHash?: string;
  /** Absolute target path. */
  full: string;
  /** The file's size (and the thread's accounting of the memory it went through). */
  size?: number;
  /** Mode, times, owner, extended attributes to give back. */
  meta?: FileMeta;
  /** A sparse file's holes, left as holes. */
  holes?: [number, number][];
  /** Restore owner and group (default: when running as root). */
  owner?: boolean;
}

/** Finishes a restored file; metadata that could not be given back fails it, by name. */
function finishFile(out: FileOut): void {
  const problems = out.finish();
  if (problems.length > 0) throw new Error(`restored, but ${problems.join("; ")}`);
}

/**
 * Restores one file from its blob held whole in memory, synchronously. A small content is
 * verified in full before its file exists, then written (see FileOut); a large one (a blob
 * that compressed well: zeros, a sparse file, repetitive text) is written segment by segment
 * under a temporary name and put under its own only once it has verified, so that memory stays
 * one segment whatever the content. Synchronous, so that a thread's reused buffers (`suite`'s,
 * and the one `bytes` lies in) cannot be taken by another restore in between: Deno delivers a
 * Worker's messages between any two awaits.
 */
export function restoreWhole(
  suite: Suite,
  keys: RepoKeys,
  item: RestoreItem,
  bytes: Uint8Array,
): void {
  const parts = blobPartsSync(suite, keys, item.blobId, bytes);
  const first = parts.next();
  if (first.done || !("header" in first.value)) throw new Error(`blob ${item.blobId}: no header`);
  const header = first.value.header;
  if (header.path !== item.path || header.file_hash !== item.fileHash) {
    throw new Error(`blob ${item.blobId} belongs to ${header.path}, not to this path`);
  }
  if (header.size <= SEGMENT_DATA_MAX) {
    const data: Uint8Array[] = [];
    for (const p of parts) {
      if (!("data" in p)) continue;
      // The previous part may live in a buffer this one reuses: copied first.
      if (data.length > 0) data[data.length - 1] = data[data.length - 1].slice();
      data.push(p.data);
    }
    writeVerified(item, data);
    return;
  }
  const out = FileOut.create(item, true);
  try {
    for (const p of parts) if ("data" in p) out.write(p.data);
  } catch (e) {
    out.abort();
    throw e;
  }
  finishFile(out);
}

/** Writes a verified file's content: see restoreWhole. */
function writeVerified(item: RestoreItem, parts: Uint8Array[]): void {
  const out = FileOut.create(item);
  try {
    for (const p of parts) out.write(p);
  } catch (e) {
    out.abort();
    throw e;
  }
  finishFile(out);
}

/**
 * Restores one file from a blob's bytes or stream. Small blobs (one piece) are verified whole
 * before any file is created; a large one is written to a file under a temporary name as its
 * segments authenticate and put under its name only once the whole content has verified.
 */
export async function restoreBlob(
  suite: Suite,
  keys: RepoKeys,
  item: RestoreItem,
  source: AsyncIterable<Uint8Array>,
  whole: boolean,
): Promise<void> {
  const check = (header: { path: string; file_hash: string }) => {
    if (header.path !== item.path || header.file_hash !== item.fileHash) {
      throw new Error(`blob ${item.blobId} belongs to ${header.path}, not to this path`);
    }
  };
  if (whole) {
    // The data may live in a buffer that the next segment reuses: copied out.
    const parts: Uint8Array[] = [];
    for await (const part of openBlob(suite, keys, item.blobId, source)) {
      if ("header" in part) check(part.header);
      else parts.push(part.data.slice());
    }
    writeVerified(item, parts);
    return;
  }
  // Never straight under its name: the content is unverified until the last segment.
  const out = FileOut.create(item, true);
  try {
    for await (const part of openBlob(reusingSuite(suite), keys, item.blobId, source)) {
      if ("header" in part) check(part.header);
      else out.write(part.data);
    }
  } catch (e) {
    out.abort();
    throw e;
  }
  finishFile(out);
}

/** Bytes before a container's first segment: the 8-byte preamble and the salt. */
const SEGMENTS_START = 8 + SALT_BYTES;

/**
 * A container's bytes from `read` (which fills as much of a buffer as it can and returns the
 * count, 0 at the end) in chunks that end on segment boundaries, read into two buffers of
 * `size` bytes in turn. The bytes of the segment cut by a chunk's end are moved to the start
 * of the other buffer. A reader of whole segments (openContainer) then never copies a segment
 * that straddles two chunks, and when it asks for the next chunk it holds at most the last
 * segment of the current one (it looks ahead to see whether a segment is the last), never
 * anything of the chunk before: that is what lets two buffers take turns. A segment longer
 * than a chunk (only a damaged object has one) ends the alignment: the rest comes in fresh
 * buffers, for the reader to reject.
 */
export function* alignedChunks(
  read: (into: Uint8Array) => number,
  size = 4 << 20,
): Generator<Uint8Array> {
  const bufs = [new Uint8Array(size), new Uint8Array(size)];
  let turn = 0;
  let carry = 0;
  let first = true;
  while (true) {
    const buf = bufs[turn];
    const n = carry + read(buf.subarray(carry));
    if (n === 0) return;
    if (n < size) {
      yield buf.subarray(0, n);
      return;
    }
    let p = first ? SEGMENTS_START : 0;
    first = false;
    while (p + 4 <= n) {
      const len = ((buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]) >>> 0;
      if (p + 4 + len > n) break;
      p += 4 + len;
    }
    if (p === 0) {
      yield buf.slice(0, n);
      while (true) {
        const more = new Uint8Array(size);
        const k = read(more);
        if (k === 0) return;
        yield more.subarray(0, k);
      }
    }
    yield buf.subarray(0, p);
    turn ^= 1;
    bufs[turn].set(buf.subarray(p, n));
    carry = n - p;
  }
}
