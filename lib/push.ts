// A push: take a client's entries, skip what did not change, hash, encrypt and upload the rest
// in bounded memory, confirm uploads in durable batches, and commit the changeset's manifest.

import {
  type Backend,
  blobKey,
  BodyError,
  bytesBody,
  type ObjectInfo,
} from "./backends/backend.ts";
import { type BlobHeader, readFull, sealBlob, type SealResult } from "./format/blob.ts";
import { concat, toHex } from "./format/bytes.ts";
import { blobIdFor, UlidGenerator } from "./format/ids.ts";
import { ContainerWriter, SEGMENT_DATA_MAX } from "./format/container.ts";
import { fromHex } from "./format/bytes.ts";
import { type Index, isoNow } from "./index/sqlite.ts";
import { DirectWriteError, SealPool } from "./workers/pool.ts";
import { MemoryRelease, releaseMemory } from "./perf/memory.ts";
import { CHANGE_RETRIES, type Hashed, SMALL_FILE } from "./workers/seal_jobs.ts";
import type { ChangesetRow, FileRow, PathState } from "./index/types.ts";
import { badPath, type Client, type ContentFile, type PreviousState } from "./clients/client.ts";
import { type ManifestEntry, writeManifest } from "./manifest.ts";
import type { Repository } from "./repository.ts";

/** Progress of a push, reported as it goes. */
export interface PushProgress {
  phase: "scan" | "upload" | "commit";
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

/** Options of a push. */
export interface PushOptions {
  /** Where entries come from. */
  client: Client;
  /** Source name (a changeset chain per source). */
  source: string;
  /** Changeset name; defaults to the client's suggestion. */
  name?: string;
  /** Files in flight to the backend at once (default: what the backend says suits it, else 8). */
  concurrency?: number;
  /** zstd level, 0 for none (default 3). */
  compressLevel?: number;
  /** Uploads confirmed per durable batch (default 1000); smaller batches lose less to a crash. */
  confirmBatch?: number;
  onProgress?: (p: PushProgress) => void;
  now?: () => number;
  ids?: UlidGenerator;
}

/** A problem with one entry: the rest of the push went on. */
export interface EntryProblem {
  path: string;
  message: string;
}

/** What a push did. */
export interface PushResult {
  /** Changeset id, or null when nothing changed and the client keeps no empty changesets. */
  changeset: string | null;
  /** Changesets of this source that were interrupted earlier and completed now. */
  resumed: string[];
  files: number;
  bytes: number;
  uploaded: number;
  uploadedBytes: number;
  present: number;
  deleted: number;
  links: number;
  unchanged: number;
  /** Entries that were not stored (the command fails after storing the rest). */
  problems: EntryProblem[];
  /** Things skipped on purpose, such as sockets and FIFOs. */
  notes: EntryProblem[];
}

/** Reading a file failed in a way that retrying the file cannot fix now. */
class EntryError extends Error {}

const SMALL_READ = SEGMENT_DATA_MAX;
const CONFIRM_BATCH = 1000;
const CONFIRM_BYTES = 256 << 20;
const CONFIRM_SECONDS = 5;
/** Files in flight when neither the caller nor the backend says otherwise. */
const DEFAULT_FLIGHT = 8;
/** A batch of small files sent to a seal Worker at once: at most this many files… */
const BATCH_FILES = 64;
/** …or this many bytes. */
const BATCH_BYTES = 4 << 20;
/** Pending entries read from the index at a time. */
const PAGE = 200;
/** Bytes of files handled between two returns of free memory to the system… */
const RELEASE_BYTES = 32 << 20;
/** …and entries walked (a full collection costs 50–80 ms once the state of 50,000 files is
 * loaded: every 8,192 entries, that was a third of a no-change push of 50,000 files). */
const RELEASE_ENTRIES = 65536;

function stateView(index: Index, chain: ChangesetRow[], last?: ChangesetRow): PreviousState {
  const state = index.stateAt(chain);
  let info: unknown = undefined;
  if (last?.info) {
    try {
      info = JSON.parse(last.info);
    } catch {
      info = undefined;
    }
  }
  return {
    changeset: last,
    info,
    get: (p) => state.get(p),
    paths: () => state.keys(),
  };
}

function unchanged(prev: PathState | undefined, e: {
  action: string;
  size?: number;
  mtime?: number;
  inode?: number;
  mode?: number;
  target?: string;
}): boolean {
  if (!prev || prev.action !== e.action) return false;
  if (e.action === "link") return prev.target === e.target;
  if (e.action !== "write") return false;
  return prev.size === e.size && prev.mtime === e.mtime &&
    (e.inode === undefined || prev.inode === null || prev.inode === e.inode) &&
    (e.mode === undefined || prev.mode === null || prev.mode === e.mode);
}

/**
 * Opens `root/path` like openLocalFile, but with synchronous calls: for the many small files of
 * a tree, each asynchronous file operation costs several times the work it does.
 */
function openLocalFileFast(root: string, path: string): Promise<ContentFile> {
  const full = root.endsWith("/") ? root + path : `${root}/${path}`;
  try {
    const f = Deno.openSync(full, { read: true });
    return Promise.resolve({
      read: (buf) => Promise.resolve(f.readSync(buf)),
      stat() {
        const st = f.statSync();
        return Promise.resolve({
          size: st.size,
          mtime: st.mtime?.getTime() ?? 0,
          mode: (st.mode ?? 0o644) & 0o7777,
          inode: st.ino ?? undefined,
        });
      },
      close: () => f.close(),
    });
  } catch (e) {
    return Promise.reject(e);
  }
}

interface Settled {
  path: string;
  fileHash: string;
  blobId: string;
  size: number;
  mtime: number;
  mode: number;
  inode: number | null;
  started: string;
  storedSize: number;
  ref: string | null;
}

/**
 * Confirms uploads in batches: a batch is made durable with one backend flush, then recorded
 * in one index transaction, so the index never calls confirmed what a power cut could lose.
 * A flush runs while uploads go on; `add` waits only when a second full batch is waiting behind
 * a flush still running, so memory and the unconfirmed work stay bounded.
 */
class Confirmer {
  #waiting: Settled[] = [];
  #bytes = 0;
  #since = Date.now();
  #running: Promise<void> | null = null;
  #error: unknown = null;
  constructor(
    private readonly backend: Backend,
    private readonly index: Index,
    private readonly changeset: string,
    private readonly now: () => number,
    private readonly batch: number = CONFIRM_BATCH,
  ) {}

