// The client interface: a client discovers what changed in a source and says how to read it.
// A push takes any client; scan, btrfs, zfs and dsg are the built-in ones.

import type { ChunkReader } from "../format/blob.ts";
import type { Action, ChangesetRow, EntryMeta, PathState } from "../index/types.ts";
import * as arg from "../args.ts";

/**
 * One thing a client found: a file to store, a symlink, a directory, a FIFO or device, or a
 * deletion. (Hard links are found by the push from `nlink` and the inode.)
 */
export interface SourceEntry {
  /**
   * POSIX path relative to the source root: no leading "/", no "." or ".." components; bytes
   * that are not UTF-8 as lone surrogates (lib/format/names.ts).
   */
  path: string;
  /**
   * What the entry is: a file's content (`write`), a symlink, a directory, a FIFO or device, or a
   * deletion.
   */
  action: Exclude<Action, "hardlink">;
  /** For writes: size in bytes, as the client saw it. */
  size?: number;
  /** For writes and links: modification time, milliseconds since the epoch. */
  mtime?: number;
  /** For writes: POSIX permission bits. */
  mode?: number;
  /** For writes: inode number, when the file system has one (used to skip unchanged files). */
  inode?: number;
  /** For links: the symlink's target, as stored in the link. */
  target?: string;
  /** For files: the number of hard links (more than 1: the push stores the content once). */
  nlink?: number;
  /** Owner, nanoseconds, extended attributes, device numbers, holes (see EntryMeta). */
  meta?: EntryMeta;
}

/**
 * An entry a client found but could not use (`Client.problems`), reported to the user with its
 * path (relative to the source root) and the reason.
 */
export interface ClientProblem {
  /** The entry's path relative to the source root. */
  path: string;
  /** Why it was left out, for people. */
  message: string;
  /** Left out on purpose (a socket): reported, but the push still succeeds. */
  note?: boolean;
}

/** An open file to read content from. */
export interface ContentFile extends ChunkReader {
  /** Current size and modification time, to detect a file that changes while it is read. */
  stat(): Promise<{ size: number; mtime: number; mode: number; inode?: number }>;
  /** Closes the file. */
  close(): void;
}

/** What a client is told about the source before it runs. */
export interface PreviousState {
  /** The source's newest complete changeset, if any. */
  changeset?: ChangesetRow;
  /** The `info` that client recorded with that changeset (parsed JSON), if any. */
  info?: unknown;
  /** The last known state of a path. */
  get(path: string): PathState | undefined;
  /** Every path of the last known state. */
  paths(): Iterable<string>;
}

/** A source of changes. Implement this to push from your own discovery code. */
export interface Client {
  /** Client kind recorded with the changeset ("scan", "btrfs", "zfs", "dsg", or your own). */
  readonly kind: string;
  /** Directory that content is read from; recorded so that an interrupted push can resume. */
  readonly root: string;
  /**
   * Path prefixes within which `entries` yields every existing path, so that any previously
   * known path under them that is not yielded counts as deleted. `[""]` means the whole
   * source; `[]` means the client reports deletions itself (or not at all).
   */
  readonly completeWithin: readonly string[];
  /** Keep a changeset even when nothing changed (snapshot clients: one changeset per snapshot). */
  readonly keepEmpty?: boolean;
  /** A name for the changeset when the user gives none. */
  readonly changesetName?: string;
  /** Yields entries. Unchanged files may be yielded; the push skips them without reading. */
  entries(previous: PreviousState): AsyncIterable<SourceEntry>;
  /** Opens a file's content; the default reads `root/path`. */
  open?(path: string): Promise<ContentFile>;
  /** JSON-serialisable facts to record with the changeset (e.g. the snapshot name). */
  info?(): unknown;
  /**
   * Entries the client found but could not use, reported to the user (path and reason). A
   * problem marked `note` (a socket or FIFO skipped on purpose) does not fail the push; any
   * other means data was left out, and the push exits with an error after storing the rest.
   */
  readonly problems?: ClientProblem[];
  /** Releases anything the client holds (e.g. a temporary clone). Always called. */
  close?(): Promise<void>;
}

/**
 * Opens `root/path` as a ContentFile without following a final symlink.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openLocalFile } from "@n2s/n2s";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.txt`, "hello\n");
 * // A custom Client's open(path) can read its files this way.
 * const f = await openLocalFile(dir, "a.txt");
 * try {
 *   assert.equal((await f.stat()).size, 6);
 *   const buf = new Uint8Array(16);
 *   assert.equal(await f.read(buf), 6);
 * } finally {
 *   f.close();
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openLocalFile(root: string, path: string): Promise<ContentFile> {
  arg.string("openLocalFile", "root", root);
  arg.string("openLocalFile", "path", path);
  const full = root.endsWith("/") ? root + path : `${root}/${path}`;
  const f = await Deno.open(full, { read: true });
  return {
    read: (buf) => f.read(buf),
    async stat() {
      const st = await f.stat();
      return {
        size: st.size,
        mtime: st.mtime?.getTime() ?? 0,
        mode: (st.mode ?? 0o644) & 0o7777,
        inode: st.ino ?? undefined,
      };
    },
    close: () => f.close(),
  };
}

/** Checks that a path is a clean relative POSIX path; returns an error message or null. */
export function badPath(path: string): string | null {
  if (path === "") return "empty path";
  if (path.includes("\0")) return "path contains a NUL byte";
  if (path.startsWith("/")) return "absolute path";
  for (const c of path.split("/")) {
    if (c === "") return "empty path component";
    if (c === "." || c === "..") return `"${c}" path component`;
  }
  return null;
}
