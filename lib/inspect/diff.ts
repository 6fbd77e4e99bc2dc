// The difference between two states: paths added, removed, with other content, or with the
// same content and other metadata.

import type { StateEntry } from "../pull/state.ts";

/** How a path differs between two states. */
export type Change = "added" | "removed" | "modified" | "metadata";

/** One path that differs; `fields` names the metadata that changed (for `metadata`). */
export interface DiffEntry {
  /** Path relative to the source root (bytes that are not UTF-8 as lone surrogates). */
  path: string;
  /** How it differs: added, removed, modified (content or type) or metadata only. */
  change: Change;
  /** The entry's action in the newer state (in the older one for `removed`). */
  action: string;
  /** For `metadata`: which of mode, owner, group, mtime, xattrs, target changed. */
  fields?: string[];
}

/** What kind of object an entry is: a write and a hard link are both regular files. */
function kindOf(e: StateEntry): string {
  if (e.action === "write" || e.action === "hardlink") return "file";
  if (e.action === "special") return `special:${e.kind}:${e.major ?? ""}:${e.minor ?? ""}`;
  return e.action;
}

/** The metadata fields that differ between two entries of the same content. */
function metadataChanges(a: StateEntry, b: StateEntry): string[] {
  const out: string[] = [];
  if (a.mode !== b.mode) out.push("mode");
  if (a.uid !== b.uid || a.user !== b.user) out.push("owner");
  if (a.gid !== b.gid || a.group !== b.group) out.push("group");
  if (a.mtime !== b.mtime || (a.nsec ?? null) !== (b.nsec ?? null)) out.push("mtime");
  if (JSON.stringify(sorted(a.xattrs)) !== JSON.stringify(sorted(b.xattrs))) out.push("xattrs");
  // A symlink's target, or the path a hard link shares its inode with.
  if ((a.target ?? null) !== (b.target ?? null) || a.action !== b.action) out.push("target");
  return out;
}

function sorted(x: Record<string, string> | undefined): [string, string][] {
  return x === undefined ? [] : Object.entries(x).sort(([p], [q]) => p < q ? -1 : p > q ? 1 : 0);
}

/** The paths that differ from state `from` to state `to`, in path order. */
export function diffStates(from: StateEntry[], to: StateEntry[]): DiffEntry[] {
  const before = new Map(from.map((e) => [e.path, e]));
  const out: DiffEntry[] = [];
  for (const b of to) {
    const a = before.get(b.path);
    before.delete(b.path);
    if (a === undefined) {
      out.push({ path: b.path, change: "added", action: b.action });
      continue;
    }
    if (kindOf(a) !== kindOf(b) || (kindOf(b) === "file" && a.file_hash !== b.file_hash)) {
      out.push({ path: b.path, change: "modified", action: b.action });
      continue;
    }
    const fields = metadataChanges(a, b);
    if (fields.length > 0) out.push({ path: b.path, change: "metadata", action: b.action, fields });
  }
  for (const a of before.values()) out.push({ path: a.path, change: "removed", action: a.action });
  return out.sort((x, y) => x.path < y.path ? -1 : x.path > y.path ? 1 : 0);
}
