// A restore: the files of a state written under a target directory, every byte verified before
// a file appears, nothing ever written outside the target. Blobs in packs are read in ranges
// (neighbours in one read), loose ones object by object; Workers verify and write the files.

import { dirname, join, resolve } from "node:path";
import { badPath } from "../clients/client.ts";
import { pathMatcher } from "../glob.ts";
import { MemoryRelease, releaseMemory } from "../perf/memory.ts";
import type { Repository } from "../repository/repository.ts";
import { TaskGroup } from "../scheduler.ts";
import { SealPool } from "../workers/pool.ts";
import type { RestoreItem } from "../workers/restore_jobs.ts";
import { DirGuard, finishImplicitDirs } from "./dirs.ts";
import { removePullLeftovers } from "./leftovers.ts";
import { isRawName } from "../format/names.ts";
import { applyMeta, type FileMeta } from "../fs/meta.ts";
import {
  geteuid,
  linkRaw,
  makedev,
  mkfifoRaw,
  mknodRaw,
  posixAvailable,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  symlinkRaw,
  unlinkRaw,
} from "../fs/posix.ts";
import type { StateEntry } from "./state.ts";
import { compareExisting, existsAt, type Overwrite, parentsOf } from "./overwrite.ts";

/** Options of a pull. */
export interface PullOptions {
  /** Directory to restore into (created when absent). */
  target: string;
  /** Paths or globs to restore; everything when empty. */
  patterns?: string[];
  /** Objects read from the backend at once (default: what the backend says suits it, else 8). */
  concurrency?: number;
  /** Called as files are restored. */
  onProgress?: (p: PullProgress) => void;
  /** Restore owner and group (default: when running as root, as tar and restic do). */
  owner?: boolean;
  /**
   * A file already at an entry's path: replaced when it differs from the entry (`if-changed`,
   * the default), always replaced, or never (kept as it is). Directories are always merged.
   */
  overwrite?: Overwrite;
  /** Decides what would be written, replaced, kept and removed, and writes nothing. */
  dryRun?: boolean;
}

/** Progress of a pull, reported as it goes. */
export interface PullProgress {
  /** Files restored so far, of `filesTotal` to restore. */
  filesDone: number;
  /** Files the pull restores. */
  filesTotal: number;
  /** Bytes of content restored so far, of `bytesTotal`. */
  bytesDone: number;
  /** Bytes of content the pull restores. */
  bytesTotal: number;
}

/** What a pull did. */
export interface PullResult {
  /** Regular files restored (hard links included). */
  files: number;
  /** Their content, in bytes. */
  bytes: number;
  /** Symlinks restored. */
  links: number;
  /** Directories restored. */
  dirs?: number;
  /** FIFOs and devices restored. */
  specials?: number;
  /** Temporary files that an interrupted pull left in the target, removed first. */
  leftovers?: number;
  /** Paths already in the target that were replaced because they differed (or `always`). */
  replaced: string[];
  /** Paths already in the target that were kept as they are (`never`). */
  kept: string[];
  /** Paths already in the target that equal the entry, left alone. */
  unchanged: string[];
  /** A dry run: the paths that would be created (the rest of the counts say what would be). */
  created?: string[];
  /**
   * Entries that could not be restored, and holes in the chain: when not empty, the command exits
   * 1.
   */
  problems: { path: string; message: string }[];
}

