// The rclone backend: a repository on any remote rclone knows, driven through one long-lived
// `rclone rcd` per backend (transport.ts) over its HTTP remote-control API (client.ts), so that
// an operation costs a request instead of an rclone process. A put uploads to `.n2s-tmp/<random>`
// and moves it to its key; atomicity and durability per remote type: docs/BACKENDS.md.

import {
  type Backend,
  BackendError,
  type Body,
  BodyError,
  type ByteRange,
  checkKey,
  checkRange,
  judgeRangeAnswer,
  noBytes,
  NotFoundError,
  type ObjectInfo,
  rangeHeader,
  type TemporaryObject,
} from "../backend.ts";
import { moveWithRetry, randomHex } from "../shared.ts";
import { RcClient } from "./client.ts";
import { RcError, rcloneLine } from "./errors.ts";
import { childEnv, parseRcloneLocation, type RcloneOptions, redactRemote } from "./location.ts";

/** The folder (under the remote's root) that holds uploads until they are moved to their key. */
export const TEMP_DIR = ".n2s-tmp";

/** A repository on an rclone remote, driven through one `rclone rcd`. */
export class RcloneBackend implements Backend {
  readonly name: string;
  readonly parallelism = 8;
  #unflushed = 0;
  #localRoot: Promise<string | null> | null = null;
  #closed = false;
  readonly #rc: RcClient;
  /** The name rcd knows the location by (see RcClient.alias). */
  readonly #fs: string;

  constructor(readonly fs: string, opts: RcloneOptions) {
    this.name = `rclone ${redactRemote(fs)}`;
    this.#rc = new RcClient(this.name, fs, opts, this.parallelism);
    this.#fs = this.#rc.alias;
  }

  /** Starts rcd now, so that a missing rclone fails the open. */
  async start(): Promise<void> {
    await this.#rc.daemon();
  }

  async put(key: string, body: Body): Promise<ObjectInfo> {
    checkKey(this.name, key);
    const what = `put ${key}`;
    const name = randomHex(16);
    const tmp = `${TEMP_DIR}/${name}`;
    const rcd = await this.#rc.daemon();
    const boundary = `n2s-${randomHex(16)}`;
    const enc = new TextEncoder();
    const head = enc.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
        `Content-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = enc.encode(`\r\n--${boundary}--\r\n`);
    let size = 0;
    let bodyError: unknown = undefined;
    let source: AsyncIterator<Uint8Array | Uint8Array[]> | null = null;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(head);
      },
      async pull(c) {
        try {
          source ??= body.open()[Symbol.asyncIterator]();
          while (true) {
            const r = await source.next();
            if (r.done) {
              if (body.size !== undefined && size !== body.size) {
                throw new BodyError(`body has ${size} bytes, not the ${body.size} it announced`);
              }
              c.enqueue(tail);
              c.close();
              return;
            }
            let any = false;
            for (const p of Array.isArray(r.value) ? r.value : [r.value]) {
              if (p.length === 0) continue;
              // A copy: the body may reuse its buffer once the next piece is asked for, while
              // this one may still wait to be sent.
              c.enqueue(p.slice());
              size += p.length;
              any = true;
            }
            if (any) return;
          }
        } catch (e) {
          // The upload still ends as a well-formed request, so that rcd has stored (and
          // answered for) the temporary object before it is deleted below. Aborting the request
          // instead raced that deletion against rcd's still running upload, which could create
          // the temporary object afterwards and leave it behind.
          bodyError = e;
          c.enqueue(tail);
          c.close();
        }
      },
      async cancel() {
        await source?.return?.();
      },
    });
    const query = `fs=${encodeURIComponent(this.#fs)}&remote=${encodeURIComponent(TEMP_DIR)}`;
    let uploaded = false;
    try {
      try {
        await this.#rc.send(rcd, what, `operations/uploadfile?${query}`, {
          method: "POST",
          headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
          body: stream,
        });
      } catch (e) {
        // The body's own error is the cause of whatever the request ran into.
        if (bodyError !== undefined) throw bodyError;
        throw e;
      }
      if (bodyError !== undefined) throw bodyError;
      uploaded = true;
      await this.#move(tmp, key, what);
      this.#unflushed++;
      return { key, size };
    } catch (e) {
      // Best effort: an upload that failed may have left its temporary object (list skips it).
      if (uploaded || bodyError !== undefined) {
        await this.#rc.call("operations/deletefile", { fs: this.#fs, remote: tmp }, what)
          .catch(() => {});
      }
      if (e === bodyError) {
        const msg = e instanceof Error ? e.message : String(e);
        throw new BackendError("permanent", this.name, `${what}: ${msg}`, { cause: e });
      }
      throw e instanceof RcError ? this.#rc.classify(what, e) : e;
    }
  }

