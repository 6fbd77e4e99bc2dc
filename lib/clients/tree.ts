// Reading a directory tree as client entries: lstat one path, or walk a subtree in a stable
// order. Names are read as the file system's bytes (lib/fs/posix.ts); files, links, directories,
// FIFOs and devices become entries with their metadata; sockets are noted; nothing that could
// not be read is left out without a problem that names it.

import type { EntryMeta } from "../index/types.ts";
import { isRawName } from "../format/names.ts";
import { metaOf, splitTime } from "../fs/meta.ts";
import {
  closeFd,
  dataRanges,
  lstatRaw,
  major,
  minor,
  openRaw,
  posixAvailable,
  PosixError,
  type RawStat,
  readDirRaw,
  readlinkRaw,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "../fs/posix.ts";
import type { ClientProblem, SourceEntry } from "./client.ts";

/** What one path of a tree is. */
export type Found =
  | { kind: "entry"; entry: SourceEntry }
  | { kind: "dir"; path: string; entry: SourceEntry }
  /** Skipped on purpose and noted (a socket). */
  | { kind: "special"; path: string; what: string }
  /** Cannot be stored: a problem that names it. */
  | { kind: "unreadable"; path: string; why: string }
  | { kind: "missing"; path: string };

/** A problem found while reading a tree (reported to the user). */
export type Problem = ClientProblem;

/** Joins a root directory and a relative path ("" is the root itself). */
export function joinRoot(root: string, path: string): string {
  if (path === "") return root;
  return root.endsWith("/") ? root + path : `${root}/${path}`;
}

/** What is read for every entry. */
export interface ReadOptions {
  /**
   * Read extended attributes now (default false: the push reads them for the entries that
   * changed only; a change of one changes the change time, which is read for every entry).
   */
  xattrs?: boolean;
}

function entryMeta(full: string, st: RawStat, opts: ReadOptions): EntryMeta {
  const m = metaOf(full, st, { xattrs: opts.xattrs ?? false });
  const meta: EntryMeta = { nsec: m.nsec, uid: m.uid, gid: m.gid };
  if (m.user !== undefined) meta.user = m.user;
  if (m.group !== undefined) meta.group = m.group;
  if (m.xattrs !== undefined) meta.xattrs = m.xattrs;
  meta.ctime = String(st.ctimeNs);
  meta.dev = String(st.dev);
  return meta;
}

/** The holes of a regular file that takes less space than its size (a sparse file). */
function holesOf(full: string, st: RawStat): [number, number][] | undefined {
  if (st.size === 0 || st.blocks * 512 >= st.size) return undefined;
  let fd: number;
  try {
    fd = openRaw(full, "read");
  } catch {
    return undefined; // the read will report it
  }
  try {
    const data = dataRanges(fd, st.size);
    const holes: [number, number][] = [];
    let at = 0;
    for (const [s, e] of data) {
      if (s > at) holes.push([at, s]);
      at = e;
    }
    if (at < st.size) holes.push([at, st.size]);
    return holes.length > 0 ? holes : undefined;
  } finally {
    closeFd(fd);
  }
}

/** Turns an lstat result into what the path is. */
export function describeRaw(
  root: string,
  path: string,
  st: RawStat,
  opts: ReadOptions = {},
): Found {
  const full = joinRoot(root, path);
  const mtimeMs = splitTime(st.mtimeNs).mtime;
  const mode = st.mode & 0o7777;
  const type = st.mode & S_IFMT;
  const meta = entryMeta(full, st, opts);
  if (type === S_IFLNK) {
    const target = readlinkRaw(full);
    return { kind: "entry", entry: { path, action: "link", target, mtime: mtimeMs, mode, meta } };
  }
  if (type === S_IFREG) {
    const holes = holesOf(full, st);
    if (holes) meta.holes = holes;
    return {
      kind: "entry",
      entry: {
        path,
        action: "write",
        size: st.size,
        mtime: mtimeMs,
        mode,
        inode: Number(st.ino),
        nlink: st.nlink,
        meta,
      },
    };
  }
  if (type === S_IFDIR) {
    return { kind: "dir", path, entry: { path, action: "dir", mtime: mtimeMs, mode, meta } };
  }
  if (type === S_IFIFO || type === S_IFCHR || type === S_IFBLK) {
    meta.kind = type === S_IFIFO ? "fifo" : type === S_IFCHR ? "char" : "block";
    if (type !== S_IFIFO) {
      meta.major = major(st.rdev);
      meta.minor = minor(st.rdev);
    }
    return { kind: "entry", entry: { path, action: "special", mtime: mtimeMs, mode, meta } };
  }
  return { kind: "special", path, what: type === S_IFSOCK ? "socket" : "special file" };
}

/** Looks at one path without following a final symlink. */
export function lstatPath(root: string, path: string, opts: ReadOptions = {}): Promise<Found> {
  try {
    if (!posixAvailable()) return Promise.resolve(lstatWithDeno(root, path));
    let st: RawStat;
    try {
      st = lstatRaw(joinRoot(root, path));
    } catch (e) {
      if (e instanceof PosixError && (e.code === "ENOENT" || e.code === "ENOTDIR")) {
        return Promise.resolve({ kind: "missing", path });
      }
      throw e;
    }
    return Promise.resolve(describeRaw(root, path, st, opts));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Options for walking a tree. */
export interface WalkOptions extends ReadOptions {
  /** Return true to leave a directory out (it is not read). */
  skipDir?: (path: string) => boolean;
  /** Return true to leave a file or link out. */
  skipEntry?: (path: string) => boolean;
  /** Sockets, unreadable directories and entries that could not be read are noted here. */
  problems?: Problem[];
}

/** A problem's message from an error of the file system. */
function why(e: unknown): string {
  if (e instanceof PosixError) {
    if (e.code === "EACCES" || e.code === "EPERM") return "permission denied";
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

/**
 * Walks the subtree at `start` (a relative path, "" for the whole root) depth-first in byte
 * order of names, yielding directories, files, links, FIFOs and devices. Every entry it cannot
 * read is a problem that names it (an unreadable directory too: nothing under it is inferred
 * deleted); sockets are notes. `start` itself is not yielded.
 */
export async function* walkTree(
  root: string,
  start: string,
  opts: WalkOptions = {},
): AsyncGenerator<SourceEntry> {
  if (!posixAvailable()) {
    yield* walkWithDeno(root, start, opts);
    return;
  }
  const stack: string[] = [start];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let names: string[];
    try {
      names = readDirRaw(joinRoot(root, dir)).map((e) => e.name);
    } catch (e) {
      if (e instanceof PosixError && e.code === "ENOENT") continue; // removed while walking
      opts.problems?.push({
        path: dir === "" ? "." : dir,
        message: `directory not readable (${why(e)}); nothing under it was stored`,
      });
      continue;
    }
    names.sort(compareNames);
    const subdirs: string[] = [];
    for (const name of names) {
      const path = dir === "" ? name : `${dir}/${name}`;
      let found: Found;
      try {
        found = describeRaw(root, path, lstatRaw(joinRoot(root, path)), opts);
      } catch (e) {
        if (e instanceof PosixError && e.code === "ENOENT") continue; // removed while walking
        opts.problems?.push({ path, message: `not readable (${why(e)}); it was not stored` });
        continue;
      }
      if (found.kind === "dir") {
        if (opts.skipDir?.(path)) continue;
        subdirs.push(path);
        yield found.entry;
        continue;
      }
      if (opts.skipEntry?.(path)) continue;
      if (found.kind === "entry") yield found.entry;
      else if (found.kind === "special") {
        opts.problems?.push({ path, message: `${found.what} skipped`, note: true });
      }
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
    // The walk is synchronous work: the event loop gets a turn between directories.
    await Promise.resolve();
  }
}

/** Orders names by code unit, so walks are stable across runs. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// --- without FFI: Deno's calls, which cannot read names that are not UTF-8 --------------------

const LOSSY = "\ufffd";

function denoDescribe(root: string, path: string, st: Deno.FileInfo): Found {
  const mtime = st.mtime?.getTime() ?? 0;
  const mode = (st.mode ?? 0) & 0o7777;
  const meta: EntryMeta = { uid: st.uid ?? undefined, gid: st.gid ?? undefined };
  if (st.isSymlink) {
    const target = Deno.readLinkSync(joinRoot(root, path));
    return { kind: "entry", entry: { path, action: "link", target, mtime, mode, meta } };
  }
  if (st.isFile) {
    return {
      kind: "entry",
      entry: {
        path,
        action: "write",
        size: st.size,
        mtime,
        mode,
        inode: st.ino ?? undefined,
        nlink: st.nlink ?? 1,
        meta,
      },
    };
  }
  if (st.isDirectory) {
    return { kind: "dir", path, entry: { path, action: "dir", mtime, mode, meta } };
  }
  if (st.isFifo) {
    return {
      kind: "entry",
      entry: { path, action: "special", mtime, mode, meta: { ...meta, kind: "fifo" } },
    };
  }
  if (st.isSocket) return { kind: "special", path, what: "socket" };
  return { kind: "unreadable", path, why: "a device, which n2s stores only with --allow-ffi" };
}

function lstatWithDeno(root: string, path: string): Found {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(joinRoot(root, path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return { kind: "missing", path };
    }
    throw e;
  }
  return denoDescribe(root, path, st);
}

async function* walkWithDeno(
  root: string,
  start: string,
  opts: WalkOptions,
): AsyncGenerator<SourceEntry> {
  const stack: string[] = [start];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const names: string[] = [];
    try {
      for (const e of Deno.readDirSync(joinRoot(root, dir))) names.push(e.name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      opts.problems?.push({
        path: dir === "" ? "." : dir,
        message: `directory not readable (${why(e)}); nothing under it was stored`,
      });
      continue;
    }
    names.sort(compareNames);
    const subdirs: string[] = [];
    for (const name of names) {
      const path = dir === "" ? name : `${dir}/${name}`;
      if (name.includes(LOSSY) && !isRawName(name)) {
        // Deno gives names that are not UTF-8 with U+FFFD in place of their bytes: such a
        // name cannot be read back, so it is reported, never stored under a wrong name.
        opts.problems?.push({
          path,
          message: "its name may not be UTF-8, which n2s reads only with --allow-ffi; " +
            "it was not stored",
        });
        continue;
      }
      let found: Found;
      try {
        found = denoDescribe(root, path, Deno.lstatSync(joinRoot(root, path)));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        opts.problems?.push({ path, message: `not readable (${why(e)}); it was not stored` });
        continue;
      }
      if (found.kind === "dir") {
        if (opts.skipDir?.(path)) continue;
        subdirs.push(path);
        yield found.entry;
        continue;
      }
      if (opts.skipEntry?.(path)) continue;
      if (found.kind === "entry") yield found.entry;
      else if (found.kind === "special") {
        opts.problems?.push({ path, message: `${found.what} skipped`, note: true });
      } else if (found.kind === "unreadable") {
        opts.problems?.push({ path, message: `${found.why}; it was not stored` });
      }
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
  }
}
