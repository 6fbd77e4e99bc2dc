// Disaster recovery: rebuild the index from the repository and a key (manifests first, then the
// blobs that no manifest names, loose or in packs), and restore loose blob files and pack files
// with a key file alone.

import { basename } from "node:path";
import {
  type Backend,
  type ByteRange,
  NotFoundError,
  type ObjectInfo,
} from "./backends/backend.ts";
import { type BlobHeader, openBlob } from "./format/blob.ts";
import { bytesEqual } from "./format/bytes.ts";
import { isHex256, type RepoKeys, repoKeys } from "./format/ids.ts";
import type { KeyFile } from "./format/keyfile.ts";
import {
  ENTRY_FRAME_BYTES,
  findPackEntries,
  isPack,
  PACK_PREAMBLE,
  type PackEntry,
} from "./format/pack.ts";
import type { Suite } from "./format/suite.ts";
import { pathMatcher } from "./glob.ts";
import { Index, isoNow, parseIndexLocation } from "./index/sqlite.ts";
import type { ChangesetRow } from "./index/types.ts";
import { type PullResult, restoreState } from "./pull/restore.ts";
import type { StateEntry } from "./pull/state.ts";
import { blobKey, packKey } from "./repository/layout.ts";
import { insertManifest, promoteConfirmed, setRewriteMarkSeen } from "./repository/catch_up.ts";
import {
  entryLocation,
  listManifests,
  type ManifestEntry,
  type ManifestHeader,
  readManifest,
  readRewriteMark,
} from "./repository/manifest.ts";
import {
  type BlobLocation,
  DEFAULT_PACK_SIZE,
  DEFAULT_PACK_THRESHOLD,
  Repository,
} from "./repository/repository.ts";

/** A problem met during recovery: an object that could not be read or verified. */
export interface RecoveryProblem {
  /** The object key ("changesets/…", "blobs/…", "packs/…") or file. */
  object: string;
  message: string;
}

