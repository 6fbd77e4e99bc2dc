// An SFTP version 3 client over one ssh process: INIT/VERSION (the extensions the server
// offers, and its read and write limits from limits@openssh.com), then requests with ids, any
// number in flight, each answered by its own reply. When the stream ends or breaks, every
// request in flight fails with SessionLost and so does every later one: the backend then
// starts a new session.

import {
  type Attrs,
  decodeHello,
  decodeReply,
  encodePacket,
  type Field,
  Framer,
  FX,
  FXP,
  MIN_DATA,
  type NameEntry,
  PacketReader,
  ProtocolError,
  type Reply,
  VERSION,
  WritePacket,
} from "./protocol.ts";
import type { SshExit, SshTransport } from "./transport.ts";

/** The server answered a request with an error status. */
export class StatusError extends Error {
  override name = "StatusError";
  constructor(
    readonly code: number,
    readonly serverMessage: string,
    readonly op: string,
    readonly path: string,
  ) {
    super(`${op} ${path}: ${serverMessage || `status ${code}`}`);
  }
}

/** The session is gone: ssh exited, its stream broke, or the server spoke something else. */
export class SessionLost extends Error {
  override name = "SessionLost";
  constructor(
    readonly exit: SshExit,
    readonly reason: string,
    /** True when the server's bytes were not SFTP (not a dropped connection). */
    readonly garbled = false,
  ) {
    super(reason);
  }
}

/** Read and write lengths a server accepts. */
export interface Limits {
  /** Data bytes per READ. */
  read: number;
  /** Data bytes per WRITE. */
  write: number;
}

/** Options of a client. */
export interface ClientOptions {
  /** Use the extensions the server offers (false: plain version 3, for tests). */
  useExtensions: boolean;
  /** How long the server may take to answer INIT. */
  helloTimeoutMs: number;
}

/** The largest READ or WRITE asked for, whatever a server allows. */
const MAX_DATA = 1 << 20;

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: unknown) => void;
}

/** One SFTP session. */
export class SftpClient {
  readonly #transport: SshTransport;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #framer: Framer;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #lost: SessionLost | null = null;
  /** Extensions the server offered (name → version), empty when they are not used. */
  readonly extensions: ReadonlyMap<string, string>;
  /** Read and write lengths, from limits@openssh.com or the protocol's minimum. */
  limits: Limits = { read: MIN_DATA, write: MIN_DATA };
  /** The most requests that were in flight at once. */
  peakInFlight = 0;

  private constructor(
    transport: SshTransport,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    framer: Framer,
    extensions: ReadonlyMap<string, string>,
  ) {
    this.#transport = transport;
    this.#reader = reader;
    this.#framer = framer;
    this.extensions = extensions;
    void this.#run();
  }

  /**
   * Opens the session: INIT, the server's VERSION, then its limits where it offers them.
   * Throws SessionLost when ssh exits first or the answer is not SFTP.
   */
  static async start(transport: SshTransport, opts: ClientOptions): Promise<SftpClient> {
    const reader = transport.stdout.getReader();
    const framer = new Framer();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let packet: Uint8Array | null = null;
    try {
      transport.write(encodePacket(FXP.INIT, [{ u32: VERSION }])).catch(() => {});
      const timeout = new Promise<"timeout">((r) =>
        timer = setTimeout(() => r("timeout"), opts.helloTimeoutMs)
      );
      while (packet === null) {
        const r = await Promise.race([reader.read(), timeout]);
        if (r === "timeout") {
          transport.kill();
          throw new SessionLost(
            await transport.exited,
            `no SFTP answer within ${opts.helloTimeoutMs / 1000} s`,
            true,
          );
        }
        if (r.done) throw new SessionLost(await transport.exited, "ssh exited before SFTP began");
        framer.push(r.value);
        packet = framer.next();
      }
    } catch (e) {
      if (e instanceof SessionLost) throw e;
      transport.kill();
      const why = e instanceof ProtocolError ? e.message : `reading ssh's output failed: ${e}`;
      throw new SessionLost(await transport.exited, why, e instanceof ProtocolError);
    } finally {
      clearTimeout(timer);
    }
    let hello;
    try {
      hello = decodeHello(packet);
    } catch (e) {
      transport.kill();
      throw new SessionLost(await transport.exited, (e as Error).message, true);
    }
    if (hello.version < VERSION) {
      transport.kill();
      throw new SessionLost(
        await transport.exited,
        `the server speaks SFTP version ${hello.version}; version 3 is needed`,
        true,
      );
    }
    const c = new SftpClient(
      transport,
      reader,
      framer,
      opts.useExtensions ? hello.extensions : new Map(),
    );
    if (c.has("limits@openssh.com")) c.limits = await c.#readLimits();
    return c;
  }

