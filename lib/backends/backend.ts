// The one interface every storage backend implements, its error classes, and the body type
// that lets a put be retried without holding the object in memory.

import { concat } from "../format/bytes.ts";

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

/** A body over bytes already in memory. */
export function bytesBody(data: Uint8Array): Body {
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
  put(key: string, body: Body): Promise<ObjectInfo>;
  get(key: string): Promise<AsyncIterable<Uint8Array>>;
  stat(key: string): Promise<ObjectInfo | null>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  delete(key: string): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * A local directory holding this backend's objects as files, which other threads of this
   * process may then read, or (`purpose` "write") write with lib/backends/local_files.ts's
   * layout and atomicity (a temporary name renamed into place). Objects written that way count
   * as durable only after a later `flush`. Absent, or null, for every other backend and for
   * wrappers that must see each call (fault injection).
   */
  directory?(purpose: "read" | "write"): string | null;
}

/** How an error should be treated by the retry layer. */
export type ErrorKind = "notfound" | "permanent" | "transient";

/** A backend error with its classification and the backend it came from. */
export class BackendError extends Error {
  override name = "BackendError";
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
  override name = "NotFoundError";
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
