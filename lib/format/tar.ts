// POSIX tar (ustar headers, with pax extended headers where ustar falls short): long paths and
// link targets, sizes from 8 GiB, large ids, nanosecond mtimes and extended attributes. Names
// are the path's bytes, so names that are not UTF-8 round-trip; in pax records too, as GNU tar
// writes and reads them (it ignores POSIX's `hdrcharset`, with a warning).

/** One member of an archive. */
export interface TarMember {
  /** The path's bytes, relative, without a trailing "/". */
  path: Uint8Array;
  type: "file" | "dir" | "symlink" | "hardlink" | "fifo" | "char" | "block";
  /** st_mode & 07777. */
  mode: number;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  /** Content length (files only). */
  size: number;
  /** Milliseconds since 1970 UTC, and nanoseconds within the second when known. */
  mtime: number;
  nsec?: number;
  /** A symlink's target, or the member a hard link links to (bytes). */
  link?: Uint8Array;
  major?: number;
  minor?: number;
  /** Extended attributes: name → value bytes. */
  xattrs?: Record<string, Uint8Array>;
}

const BLOCK = 512;
const enc = new TextEncoder();
const TYPEFLAG = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

/** Two zero blocks: the end of an archive. */
export const TAR_END: Uint8Array = new Uint8Array(2 * BLOCK);

/** Zeros that pad `size` bytes of content to a whole block. */
export function tarPadding(size: number): Uint8Array {
  return new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK);
}

/** Octal digits that fit a field of `width` bytes (with its NUL), or null when too large. */
function octal(n: number, width: number): string | null {
  const s = Math.max(0, Math.floor(n)).toString(8);
  return s.length < width ? s.padStart(width - 1, "0") : null;
}

/** Splits a path into ustar's prefix and name (at a "/"), or null when it does not fit. */
function splitPath(p: Uint8Array): { prefix: Uint8Array; name: Uint8Array } | null {
  if (p.length <= 100) return { prefix: new Uint8Array(0), name: p };
  for (let i = Math.min(p.length - 1, 155); i > 0; i--) {
    if (p[i] === 0x2f && p.length - i - 1 <= 100 && p.length - i - 1 > 0) {
      return { prefix: p.subarray(0, i), name: p.subarray(i + 1) };
    }
  }
  return null;
}

/** One pax record: "LEN key=value\n", LEN counting the whole record. */
function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const rest = enc.encode(` ${key}=`).length + value.length + 1;
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  const head = enc.encode(`${len} ${key}=`);
  const out = new Uint8Array(len);
  out.set(head);
  out.set(value, head.length);
  out[len - 1] = 0x0a;
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A ustar header block. */
function ustar(
  fields: {
    name: Uint8Array;
    prefix: Uint8Array;
    mode: string;
    uid: string;
    gid: string;
    size: string;
    mtime: string;
    type: string;
    link: Uint8Array;
    user: string;
    group: string;
    major: string;
    minor: string;
  },
): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const put = (off: number, width: number, v: Uint8Array | string) => {
    const b = typeof v === "string" ? enc.encode(v) : v;
    h.set(b.subarray(0, width), off);
  };
  put(0, 100, fields.name);
  put(100, 8, fields.mode);
  put(108, 8, fields.uid);
  put(116, 8, fields.gid);
  put(124, 12, fields.size);
  put(136, 12, fields.mtime);
  put(148, 8, "        ");
  put(156, 1, fields.type);
  put(157, 100, fields.link);
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  put(265, 32, fields.user);
  put(297, 32, fields.group);
  put(329, 8, fields.major);
  put(337, 8, fields.minor);
  put(345, 155, fields.prefix);
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** The header blocks of a member: a pax extended header when needed, then its ustar header. */
export function tarHeader(m: TarMember): Uint8Array {
  const path = m.type === "dir" ? concat([m.path, enc.encode("/")]) : m.path;
  const records: Uint8Array[] = [];
  const split = splitPath(path);
  if (split === null) {
    records.push(paxRecord("path", path));
  }
  const link = m.link ?? new Uint8Array(0);
  if (link.length > 100) {
    records.push(paxRecord("linkpath", link));
  }
  const size = m.type === "file" ? m.size : 0;
  const numeric = (key: string, n: number, width: number) => {
    const o = octal(n, width);
    if (o === null) records.push(paxRecord(key, enc.encode(String(n))));
    return o ?? "0".repeat(width - 1);
  };
  const sizeField = numeric("size", size, 12);
  const uid = numeric("uid", m.uid, 8);
  const gid = numeric("gid", m.gid, 8);
  const secs = Math.floor(m.mtime / 1000);
  const nsec = m.nsec ?? (((m.mtime % 1000) + 1000) % 1000) * 1_000_000;
  if (nsec !== 0) {
    records.push(paxRecord("mtime", enc.encode(`${secs}.${String(nsec).padStart(9, "0")}`)));
  }
  for (const [key, value] of [["uname", m.user], ["gname", m.group]] as const) {
    if (value !== undefined && (enc.encode(value).length > 32 || !/^[\x20-\x7e]*$/.test(value))) {
      records.push(paxRecord(key, enc.encode(value)));
    }
  }
  for (const [name, value] of Object.entries(m.xattrs ?? {})) {
    records.push(paxRecord(`SCHILY.xattr.${name}`, value));
  }
  const main = ustar({
    name: split?.name ?? path.subarray(0, 100),
    prefix: split?.prefix ?? new Uint8Array(0),
    mode: octal(m.mode & 0o7777, 8)!,
    uid,
    gid,
    size: sizeField,
    mtime: octal(secs, 12) ?? "0".repeat(11),
    type: TYPEFLAG[m.type],
    link: link.subarray(0, 100),
    user: m.user !== undefined && enc.encode(m.user).length <= 32 ? m.user : "",
    group: m.group !== undefined && enc.encode(m.group).length <= 32 ? m.group : "",
    major: octal(m.major ?? 0, 8) ?? "0000000",
    minor: octal(m.minor ?? 0, 8) ?? "0000000",
  });
  if (records.length === 0) return main;
  const body = concat(records);
  const pax = ustar({
    name: enc.encode("PaxHeaders/n2s"),
    prefix: new Uint8Array(0),
    mode: "0000644",
    uid: "0000000",
    gid: "0000000",
    size: octal(body.length, 12)!,
    mtime: octal(Math.max(0, secs), 12) ?? "0".repeat(11),
    type: "x",
    link: new Uint8Array(0),
    user: "",
    group: "",
    major: "0000000",
    minor: "0000000",
  });
  return concat([pax, body, tarPadding(body.length), main]);
}
