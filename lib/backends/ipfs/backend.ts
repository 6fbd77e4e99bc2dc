// The IPFS backend: objects are files in the node's MFS under `/<root-name>/<key>`, each also
// pinned by its CID (reported as its `ref`), reached through the RPC API (transport.ts). How puts
// stay atomic and what differs between Kubo and js-ipfs: docs/BACKENDS.md.

import {
  type Backend,
  BackendError,
  type Body,
  BodyError,
  type ByteRange,
  checkKey,
  checkRange,
  noBytes,
  NotFoundError,
  type ObjectInfo,
  type TemporaryObject,
} from "../backend.ts";
import { moveWithRetry } from "../shared.ts";
import { type IpfsOptions, parseIpfsLocation } from "./location.ts";
import { IpfsRpc, streamTimeout } from "./transport.ts";

/** Bytes read from the node per call (see `get`). */
const READ_WINDOW = 64 << 20;
/** Seconds an upload may wait on the node (for it to take bytes, or to answer) before failing. */
const STALL_S = 120;
/** Times one upload is sent when the connection carrying it is lost. */
export const ADD_ATTEMPTS = 3;
/** The MFS directory (under the root) that holds puts in progress; `list` skips it. */
const TEMP_DIR = ".n2s-tmp";
/** Tries of the remove-then-move step when other puts race for the same key. */
const MOVE_TRIES = 5;

interface StatReply {
  Type?: string;
  Size?: number;
  Hash?: string;
}

interface LsEntry {
  Name: string;
  Type: number | string;
  Size?: number;
  Hash?: string;
}

/** An error while iterating a put's body, remembered so that it is not mistaken for the node's. */
class BodyFailure {
  constructor(readonly error: unknown) {}
}

/** An IPFS node's MFS, through the Kubo HTTP RPC API. */
export class IpfsBackend implements Backend {
  readonly name: string;
  readonly #root: string;
  readonly #rpc: IpfsRpc;
  /** MFS directories known to exist. */
  readonly #dirs = new Set<string>();

  constructor(opts: IpfsOptions) {
    this.#root = `/${opts.root}`;
    this.name = `ipfs ${this.#root} at ${opts.api.replace(/\/+$/, "")}`;
    this.#rpc = new IpfsRpc(this.name, opts);
  }

