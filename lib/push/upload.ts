// The upload of one changeset: its pending entries, a page at a time, through one pipeline.
// Files are read and hashed in batches (large files one by one); what is already stored is
// recorded as present; the rest is sealed, small blobs into packs and large ones as objects of
// their own, and every stored object is confirmed once it is durable.

import { BodyError, bytesBody, type ObjectInfo } from "../backends/backend.ts";
import type { ContentFile } from "../clients/client.ts";
import type { BlobHeader } from "../format/blob.ts";
import { concat } from "../format/bytes.ts";
import { ENTRY_FRAME_BYTES, entryFrame } from "../format/pack.ts";
import { stagePack } from "../index/claims.ts";
import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow, FileRow } from "../index/types.ts";
import { MemoryRelease, releaseMemory } from "../perf/memory.ts";
import { type FragmentEntry, PackWriter } from "../repository/packer.ts";
import { blobKey } from "../repository/layout.ts";
import type { Repository } from "../repository/repository.ts";
import { Semaphore, TaskGroup } from "../scheduler.ts";
import { DirectWriteError, SealPool } from "../workers/pool.ts";
import { CHANGE_RETRIES, type Hashed, SMALL_FILE } from "../workers/seal_jobs.ts";
import { crashPoint } from "../testing/crash.ts";
import { Confirmer, type Settled } from "./confirm.ts";
import { clientFiles, type ContentSource, filesUnder } from "./sources.ts";
import type { EntryProblem, PushProgress } from "./types.ts";

/** Options of one changeset's upload. */
export interface UploadOptions {
  /** Where content is read: plain files under a directory, or a client's own `open`. */
  content: { root: string } | { open: (path: string) => Promise<ContentFile> };
  /**
   * The pending entries as the plan records them, while it is still being made; absent, the
   * pending entries are read from the index (a resumed changeset).
   */
  planned?: AsyncIterable<FileRow[]>;
  confirmBatch?: number;
  compressLevel?: number;
  /** Objects in flight to the backend (default: what the backend says suits it, else 8). */
  concurrency?: number;
  onProgress?: (p: PushProgress) => void;
  now: () => number;
  /**
   * A push shared by several workers: where each pack goes is recorded before it is stored, and
   * entries another worker held (`reclaimed`) are looked for in the repository before they are
   * sent, so that what a worker that died stored is not sent again.
   */
  shared?: boolean;
}

/** Objects in flight when neither the caller nor the backend says otherwise. */
const DEFAULT_FLIGHT = 8;
/** A batch of small files handed to a Worker at once: at most this many files… */
const BATCH_FILES = 64;
/** …or this many bytes. */
const BATCH_BYTES = 4 << 20;
/** Pending entries read from the index at a time. */
const PAGE = 200;
/** Bytes of files handled between two returns of free memory to the system by this thread (its
 * garbage is small objects; a full collection costs tens of milliseconds). */
const RELEASE_BYTES = 64 << 20;

type Ok = Extract<Hashed, { ok: true }>;

/** What the tasks of one upload share. */
interface Upload {
  repo: Repository;
  index: Index;
  cs: ChangesetRow;
  opts: UploadOptions;
  pool: SealPool;
  source: ContentSource;
  packs: PackWriter<Settled>;
  confirmer: Confirmer;
  /** Loose objects in flight to the backend. */
  puts: Semaphore;
  problems: EntryProblem[];
  progress: PushProgress;
  release: MemoryRelease;
}

/**
 * Uploads the pending entries of a changeset and confirms them. What was stored before a
 * failure is still confirmed, so that the push that resumes this one does not send it again.
 */
