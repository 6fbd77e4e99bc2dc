// Puts through the client library, atomic and in bounded memory.
//
// An object of known size below `threshold` is read whole, then sent as one PUT with its SHA-256
// signed, so that a body failing midway never reaches the store (some S3-compatible servers
// write a PUT in place). An object of unknown size goes up in one PUT when it ends within
// min(partsize, threshold) bytes. Anything larger streams as a multipart upload in parts of
// `partsize` (larger when 10,000 parts would not hold a known size): the library cuts and
// sends the parts, and n2s's body stream reads at most two parts ahead of the stored ones (one
// uploading, one filling), where the library alone would read four. The library neither aborts a
// multipart upload that failed nor stops after a part failed; n2s does both: the first failed
// request stops the upload's other requests and its body, and the upload is aborted, so that
// nothing shows and no parts are left behind.

import { BackendError, type Body, BodyError } from "../backend.ts";
import { concat } from "../../format/bytes.ts";
import type { ErrorMapper } from "./errors.ts";
import { RequestScope, type S3Connection, UploadScope, UploadStopped } from "./transport.ts";

const MiB = 1024 * 1024;
const MAX_PARTS = 10000;
/** Content type of every object (S3's default, and what some stores need on an empty PUT). */
const METADATA = { "Content-Type": "application/octet-stream" };

/** What a put needs of its backend. */
export interface PutContext {
  conn: S3Connection;
  errors: ErrorMapper;
  name: string;
  partSize: number;
  threshold: number;
}

/** Stores `body` as `objectName`; `key` names it in messages. */
export async function putObject(
  u: PutContext,
  key: string,
  objectName: string,
  body: Body,
): Promise<{ size: number; etag: string }> {
  const what = `put ${key}`;
  const reader = new BodyReader(body, u.name, what);
  try {
    const size = body.size;
    if (size !== undefined && size >= u.threshold) {
      return await multipart(u, what, objectName, reader, [], size);
    }
    // A known size below the threshold is read whole; an unknown one up to one part (so that
    // memory stays within two parts), and it goes up in one PUT if it ends there. The pieces are
    // copied: a body may reuse its buffers once asked for the next piece.
    const limit = size ?? Math.min(u.threshold, u.partSize);
    const chunks: Uint8Array[] = [];
    let total = 0;
    while (size === undefined ? total <= limit : total < size) {
      const p = await reader.next();
      if (p === null) break;
      chunks.push(p.slice());
      total += p.length;
    }
    if (size !== undefined) {
      if (total !== size || (await reader.next()) !== null) {
        throw reader.sizeMismatch(size, total < size ? total : undefined);
      }
    } else if (total > limit) {
      return await multipart(u, what, objectName, reader, chunks, undefined);
    }
    const data = (chunks.length === 1 ? chunks[0] : concat(chunks)) as Uint8Array<ArrayBuffer>;
    const scope = new RequestScope();
    try {
      // A part size above the length makes the library send one PUT.
      const r = await u.conn.within(scope, () =>
        u.conn.putObject(objectName, data, {
          partSize: Math.max(u.partSize, data.length + 1),
          metadata: METADATA,
        }));
      return { size: total, etag: r.etag };
    } catch (e) {
      throw u.errors.map(e, what, scope.answer);
    }
  } finally {
    await reader.close();
  }
}

