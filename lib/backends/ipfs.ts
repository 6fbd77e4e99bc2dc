// The IPFS backend: objects are files in the node's MFS (Mutable File System) under
// `/<root-name>/<key>`, driven over `fetch` through the Kubo HTTP RPC API (POST /api/v0/…).
// Every stored object is also pinned by its CID, so its content survives `repo/gc` even if the
// MFS entry is lost; the CID is reported as the object's `ref`.
//
// Location: `ipfs://<root-name>[/<more>…][?api=http://127.0.0.1:5001]`. Without `api=` the API
// address comes from N2S_IPFS_API, then IPFS_API (a URL or a multiaddr such as
// /ip4/127.0.0.1/tcp/5001), then http://127.0.0.1:5001. User and password in the API URL are
// sent as HTTP Basic authentication and never shown in messages.
//
// A put streams the body as multipart/form-data (a chunked request, so a 1 GiB object never sits
// in memory) to `add` (blocks only, not pinned yet), copies the added content with `files/cp` to
// a temporary path `/<root>/.n2s-tmp/<random>` that `list` skips, checks its CID and size
// (`files/stat`), removes an object the key already holds, `files/mv`s the temporary file into
// place (one atomic MFS step), pins the new CID and unpins the replaced one. A failed put
// removes its temporary file when the node still answers; a leftover one is never listed.
//
// Not `files/write`: js-ipfs 0.66 stores large files written that way wrongly (a 1 GiB file
// read back differed from 261 MiB on, in one read and in windows alike), while `add` stores
// them right. The price on js-ipfs: it never releases its garbage-collection lock after an
// `add` whose upload broke off, so a later `repo/gc` on that node hangs until it restarts.
// Kubo has neither problem.
//
// The tests run this backend against js-ipfs 0.66.1 (npm `ipfs`), because Kubo cannot be
// installed on machines that reach only the npm registry; both nodes serve the same RPC API.
// Differences handled here:
// - js-ipfs requires a Content-Type in every multipart part (Kubo does not); one is always sent.
// - js-ipfs `files/mv` refuses an existing destination ("directory already has entry by that
//   name"), where Kubo's replaces a file: the old object is stat'ed (for its CID, to unpin it)
//   and removed first either way.
// - A request that needs a block the node does not have never returns from js-ipfs, even
//   offline (Kubo fails at once offline); every call that may read blocks passes `timeout=`.
//   That timeout covers the whole call, and js-ipfs then ends a `files/read` early with status
//   200, so `get` sizes the timeout to the object and checks the length it received.
// - CIDs are printed in base58btc by js-ipfs and in base32 by Kubo (and the two may build
//   different DAGs): the CID is whatever the node reports, never compared across nodes.
// - An empty directory lists as `"Entries": null` on Kubo and `[]` on js-ipfs.
// - js-ipfs's multipart parser slows down badly on long runs of CR bytes (16 MiB of "\r" took
//   two minutes); stored blobs are ciphertext, so only hand-made test data meets this.

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
} from "./backend.ts";
import { moveWithRetry, oneLine } from "./shared.ts";

/** Server-side timeout of calls that answer at once (metadata, moves, pins of small DAGs). */
const CALL_TIMEOUT_S = 30;
/** Slowest transfer rate a streaming call is given time for, in bytes per second. */
const MIN_RATE = 4 << 20;
/** Bytes read from the node per call (see `get`). */
const READ_WINDOW = 64 << 20;
/** Seconds an upload may wait on the node (for it to take bytes, or to answer) before failing. */
const STALL_S = 120;
/** The MFS directory (under the root) that holds puts in progress; `list` skips it. */
const TEMP_DIR = ".n2s-tmp";
/** Tries of the remove-then-move step when other puts race for the same key. */
const MOVE_TRIES = 5;
const DEFAULT_API = "http://127.0.0.1:5001";

/** Where and how to reach the node. */
export interface IpfsOptions {
  /** Base URL of the RPC API without credentials or /api/v0, e.g. "http://127.0.0.1:5001". */
  api: string;
  /** MFS directory that holds the objects, without slashes at either end, e.g. "n2s". */
  root: string;
  /** Value of an Authorization header, when the API needs one. */
  authorization?: string;
}

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

/** Seconds a call streaming `size` bytes may take. */
function streamTimeout(size: number): number {
  return CALL_TIMEOUT_S + Math.ceil(size / MIN_RATE);
}

/** An IPFS node's MFS, through the Kubo HTTP RPC API. */
export class IpfsBackend implements Backend {
  readonly name: string;
  readonly #api: string;
  readonly #root: string;
  readonly #headers: Record<string, string>;
  /** True once the node has answered once: later connection failures are transient. */
  #worked = false;
  /** MFS directories known to exist. */
  readonly #dirs = new Set<string>();

  constructor(opts: IpfsOptions) {
    this.#api = opts.api.replace(/\/+$/, "");
    this.#root = `/${opts.root}`;
    this.#headers = opts.authorization ? { authorization: opts.authorization } : {};
    this.name = `ipfs ${this.#root} at ${this.#api}`;
  }

