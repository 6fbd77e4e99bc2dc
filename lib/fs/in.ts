// A file being read for a push: through libc when it is there (any name, and a little faster
// than Deno's calls), else through Deno (UTF-8 names only). The holes of a sparse file are given
// as zeros without being read: reading a hole makes the kernel fill page-cache pages with zeros,
// about 2 s per GiB on a cold file here, where skipping it costs nothing.

import { isRawName } from "../format/names.ts";
import { splitTime } from "./meta.ts";
import {
  closeFd,
  dataRanges,
  fstatRaw,
  openRaw,
  posixAvailable,
  PosixError,
  readFd,
} from "./posix.ts";

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
    let read = (buf: Uint8Array) => readFd(fd, buf);
    try {
      const st = fstatRaw(fd);
      if (st.blocks * 512 < st.size) read = sparseReader(fd, st.size, dataRanges(fd, st.size));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return {
      read,
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

/**
 * Reads a sparse file of `size` bytes whose data lies in `ranges`: data with pread, holes as
 * zeros written into the buffer. Past `size` it reads for real, so that a file that grew is seen.
 */
function sparseReader(
  fd: number,
  size: number,
  ranges: [number, number][],
): (buf: Uint8Array) => number {
  let at = 0;
  let r = 0;
  return (buf) => {
    if (buf.length === 0) return 0;
    while (r < ranges.length && ranges[r][1] <= at) r++;
    let n: number;
    if (at >= size) n = readFd(fd, buf, at);
    else if (r < ranges.length && ranges[r][0] <= at) {
      n = readFd(fd, buf.subarray(0, Math.min(buf.length, ranges[r][1] - at)), at);
    } else {
      const holeEnd = r < ranges.length ? ranges[r][0] : size;
      n = Math.min(buf.length, holeEnd - at);
      buf.fill(0, 0, n);
    }
    at += n;
    return n;
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
