// A pull: rebuild the state of a source at one changeset (from the index, or from the manifests
// in the repository when there is no index) and restore it under a target directory. Every byte
// is verified before a file appears, and nothing is ever written outside the target.

import { blobKey } from "./backends/backend.ts";
import { openBlob } from "./format/blob.ts";
import { badPath } from "./clients/client.ts";
import { pathMatcher } from "./glob.ts";
import type { Index } from "./index/sqlite.ts";
import type { Action } from "./index/types.ts";
import { type ManifestEntry, readManifest } from "./manifest.ts";
import type { Repository } from "./repository.ts";
import { dirname, join, resolve } from "node:path";

/** One path of a restored state. */
export interface StateEntry {
  path: string;
  action: Exclude<Action, "delete">;
  file_hash?: string;
  blob_id?: string;
  size?: number;
  mtime?: number;
  mode?: number;
  target?: string;
}

/** The state of a source at a changeset, from the index. */
export function stateFromIndex(index: Index, changesetId: string): StateEntry[] {
  const cs = index.getChangeset(changesetId);
  if (!cs) throw new Error(`no changeset ${changesetId} in the index`);
  if (cs.status !== "complete") {
    throw new Error(`changeset ${cs.id} is ${cs.status}, not complete; push again to resume it`);
  }
  const state = index.stateAt(index.chain(cs.source, cs.id));
  const out: StateEntry[] = [];
  for (const [path, s] of state) {
    out.push({
      path,
      action: s.action as "write" | "link",
      file_hash: s.file_hash ?? undefined,
      blob_id: s.blob_id ?? undefined,
      size: s.size ?? undefined,
      mtime: s.mtime ?? undefined,
      mode: s.mode ?? undefined,
      target: s.target ?? undefined,
    });
  }
  return out;
}

/**
 * The state of a source at a changeset, from the repository's manifests alone: the manifest and
 * its parents are read and verified (each chain digest must match its parent's), then replayed.
 */
export async function stateFromManifests(
  repo: Repository,
  changesetId: string,
): Promise<StateEntry[]> {
  const chain: { entries: ManifestEntry[] }[] = [];
  let id: string | null = changesetId;
  let childParentChain: string | null | undefined = undefined;
  while (id) {
    const m = await readManifest(repo, id);
    if (childParentChain !== undefined && m.header.chain !== childParentChain) {
      throw new Error(`changeset ${id}: its chain digest does not match what its child recorded`);
    }
    childParentChain = m.header.parent_chain;
    chain.push(m);
    id = m.header.parent;
  }
  if (childParentChain !== null && childParentChain !== undefined) {
    throw new Error(`changeset chain of ${changesetId} is missing its first changeset`);
  }
  const state = new Map<string, StateEntry>();
  for (const m of chain.reverse()) {
    for (const e of m.entries) {
      if (e.action === "delete") state.delete(e.path);
      else state.set(e.path, { ...e, action: e.action });
    }
  }
  return [...state.values()];
}

/** Options of a pull. */
export interface PullOptions {
  /** Directory to restore into (created when absent). */
  target: string;
  /** Paths or globs to restore; everything when empty. */
  patterns?: string[];
  /** Files restored at once (default 4). */
  concurrency?: number;
  onProgress?: (
    p: { filesDone: number; filesTotal: number; bytesDone: number; bytesTotal: number },
  ) => void;
}

/** What a pull did. */
export interface PullResult {
  files: number;
  bytes: number;
  links: number;
  problems: { path: string; message: string }[];
}

