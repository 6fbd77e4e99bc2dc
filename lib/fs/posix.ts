// Exact file system access for backup and restore: libc through Deno.dlopen on raw path bytes
// (lib/format/names.ts strings), synchronous, never following a final symlink unless named so.

import { pathText } from "../format/names.ts";
import {
  AT,
  cstr,
  E,
  errno,
  fail,
  lib,
  MKNOD_VER,
  O,
  PosixError,
  quote,
  setErrno,
  STAT_VER,
} from "./posix_ffi.ts";
import type { Libc } from "./posix_ffi.ts";

export { posixAvailable, PosixError } from "./posix_ffi.ts";
export { gidOf, groupName, uidOf, userName } from "./posix_ids.ts";
import { _shrinkIdBuffer } from "./posix_ids.ts";

/** The kind of a directory entry, from d_type ("unknown" where the file system does not say). */
export type EntryType =
  | "file"
  | "dir"
  | "symlink"
  | "fifo"
  | "socket"
  | "char"
  | "block"
  | "unknown";

export interface RawEntry {
  name: string;
  type: EntryType;
  ino: bigint;
}

export interface RawStat {
  dev: bigint;
  ino: bigint;
  /** The full st_mode: file type and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** The device a char or block special file stands for (glibc's makedev encoding). */
  rdev: bigint;
  size: number;
  /** Allocated space in 512-byte units: far below size / 512 for a sparse file. */
  blocks: number;
  blksize: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** st_mode's file type bits. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** A dev_t from major and minor numbers, as glibc's makedev encodes it. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) |
    (mi & 0xffn);
}

export function major(dev: bigint): number {
  return Number(((dev >> 32n) & 0xfffff000n) | ((dev >> 8n) & 0xfffn));
}

export function minor(dev: bigint): number {
  return Number(((dev >> 12n) & 0xffffff00n) | (dev & 0xffn));
}

/** makedev for the numbers statx returns, without BigInt arithmetic in the common case. */
function devOf(ma: number, mi: number): bigint {
  if (ma < 0x1000 && mi < 0x100000) {
    return BigInt(((ma << 8) | (mi & 0xff) | ((mi >> 8) << 20)) >>> 0);
  }
  return makedev(ma, mi);
}

// --- directories ---------------------------------------------------------------------------

const TYPES: EntryType[] = [];
for (let t = 0; t < 16; t++) TYPES.push("unknown");
TYPES[1] = "fifo";
TYPES[2] = "char";
TYPES[4] = "dir";
TYPES[6] = "block";
TYPES[8] = "file";
TYPES[10] = "symlink";
TYPES[12] = "socket";

const DENTS_SIZE = 128 * 1024;
let dents: Uint8Array | undefined;
let dentsView: DataView;
let useGetdents = true;

/** Directory listing through readdir64 instead of getdents64 (for tests of the fallback). */
export function _useReaddir(on: boolean): void {
  useGetdents = !on;
}

/**
 * The entries of directory `dir` except "." and "..", in the order the file system returns them,
 * with exact names. A symlink to a directory is not followed (an ENOTDIR or ELOOP error).
 */
export function readDirRaw(dir: string): RawEntry[] {
  const c = lib();
  const fd = openFd(c, "opendir", dir, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.CLOEXEC, 0);
  const out: RawEntry[] = [];
  if (useGetdents && c.getdents64) {
    if (!dents) {
      dents = new Uint8Array(DENTS_SIZE);
      dentsView = new DataView(dents.buffer);
    }
    const buf = dents;
    try {
      for (;;) {
        const n = Number(c.getdents64(fd, buf, BigInt(DENTS_SIZE)));
        if (n === 0) break;
        if (n < 0) {
          const e = errno();
          if (e === E.EINTR) continue;
          throw fail("getdents64", quote(dir), e);
        }
        for (let off = 0; off < n;) {
          const reclen = dentsView.getUint16(off + 16, true);
          pushEntry(out, buf, off, reclen, dentsView.getBigUint64(off, true));
          off += reclen;
        }
      }
    } finally {
      c.close(fd);
    }
    return out;
  }
  const d = c.fdopendir(fd);
  if (!d) {
    const e = errno();
    c.close(fd);
    throw fail("fdopendir", quote(dir), e);
  }
  const rec = new Uint8Array(280);
  try {
    for (;;) {
      setErrno(0);
      const p = c.readdir64(d);
      if (!p) {
        const e = errno();
        if (e !== 0) throw fail("readdir", quote(dir), e);
        break;
      }
      const v = new Deno.UnsafePointerView(p);
      const reclen = v.getUint16(16);
      // Exactly reclen bytes: the record may end where glibc's buffer does.
      const r = rec.length >= reclen ? rec.subarray(0, reclen) : new Uint8Array(reclen);
      v.copyInto(r, 0);
      pushEntry(out, r, 0, reclen, v.getBigUint64(0));
    }
  } finally {
    c.closedir(d);
  }
  return out;
}