export async function uploadChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  opts: UploadOptions,
): Promise<{ problems: EntryProblem[]; progress: PushProgress }> {
  const totals = opts.planned ? { files: 0, bytes: 0 } : index.pendingTotals(cs.id);
  const flight = Math.max(1, opts.concurrency ?? repo.parallelism ?? DEFAULT_FLIGHT);
  const problems: EntryProblem[] = [];
  const progress: PushProgress = {
    phase: "upload",
    filesDone: 0,
    filesTotal: totals.files,
    bytesDone: 0,
    bytesTotal: totals.bytes,
  };
  // Nothing to read: no Worker is started (a resume with nothing left, or an empty plan).
  const rows = (opts.planned ?? pages(index, cs.id))[Symbol.asyncIterator]();
  const first = await rows.next();
  if (first.done) return { problems, progress };
  releaseMemory();
  const root = "root" in opts.content ? opts.content.root : null;
  // Workers that write large objects into a local repository themselves leave this thread
  // little to do: it gets no Worker's share of the cores then.
  const pool = await SealPool.start({
    master: repo.master,
    level: opts.compressLevel,
    threshold: repo.config.pack_threshold,
    lightMain: root !== null && repo.objectFiles("write") !== null,
  });
  const confirmer = new Confirmer(repo, index, cs.id, opts.now, opts.confirmBatch);
  const u: Upload = {
    repo,
    index,
    cs,
    opts,
    pool,
    source: "root" in opts.content
      ? filesUnder(pool, opts.content.root)
      : clientFiles(pool, repo, opts.content.open, opts.compressLevel),
    confirmer,
    packs: new PackWriter<Settled>(
      repo,
      (p) =>
        confirmer.add(
          p.blobs.map((b) => ({
            ...b.item,
            storedSize: b.length,
            ref: p.info.ref ?? null,
            pack: p.packId,
            offset: b.offset,
            length: b.length,
          })),
          p.info.size,
        ),
      repo.objectFiles("write") !== null ? 1 : 2,
      opts.shared
        ? (p) =>
          stagePack(
            index,
            cs.id,
            p.packId,
            p.blobs.map((b) => ({
              path: b.item.path,
              blobId: b.blobId,
              fileHash: b.item.fileHash,
              size: b.item.size,
              offset: b.offset,
              length: b.length,
            })),
          )
        : undefined,
    ),
    puts: new Semaphore(flight),
    problems,
    progress,
    release: new MemoryRelease(RELEASE_BYTES),
  };
  try {
    await runPipeline(u, flight, first.value, { [Symbol.asyncIterator]: () => rows });
    await u.packs.close();
    await confirmer.flush();
  } catch (fatal) {
    await u.packs.close().catch(() => {});
    await confirmer.flush().catch(() => {});
    index.updateChangeset(cs.id, { error: String((fatal as Error)?.message ?? fatal) });
    throw fatal;
  } finally {
    pool.close();
  }
  return { problems, progress };
}

/** The pending entries of a changeset, read from the index a page at a time. */
async function* pages(index: Index, changeset: string): AsyncGenerator<FileRow[]> {
  let after: string | null = null;
  while (true) {
    const page = index.pendingFilesAfter(changeset, after, PAGE);
    if (page.length === 0) return;
    after = page[page.length - 1].path;
    yield page;
  }
}

/**
 * Hands the pending entries to the stages with every queue bounded: batches of small files per
 * Worker, large files in flight, segments per stream, packs being stored, and unconfirmed work.
 */
async function runPipeline(
  u: Upload,
  flight: number,
  head: FileRow[],
  rest: AsyncIterable<FileRow[]>,
): Promise<void> {
  const group = new TaskGroup();
  const threads = Math.max(1, u.pool.workers);
  const batches = group.lane(2 * threads);
  const larges = group.lane(Math.max(1, Math.min(flight, 2 * threads)));
  let rows: FileRow[] = [];
  let bytes = 0;
  const planned = !!u.opts.planned;
  for await (const row of flatten(head, rest)) {
    if (group.failed) break;
    if (planned) {
      u.progress.filesTotal++;
      u.progress.bytesTotal += row.size ?? 0;
    }
    if ((row.size ?? 0) > SMALL_FILE) {
      await larges.spawn(() => storeRows(u, [row], 1));
      continue;
    }
    rows.push(row);
    bytes += row.size ?? 0;
    if (rows.length >= BATCH_FILES || bytes >= BATCH_BYTES) {
      const batch = rows;
      rows = [];
      bytes = 0;
      await batches.spawn(() => storeRows(u, batch, 1));
    }
  }
  if (rows.length > 0 && !group.failed) await batches.spawn(() => storeRows(u, rows, 1));
  await group.wait();
}

