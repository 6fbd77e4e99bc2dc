// A pull: rebuild the state of a source at one changeset (from the index, or from the manifests
// in the repository when there is no index) and restore it under a target directory. Every byte
// is verified before a file appears, and nothing is ever written outside the target.

import { blobKey } from "./backends/backend.ts";
import { concat } from "./format/bytes.ts";
import { badPath } from "./clients/client.ts";
import { pathMatcher } from "./glob.ts";
import type { Index } from "./index/sqlite.ts";
import type { Action } from "./index/types.ts";
import { type ManifestEntry, readManifest } from "./manifest.ts";
import type { Repository } from "./repository.ts";
import { dirname, join, resolve } from "node:path";
import { SealPool } from "./workers/pool.ts";
import type { RestoreItem } from "./workers/restore_jobs.ts";
import { MemoryRelease, releaseMemory } from "./perf/memory.ts";

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
  state.clear();
  index.shrinkMemory();
  // Reading 50,000 rows leaves tens of MiB of garbage and a grown young generation: give it
  // back before the restore starts its Workers.
  releaseMemory();
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
  /** Objects read from the backend at once (default: what the backend says suits it, else 8). */
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

/** Blobs of files up to this size are read whole and verified before the file is created. */
const SMALL_BLOB = 1 << 20;
/** Files restored per batch sent to a Worker: at most this many… */
const BATCH_FILES = 64;
/** …or this many bytes of objects (each batch in flight holds a buffer of about this size). */
const BATCH_BYTES = 2 << 20;
/** Files in flight when neither the caller nor the backend says otherwise. */
const DEFAULT_FLIGHT = 8;
/** Bytes restored between two returns of free memory to the system (a full collection here
 * marks the whole state, tens of MiB for 50,000 files: not too often). */
const RELEASE_BYTES = 64 << 20;