/** Appends the struct dirent64 at `off` (d_ino @0, d_reclen @16, d_type @18, d_name @19). */
function pushEntry(out: RawEntry[], buf: Uint8Array, off: number, reclen: number, ino: bigint) {
  const start = off + 19;
  if (buf[start] === 0x2e) {
    const b1 = buf[start + 1];
    if (b1 === 0 || (b1 === 0x2e && buf[start + 2] === 0)) return;
  }
  let end = buf.indexOf(0, start);
  if (end < 0 || end > off + reclen) end = off + reclen;
  out.push({ name: nameAt(buf, start, end), type: TYPES[buf[off + 18] & 15], ino });
}

/** The name in buf[start, end): ASCII directly, anything else through pathText. */
function nameAt(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= 64) {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (buf[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
    }
  }
  return pathText(buf.subarray(start, end));
}

// --- stat ----------------------------------------------------------------------------------

const STATX_BASIC_STATS = 0x7ff;
const statBuf = new Uint8Array(256);
const statView = new DataView(statBuf.buffer);
const EMPTY = new Uint8Array(1);
const NS = 1_000_000_000n;
let statBackend: "statx" | "fstatat" | undefined;

/** Which call lstatRaw and fstatRaw use; `force` switches (for tests of the fallback). */
export function _statBackend(force?: "statx" | "fstatat"): "statx" | "fstatat" {
  if (force) statBackend = force;
  if (statBackend === undefined) statBackend = lib().statx ? "statx" : "fstatat";
  return statBackend;
}

/** The status of `path` itself (a symlink is described, not followed). */
export function lstatRaw(path: string): RawStat {
  const c = lib();
  return statAt(c, AT.FDCWD, cstr(path, 0, "lstat"), AT.SYMLINK_NOFOLLOW, "lstat", path);
}

/** The status of an open file descriptor. */
export function fstatRaw(fd: number): RawStat {
  return statAt(lib(), fd, EMPTY, AT.EMPTY_PATH, "fstat", null, fd);
}

function statAt(
  c: Libc,
  dirfd: number,
  p: Uint8Array,
  flags: number,
  call: string,
  path: string | null,
  fd = -1,
): RawStat {
  if (statBackend === undefined) _statBackend();
  if (statBackend === "statx") {
    if (c.statx!(dirfd, p, flags | AT.NO_AUTOMOUNT, STATX_BASIC_STATS, statBuf) === 0) {
      return fromStatx(statView);
    }
    const e = errno();
    // A kernel without statx says ENOSYS; some container sandboxes block it with EPERM, which
    // lstat never reports otherwise. If fstatat then works, use it from now on.
    if (e !== E.ENOSYS && e !== E.EPERM) {
      throw fail(call, path === null ? `fd ${fd}` : quote(path), e);
    }
    const st = fstatAt(c, dirfd, p, flags, call, path, fd);
    statBackend = "fstatat";
    return st;
  }
  return fstatAt(c, dirfd, p, flags, call, path, fd);
}

function fstatAt(
  c: Libc,
  dirfd: number,
  p: Uint8Array,
  flags: number,
  call: string,
  path: string | null,
  fd: number,
): RawStat {
  const r = c.fstatat64
    ? c.fstatat64(dirfd, p, statBuf, flags)
    : c.__fxstatat64
    ? c.__fxstatat64(STAT_VER, dirfd, p, statBuf, flags)
    : (setErrno(E.ENOSYS), -1);
  if (r !== 0) throw fail(call, path === null ? `fd ${fd}` : quote(path), errno());
  return fromStat(statView);
}

function u64(v: DataView, off: number): number {
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * 0x100000000;
}

