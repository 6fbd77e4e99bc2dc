// A push: take a client's entries, skip what did not change, hash, encrypt and upload the rest
// in bounded memory, confirm uploads in durable batches, and commit the changeset's manifest.

import { type Backend, blobKey, BodyError, bytesBody } from "./backends/backend.ts";
import { type BlobHeader, readFull, sealBlob, type SealResult } from "./format/blob.ts";
import { concat, toHex } from "./format/bytes.ts";
import { blobIdFor, UlidGenerator } from "./format/ids.ts";
import { ContainerWriter, SEGMENT_DATA_MAX } from "./format/container.ts";
import { fromHex } from "./format/bytes.ts";
import { type Index, isoNow } from "./index/sqlite.ts";
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
  /** Files processed at once (default 4). */
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

const SMALL_FILE = SEGMENT_DATA_MAX;
const CHANGE_RETRIES = 3;
const CONFIRM_BATCH = 1000;
const CONFIRM_BYTES = 256 << 20;
const CONFIRM_SECONDS = 5;

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
 */
class Confirmer {
  #waiting: Settled[] = [];
  #bytes = 0;
  #since = Date.now();
  #flushing: Promise<void> | null = null;
  constructor(
    private readonly backend: Backend,
    private readonly index: Index,
    private readonly changeset: string,
    private readonly now: () => number,
    private readonly batch: number = CONFIRM_BATCH,
  ) {}

  add(s: Settled): Promise<void> {
    this.#waiting.push(s);
    this.#bytes += s.storedSize;
    const due = this.#waiting.length >= this.batch || this.#bytes >= CONFIRM_BYTES ||
      Date.now() - this.#since > CONFIRM_SECONDS * 1000;
    return due ? this.flush() : Promise.resolve();
  }

  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#waiting.length === 0) return;
    const batch = this.#waiting;
    this.#waiting = [];
    this.#bytes = 0;
    this.#since = Date.now();
    this.#flushing = (async () => {
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
    })();
    try {
      await this.#flushing;
    } finally {
      this.#flushing = null;
    }
  }
}

/** Pushes one client's changes as a changeset of `source`, resuming an interrupted one first. */
export async function push(repo: Repository, index: Index, opts: PushOptions): Promise<PushResult> {
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
    const resumed = await resume(repo, index, { ...opts, now });
    result.resumed.push(...resumed.resumed);
    result.problems.push(...resumed.problems);

    const last = index.lastComplete(opts.source);
    const previous = stateView(index, index.chain(opts.source), last);
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
    for (const p of client.problems ?? []) {
      if (p.note) result.notes.push({ path: p.path, message: p.message });
      else result.problems.push({ path: p.path, message: p.message });
    }

    if (planned === 0 && !client.keepEmpty) {
      index.tx(() => {
        index.db.prepare("DELETE FROM files WHERE changeset = ?").run(id);
        index.db.prepare("DELETE FROM changesets WHERE id = ?").run(id);
      });
      return result;
    }
    index.updateChangeset(id, { files_planned: planned, bytes_planned: plannedBytes });
    const cs = index.getChangeset(id)!;
    const r = await uploadChangeset(repo, index, cs, {
      open: client.open?.bind(client) ?? ((p) => openLocalFileFast(client.root, p)),
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
  confirmBatch?: number;
  compressLevel?: number;
  concurrency?: number;
  onProgress?: (p: PushProgress) => void;
  now: () => number;
}

/** Uploads the pending entries of a changeset, then writes its manifest and completes it. */
async function uploadChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  opts: UploadOptions,
): Promise<{ problems: EntryProblem[] }> {
  const problems: EntryProblem[] = [];
  index.updateChangeset(cs.id, { status: "uploading" });
  const pending = index.pendingFiles(cs.id);
  const confirmer = new Confirmer(repo.backend, index, cs.id, opts.now, opts.confirmBatch);
  const progress: PushProgress = {
    phase: "upload",
    filesDone: 0,
    filesTotal: pending.length,
    bytesDone: 0,
    bytesTotal: pending.reduce((a, r) => a + (r.size ?? 0), 0),
  };
  let next = 0;
  let fatal: unknown = null;
  const worker = async () => {
    while (fatal === null && next < pending.length) {
      const row = pending[next++];
      try {
        const outcome = await storeFile(repo, index, cs, row, opts);
        if (outcome.kind === "present") {
          index.settleFile(cs.id, row.path, {
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
          await confirmer.add(outcome.settled);
        }
      } catch (e) {
        if (e instanceof EntryError) {
          problems.push({ path: row.path, message: e.message });
          index.settleFile(cs.id, row.path, { status: "failed", error: e.message });
        } else {
          fatal ??= e;
        }
      }
      progress.filesDone++;
      progress.bytesDone += row.size ?? 0;
      opts.onProgress?.(progress);
    }
  };
  const n = Math.max(1, opts.concurrency ?? 4);
  await Promise.all(Array.from({ length: n }, worker));
  if (fatal === null) {
    try {
      await confirmer.flush();
    } catch (e) {
      fatal = e;
    }
  }
  if (fatal !== null) {
    index.updateChangeset(cs.id, { error: String((fatal as Error)?.message ?? fatal) });
    throw fatal;
  }
  opts.onProgress?.({ ...progress, phase: "commit" });
  await commitChangeset(repo, index, cs, opts.now);
  return { problems };
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
      if (st.size <= SMALL_FILE) {
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
    for (const f of index.filesOf(cs.id)) {
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