  /** True when the server offers this extension (and extensions are used). */
  has(extension: string): boolean {
    return this.extensions.has(extension);
  }

  /** True once the session is gone. */
  get lost(): boolean {
    return this.#lost !== null;
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Ends the session (EOF to ssh) and waits for ssh to exit. */
  async end(): Promise<void> {
    await this.#transport.end();
  }

  /** Kills ssh: every request in flight fails with SessionLost. */
  kill(): void {
    this.#transport.kill();
  }

  async #run(): Promise<void> {
    let reason = "the connection ended";
    let garbled = false;
    try {
      while (true) {
        const r = await this.#reader.read();
        if (r.done) break;
        this.#framer.push(r.value);
        for (let p = this.#framer.next(); p !== null; p = this.#framer.next()) {
          const reply = decodeReply(p);
          const waiting = this.#pending.get(reply.id);
          if (!waiting) {
            throw new ProtocolError(`a reply to request ${reply.id}, which is not open`);
          }
          this.#pending.delete(reply.id);
          waiting.resolve(reply);
        }
      }
    } catch (e) {
      garbled = e instanceof ProtocolError;
      reason = garbled ? (e as Error).message : `reading ssh's output failed: ${e}`;
      this.#transport.kill();
    }
    const lost = new SessionLost(await this.#transport.exited, reason, garbled);
    this.#lost = lost;
    for (const p of this.#pending.values()) p.reject(lost);
    this.#pending.clear();
  }

  #id(): number {
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 1) >>> 0 || 1;
    return id;
  }

  /** Sends a packet whose id is `id` and waits for its reply. */
  #send(id: number, packet: Uint8Array): Promise<Reply> {
    if (this.#lost) return Promise.reject(this.#lost);
    const reply = new Promise<Reply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
    if (this.#pending.size > this.peakInFlight) this.peakInFlight = this.#pending.size;
    // A failed write means ssh is gone; the reader then fails every request in flight.
    this.#transport.write(packet).catch(() => this.#transport.kill());
    return reply;
  }

  #request(type: number, fields: Field[]): Promise<Reply> {
    const id = this.#id();
    return this.#send(id, encodePacket(type, [{ u32: id }, ...fields]));
  }