  #due(): boolean {
    return this.#waiting.length >= this.batch || this.#bytes >= CONFIRM_BYTES ||
      (this.#waiting.length > 0 && Date.now() - this.#since > CONFIRM_SECONDS * 1000);
  }

  async add(s: Settled): Promise<void> {
    if (this.#error !== null) throw this.#error;
    this.#waiting.push(s);
    this.#bytes += s.storedSize;
    while (
      this.#running &&
      (this.#waiting.length >= 2 * this.batch || this.#bytes >= 2 * CONFIRM_BYTES)
    ) await this.#running;
    if (this.#error !== null) throw this.#error;
    if (!this.#running && this.#due()) this.#start();
  }

  #start(): void {
    const batch = this.#waiting;
    this.#waiting = [];
    this.#bytes = 0;
    this.#since = Date.now();
    this.#running = (async () => {
      try {
        await this.backend.flush();
        const at = isoNow(this.now());
        this.index.tx(() => {
          for (const s of batch) {
            this.index.settleFile(this.changeset, s.path, {
              status: "confirmed",
              file_hash: s.fileHash,
              blob_id: s.blobId,
              size: s.size,
              mtime: s.mtime,
              mode: s.mode,
              inode: s.inode,
              started: s.started,
              confirmed: at,
              stored_size: s.storedSize,
              ref: s.ref,
            });
          }
        });
      } catch (e) {
        this.#error ??= e;
      } finally {
        this.#running = null;
      }
    })();
  }

  /** Confirms everything added so far; throws the first error of any flush. */
  async flush(): Promise<void> {
    while (this.#running) await this.#running;
    if (this.#error === null && this.#waiting.length > 0) {
      this.#start();
      await this.#running;
    }
    if (this.#error !== null) throw this.#error;
  }
}

/**
 * Pushes one client's changes as a changeset of `source`, resuming an interrupted one first.
 * `repo` may be a promise (a key still being derived): the walk and the comparison with the
 * index's state need no key and run meanwhile; the push waits for it before any upload, and
 * fails with its error (nothing of the new changeset is left in the index then).
 */
export async function push(
  repoOrPromise: Repository | Promise<Repository>,
  index: Index,
  opts: PushOptions,
): Promise<PushResult> {
  const repoP = Promise.resolve(repoOrPromise);
  repoP.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  const now = opts.now ?? Date.now;
  const ids = opts.ids ?? new UlidGenerator(now);
  const client = opts.client;
  const result: PushResult = {
    changeset: null,
    resumed: [],
    files: 0,
    bytes: 0,
    uploaded: 0,
    uploadedBytes: 0,
    present: 0,
    deleted: 0,
    links: 0,
    unchanged: 0,
    problems: [],
    notes: [],
  };
  try {
    if (index.incomplete(opts.source).length > 0) {
      const resumed = await resume(await repoP, index, { ...opts, now });
      result.resumed.push(...resumed.resumed);
      result.problems.push(...resumed.problems);
    }

    const last = index.lastComplete(opts.source);
    const previous = stateView(index, index.chain(opts.source), last);
    // The walk below makes garbage for every entry (V8 grows its young generation to tens of
    // MiB under it): memory is given back every RELEASE_ENTRIES entries, and once the state of
    // the source is loaded.
    releaseMemory();
    let seenSinceRelease = 0;
    const id = ids.next();
    const info = client.info?.();
    index.insertChangeset({
      id,
      name: opts.name ?? client.changesetName ?? null,
      source: opts.source,
      client: client.kind,
      root: client.root,
      parent: last?.id ?? null,
      status: "pending",
      files_planned: 0,
      bytes_planned: 0,
      files_uploaded: 0,
      bytes_uploaded: 0,
      created: isoNow(now()),
      completed: null,
      error: null,
      chain: null,
      info: info === undefined ? null : JSON.stringify(info),
    });

    // Plan: record every change as a pending entry before anything is read.
    const seen = new Set<string>();
    let planned = 0;
    let plannedBytes = 0;
    let batch: FileRow[] = [];
    const flushPlan = () => {
      if (batch.length === 0) return;
      const rows = batch;
      batch = [];
      index.tx(() => rows.forEach((r) => index.insertFile(r)));
    };
    const row = (p: Partial<FileRow> & Pick<FileRow, "path" | "action" | "status">): FileRow => ({
      changeset: id,
      file_hash: null,
      blob_id: null,
      size: null,
      mtime: null,
      mode: null,
      inode: null,
      target: null,
      started: null,
      confirmed: null,
      stored_size: null,
      ref: null,
      error: null,
      ...p,
    });
    for await (const e of client.entries(previous)) {
      const bad = badPath(e.path);
      if (bad) {
        result.problems.push({ path: e.path, message: `skipped: ${bad}` });
        continue;
      }
      if (seen.has(e.path)) continue;
      seen.add(e.path);
      if (++seenSinceRelease >= RELEASE_ENTRIES) {
        seenSinceRelease = 0;
        releaseMemory();
      }
      const prev = previous.get(e.path);
      if (e.action === "delete") {
        if (!prev) continue;
        batch.push(
          row({ path: e.path, action: "delete", status: "confirmed", confirmed: isoNow(now()) }),
        );
        result.deleted++;
      } else if (unchanged(prev, e)) {
        result.unchanged++;
        continue;
      } else if (e.action === "link") {
        batch.push(row({
          path: e.path,
          action: "link",
          target: e.target ?? "",
          mtime: e.mtime ?? null,
          status: "confirmed",
          confirmed: isoNow(now()),
        }));
        result.links++;
      } else {
        batch.push(row({
          path: e.path,
          action: "write",
          size: e.size ?? null,
          mtime: e.mtime ?? null,
          mode: e.mode ?? null,
          inode: e.inode ?? null,
          status: "pending",
        }));
        plannedBytes += e.size ?? 0;
      }
      planned++;
      if (batch.length >= 2000) flushPlan();
      if (planned % 1000 === 0) {
        opts.onProgress?.({
          phase: "scan",
          filesDone: 0,
          filesTotal: planned,
          bytesDone: 0,
          bytesTotal: plannedBytes,
        });
      }
    }
    if (client.completeWithin.length > 0) {
      const prefixes = client.completeWithin;
      // A directory that could not be read says nothing about what it holds: never infer
      // deletions under it.
      const unknown = (client.problems ?? []).filter((p) => !p.note).map((p) =>
        p.path === "." ? "" : p.path
      );
      const under = (p: string, pre: string) => pre === "" || p === pre || p.startsWith(pre + "/");
      for (const p of previous.paths()) {
        if (seen.has(p)) continue;
        if (unknown.some((u) => under(p, u))) continue;
        if (
          !prefixes.some((pre) =>
            pre === "" || p === pre || p.startsWith(pre.endsWith("/") ? pre : pre + "/")
          )
        ) continue;
        batch.push(
          row({ path: p, action: "delete", status: "confirmed", confirmed: isoNow(now()) }),
        );
        result.deleted++;
        planned++;
      }
    }
    flushPlan();
    index.shrinkMemory();
    for (const p of client.problems ?? []) {
      if (p.note) result.notes.push({ path: p.path, message: p.message });
      else result.problems.push({ path: p.path, message: p.message });
    }

    const forget = () =>
      index.tx(() => {
        index.db.prepare("DELETE FROM files WHERE changeset = ?").run(id);
        index.db.prepare("DELETE FROM changesets WHERE id = ?").run(id);
      });
    let repo: Repository;
    try {
      repo = await repoP;
    } catch (e) {
      // No key (a wrong passphrase): the plan is forgotten, as if the push never started.
      forget();
      throw e;
    }
    if (planned === 0 && !client.keepEmpty) {
      forget();
      return result;
    }
    index.updateChangeset(id, { files_planned: planned, bytes_planned: plannedBytes });
    const cs = index.getChangeset(id)!;
    const r = await uploadChangeset(repo, index, cs, {
      open: client.open?.bind(client) ?? ((p) => openLocalFileFast(client.root, p)),
      root: client.open ? undefined : client.root,
      confirmBatch: opts.confirmBatch,
      compressLevel: opts.compressLevel,
      concurrency: opts.concurrency,
      onProgress: opts.onProgress,
      now,
    });
    result.changeset = id;
    result.problems.push(...r.problems);
    const c = index.counts(id);
    result.files = c.files;
    result.bytes = c.bytes;
    result.uploaded = c.uploaded;
    result.uploadedBytes = c.uploadedBytes;
    result.present = c.present;
    return result;
  } finally {
    await client.close?.();
  }
}

interface UploadOptions {
  open: (path: string) => Promise<ContentFile>;
  /** Where the files are when they are plain files under one directory (seal Workers read
   * them there); undefined when only `open` can read them. */
  root?: string;
  confirmBatch?: number;
  compressLevel?: number;
  concurrency?: number;
  onProgress?: (p: PushProgress) => void;
  now: () => number;
}

/** A counting semaphore: bounds the files in flight to the backend. */
class Slots {
  #free: number;
  #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiting.push(r));
    try {
      return await f();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** What the upload of one changeset shares between its tasks. */
interface Upload {
  repo: Repository;
  index: Index;
  cs: ChangesetRow;
  opts: UploadOptions;
  confirmer: Confirmer;
  problems: EntryProblem[];
  progress: PushProgress;
  slots: Slots;
  release: MemoryRelease;
}

function entryDone(u: Upload, row: FileRow): void {
  u.progress.filesDone++;
  u.progress.bytesDone += row.size ?? 0;
  u.release.add(row.size ?? 0);
  u.opts.onProgress?.(u.progress);
}

function entryFailed(u: Upload, row: FileRow, message: string): void {
  u.problems.push({ path: row.path, message });
  u.index.settleFile(u.cs.id, row.path, { status: "failed", error: message });
  entryDone(u, row);
}

/** The pending entries of a changeset, read from the index a page at a time. */
function* pendingRows(index: Index, changeset: string): Generator<FileRow> {
  let after: string | null = null;
  while (true) {
    const page = index.pendingFilesAfter(changeset, after, PAGE);
    if (page.length === 0) return;
    after = page[page.length - 1].path;
    yield* page;
  }
}

/** Uploads the pending entries of a changeset, then writes its manifest and completes it. */
async function uploadChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  opts: UploadOptions,
): Promise<{ problems: EntryProblem[] }> {
  index.updateChangeset(cs.id, { status: "uploading" });
  const totals = index.pendingTotals(cs.id);
  const flight = Math.max(1, opts.concurrency ?? repo.backend.parallelism ?? DEFAULT_FLIGHT);
  const u: Upload = {
    repo,
    index,
    cs,
    opts,
    confirmer: new Confirmer(repo.backend, index, cs.id, opts.now, opts.confirmBatch),
    problems: [],
    progress: {
      phase: "upload",
      filesDone: 0,
      filesTotal: totals.files,
      bytesDone: 0,
      bytesTotal: totals.bytes,
    },
    slots: new Slots(flight),
    release: new MemoryRelease(RELEASE_BYTES),
  };
  try {
    if (totals.files > 0) {
      if (opts.root !== undefined) await uploadWithPool(u, opts.root, flight);
      else await uploadInThread(u, flight);
    }
    await u.confirmer.flush();
  } catch (fatal) {
    // What was stored before the failure is still confirmed (made durable and recorded), so
    // that the push that resumes this one does not send it again.
    await u.confirmer.flush().catch(() => {});
    index.updateChangeset(cs.id, { error: String((fatal as Error)?.message ?? fatal) });
    throw fatal;
  }
  opts.onProgress?.({ ...u.progress, phase: "commit" });
  await commitChangeset(repo, index, cs, opts.now);
  return { problems: u.problems };
}

/**
 * Uploads files that are plain files under `root`: seal Workers read, hash and seal them, in
 * batches of small files and one stream per large file, while this thread checks the index,
 * puts the objects and confirms them. Every queue is bounded: batches and large files in flight
 * per Worker, segments per stream, puts in flight, and unconfirmed uploads.
 */
async function uploadWithPool(u: Upload, root: string, flight: number): Promise<void> {
  releaseMemory();
  // A local repository: the Workers write the objects themselves, and this thread keeps only
  // the index.
  const dir = u.repo.backend.directory?.("write") ?? null;
  const pool = await SealPool.start({
    master: u.repo.master,
    level: u.opts.compressLevel,
    lightMain: dir !== null,
  });
  const threads = Math.max(1, pool.workers);
  const tasks = new Set<Promise<void>>();
  let fatal: unknown = null;
  const launch = (p: Promise<void>) => {
    const t: Promise<void> = p.catch((e) => {
      fatal ??= e;
    }).finally(() => tasks.delete(t));
    tasks.add(t);
  };
  const until = async (ok: () => boolean) => {
    while (!ok() && fatal === null && tasks.size > 0) await Promise.race(tasks);
  };
  let batches = 0;
  let larges = 0;
  const maxBatches = 2 * threads;
  const maxLarge = Math.max(1, Math.min(flight, 2 * threads));
  let batch: FileRow[] = [];
  let batchBytes = 0;
  const sendBatch = async () => {
    if (batch.length === 0) return;
    await until(() => batches < maxBatches);
    const rows = batch;
    batch = [];
    batchBytes = 0;
    batches++;
    launch(storeRows(u, pool, root, rows, 1, dir).finally(() => batches--));
  };
  try {
    for (const row of pendingRows(u.index, u.cs.id)) {
      if (fatal !== null) break;
      if ((row.size ?? 0) > SMALL_FILE) {
        await until(() => larges < maxLarge);
        larges++;
        launch(storeRows(u, pool, root, [row], 1, dir).finally(() => larges--));
      } else {
        batch.push(row);
        batchBytes += row.size ?? 0;
        if (batch.length >= BATCH_FILES || batchBytes >= BATCH_BYTES) await sendBatch();
      }
    }
    if (fatal === null) await sendBatch();
    while (tasks.size > 0) await Promise.race(tasks);
  } finally {
    pool.close();
  }
  if (fatal !== null) throw fatal;
}

function blobHeader(u: Upload, row: FileRow, h: Extract<Hashed, { ok: true }>): BlobHeader {
  return {
    v: 1,
    path: row.path,
    file_hash: h.fileHash,
    size: h.size,
    mtime: h.mtime,
    mode: h.mode,
    source: u.cs.source,
    changeset: u.cs.id,
    created: isoNow(u.opts.now()),
  };
}

/** Records an uploaded blob for confirmation. */
async function uploaded(
  u: Upload,
  row: FileRow,
  h: Extract<Hashed, { ok: true }>,
  started: string,
  info: ObjectInfo,
): Promise<void> {
  await u.confirmer.add({
    path: row.path,
    fileHash: h.fileHash,
    blobId: h.blobId,
    size: h.size,
    mtime: h.mtime,
    mode: h.mode,
    inode: h.inode,
    started,
    storedSize: info.size,
    ref: info.ref ?? null,
  });
  entryDone(u, row);
}

/**
 * Hashes some files in a seal thread; settles those already stored, then seals and puts the
 * rest: small ones from the bytes hashed, large ones as a stream. `attempt` counts the reads of
 * a file that keeps changing. With `dir` (a local repository's Backend.directory), the seal
 * thread writes the objects itself; what it could not write is stored again the usual way,
 * through the backend stack and its retries.
 */
async function storeRows(
  u: Upload,
  pool: SealPool,
  root: string,
  rows: FileRow[],
  attempt: number,
  dir: string | null,
): Promise<void> {
  const { batch, results } = await pool.hash(root, rows.map((r) => r.path));
  const small: { i: number; blobId: string; header: BlobHeader }[] = [];
  const large: number[] = [];
  u.index.tx(() => {
    results.forEach((h, i) => {
      const row = rows[i];
      if (!h.ok) return entryFailed(u, row, h.message);
      const known = u.index.blobConfirmed(h.blobId);
      if (known) {
        u.index.settleFile(u.cs.id, row.path, {
          status: "present",
          file_hash: h.fileHash,
          blob_id: h.blobId,
          size: h.size,
          mtime: h.mtime,
          mode: h.mode,
          inode: h.inode,
          confirmed: known.confirmed,
          stored_size: known.stored_size,
          ref: known.ref,
        });
        return entryDone(u, row);
      }
      if (h.size <= SMALL_FILE) small.push({ i, blobId: h.blobId, header: blobHeader(u, row, h) });
      else large.push(i);
    });
  });
  if (batch && dir !== null) {
    const started = isoNow(u.opts.now());
    const { sizes, errors } = await pool.sealTo(batch, small, dir);
    const again: FileRow[] = [];
    for (let k = 0; k < small.length; k++) {
      const { i, blobId } = small[k];
      if (errors[k] !== null) again.push(rows[i]);
      else {
        const h = results[i] as Extract<Hashed, { ok: true }>;
        await uploaded(u, rows[i], h, started, { key: blobKey(blobId), size: sizes[k] });
      }
    }
    await Promise.all([
      again.length > 0 ? storeRows(u, pool, root, again, attempt, null) : Promise.resolve(),
      ...large.map((i) => storeLarge(u, pool, root, rows[i], results[i], attempt, dir)),
    ]);
    return;
  }
  const objects = batch ? await pool.seal(batch, small) : [];
  await Promise.all([
    ...small.map(async ({ i, blobId }, k) => {
      const h = results[i] as Extract<Hashed, { ok: true }>;
      const started = isoNow(u.opts.now());
      const body = bytesBody(objects[k]);
      const info = await u.slots.run(() => u.repo.backend.put(blobKey(blobId), body));
      await uploaded(u, rows[i], h, started, info);
    }),
    ...large.map((i) => storeLarge(u, pool, root, rows[i], results[i], attempt, dir)),
  ]);
}

/** Seals and puts one large file as a stream; a file that changed is hashed again. */
async function storeLarge(
  u: Upload,
  pool: SealPool,
  root: string,
  row: FileRow,
  hashed: Hashed,
  attempt: number,
  dir: string | null,
): Promise<void> {
  const h = hashed as Extract<Hashed, { ok: true }>;
  const header = blobHeader(u, row, h);
  const started = isoNow(u.opts.now());
  let info: ObjectInfo;
  try {
    if (dir !== null) {
      try {
        info = { key: blobKey(h.blobId), size: await pool.largeTo(root, header, dir) };
      } catch (e) {
        // Not written: the usual way, through the backend stack, says why or succeeds.
        if (!(e instanceof DirectWriteError)) throw e;
        return storeLarge(u, pool, root, row, hashed, attempt, null);
      }
    } else {
      info = await u.slots.run(() =>
        u.repo.backend.put(blobKey(h.blobId), { open: () => pool.large(root, header) })
      );
    }
  } catch (e) {
    if (!causedByBody(e)) throw e;
    if (attempt < CHANGE_RETRIES) return storeRows(u, pool, root, [row], attempt + 1, dir);
    const why = bodyMessage(e);
    return entryFailed(
      u,
      row,
      why === "changed while it was read"
        ? `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`
        : why,
    );
  }
  await uploaded(u, row, h, started, info);
}

/** The message of the BodyError in an error's cause chain. */
function bodyMessage(e: unknown): string {
  for (let c = e; c instanceof Error; c = c.cause) {
    if (c instanceof BodyError) return c.message;
  }
  return String(e);
}

/** Uploads files that only the client can read, one `open` at a time per file in flight. */
async function uploadInThread(u: Upload, flight: number): Promise<void> {
  const rows = pendingRows(u.index, u.cs.id);
  let fatal: unknown = null;
  const worker = async () => {
    while (fatal === null) {
      const next = rows.next();
      if (next.done) return;
      const row = next.value;
      try {
        const outcome = await storeFile(u.repo, u.index, u.cs, row, u.opts);
        if (outcome.kind === "present") {
          u.index.settleFile(u.cs.id, row.path, {
            status: "present",
            file_hash: outcome.fileHash,
            blob_id: outcome.blobId,
            size: outcome.size,
            mtime: outcome.mtime,
            mode: outcome.mode,
            inode: outcome.inode,
            confirmed: outcome.confirmed,
            stored_size: outcome.storedSize,
            ref: outcome.ref,
          });
        } else {
          await u.confirmer.add(outcome.settled);
        }
        entryDone(u, row);
      } catch (e) {
        if (e instanceof EntryError) entryFailed(u, row, e.message);
        else fatal ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: flight }, worker));
  if (fatal !== null) throw fatal;
}

type Outcome =
  | { kind: "uploaded"; settled: Settled }
  | {
    kind: "present";
    fileHash: string;
    blobId: string;
    size: number;
    mtime: number;
    mode: number;
    inode: number | null;
    confirmed: string;
    storedSize: number | null;
    ref: string | null;
  };

function describe(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "vanished before it could be read";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied; it was not stored";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory now; it was not stored";
  return e instanceof Error ? e.message : String(e);
}

/** Hashes a file, then uploads it unless its blob is already stored. */
async function storeFile(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  row: FileRow,
  opts: UploadOptions,
): Promise<Outcome> {
  const suite = repo.suite;
  for (let attempt = 1;; attempt++) {
    let file: ContentFile;
    try {
      file = await opts.open(row.path);
    } catch (e) {
      throw new EntryError(describe(e));
    }
    let st: { size: number; mtime: number; mode: number; inode?: number };
    let fileHash: string;
    let small: Uint8Array | null = null;
    try {
      st = await file.stat();
      const h = suite.newHasher();
      if (st.size <= SMALL_READ) {
        const buf = new Uint8Array(st.size + 1);
        const n = await readFull(file, buf);
        small = buf.subarray(0, n);
        h.update(small);
      } else {
        const buf = new Uint8Array(SEGMENT_DATA_MAX);
        let total = 0;
        while (true) {
          const n = await readFull(file, buf);
          if (n === 0) break;
          h.update(buf.subarray(0, n));
          total += n;
        }
        if (total !== st.size) small = null;
      }
      fileHash = toHex(h.digest());
      const after = await file.stat();
      if (
        after.size !== st.size || after.mtime !== st.mtime || (small && small.length !== st.size)
      ) {
        throw new FileChanged();
      }
    } catch (e) {
      file.close();
      if (e instanceof FileChanged) {
        if (attempt < CHANGE_RETRIES) continue;
        throw new EntryError(
          `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`,
        );
      }
      throw new EntryError(describe(e));
    }
    if (small === null) file.close();
    const blobId = blobIdFor(suite, row.path, fileHash);
    const known = index.blobConfirmed(blobId);
    if (known) {
      if (small !== null) file.close();
      return {
        kind: "present",
        fileHash,
        blobId,
        size: st.size,
        mtime: st.mtime,
        mode: st.mode,
        inode: st.inode ?? null,
        confirmed: known.confirmed,
        storedSize: known.stored_size,
        ref: known.ref,
      };
    }
    const header: BlobHeader = {
      v: 1,
      path: row.path,
      file_hash: fileHash,
      size: st.size,
      mtime: st.mtime,
      mode: st.mode,
      source: cs.source,
      changeset: cs.id,
      created: isoNow(opts.now()),
    };
    const started = isoNow(opts.now());
    const salt = suite.randomBytes(16);
    const sealOpts = {
      salt,
      compressLevel: opts.compressLevel,
      beforeFinal: (h: string, size: number) => {
        if (h !== fileHash || size !== st.size) throw new BodyError("changed while it was read");
      },
    };
    try {
      let info;
      if (small !== null) {
        file.close();
        // The bytes in memory are the ones hashed in pass 1: seal them directly, in one body
        // segment (the layout sealBlob gives a file of at most one segment).
        const w = new ContainerWriter(suite, "blob", repo.master, fromHex(blobId), sealOpts);
        const parts = [...w.start(header), ...w.body(small, true)];
        info = await repo.backend.put(blobKey(blobId), bytesBody(concat(parts)));
      } else {
        info = await repo.backend.put(blobKey(blobId), {
          async *open() {
            const f = await opts.open(row.path).catch((e) => {
              throw new BodyError(describe(e));
            });
            try {
              const res: SealResult = { fileHash: "", size: 0 };
              yield* sealBlob(suite, repo.master, header, f, res, sealOpts);
            } finally {
              f.close();
            }
          },
        });
      }
      return {
        kind: "uploaded",
        settled: {
          path: row.path,
          fileHash,
          blobId,
          size: st.size,
          mtime: st.mtime,
          mode: st.mode,
          inode: st.inode ?? null,
          started,
          storedSize: info.size,
          ref: info.ref ?? null,
        },
      };
    } catch (e) {
      if (causedByBody(e)) {
        if (attempt < CHANGE_RETRIES) continue;
        throw new EntryError(
          `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`,
        );
      }
      throw e;
    }
  }
}

class FileChanged extends Error {}

/** True when an error (or any error in its cause chain) came from reading the put's body. */
function causedByBody(e: unknown): boolean {
  for (let c = e; c instanceof Error; c = c.cause) {
    if (c instanceof BodyError) return true;
  }
  return false;
}

/** Writes the manifest of a changeset whose entries are all settled, and marks it complete. */
async function commitChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  now: () => number,
): Promise<void> {
  const parent = cs.parent ? index.getChangeset(cs.parent) : undefined;
  const counts = index.counts(cs.id);
  const completed = isoNow(now());
  const entries = function* (): Iterable<ManifestEntry> {
    for (const f of index.iterateFilesOf(cs.id)) {
      if (f.status !== "confirmed" && f.status !== "present") continue;
      const e: ManifestEntry = { path: f.path, action: f.action };
      if (f.action === "write") {
        e.file_hash = f.file_hash!;
        e.blob_id = f.blob_id!;
        e.size = f.size!;
        e.mtime = f.mtime!;
        e.mode = f.mode!;
        e.confirmed = f.confirmed!;
      } else if (f.action === "link") {
        e.target = f.target!;
        if (f.mtime !== null) e.mtime = f.mtime;
      }
      // Links and deletions carry their time too, so a rebuilt index answers exactly as before.
      if (f.action !== "write" && f.confirmed) e.confirmed = f.confirmed;
      yield e;
    }
  };
  const header = await writeManifest(repo, {
    id: cs.id,
    name: cs.name,
    source: cs.source,
    client: cs.client,
    parent: cs.parent,
    parent_chain: parent?.chain ?? null,
    created: cs.created,
    completed,
    files: counts.files - counts.failed,
    bytes: counts.bytes,
    info: cs.info ? JSON.parse(cs.info) : null,
  }, entries);
  await repo.backend.flush();
  index.setStatus(cs.id, "complete", { completed, chain: header.chain, error: null });
}

/** Completes interrupted changesets (all sources, or one) without a new scan. */
export async function resume(
  repo: Repository,
  index: Index,
  opts: Partial<
    Pick<
      PushOptions,
      "source" | "concurrency" | "compressLevel" | "confirmBatch" | "onProgress" | "now"
    >
  > = {},
): Promise<{ resumed: string[]; problems: EntryProblem[] }> {
  const now = opts.now ?? Date.now;
  const out = { resumed: [] as string[], problems: [] as EntryProblem[] };
  for (const cs of index.incomplete(opts.source)) {
    const r = await uploadChangeset(repo, index, cs, {
      open: (p) => openLocalFileFast(cs.root ?? ".", p),
      root: cs.root ?? ".",
      compressLevel: opts.compressLevel,
      concurrency: opts.concurrency,
      confirmBatch: opts.confirmBatch,
      onProgress: opts.onProgress,
      now,
    });
    out.resumed.push(cs.id);
    out.problems.push(...r.problems);
  }
  return out;
}
