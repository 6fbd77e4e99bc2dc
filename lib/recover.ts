// Disaster recovery: rebuild the index from the repository and a key (manifests first, then the
// headers of blobs that no manifest names), and restore loose blob files with a key file alone.

import { basename } from "node:path";
import { type Backend, blobKey, NotFoundError, type ObjectInfo } from "./backends/backend.ts";
import { type BlobHeader, openBlob } from "./format/blob.ts";
import { isHex256 } from "./format/ids.ts";
import type { KeyFile } from "./format/keyfile.ts";
import type { Suite } from "./format/suite.ts";
import { Index, isoNow } from "./index/sqlite.ts";
import type { ChangesetRow, FileRow } from "./index/types.ts";
import {
  listManifests,
  type ManifestEntry,
  type ManifestHeader,
  readManifest,
} from "./manifest.ts";
import { type PullResult, restoreState, type StateEntry } from "./pull.ts";
import { Repository } from "./repository.ts";

/** A problem met during recovery: an object that could not be read or verified. */
export interface RecoveryProblem {
  /** The object key ("changesets/…", "blobs/…") or file. */
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
  master: Uint8Array,
  blobId: string,
  source: AsyncIterable<Uint8Array>,
): Promise<BlobHeader> {
  for await (const part of openBlob(suite, master, blobId, source)) {
    if ("header" in part) return part.header;
  }
  throw new Error(`blob ${blobId}: no header`);
}

/**
 * Fills an empty index from the repository: every changeset manifest (verified, chain digests
 * included), then the header of every blob that no manifest names (a push that never
 * completed), recorded as a failed changeset so that its blobs are never uploaded again.
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
  const blobs = new Map<string, ObjectInfo>();
  for await (const o of repo.backend.list("blobs/")) {
    const id = o.key.slice(o.key.lastIndexOf("/") + 1);
    if (isHex256(id)) blobs.set(id, o);
  }
  const manifests: { header: ManifestHeader; entries: ManifestEntry[] }[] = [];
  for (const id of await listManifests(repo)) {
    try {
      manifests.push(await readManifest(repo, id));
    } catch (e) {
      result.problems.push({ object: `changesets/${id}`, message: message(e) });
    }
  }
  const named = new Set<string>();
  for (const m of manifests) {
    for (const e of m.entries) if (e.blob_id) named.add(e.blob_id);
  }
  const orphans = [...blobs.keys()].filter((id) => !named.has(id)).sort();
  const headers = new Map<string, BlobHeader>();
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < orphans.length) {
      const id = orphans[next++];
      try {
        const stream = await repo.backend.get(blobKey(id));
        headers.set(id, await readBlobHeader(repo.suite, repo.master, id, stream));
      } catch (e) {
        result.problems.push({ object: blobKey(id), message: message(e) });
      }
      opts.onProgress?.(++done, orphans.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));

  index.tx(() => {
    // A blob is "confirmed" in the first changeset that names it and "present" in later ones,
    // as a push records it (a blob confirmed before a changeset began was already stored).
    const seen = new Set<string>();
    for (const { header: h, entries } of manifests) {
      index.insertChangeset({
        id: h.id,
        name: h.name,
        source: h.source,
        client: h.client,
        root: null,
        parent: h.parent,
        status: "complete",
        files_planned: h.files,
        bytes_planned: h.bytes,
        files_uploaded: 0,
        bytes_uploaded: 0,
        created: h.created,
        completed: h.completed,
        error: null,
        chain: h.chain,
        info: h.info === null || h.info === undefined ? null : JSON.stringify(h.info),
      });
      for (const e of entries) {
        let status: FileRow["status"] = "confirmed";
        if (e.action === "write" && e.blob_id) {
          if (seen.has(e.blob_id) || (e.confirmed !== undefined && e.confirmed < h.created)) {
            status = "present";
          }
          seen.add(e.blob_id);
        }
        const stored = e.blob_id ? blobs.get(e.blob_id) : undefined;
        index.insertFile({
          changeset: h.id,
          path: e.path,
          action: e.action,
          file_hash: e.file_hash ?? null,
          blob_id: e.blob_id ?? null,
          size: e.size ?? null,
          mtime: e.mtime ?? null,
          mode: e.mode ?? null,
          inode: null,
          target: e.target ?? null,
          status,
          started: null,
          // Manifests record when each blob was confirmed; other entries take the commit time.
          confirmed: e.confirmed ?? h.completed,
          stored_size: stored?.size ?? null,
          ref: stored?.ref ?? null,
          error: null,
        });
        result.files++;
      }
      index.setStatus(h.id, "complete");
      result.changesets++;
    }
    const complete = new Set(manifests.map((m) => m.header.id));
    const byChangeset = new Map<string, [string, BlobHeader][]>();
    for (const [id, bh] of headers) {
      if (complete.has(bh.changeset)) {
        result.problems.push({
          object: blobKey(id),
          message: `blob of ${bh.path} names changeset ${bh.changeset}, whose manifest omits it`,
        });
        continue;
      }
      const list = byChangeset.get(bh.changeset) ?? [];
      list.push([id, bh]);
      byChangeset.set(bh.changeset, list);
    }
    for (const [cs, list] of [...byChangeset].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const created = list.map(([, b]) => b.created).sort()[0] ?? isoNow();
      const row: ChangesetRow = {
        id: cs,
        name: null,
        source: list[0][1].source,
        client: "unknown",
        root: null,
        parent: null,
        status: "failed",
        files_planned: list.length,
        bytes_planned: list.reduce((a, [, b]) => a + b.size, 0),
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
      for (const [id, bh] of list) {
        index.insertFile({
          changeset: cs,
          path: bh.path,
          action: "write",
          file_hash: bh.file_hash,
          blob_id: id,
          size: bh.size,
          mtime: bh.mtime,
          mode: bh.mode,
          inode: null,
          target: null,
          status: "confirmed",
          started: null,
          confirmed: bh.created,
          stored_size: blobs.get(id)?.size ?? null,
          ref: blobs.get(id)?.ref ?? null,
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

/** Loose blob files read as a backend: blobs/<aa>/<id> maps to the file named <id>. */
class BlobFilesBackend implements Backend {
  readonly name = "blob files";
  constructor(private readonly files: Map<string, string>) {}