  /**
   * Moves an uploaded object to its key. rclone deletes an object already at the key and then
   * renames; over SFTP the rename fails when a concurrent put of the same key got there in
   * between, so a transient failure is tried again here rather than uploading again.
   */
  async #move(tmp: string, key: string, what: string): Promise<void> {
    const params = { srcFs: this.#fs, srcRemote: tmp, dstFs: this.#fs, dstRemote: key };
    await moveWithRetry(async () => {
      try {
        await this.#rc.call("operations/movefile", params, what);
      } catch (e) {
        // When racing puts of one key delete each other's object around the rename, rclone
        // reports "object not found" for a move that took place: the upload is gone from the
        // temporary area, so this put did land (and another one may have replaced it since).
        if (e instanceof RcError && e.status === 404 && !(await this.#exists(tmp, what))) return;
        throw e;
      }
    }, (e) => e instanceof RcError && this.#rc.classify(what, e).kind === "transient");
  }

  /** Whether an object exists, by any name (stat takes keys only). */
  async #exists(remote: string, what: string): Promise<boolean> {
    const out = await this.#rc.run("operations/stat", { fs: this.#fs, remote }, what);
    return out.item !== null && out.item !== undefined;
  }

  /**
   * Reads the object through --rc-serve; a range is the same GET with a Range header, which
   * rcd answers 206 by opening the object at the offset on the remote (a seek, a ranged
   * request, whatever the remote's own ranged open is).
   */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    checkKey(this.name, key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    if (range && range.length === 0) {
      // HTTP cannot ask for no bytes; a stat tells whether the object exists.
      if ((await this.stat(key)) === null) throw new NotFoundError(this.name, key);
      return noBytes();
    }
    const rcd = await this.#rc.daemon();
    const path = key.split("/").map(encodeURIComponent).join("/");
    let res: Response;
    try {
      ({ res } = await this.#rc.send(
        rcd,
        what,
        `[${encodeURIComponent(this.#fs)}]/${path}`,
        range ? { headers: { range: rangeHeader(range) } } : {},
        true,
      ));
    } catch (e) {
      if (e instanceof RcError && e.status === 404) {
        // rcd answers 404 both for a missing object and for one it could not open at the
        // offset (some remotes refuse an offset past the end): a stat tells them apart.
        const st = range ? await this.stat(key) : null;
        if (st === null) throw new NotFoundError(this.name, key);
        if (st.size <= range!.offset) return noBytes();
        throw new BackendError("transient", this.name, `${what}: rcd could not open the object`, {
          cause: e,
        });
      }
      throw e instanceof RcError ? this.#rc.classify(what, e) : e;
    }
    if (!res.ok || res.body === null) {
      throw new BackendError("transient", this.name, `${what}: rcd answered without a body`);
    }
    // Bytes to deliver: all the body has, or the range's (checked: a short body is an error).
    let take = Infinity;
    if (range) {
      const answer = judgeRangeAnswer(
        res.status,
        res.headers.get("content-range") ?? undefined,
        Number(res.headers.get("content-length") ?? NaN),
        range,
      );
      if (!("take" in answer)) {
        await res.body.cancel().catch(() => {});
        if ("empty" in answer) return noBytes();
        throw new BackendError("permanent", this.name, `${what}: ${answer.wrong}`);
      }
      take = answer.take;
    }
    const reader = res.body.getReader();
    const lost = (e: unknown) => this.#rc.lost(rcd, what, e);
    const name = this.name;
    return (async function* () {
      let done = false;
      let n = 0;
      try {
        while (true) {
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await reader.read();
          } catch (e) {
            throw lost(e);
          }
          if (r.done) {
            done = true;
            break;
          }
          // Read to the end when the body holds just the range, so that the connection can
          // serve again; a longer one is cut off.
          if (n >= take) break;
          const piece = n + r.value.length > take ? r.value.subarray(0, take - n) : r.value;
          n += piece.length;
          if (piece.length > 0) yield piece;
        }
        if (Number.isFinite(take) && n !== take) {
          throw new BackendError("transient", name, `${what}: got ${n} of ${take} bytes`);
        }
      } finally {
        if (!done) await reader.cancel().catch(() => {});
        reader.releaseLock();
      }
    })();
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    checkKey(this.name, key);
    const out = await this.#rc.run(
      "operations/stat",
      { fs: this.#fs, remote: key, opt: { noModTime: true, noMimeType: true } },
      `stat ${key}`,
    );
    const item = out.item as { Size: number; IsDir: boolean } | null | undefined;
    if (!item || item.IsDir) return null;
    return { key, size: item.Size };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const slash = prefix.lastIndexOf("/");
    const dir = slash < 0 ? "" : prefix.slice(0, slash);
    let out: Record<string, unknown>;
    try {
      out = await this.#rc.call(
        "operations/list",
        {
          fs: this.#fs,
          remote: dir,
          opt: { recurse: true, filesOnly: true, noModTime: true, noMimeType: true },
        },
        `list ${prefix}`,
      );
    } catch (e) {
      // A directory (or the whole repository root) that does not exist holds nothing.
      if (e instanceof RcError && e.status === 404) return;
      throw e instanceof RcError ? this.#rc.classify(`list ${prefix}`, e) : e;
    }
    const items = (out.list ?? []) as { Path: string; Size: number; IsDir: boolean }[];
    for (const item of items) {
      const key = item.Path;
      if (item.IsDir || !key.startsWith(prefix)) continue;
      if (key === TEMP_DIR || key.startsWith(`${TEMP_DIR}/`)) continue;
      yield { key, size: item.Size };
    }
  }

  /** Uploads under `.n2s-tmp/` that were cut off before their move into place. */
  async temporaries(): Promise<TemporaryObject[]> {
    let out: Record<string, unknown>;
    try {
      out = await this.#rc.call(
        "operations/list",
        { fs: this.#fs, remote: TEMP_DIR, opt: { filesOnly: true, noMimeType: true } },
        "list temporary objects",
      );
    } catch (e) {
      if (e instanceof RcError && e.status === 404) return [];
      throw e instanceof RcError ? this.#rc.classify("list temporary objects", e) : e;
    }
    const items = (out.list ?? []) as { Path: string; Size: number; ModTime?: string }[];
    return items.map((i) => ({
      key: `${TEMP_DIR}/${i.Path.split("/").pop()}`,
      size: i.Size,
      mtime: i.ModTime ? Date.parse(i.ModTime) : 0,
    }));
  }

  async deleteTemporary(key: string): Promise<void> {
    if (!key.startsWith(`${TEMP_DIR}/`)) {
      throw new BackendError("permanent", this.name, `${key} is not a temporary object`);
    }
    await this.delete(key);
  }

  async delete(key: string): Promise<void> {
    checkKey(this.name, key);
    const what = `delete ${key}`;
    try {
      await this.#rc.call("operations/deletefile", { fs: this.#fs, remote: key }, what);
    } catch (e) {
      if (e instanceof RcError && e.status === 404) return;
      throw e instanceof RcError ? this.#rc.classify(what, e) : e;
    }
  }

  /** The root directory when the remote is a local file system, else null. */
  #local(): Promise<string | null> {
    this.#localRoot ??= this.#rc.run("operations/fsinfo", { fs: this.#fs }, "flush").then(
      (info) => {
        const features = info.Features as Record<string, boolean> | undefined;
        return features?.IsLocal && typeof info.Root === "string" ? info.Root : null;
      },
    ).catch((e) => {
      this.#localRoot = null;
      throw e;
    });
    return this.#localRoot;
  }

  /** Syncs the file system of a local root; remote stores need nothing (docs/BACKENDS.md). */
  async flush(): Promise<void> {
    if (this.#unflushed === 0) return;
    const n = this.#unflushed;
    const root = await this.#local();
    if (root !== null) {
      try {
        const out = await new Deno.Command("sync", { args: ["-f", root], stderr: "piped" })
          .output();
        if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim());
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        throw new BackendError("transient", this.name, `flush (sync -f): ${rcloneLine(msg)}`, {
          cause: e,
        });
      }
    }
    this.#unflushed -= n;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      await this.#rc.close();
    }
  }
}

/**
 * Opens `rclone:PATH` with settings from `env` (N2S_RCLONE, RCLONE_CONFIG and other RCLONE_*
 * variables); starts the backend's rcd before it returns.
 */
export async function openRcloneLocation(
  location: string,
  env: Record<string, string | undefined>,
): Promise<Backend> {
  const fs = parseRcloneLocation(location);
  const program = env.N2S_RCLONE || "rclone";
  const b = new RcloneBackend(fs, { program, env: childEnv(env) });
  await b.start();
  return b;
}
