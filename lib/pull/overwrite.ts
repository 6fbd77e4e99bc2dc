// What a pull does with what is already in its target: a file at an entry's path is replaced
// (`always`), replaced only when it differs from the entry (`if-changed`), or kept (`never`).

import { isNotFound, openIn } from "../fs/in.ts";
import {
  lstatRaw,
  posixAvailable,
  readlinkRaw,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from "../fs/posix.ts";
import type { Suite } from "../format/suite.ts";
import { toHex } from "../format/bytes.ts";
import type { StateEntry } from "./state.ts";

/** The pull's rule for files already in the target. */
export type Overwrite = "always" | "if-changed" | "never";

/** Every rule, for the command line. */
export const OVERWRITE_RULES: readonly Overwrite[] = ["always", "if-changed", "never"];

/** What is at an entry's path in the target: nothing, the very same, or something else. */
export type Existing = "absent" | "same" | "different";

/** The type bits and status of what is at `full`, not following a symlink; null when absent. */
function typeAt(full: string): { type: number; size: number; mode: number; mtime: number } | null {
  try {
    if (posixAvailable()) {
      const st = lstatRaw(full);
      return {
        type: st.mode & S_IFMT,
        size: st.size,
        mode: st.mode & 0o7777,
        mtime: Number(st.mtimeNs / 1_000_000n),
      };
    }
    const st = Deno.lstatSync(full);
    const type = st.isSymlink ? S_IFLNK : st.isDirectory ? S_IFDIR : st.isFile ? S_IFREG : S_IFIFO;
    return { type, size: st.size, mode: (st.mode ?? 0) & 0o7777, mtime: st.mtime!.getTime() };
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

/** True when something (of any type) is at `full`. */
export function existsAt(full: string): boolean {
  return typeAt(full) !== null;
}

/**
 * Whether the directories above `path` in the target are real directories ("ok"), one of them
 * is missing ("absent"), or one is something else, such as a symlink ("blocked": the restore
 * refuses to write there, and nothing behind it is compared). `seen` caches the answers.
 */
export function parentsOf(
  target: string,
  path: string,
  seen: Map<string, "ok" | "absent" | "blocked">,
): "ok" | "absent" | "blocked" {
  const parts = path.split("/").slice(0, -1);
  let rel = "";
  for (const part of parts) {
    rel = rel === "" ? part : `${rel}/${part}`;
    let answer = seen.get(rel);
    if (answer === undefined) {
      const st = typeAt(`${target}/${rel}`);
      answer = st === null ? "absent" : st.type === S_IFDIR ? "ok" : "blocked";
      seen.set(rel, answer);
    }
    if (answer !== "ok") return answer;
  }
  return "ok";
}

/** BLAKE3 of a file's content, hex. */
function hashOf(full: string, suite: Suite): string {
  const f = openIn(full);
  try {
    const h = suite.newHasher();
    const buf = new Uint8Array(1 << 20);
    for (let n = f.read(buf); n > 0; n = f.read(buf)) h.update(buf.subarray(0, n));
    return toHex(h.digest());
  } finally {
    f.close();
  }
}

/**
 * Compares what is at `full` with entry `e` (not a directory). A regular file is the same when
 * its size, mode, mtime (to the millisecond) and content equal the entry's; a symlink when its
 * target does; a FIFO or device when its type and mode do.
 */
export function compareExisting(full: string, e: StateEntry, suite: Suite): Existing {
  const st = typeAt(full);
  if (st === null) return "absent";
  if (e.action === "write" || e.action === "hardlink") {
    if (st.type !== S_IFREG || st.size !== e.size || st.mode !== e.mode) return "different";
    if (st.mtime !== e.mtime) return "different";
    return hashOf(full, suite) === e.file_hash ? "same" : "different";
  }
  if (e.action === "link") {
    if (st.type !== S_IFLNK) return "different";
    const target = posixAvailable() ? readlinkRaw(full) : Deno.readLinkSync(full);
    return target === e.target ? "same" : "different";
  }
  if (e.action === "special") {
    const type = e.kind === "fifo" ? S_IFIFO : e.kind === "char" ? S_IFCHR : S_IFBLK;
    return st.type === type && st.mode === e.mode ? "same" : "different";
  }
  return st.type === S_IFDIR ? "same" : "different";
}