  // deno-lint-ignore require-await
  async get(key: string): Promise<AsyncIterable<Uint8Array>> {
    const file = this.files.get(key.slice(key.lastIndexOf("/") + 1));
    if (file === undefined) throw new NotFoundError(this.name, key);
    return readFileChunks(file);
  }
  stat(): Promise<ObjectInfo | null> {
    return Promise.resolve(null);
  }
  async *list(): AsyncIterable<ObjectInfo> {}
  put(): Promise<ObjectInfo> {
    return Promise.reject(new Error("blob files are read only"));
  }
  delete(): Promise<void> {
    return Promise.reject(new Error("blob files are read only"));
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function* readFileChunks(path: string): AsyncGenerator<Uint8Array> {
  using f = await Deno.open(path, { read: true });
  while (true) {
    const buf = new Uint8Array(4 << 20);
    const n = await f.read(buf);
    if (n === null) return;
    yield buf.subarray(0, n);
  }
}

/** The blob id a blob file's name gives, or an error that says why there is none. */
export function blobIdFromFileName(file: string): string {
  const name = basename(file).toLowerCase();
  if (!isHex256(name)) {
    throw new Error(
      `the file name ${
        basename(file)
      } is not a blob id. A blob's id is authenticated with its content, ` +
        `so the file must keep the name it had under blobs/ (64 hex digits); rename it back`,
    );
  }
  return name;
}

/** One blob file and what its header says (or why it could not be read). */
export type BlobFileInfo =
  | { file: string; blobId: string; header: BlobHeader }
  | { file: string; error: string };

/** Reads and verifies the header of each blob file (content is not read). */
export async function inspectBlobFiles(
  suite: Suite,
  master: Uint8Array,
  files: string[],
): Promise<BlobFileInfo[]> {
  const out: BlobFileInfo[] = [];
  for (const file of files) {
    try {
      const blobId = blobIdFromFileName(file);
      const header = await readBlobHeader(suite, master, blobId, readFileChunks(file));
      out.push({ file, blobId, header });
    } catch (e) {
      out.push({ file, error: message(e) });
    }
  }
  return out;
}

/**
 * Restores loose blob files (copied off any storage) under `target`, each at the path its header
 * names, with only the key file's master key: no repository, index or configuration. Every blob
 * is verified in full before its file appears; failures are reported per file. When several
 * versions of one path are given, the newest is restored and the others are listed as skipped.
 */
export async function decryptBlobFiles(
  suite: Suite,
  master: Uint8Array,
  keyFile: KeyFile,
  files: string[],
  target: string,
): Promise<PullResult & { skipped: { file: string; path: string }[] }> {
  const infos = await inspectBlobFiles(suite, master, files);
  const byId = new Map<string, string>();
  const entries: StateEntry[] = [];
  const problems: { path: string; message: string }[] = [];
  // Several versions of one path: the newest (by modification time, then sealing time) wins.
  const newest = new Map<string, { blobId: string; file: string; header: BlobHeader }>();
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
    byId.set(i.blobId, i.file);
    const h = i.header;
    entries.push({
      path: h.path,
      action: "write",
      file_hash: h.file_hash,
      blob_id: i.blobId,
      size: h.size,
      mtime: h.mtime,
      mode: h.mode,
    });
  }
  const repo = new Repository(
    new BlobFilesBackend(byId),
    { n2s_repository: 1, id: keyFile.repository, format: 1, created: keyFile.created },
    master,
    suite,
    keyFile.id,
  );
  const r = await restoreState(repo, entries, { target });
  return { ...r, problems: [...problems, ...r.problems], skipped };
}