/**
 * Restores `entries` (a state) under the target directory. This thread checks paths, makes
 * directories and reads objects from the backend; Workers verify blobs and write the files
 * (small ones in batches, verified whole before their file is created; large ones streamed a
 * few chunks ahead). Without Workers the same work runs here.
 */
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
  // A file counts 8 KiB more than its size, for its objects here and its message.
  const release = new MemoryRelease(RELEASE_BYTES, 8 << 10);
  releaseMemory();
  const settle = (e: StateEntry, err: unknown) => {
    if (err === null) {
      result.files++;
      result.bytes += e.size ?? 0;
    } else {
      result.problems.push({
        path: e.path,
        message: err instanceof Error ? err.message : String(err),
      });
    }
    progress.filesDone++;
    progress.bytesDone += e.size ?? 0;
    release.add(e.size ?? 0);
    opts.onProgress?.(progress);
  };
  const flight = Math.max(1, opts.concurrency ?? repo.backend.parallelism ?? DEFAULT_FLIGHT);
  // From a local repository the Workers (one per core) read the object files themselves and
  // this thread only makes directories. From any other backend this thread reads the objects
  // and the Workers (one less than the cores) verify and write the files: a Worker per core was
  // measured then, with more CPU in all and more memory for no shorter restore.
  const dir = repo.backend.directory?.("read") ?? null;
  const pool = await SealPool.start({ master: repo.master, lightMain: dir !== null });
  const threads = Math.max(1, pool.workers);
  try {
    const tasks = new Set<Promise<void>>();
    const launch = (p: Promise<void>) => {
      const t: Promise<void> = p.finally(() => tasks.delete(t));
      tasks.add(t);
    };
    const until = async (ok: () => boolean) => {
      while (!ok() && tasks.size > 0) await Promise.race(tasks);
    };
    let batches = 0;
    let streams = 0;
    let batch: { e: StateEntry; item: RestoreItem }[] = [];
    let batchBytes = 0;
    const sendBatch = async () => {
      if (batch.length === 0) return;
      await until(() => batches < 2 * threads);
      const b = batch;
      batch = [];
      batchBytes = 0;
      batches++;
      launch(restoreBatch(repo, pool, b, flight, settle, dir).finally(() => batches--));
    };
    for (const e of files) {
      let item: RestoreItem;
      try {
        item = prepare(target, dirs, e);
      } catch (err) {
        settle(e, err);
        continue;
      }
      if ((e.size ?? 0) <= SMALL_BLOB) {
        batch.push({ e, item });
        batchBytes += e.size ?? 0;
        if (batch.length >= BATCH_FILES || batchBytes >= BATCH_BYTES) await sendBatch();
      } else {
        // One large file per thread (the Workers' and this one): each holds a few chunks and a
        // segment in memory.
        await until(() => streams < Math.min(flight, dir !== null ? threads : threads + 1));
        streams++;
        launch(
          restoreLarge(repo, pool, item, dir).then(
            (why) => settle(e, why === null ? null : new Error(why)),
            (err) => settle(e, err),
          ).finally(() => streams--),
        );
      }
    }
    await sendBatch();
    while (tasks.size > 0) await Promise.race(tasks);
  } finally {
    pool.close();
  }
  // Links last, so that no file is ever written through a restored link.
  for (const e of chosen) {
    if (e.action !== "link") continue;
    try {
      const bad = badPath(e.path);
      if (bad) throw new Error(`refused: ${bad} would escape the target`);
      const full = join(target, e.path);
      dirs.ensure(dirname(full));
      try {
        Deno.removeSync(full);
      } catch {
        // nothing there
      }
      Deno.symlinkSync(e.target ?? "", full);
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

/** Reads a whole small object; one piece (what the local backend gives) is used as is. */
async function readObject(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of stream) parts.push(p);
  return parts.length === 1 ? parts[0] : concat(parts);
}

/** Checks an entry's path, makes its directories and names its temporary file. */
function prepare(target: string, dirs: DirGuard, e: StateEntry): RestoreItem {
  const bad = badPath(e.path);
  if (bad) throw new Error(`refused: ${bad} would escape the target`);
  if (!e.blob_id) throw new Error("the changeset names no blob for this file");
  const full = join(target, e.path);
  dirs.ensure(dirname(full));
  return {
    blobId: e.blob_id,
    path: e.path,
    fileHash: e.file_hash,
    full,
    tmp: join(dirname(full), `.n2s-pull-${crypto.randomUUID().slice(0, 8)}`),
    mode: e.mode,
    mtime: e.mtime,
  };
}

/** Reads the objects of a batch of small files, then has one thread verify and write them. */
async function restoreBatch(
  repo: Repository,
  pool: SealPool,
  batch: { e: StateEntry; item: RestoreItem }[],
  flight: number,
  settle: (e: StateEntry, err: unknown) => void,
  dir: string | null,
): Promise<void> {
  if (dir !== null) {
    // A Worker reads the object files; what it could not open comes through the backend,
    // whose errors (and retries) are the usual ones.
    let answer: { results: (string | null)[]; unread: number[] };
    try {
      answer = await pool.restoreFrom(batch.map((b) => b.item), dir);
    } catch (err) {
      batch.forEach(({ e }) => settle(e, err));
      return;
    }
    const unread = new Set(answer.unread);
    batch.forEach(({ e }, k) => {
      if (!unread.has(k)) {
        settle(e, answer.results[k] === null ? null : new Error(answer.results[k]!));
      }
    });
    const again = batch.filter((_, k) => unread.has(k));
    if (again.length > 0) await restoreBatch(repo, pool, again, flight, settle, null);
    return;
  }
  const objects: (Uint8Array | null)[] = new Array(batch.length).fill(null);
  const errors: unknown[] = new Array(batch.length).fill(null);
  let next = 0;
  const reader = async () => {
    while (next < batch.length) {
      const k = next++;
      try {
        objects[k] = await readObject(await repo.backend.get(blobKey(batch[k].item.blobId)));
      } catch (err) {
        errors[k] = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(flight, batch.length) }, reader));
  const ok = batch.map((_, k) => k).filter((k) => objects[k] !== null);
  try {
    const results = ok.length > 0
      ? await pool.restore(ok.map((k) => batch[k].item), ok.map((k) => objects[k]!))
      : [];
    ok.forEach((k, j) => {
      if (results[j] !== null) errors[k] = new Error(results[j]!);
    });
  } catch (err) {
    for (const k of ok) errors[k] = err;
  }
  batch.forEach(({ e }, k) => settle(e, errors[k]));
}

/** Streams a large file's blob to one thread, which verifies and writes it. */
async function restoreLarge(
  repo: Repository,
  pool: SealPool,
  item: RestoreItem,
  dir: string | null,
): Promise<string | null> {
  if (dir !== null) {
    const { results, unread } = await pool.restoreFrom([item], dir);
    if (unread.length === 0) return results[0];
  }
  const stream = await repo.backend.get(blobKey(item.blobId));
  return await pool.restoreStream(item, stream);
}

/** Creates directories under the target, refusing to pass through anything but real directories. */
class DirGuard {
  #ok = new Set<string>();
  constructor(private readonly target: string) {
    this.#ok.add(target);
  }

  ensure(dir: string): void {
    if (this.#ok.has(dir)) return;
    const rel = dir.slice(this.target.length + 1);
    if (!dir.startsWith(this.target + "/") || rel === "") {
      throw new Error("refused: outside the target");
    }
    this.ensure(dirname(dir));
    try {
      const st = Deno.lstatSync(dir);
      if (st.isSymlink) {
        throw new Error(`refused: ${rel} is a symlink in the target; not writing through it`);
      }
      if (!st.isDirectory) throw new Error(`refused: ${rel} exists and is not a directory`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      try {
        Deno.mkdirSync(dir);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      }
      const st = Deno.lstatSync(dir);
      if (!st.isDirectory) throw new Error(`refused: ${rel} is not a directory`);
    }
    this.#ok.add(dir);
  }
}
