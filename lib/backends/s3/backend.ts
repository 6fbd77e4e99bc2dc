// The S3 backend: objects in a bucket of any S3-compatible store, under an optional key prefix.
// Requests are built, signed (AWS Signature Version 4) and sent by the client library
// @bradenmacdonald/s3-lite-client, through n2s's transport (transport.ts); location.ts reads the
// location and credentials, upload.ts does puts, listing.ts reads listings, errors.ts says what
// a failure means.

import { S3Errors, type S3ObjectStatus } from "@bradenmacdonald/s3-lite-client";
import {
  type Backend,
  type Body,
  type ByteRange,
  checkKey,
  checkRange,
  judgeRangeAnswer,
  noBytes,
  NotFoundError,
  type ObjectInfo,
} from "../backend.ts";
import { errorText } from "../shared.ts";
import { ErrorMapper } from "./errors.ts";
import { parseListPage } from "./listing.ts";
import { loadS3Config, type S3Config } from "./location.ts";
import { type Answer, RequestScope, S3Connection, S3Transport } from "./transport.ts";
import { putObject } from "./upload.ts";

export { parseS3Location, parseSize, type S3Config } from "./location.ts";

/** Opens the S3 backend a location names; nothing is contacted until the first operation. */
export function openS3Location(
  location: string,
  env: Record<string, string | undefined>,
): Promise<S3Backend> {
  try {
    return Promise.resolve(new S3Backend(loadS3Config(location, env)));
  } catch (e) {
    return Promise.reject(e);
  }
}

function objectInfo(key: string, size: number, etag: string): ObjectInfo {
  return etag ? { key, size, ref: etag } : { key, size };
}

/** Whether `e` is the library's error for an answer with this status. */
function hasStatus(e: unknown, status: number): e is S3Errors.ServerError {
  return e instanceof S3Errors.ServerError && e.statusCode === status;
}

/** A bucket (and key prefix) of an S3-compatible store. */
export class S3Backend implements Backend {
  readonly name: string;
  readonly parallelism = 8;
  readonly #c: S3Config;
  readonly #conn: S3Connection;
  readonly #errors: ErrorMapper;
  /** Set once the bucket is known to exist: a 404 then means a missing object only. */
  #bucketSeen = false;
  /** The put in progress per key: puts of one key run one after the other. */
  readonly #putting = new Map<string, Promise<unknown>>();