/** Sorts the entries to restore by what is at their path in the target, as `rule` says. */
function decide(
  chosen: StateEntry[],
  target: string,
  rule: Overwrite,
  repo: Repository,
  result: PullResult,
): StateEntry[] {
  const left: StateEntry[] = [];
  const parents = new Map<string, "ok" | "absent" | "blocked">();
  for (const e of chosen) {
    if (e.action === "dir" || badPath(e.path)) {
      left.push(e);
      continue;
    }
    let found;
    try {
      const full = join(target, e.path);
      const above = parentsOf(target, e.path, parents);
      if (above === "blocked") {
        // Behind a symlink or a file: the restore refuses it and says why.
        left.push(e);
        continue;
      }
      found = above === "absent"
        ? "absent"
        : rule !== "always"
        ? compareExisting(full, e, repo.suite)
        : existsAt(full)
        ? "different"
        : "absent";
    } catch (err) {
      result.problems.push({ path: e.path, message: messageOf(err) });
      continue;
    }
    if (found === "absent") {
      result.created?.push(e.path);
      left.push(e);
    } else if (found === "same" && rule !== "always") result.unchanged.push(e.path);
    else if (rule === "never") result.kept.push(e.path);
    else {
      result.replaced.push(e.path);
      left.push(e);
    }
  }
  return left;
}

/** Loose blobs of files up to this size are read whole and verified before the file is made. */
const SMALL_BLOB = 1 << 20;
/** One read of a pack covers neighbouring blobs up to this many bytes… */
const READ_MAX = 4 << 20;
/** …skipping at most this many unwanted bytes between two of them. */
const READ_GAP = 256 << 10;
/** Loose small files restored per batch: at most this many… */
const BATCH_FILES = 64;
/** …or this many bytes of objects. */
const BATCH_BYTES = 2 << 20;
/** Reads in flight when neither the caller nor the backend says otherwise. */
const DEFAULT_FLIGHT = 8;
/** Bytes restored between two returns of free memory to the system (a full collection here
 * marks the whole state, tens of MiB for 50,000 files: not too often). */
const RELEASE_BYTES = 256 << 20;

interface Job {
  e: StateEntry;
  item: RestoreItem;
}

/** Makes the items of some entries (settling those that cannot be restored). */
type Prep = (entries: StateEntry[]) => Job[];

/** One read of a pack: blobs that lie close together, read as one range. */
interface PackRead {
  pack: string;
  start: number;
  end: number;
  entries: StateEntry[];
}

/** Groups packed blobs into reads: by pack, by offset, neighbours together. */
function packReads(entries: StateEntry[]): PackRead[] {
  const byPack = new Map<string, StateEntry[]>();
  for (const e of entries) {
    const list = byPack.get(e.pack!);
    if (list) list.push(e);
    else byPack.set(e.pack!, [e]);
  }
  const reads: PackRead[] = [];
  for (const [pack, list] of byPack) {
    list.sort((a, b) => a.offset! - b.offset!);
    let cur: PackRead | null = null;
    for (const e of list) {
      const start = e.offset!;
      const end = start + e.length!;
      if (cur && start - cur.end <= READ_GAP && end - cur.start <= READ_MAX && start >= cur.end) {
        cur.end = end;
        cur.entries.push(e);
      } else {
        cur = { pack, start, end, entries: [e] };
        reads.push(cur);
      }
    }
  }
  return reads;
}

/**
 * Restores `entries` (a state) under the target directory. This thread checks paths, makes
 * directories and reads from the repository; Workers verify blobs and write the files (small
 * ones verified whole before their file is created; large ones streamed a few chunks ahead).
 */
