// The SSH backend: a repository in a directory on any host the system's OpenSSH client reaches,
// spoken to in SFTP (version 3), as restic does, so that accounts limited to SFTP
// (ForceCommand internal-sftp) work as well as any other. No remote command is ever run.
//
// One ssh process carries one SFTP session with many requests in flight. Objects are files
// under the root directory. A put writes a temporary name beside its key, in pipelined WRITEs,
// fsyncs it (fsync@openssh.com) and renames it over the key (posix-rename@openssh.com, else
// REMOVE and RENAME); missing directories are made on the way. A get pipelines READs from the
// range's offset. A listing walks the directories with OPENDIR/READDIR. When ssh dies, the
// requests in flight fail as transient errors and the next call starts a new session.

import {
  type Backend,
  BackendError,
  type Body,
  type ByteRange,
  checkKey,
  checkRange,
  type ErrorKind,
  noBytes,
  NotFoundError,
  type ObjectInfo,
  type TemporaryObject,
} from "../backend.ts";
import { errorText, moveWithRetry, oneLine, TEMP_MARK, tempName } from "../shared.ts";
import { SessionLost, SftpClient, StatusError } from "./client.ts";
import { describeLocation, hostPort, parseSftpLocation, type SftpLocation } from "./location.ts";
import { FX, FXF, type NameEntry, ProtocolError, S_IFDIR, S_IFMT, S_IFREG } from "./protocol.ts";
import { type Peer, sshCommand, sshFailure, type SshOptions, SshTransport } from "./transport.ts";

/** Operations in flight that suit one session (push and pull keep this many files moving). */
const PARALLELISM = 8;
/** Requests in flight per file, and their bytes, for pipelined reads and writes. */
const WINDOW_REQUESTS = 64;
const WINDOW_BYTES = 4 << 20;
/** Directories read at once while listing. */
const LIST_PARALLEL = 8;
/** How long a new session may take to answer INIT. */
const HELLO_TIMEOUT_MS = 30_000;

/** Options of an SftpBackend. */
export interface SftpOptions extends SshOptions {
  /** Use the server's extensions (default true); false speaks plain version 3, for tests. */
  useExtensions?: boolean;
}

/** Something a put's body threw: not the backend's fault. */
class BodyFailure {
  constructor(readonly error: unknown) {}
}

/** A directory on a host reached with the system's OpenSSH client, spoken to in SFTP. */
export class SftpBackend implements Backend {
  readonly name: string;
  readonly parallelism = PARALLELISM;
  readonly #loc: SftpLocation;
  readonly #command: string[];
  readonly #useExtensions: boolean;
  readonly #peer: Peer;
  #session: Promise<SftpClient> | null = null;
  /** The root directory (absolute), known once a session resolved a home-relative path. */
  #root: string | null = null;
  /** Set once a session has worked: from then on, a lost connection is transient. */
  #connected = false;
  #closed = false;
  /** Directories known to exist. */
  readonly #dirs = new Set<string>();
  /** Sessions started (a test can tell that a new one replaced a lost one). */
  sessions = 0;

  constructor(loc: SftpLocation, opts: SftpOptions = {}) {
    this.#loc = loc;
    this.#command = sshCommand(loc, opts);
    this.#useExtensions = opts.useExtensions ?? true;
    this.#peer = { where: hostPort(loc), user: loc.user };
    this.name = describeLocation(loc);
  }

  // ---- sessions ----

