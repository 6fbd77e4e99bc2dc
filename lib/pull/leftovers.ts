// Temporary files that a pull killed midway (kill -9, a power cut) left in its target: the next
// pull into the target removes them. Only regular files named as n2s names them are removed,
// and the walk never follows a symlink, so nothing outside the target is touched.

import { join } from "node:path";
import { PULL_TEMP_NAME } from "../fs/out.ts";
import {
  lstatRaw,
  posixAvailable,
  readDirRaw,
  S_IFDIR,
  S_IFMT,
  S_IFREG,
  unlinkRaw,
} from "../fs/posix.ts";

type Kind = "dir" | "file" | "other";

/** The kind of `path` itself (a symlink is "other"). */
function kindOf(path: string): Kind {
  if (posixAvailable()) {
    const t = lstatRaw(path).mode & S_IFMT;
    return t === S_IFDIR ? "dir" : t === S_IFREG ? "file" : "other";
  }
  const st = Deno.lstatSync(path);
  return st.isSymlink ? "other" : st.isDirectory ? "dir" : st.isFile ? "file" : "other";
}

/** The entries of `dir` with their kinds, from the listing where the file system says. */
function entriesOf(dir: string): { name: string; kind: Kind | null }[] {
  if (posixAvailable()) {
    return readDirRaw(dir).map((e) => ({
      name: e.name,
      kind: e.type === "dir"
        ? "dir"
        : e.type === "file"
        ? "file"
        : e.type === "unknown"
        ? null
        : "other",
    }));
  }
  return Array.from(Deno.readDirSync(dir), (e) => ({
    name: e.name,
    kind: e.isSymlink ? "other" : e.isDirectory ? "dir" : e.isFile ? "file" : "other",
  }));
}

/**
 * Removes the temporary files of interrupted pulls under `target` (a directory) and returns how
 * many it removed (with `remove` false, only counts them). Unreadable directories are passed over.
 */
export function removePullLeftovers(target: string, remove = true): number {
  let removed = 0;
  const stack = [target];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let list: { name: string; kind: Kind | null }[];
    try {
      list = entriesOf(dir);
    } catch {
      continue; // unreadable, or gone meanwhile
    }
    for (const e of list) {
      const path = join(dir, e.name);
      let kind = e.kind;
      try {
        kind ??= kindOf(path);
        if (kind === "dir") stack.push(path);
        else if (kind === "file" && PULL_TEMP_NAME.test(e.name)) {
          if (!remove) removed++;
          else if (posixAvailable()) unlinkRaw(path);
          else Deno.removeSync(path);
          if (remove) removed++;
        }
      } catch {
        // gone meanwhile, or not ours to remove
      }
    }
  }
  return removed;
}
