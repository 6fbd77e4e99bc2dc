// A file being read for a push: through libc when it is there (any name, and a little faster
// than Deno's calls), else through Deno (UTF-8 names only).

import { isRawName } from "../format/names.ts";
import { splitTime } from "./meta.ts";
import { closeFd, fstatRaw, openRaw, posixAvailable, PosixError, readFd } from "./posix.ts";

/** What a read compares before and after, to see a file that changed meanwhile. */
export interface InStat {
  size: number;
  /** Milliseconds since the epoch. */
  mtime: number;
  /** st_mode & 07777. */
  mode: number;
  inode: number | null;
}

/** An open file, read from the start. */
export interface FileIn {
  /** Fills as much of `buf` as the next read gives; 0 at the end. */
  read(buf: Uint8Array): number;
  stat(): InStat;
  close(): void;
}

/** Opens `full` for reading (never following a final symlink when libc is there). */
export function openIn(full: string): FileIn {
  if (posixAvailable()) {
    const fd = openRaw(full, "read");
    return {
      read: (buf) => readFd(fd, buf),
      stat() {
        const st = fstatRaw(fd);
        return {
          size: st.size,
          mtime: splitTime(st.mtimeNs).mtime,
          mode: st.mode & 0o7777,
          inode: Number(st.ino),
        };
      },
      close: () => closeFd(fd),
    };
  }
  if (isRawName(full)) {
    throw new Error("its name is not UTF-8, which n2s reads only with --allow-ffi");
  }
  const f = Deno.openSync(full, { read: true });
  return {
    read: (buf) => f.readSync(buf) ?? 0,
    stat() {
      const st = f.statSync();
      return {
        size: st.size,
        mtime: st.mtime?.getTime() ?? 0,
        mode: (st.mode ?? 0o644) & 0o7777,
        inode: st.ino ?? null,
      };
    },
    close: () => f.close(),
  };
}

/** True for the error of a file that is not there (any more). */
export function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound ||
    (e instanceof PosixError && (e.code === "ENOENT" || e.code === "ENOTDIR"));
}

/** True for the error of a file that may not be read. */
export function isDenied(e: unknown): boolean {
  return e instanceof Deno.errors.PermissionDenied ||
    (e instanceof PosixError && (e.code === "EACCES" || e.code === "EPERM"));
}
