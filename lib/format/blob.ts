// Blobs: one file's content at one path, sealed in a container whose header says where it
// belongs. Sealing streams from a reader in 1 MiB segments; opening verifies everything.

import {
  ContainerError,
  containerPartsSync,
  ContainerWriter,
  openContainer,
  SEGMENT_DATA_MAX,
} from "./container.ts";
import { fromHex, toHex } from "./bytes.ts";
import { blobIdFor, isHex256, type RepoKeys } from "./ids.ts";
import type { Suite } from "./suite.ts";

/** The header segment of a blob. */
export interface BlobHeader {
  /** Format of this header. */
  v: 2;
  /** POSIX path relative to the source root. */
  path: string;
  /** BLAKE3-256 of the content, lowercase hex. */
  file_hash: string;
  /** Content length in bytes. */
  size: number;
  /** Modification time, milliseconds since the epoch (UTC). */
  mtime: number;
  /** POSIX permission bits (e.g. 0o644). */
  mode: number;
  /** Source name. */
  source: string;
  /** The changeset that first uploaded this blob. */
  changeset: string;
  /** When the blob was sealed, UTC ISO-8601. */
  created: string;
}

/** Something that fills a buffer from the start and returns the count, or null at the end. */
export interface ChunkReader {
  /** Reads into `buf`; resolves to the number of bytes read, or null at the end. */
  read(buf: Uint8Array): Promise<number | null>;
}

/** Reads until `buf` is full or the reader ends; returns the number of bytes read. */
export async function readFull(r: ChunkReader, buf: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const k = await r.read(n === 0 ? buf : buf.subarray(n));
    if (k === null) break;
    n += k;
  }
  return n;
}

/** Result of sealing: the content hash seen while sealing and the plaintext size. */
export interface SealResult {
  fileHash: string;
  size: number;
}

/**
 * Seals a file's content from `reader` into a blob, yielding the object's bytes in order, in
 * bounded memory (two 1 MiB buffers). The content is hashed again while sealing; the hash is
 * written to `result` when the generator finishes, so the caller can check that the file did
 * not change between hashing and sealing.
 */
export async function* sealBlob(
  suite: Suite,
  keys: RepoKeys,
  header: BlobHeader,
  reader: ChunkReader,
  result: SealResult,
  opts: {
    compressLevel?: number;
    salt?: Uint8Array;
    segmentSize?: number;
    /** Called before the final segment is sealed with the content hash seen so far; throwing
     * aborts the object (a file that changed since it was hashed never becomes a blob). */
    beforeFinal?: (fileHash: string, size: number) => void;
  } = {},
): AsyncGenerator<Uint8Array[]> {
  const blobId = blobIdFor(suite, keys.idKey, header.path, header.file_hash);
  const w = new ContainerWriter(suite, "blob", keys.master, fromHex(blobId), opts);
  const seg = opts.segmentSize ?? SEGMENT_DATA_MAX;
  const h = suite.newHasher();
  yield w.start(header);
  let cur = new Uint8Array(seg);
  let next = new Uint8Array(seg);
  let curLen = await readFull(reader, cur);
  let size = 0;
  while (true) {
    const nextLen = curLen === seg ? await readFull(reader, next) : 0;
    const data = cur.subarray(0, curLen);
    h.update(data);
    size += curLen;
    const last = nextLen === 0;
    if (last) {
      result.fileHash = toHex(h.digest());
      result.size = size;
      opts.beforeFinal?.(result.fileHash, size);
    }
    yield w.body(data, last);
    if (last) break;
    [cur, next] = [next, cur];
    curLen = nextLen;
  }
}

/** Checks that a header has the fields and types a blob header must have. */
export function parseBlobHeader(raw: Record<string, unknown>, what: string): BlobHeader {
  const bad = (f: string) => {
    throw new ContainerError(`${what}: blob header field "${f}" is missing or malformed`);
  };
  if (raw.v !== 2) bad("v");
  if (typeof raw.path !== "string" || raw.path === "") bad("path");
  if (typeof raw.file_hash !== "string" || !isHex256(raw.file_hash)) bad("file_hash");
  for (const f of ["size", "mtime", "mode"]) {
    if (typeof raw[f] !== "number" || !Number.isFinite(raw[f])) bad(f);
  }
  return raw as unknown as BlobHeader;
}

/**
 * Opens a blob stored under `blobId`, yielding its header and then its content. Throws
 * ContainerError naming the blob (and its path once known) on any failure, including a content
 * hash or blob id mismatch at the end. Content is unverified until the generator returns.
 */
export async function* openBlob(
  suite: Suite,
  keys: RepoKeys,
  blobId: string,
  source: AsyncIterable<Uint8Array>,
): AsyncGenerator<{ header: BlobHeader } | { data: Uint8Array }> {
  let what = `blob ${blobId}`;
  const h = suite.newHasher();
  let header: BlobHeader | undefined;
  let size = 0;
  const raw = fromHex(blobId);
  for await (const part of openContainer(suite, "blob", keys.master, raw, source, what)) {
    if (part.type === "header") {
      header = parseBlobHeader(part.header, what);
      what = `blob ${blobId} (${header.path})`;
      if (blobIdFor(suite, keys.idKey, header.path, header.file_hash) !== blobId) {
        throw new ContainerError(`${what}: blob id does not match its path and content hash`);
      }
      yield { header };
    } else {
      h.update(part.data);
      size += part.data.length;
      yield { data: part.data };
    }
  }
  if (!header) throw new ContainerError(`${what}: no header`);
  if (size !== header.size) {
    throw new ContainerError(`${what}: content is ${size} bytes, header says ${header.size}`);
  }
  if (toHex(h.digest()) !== header.file_hash) {
    throw new ContainerError(`${what}: content hash does not match the header`);
  }
}

/**
 * Opens a whole blob held in memory, synchronously, one part at a time, with every check
 * openBlob makes: its header, then its content. A data part may live in a buffer the suite
 * reuses, valid until the next part is asked for; content is unverified until the generator
 * finishes without an error.
 */
export function* blobPartsSync(
  suite: Suite,
  keys: RepoKeys,
  blobId: string,
  bytes: Uint8Array,
): Generator<{ header: BlobHeader } | { data: Uint8Array }> {
  let what = `blob ${blobId}`;
  let header: BlobHeader | undefined;
  const h = suite.newHasher();
  let size = 0;
  for (const p of containerPartsSync(suite, "blob", keys.master, fromHex(blobId), bytes, what)) {
    if (p.type === "header") {
      header = parseBlobHeader(p.header, what);
      what = `blob ${blobId} (${header.path})`;
      if (blobIdFor(suite, keys.idKey, header.path, header.file_hash) !== blobId) {
        throw new ContainerError(`${what}: blob id does not match its path and content hash`);
      }
      yield { header };
      continue;
    }
    if (!header) throw new ContainerError(`${what}: no header`);
    h.update(p.data);
    size += p.data.length;
    yield { data: p.data };
  }
  if (!header) throw new ContainerError(`${what}: no header`);
  if (size !== header.size) {
    throw new ContainerError(`${what}: content is ${size} bytes, header says ${header.size}`);
  }
  if (toHex(h.digest()) !== header.file_hash) {
    throw new ContainerError(`${what}: content hash does not match the header`);
  }
}