  constructor(config: S3Config) {
    this.#c = config;
    const where = config.prefix ? `${config.bucket}/${config.prefix.slice(0, -1)}` : config.bucket;
    this.name = `s3 ${where} at ${config.endpoint}`;
    this.#errors = new ErrorMapper(this.name, config);
    const url = new URL(config.endpoint);
    const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
    const target = config.connect ?? {
      hostname: config.style === "virtual" ? `${config.bucket}.${url.hostname}` : url.hostname,
      port,
    };
    const transport = new S3Transport({
      host: config.style === "virtual" ? `${config.bucket}.${url.host}` : url.host,
      target: { hostname: target.hostname.replace(/^\[(.*)\]$/, "$1"), port: target.port },
      label: config.connect ? `${config.connect.hostname}:${config.connect.port}` : url.host,
      caCerts: config.caCerts,
      connect: config.connect,
      https: url.protocol === "https:",
    });
    try {
      this.#conn = new S3Connection({
        endPoint: config.endpoint,
        region: config.region,
        bucket: config.bucket,
        pathStyle: config.style === "path",
        accessKey: config.credentials.accessKeyId,
        secretKey: config.credentials.secretAccessKey,
        sessionToken: config.credentials.sessionToken,
      }, transport);
    } catch (e) {
      transport.close();
      // For instance a temporary access key (ASIA…) without its session token.
      throw this.#errors.error("permanent", `cannot use these credentials: ${errorText(e)}`, e);
    }
  }

  #fullKey(key: string): string {
    checkKey(this.name, key);
    return this.#c.prefix + key;
  }

  /**
   * Runs one request of the library in its own scope; failures become BackendErrors, except those
   * `onError` handles (it returns the value to use instead, or throws).
   */
  async #request<T>(
    what: string,
    f: (conn: S3Connection) => Promise<T>,
    onError?: (e: unknown, scope: RequestScope) => Promise<{ value: T } | undefined>,
  ): Promise<T> {
    const scope = new RequestScope();
    try {
      const r = await this.#conn.within(scope, () => f(this.#conn));
      this.#bucketSeen = true;
      return r;
    } catch (e) {
      if (onError) {
        const handled = await onError(e, scope);
        if (handled) return handled.value;
      }
      throw this.#errors.map(e, what, scope.answer);
    }
  }

  /**
   * Throws for a 404 that names a missing bucket; returns normally for a missing object. A HEAD
   * 404 has no body to say which: when the bucket was not seen yet, a GET asks.
   */
  async #notFound(answer: Answer | undefined, objectName: string, what: string): Promise<void> {
    let code = answer?.error.code ?? "";
    if (answer?.text === "" && !this.#bucketSeen) {
      const scope = new RequestScope();
      try {
        const res = await this.#conn.within(scope, () => this.#conn.getObject(objectName));
        await res.body?.cancel();
        return;
      } catch (e) {
        if (!hasStatus(e, 404)) throw this.#errors.map(e, what, scope.answer);
        code = scope.answer?.error.code ?? "";
        answer = scope.answer;
      }
    }
    if (code === "NoSuchBucket") throw this.#errors.map(answer!.error, what, answer);
    if (code === "NoSuchKey") this.#bucketSeen = true;
  }

  /** A HEAD error has no body: the same request as a GET says what the error is. */
  async #explainHead(e: unknown, objectName: string, what: string, head?: Answer): Promise<never> {
    if (head && head.text === "") {
      const scope = new RequestScope();
      try {
        const res = await this.#conn.within(scope, () => this.#conn.getObject(objectName));
        await res.body?.cancel();
      } catch (again) {
        if (!hasStatus(again, 404)) throw this.#errors.map(again, what, scope.answer);
      }
    }
    throw this.#errors.map(e, what, head);
  }

  /**
   * Stores an object. Puts of one key from this instance wait for each other: S3 itself keeps
   * racing PUTs apart, but some S3-compatible servers (s3rver) write a PUT in place, and two
   * at once would leave a mix of both; n2s may put one blob twice at once when two files
   * hold the same bytes.
   */
  async put(key: string, body: Body): Promise<ObjectInfo> {
    const full = this.#fullKey(key);
    const before = this.#putting.get(full);
    const mine = (before ?? Promise.resolve()).catch(() => {}).then(() =>
      putObject(
        {
          conn: this.#conn,
          errors: this.#errors,
          name: this.name,
          partSize: this.#c.partSize,
          threshold: this.#c.threshold,
        },
        key,
        full,
        body,
      )
    );
    this.#putting.set(full, mine);
    try {
      const { size, etag } = await mine;
      this.#bucketSeen = true;
      return objectInfo(key, size, etag);
    } finally {
      if (this.#putting.get(full) === mine) this.#putting.delete(full);
    }
  }

  /**
   * A GET of the object; a range is a GET with `Range: bytes=first-last`, answered 206 with just
   * those bytes (416 when the offset is at or past the end: nothing to read).
   */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const full = this.#fullKey(key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    if (range && range.length === 0) {
      // HTTP cannot ask for no bytes; a HEAD tells whether the object exists.
      if ((await this.stat(key)) === null) throw new NotFoundError(this.name, key);
      return noBytes();
    }
    const res = await this.#request(what, (conn) => {
      if (!range) return conn.getObject(full);
      // Past exact numbers, the range runs to the end (length 0 means that to the library).
      const exact = Number.isSafeInteger(range.offset + range.length);
      return conn.getPartialObject(full, {
        offset: range.offset,
        length: exact ? range.length : 0,
      });
    }, async (e, scope) => {
      if (hasStatus(e, 404)) {
        await this.#notFound(scope.answer, full, what);
        throw new NotFoundError(this.name, key);
      }
      // The library wants a 206; a 416 (nothing to read) or a 200 (Range ignored) is judged here.
      if (range && (hasStatus(e, 416) || hasStatus(e, 200)) && scope.response) {
        return { value: scope.response };
      }
      return undefined;
    });
    const length = Number(res.headers.get("content-length") ?? NaN);
    // Bytes to deliver: the whole body, or the range's (a server may send more, see below).
    let take = length;
    if (range) {
      const answer = judgeRangeAnswer(
        res.status,
        res.headers.get("content-range") ?? undefined,
        length,
        range,
      );
      if ("empty" in answer || "wrong" in answer) {
        await res.body?.cancel().catch(() => {});
        if ("empty" in answer) return noBytes();
        throw this.#errors.error("permanent", `${what}: ${answer.wrong}`);
      }
      take = answer.take;
    }
    const fail = (msg: string, cause?: unknown) => this.#errors.error("transient", msg, cause);
    return (async function* () {
      const reader = res.body!.getReader();
      let n = 0;
      try {
        while (!(n >= take)) {
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await reader.read();
          } catch (e) {
            throw fail(`${what}: connection lost after ${n} bytes: ${errorText(e)}`, e);
          }
          if (r.done) break;
          // A body longer than the range (a server that ignored its end) is cut off once the
          // range is read, with its connection.
          const chunk = n + r.value.length > take ? r.value.subarray(0, take - n) : r.value;
          n += chunk.length;
          if (chunk.length > 0) yield chunk;
        }
      } finally {
        // An abandoned or cut body closes its connection.
        await reader.cancel().catch(() => {});
      }
      if (Number.isFinite(take) && n !== take) throw fail(`${what}: got ${n} of ${take} bytes`);
    })();
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const full = this.#fullKey(key);
    const what = `stat ${key}`;
    const st = await this.#request<S3ObjectStatus | null>(
      what,
      (conn) => conn.statObject(full),
      async (e, scope) => {
        if (hasStatus(e, 404)) {
          await this.#notFound(scope.answer, full, what);
          return { value: null };
        }
        return await this.#explainHead(e, full, what, scope.answer);
      },
    );
    if (st === null) return null;
    if (!Number.isSafeInteger(st.size)) {
      throw this.#errors.error("transient", `${what}: no Content-Length in the answer`);
    }
    return objectInfo(key, st.size, st.etag);
  }

  /**
   * ListObjectsV2, page by page, with keys URL-encoded; the library signs and sends each page's
   * request and listing.ts reads it.
   */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const strip = this.#c.prefix.length;
    const what = `list ${prefix}`;
    const full = this.#c.prefix + prefix;
    let token: string | undefined;
    do {
      const query: Record<string, string> = {
        "list-type": "2",
        prefix: full,
        "encoding-type": "url",
      };
      if (token !== undefined) query["continuation-token"] = token;
      const text = await this.#request(what, async (conn) => {
        const res = await conn.makeRequest({
          method: "GET",
          objectName: "",
          query,
          returnBody: true,
        });
        return await res.text();
      });
      let page;
      try {
        page = parseListPage(text);
      } catch (e) {
        throw this.#errors.error("transient", `${what}: ${errorText(e)}`, e);
      }
      for (const o of page.objects) {
        if (o.key.startsWith(full)) yield objectInfo(o.key.slice(strip), o.size, o.etag);
      }
      token = page.truncated ? page.next : undefined;
      if (page.truncated && !token) {
        throw this.#errors.error(
          "transient",
          `${what}: truncated page without a continuation token`,
        );
      }
    } while (token !== undefined);
  }

  async delete(key: string): Promise<void> {
    const full = this.#fullKey(key);
    const what = `delete ${key}`;
    await this.#request(what, (conn) => conn.deleteObject(full), async (e, scope) => {
      // Any 2xx is a deletion (the library wants 204); a 404 may mean a missing bucket.
      if (e instanceof S3Errors.ServerError && e.statusCode >= 200 && e.statusCode < 300) {
        await scope.response?.body?.cancel().catch(() => {});
        return { value: undefined };
      }
      if (hasStatus(e, 404)) {
        await this.#notFound(scope.answer, full, what);
        return { value: undefined };
      }
      return undefined;
    });
  }

  /** S3 acknowledges a PUT only once it is durable; nothing to do. */
  async flush(): Promise<void> {}

  // deno-lint-ignore require-await
  async close(): Promise<void> {
    this.#conn.transport.close();
  }
}