/** The rows of `head`, then of every page of `rest`. */
async function* flatten(head: FileRow[], rest: AsyncIterable<FileRow[]>): AsyncGenerator<FileRow> {
  yield* head;
  for await (const page of rest) yield* page;
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

function blobHeader(u: Upload, row: FileRow, h: Ok): BlobHeader {
  return {
    v: 2,
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

/** What a stored blob's row records, before the place it is stored in is known. */
function settled(row: FileRow, h: Ok, started: string): Settled {
  return {
    path: row.path,
    fileHash: h.fileHash,
    blobId: h.blobId,
    size: h.size,
    mtime: h.mtime,
    mode: h.mode,
    inode: h.inode,
    started,
    storedSize: 0,
    ref: null,
    pack: null,
    offset: null,
    length: null,
  };
}

/**
 * Hashes some files; settles those already stored, then seals the rest: small ones from the
 * bytes hashed, in one batch (packed, or loose when not under the pack threshold), large ones
 * one by one. `attempt` counts the reads of a file that keeps changing.
 */
async function storeRows(u: Upload, rows: FileRow[], attempt: number): Promise<void> {
  if (u.opts.shared) {
    // Another worker may have settled some of them meanwhile (this worker's lease ran out while
    // it was held up): those are done, not stored again.
    const settled = rows.filter((r) => u.index.getFile(u.cs.id, r.path)?.status !== "pending");
    for (const r of settled) entryDone(u, r);
    if (settled.length > 0) rows = rows.filter((r) => !settled.includes(r));
    if (rows.length === 0) return;
  }
  const { batch, results } = await u.source.hash(rows.map((r) => r.path));
  for (let i = 0; i < results.length; i++) crashPoint("hash");
  const small: number[] = [];
  const large: number[] = [];
  // A loose blob of an entry another worker held may be stored already (that worker died before
  // it confirmed it): its id says where to look.
  const found = new Map<number, ObjectInfo>();
  for (let i = 0; i < results.length; i++) {
    const h = results[i];
    if (!h.ok || !(rows[i] as { reclaimed?: boolean }).reclaimed) continue;
    if (u.index.blobConfirmed(h.blobId)) continue;
    const info = await u.repo.backend.stat(blobKey(h.blobId));
    if (info !== null) found.set(i, info);
  }
  u.index.tx(() => {
    results.forEach((h, i) => {
      const row = rows[i];
      if (!h.ok) return entryFailed(u, row, h.message);
      const stored = found.get(i);
      if (stored) {
        u.index.settleFile(u.cs.id, row.path, {
          status: "confirmed",
          file_hash: h.fileHash,
          blob_id: h.blobId,
          size: h.size,
          mtime: h.mtime,
          mode: h.mode,
          inode: h.inode,
          confirmed: isoNow(u.opts.now()),
          stored_size: stored.size,
          ref: stored.ref ?? null,
        });
        return entryDone(u, row);
      }
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
          pack: known.pack,
          pack_offset: known.pack_offset,
          pack_length: known.pack_length,
        });
        return entryDone(u, row);
      }
      if (h.size <= SMALL_FILE) small.push(i);
      else large.push(i);
    });
  });
  const larges = large.map((i) => storeLarge(u, rows[i], results[i] as Ok, attempt));
  if (batch) {
    // Called even with no item: it releases the bytes the Worker kept.
    const started = isoNow(u.opts.now());
    const sealed = await u.pool.seal(batch, small, {
      source: u.cs.source,
      changeset: u.cs.id,
      created: started,
    });
    const entries: FragmentEntry<Settled>[] = [];
    const loose: Promise<void>[] = [];
    sealed.spans.forEach((span, k) => {
      const i = small[k];
      const blobId = (results[i] as Ok).blobId;
      const item = settled(rows[i], results[i] as Ok, started);
      if (span.packed) {
        entries.push({ blobId, start: span.start, end: span.end, item });
      } else {
        const body = bytesBody(sealed.buffer.subarray(span.start, span.end));
        loose.push(u.puts.run(async () => {
          crashPoint("put-start");
          const info = await u.repo.putBlob(blobId, body);
          crashPoint("put-end");
          await u.confirmer.add(
            [{ ...item, storedSize: info.size, ref: info.ref ?? null }],
            info.size,
          );
        }));
      }
      entryDone(u, rows[i]);
    });
    await u.packs.add(sealed.buffer.subarray(0, sealed.fragmentEnd), entries);
    await Promise.all(loose);
  }
  await Promise.all(larges);
}

