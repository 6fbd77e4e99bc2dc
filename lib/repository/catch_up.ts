// The index catches up with the repository: complete changesets it does not know (pushed from
// another machine, with another index) are read from their manifests and recorded, so that a
// push plans against the latest state of its source, wherever that was pushed from.

import type { ObjectInfo } from "../backends/backend.ts";
import type { Index } from "../index/sqlite.ts";
import type { FileRow } from "../index/types.ts";
import {
  entryLocation,
  listManifests,
  type ManifestEntry,
  type ManifestHeader,
  metaOfEntry,
  readManifest,
} from "./manifest.ts";
import type { Repository } from "./repository.ts";

/**
 * The error of a changeset that forget marked as forgotten: its manifest may still be there
 * until forget (or the next forget or prune) deletes it, and catching up must not bring it back.
 */
export const FORGOTTEN = "forgotten";

/** A manifest read from the repository. */
export interface ReadManifest {
  header: ManifestHeader;
  entries: ManifestEntry[];
}

/**
 * Records a complete changeset and its entries from its manifest (inside the caller's
 * transaction). A blob is "confirmed" in the first changeset that names it and "present" in
 * later ones (`seen` carries the blobs met so far), as a push records it; `stored` says what the
 * backend holds of a loose blob or a pack, when the caller listed them.
 */
export function insertManifest(
  index: Index,
  m: ReadManifest,
  opts: { seen: Set<string>; stored?: (loc: ManifestEntry) => ObjectInfo | undefined },
): number {
  const h = m.header;
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
  insertManifestFiles(index, m, opts);
  index.setStatus(h.id, "complete");
  return m.entries.length;
}

/** Records the entries of a manifest as the rows of its changeset (see insertManifest). */
export function insertManifestFiles(
  index: Index,
  m: ReadManifest,
  opts: { seen: Set<string>; stored?: (loc: ManifestEntry) => ObjectInfo | undefined },
): void {
  const h = m.header;
  for (const e of m.entries) {
    let status: FileRow["status"] = "confirmed";
    if (e.action === "write" && e.blob_id) {
      if (opts.seen.has(e.blob_id) || (e.confirmed !== undefined && e.confirmed < h.created)) {
        status = "present";
      }
      opts.seen.add(e.blob_id);
    }
    const loc = e.action === "write" || e.action === "hardlink" ? entryLocation(e) : { pack: null };
    const stored = e.blob_id ? opts.stored?.(e) : undefined;
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
      stored_size: loc.pack === null ? stored?.size ?? null : loc.length,
      ref: stored?.ref ?? null,
      pack: loc.pack,
      pack_offset: loc.pack === null ? null : loc.offset,
      pack_length: loc.pack === null ? null : loc.length,
      meta: metaOfEntry(e),
      ctime: null,
      error: null,
    });
  }
}

/** Parents first: a manifest comes after the one it names as parent when both are new. */
function parentsFirst(ms: ReadManifest[]): ReadManifest[] {
  const byId = new Map(ms.map((m) => [m.header.id, m]));
  const out: ReadManifest[] = [];
  const done = new Set<string>();
  const visit = (m: ReadManifest) => {
    if (done.has(m.header.id)) return;
    done.add(m.header.id);
    const parent = m.header.parent === null ? undefined : byId.get(m.header.parent);
    if (parent) visit(parent);
    out.push(m);
  };
  for (const m of ms) visit(m);
  return out;
}

/** What catching up found. */
export interface CatchUpResult {
  /** Changesets recorded, parents first. */
  imported: string[];
  /** Manifests that could not be read: the index goes on without them. */
  problems: { object: string; message: string }[];
}

/**
 * Records in the index every complete changeset of the repository that it does not hold: one
 * listing of changesets/, then only the manifests the index has never seen (of every source:
 * their source is sealed inside them), and those it holds as failed (a push `recover index`
 * found unfinished, which its own machine completed later). Run while holding the lock of the
 * source about to be pushed, so that no changeset of it can appear meanwhile.
 */
export async function catchUpIndex(
  repo: Repository,
  index: Index,
): Promise<CatchUpResult> {
  const out: CatchUpResult = { imported: [], problems: [] };
  const unknown = (await listManifests(repo)).filter((id) => {
    const row = index.getChangeset(id);
    return row === undefined || (row.status === "failed" && row.error !== FORGOTTEN);
  });
  if (unknown.length === 0) return out;
  const read: ReadManifest[] = [];
  for (const id of unknown) {
    try {
      read.push(await readManifest(repo, id));
    } catch (e) {
      out.problems.push({
        object: `changesets/${id}`,
        message: e instanceof Error ? e.message : String(e),
      });
    }
  }
  const seen = new Set<string>();
  index.tx(() => {
    for (const m of parentsFirst(read)) {
      if (index.getChangeset(m.header.id) !== undefined) {
        index.db.prepare("DELETE FROM files WHERE changeset = ?").run(m.header.id);
        index.db.prepare("DELETE FROM changesets WHERE id = ?").run(m.header.id);
      }
      insertManifest(index, m, { seen });
      out.imported.push(m.header.id);
    }
  });
  return out;
}