export async function restoreState(
  repo: Repository,
  entries: StateEntry[],
  opts: PullOptions,
): Promise<PullResult> {
  const target = resolve(opts.target);
  const match = pathMatcher(opts.patterns ?? []);
  const result: PullResult = {
    files: 0,
    bytes: 0,
    links: 0,
    replaced: [],
    kept: [],
    unchanged: [],
    problems: [],
  };
  if (opts.dryRun) result.created = [];
  const chosen = decide(
    entries.filter((e) => match(e.path)).sort((a, b) => a.path < b.path ? -1 : 1),
    target,
    opts.overwrite ?? "if-changed",
    repo,
    result,
  );
  if (opts.dryRun) {
    let leftovers = 0;
    try {
      leftovers = removePullLeftovers(target, false);
    } catch {
      // no target yet
    }
    if (leftovers > 0) result.leftovers = leftovers;
    return result;
  }
  await Deno.mkdir(target, { recursive: true });
  const leftovers = removePullLeftovers(target);
  if (leftovers > 0) result.leftovers = leftovers;
  const dirs = new DirGuard(target);
  const files = chosen.filter((e) => e.action === "write" || e.action === "hardlink");
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
      restored.add(e.path);
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
  const flight = Math.max(1, opts.concurrency ?? repo.parallelism ?? DEFAULT_FLIGHT);
  const packed: StateEntry[] = [];
  const looseSmall: StateEntry[] = [];
  const looseLarge: StateEntry[] = [];
  // Directories first, empty ones included: made private now, given their metadata last.
  for (const e of chosen) {
    if (e.action !== "dir") continue;
    try {
      const bad = badPath(e.path);
      if (bad) throw new Error(`refused: ${bad} would escape the target`);
      dirs.ensure(join(target, e.path));
    } catch (err) {
      result.problems.push({ path: e.path, message: messageOf(err) });
    }
  }
  // A hard link whose file is restored too becomes a link to it, after the files; the others
  // are restored as files of their own, from the same blob.
  // A file equal to its entry stays as it is, and hard links may link to it.
  const restored = new Set<string>(result.unchanged);
  const linkLater: StateEntry[] = [];
  const chosenPaths = new Set(files.filter((e) => e.action === "write").map((e) => e.path));
  for (const p of result.unchanged) chosenPaths.add(p);
  for (const e of files) {
    if (e.action === "hardlink" && chosenPaths.has(e.target!)) {
      linkLater.push(e);
      continue;
    }
    if (e.pack !== undefined) packed.push(e);
    else if ((e.size ?? 0) <= SMALL_BLOB) looseSmall.push(e);
    else looseLarge.push(e);
  }
  // Items are made a batch at a time, just before the batch goes out: made for every file up
  // front, they took about 2 KiB each (50,000 files: 100 MiB).
  const prep: Prep = (list) => {
    const jobs: Job[] = [];
    for (const e of list) {
      try {
        jobs.push({ e, item: prepare(repo, target, dirs, e, opts.owner) });
      } catch (err) {
        settle(e, err);
      }
    }
    return jobs;
  };
  // From a local repository this thread's reads are cheap (and Workers read large objects
  // themselves): one Worker per core. Otherwise this thread moves every byte from the backend
  // and the Workers (one less than the cores) verify and write.
  const direct = repo.objectFiles("read") !== null;
  const pool = await SealPool.start({ master: repo.master, lightMain: direct });
  const threads = Math.max(1, pool.workers);
  try {
    const group = new TaskGroup();
    const batches = group.lane(Math.min(flight, 2 * threads));
    const streams = group.lane(Math.min(flight, direct ? threads : threads + 1));
    for (const r of packReads(packed)) {
      await batches.spawn(() => restorePackRead(repo, pool, r, prep, settle));
    }
    for (let k = 0; k < looseSmall.length;) {
      const batch: StateEntry[] = [];
      let bytes = 0;
      while (k < looseSmall.length && batch.length < BATCH_FILES && bytes < BATCH_BYTES) {
        bytes += looseSmall[k].size ?? 0;
        batch.push(looseSmall[k++]);
      }
      await batches.spawn(() => restoreLooseBatch(repo, pool, prep(batch), flight, settle));
    }
    for (const e of looseLarge) {
      const [j] = prep([e]);
      if (j === undefined) continue;
      await streams.spawn(() =>
        restoreLarge(repo, pool, j.item).then(
          (why) => settle(j.e, why === null ? null : new Error(why)),
          (err) => settle(j.e, err),
        )
      );
    }
    await group.wait();
  } finally {
    pool.close();
  }
  for (const e of linkLater) {
    try {
      if (!restored.has(e.target!)) throw new Error(`its file ${e.target} was not restored`);
      linkFile(join(target, e.target!), join(target, e.path));
      result.files++;
      result.bytes += e.size ?? 0;
    } catch (err) {
      result.problems.push({ path: e.path, message: messageOf(err) });
    }
  }
  // FIFOs and devices, then links: no file is ever written through a restored link.
  for (const e of chosen) {
    if (e.action !== "special" && e.action !== "link") continue;
    try {
      const bad = badPath(e.path);
      if (bad) throw new Error(`refused: ${bad} would escape the target`);
      const full = join(target, e.path);
      dirs.ensure(dirname(full));
      if (e.action === "link") {
        makeLink(e.target ?? "", full);
        result.links++;
      } else {
        makeSpecial(e, full);
        result.specials = (result.specials ?? 0) + 1;
      }
      reportMeta(e, full, e.action === "link" ? S_IFLNK : S_IFIFO, opts.owner, result);
    } catch (err) {
      result.problems.push({ path: e.path, message: messageOf(err) });
    }
  }
  // Directories' metadata last, deepest first: their mode may forbid writing into them, and
  // every file made in them changed their mtime.
  const dirEntries = chosen.filter((e) => e.action === "dir").sort((a, b) =>
    a.path < b.path ? 1 : a.path > b.path ? -1 : 0
  );
  const described = new Set<string>();
  for (const e of dirEntries) {
    const full = join(target, e.path);
    described.add(full);
    try {
      reportMeta(e, full, S_IFDIR, opts.owner, result);
      result.dirs = (result.dirs ?? 0) + 1;
    } catch (err) {
      result.problems.push({ path: e.path, message: messageOf(err) });
    }
  }
  try {
    finishImplicitDirs(dirs, described);
  } catch (err) {
    result.problems.push({ path: ".", message: `directory modes: ${messageOf(err)}` });
  }
  return result;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The metadata to give back, from an entry. */
function fileMeta(e: StateEntry): FileMeta | undefined {
  if (e.mode === undefined || e.mtime === undefined) return undefined;
  const m: FileMeta = {
    mode: e.mode,
    mtime: e.mtime,
    nsec: e.nsec ?? (((e.mtime % 1000) + 1000) % 1000) * 1_000_000,
    uid: e.uid ?? -1,
    gid: e.gid ?? -1,
  };
  if (e.user !== undefined) m.user = e.user;
  if (e.group !== undefined) m.group = e.group;
  if (e.xattrs !== undefined) m.xattrs = e.xattrs;
  return m;
}

/** Gives an object its metadata back; what could not be given back is a problem. */
function reportMeta(
  e: StateEntry,
  full: string,
  type: number,
  owner: boolean | undefined,
  result: PullResult,
): void {
  const meta = fileMeta(e);
  if (!meta) return;
  if (!posixAvailable()) {
    if (type === S_IFLNK) return;
    Deno.chmodSync(full, meta.mode & 0o7777);
    const t = new Date(meta.mtime);
    Deno.utimeSync(full, t, t);
    return;
  }
  const problems = applyMeta(full, meta, type, { owner: owner && meta.uid >= 0 });
  if (problems.length > 0) {
    result.problems.push({ path: e.path, message: `restored, but ${problems.join("; ")}` });
  }
}

/** Replaces whatever is at `full` (never a directory) with a symlink to `target`. */
function makeLink(target: string, full: string): void {
  if (posixAvailable()) {
    try {
      unlinkRaw(full);
    } catch {
      // nothing there
    }
    symlinkRaw(target, full);
    return;
  }
  if (isRawName(full) || isRawName(target)) {
    throw new Error("its name or target is not UTF-8, which n2s writes only with --allow-ffi");
  }
  try {
    Deno.removeSync(full);
  } catch {
    // nothing there
  }
  Deno.symlinkSync(target, full);
}

/** Makes `member` a hard link of the restored file `leader`. */
function linkFile(leader: string, member: string): void {
  if (!posixAvailable()) {
    try {
      Deno.removeSync(member);
    } catch {
      // nothing there
    }
    Deno.linkSync(leader, member);
    return;
  }
  try {
    unlinkRaw(member);
  } catch {
    // nothing there
  }
  linkRaw(leader, member);
}

/** Makes a FIFO, or (as root) a device. */
function makeSpecial(e: StateEntry, full: string): void {
  if (!posixAvailable()) throw new Error("special files are restored only with --allow-ffi");
  try {
    unlinkRaw(full);
  } catch {
    // nothing there
  }
  if (e.kind === "fifo") mkfifoRaw(full, 0o600);
  else if (geteuid() !== 0) {
    throw new Error(`a ${e.kind} device (${e.major}:${e.minor}); only root can make one`);
  } else {
    const type = e.kind === "char" ? S_IFCHR : S_IFBLK;
    mknodRaw(full, type | 0o600, makedev(e.major ?? 0, e.minor ?? 0));
  }
}

/** Checks an entry's path, makes its directories, and says how to restore it. */
function prepare(
  repo: Repository,
  target: string,
  dirs: DirGuard,
  e: StateEntry,
  owner: boolean | undefined,
): RestoreItem {
  const bad = badPath(e.path);
  if (bad) throw new Error(`refused: ${bad} would escape the target`);
  if (!e.blob_id) throw new Error("the changeset names no blob for this file");
  const full = join(target, e.path);
  dirs.ensure(dirname(full));
  const item: RestoreItem = {
    blobId: e.blob_id,
    object: e.pack === undefined ? repo.objectFile(e.blob_id) ?? undefined : undefined,
    // A hard link's blob names the path it links to.
    path: e.action === "hardlink" ? e.target! : e.path,
    fileHash: e.file_hash,
    full,
    size: e.size,
    meta: fileMeta(e),
  };
  if (e.holes) item.holes = e.holes;
  if (owner !== undefined) item.owner = owner;
  return item;
}

/** Jobs of one read cut into restore batches (at most BATCH_FILES files or BATCH_BYTES). */
function batchesOf(jobs: Job[]): Job[][] {
  const out: Job[][] = [];
  let cur: Job[] = [];
  let bytes = 0;
  for (const j of jobs) {
    if (cur.length > 0 && (cur.length >= BATCH_FILES || bytes + j.e.length! > BATCH_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(j);
    bytes += j.e.length!;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Reads one range of a pack, then has the threads verify and write its files in batches (a
 * range holds hundreds of small files: batches spread them over every thread). From a local
 * repository each batch's thread reads its own part of the range.
 */
async function restorePackRead(
  repo: Repository,
  pool: SealPool,
  read: PackRead,
  prep: Prep,
  settle: (e: StateEntry, err: unknown) => void,
): Promise<void> {
  let r = { pack: read.pack, start: read.start, end: read.end, jobs: prep(read.entries) };
  if (r.jobs.length === 0) return;
  const file = repo.packFile(r.pack);
  if (file !== null) {
    // A local repository: each batch's thread reads its range of the pack itself.
    const left: Job[] = [];
    await Promise.all(
      batchesOf(r.jobs).map(async (jobs) => {
        const spans: number[] = [];
        for (const j of jobs) spans.push(j.e.offset!, j.e.offset! + j.e.length!);
        let answer: { results: (string | null)[]; unread: number[] };
        try {
          answer = await pool.restoreFromPack(file, jobs.map((j) => j.item), spans);
        } catch (err) {
          for (const j of jobs) settle(j.e, err);
          return;
        }
        const unread = new Set(answer.unread);
        jobs.forEach((j, i) => {
          if (unread.has(i)) left.push(j);
          else settle(j.e, answer.results[i] === null ? null : new Error(answer.results[i]!));
        });
      }),
    );
    if (left.length === 0) return;
    // What a thread could not read comes through the repository, with its usual errors.
    r = {
      ...r,
      jobs: left,
      start: left[0].e.offset!,
      end: Math.max(...left.map((j) => j.e.offset! + j.e.length!)),
    };
  }
  let buf: Uint8Array;
  try {
    buf = await repo.readPackRange(r.pack, { offset: r.start, length: r.end - r.start });
  } catch (err) {
    for (const j of r.jobs) settle(j.e, err);
    return;
  }
  const batches: Promise<void>[] = [];
  for (let k = 0; k < r.jobs.length;) {
    const first = k;
    const from = r.jobs[k].e.offset! - r.start;
    let to = from;
    while (k < r.jobs.length && k - first < BATCH_FILES && to - from < BATCH_BYTES) {
      to = r.jobs[k].e.offset! - r.start + r.jobs[k].e.length!;
      k++;
    }
    const jobs = r.jobs.slice(first, k);
    const spans: number[] = [];
    for (const j of jobs) {
      const o = j.e.offset! - r.start - from;
      spans.push(o, o + j.e.length!);
    }
    // Each batch gets its own copy of its bytes, which moves to the thread that restores it.
    const piece = buf.slice(from, to);
    batches.push(
      pool.restore(jobs.map((j) => j.item), piece, spans).then(
        (results) =>
          jobs.forEach((j, i) => settle(j.e, results[i] === null ? null : new Error(results[i]!))),
        (err) => jobs.forEach((j) => settle(j.e, err)),
      ),
    );
  }
  await Promise.all(batches);
}

/** Reads the objects of a batch of loose small blobs, then has one thread restore them. */
async function restoreLooseBatch(
  repo: Repository,
  pool: SealPool,
  batch: Job[],
  flight: number,
  settle: (e: StateEntry, err: unknown) => void,
): Promise<void> {
  if (batch.every((j) => j.item.object !== undefined)) {
    // A Worker reads the object files; what it could not open comes through the repository,
    // whose errors (and retries) are the usual ones.
    let answer: { results: (string | null)[]; unread: number[] };
    try {
      answer = await pool.restoreFrom(batch.map((j) => j.item));
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
    const again = batch.filter((_, k) => unread.has(k)).map((j) => ({
      e: j.e,
      item: { ...j.item, object: undefined },
    }));
    if (again.length > 0) await restoreLooseBatch(repo, pool, again, flight, settle);
    return;
  }
  const objects: (Uint8Array | null)[] = new Array(batch.length).fill(null);
  const errors: unknown[] = new Array(batch.length).fill(null);
  let next = 0;
  const reader = async () => {
    while (next < batch.length) {
      const k = next++;
      try {
        objects[k] = await readObject(await repo.readBlob(batch[k].item.blobId, { pack: null }));
      } catch (err) {
        errors[k] = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(flight, batch.length) }, reader));
  const ok = batch.map((_, k) => k).filter((k) => objects[k] !== null);
  if (ok.length > 0) {
    let total = 0;
    for (const k of ok) total += objects[k]!.length;
    const buffer = new Uint8Array(total);
    const spans: number[] = [];
    let o = 0;
    for (const k of ok) {
      buffer.set(objects[k]!, o);
      spans.push(o, o + objects[k]!.length);
      o += objects[k]!.length;
    }
    try {
      const results = await pool.restore(ok.map((k) => batch[k].item), buffer, spans);
      ok.forEach((k, j) => {
        if (results[j] !== null) errors[k] = new Error(results[j]!);
      });
    } catch (err) {
      for (const k of ok) errors[k] = err;
    }
  }
  batch.forEach(({ e }, k) => settle(e, errors[k]));
}

/** Reads a whole (small) object. */
async function readObject(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const p of stream) {
    parts.push(p);
    n += p.length;
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Restores one large loose blob: read by a Worker itself, or streamed to one. */
async function restoreLarge(
  repo: Repository,
  pool: SealPool,
  item: RestoreItem,
): Promise<string | null> {
  if (item.object !== undefined) {
    const { results, unread } = await pool.restoreFrom([item]);
    if (unread.length === 0) return results[0];
  }
  const stream = await repo.readBlob(item.blobId, { pack: null });
  return await pool.restoreStream(item, stream);
}
