// Reading a directory tree as client entries: lstat one path, or walk a subtree in a stable
// order. Symlinks become links; sockets, FIFOs and devices are reported, never read.

import type { SourceEntry } from "./client.ts";

/** What one path of a tree is. */
export type Found =
  | { kind: "entry"; entry: SourceEntry }
  | { kind: "dir"; path: string }
  | { kind: "special"; path: string; what: string }
  | { kind: "missing"; path: string };

/** A problem found while reading a tree (reported to the user, not fatal). */
export interface Problem {
  path: string;
  message: string;
  /** Informational only (e.g. a socket skipped): reported, but the push still succeeds. */
  note?: boolean;
}

/** Joins a root directory and a relative path ("" is the root itself). */
export function joinRoot(root: string, path: string): string {
  if (path === "") return root;
  return root.endsWith("/") ? root + path : `${root}/${path}`;
}

function specialKind(st: Deno.FileInfo): string {
  if (st.isSocket) return "socket";
  if (st.isFifo) return "FIFO";
  if (st.isBlockDevice) return "block device";
  if (st.isCharDevice) return "character device";
  return "special file";
}

/** Turns an lstat result into what the path is. */
export async function describe(root: string, path: string, st: Deno.FileInfo): Promise<Found> {
  const mtime = st.mtime?.getTime() ?? 0;
  const mode = (st.mode ?? 0) & 0o7777;
  if (st.isSymlink) {
    const target = await Deno.readLink(joinRoot(root, path));
    return { kind: "entry", entry: { path, action: "link", target, mtime, mode } };
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
      },
    };
  }
  if (st.isDirectory) return { kind: "dir", path };
  return { kind: "special", path, what: specialKind(st) };
}

/** Looks at one path without following a final symlink. */
export async function lstatPath(root: string, path: string): Promise<Found> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(joinRoot(root, path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return { kind: "missing", path };
    }
    throw e;
  }
  return await describe(root, path, st);
}

/** Options for walking a tree. */
export interface WalkOptions {
  /** Return true to leave a directory out (it is not read). */
  skipDir?: (path: string) => boolean;
  /** Return true to leave a file or link out. */
  skipEntry?: (path: string) => boolean;
  /** Sockets, FIFOs, devices and unreadable directories are noted here. */
  problems?: Problem[];
}

/**
 * Walks the subtree at `start` (a relative path, "" for the whole root) depth-first in byte
 * order of names, yielding files and links. Directories are not entries of their own.
 */
export async function* walkTree(
  root: string,
  start: string,
  opts: WalkOptions = {},
): AsyncGenerator<SourceEntry> {
  const stack: string[] = [start];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const names: string[] = [];
    try {
      // Synchronous calls: an asynchronous one per entry holds the main thread about as long
      // and adds a round trip through the thread pool for each of them.
      for (const e of Deno.readDirSync(joinRoot(root, dir))) names.push(e.name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      if (e instanceof Deno.errors.PermissionDenied) {
        opts.problems?.push({ path: dir, message: "directory not readable, skipped" });
        continue;
      }
      throw e;
    }
    names.sort(compareNames);
    const subdirs: string[] = [];
    for (const name of names) {
      const path = dir === "" ? name : `${dir}/${name}`;
      let st: Deno.FileInfo;
      try {
        st = Deno.lstatSync(joinRoot(root, path));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue; // removed while walking
        throw e;
      }
      if (st.isDirectory) {
        if (!opts.skipDir?.(path)) subdirs.push(path);
        continue;
      }
      if (opts.skipEntry?.(path)) continue;
      const found = await describe(root, path, st);
      if (found.kind === "entry") yield found.entry;
      else if (found.kind === "special") {
        opts.problems?.push({ path, message: `${found.what} skipped`, note: true });
      }
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
  }
}

/** Orders names by code unit, so walks are stable across runs. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