function fromStatx(v: DataView): RawStat {
  // struct statx: mask u32 @0, blksize u32 @4, attributes u64 @8, nlink u32 @16, uid u32 @20,
  // gid u32 @24, mode u16 @28, ino u64 @32, size u64 @40, blocks u64 @48, attributes_mask @56,
  // timestamps {i64 sec, u32 nsec, i32} atime @64, btime @80, ctime @96, mtime @112,
  // rdev_major/minor u32 @128/@132, dev_major/minor u32 @136/@140.
  return {
    dev: devOf(v.getUint32(136, true), v.getUint32(140, true)),
    ino: v.getBigUint64(32, true),
    mode: v.getUint16(28, true),
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    rdev: devOf(v.getUint32(128, true), v.getUint32(132, true)),
    size: u64(v, 40),
    blocks: u64(v, 48),
    blksize: v.getUint32(4, true),
    atimeNs: v.getBigInt64(64, true) * NS + BigInt(v.getUint32(72, true)),
    mtimeNs: v.getBigInt64(112, true) * NS + BigInt(v.getUint32(120, true)),
    ctimeNs: v.getBigInt64(96, true) * NS + BigInt(v.getUint32(104, true)),
  };
}

function fromStat(v: DataView): RawStat {
  if (Deno.build.arch === "aarch64") {
    // asm-generic struct stat: dev @0, ino @8, mode u32 @16, nlink u32 @20, uid @24, gid @28,
    // rdev @32, size @48, blksize i32 @56, blocks @64, atime @72/@80, mtime @88/@96,
    // ctime @104/@112.
    return {
      dev: v.getBigUint64(0, true),
      ino: v.getBigUint64(8, true),
      mode: v.getUint32(16, true),
      nlink: v.getUint32(20, true),
      uid: v.getUint32(24, true),
      gid: v.getUint32(28, true),
      rdev: v.getBigUint64(32, true),
      size: u64(v, 48),
      blocks: u64(v, 64),
      blksize: v.getInt32(56, true),
      atimeNs: v.getBigInt64(72, true) * NS + v.getBigInt64(80, true),
      mtimeNs: v.getBigInt64(88, true) * NS + v.getBigInt64(96, true),
      ctimeNs: v.getBigInt64(104, true) * NS + v.getBigInt64(112, true),
    };
  }
  // x86_64 struct stat: dev @0, ino @8, nlink u64 @16, mode u32 @24, uid @28, gid @32,
  // rdev @40, size @48, blksize @56, blocks @64, atime @72/@80, mtime @88/@96, ctime @104/@112.
  return {
    dev: v.getBigUint64(0, true),
    ino: v.getBigUint64(8, true),
    mode: v.getUint32(24, true),
    nlink: u64(v, 16),
    uid: v.getUint32(28, true),
    gid: v.getUint32(32, true),
    rdev: v.getBigUint64(40, true),
    size: u64(v, 48),
    blocks: u64(v, 64),
    blksize: u64(v, 56),
    atimeNs: v.getBigInt64(72, true) * NS + v.getBigInt64(80, true),
    mtimeNs: v.getBigInt64(88, true) * NS + v.getBigInt64(96, true),
    ctimeNs: v.getBigInt64(104, true) * NS + v.getBigInt64(112, true),
  };
}

// --- links ---------------------------------------------------------------------------------

let linkBuf = new Uint8Array(4096);

/** The target of symlink `path`, exactly (the buffer grows until the target fits). */
export function readlinkRaw(path: string): string {
  const c = lib();
  const p = cstr(path, 0, "readlink");
  for (;;) {
    const n = Number(c.readlink(p, linkBuf, BigInt(linkBuf.length)));
    if (n < 0) throw fail("readlink", quote(path));
    if (n < linkBuf.length) return pathText(linkBuf.subarray(0, n));
    linkBuf = new Uint8Array(linkBuf.length * 2);
  }
}

/** Creates symlink `path` pointing at `target` (any bytes; not checked to exist). */
export function symlinkRaw(target: string, path: string): void {
  const c = lib();
  const t = cstr(target, 0, "symlink");
  if (c.symlink(t, cstr(path, 1, "symlink")) !== 0) {
    throw fail("symlink", `${quote(target)} at ${quote(path)}`);
  }
}

/** Makes `newPath` a hard link to `existing`; a symlink is linked itself, not its target. */
export function linkRaw(existing: string, newPath: string): void {
  const c = lib();
  const a = cstr(existing, 0, "link");
  if (c.linkat(AT.FDCWD, a, AT.FDCWD, cstr(newPath, 1, "link"), 0) !== 0) {
    throw fail("link", `${quote(existing)} to ${quote(newPath)}`);
  }
}

