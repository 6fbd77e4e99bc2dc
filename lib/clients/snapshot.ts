// Shared by the snapshot clients: turning a set of changed paths (from btrfs send or zfs diff)
// into entries by looking at the new snapshot, and the full walk of a first push.

import type { PreviousState, SourceEntry } from "./client.ts";
import { compareNames, lstatPath, type Problem, walkTree } from "./tree.ts";

/** Paths that may have changed between two snapshots. Over-reporting is harmless. */
export interface ChangedPaths {
  /** Paths in the new snapshot that may be new or changed. */
  changed: Set<string>;
  /** Directories in the new snapshot whose every file has a new path (renamed, new). */
  walk: Set<string>;
  /** Paths of the old snapshot that may be gone (removed, renamed away, replaced). */
  gone: Set<string>;
  /** Old paths that may have been directories that went away: their known subtree may be gone. */
  goneDirs: Set<string>;
}

/** An empty set of changed paths. */
export function emptyChanges(): ChangedPaths {
  return { changed: new Set(), walk: new Set(), gone: new Set(), goneDirs: new Set() };
}

function within(set: Set<string>, path: string): boolean {
  if (set.has("")) return true;
  let i = path.lastIndexOf("/");
  while (i > 0) {
    if (set.has(path.slice(0, i))) return true;
    i = path.lastIndexOf("/", i - 1);
  }
  return false;
}

/**
 * Yields the entries for changed paths, reading only the new snapshot at `root`: files and
 * links that exist there, every file under walked directories, and deletions for previously
 * known paths that no longer exist. Work is proportional to the changed paths, except that a
 * directory that went away makes one pass over the known paths.
 */
export async function* resolveChanges(
  root: string,
  changes: ChangedPaths,
  previous: PreviousState,
  problems: Problem[],
): AsyncGenerator<SourceEntry> {
  const yielded = new Set<string>();
  const gone = new Set(changes.gone);
  const walks = [...changes.walk].sort(compareNames);
  for (const dir of walks) {
    if (within(changes.walk, dir) && !changes.walk.has("")) continue; // inside another walk
    if (dir !== "") {
      const found = await lstatPath(root, dir);
      if (found.kind !== "dir") continue;
      yielded.add(dir);
      yield found.entry;
    }
    for await (const e of walkTree(root, dir, { problems })) {
      yielded.add(e.path);
      yield e;
    }
    if (dir === "") break;
  }
  for (const path of [...changes.changed].sort(compareNames)) {
    if (path === "" || yielded.has(path) || within(changes.walk, path)) continue;
    const found = await lstatPath(root, path);
    if (found.kind === "entry" || found.kind === "dir") {
      yielded.add(path);
      yield found.entry;
    } else if (found.kind === "special") {
      problems.push({ path, message: `${found.what} skipped`, note: true });
    } else if (found.kind === "unreadable") {
      problems.push({ path, message: `${found.why}; it was not stored` });
    } else gone.add(path);
  }
  const dirs = [...changes.goneDirs].filter((d) => {
    const p = previous.get(d);
    return !p || p.action === "delete" || p.action === "dir";
  });
  if (dirs.length > 0) {
    const set = new Set(dirs);
    for (const p of previous.paths()) if (within(set, p)) gone.add(p);
  }
  for (const path of [...gone].sort(compareNames)) {
    if (path === "" || yielded.has(path)) continue;
    const found = await lstatPath(root, path);
    if (found.kind === "entry" || found.kind === "dir") {
      yielded.add(path);
      yield found.entry;
      continue;
    }
    const p = previous.get(path);
    if (p && p.action !== "delete") {
      yielded.add(path);
      yield { path, action: "delete" };
    }
  }
}

/**
 * Walks a whole snapshot (a first push, or a parent that no longer exists) and yields a
 * deletion for every previously known path that is not there.
 */
export async function* walkSnapshot(
  root: string,
  previous: PreviousState,
  problems: Problem[],
): AsyncGenerator<SourceEntry> {
  const seen = new Set<string>();
  for await (const e of walkTree(root, "", { problems })) {
    seen.add(e.path);
    yield e;
  }
  for (const p of previous.paths()) {
    if (seen.has(p)) continue;
    const st = previous.get(p);
    if (st && st.action !== "delete") yield { path: p, action: "delete" };
  }
}