  #path(key: string): string {
    checkKey(this.name, key);
    if (key === TEMP_DIR || key.startsWith(`${TEMP_DIR}/`)) {
      throw new BackendError("permanent", this.name, `invalid object key: ${JSON.stringify(key)}`);
    }
    return `${this.#root}/${key}`;
  }

  /**
   * Calls `cmd` and returns the response once its status is known (body unread). Failures
   * become BackendErrors: "notfound" for a missing MFS path, otherwise classified.
   */
  async #call(
    cmd: string,
    params: [string, string][],
    what: string,
    opts: {
      timeoutS?: number;
      body?: ReadableStream<Uint8Array>;
      contentType?: string;
      signal?: AbortSignal;
    } = {},
  ): Promise<Response> {
    const query = new URLSearchParams(params);
    if (opts.timeoutS !== undefined) query.set("timeout", `${opts.timeoutS}s`);
    const headers: Record<string, string> = { ...this.#headers };
    if (opts.contentType) headers["content-type"] = opts.contentType;
    // A node that accepts the connection but never answers: give up a little after the
    // node's own timeout would have.
    const ctl = new AbortController();
    const timer = opts.timeoutS === undefined
      ? undefined
      : setTimeout(() => ctl.abort(), (opts.timeoutS + 15) * 1000);
    let res: Response;
    try {
      res = await fetch(`${this.#api}/api/v0/${cmd}?${query}`, {
        method: "POST",
        headers,
        body: opts.body,
        signal: opts.signal ? AbortSignal.any([ctl.signal, opts.signal]) : ctl.signal,
      });
    } catch (e) {
      throw this.#networkError(e, what, ctl.signal.aborted ? opts.timeoutS! + 15 : undefined);
    } finally {
      clearTimeout(timer);
    }
    this.#worked = true;
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let message = text;
    try {
      const j = JSON.parse(text);
      if (typeof j?.Message === "string") message = j.Message;
    } catch {
      // Not JSON: keep the text.
    }
    throw this.#httpError(res.status, message, what);
  }

  /** Calls `cmd` and parses its JSON answer (an empty answer is `{}`). */
  async #json<T>(
    cmd: string,
    params: [string, string][],
    what: string,
    timeoutS = CALL_TIMEOUT_S,
  ): Promise<T> {
    const res = await this.#call(cmd, params, what, { timeoutS });
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.#networkError(e, what);
    }
    if (text.trim() === "") return {} as T;
    try {
      // Streaming commands answer with one JSON value per line; the last one is the result.
      const lines = text.trim().split("\n");
      return JSON.parse(lines[lines.length - 1]) as T;
    } catch {
      throw new BackendError(
        "permanent",
        this.name,
        `${what}: the node answered ${cmd} with something that is not JSON (${
          oneLine(text, 80)
        }); is the api address the IPFS RPC API (usually port 5001)?`,
      );
    }
  }

  #networkError(e: unknown, what: string, abortedAfterS?: number): BackendError {
    if (abortedAfterS !== undefined) {
      return new BackendError(
        "transient",
        this.name,
        `${what}: no answer within ${abortedAfterS} s`,
        { cause: e },
      );
    }
    const text = [e, (e as Error)?.cause].filter((x) => x !== undefined)
      .map((x) => x instanceof Error ? x.message : String(x)).join(": ");
    let cause: string;
    if (/refused/i.test(text)) cause = "connection refused; is the IPFS daemon running?";
    else if (/dns|lookup|resolve|name or service not known/i.test(text)) {
      cause = "cannot resolve the host name; check the api address";
    } else if (/unreachable|no route/i.test(text)) cause = "host unreachable";
    else if (/reset|broken pipe|closed|eof|incomplete/i.test(text)) cause = "connection lost";
    else cause = `request failed (${oneLine(text, 120)})`;
    // Before the node has ever answered, an address that does not work will not start working
    // by retrying; after it has, a failure is a restart or an overload.
    const kind = this.#worked ? "transient" : "permanent";
    return new BackendError(kind, this.name, `${what}: ${cause}`, { cause: e });
  }

  #httpError(status: number, message: string, what: string): BackendError {
    const msg = oneLine(message, 200) || "(no message)";
    if (/does not exist|not found|no link named/i.test(message) && status === 500) {
      return new BackendError("notfound", this.name, `${what}: not found`);
    }
    if (status === 408 || status === 429 || status >= 500) {
      return new BackendError("transient", this.name, `${what}: HTTP ${status}: ${msg}`);
    }
    let hint = "";
    if (status === 401 || status === 403) hint = "; check the credentials in the api address";
    else if (status === 404 || status === 405) {
      hint = "; is the api address the IPFS RPC API (usually port 5001), not a gateway?";
    }
    return new BackendError("permanent", this.name, `${what}: HTTP ${status}: ${msg}${hint}`);
  }

  /** Stats an MFS path; null when it does not exist. */
  async #stat(path: string, what: string): Promise<StatReply | null> {
    try {
      return await this.#json<StatReply>("files/stat", [["arg", path]], what);
    } catch (e) {
      if (e instanceof BackendError && e.kind === "notfound") return null;
      throw e;
    }
  }

  async #mkdir(dir: string, what: string): Promise<void> {
    if (this.#dirs.has(dir)) return;
    await this.#json("files/mkdir", [["arg", dir], ["parents", "true"]], what);
    this.#dirs.add(dir);
  }

  async #remove(path: string, what: string): Promise<void> {
    try {
      await this.#json("files/rm", [["arg", path]], what);
    } catch (e) {
      if (!(e instanceof BackendError && e.kind === "notfound")) throw e;
    }
  }

  async #unpin(cid: string, what: string): Promise<void> {
    try {
      await this.#json("pin/rm", [["arg", cid]], what);
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
      await this.#json("pin/add", [["arg", st.Hash]], what, streamTimeout(size));
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
      res = await this.#call(
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
    await this.#mkdir(tmp.slice(0, tmp.lastIndexOf("/")), what);
    await this.#json("files/cp", [["arg", `/ipfs/${cid}`], ["arg", tmp]], what);
    return sent;
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
      await this.#json("files/mv", [["arg", tmp], ["arg", path]], what);
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
        ? await this.#call(
          "cat",
          [["arg", `/ipfs/${cid}`], ["offset", String(offset)], ["length", String(count)]],
          what,
          { timeoutS: streamTimeout(count) },
        )
        : await this.#call(
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
          throw this.#networkError(e, what);
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
        const reply = await this.#json<{ Entries?: LsEntry[] | null }>(
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
      const reply = await this.#json<{ Entries?: LsEntry[] | null }>(
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
      await this.#json("files/flush", [["arg", this.#root]], "flush");
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