// --- files ---------------------------------------------------------------------------------

/**
 * "read" opens an existing file without following a final symlink, non-blocking so that a FIFO
 * put in a file's place cannot hang the thread (regular files ignore O_NONBLOCK); "write-new"
 * creates a file that must not exist; "write-trunc" creates or truncates, refusing a symlink;
 * "dir" opens a directory (for fsyncFd and futimensFd). All are close-on-exec.
 */
export type OpenMode = "read" | "write-new" | "write-trunc" | "dir";

const OPEN_FLAGS: Record<OpenMode, number> = {
  "read": O.RDONLY | O.NOFOLLOW | O.NONBLOCK | O.NOCTTY | O.CLOEXEC,
  "write-new": O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW | O.NOCTTY | O.CLOEXEC,
  "write-trunc": O.WRONLY | O.CREAT | O.TRUNC | O.NOFOLLOW | O.NOCTTY | O.CLOEXEC,
  "dir": O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.CLOEXEC,
};

/**
 * Opens `path` and returns the fd. A created file gets `mode` less the umask; the default 0o600
 * keeps restored content private until its own mode is set.
 */
export function openRaw(path: string, flags: OpenMode, mode = 0o600): number {
  const f = OPEN_FLAGS[flags];
  if (f === undefined) throw new TypeError(`openRaw: unknown flags ${JSON.stringify(flags)}`);
  return openFd(lib(), "open", path, f, mode);
}

function openFd(c: Libc, call: string, path: string, flags: number, mode: number): number {
  const p = cstr(path, 0, call);
  for (;;) {
    const fd = c.open(p, flags, mode);
    if (fd >= 0) return fd;
    const e = errno();
    if (e !== E.EINTR) throw fail(call, quote(path), e);
  }
}

/**
 * Reads into `buf` from the file offset, or with pread from `offset` when given (the file offset
 * then stays). Returns the byte count, 0 at the end of the file.
 */
export function readFd(fd: number, buf: Uint8Array, offset?: number): number {
  const c = lib();
  for (;;) {
    const n = Number(
      offset === undefined
        ? c.read(fd, buf, BigInt(buf.length))
        : c.pread(fd, buf, BigInt(buf.length), BigInt(offset)),
    );
    if (n >= 0) return n;
    const e = errno();
    if (e !== E.EINTR) throw fail(offset === undefined ? "read" : "pread", `fd ${fd}`, e);
  }
}

/** Writes all of `data` (looping over short writes), at `offset` with pwrite when given. */
export function writeFd(fd: number, data: Uint8Array, offset?: number): void {
  const c = lib();
  let done = 0;
  while (done < data.length) {
    const part = done === 0 ? data : data.subarray(done);
    const n = Number(
      offset === undefined
        ? c.write(fd, part, BigInt(part.length))
        : c.pwrite(fd, part, BigInt(part.length), BigInt(offset + done)),
    );
    if (n > 0) {
      done += n;
      continue;
    }
    const e = n === 0 ? E.ENOSPC : errno();
    if (e !== E.EINTR) throw fail(offset === undefined ? "write" : "pwrite", `fd ${fd}`, e);
  }
}

export function closeFd(fd: number): void {
  // Never retried: on Linux the descriptor is gone even when close reports EINTR.
  if (lib().close(fd) !== 0) throw fail("close", `fd ${fd}`);
}

export function ftruncateFd(fd: number, size: number): void {
  if (lib().ftruncate(fd, BigInt(size)) !== 0) throw fail("ftruncate", `fd ${fd}`);
}

export function fsyncFd(fd: number): void {
  if (lib().fsync(fd) !== 0) throw fail("fsync", `fd ${fd}`);
}

// --- sparse files --------------------------------------------------------------------------

const SEEK_SET = 0;
const SEEK_CUR = 1;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/** The first offset ≥ `from` holding data, or null when none does (ENXIO). Moves the offset. */
export function seekData(fd: number, from: number): number | null {
  const r = Number(lib().lseek(fd, BigInt(from), SEEK_DATA));
  if (r >= 0) return r;
  const e = errno();
  if (e === E.ENXIO) return null;
  throw fail("lseek(SEEK_DATA)", `fd ${fd}`, e);
}

/** The first hole at or after `from` (the end of the file counts as one). Moves the offset. */
export function seekHole(fd: number, from: number): number {
  const r = Number(lib().lseek(fd, BigInt(from), SEEK_HOLE));
  if (r >= 0) return r;
  throw fail("lseek(SEEK_HOLE)", `fd ${fd}`);
}

