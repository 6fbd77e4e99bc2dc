// The one interface every storage backend implements, its error classes, and the body type
// that lets a put be retried without holding the object in memory.

import { concat } from "../format/bytes.ts";

/** A byte range of an object: `length` bytes from `offset`. */
export interface ByteRange {
  /** First byte, counted from 0. */
  offset: number;
  /** Number of bytes from `offset`. */
  length: number;
}

/** What the backend knows of one stored object. */
export interface ObjectInfo {
  /** Object key, e.g. "blobs/ab/ab12…". */
  key: string;
  /** Size in bytes. */
  size: number;
  /** Backend-specific reference: an ETag, an IPFS CID; absent when the backend has none. */
  ref?: string;
}

/**
 * An object body for `put`: it can be opened more than once (each open yields the same bytes
 * again), so that a retry re-reads the source instead of buffering the object.
 */
export interface Body {
  /** Total size in bytes when known in advance. */
  size?: number;
  /** Yields the object's bytes in order. */
  open(): AsyncIterable<Uint8Array | Uint8Array[]>;
}

/**
 * A body over bytes already in memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesBody, openBackend } from "@n2s/n2s";
 *
 * const dir = await Deno.makeTempDir();
 * const backend = await openBackend(dir);
 * try {
 *   const info = await backend.put("notes/a", bytesBody(new TextEncoder().encode("hello")));
 *   assert.equal(info.size, 5);
 * } finally {
 *   await backend.close();
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function bytesBody(data: Uint8Array): Body {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(
      `bytesBody: data must be a Uint8Array, not ${data === null ? "null" : typeof data}`,
    );
  }
  return {
    size: data.length,
    async *open() {
      yield data;
    },
  };
}

/** Reads a whole (small) object into memory; for config, keys and manifests in tests. */
export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of stream) parts.push(p);
  return concat(parts);
}

/**
 * A storage backend: a flat namespace of keys ("/"-separated) holding immutable objects.
 *
 * Contracts:
 * - `put` is atomic: afterwards the object is whole, and a failed or interrupted put leaves
 *   either no object or the previous one, never a partial one. It may be retried. It resolves
 *   when the object is stored; durability against power loss may wait for `flush`.
 * - `get` streams the object; it throws NotFoundError for a missing key. Idempotent.
 *   With a `range`, it streams only the bytes from `range.offset` up to `range.offset +
 *   range.length` or the end of the object, whichever comes first: an offset at or past the
 *   end, or a length of 0, yields nothing (no error), and a missing key is still NotFoundError.
 *   Backends read just those bytes (a seek, an HTTP Range request, an offset read), never the
 *   whole object. A range that is not two non-negative safe integers is a permanent
 *   BackendError (see `checkRange`).
 * - `stat` returns null for a missing key. Idempotent.
 * - `list` yields every object whose key starts with `prefix`, in no particular order.
 * - `delete` removes an object; deleting a missing key is not an error. Idempotent.
 * - `flush` makes every completed put durable (fsync, or nothing where the store is remote).
 */
export interface Backend {
  /** A short description for messages, e.g. "local /srv/n2s" or "s3 bucket/prefix". */
  readonly name: string;
  /** How many operations in flight suit this backend (push and pull use it); default 4. */
  readonly parallelism?: number;
  /** Stores `body` under `key`, atomically (see the contract above). */
  put(key: string, body: Body): Promise<ObjectInfo>;
  /** The object's bytes, or only those of `range` (see the contract above). */
  get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
  /** The object's size and reference, or null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes an object; a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Makes every completed put durable. */
  flush(): Promise<void>;
  /** Releases connections and processes the backend holds. */
  close(): Promise<void>;
  /**
   * The capability to reach this backend's objects as files: other threads of this process may
   * then read them, or (`purpose` "write") write them with lib/backends/local/files.ts's
   * layout and atomicity (a temporary name renamed into place). Objects written that way count
   * as durable only after a later `flush`. Absent, or null, for every other backend and for
   * wrappers that must see each call (fault injection). Only the Repository asks for it.
   */
  objectFiles?(purpose: "read" | "write"): ObjectFiles | null;
  /**
   * Temporary objects that interrupted puts left behind (names that `list` skips), with their
   * modification times, for `check` to report and `check --repair` to delete. Absent where a
   * backend leaves none (a put that is atomic on the server) or cannot list them.
   */
  temporaries?(): Promise<TemporaryObject[]>;
  /** Deletes one temporary object that `temporaries` listed. */
  deleteTemporary?(key: string): Promise<void>;
}

/** A temporary object: its key (relative to the repository), size and mtime (ms). */
export interface TemporaryObject {
  /** Its key, relative to the repository. */
  key: string;
  /** Its size in bytes. */
  size: number;
  /** Its modification time, milliseconds since 1970 UTC. */
  mtime: number;
}

/** A backend's objects as files: object key k is the file `root`/k. */
export interface ObjectFiles {
  /** The directory that object keys are relative to. */
  readonly root: string;
}

/** How an error should be treated by the retry layer. */
export type ErrorKind = "notfound" | "permanent" | "transient";