  /** Resolves on an OK status; throws StatusError on any other. */
  async #status(p: Promise<Reply>, op: string, path: string): Promise<void> {
    const r = await p;
    if (r.type !== FXP.STATUS) throw unexpected(r, op);
    if (r.code !== FX.OK) throw new StatusError(r.code, r.message, op, path);
  }

  async #handle(p: Promise<Reply>, op: string, path: string): Promise<Uint8Array> {
    const r = await p;
    if (r.type === FXP.HANDLE) return r.handle;
    if (r.type === FXP.STATUS) throw new StatusError(r.code, r.message, op, path);
    throw unexpected(r, op);
  }

  async #attrs(p: Promise<Reply>, op: string, path: string): Promise<Attrs> {
    const r = await p;
    if (r.type === FXP.ATTRS) return r.attrs;
    if (r.type === FXP.STATUS) throw new StatusError(r.code, r.message, op, path);
    throw unexpected(r, op);
  }

  /** Opens a file; `flags` are FXF bits. Returns its handle. */
  open(path: string, flags: number): Promise<Uint8Array> {
    return this.#handle(
      this.#request(FXP.OPEN, [{ str: path }, { u32: flags }, { u32: 0 }]),
      "open",
      path,
    );
  }

  close(handle: Uint8Array): Promise<void> {
    return this.#status(this.#request(FXP.CLOSE, [{ str: handle }]), "close", "");
  }

  /** Reads up to `length` bytes at `offset`; null at the end of the file. */
  async read(handle: Uint8Array, offset: number, length: number): Promise<Uint8Array | null> {
    const r = await this.#request(FXP.READ, [{ str: handle }, { u64: offset }, { u32: length }]);
    if (r.type === FXP.DATA) return r.data;
    if (r.type === FXP.STATUS) {
      if (r.code === FX.EOF) return null;
      throw new StatusError(r.code, r.message, "read", "");
    }
    throw unexpected(r, "read");
  }

  /** A WRITE of up to `capacity` bytes at `offset`, to be filled in place and sent. */
  writePacket(handle: Uint8Array, offset: number, capacity: number): WritePacket {
    return new WritePacket(handle, offset, capacity);
  }

  /** Sends a WRITE with the first `n` bytes of its data; resolves when the server wrote them. */
  write(packet: WritePacket, n: number): Promise<void> {
    const id = this.#id();
    return this.#status(this.#send(id, packet.finish(id, n)), "write", "");
  }

  stat(path: string): Promise<Attrs> {
    return this.#attrs(this.#request(FXP.STAT, [{ str: path }]), "stat", path);
  }

  lstat(path: string): Promise<Attrs> {
    return this.#attrs(this.#request(FXP.LSTAT, [{ str: path }]), "lstat", path);
  }

  fstat(handle: Uint8Array): Promise<Attrs> {
    return this.#attrs(this.#request(FXP.FSTAT, [{ str: handle }]), "fstat", "");
  }

  opendir(path: string): Promise<Uint8Array> {
    return this.#handle(this.#request(FXP.OPENDIR, [{ str: path }]), "opendir", path);
  }

  /** The next entries of a directory; null once it has no more. */
  async readdir(handle: Uint8Array, path: string): Promise<NameEntry[] | null> {
    const r = await this.#request(FXP.READDIR, [{ str: handle }]);
    if (r.type === FXP.NAME) return r.names;
    if (r.type === FXP.STATUS) {
      if (r.code === FX.EOF) return null;
      throw new StatusError(r.code, r.message, "readdir", path);
    }
    throw unexpected(r, "readdir");
  }

  remove(path: string): Promise<void> {
    return this.#status(this.#request(FXP.REMOVE, [{ str: path }]), "remove", path);
  }

  mkdir(path: string): Promise<void> {
    return this.#status(this.#request(FXP.MKDIR, [{ str: path }, { u32: 0 }]), "mkdir", path);
  }

  rmdir(path: string): Promise<void> {
    return this.#status(this.#request(FXP.RMDIR, [{ str: path }]), "rmdir", path);
  }

  /** RENAME of version 3: fails when `to` exists. */
  rename(from: string, to: string): Promise<void> {
    return this.#status(this.#request(FXP.RENAME, [{ str: from }, { str: to }]), "rename", to);
  }

  /** posix-rename@openssh.com: replaces `to` atomically. */
  posixRename(from: string, to: string): Promise<void> {
    return this.#status(
      this.#request(FXP.EXTENDED, [{ str: "posix-rename@openssh.com" }, { str: from }, {
        str: to,
      }]),
      "rename",
      to,
    );
  }

  /** fsync@openssh.com: the file's data reaches the server's disk. */
  fsync(handle: Uint8Array, path: string): Promise<void> {
    return this.#status(
      this.#request(FXP.EXTENDED, [{ str: "fsync@openssh.com" }, { str: handle }]),
      "fsync",
      path,
    );
  }

  /** The absolute, canonical form of a path. */
  async realpath(path: string): Promise<string> {
    const r = await this.#request(FXP.REALPATH, [{ str: path }]);
    if (r.type === FXP.NAME && r.names.length === 1) return r.names[0].filename;
    if (r.type === FXP.STATUS) throw new StatusError(r.code, r.message, "realpath", path);
    throw unexpected(r, "realpath");
  }

  /** limits@openssh.com: packet, read and write lengths and open handles (0 = no limit). */
  async #readLimits(): Promise<Limits> {
    const r = await this.#request(FXP.EXTENDED, [{ str: "limits@openssh.com" }]);
    if (r.type !== FXP.EXTENDED_REPLY) {
      if (r.type === FXP.STATUS) return this.limits;
      throw unexpected(r, "limits");
    }
    const p = new PacketReader(r.data);
    const packet = p.u64();
    const read = p.u64();
    const write = p.u64();
    const fit = (n: number) => {
      let v = n > 0 ? n : MAX_DATA;
      // Room for the headers of a WRITE (or a DATA reply) within the longest packet.
      if (packet > 0) v = Math.min(v, packet - 1024);
      return Math.max(MIN_DATA, Math.min(v, MAX_DATA));
    };
    return { read: fit(read), write: fit(write) };
  }
}

function unexpected(r: Reply, op: string): ProtocolError {
  return new ProtocolError(`the server answered ${op} with packet type ${r.type}`);
}