/**
 * The [start, end) ranges of the first `size` bytes that hold data, holes left out; the file
 * offset is kept. A file system without hole support reports one range [0, size); an empty file
 * has none.
 */
export function dataRanges(fd: number, size: number): [number, number][] {
  if (size <= 0) return [];
  const c = lib();
  const saved = c.lseek(fd, 0n, SEEK_CUR);
  const out: [number, number][] = [];
  try {
    let pos = 0;
    while (pos < size) {
      let start: number | null;
      try {
        start = seekData(fd, pos);
      } catch (e) {
        // SEEK_DATA unknown (very old kernels): all of it is data.
        if ((e as PosixError).code === "EINVAL" && pos === 0) return [[0, size]];
        throw e;
      }
      if (start === null || start >= size) break;
      const end = Math.min(seekHole(fd, start), size);
      out.push([start, end]);
      pos = end;
    }
  } finally {
    if (saved >= 0n) c.lseek(fd, saved, SEEK_SET);
  }
  return out;
}

// --- creating, renaming, removing -----------------------------------------------------------

function check(r: number, call: string, path: string): void {
  if (r !== 0) throw fail(call, quote(path));
}

/** Creates a directory; the umask applies, so set exact modes with fchmodatRaw afterwards. */
export function mkdirRaw(path: string, mode: number): void {
  const c = lib();
  check(c.mkdir(cstr(path, 0, "mkdir"), mode), "mkdir", path);
}

/** rename(2): replaces `to` if it exists; a symlink is moved, not its target. */
export function renameRaw(from: string, to: string): void {
  const c = lib();
  const a = cstr(from, 0, "rename");
  if (c.rename(a, cstr(to, 1, "rename")) !== 0) {
    throw fail("rename", `${quote(from)} to ${quote(to)}`);
  }
}

export function unlinkRaw(path: string): void {
  const c = lib();
  check(c.unlink(cstr(path, 0, "unlink")), "unlink", path);
}

export function rmdirRaw(path: string): void {
  const c = lib();
  check(c.rmdir(cstr(path, 0, "rmdir")), "rmdir", path);
}

const devBuf = new BigUint64Array(1);

/**
 * Creates a FIFO, char or block device, socket or empty file (`mode` includes the S_IF* type;
 * devices need root). The umask applies, as for mkfifoRaw.
 */
export function mknodRaw(path: string, mode: number, rdev: bigint): void {
  const c = lib();
  const p = cstr(path, 0, "mknod");
  let r: number;
  if (c.mknod) r = c.mknod(p, mode, rdev);
  else {
    devBuf[0] = rdev;
    r = c.__xmknod!(MKNOD_VER, p, mode, devBuf);
  }
  check(r, "mknod", path);
}

export function mkfifoRaw(path: string, mode: number): void {
  const c = lib();
  check(c.mkfifo(cstr(path, 0, "mkfifo"), mode), "mkfifo", path);
}

// --- owner, mode, times --------------------------------------------------------------------

/**
 * chown without following a symlink; -1 keeps that id. The kernel clears set-user-ID and
 * set-group-ID bits on chown, so restore the mode after the owner.
 */
export function lchownRaw(path: string, uid: number, gid: number): void {
  const c = lib();
  check(c.lchown(cstr(path, 0, "lchown"), uid >>> 0, gid >>> 0), "lchown", path);
}

/**
 * chmod of `path` itself. Linux has no mode of its own for a symlink and refuses to change it:
 * on a symlink this throws ENOTSUP, so call it for everything but symlinks. It uses
 * fchmodat(AT_SYMLINK_NOFOLLOW), and plain chmod where glibc cannot do that (no /proc) and the
 * path is not a symlink.
 */
export function fchmodatRaw(path: string, mode: number): void {
  const c = lib();
  const p = cstr(path, 0, "chmod");
  if (c.fchmodat(AT.FDCWD, p, mode, AT.SYMLINK_NOFOLLOW) === 0) return;
  const e = errno();
  if (e !== E.ENOTSUP) throw fail("chmod", quote(path), e);
  if ((lstatRaw(path).mode & S_IFMT) === S_IFLNK) {
    throw new PosixError(
      "chmod",
      quote(path),
      e,
      "ENOTSUP",
      "a symlink has no mode of its own on Linux",
    );
  }
  check(c.fchmodat(AT.FDCWD, cstr(path, 0, "chmod"), mode, 0), "chmod", path);
}