/** Turns a multiaddr (/ip4/…/tcp/…[/http|/https]) or a URL into the API's base URL. */
function apiBase(value: string, from: string): { api: string; authorization?: string } {
  const bad = (why: string) =>
    new Error(`invalid IPFS API address ${JSON.stringify(value)} (from ${from}): ${why}`);
  let v = value.trim();
  if (v.startsWith("/")) {
    const m = /^\/(ip4|ip6|dns|dns4|dns6)\/([^/]+)\/tcp\/(\d+)(?:\/(http|https))?\/?$/.exec(v);
    if (!m) throw bad("expected a URL like http://127.0.0.1:5001 or /ip4/127.0.0.1/tcp/5001");
    const host = m[1] === "ip6" ? `[${m[2]}]` : m[2];
    v = `${m[4] ?? "http"}://${host}:${m[3]}`;
  }
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw bad("expected a URL like http://127.0.0.1:5001");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw bad("use http:// or https://");
  if (url.search || url.hash) throw bad("no query or fragment allowed");
  let authorization: string | undefined;
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    authorization = `Basic ${
      btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${pass}`)))
    }`;
    url.username = "";
    url.password = "";
  }
  const path = url.pathname.replace(/\/+$/, "").replace(/\/api\/v0$/, "");
  return { api: `${url.protocol}//${url.host}${path}`, authorization };
}

/**
 * Opens `ipfs://<root-name>[?api=…]`: objects under the MFS directory /<root-name>. The API
 * address comes from `api=`, else N2S_IPFS_API, else IPFS_API, else http://127.0.0.1:5001.
 */
// deno-lint-ignore require-await
export async function openIpfsLocation(
  location: string,
  env: Record<string, string | undefined>,
): Promise<IpfsBackend> {
  const usage = "expected ipfs://<root-name>?api=http://127.0.0.1:5001";
  const m = /^ipfs:\/\/([^?#]*)(?:\?([^#]*))?$/i.exec(location);
  if (!m) throw new Error(`invalid IPFS location ${JSON.stringify(location)}: ${usage}`);
  let names: string[];
  try {
    names = m[1].split("/").filter((c) => c !== "").map(decodeURIComponent);
  } catch {
    throw new Error(`invalid IPFS location ${JSON.stringify(location)}: bad %-escape`);
  }
  if (names.length === 0) {
    throw new Error(`IPFS location ${JSON.stringify(location)} has no root name: ${usage}`);
  }
  for (const c of names) {
    // deno-lint-ignore no-control-regex
    if (c === "." || c === ".." || c.includes("/") || /[\x00-\x1f]/.test(c)) {
      throw new Error(
        `invalid IPFS location ${JSON.stringify(location)}: bad root name component ${
          JSON.stringify(c)
        }`,
      );
    }
  }
  const query = new URLSearchParams(m[2] ?? "");
  for (const k of query.keys()) {
    if (k !== "api") {
      throw new Error(
        `invalid IPFS location ${JSON.stringify(location)}: unknown parameter "${k}" (only api=)`,
      );
    }
  }
  let value = query.get("api");
  let from = "the location's api=";
  if (value === null || value === "") {
    if (env.N2S_IPFS_API) [value, from] = [env.N2S_IPFS_API, "N2S_IPFS_API"];
    else if (env.IPFS_API) [value, from] = [env.IPFS_API, "IPFS_API"];
    else [value, from] = [DEFAULT_API, "the default"];
  }
  const { api, authorization } = apiBase(value, from);
  return new IpfsBackend({ api, root: names.join("/"), authorization });
}