  #path(key: string): string {
    checkKey(this.name, key);
    if (key === TEMP_DIR || key.startsWith(`${TEMP_DIR}/`)) {
      throw new BackendError("permanent", this.name, `invalid object key: ${JSON.stringify(key)}`);
    }
    return `${this.#root}/${key}`;
  }

  /** Stats an MFS path; null when it does not exist. */
  async #stat(path: string, what: string): Promise<StatReply | null> {
    try {
      return await this.#rpc.json<StatReply>("files/stat", [["arg", path]], what);
    } catch (e) {
      if (e instanceof BackendError && e.kind === "notfound") return null;
      throw e;
    }
  }

  async #mkdir(dir: string, what: string): Promise<void> {
    if (this.#dirs.has(dir)) return;
    await this.#rpc.json("files/mkdir", [["arg", dir], ["parents", "true"]], what);
    this.#dirs.add(dir);
  }

  async #remove(path: string, what: string): Promise<void> {
    try {
      await this.#rpc.json("files/rm", [["arg", path]], what);
    } catch (e) {
      if (!(e instanceof BackendError && e.kind === "notfound")) throw e;
    }
  }

  async #unpin(cid: string, what: string): Promise<void> {
    try {
      await this.#rpc.json("pin/rm", [["arg", cid]], what);
    } catch (e) {
      if (e instanceof BackendError && /not pinned|notfound/i.test(`${e.kind} ${e.message}`)) {
        return;
      }
      throw e;
    }
  }

  async put(key: string, body: Body): Promise<ObjectInfo> {
    const path = this.#path(key);
    const what = `put ${key}`;
    // The time is in the name: MFS keeps no mtime that check could judge an old leftover by.
    const tmp = `${this.#root}/${TEMP_DIR}/${Date.now().toString(36)}-${crypto.randomUUID()}`;
    try {
      const size = await this.#write(tmp, body, what);
      const st = await this.#stat(tmp, what);
      if (!st?.Hash) {
        throw new BackendError("transient", this.name, `${what}: the written file vanished`);
      }
      if (st.Size !== size) {
        throw new BackendError(
          "transient",
          this.name,
          `${what}: the node stored ${st.Size} B of the ${size} B sent`,
        );
      }
      const replaced = await this.#moveIntoPlace(tmp, path, what);
      await this.#rpc.json("pin/add", [["arg", st.Hash]], what, streamTimeout(size));
      if (replaced && replaced !== st.Hash) await this.#unpin(replaced, what);
      return { key, size, ref: st.Hash };
    } catch (e) {
      // Whatever part of the temporary file exists goes; list() never shows it anyway.
      await this.#remove(tmp, what).catch(() => {});
      if (e instanceof BodyFailure) {
        // The body's own error, never retried: a BodyError in the cause chain.
        const err = e.error;
        const msg = err instanceof Error ? err.message : String(err);
        const cause = err instanceof BodyError ? err : new BodyError(msg, { cause: err });
        throw new BackendError("permanent", this.name, `${what}: ${msg}`, { cause });
      }
      throw e;
    }
  }

  /**
   * Streams the body to `add` as a chunked multipart/form-data request, then copies the added
   * content to `tmp` in MFS (`files/cp`); returns the number of bytes sent. Not `files/write`:
   * js-ipfs 0.66 builds files it writes that way wrongly past a few hundred MiB (a 1 GiB file
   * read back differed from 261 MiB on), while `add` stores them right.
   */
  async #write(tmp: string, body: Body, what: string): Promise<number> {
    // Adding is idempotent (content-addressed, unpinned), so an upload whose connection was
    // lost (a pooled connection the node had just closed, a reset under load) is sent again
    // at once from a fresh open of the body before the error reaches the caller.
    let added: { cid: string; sent: number };
    for (let attempt = 1;; attempt++) {
      try {
        added = await this.#add(body, what);
        break;
      } catch (e) {
        // Not a refused connection or an error answer: those say the same when sent again.
        const lost = e instanceof BackendError && /: connection lost$/.test(e.message);
        if (!lost || attempt >= ADD_ATTEMPTS) throw e;
      }
    }
    await this.#mkdir(tmp.slice(0, tmp.lastIndexOf("/")), what);
    await this.#rpc.json("files/cp", [["arg", `/ipfs/${added.cid}`], ["arg", tmp]], what);
    return added.sent;
  }

  /** One `add` of the body; returns the CID the node gave it and the number of bytes sent. */
  async #add(body: Body, what: string): Promise<{ cid: string; sent: number }> {
    const boundary = `n2s-${crypto.randomUUID()}`;
    const enc = new TextEncoder();
    const head = enc.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="data"\r\n` +
        `Content-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = enc.encode(`\r\n--${boundary}--\r\n`);
    let sent = 0;
    let failure: BodyFailure | undefined;
    // The upload has no overall timeout (the body may be slow to produce), but a node that
    // stops taking bytes, or does not answer once it has them all, is given up on.
    let waitingSince: number | undefined;
    const stall = new AbortController();
    const watch = setInterval(() => {
      if (waitingSince !== undefined && Date.now() - waitingSince > STALL_S * 1000) stall.abort();
    }, 1000);
    async function* parts(): AsyncGenerator<Uint8Array> {
      const send = async function* (p: Uint8Array) {
        waitingSince = Date.now();
        yield p;
        waitingSince = undefined;
      };
      yield* send(head);
      try {
        for await (const piece of body.open()) {
          for (const p of Array.isArray(piece) ? piece : [piece]) {
            if (p.length === 0) continue;
            sent += p.length;
            yield* send(p);
          }
        }
      } catch (e) {
        failure = new BodyFailure(e);
        throw e;
      }
      yield* send(tail);
      waitingSince = Date.now();
    }
    let res: Response;
    try {
      res = await this.#rpc.call(
        "add",
        [["pin", "false"], ["quieter", "true"]],
        what,
        {
          body: ReadableStream.from(parts()),
          contentType: `multipart/form-data; boundary=${boundary}`,
          signal: stall.signal,
        },
      );
    } catch (e) {
      if (failure) throw failure;
      if (stall.signal.aborted) {
        throw new BackendError(
          "transient",
          this.name,
          `${what}: the node stopped taking the upload for ${STALL_S} s`,
          { cause: e },
        );
      }
      throw e;
    } finally {
      clearInterval(watch);
    }
    if (failure) {
      await res.body?.cancel();
      throw failure;
    }
    // `add` answers one JSON object per added file; the last line names the content.
    const lines = (await res.text()).trim().split("\n").filter((l) => l.trim() !== "");
    let cid: string | undefined;
    try {
      cid = JSON.parse(lines[lines.length - 1] ?? "{}").Hash;
    } catch {
      // handled below
    }
    if (!cid) {
      throw new BackendError("transient", this.name, `${what}: the node's add gave no CID`);
    }
    return { cid, sent };
  }

  /**
   * Moves `tmp` to `path` (one atomic MFS step), after removing the object `path` holds;
   * returns the CID of the object it replaced, if any. Puts racing for the same key each
   * remove and try again.
   */
  async #moveIntoPlace(tmp: string, path: string, what: string): Promise<string | undefined> {
    const dir = path.slice(0, path.lastIndexOf("/"));
    let replaced: string | undefined;
    // Only a failed `files/mv` is tried again; the steps before it fail at once.
    let moving = false;
    await moveWithRetry(async () => {
      moving = false;
      await this.#mkdir(dir, what);
      const old = await this.#stat(path, what);
      if (old) {
        if (old.Type === "directory") {
          throw new BackendError(
            "permanent",
            this.name,
            `${what}: ${path} is a directory in MFS, not an object`,
          );
        }
        replaced ??= old.Hash;
        await this.#remove(path, what);
      }
      moving = true;
      await this.#rpc.json("files/mv", [["arg", tmp], ["arg", path]], what);
    }, (e) => {
      if (!moving || !(e instanceof BackendError)) return false;
      if (/did not exist|not found/i.test(e.message)) {
        // The directory went away behind our back: create it again.
        this.#dirs.delete(dir);
        return true;
      }
      return /already (has entry|exists)/i.test(e.message);
    }, MOVE_TRIES);
    return replaced;
  }

  /**
   * Reads the object by its CID with `cat`, in windows; a range is read the same way from its
   * offset (`cat` takes `offset` and `length`), so only its bytes leave the node.
   */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const path = this.#path(key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    const st = await this.#stat(path, what);
    if (!st || st.Type === "directory") throw new NotFoundError(this.name, key);
    const size = st.Size ?? 0;
    const start = range ? Math.min(range.offset, size) : 0;
    const end = range ? Math.min(size, start + range.length) : size;
    if (end <= start) return noBytes();
    const first = await this.#readWindow(path, st.Hash, start, end, what, key);
    return this.#readWindows(path, st.Hash, start, end, first, what, key);
  }

  /**
   * Opens one window of an object: bytes from `offset` up to `end`, at most READ_WINDOW of
   * them. Objects are read in windows, by CID: each call's timeout then fits its own size
   * (js-ipfs ends a read at its timeout and still answers 200), and every window comes from
   * the same content even if the key is overwritten meanwhile.
   */
  async #readWindow(
    path: string,
    cid: string | undefined,
    offset: number,
    end: number,
    what: string,
    key: string,
  ): Promise<ReadableStream<Uint8Array> | null> {
    const count = Math.min(READ_WINDOW, end - offset);
    try {
      const res = cid
        ? await this.#rpc.call(
          "cat",
          [["arg", `/ipfs/${cid}`], ["offset", String(offset)], ["length", String(count)]],
          what,
          { timeoutS: streamTimeout(count) },
        )
        : await this.#rpc.call(
          "files/read",
          [["arg", path], ["offset", String(offset)], ["count", String(count)]],
          what,
          { timeoutS: streamTimeout(count) },
        );
      return res.body;
    } catch (e) {
      if (e instanceof BackendError && e.kind === "notfound") {
        throw new NotFoundError(this.name, key);
      }
      throw e;
    }
  }

  /** Streams the windows from `start` up to `end`, the first one already open. */
  async *#readWindows(
    path: string,
    cid: string | undefined,
    start: number,
    end: number,
    first: ReadableStream<Uint8Array> | null,
    what: string,
    key: string,
  ): AsyncGenerator<Uint8Array> {
    let stream = first;
    for (let offset = start;;) {
      const count = Math.min(READ_WINDOW, end - offset);
      if (stream) yield* this.#readAll(stream, count, what);
      else if (count > 0) {
        throw new BackendError("transient", this.name, `${what}: the node sent no body`);
      }
      offset += count;
      if (offset >= end) return;
      stream = await this.#readWindow(path, cid, offset, end, what, key);
    }
  }

  async *#readAll(
    stream: ReadableStream<Uint8Array>,
    size: number,
    what: string,
  ): AsyncGenerator<Uint8Array> {
    const reader = stream.getReader();
    let got = 0;
    try {
      while (true) {
        let r: ReadableStreamReadResult<Uint8Array>;
        try {
          r = await reader.read();
        } catch (e) {
          throw this.#rpc.networkError(e, what);
        }
        if (r.done) break;
        got += r.value.length;
        yield r.value;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    if (got !== size) {
      // The node's timeout ends a read early and still answers 200.
      throw new BackendError(
        "transient",
        this.name,
        `${what}: the node sent ${got} B of ${size} B`,
      );
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const st = await this.#stat(this.#path(key), `stat ${key}`);
    if (!st || st.Type === "directory") return null;
    return { key, size: st.Size ?? 0, ref: st.Hash };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const what = `list ${prefix}`;
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    if (base !== "") {
      // files/ls of a file lists the file itself, which would read as a child of it.
      const st = await this.#stat(`${this.#root}/${base}`, what);
      if (st?.Type !== "directory") return;
    }
    const stack = [base];
    while (stack.length > 0) {
      const rel = stack.pop()!;
      const dir = rel === "" ? this.#root : `${this.#root}/${rel}`;
      let entries: LsEntry[];
      try {
        const reply = await this.#rpc.json<{ Entries?: LsEntry[] | null }>(
          "files/ls",
          [["arg", dir], ["long", "true"]],
          what,
        );
        entries = reply.Entries ?? [];
      } catch (e) {
        if (e instanceof BackendError && e.kind === "notfound") continue;
        throw e;
      }
      for (const ent of entries) {
        if (rel === "" && ent.Name === TEMP_DIR) continue;
        const key = rel === "" ? ent.Name : `${rel}/${ent.Name}`;
        const isDir = ent.Type === 1 || ent.Type === "directory";
        if (isDir) {
          if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) stack.push(key);
        } else if (key.startsWith(prefix)) {
          yield { key, size: ent.Size ?? 0, ref: ent.Hash };
        }
      }
    }
  }

  /** Temporary files of puts cut off before their move into place (their time from the name). */
  async temporaries(): Promise<TemporaryObject[]> {
    let entries: LsEntry[];
    try {
      const reply = await this.#rpc.json<{ Entries?: LsEntry[] | null }>(
        "files/ls",
        [["arg", `${this.#root}/${TEMP_DIR}`], ["long", "true"]],
        "list temporary objects",
      );
      entries = reply.Entries ?? [];
    } catch (e) {
      if (e instanceof BackendError && e.kind === "notfound") return [];
      throw e;
    }
    return entries.map((ent) => {
      const t = parseInt(ent.Name.split("-")[0], 36);
      return {
        key: `${TEMP_DIR}/${ent.Name}`,
        size: ent.Size ?? 0,
        // A name without a time is from before names carried one: old.
        mtime: Number.isSafeInteger(t) && ent.Name.includes("-") ? t : 0,
      };
    });
  }

  async deleteTemporary(key: string): Promise<void> {
    const name = key.startsWith(`${TEMP_DIR}/`) ? key.slice(TEMP_DIR.length + 1) : "";
    if (name === "" || name.includes("/")) {
      throw new BackendError("permanent", this.name, `${key} is not a temporary object`);
    }
    await this.#remove(`${this.#root}/${TEMP_DIR}/${name}`, `delete ${key}`);
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    const what = `delete ${key}`;
    const st = await this.#stat(path, what);
    if (!st || st.Type === "directory") return;
    await this.#remove(path, what);
    if (st.Hash) await this.#unpin(st.Hash, what);
  }

  /** Writes the root directory's cached changes through to the node's block store. */
  async flush(): Promise<void> {
    try {
      await this.#rpc.json("files/flush", [["arg", this.#root]], "flush");
    } catch (e) {
      // Nothing was ever stored.
      if (e instanceof BackendError && e.kind === "notfound") return;
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

/**
 * Opens `ipfs://<root-name>[?api=…]`: objects under the MFS directory /<root-name> (see
 * location.ts for where the API address comes from).
 */
// deno-lint-ignore require-await
export async function openIpfsLocation(
  location: string,
  env: Record<string, string | undefined>,
): Promise<IpfsBackend> {
  return new IpfsBackend(parseIpfsLocation(location, env));
}