/**
 * Seals and stores one large file. Into a local repository a Worker writes the object itself;
 * elsewhere its parts stream through this thread to the backend. Either way a file that seals
 * to less than the pack threshold goes into a pack instead. A file that changed since it was
 * hashed is read again.
 */
async function storeLarge(u: Upload, row: FileRow, h: Ok, attempt: number): Promise<void> {
  const header = blobHeader(u, row, h);
  const item = settled(row, h, isoNow(u.opts.now()));
  try {
    const direct = u.source.root !== null ? u.repo.directTarget(h.blobId) : null;
    let container: Uint8Array | null = null;
    let written = false;
    if (direct !== null) {
      try {
        crashPoint("put-start");
        const r = await u.pool.largeTo(u.source.root!, header, direct);
        if ("size" in r) {
          crashPoint("put-end");
          await u.confirmer.add([{ ...item, storedSize: r.size }], r.size);
          written = true;
        } else container = r.container;
      } catch (e) {
        // Not written: the usual way, through the backend stack, says why or succeeds.
        if (!(e instanceof DirectWriteError)) throw e;
      }
    }
    if (!written && container === null) container = await putLarge(u, header, item);
    if (container !== null) {
      await u.packs.add(concat([entryFrame(h.blobId, container.length), container]), [
        {
          blobId: h.blobId,
          start: ENTRY_FRAME_BYTES,
          end: ENTRY_FRAME_BYTES + container.length,
          item,
        },
      ]);
    }
  } catch (e) {
    if (!causedByBody(e)) throw e;
    if (attempt < CHANGE_RETRIES) return storeRows(u, [row], attempt + 1);
    const why = bodyMessage(e);
    return entryFailed(
      u,
      row,
      why === "changed while it was read"
        ? `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`
        : why,
    );
  }
  entryDone(u, row);
}

/**
 * Streams a large file's sealed parts to the backend as a loose blob and confirms it; returns
 * the container instead when the whole of it stays under the pack threshold.
 */
async function putLarge(u: Upload, header: BlobHeader, item: Settled): Promise<Uint8Array | null> {
  const threshold = u.repo.config.pack_threshold;
  const it = u.source.large(header)[Symbol.asyncIterator]();
  try {
    const held: Uint8Array[] = [];
    let heldBytes = 0;
    while (heldBytes < threshold) {
      const r = await it.next();
      if (r.done) return concat(held);
      for (const p of r.value) {
        held.push(p);
        heldBytes += p.length;
      }
    }
    // The first attempt continues the stream begun here; a retry seals the file again.
    let first = true;
    crashPoint("put-start");
    const info = await u.puts.run(() =>
      u.repo.putBlob(item.blobId, {
        open() {
          if (!first) return u.source.large(header);
          first = false;
          return (async function* () {
            yield held;
            while (true) {
              const r = await it.next();
              if (r.done) return;
              yield r.value;
            }
          })();
        },
      })
    );
    crashPoint("put-end");
    await u.confirmer.add([{ ...item, storedSize: info.size, ref: info.ref ?? null }], info.size);
    return null;
  } finally {
    await it.return?.();
  }
}

/** True when an error (or any error in its cause chain) came from reading the put's body. */
function causedByBody(e: unknown): boolean {
  for (let c = e; c instanceof Error; c = c.cause) {
    if (c instanceof BodyError) return true;
  }
  return false;
}

/** The message of the BodyError in an error's cause chain. */
function bodyMessage(e: unknown): string {
  for (let c = e; c instanceof Error; c = c.cause) {
    if (c instanceof BodyError) return c.message;
  }
  return String(e);
}