  /** The live session, or a new one when there is none or the last one was lost. */
  async #client(): Promise<SftpClient> {
    for (let tries = 0; tries < 2; tries++) {
      if (this.#closed) throw new BackendError("permanent", this.name, "backend is closed");
      this.#session ??= this.#connect();
      const s = this.#session;
      let c: SftpClient;
      try {
        c = await s;
      } catch (e) {
        if (this.#session === s) this.#session = null;
        throw e;
      }
      if (!c.lost) return c;
      // Only the first caller to see it lost replaces it.
      if (this.#session === s) this.#session = null;
    }
    throw new BackendError("transient", this.name, "the SFTP session ended as soon as it began");
  }

  async #connect(): Promise<SftpClient> {
    const transport = new SshTransport(this.#command, this.name);
    this.sessions++;
    let c: SftpClient;
    try {
      c = await SftpClient.start(transport, {
        useExtensions: this.#useExtensions,
        helloTimeoutMs: HELLO_TIMEOUT_MS,
      });
    } catch (e) {
      throw this.#error("connect", e);
    }
    try {
      if (this.#root === null) {
        const { home, path } = this.#loc;
        if (!home) this.#root = path;
        else {
          const h = await c.realpath(".");
          this.#root = path === "" ? h : `${h === "/" ? "" : h}/${path}`;
        }
      }
      await this.#checkRoot(c);
    } catch (e) {
      c.kill();
      throw this.#error("open the root directory", e);
    }
    this.#connected = true;
    return c;
  }

  /**
   * Fails at once, permanently, when the root or the nearest of its parents that exists is not
   * a directory: SFTP reports a path through a file as "no such file", which would otherwise
   * look like an empty repository.
   */
  async #checkRoot(c: SftpClient): Promise<void> {
    for (let dir = this.#root!;; dir = dir.slice(0, dir.lastIndexOf("/")) || "/") {
      if (await this.#isDir(c, dir)) return;
      if (dir === "/") return;
    }
  }

  /** Turns any failure into a BackendError. */
  #error(what: string, e: unknown, key?: string): BackendError {
    if (e instanceof BackendError) return e;
    if (e instanceof BodyFailure) {
      return new BackendError("permanent", this.name, `${what}: ${errorText(e.error)}`, {
        cause: e.error,
      });
    }
    if (e instanceof StatusError) return this.#statusError(what, e, key);
    if (e instanceof SessionLost) {
      const first = !this.#connected;
      if (e.garbled) {
        const kind: ErrorKind = first ? "permanent" : "transient";
        return new BackendError(
          kind,
          this.name,
          `${what}: ${e.reason}; the account must reach an SFTP server (a login script that ` +
            "prints something, or a ForceCommand other than internal-sftp, breaks SFTP)",
          { cause: e },
        );
      }
      const { kind, message } = sshFailure(e.exit, this.#peer, first);
      return new BackendError(kind, this.name, first ? message : `${what}: ${message}`, {
        cause: e,
      });
    }
    if (e instanceof ProtocolError) {
      return new BackendError("transient", this.name, `${what}: ${e.message}`, { cause: e });
    }
    return new BackendError("transient", this.name, `${what}: ${errorText(e)}`, { cause: e });
  }

  /** Maps an SFTP status to the backend's error kinds. */
  #statusError(what: string, e: StatusError, key?: string): BackendError {
    const server = oneLine(e.serverMessage) || `status ${e.code}`;
    const where = this.#relative(e.path) || key || "";
    const on = where ? ` (${where})` : "";
    switch (e.code) {
      case FX.NO_SUCH_FILE:
        if (key !== undefined && what.startsWith("get")) return new NotFoundError(this.name, key);
        return new BackendError("transient", this.name, `${what}: no such file${on}`, {
          cause: e,
        });
      case FX.PERMISSION_DENIED:
        return new BackendError(
          "permanent",
          this.name,
          `${what}: permission denied${on}; check the owner and mode of the remote directory`,
          { cause: e },
        );
      case FX.BAD_MESSAGE:
      case FX.OP_UNSUPPORTED:
        return new BackendError("permanent", this.name, `${what}: ${server}${on}`, { cause: e });
      default:
        return new BackendError("transient", this.name, `${what}: ${server}${on}`, { cause: e });
    }
  }

  /** A remote path as a key (relative to the root), for messages. */
  #relative(path: string): string {
    const root = this.#root ?? "";
    return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
  }