const UTIME_OMIT = (1n << 30n) - 2n;
const times = new BigInt64Array(4);

function setTimes(atimeNs: bigint | null, mtimeNs: bigint | null): void {
  let i = 0;
  for (const ns of [atimeNs, mtimeNs]) {
    if (ns === null) {
      times[i] = 0n;
      times[i + 1] = UTIME_OMIT;
    } else {
      let sec = ns / NS;
      let rem = ns % NS;
      if (rem < 0n) {
        rem += NS;
        sec -= 1n;
      }
      times[i] = sec;
      times[i + 1] = rem;
    }
    i += 2;
  }
}

/**
 * Sets access and modification times in nanoseconds since the epoch (null leaves one as is);
 * with noFollow (the default) a symlink gets the times itself.
 */
export function utimensRaw(
  path: string,
  atimeNs: bigint | null,
  mtimeNs: bigint | null,
  noFollow = true,
): void {
  const c = lib();
  const p = cstr(path, 0, "utimensat");
  setTimes(atimeNs, mtimeNs);
  check(c.utimensat(AT.FDCWD, p, times, noFollow ? AT.SYMLINK_NOFOLLOW : 0), "utimensat", path);
}

export function futimensFd(fd: number, atimeNs: bigint | null, mtimeNs: bigint | null): void {
  setTimes(atimeNs, mtimeNs);
  if (lib().futimens(fd, times) !== 0) throw fail("futimens", `fd ${fd}`);
}

// --- extended attributes -------------------------------------------------------------------

let xbuf = new Uint8Array(4096);

/** Calls `f(buf, size)` (a size query with the buffer) until the answer fits; -1 is an error. */
function sized(f: (buf: Uint8Array, size: bigint) => bigint, call: string, what: string) {
  for (;;) {
    const n = Number(f(xbuf, BigInt(xbuf.length)));
    if (n >= 0) return xbuf.subarray(0, n);
    const e = errno();
    if (e !== E.ERANGE) throw fail(call, what, e);
    const need = Number(f(xbuf, 0n)); // the size now needed; it may change again before the read
    if (need < 0) throw fail(call, what);
    xbuf = new Uint8Array(Math.max(need, xbuf.length * 2));
  }
}

/** The names of the extended attributes of `path` itself (not a symlink's target). */
export function listXattrs(path: string): string[] {
  const c = lib();
  const p = cstr(path, 0, "llistxattr");
  const list = sized((b, n) => c.llistxattr(p, n === 0n ? null : b, n), "llistxattr", quote(path));
  const out: string[] = [];
  for (let i = 0; i < list.length;) {
    let j = list.indexOf(0, i);
    if (j < 0) j = list.length;
    if (j > i) out.push(pathText(list.subarray(i, j)));
    i = j + 1;
  }
  return out;
}

/** The value of extended attribute `name` of `path` itself; ENODATA when it has none. */
export function getXattr(path: string, name: string): Uint8Array {
  const c = lib();
  const p = cstr(path, 0, "lgetxattr");
  const k = cstr(name, 2, "lgetxattr");
  const what = `${quote(path)} ${quote(name)}`;
  return sized((b, n) => c.lgetxattr(p, k, n === 0n ? null : b, n), "lgetxattr", what).slice();
}

/** Creates or replaces extended attribute `name` of `path` itself. */
export function setXattr(path: string, name: string, value: Uint8Array): void {
  const c = lib();
  const p = cstr(path, 0, "lsetxattr");
  const k = cstr(name, 2, "lsetxattr");
  if (c.lsetxattr(p, k, value, BigInt(value.length), 0) !== 0) {
    throw fail("lsetxattr", `${quote(path)} ${quote(name)}`);
  }
}

export function removeXattr(path: string, name: string): void {
  const c = lib();
  const p = cstr(path, 0, "lremovexattr");
  if (c.lremovexattr(p, cstr(name, 2, "lremovexattr")) !== 0) {
    throw fail("lremovexattr", `${quote(path)} ${quote(name)}`);
  }
}

/** Makes the growable buffers tiny, so that tests exercise their growth. */
export function _shrinkBuffers(): void {
  linkBuf = new Uint8Array(8);
  xbuf = new Uint8Array(8);
  _shrinkIdBuffer();
}

// --- identity ------------------------------------------------------------------------------

export function geteuid(): number {
  return lib().geteuid();
}