/** Restores `entries` (a state) under the target directory. */
export async function restoreState(
  repo: Repository,
  entries: StateEntry[],
  opts: PullOptions,
): Promise<PullResult> {
  const target = resolve(opts.target);
  await Deno.mkdir(target, { recursive: true });
  const match = pathMatcher(opts.patterns ?? []);
  const chosen = entries.filter((e) => match(e.path)).sort((a, b) => a.path < b.path ? -1 : 1);
  const result: PullResult = { files: 0, bytes: 0, links: 0, problems: [] };
  const dirs = new DirGuard(target);
  const files = chosen.filter((e) => e.action === "write");
  const progress = {
    filesDone: 0,
    filesTotal: files.length,
    bytesDone: 0,
    bytesTotal: files.reduce((a, e) => a + (e.size ?? 0), 0),
  };
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const e = files[next++];
      try {
        await restoreFile(repo, target, dirs, e);
        result.files++;
        result.bytes += e.size ?? 0;
      } catch (err) {
        result.problems.push({
          path: e.path,
          message: err instanceof Error ? err.message : String(err),
        });
      }
      progress.filesDone++;
      progress.bytesDone += e.size ?? 0;
      opts.onProgress?.(progress);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  // Links last, so that no file is ever written through a restored link.
  for (const e of chosen) {
    if (e.action !== "link") continue;
    try {
      const bad = badPath(e.path);
      if (bad) throw new Error(`refused: ${bad} would escape the target`);
      const full = join(target, e.path);
      await dirs.ensure(dirname(full));
      await Deno.remove(full).catch(() => {});
      await Deno.symlink(e.target ?? "", full);
      result.links++;
    } catch (err) {
      result.problems.push({
        path: e.path,
        message: err instanceof Error ? err.message : String(err),
      });
    }
  }
  return result;
}

/** Creates directories under the target, refusing to pass through anything but real directories. */
class DirGuard {
  #ok = new Set<string>();
  constructor(private readonly target: string) {
    this.#ok.add(target);
  }

  async ensure(dir: string): Promise<void> {
    if (this.#ok.has(dir)) return;
    const rel = dir.slice(this.target.length + 1);
    if (!dir.startsWith(this.target + "/") || rel === "") {
      throw new Error("refused: outside the target");
    }
    await this.ensure(dirname(dir));
    try {
      const st = await Deno.lstat(dir);
      if (st.isSymlink) {
        throw new Error(`refused: ${rel} is a symlink in the target; not writing through it`);
      }
      if (!st.isDirectory) throw new Error(`refused: ${rel} exists and is not a directory`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      await Deno.mkdir(dir).catch((err) => {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      });
      const st = await Deno.lstat(dir);
      if (!st.isDirectory) throw new Error(`refused: ${rel} is not a directory`);
    }
    this.#ok.add(dir);
  }
}

async function restoreFile(
  repo: Repository,
  target: string,
  dirs: DirGuard,
  e: StateEntry,
): Promise<void> {
  const bad = badPath(e.path);
  if (bad) throw new Error(`refused: ${bad} would escape the target`);
  if (!e.blob_id) throw new Error("the changeset names no blob for this file");
  const full = join(target, e.path);
  await dirs.ensure(dirname(full));
  const tmp = join(dirname(full), `.n2s-pull-${crypto.randomUUID().slice(0, 8)}`);
  // Creating the file is the costly step on many file systems and runs off the main thread;
  // the writes (page cache) and the metadata calls are cheap and run synchronously.
  const out = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  let ok = false;
  try {
    const stream = await repo.backend.get(blobKey(e.blob_id));
    for await (const part of openBlob(repo.suite, repo.master, e.blob_id, stream)) {
      if ("header" in part) {
        if (part.header.path !== e.path || part.header.file_hash !== e.file_hash) {
          throw new Error(`blob ${e.blob_id} belongs to ${part.header.path}, not to this path`);
        }
      } else {
        let o = 0;
        while (o < part.data.length) o += out.writeSync(part.data.subarray(o));
      }
    }
    ok = true;
  } finally {
    out.close();
    if (!ok) await Deno.remove(tmp).catch(() => {});
  }
  if (e.mode !== undefined) Deno.chmodSync(tmp, e.mode & 0o7777);
  if (e.mtime !== undefined) {
    const t = new Date(e.mtime);
    Deno.utimeSync(tmp, t, t);
  }
  Deno.renameSync(tmp, full);
}
