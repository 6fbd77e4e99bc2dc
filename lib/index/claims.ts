// Claims of a push shared by several workers: each worker takes the pending entries of the
// changeset in batches, marked with its name and a lease; a worker renews its leases while it
// runs, and entries whose lease ran out (their worker died) go to whoever claims next. On
// PostgreSQL a batch is taken with FOR UPDATE SKIP LOCKED, so that workers never wait for each
// other, and leases are timed by the database's clock; on SQLite a transaction serialises them.

import type { FileRow } from "./types.ts";
import { decodeRow, type Index, isoNow, toDb } from "./sqlite.ts";

/** A claimed entry, and whether another worker had claimed it before (its lease ran out). */
export type ClaimedRow = FileRow & { reclaimed: boolean };

/**
 * Claims up to `limit` pending entries of `changeset` that nobody holds (no claim, or a lease
 * that ran out) for `worker`, for `leaseMs`; in path order.
 */
export function claimPending(
  index: Index,
  changeset: string,
  worker: string,
  limit: number,
  leaseMs: number,
): ClaimedRow[] {
  if (index.dialect === "postgres") {
    const rows = index.db.prepare(
      `WITH free AS (
         SELECT changeset, path, claim AS previous FROM files
          WHERE changeset = ? AND status = 'pending' AND (lease IS NULL OR lease < now())
          ORDER BY path LIMIT ? FOR UPDATE SKIP LOCKED)
       UPDATE files f SET claim = ?, lease = now() + make_interval(secs => ?)
         FROM free WHERE f.changeset = free.changeset AND f.path = free.path
       RETURNING f.*, free.previous`,
    ).all(changeset, limit, worker, leaseMs / 1000) as (FileRow & { previous: string | null })[];
    return rows.map(claimed(worker)).sort((a, b) => (a.path < b.path ? -1 : 1));
  }
  return index.tx(() => {
    const now = Date.now();
    const rows = index.db.prepare(
      `SELECT *, claim AS previous FROM files
        WHERE changeset = ? AND status = 'pending' AND (lease IS NULL OR lease < ?)
        ORDER BY path LIMIT ?`,
    ).all(changeset, isoNow(now), limit) as (FileRow & { previous: string | null })[];
    const take = index.db.prepare(
      "UPDATE files SET claim = ?, lease = ? WHERE changeset = ? AND path = ?",
    );
    const until = isoNow(now + leaseMs);
    for (const r of rows) take.run(worker, until, changeset, r.path);
    return rows.map(claimed(worker));
  });
}

function claimed(worker: string) {
  return (r: FileRow & { previous: string | null }): ClaimedRow => {
    const { previous, ...row } = r;
    decodeRow(row);
    return { ...row, reclaimed: previous !== null && previous !== worker };
  };
}

/** Extends the leases of the entries `worker` still holds pending. */
export function renewClaims(
  index: Index,
  changeset: string,
  worker: string,
  leaseMs: number,
): void {
  if (index.dialect === "postgres") {
    index.db.prepare(
      `UPDATE files SET lease = now() + make_interval(secs => ?)
        WHERE changeset = ? AND claim = ? AND status = 'pending'`,
    ).run(leaseMs / 1000, changeset, worker);
    return;
  }
  index.db.prepare(
    "UPDATE files SET lease = ? WHERE changeset = ? AND claim = ? AND status = 'pending'",
  ).run(isoNow(Date.now() + leaseMs), changeset, worker);
}

/** Gives back the entries `worker` holds that are still pending (a worker that stops). */
export function releaseClaims(index: Index, changeset: string, worker: string): void {
  index.db.prepare(
    `UPDATE files SET claim = NULL, lease = NULL
      WHERE changeset = ? AND claim = ? AND status = 'pending'`,
  ).run(changeset, worker);
}

/**
 * Records where the entries of a pack are about to be stored, before the pack is: a worker that
 * reclaims them after this one died finds the pack, when it was stored, instead of sending their
 * content again. The entries stay pending.
 */
export function stagePack(
  index: Index,
  changeset: string,
  packId: string,
  blobs: {
    path: string;
    blobId: string;
    fileHash: string;
    size: number;
    offset: number;
    length: number;
  }[],
): void {
  const stmt = index.db.prepare(
    `UPDATE files SET blob_id = ?, file_hash = ?, size = ?, pack = ?, pack_offset = ?,
        pack_length = ?, stored_size = ?
      WHERE changeset = ? AND path = ? AND status = 'pending'`,
  );
  index.tx(() => {
    for (const b of blobs) {
      stmt.run(
        b.blobId,
        b.fileHash,
        b.size,
        packId,
        b.offset,
        b.length,
        b.length,
        changeset,
        toDb(b.path),
      );
    }
  });
}
