// The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02, with OpenSSH's extensions):
// packet types, status codes and flags, a packet encoder, the framing of the byte stream into
// packets, and the decoding of the server's replies. Pure: no I/O.

/** Packet types. */
export const FXP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

/** Status codes of SSH_FXP_STATUS. */
export const FX = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;

/** Flags of SSH_FXP_OPEN. */
export const FXF = { READ: 1, WRITE: 2, APPEND: 4, CREAT: 8, TRUNC: 0x10, EXCL: 0x20 } as const;

/** Which fields an attribute block carries. */
const ATTR = { SIZE: 1, UIDGID: 2, PERMISSIONS: 4, ACMODTIME: 8, EXTENDED: 0x80000000 } as const;

/** File type bits of `permissions` (POSIX st_mode, which OpenSSH sends whole). */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;

/** The version this client speaks. */
export const VERSION = 3;

/** Data bytes per READ or WRITE that every server accepts (the draft's minimum). */
export const MIN_DATA = 32768;

/** The longest packet accepted from a server (OpenSSH sends at most 256 KiB). */
export const MAX_PACKET = 4 << 20;

/** File attributes; only the fields the server sent are set. */
export interface Attrs {
  size?: number;
  uid?: number;
  gid?: number;
  permissions?: number;
  atime?: number;
  mtime?: number;
}

/** One entry of an SSH_FXP_NAME reply. */
export interface NameEntry {
  filename: string;
  longname: string;
  attrs: Attrs;
}

/** A server's reply to one request. */
export type Reply =
  | { type: typeof FXP.STATUS; id: number; code: number; message: string }
  | { type: typeof FXP.HANDLE; id: number; handle: Uint8Array }
  | { type: typeof FXP.DATA; id: number; data: Uint8Array }
  | { type: typeof FXP.NAME; id: number; names: NameEntry[] }
  | { type: typeof FXP.ATTRS; id: number; attrs: Attrs }
  | { type: typeof FXP.EXTENDED_REPLY; id: number; data: Uint8Array };

/** The server's answer to INIT: its version and the extensions it offers (name → data). */
export interface Hello {
  version: number;
  extensions: Map<string, string>;
}

/** The byte stream is not SFTP, or a packet is malformed. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A field of a request: a byte, a uint32, a uint64, or a string (text or bytes). */
export type Field =
  | { u8: number }
  | { u32: number }
  | { u64: number }
  | { str: string | Uint8Array };

function fieldSize(f: Field): number {
  if ("u8" in f) return 1;
  if ("u32" in f) return 4;
  if ("u64" in f) return 8;
  return 4 + (typeof f.str === "string" ? enc.encode(f.str).length : f.str.length);
}

/**
 * Encodes one packet: uint32 length, the type byte, then the fields (for every request but
 * INIT, the first is the request id).
 */
export function encodePacket(type: number, fields: Field[]): Uint8Array {
  const strs = fields.map((f) =>
    "str" in f && typeof f.str === "string" ? enc.encode(f.str) : null
  );
  let size = 5;
  fields.forEach((f, i) => size += strs[i] ? 4 + strs[i]!.length : fieldSize(f));
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, size - 4);
  out[4] = type;
  let o = 5;
  fields.forEach((f, i) => {
    if ("u8" in f) out[o++] = f.u8;
    else if ("u32" in f) {
      v.setUint32(o, f.u32);
      o += 4;
    } else if ("u64" in f) {
      v.setBigUint64(o, BigInt(f.u64));
      o += 8;
    } else {
      const b = strs[i] ?? (f.str as Uint8Array);
      v.setUint32(o, b.length);
      out.set(b, o + 4);
      o += 4 + b.length;
    }
  });
  return out;
}

/**
 * A WRITE request whose data is copied straight into the packet: `data` is the room for up to
 * `capacity` bytes; `finish(id, n)` sets the request id and the data length `n` and returns the
 * packet to send.
 */
export class WritePacket {
  readonly data: Uint8Array;
  readonly #packet: Uint8Array;
  readonly #head: number;