  #path(key: string): string {
    const root = this.#root!;
    if (key === "") return root;
    return `${root === "/" ? "" : root}/${key}`;
  }

  #checkKey(key: string): void {
    checkKey(this.name, key);
    if (key.includes(TEMP_MARK)) {
      throw new BackendError("permanent", this.name, `invalid object key: ${JSON.stringify(key)}`);
    }
  }

  // ---- directories ----

  /** Makes `dir` (absolute) and its missing parents, as mkdir -p does. */
  async #mkdirs(c: SftpClient, dir: string): Promise<void> {
    if (this.#dirs.has(dir)) return;
    try {
      await c.mkdir(dir);
    } catch (e) {
      if (!(e instanceof StatusError)) throw e;
      // It exists, or a parent is missing (or not a directory).
      if (await this.#isDir(c, dir)) {
        this.#dirs.add(dir);
        return;
      }
      const parent = dir.slice(0, dir.lastIndexOf("/")) || "/";
      if (e.code === FX.PERMISSION_DENIED || parent === dir) throw e;
      await this.#mkdirs(c, parent);
      try {
        await c.mkdir(dir);
      } catch (again) {
        // A concurrent put may have made it meanwhile.
        if (!(again instanceof StatusError) || !(await this.#isDir(c, dir))) throw again;
      }
    }
    this.#dirs.add(dir);
  }

  /** True for a directory, false for nothing there; a file there is a permanent error. */
  async #isDir(c: SftpClient, path: string): Promise<boolean> {
    let mode: number;
    try {
      mode = (await c.stat(path)).permissions ?? S_IFDIR;
    } catch (e) {
      if (e instanceof StatusError && e.code === FX.NO_SUCH_FILE) return false;
      throw e;
    }
    if ((mode & S_IFMT) === S_IFDIR) return true;
    throw new BackendError(
      "permanent",
      this.name,
      `${path}: Not a directory; the location must name a directory (or a path to create)`,
    );
  }

  // ---- Backend ----

  async put(key: string, body: Body): Promise<ObjectInfo> {
    this.#checkKey(key);
    const what = `put ${key}`;
    const c = await this.#client();
    const path = this.#path(key);
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    const tmp = tempName(path);
    let handle: Uint8Array | null = null;
    try {
      const flags = FXF.WRITE | FXF.CREAT | FXF.EXCL;
      try {
        handle = await c.open(tmp, flags);
      } catch (e) {
        if (!(e instanceof StatusError) || e.code !== FX.NO_SUCH_FILE) throw e;
        this.#dirs.delete(dir);
        await this.#mkdirs(c, dir);
        handle = await c.open(tmp, flags);
      }
      const size = await this.#upload(c, handle, body);
      if (c.has("fsync@openssh.com")) await c.fsync(handle, tmp);
      const h = handle;
      handle = null;
      await c.close(h);
      await this.#publish(c, tmp, path);
      return { key, size };
    } catch (e) {
      if (!c.lost) {
        // Best effort, not awaited by anything but this put: nothing of it may stay visible.
        if (handle !== null) await c.close(handle).catch(() => {});
        await c.remove(tmp).catch(() => {});
      }
      throw this.#error(what, e, key);
    }
  }

  /** Sends the body in pipelined WRITEs, each filled in place; returns its size. */
  async #upload(c: SftpClient, handle: Uint8Array, body: Body): Promise<number> {
    const chunk = c.limits.write;
    const window = Math.max(1, Math.min(WINDOW_REQUESTS, Math.floor(WINDOW_BYTES / chunk)));
    const inFlight: Promise<void>[] = [];
    let offset = 0;
    let packet = c.writePacket(handle, 0, chunk);
    let filled = 0;
    const send = async () => {
      while (inFlight.length >= window) await inFlight.shift();
      const p = c.write(packet, filled);
      p.catch(() => {}); // awaited below; a failure must not count as unhandled meanwhile
      inFlight.push(p);
      offset += filled;
      packet = c.writePacket(handle, offset, chunk);
      filled = 0;
    };
    const it = body.open()[Symbol.asyncIterator]();
    let done = false;
    try {
      while (true) {
        let r: IteratorResult<Uint8Array | Uint8Array[]>;
        try {
          r = await it.next();
        } catch (e) {
          done = true;
          throw new BodyFailure(e);
        }
        if (r.done) {
          done = true;
          break;
        }
        for (const piece of Array.isArray(r.value) ? r.value : [r.value]) {
          for (let o = 0; o < piece.length;) {
            const n = Math.min(piece.length - o, chunk - filled);
            packet.data.set(piece.subarray(o, o + n), filled);
            filled += n;
            o += n;
            if (filled === chunk) await send();
          }
        }
      }
      if (filled > 0) await send();
      for (const p of inFlight.splice(0)) await p;
      return offset;
    } finally {
      if (!done) await it.return?.();
    }
  }

  /** Renames the uploaded file over the key (atomically where posix-rename is offered). */
  async #publish(c: SftpClient, tmp: string, path: string): Promise<void> {
    try {
      if (c.has("posix-rename@openssh.com")) {
        await c.posixRename(tmp, path);
        return;
      }
      // Version 3's RENAME refuses an existing target: remove it first. A racing put of the
      // same key may put its object there in between; then try again.
      await moveWithRetry(async () => {
        try {
          await c.remove(path);
        } catch (e) {
          if (!(e instanceof StatusError) || e.code !== FX.NO_SUCH_FILE) throw e;
        }
        await c.rename(tmp, path);
      }, (e) => e instanceof StatusError && e.code === FX.FAILURE);
    } catch (e) {
      if (e instanceof StatusError && e.code === FX.FAILURE) {
        const isDir = await c.stat(path).then(
          (a) => ((a.permissions ?? 0) & S_IFMT) === S_IFDIR,
          () => false,
        );
        if (isDir) {
          throw new BackendError(
            "permanent",
            this.name,
            `${this.#relative(path)}: Is a directory, not an object`,
          );
        }
      }
      throw e;
    }
  }

  /** Pipelined READs from the range's offset (or 0) to its end (or the end of the file). */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    this.#checkKey(key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    const c = await this.#client();
    const path = this.#path(key);
    try {
      if (range && range.length === 0) {
        // Nothing to read: whether the object exists is all there is to say.
        if (!isFile(await c.stat(path))) throw new NotFoundError(this.name, key);
        return noBytes();
      }
      const handle = await c.open(path, FXF.READ);
      const start = range?.offset ?? 0;
      const end = range ? start + range.length : Number.MAX_SAFE_INTEGER;
      return this.#read(c, handle, start, end, what, key);
    } catch (e) {
      throw this.#error(what, e, key);
    }
  }

  async *#read(
    c: SftpClient,
    handle: Uint8Array,
    start: number,
    end: number,
    what: string,
    key: string,
  ): AsyncGenerator<Uint8Array> {
    const chunk = c.limits.read;
    const window = Math.max(1, Math.min(WINDOW_REQUESTS, Math.floor(WINDOW_BYTES / chunk)));
    // Without a range the size is not known: the window opens as full reads come back, so
    // that a small object costs a read or two, not a window of reads past its end.
    let width = end === Number.MAX_SAFE_INTEGER ? 2 : window;
    const queue: { offset: number; length: number; data: Promise<Uint8Array | null> }[] = [];
    const ask = (offset: number, length: number) => {
      const data = c.read(handle, offset, length);
      data.catch(() => {}); // awaited in order below
      return { offset, length, data };
    };
    let next = start;
    try {
      while (true) {
        while (queue.length < width && next < end) {
          const length = Math.min(chunk, end - next);
          queue.push(ask(next, length));
          next += length;
        }
        const head = queue.shift();
        if (head === undefined) return;
        let data: Uint8Array | null;
        try {
          data = await head.data;
        } catch (e) {
          throw this.#error(what, e, key);
        }
        // The end of the file: the reads after this one find nothing either.
        if (data === null || data.length === 0) return;
        if (data.length > head.length) data = data.subarray(0, head.length);
        if (data.length < head.length) {
          // A short read (allowed anywhere): ask for the rest before anything further on.
          queue.unshift(ask(head.offset + data.length, head.length - data.length));
        } else if (width < window) {
          width = Math.min(window, width * 2);
        }
        yield data;
      }
    } finally {
      if (!c.lost) c.close(handle).catch(() => {});
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    this.#checkKey(key);
    const c = await this.#client();
    try {
      const a = await c.stat(this.#path(key));
      return isFile(a) ? { key, size: a.size ?? 0 } : null;
    } catch (e) {
      if (e instanceof StatusError && e.code === FX.NO_SUCH_FILE) return null;
      throw this.#error(`stat ${key}`, e, key);
    }
  }

  /** Walks the directories under the deepest one the prefix names; skips temporary files. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const f of this.#files(prefix, `list ${prefix}`)) {
      if (!f.temporary && f.key.startsWith(prefix)) yield { key: f.key, size: f.size };
    }
  }

  /** Files under a temporary name: puts whose connection was cut before their rename. */
  async temporaries(): Promise<TemporaryObject[]> {
    const out: TemporaryObject[] = [];
    for await (const f of this.#files("", "list temporary objects")) {
      if (f.temporary) out.push({ key: f.key, size: f.size, mtime: f.mtime * 1000 });
    }
    return out;
  }

  async deleteTemporary(key: string): Promise<void> {
    checkKey(this.name, key);
    if (!key.split("/").pop()!.includes(TEMP_MARK)) {
      throw new BackendError("permanent", this.name, `${key} is not a temporary object`);
    }
    const c = await this.#client();
    try {
      await c.remove(this.#path(key));
    } catch (e) {
      if (e instanceof StatusError && e.code === FX.NO_SUCH_FILE) return;
      throw this.#error(`delete ${key}`, e, key);
    }
  }

  /**
   * The regular files under the deepest directory `prefix` names, in directories that can hold
   * keys with that prefix, read several directories at a time (OPENDIR/READDIR).
   */
  async *#files(
    prefix: string,
    what: string,
  ): AsyncGenerator<{ key: string; size: number; mtime: number; temporary: boolean }> {
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    if (base.split("/").some((p) => p === ".." || p === ".") || prefix.includes("\0")) return;
    const c = await this.#client();
    const todo = [base];
    const reading: Promise<{ rel: string; entries: NameEntry[] }>[] = [];
    while (todo.length > 0 || reading.length > 0) {
      while (todo.length > 0 && reading.length < LIST_PARALLEL) {
        const rel = todo.pop()!;
        const p = this.#readDir(c, rel).then((entries) => ({ rel, entries }));
        p.catch(() => {}); // awaited in order below
        reading.push(p);
      }
      let read: { rel: string; entries: NameEntry[] };
      try {
        read = await reading.shift()!;
      } catch (e) {
        throw this.#error(what, e);
      }
      for (const e of read.entries) {
        if (e.filename === "." || e.filename === ".." || e.filename.includes("/")) continue;
        const key = read.rel === "" ? e.filename : `${read.rel}/${e.filename}`;
        const type = (e.attrs.permissions ?? 0) & S_IFMT;
        if (type === S_IFDIR) {
          if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) todo.push(key);
        } else if (type === S_IFREG) {
          yield {
            key,
            size: e.attrs.size ?? 0,
            mtime: e.attrs.mtime ?? 0,
            temporary: e.filename.includes(TEMP_MARK),
          };
        }
      }
    }
  }

  /** Every entry of a directory under the root; none when it does not exist. */
  async #readDir(c: SftpClient, rel: string): Promise<NameEntry[]> {
    const path = this.#path(rel);
    let handle: Uint8Array;
    try {
      handle = await c.opendir(path);
    } catch (e) {
      if (e instanceof StatusError && e.code === FX.NO_SUCH_FILE) return [];
      throw e;
    }
    const out: NameEntry[] = [];
    try {
      for (
        let names = await c.readdir(handle, path);
        names;
        names = await c.readdir(handle, path)
      ) {
        out.push(...names);
      }
    } finally {
      if (!c.lost) c.close(handle).catch(() => {});
    }
    return out;
  }

  async delete(key: string): Promise<void> {
    this.#checkKey(key);
    const c = await this.#client();
    try {
      await c.remove(this.#path(key));
    } catch (e) {
      if (e instanceof StatusError && e.code === FX.NO_SUCH_FILE) return;
      throw this.#error(`delete ${key}`, e, key);
    }
  }

  /**
   * Nothing to do: every put was fsynced before its rename where the server offers
   * fsync@openssh.com, and SFTP has no other way to sync.
   */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  /** Ends the session. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#session;
    this.#session = null;
    const c = await s?.catch(() => null);
    await c?.end();
  }

  /** The live session's pipelining so far: the most requests it had in flight at once. */
  async peakInFlight(): Promise<number> {
    return (await this.#client()).peakInFlight;
  }
}

function isFile(a: { permissions?: number }): boolean {
  return a.permissions === undefined || (a.permissions & S_IFMT) === S_IFREG;
}

/**
 * Opens `sftp://[user@]host[:port]/path` (or ssh://) with settings from `env`: N2S_SSH_CONFIG
 * (an ssh_config file) and N2S_SSH_COMMAND (the ssh program). It connects on first use.
 */
export function openSftpLocation(
  location: string,
  env: Record<string, string | undefined>,
): Promise<Backend> {
  const loc = parseSftpLocation(location);
  const ssh = (env.N2S_SSH_COMMAND ?? "").split(/\s+/).filter((w) => w !== "");
  return Promise.resolve(
    new SftpBackend(loc, {
      ssh: ssh.length > 0 ? ssh : undefined,
      config: env.N2S_SSH_CONFIG || undefined,
    }),
  );
}
