// The index catches up with the repository: complete changesets it does not know (pushed from
// another machine, with another index) are read from their manifests and recorded, so that a
// push plans against the latest state of its source, wherever that was pushed from.

import type { ObjectInfo } from "../backends/backend.ts";
import { type Index, toDb } from "../index/sqlite.ts";
import type { FileRow } from "../index/types.ts";
import {
  entryLocation,
  listManifests,
  type ManifestEntry,
  type ManifestHeader,
  metaOfEntry,
  readManifest,
  readRewriteMark,
} from "./manifest.ts";
import type { Repository } from "./repository.ts";
import { blobKey, packKey } from "./layout.ts";

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
    host: typeof h.host === "string" ? h.host : null,
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
  /** Changesets forgotten elsewhere (see `forgottenElsewhere`), dropped from the index. */
  dropped: string[];
  /** Changesets whose rows were taken again from their rewritten manifests. */
  resynced: string[];
  /** Entries of unfinished pushes set back to pending: the object they were stored in is gone. */
  reopened?: number;
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
  const out: CatchUpResult = { imported: [], problems: [], dropped: [], resynced: [] };
  const listed = await listManifests(repo);
  const unknown = listed.filter((id) => {
    const row = index.getChangeset(id);
    return row === undefined || (row.status === "failed" && row.error !== FORGOTTEN);
  });
  const present = new Set(listed);
  const mark = await readRewriteMark(repo);
  const markChanged = mark !== null && mark !== rewriteMarkSeen(index);
  const complete = index.listChangesets().filter((c) => c.status === "complete");
  if (complete.length === 0) {
    // An empty index takes every manifest as it is now (below).
    if (mark !== null) setRewriteMarkSeen(index, mark);
  } else if (
    (mark !== null && mark !== rewriteMarkSeen(index)) ||
    complete.some((c) => !present.has(c.id))
  ) {
    await resyncAfterForget(repo, index, listed, out);
    if (mark !== null && out.problems.length === 0) setRewriteMarkSeen(index, mark);
  }
  // A prune elsewhere deletes what no manifest names: also what this index's own unfinished
  // pushes stored. Their rows that trust a deleted object go back to pending (a resume stores
  // them again), before anything builds on them.
  if (markChanged) out.reopened = await recheckUnfinished(repo, index);
  if (unknown.length === 0) return out;
  const read: ReadManifest[] = [];
  for (const id of unknown) {
    try {
      read.push(await readManifest(repo, id));
    } catch (e) {
      if (out.problems.some((p) => p.object === `changesets/${id}`)) continue;
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

/** The rewrite mark of the repository when this index last compared itself with every manifest. */
export function rewriteMarkSeen(index: Index): string | null {
  return index.getMeta("rewrites") ?? null;
}

/** Records that this index agrees with every manifest as of the rewrite mark `mark`. */
export function setRewriteMarkSeen(index: Index, mark: string): void {
  index.setMeta("rewrites", mark);
}

/** Removes a changeset and its rows from the index. */
export function dropChangeset(index: Index, id: string): void {
  index.db.prepare("DELETE FROM files WHERE changeset = ?").run(id);
  index.db.prepare("DELETE FROM changesets WHERE id = ?").run(id);
}

/**
 * Gives every blob that complete changesets still name, and that no row calls confirmed any
 * more (the confirming changeset was forgotten), a confirmed row: the oldest that names it.
 */
export function promoteConfirmed(index: Index): void {
  // The oldest row is the one of the oldest changeset (ids are ULIDs), then the first path.
  const chosen = `status = 'present' AND action = 'write' AND blob_id IS NOT NULL
       AND changeset IN (SELECT id FROM changesets WHERE status = 'complete')
       AND NOT EXISTS (SELECT 1 FROM files g WHERE g.blob_id = files.blob_id
                         AND g.status = 'confirmed')
       AND NOT EXISTS (SELECT 1 FROM files o JOIN changesets oc ON oc.id = o.changeset
                        WHERE o.blob_id = files.blob_id AND oc.status = 'complete'
                          AND o.status = 'present' AND o.action = 'write'
                          AND (o.changeset < files.changeset
                               OR (o.changeset = files.changeset AND o.path < files.path)))`;
  const touched = index.db.prepare(`SELECT DISTINCT changeset FROM files WHERE ${chosen}`)
    .all() as { changeset: string }[];
  if (touched.length === 0) return;
  index.db.prepare(`UPDATE files SET status = 'confirmed' WHERE ${chosen}`).run();
  // Their counts (uploaded, present) changed with them.
  for (const { changeset } of touched) index.setStatus(changeset, "complete");
}

/** True when the index rows of a changeset say what its manifest says (parent and places). */
function agrees(index: Index, m: ReadManifest): boolean {
  const row = index.getChangeset(m.header.id);
  if (!row || row.parent !== m.header.parent || row.chain !== m.header.chain) return false;
  const rows = new Map(
    index.filesOf(m.header.id).filter((f) => f.status === "confirmed" || f.status === "present")
      .map((f) => [f.path, f]),
  );
  if (rows.size !== m.entries.length) return false;
  for (const e of m.entries) {
    const f = rows.get(e.path);
    if (!f || f.action !== e.action || f.blob_id !== (e.blob_id ?? null)) return false;
    if (f.pack !== (e.pack ?? null) || (e.pack !== undefined && f.pack_offset !== e.offset)) {
      return false;
    }
  }
  return true;
}

/**
 * Takes again from their manifests the rows of the complete changesets whose rows disagree with
 * them (rewritten by a forget or prune this index did not see). Each keeps its place in the
 * order of its source, and what tells a push whether an unchanged entry's file changed.
 */
export function resyncChangesets(index: Index, manifests: Iterable<ReadManifest>): string[] {
  const stale = [...manifests].filter((m) => {
    const row = index.getChangeset(m.header.id);
    return row !== undefined && row.status === "complete" && !agrees(index, m);
  });
  if (stale.length === 0) return [];
  index.tx(() => {
    const keepInode = index.db.prepare(
      "UPDATE files SET inode = ?, ctime = ? WHERE changeset = ? AND path = ?",
    );
    for (const m of stale) {
      const old = new Map(index.filesOf(m.header.id).map((f) => [f.path, f]));
      index.db.prepare("DELETE FROM files WHERE changeset = ?").run(m.header.id);
      index.updateChangeset(m.header.id, { parent: m.header.parent, chain: m.header.chain });
      insertManifestFiles(index, m, { seen: new Set() });
      index.setStatus(m.header.id, "complete");
      for (const e of m.entries) {
        const f = old.get(e.path);
        if (f && f.file_hash === (e.file_hash ?? null) && f.inode !== null) {
          keepInode.run(f.inode, f.ctime, m.header.id, toDb(e.path));
        }
      }
    }
    promoteConfirmed(index);
  });
  return stale.map((m) => m.header.id);
}

/**
 * Complete changesets of the index whose manifest is gone because a forget elsewhere removed
 * them: no manifest names them as parent any more, and their source has a newer one (a forget
 * always keeps the newest). A manifest that is gone otherwise (lost) stays, for check to report.
 */
function forgottenElsewhere(index: Index, headers: ManifestHeader[]): string[] {
  const present = new Set(headers.map((h) => h.id));
  const parents = new Set(headers.map((h) => h.parent));
  const newest = new Map<string, string>();
  for (const h of headers) if ((newest.get(h.source) ?? "") < h.id) newest.set(h.source, h.id);
  return index.listChangesets().filter((c) =>
    c.status === "complete" && !present.has(c.id) && !parents.has(c.id) &&
    (newest.get(c.source) ?? "") > c.id
  ).map((c) => c.id);
}

/**
 * After a forget or prune with another index (changesets gone, or a new rewrite mark): every
 * manifest is read, the changesets forgotten are dropped and those rewritten taken again, so
 * that this index never trusts a blob that is gone.
 */
async function resyncAfterForget(
  repo: Repository,
  index: Index,
  listed: string[],
  out: CatchUpResult,
): Promise<void> {
  const read: ReadManifest[] = [];
  for (const id of listed) {
    try {
      read.push(await readManifest(repo, id));
    } catch (e) {
      out.problems.push({
        object: `changesets/${id}`,
        message: e instanceof Error ? e.message : String(e),
      });
    }
  }
  if (out.problems.length > 0) return;
  out.dropped = forgottenElsewhere(index, read.map((m) => m.header));
  index.tx(() => {
    for (const id of out.dropped) dropChangeset(index, id);
  });
  out.resynced = resyncChangesets(index, read);
  index.tx(() => promoteConfirmed(index));
}

/**
 * Entries of unfinished changesets (pending, uploading) that the index holds as stored in an
 * object the repository no longer has: set back to pending, their location cleared. Returns
 * how many entries were reopened.
 */
export async function recheckUnfinished(repo: Repository, index: Index): Promise<number> {
  const rows = index.db.prepare(
    `SELECT DISTINCT blob_id, pack FROM files
      WHERE status IN ('confirmed', 'present') AND blob_id IS NOT NULL
        AND changeset IN (SELECT id FROM changesets WHERE status IN ('pending', 'uploading'))`,
  ).all() as { blob_id: string; pack: string | null }[];
  const exists = new Map<string, boolean>();
  const gone: { blob_id: string; pack: string | null }[] = [];
  for (const r of rows) {
    const key = r.pack === null ? blobKey(r.blob_id) : packKey(r.pack);
    let there = exists.get(key);
    if (there === undefined) {
      there = (await repo.backend.stat(key)) !== null;
      exists.set(key, there);
    }
    if (!there) gone.push(r);
  }
  if (gone.length === 0) return 0;
  let reopened = 0;
  const reopen = index.db.prepare(
    `UPDATE files SET status = 'pending', confirmed = NULL, stored_size = NULL, ref = NULL,
            pack = NULL, pack_offset = NULL, pack_length = NULL
      WHERE blob_id = ? AND pack IS ? AND status IN ('confirmed', 'present')
        AND changeset IN (SELECT id FROM changesets WHERE status IN ('pending', 'uploading'))`,
  );
  index.tx(() => {
    for (const g of gone) reopened += Number(reopen.run(g.blob_id, g.pack).changes);
  });
  return reopened;
}
