// What forget and prune change in the index: the full rows of a state, a changeset's rows
// replaced by those of its rewritten manifest, forgotten changesets dropped, and blobs that lost
// the row that confirmed them given another one (deduplication trusts confirmed rows only).

import { fromDb, type Index } from "../index/sqlite.ts";
import { dropChangeset, FORGOTTEN, promoteConfirmed } from "../repository/catch_up.ts";

export { dropChangeset, promoteConfirmed };
import type { ChangesetRow, FileRow } from "../index/types.ts";

/** The settled rows of the state after `chain` (path → its newest row; deletions dropped). */
export function fullStateAt(index: Index, chain: ChangesetRow[]): Map<string, FileRow> {
  const stmt = index.db.prepare(
    "SELECT * FROM files WHERE changeset = ? AND status IN ('confirmed', 'present')",
  );
  const state = new Map<string, FileRow>();
  for (const cs of chain) {
    for (const r of stmt.iterate(cs.id) as Iterable<FileRow>) {
      r.path = fromDb(r.path);
      if (r.target !== null) r.target = fromDb(r.target);
      if (r.action === "delete") state.delete(r.path);
      else state.set(r.path, r);
    }
  }
  return state;
}

/** Replaces every row of a changeset (inside the caller's transaction). */
export function replaceFiles(index: Index, changeset: string, rows: FileRow[]): void {
  index.db.prepare("DELETE FROM files WHERE changeset = ?").run(changeset);
  for (const r of rows) index.insertFile({ ...r, changeset });
}

/** Marks changesets as being forgotten: no longer complete, and never caught up again. */
export function markForgotten(index: Index, ids: string[]): void {
  const stmt = index.db.prepare("UPDATE changesets SET status = 'failed', error = ? WHERE id = ?");
  for (const id of ids) stmt.run(FORGOTTEN, id);
}

/** Changesets marked as forgotten whose rows are still there. */
export function forgottenIds(index: Index): string[] {
  return (index.db.prepare(
    "SELECT id FROM changesets WHERE status = 'failed' AND error = ? ORDER BY id",
  ).all(FORGOTTEN) as { id: string }[]).map((r) => r.id);
}

/** Moves every row that names a blob at an old place to its new place in a new pack. */
export function relocate(
  index: Index,
  moves: {
    blobId: string;
    from: { pack: string; offset: number };
    to: { pack: string; offset: number; length: number };
  }[],
): void {
  const stmt = index.db.prepare(
    `UPDATE files SET pack = ?, pack_offset = ?, pack_length = ?
      WHERE blob_id = ? AND pack = ? AND pack_offset = ?`,
  );
  for (const m of moves) {
    stmt.run(m.to.pack, m.to.offset, m.to.length, m.blobId, m.from.pack, m.from.offset);
  }
}

/**
 * Settles as failed the rows that say a blob is stored in an object about to be deleted (rows
 * of failed pushes: no complete changeset names those objects), so deduplication never trusts
 * them again. `gone` holds loose blob ids and pack ids.
 */
export function forgetStoredIn(
  index: Index,
  gone: { blobs: Set<string>; packs: Set<string> },
): void {
  const rows = index.db.prepare(
    `SELECT changeset, path, blob_id, pack FROM files
      WHERE status IN ('confirmed', 'present') AND blob_id IS NOT NULL
        AND changeset IN (SELECT id FROM changesets WHERE status <> 'complete')`,
  ).iterate() as Iterable<
    { changeset: string; path: string; blob_id: string; pack: string | null }
  >;
  const hit: { changeset: string; path: string }[] = [];
  for (const r of rows) {
    if (r.pack === null ? gone.blobs.has(r.blob_id) : gone.packs.has(r.pack)) hit.push(r);
  }
  const stmt = index.db.prepare(
    "UPDATE files SET status = 'failed', error = 'deleted by prune' WHERE changeset = ? AND path = ?",
  );
  for (const h of hit) stmt.run(h.changeset, h.path);
}