/** Uploads a large or unknown-size body as a multipart upload, aborting it on failure. */
async function multipart(
  u: PutContext,
  what: string,
  objectName: string,
  reader: BodyReader,
  first: Uint8Array[],
  size: number | undefined,
): Promise<{ size: number; etag: string }> {
  let partSize = u.partSize;
  if (size !== undefined && Math.ceil(size / partSize) > MAX_PARTS) {
    partSize = Math.ceil(size / MAX_PARTS / MiB) * MiB;
  }
  const scope = new UploadScope();
  let offset = 0;
  // The library asks for the next piece only once it has copied the last one into a part.
  const source = new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      // Part k begins at (k - 1) * partSize: reading into part k waits until k - 2 is stored.
      await scope.storedUpTo(Math.floor(offset / partSize) - 1);
      const piece = first.shift() ?? await reader.next();
      if (piece === null) {
        if (size !== undefined && offset !== size) throw reader.sizeMismatch(size, offset);
        controller.close();
        return;
      }
      offset += piece.length;
      if (size !== undefined && offset > size) throw reader.sizeMismatch(size, undefined);
      controller.enqueue(piece as Uint8Array<ArrayBuffer>);
    },
  }, { highWaterMark: 0 });
  try {
    const r = await u.conn.uploading(
      objectName,
      scope,
      () => u.conn.putObject(objectName, source, { partSize, metadata: METADATA }),
    );
    return { size: offset, etag: r.etag };
  } catch (e) {
    scope.controller.abort(new UploadStopped("the upload failed"));
    await scope.settled();
    if (scope.uploadId) await abortUpload(u, objectName, scope.uploadId);
    if (e instanceof BackendError) throw e;
    const failure = scope.failure;
    if (failure instanceof Error) throw u.errors.map(failure, what);
    if (failure) throw u.errors.map(failure.error, what, failure);
    throw u.errors.map(e, what, scope.answer);
  }
}

/** Aborts a multipart upload, so that the store drops its parts; a failure is left alone. */
async function abortUpload(u: PutContext, objectName: string, uploadId: string): Promise<void> {
  try {
    await u.conn.within(new RequestScope(), () =>
      u.conn.makeRequest({
        method: "DELETE",
        objectName,
        query: { uploadId },
        statusCode: 204,
      }));
  } catch {
    // The upload stays invisible; a bucket lifecycle rule may clean up its parts.
  }
}

/** Reads a put's body piece by piece; its own failures become BodyError-caused errors. */
class BodyReader {
  #it: AsyncIterator<Uint8Array | Uint8Array[]> | null = null;
  #queue: Uint8Array[] = [];
  #done = false;

  constructor(
    private readonly body: Body,
    private readonly backend: string,
    private readonly what: string,
  ) {}

  /** The next non-empty piece, or null at the end. */
  async next(): Promise<Uint8Array | null> {
    while (this.#queue.length === 0) {
      if (this.#done) return null;
      let r: IteratorResult<Uint8Array | Uint8Array[]>;
      try {
        this.#it ??= this.body.open()[Symbol.asyncIterator]();
        r = await this.#it.next();
      } catch (e) {
        this.#done = true;
        const cause = hasBodyError(e)
          ? e
          : new BodyError(e instanceof Error ? e.message : String(e), { cause: e });
        throw new BackendError(
          "permanent",
          this.backend,
          `${this.what}: reading the source failed: ${(cause as Error).message}`,
          { cause },
        );
      }
      if (r.done) {
        this.#done = true;
        return null;
      }
      for (const p of Array.isArray(r.value) ? r.value : [r.value]) {
        if (p.length > 0) this.#queue.push(p);
      }
    }
    return this.#queue.shift()!;
  }

  /** The error for a body longer (`got` undefined) or shorter than the size it declared. */
  sizeMismatch(declared: number, got: number | undefined): BackendError {
    const cause = new BodyError(
      got === undefined
        ? `the source gave more than the ${declared} bytes it declared`
        : `the source gave ${got} bytes, not the ${declared} it declared`,
    );
    return new BackendError("permanent", this.backend, `${this.what}: ${cause.message}`, {
      cause,
    });
  }

  /** Ends the body's iterator early, if it is not finished, so that it can release resources. */
  async close(): Promise<void> {
    if (this.#it && !this.#done) {
      this.#done = true;
      await this.#it.return?.()?.catch?.(() => {});
    }
  }
}

function hasBodyError(e: unknown): boolean {
  for (let c = e, d = 0; c instanceof Error && d < 16; c = c.cause, d++) {
    if (c instanceof BodyError) return true;
  }
  return false;
}