  constructor(handle: Uint8Array, offset: number, capacity: number) {
    this.#head = 4 + 1 + 4 + 4 + handle.length + 8 + 4;
    this.#packet = new Uint8Array(this.#head + capacity);
    const v = new DataView(this.#packet.buffer);
    this.#packet[4] = FXP.WRITE;
    v.setUint32(9, handle.length);
    this.#packet.set(handle, 13);
    v.setBigUint64(13 + handle.length, BigInt(offset));
    this.data = this.#packet.subarray(this.#head);
  }

  finish(id: number, n: number): Uint8Array {
    const v = new DataView(this.#packet.buffer);
    v.setUint32(0, this.#head + n - 4);
    v.setUint32(5, id);
    v.setUint32(this.#head - 4, n);
    return this.#packet.subarray(0, this.#head + n);
  }
}

/** Reads the fields of one packet. */
export class PacketReader {
  #o = 0;
  readonly #v: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.#v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #need(n: number): void {
    if (this.#o + n > this.bytes.length) throw new ProtocolError("a reply packet is truncated");
  }

  get done(): boolean {
    return this.#o >= this.bytes.length;
  }

  u8(): number {
    this.#need(1);
    return this.bytes[this.#o++];
  }

  u32(): number {
    this.#need(4);
    const n = this.#v.getUint32(this.#o);
    this.#o += 4;
    return n;
  }

  u64(): number {
    this.#need(8);
    const n = this.#v.getBigUint64(this.#o);
    this.#o += 8;
    return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
  }

  bytesField(): Uint8Array {
    const n = this.u32();
    this.#need(n);
    const b = this.bytes.subarray(this.#o, this.#o + n);
    this.#o += n;
    return b;
  }

  text(): string {
    return dec.decode(this.bytesField());
  }

  rest(): Uint8Array {
    const b = this.bytes.subarray(this.#o);
    this.#o = this.bytes.length;
    return b;
  }

  attrs(): Attrs {
    const flags = this.u32();
    const a: Attrs = {};
    if (flags & ATTR.SIZE) a.size = this.u64();
    if (flags & ATTR.UIDGID) {
      a.uid = this.u32();
      a.gid = this.u32();
    }
    if (flags & ATTR.PERMISSIONS) a.permissions = this.u32();
    if (flags & ATTR.ACMODTIME) {
      a.atime = this.u32();
      a.mtime = this.u32();
    }
    if (flags & ATTR.EXTENDED) {
      for (let n = this.u32(); n > 0; n--) {
        this.bytesField();
        this.bytesField();
      }
    }
    return a;
  }
}

/** Decodes the VERSION packet (type byte first); its extension pairs run to the packet's end. */
export function decodeHello(packet: Uint8Array): Hello {
  const r = new PacketReader(packet);
  const type = r.u8();
  if (type !== FXP.VERSION) {
    throw new ProtocolError(`the server answered INIT with packet type ${type}, not VERSION`);
  }
  const version = r.u32();
  const extensions = new Map<string, string>();
  while (!r.done) {
    const name = r.text();
    extensions.set(name, r.text());
  }
  return { version, extensions };
}

/** Decodes one reply packet (type byte first). */
export function decodeReply(packet: Uint8Array): Reply {
  const r = new PacketReader(packet);
  const type = r.u8();
  const id = r.u32();
  switch (type) {
    case FXP.STATUS: {
      const code = r.u32();
      // Version 3 adds a message and a language tag; be lenient with servers that omit them.
      const message = r.done ? "" : r.text();
      return { type, id, code, message };
    }
    case FXP.HANDLE:
      return { type, id, handle: r.bytesField() };
    case FXP.DATA:
      return { type, id, data: r.bytesField() };
    case FXP.NAME: {
      const names: NameEntry[] = [];
      for (let n = r.u32(); n > 0; n--) {
        names.push({ filename: r.text(), longname: r.text(), attrs: r.attrs() });
      }
      return { type, id, names };
    }
    case FXP.ATTRS:
      return { type, id, attrs: r.attrs() };
    case FXP.EXTENDED_REPLY:
      return { type, id, data: r.rest() };
  }
  throw new ProtocolError(`unexpected reply packet type ${type}`);
}

/** Cuts the server's byte stream into packets. */
export class Framer {
  #chunks: Uint8Array[] = [];
  #length = 0;
  /** Bytes received so far, for messages about a stream that is not SFTP. */
  #seen = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next whole packet (type byte first, without its length), or null when none is here. */
  next(): Uint8Array | null {
    if (this.#length < 4) return null;
    const size = new DataView(this.#peek(4).buffer).getUint32(0);
    if (size === 0 || size > MAX_PACKET) {
      const head = this.#seen === 0 ? this.#peek(Math.min(this.#length, 60)) : null;
      throw new ProtocolError(
        head
          ? `the remote did not answer in SFTP; it sent ${JSON.stringify(printable(head))}`
          : `a reply packet of ${size} bytes is not valid`,
      );
    }
    if (this.#length < 4 + size) return null;
    this.#take(4);
    this.#seen++;
    return this.#take(size);
  }

  /** Copies the first n buffered bytes. */
  #peek(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.#chunks) {
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (o === n) break;
    }
    return out;
  }

  /** Removes and returns the first n bytes (without copying when they lie in one chunk). */
  #take(n: number): Uint8Array {
    this.#length -= n;
    const first = this.#chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0];
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** Bytes as text with anything unprintable shown as "?". */
function printable(b: Uint8Array): string {
  return Array.from(b, (x) => x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : "?").join("");
}