/** What rebuilding the index found. */
export interface RebuildResult {
  /** Changesets rebuilt from their manifests. */
  changesets: number;
  /** Entries rebuilt from manifests. */
  files: number;
  /** Pushes that never completed, rebuilt from the headers of their blobs. */
  incomplete: string[];
  /** Blobs that no manifest names, recorded from their headers. */
  orphanBlobs: number;
  problems: RecoveryProblem[];
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Reads and verifies the header segment of a blob (the body is not read). */
export async function readBlobHeader(
  suite: Suite,
  keys: RepoKeys,
  blobId: string,
  source: AsyncIterable<Uint8Array>,
): Promise<BlobHeader> {
  for await (const part of openBlob(suite, keys, blobId, source)) {
    if ("header" in part) return part.header;
  }
  throw new Error(`blob ${blobId}: no header`);
}

/** Opens a whole blob held in memory; returns its header when every check passes. */
export async function verifyBlob(
  suite: Suite,
  keys: RepoKeys,
  blobId: string,
  container: Uint8Array,
): Promise<BlobHeader> {
  let header: BlobHeader | undefined;
  for await (const part of openBlob(suite, keys, blobId, once(container))) {
    if ("header" in part) header = part.header;
  }
  return header!;
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/** A blob found in storage that no manifest names, with where it lies. */
interface OrphanBlob {
  blobId: string;
  header: BlobHeader;
  loc: BlobLocation;
  info: ObjectInfo;
}

/**
 * The blobs of a pack held in memory that open and verify in full. Entries that do not are
 * reported, and so are bytes that no entry found covers (an entry whose frame was destroyed
 * cannot be found, but its loss is never silent); a damaged entry never hides the others.
 */
export async function intactEntries(
  suite: Suite,
  keys: RepoKeys,
  pack: Uint8Array,
  what: string,
  problems: RecoveryProblem[],
): Promise<{ entry: PackEntry; header: BlobHeader }[]> {
  const out: { entry: PackEntry; header: BlobHeader }[] = [];
  const found = findPackEntries(pack);
  for (const entry of found) {
    try {
      const container = pack.subarray(entry.offset, entry.offset + entry.length);
      out.push({ entry, header: await verifyBlob(suite, keys, entry.blobId, container) });
    } catch (e) {
      problems.push({ object: what, message: `entry at offset ${entry.offset}: ${message(e)}` });
    }
  }
  for (const [from, to] of uncovered(found, pack.length)) {
    problems.push({
      object: what,
      message: `bytes ${from} to ${to - 1} (${to - from} bytes) hold no entry that can be ` +
        `found: an entry there was damaged, its file cannot be restored from this pack`,
    });
  }
  return out;
}

/** The byte ranges of a pack that no found entry (frame and container) covers. */
function uncovered(found: PackEntry[], size: number): [number, number][] {
  const spans = found.map((e) => [e.offset - ENTRY_FRAME_BYTES, e.offset + e.length])
    .sort((a, b) => a[0] - b[0]);
  const gaps: [number, number][] = [];
  let at = PACK_PREAMBLE.length;
  for (const [from, to] of spans) {
    if (from > at) gaps.push([at, from]);
    at = Math.max(at, to);
  }
  if (at < size) gaps.push([at, size]);
  return gaps;
}

/**
 * Fills an empty index from the repository: every changeset manifest (verified, chain digests
 * included), then every blob that no manifest names (a push that never completed): loose blobs
 * by their header, packs that no manifest names entry by entry. Those are recorded as a failed
 * changeset, so that their blobs are never uploaded again.
 */
export async function rebuildIndex(
  repo: Repository,
  index: Index,
  opts: { concurrency?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<RebuildResult> {
  if (index.listChangesets().length > 0) throw new Error(`index ${index.path} is not empty`);
  const result: RebuildResult = {
    changesets: 0,
    files: 0,
    incomplete: [],
    orphanBlobs: 0,
    problems: [],
  };
  // Read first: a forget or prune after it shows as another mark at the next catch-up.
  const mark = await readRewriteMark(repo);
  const blobs = new Map<string, ObjectInfo>();
  for await (const o of repo.listBlobs()) blobs.set(o.id, o);
  const packs = new Map<string, ObjectInfo>();
  for await (const o of repo.listPacks()) packs.set(o.id, o);
  const manifests: { header: ManifestHeader; entries: ManifestEntry[] }[] = [];
  for (const id of await listManifests(repo)) {
    try {
      manifests.push(await readManifest(repo, id));
    } catch (e) {
      result.problems.push({ object: `changesets/${id}`, message: message(e) });
    }
  }
  const named = new Set<string>();
  const namedPacks = new Set<string>();
  for (const m of manifests) {
    for (const e of m.entries) {
      if (e.blob_id) named.add(e.blob_id);
      if (e.pack) namedPacks.add(e.pack);
    }
  }
  // Work on orphans: loose blobs read by their header, packs read whole.
  const jobs: (() => Promise<void>)[] = [];
  const orphans = new Map<string, OrphanBlob>();
  for (const [id, info] of [...blobs].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (named.has(id)) continue;
    jobs.push(async () => {
      try {
        const header = await readBlobHeader(
          repo.suite,
          repo.keys,
          id,
          await repo.readBlob(id, { pack: null }),
        );
        if (!orphans.has(id)) orphans.set(id, { blobId: id, header, loc: { pack: null }, info });
      } catch (e) {
        result.problems.push({ object: blobKey(id), message: message(e) });
      }
    });
  }
  for (const [id, info] of [...packs].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (namedPacks.has(id)) continue;
    jobs.push(async () => {
      try {
        const bytes = await repo.readPack(id);
        for (
          const { entry, header } of await intactEntries(
            repo.suite,
            repo.keys,
            bytes,
            packKey(id),
            result.problems,
          )
        ) {
          if (named.has(entry.blobId) || orphans.has(entry.blobId)) continue;
          orphans.set(entry.blobId, {
            blobId: entry.blobId,
            header,
            loc: { pack: id, offset: entry.offset, length: entry.length },
            info,
          });
        }
      } catch (e) {
        result.problems.push({ object: packKey(id), message: message(e) });
      }
    });
  }
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < jobs.length) {
      await jobs[next++]();
      opts.onProgress?.(++done, jobs.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));

  index.tx(() => {
    // A blob is "confirmed" in the first changeset that names it and "present" in later ones,
    // as a push records it (a blob confirmed before a changeset began was already stored).
    const seen = new Set<string>();
    const stored = (e: ManifestEntry) => {
      const loc = entryLocation(e);
      return loc.pack === null ? blobs.get(e.blob_id!) : packs.get(loc.pack);
    };
    for (const m of manifests) {
      result.files += insertManifest(index, m, { seen, stored });
      result.changesets++;
    }
    // Entries a forget carried into a rewritten manifest were confirmed before it began.
    promoteConfirmed(index);
    if (mark !== null) setRewriteMarkSeen(index, mark);
    const complete = new Set(manifests.map((m) => m.header.id));
    const byChangeset = new Map<string, OrphanBlob[]>();
    for (const o of orphans.values()) {
      const where = o.loc.pack === null ? blobKey(o.blobId) : packKey(o.loc.pack);
      if (complete.has(o.header.changeset)) {
        result.problems.push({
          object: where,
          message:
            `blob of ${o.header.path} names changeset ${o.header.changeset}, whose manifest omits it`,
        });
        continue;
      }
      const list = byChangeset.get(o.header.changeset) ?? [];
      list.push(o);
      byChangeset.set(o.header.changeset, list);
    }
    for (const [cs, list] of [...byChangeset].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const created = list.map((o) => o.header.created).sort()[0] ?? isoNow();
      const row: ChangesetRow = {
        id: cs,
        name: null,
        source: list[0].header.source,
        client: "unknown",
        root: null,
        parent: null,
        status: "failed",
        files_planned: list.length,
        bytes_planned: list.reduce((a, o) => a + o.header.size, 0),
        files_uploaded: 0,
        bytes_uploaded: 0,
        created,
        completed: null,
        error: "rebuilt from blob headers: this push never completed (its manifest is missing); " +
          "its stored files can be restored with decrypt-blob, and the next push stores the rest",
        chain: null,
        info: null,
      };
      index.insertChangeset(row);
      const paths = new Set<string>();
      for (const o of list.sort((a, b) => (a.header.created < b.header.created ? 1 : -1))) {
        // Two blobs of one path in one unfinished push (it was retried): the newest is kept.
        if (paths.has(o.header.path)) continue;
        paths.add(o.header.path);
        const packed = o.loc.pack !== null;
        index.insertFile({
          changeset: cs,
          path: o.header.path,
          action: "write",
          file_hash: o.header.file_hash,
          blob_id: o.blobId,
          size: o.header.size,
          mtime: o.header.mtime,
          mode: o.header.mode,
          inode: null,
          target: null,
          status: "confirmed",
          started: null,
          confirmed: o.header.created,
          stored_size: o.loc.pack === null ? o.info.size : o.loc.length,
          ref: o.info.ref ?? null,
          pack: o.loc.pack,
          pack_offset: packed ? (o.loc as { offset: number }).offset : null,
          pack_length: packed ? (o.loc as { length: number }).length : null,
          meta: null,
          ctime: null,
          error: null,
        });
        result.orphanBlobs++;
      }
      index.setStatus(cs, "failed");
      result.incomplete.push(cs);
    }
  });
  return result;
}

/**
 * Rebuilds the index file at `path`. The new index is built beside it and renamed into place,
 * so an interruption leaves the old file as it was. An existing index that holds changesets
 * (or cannot be opened) is kept as `path.old` when `force` is set, and refused otherwise.
 */
export async function rebuildIndexFile(
  repo: Repository,
  path: string,
  opts: { force?: boolean; onProgress?: (done: number, total: number) => void } = {},
): Promise<RebuildResult & { index: string; previous: string | null }> {
  let previous: string | null = null;
  if (await exists(path)) {
    let busy: string | null = null;
    try {
      const old = Index.open(path, repo.id);
      if (old.listChangesets().length > 0) busy = "it already lists changesets";
      old.close();
    } catch (e) {
      busy = message(e);
    }
    if (busy !== null) {
      if (!opts.force) {
        throw new Error(
          `index ${path} exists (${busy}); add --force to keep it as ${path}.old and rebuild`,
        );
      }
      previous = `${path}.old`;
    }
  }
  const tmp = `${path}.rebuild-${crypto.randomUUID().slice(0, 8)}`;
  const index = Index.open(tmp, repo.id);
  let r: RebuildResult;
  try {
    r = await rebuildIndex(repo, index, opts);
    index.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (e) {
    index.close();
    await removeIndexFiles(tmp);
    throw e;
  }
  index.close();
  if (previous !== null) {
    await removeIndexFiles(previous);
    await Deno.rename(path, previous);
    for (const s of ["-wal", "-shm"]) await Deno.rename(path + s, previous + s).catch(() => {});
  } else {
    await removeIndexFiles(path);
  }
  await removeIndexFiles(tmp, true);
  await Deno.rename(tmp, path);
  return { ...r, index: path, previous };
}

/**
 * Rebuilds the index at `location`: a SQLite file (see rebuildIndexFile), or a PostgreSQL
 * database, rebuilt in place. A database that holds changesets is refused unless `force` is
 * set; then its rows are deleted first (a database has no file to keep aside: its backup is the
 * way back, docs/OPERATIONS.md).
 */
export async function rebuildIndexAt(
  repo: Repository,
  location: string,
  opts: { force?: boolean; onProgress?: (done: number, total: number) => void } = {},
): Promise<RebuildResult & { index: string; previous: string | null }> {
  const where = parseIndexLocation(location);
  if (where.kind === "sqlite") return await rebuildIndexFile(repo, where.path, opts);
  const index = Index.open(where.url, repo.id);
  try {
    if (index.listChangesets().length > 0) {
      if (!opts.force) {
        throw new Error(
          `index ${index.path} already lists changesets; add --force to delete its rows and ` +
            `rebuild them from the repository`,
        );
      }
      index.tx(() => {
        for (const t of ["files", "lost_blobs", "changesets"]) {
          index.db.prepare(`DELETE FROM ${t}`).run();
        }
        index.db.prepare("DELETE FROM meta WHERE key = 'rewrites'").run();
      });
    }
    const r = await rebuildIndex(repo, index, opts);
    return { ...r, index: index.path, previous: null };
  } finally {
    index.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function removeIndexFiles(path: string, sidecarsOnly = false): Promise<void> {
  for (const s of sidecarsOnly ? ["-wal", "-shm"] : ["", "-wal", "-shm"]) {
    await Deno.remove(path + s).catch(() => {});
  }
}

/** Files read as a read-only backend: each object key maps to one file, ranges included. */
class FileObjects implements Backend {
  readonly name = "blob and pack files";
  constructor(private readonly files: Map<string, string>) {}

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const file = this.files.get(key);
    if (file === undefined) throw new NotFoundError(this.name, key);
    const f = await Deno.open(file, { read: true });
    return (async function* () {
      try {
        let left = range ? range.length : Infinity;
        if (range) await f.seek(range.offset, Deno.SeekMode.Start);
        while (left > 0) {
          const buf = new Uint8Array(Math.min(4 << 20, left));
          const n = await f.read(buf);
          if (n === null) return;
          left -= n;
          yield buf.subarray(0, n);
        }
      } finally {
        f.close();
      }
    })();
  }
  stat(): Promise<ObjectInfo | null> {
    return Promise.resolve(null);
  }
  async *list(): AsyncIterable<ObjectInfo> {}
  put(): Promise<ObjectInfo> {
    return Promise.reject(new Error("blob and pack files are read only"));
  }
  delete(): Promise<void> {
    return Promise.reject(new Error("blob and pack files are read only"));
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The blob id a loose blob file's name gives, or an error that says why there is none. */
export function blobIdFromFileName(file: string): string {
  const name = basename(file).toLowerCase();
  if (!isHex256(name)) {
    throw new Error(
      `the file name ${
        basename(file)
      } is not a blob id. A loose blob's id is authenticated with its content, ` +
        `so the file must keep the name it had under blobs/ (64 hex digits); rename it back ` +
        `(pack files, from packs/, may have any name)`,
    );
  }
  return name;
}

/** One blob in the given files (a loose blob file, or an entry of a pack file). */
export type BlobFileInfo =
  | {
    file: string;
    blobId: string;
    header: BlobHeader;
    /** Where the blob's container lies in the file when the file is a pack. */
    offset?: number;
    length?: number;
  }
  | { file: string; error: string };

async function startsAsPack(file: string): Promise<boolean> {
  using f = await Deno.open(file, { read: true });
  const head = new Uint8Array(8);
  let n = 0;
  while (n < 8) {
    const k = await f.read(head.subarray(n));
    if (k === null) break;
    n += k;
  }
  return isPack(head.subarray(0, n));
}

/**
 * A file to read as a pack: one that starts like a pack, or one whose name is not a blob id and
 * in which pack entries are found (a pack whose first bytes were damaged still gives every intact
 * entry); null for a file to read as a loose blob.
 */
async function readAsPack(file: string): Promise<{ bytes: Uint8Array; preamble: boolean } | null> {
  if (await startsAsPack(file)) {
    const bytes = await Deno.readFile(file);
    return { bytes, preamble: bytesEqual(bytes.subarray(0, PACK_PREAMBLE.length), PACK_PREAMBLE) };
  }
  if (isHex256(basename(file).toLowerCase())) return null;
  const bytes = await Deno.readFile(file);
  return findPackEntries(bytes).length > 0 ? { bytes, preamble: false } : null;
}

/**
 * Reads and verifies what each file holds: a loose blob file's header (content not read), or
 * every entry of a pack file (each verified in full; a damaged entry is reported and the others
 * are still listed).
 */
export async function inspectBlobFiles(
  suite: Suite,
  master: Uint8Array,
  files: string[],
  opts: { patterns?: string[] } = {},
): Promise<BlobFileInfo[]> {
  const match = pathMatcher(opts.patterns ?? []);
  const keys = repoKeys(suite, master);
  const out: BlobFileInfo[] = [];
  for (const file of files) {
    try {
      const asPack = await readAsPack(file);
      if (asPack !== null) {
        const problems: RecoveryProblem[] = [];
        const { bytes, preamble } = asPack;
        if (!preamble) {
          problems.push({
            object: file,
            message: "its first 8 bytes are not a pack's (damaged); the entries in it were read",
          });
        }
        const found = await intactEntries(suite, keys, bytes, file, problems);
        for (const { entry, header } of found) {
          if (!match(header.path)) continue;
          out.push({
            file,
            blobId: entry.blobId,
            header,
            offset: entry.offset,
            length: entry.length,
          });
        }
        for (const p of problems) out.push({ file, error: p.message });
        if (found.length === 0 && problems.length === 0) {
          out.push({ file, error: "a pack with no entry that n2s can find" });
        }
        continue;
      }
      const blobId = blobIdFromFileName(file);
      const header = await readBlobHeader(
        suite,
        keys,
        blobId,
        await new FileObjects(new Map([[blobKey(blobId), file]])).get(blobKey(blobId)),
      );
      if (match(header.path)) out.push({ file, blobId, header });
    } catch (e) {
      out.push({ file, error: message(e) });
    }
  }
  return out;
}

/**
 * Restores blob files and pack files (copied off any storage) under `target`, each blob at the
 * path its header names, with only the key file's master key: no repository, index or
 * configuration. Every blob is verified in full before its file appears; failures are reported
 * per file. When several versions of one path are given, the newest is restored and the others
 * are listed as skipped. `patterns` (globs) choose which paths to restore.
 */
export async function decryptBlobFiles(
  suite: Suite,
  master: Uint8Array,
  keyFile: KeyFile,
  files: string[],
  target: string,
  opts: { patterns?: string[] } = {},
): Promise<PullResult & { skipped: { file: string; path: string }[] }> {
  const infos = await inspectBlobFiles(suite, master, files, opts);
  const objects = new Map<string, string>();
  const packIds = new Map<string, string>();
  const entries: StateEntry[] = [];
  const problems: { path: string; message: string }[] = [];
  // Several versions of one path: the newest (by modification time, then sealing time) wins.
  const newest = new Map<string, Extract<BlobFileInfo, { header: BlobHeader }>>();
  const skipped: { file: string; path: string }[] = [];
  for (const i of infos) {
    if ("error" in i) {
      problems.push({ path: i.file, message: i.error });
      continue;
    }
    const had = newest.get(i.header.path);
    const newer = !had || i.header.mtime > had.header.mtime ||
      (i.header.mtime === had.header.mtime && i.header.created > had.header.created);
    if (!newer) skipped.push({ file: i.file, path: i.header.path });
    else {
      if (had) skipped.push({ file: had.file, path: had.header.path });
      newest.set(i.header.path, i);
    }
  }
  for (const i of newest.values()) {
    const h = i.header;
    const e: StateEntry = {
      path: h.path,
      action: "write",
      file_hash: h.file_hash,
      blob_id: i.blobId,
      size: h.size,
      mtime: h.mtime,
      mode: h.mode,
    };
    if (i.offset !== undefined) {
      // Each pack file gets an id of its own for the restore to read it by.
      let id = packIds.get(i.file);
      if (id === undefined) {
        id = String(packIds.size).padStart(32, "0");
        packIds.set(i.file, id);
        objects.set(packKey(id), i.file);
      }
      e.pack = id;
      e.offset = i.offset;
      e.length = i.length;
    } else {
      objects.set(blobKey(i.blobId), i.file);
    }
    entries.push(e);
  }
  const repo = new Repository(
    new FileObjects(objects),
    {
      n2s_repository: 1,
      id: keyFile.repository,
      format: 2,
      created: keyFile.created,
      pack_size: DEFAULT_PACK_SIZE,
      pack_threshold: DEFAULT_PACK_THRESHOLD,
    },
    master,
    suite,
    keyFile.id,
  );
  const r = await restoreState(repo, entries, { target });
  return { ...r, problems: [...problems, ...r.problems], skipped };
}
