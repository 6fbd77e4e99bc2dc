// The libc symbols behind lib/fs/posix.ts, loaded once per thread through Deno.dlopen, with errno,
// the errors they raise, per-architecture constants and reusable C-string buffers for paths.

import { displayPath, pathBytes } from "../format/names.ts";

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32" },
  // glibc 2.28+; older libraries, or kernels and sandboxes without the call, use fstatat.
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32", optional: true },
  // glibc 2.33+ exports fstatat64; before that only __fxstatat64 (with a version argument).
  fstatat64: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32", optional: true },
  __fxstatat64: {
    parameters: ["i32", "i32", "buffer", "buffer", "i32"],
    result: "i32",
    optional: true,
  },
  // glibc 2.30+: many entries per call into our own buffer; readdir64 is the fallback.
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize", optional: true },
  fdopendir: { parameters: ["i32"], result: "pointer" },
  readdir64: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  mkdir: { parameters: ["buffer", "u32"], result: "i32" },
  rename: { parameters: ["buffer", "buffer"], result: "i32" },
  unlink: { parameters: ["buffer"], result: "i32" },
  rmdir: { parameters: ["buffer"], result: "i32" },
  symlink: { parameters: ["buffer", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  // glibc 2.33+ exports mknod; before that only __xmknod (with a version argument).
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32", optional: true },
  __xmknod: { parameters: ["i32", "buffer", "u32", "buffer"], result: "i32", optional: true },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  lchown: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  fchmodat: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  futimens: { parameters: ["i32", "buffer"], result: "i32" },
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  lremovexattr: { parameters: ["buffer", "buffer"], result: "i32" },
  getpwuid_r: { parameters: ["u32", "buffer", "buffer", "usize", "buffer"], result: "i32" },
  getgrgid_r: { parameters: ["u32", "buffer", "buffer", "usize", "buffer"], result: "i32" },
  getpwnam_r: { parameters: ["buffer", "buffer", "buffer", "usize", "buffer"], result: "i32" },
  getgrnam_r: { parameters: ["buffer", "buffer", "buffer", "usize", "buffer"], result: "i32" },
  sysconf: { parameters: ["i32"], result: "i64" },
  geteuid: { parameters: [], result: "u32" },
} as const;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | null | undefined;
let errnoCell = new Int32Array(1);

function load(): Libc | null {
  try {
    if (
      typeof Deno?.dlopen !== "function" || Deno.build.os !== "linux" ||
      (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") ||
      Deno.permissions.querySync({ name: "ffi" }).state !== "granted"
    ) return null;
    const lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    // errno lives at a fixed address per thread, and each Worker loads its own copy of this module.
    const where = lib.__errno_location();
    if (!where) return null;
    errnoCell = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(where, 4));
    return lib;
  } catch {
    return null;
  }
}

/** True on Linux (x86_64 or aarch64) with the FFI permission granted and glibc loadable. */
export function posixAvailable(): boolean {
  if (libc === undefined) libc = load();
  return libc !== null;
}

/** The loaded library; throws a plain explanation where the layer cannot work. */
export function lib(): Libc {
  if (libc === undefined) libc = load();
  if (libc === null) {
    throw new Error(
      "n2s's file system layer needs Linux (x86_64 or aarch64), glibc and the FFI permission " +
        "(--allow-ffi)",
    );
  }
  return libc;
}

/** errno of this thread; read right after the failed call, before anything else can set it. */
export function errno(): number {
  return errnoCell[0];
}

export function setErrno(v: number): void {
  errnoCell[0] = v;
}

// Linux's numbers; x86_64 and aarch64 share them (asm-generic).
export const E = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  EDQUOT: 122,
} as const;

const CODES = new Map<number, string>(Object.entries(E).map(([k, v]) => [v, k]));

const MESSAGES: Record<string, string> = {
  EPERM: "Operation not permitted",
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EEXIST: "File exists",
  ENOTDIR: "Not a directory",
  EISDIR: "Is a directory",
  ENOTEMPTY: "Directory not empty",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  ENOTSUP: "Operation not supported",
  ENODATA: "No data available",
  ELOOP: "Too many levels of symbolic links",
  EINVAL: "Invalid argument",
  EXDEV: "Invalid cross-device link",
  ENAMETOOLONG: "File name too long",
};

function strerror(n: number, code: string): string {
  try {
    const p = libc?.strerror(n);
    if (p) return new Deno.UnsafePointerView(p).getCString();
  } catch {
    // fall through to the table
  }
  return MESSAGES[code] ?? `error ${n}`;
}

/** A failed libc call: `.code` is errno's name ("ENOENT"), `.errno` its number. */
export class PosixError extends Error {
  override name = "PosixError";
  constructor(
    /** The libc call, e.g. "lstat". */
    readonly call: string,
    /** What it was called on, as shown in the message (a path in displayPath form, or "fd 5"). */
    readonly subject: string,
    readonly errno: number,
    readonly code: string,
    detail?: string,
  ) {
    super(`${call} ${subject}: ${detail ?? strerror(errno, code)} (${code})`);
  }
}

export function quote(path: string): string {
  return `"${displayPath(path)}"`;
}

/** The error for errno `n` from `call` on `subject` (already quoted). */
export function fail(call: string, subject: string, n = errno()): PosixError {
  return new PosixError(call, subject, n, CODES.get(n) ?? `E${n}`);
}

const encoder = new TextEncoder();

/**
 * Reusable NUL-terminated buffers for the (at most three) strings one call passes. Each call
 * converts its arguments right before calling, so the buffers are never in use twice at once.
 */
const slots: Uint8Array[] = [new Uint8Array(4096), new Uint8Array(4096), new Uint8Array(256)];

/**
 * `s` as a C string in buffer `slot`: its path bytes and a NUL. A NUL inside `s`, or a lone
 * surrogate that stands for no byte, is an EINVAL error naming `call` and `s`.
 */
export function cstr(s: string, slot: number, call: string): Uint8Array {
  if (s.includes("\0")) {
    throw new PosixError(
      call,
      quote(s),
      E.EINVAL,
      "EINVAL",
      "a path or name cannot hold a NUL byte",
    );
  }
  let buf = slots[slot];
  if (s.isWellFormed()) {
    if (buf.length < s.length * 3 + 1) buf = slots[slot] = new Uint8Array(s.length * 3 + 1);
    buf[encoder.encodeInto(s, buf).written] = 0;
    return buf;
  }
  let b: Uint8Array;
  try {
    b = pathBytes(s);
  } catch (e) {
    throw new PosixError(call, quote(s), E.EINVAL, "EINVAL", (e as Error).message);
  }
  if (buf.length < b.length + 1) buf = slots[slot] = new Uint8Array(b.length + 1);
  buf.set(b);
  buf[b.length] = 0;
  return buf;
}

const ARM = Deno.build.arch === "aarch64";

/** open(2) flags; O_DIRECTORY and O_NOFOLLOW differ between x86_64 and aarch64. */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  NONBLOCK: 0o4000,
  DIRECTORY: ARM ? 0o40000 : 0o200000,
  NOFOLLOW: ARM ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

export const AT = {
  FDCWD: -100,
  SYMLINK_NOFOLLOW: 0x100,
  NO_AUTOMOUNT: 0x800,
  EMPTY_PATH: 0x1000,
} as const;

/** The version argument of __fxstatat64 and __xmknod in glibc before 2.33. */
export const STAT_VER = ARM ? 0 : 1;
export const MKNOD_VER = 0;