/** A backend error with its classification and the backend it came from. */
export class BackendError extends Error {
  /** The error's name. */
  override name = "BackendError";
  /** Makes the error; the message is prefixed with the backend's name. */
  constructor(
    readonly kind: ErrorKind,
    readonly backend: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${backend}: ${message}`, options);
  }
}

/** The object does not exist. */
export class NotFoundError extends BackendError {
  /** The error's name. */
  override name = "NotFoundError";
  /** Makes the error for the missing `key` of `backend`. */
  constructor(backend: string, key: string) {
    super("notfound", backend, `object not found: ${key}`);
  }
}

/**
 * An error raised while producing a put's body (the source file changed or could not be read).
 * It is not the backend's fault, so retrying the put cannot help.
 */
export class BodyError extends Error {
  override name = "BodyError";
}

/** Classifies any error thrown by a backend; unknown errors count as transient. */
export function errorKind(e: unknown): ErrorKind {
  if (e instanceof BackendError) return e.kind;
  if (e instanceof BodyError) return "permanent";
  return "transient";
}

/** Rejects keys that could leave a backend's root (every backend checks its keys with it). */
export function checkKey(backend: string, key: string): void {
  if (
    key === "" || key.startsWith("/") ||
    key.split("/").some((c) => c === "" || c === "." || c === "..") ||
    key.includes("\0")
  ) {
    throw new BackendError("permanent", backend, `invalid object key: ${JSON.stringify(key)}`);
  }
}

/**
 * Rejects a range whose offset or length is not a non-negative safe integer (every backend
 * checks its ranges with it, before any request).
 */
export function checkRange(backend: string, range: ByteRange | undefined): void {
  if (range === undefined) return;
  const ok = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
  if (typeof range !== "object" || range === null || !ok(range.offset) || !ok(range.length)) {
    const shown = typeof range === "object" && range !== null
      ? `offset ${String(range.offset)}, length ${String(range.length)}`
      : String(range);
    throw new BackendError("permanent", backend, `invalid byte range (${shown})`);
  }
}

/** An empty object stream (a range that holds no bytes of the object). */
export async function* noBytes(): AsyncGenerator<Uint8Array> {}

/** The HTTP Range header for a non-empty range (open-ended when its end is past exact numbers). */
export function rangeHeader(range: ByteRange): string {
  const last = range.offset + range.length - 1;
  return Number.isSafeInteger(last) ? `bytes=${range.offset}-${last}` : `bytes=${range.offset}-`;
}

/** What to make of the answer to a ranged GET (see `judgeRangeAnswer`). */
export type RangeAnswer =
  /** Deliver the first `take` bytes of the body; the server may have sent more. */
  | { take: number }
  /** The offset is at or past the end of the object: deliver nothing. */
  | { empty: true }
  /** The answer does not hold the range: what is wrong with it. */
  | { wrong: string };

/**
 * Judges the head of an HTTP answer to a ranged GET (status, Content-Range, Content-Length or
 * NaN). A 206 must start at the offset and reach at least the end of the range or of the
 * object; some servers send more than was asked (s3rver ignores a range's end of 0), and then
 * only `take` bytes are delivered and the rest of the answer is dropped with its connection.
 * A 416, or a Content-Range that starts past the object's end, means nothing to read. A
 * server that ignores Range answers 200 with the whole object: usable for a range at offset 0
 * (its first bytes), and refused for any other offset, since that would mean reading bytes
 * that were not asked for.
 */
export function judgeRangeAnswer(
  status: number,
  contentRange: string | undefined,
  contentLength: number,
  range: ByteRange,
): RangeAnswer {
  const cr = (contentRange ?? "").trim();
  const asked = rangeHeader(range);
  if (status === 416) {
    const total = /^bytes \*\/(\d+)$/.exec(cr);
    if (total && Number(total[1]) > range.offset) {
      return { wrong: `the server refused the range ${asked} of a ${total[1]} B object` };
    }
    return { empty: true };
  }
  if (status === 200) {
    if (contentLength === 0) return { empty: true };
    if (range.offset === 0) return { take: Math.min(range.length, contentLength || Infinity) };
    return {
      wrong: "the server ignored the Range header (HTTP 200 with the whole object); ranged " +
        "reads need a server that answers Range requests (206 Partial Content)",
    };
  }
  if (status !== 206) return { wrong: `unexpected HTTP ${status} to a ranged GET` };
  const m = /^bytes (\d+)-(-?\d+)\/(\d+|\*)$/.exec(cr);
  if (!m) return { wrong: `a 206 answer without a valid Content-Range ("${cr}")` };
  const first = Number(m[1]);
  const last = Number(m[2]);
  const total = m[3] === "*" ? Infinity : Number(m[3]);
  const sent = `asked for ${asked}, the server sent bytes ${first}-${last}/${m[3]}`;
  if (first !== range.offset) return { wrong: sent };
  if (first >= total) return { empty: true };
  const end = Math.min(range.offset + range.length, total);
  if (last < first || (Number.isFinite(total) && last + 1 < end)) return { wrong: sent };
  const body = last + 1 - first;
  if (!Number.isNaN(contentLength) && contentLength !== body) {
    return { wrong: `${sent} in a body of ${contentLength} B` };
  }
  return { take: Math.min(end - first, body) };
}

/** Key of a blob in the fan-out layout: blobs/<first two hex digits>/<blob_id>. */
export function blobKey(blobId: string): string {
  return `blobs/${blobId.slice(0, 2)}/${blobId}`;
}

/** Key of a changeset manifest. */
export function changesetKey(id: string): string {
  return `changesets/${id}`;
}

/** Key of a key file. */
export function keyFileKey(id: string): string {
  return `keys/${id}`;
}

/** Key of the repository's plaintext configuration. */
export const CONFIG_KEY = "config";
