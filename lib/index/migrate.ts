// Moving an index from one engine (or file) to another: every changeset, entry and lost blob
// is copied as it is, in batches, into an empty index of the same repository, and the copy is
// counted against the original before anyone is told to switch.

import type { Index } from "./sqlite.ts";

/** Rows copied per transaction. */
const BATCH = 5000;

/** What a migration copied. */
export interface MigrateResult {
  /** Where the rows came from and went to (passwords hidden). */
  from: string;
  to: string;
  changesets: number;
  files: number;
  lostBlobs: number;
}

/**
 * Copies every row of `from` into `to`, which must be an index of the same repository with no
 * changesets yet; then checks that both hold the same number of changesets and entries, and the
 * same entries for each changeset. Claims of shared pushes are not copied (they are leases of
 * running workers).
 */
export function migrateIndex(
  from: Index,
  to: Index,
  opts: { onProgress?: (changesets: number, total: number) => void } = {},
): MigrateResult {
  if (to.listChangesets().length > 0) {
    throw new Error(
      `index ${to.path} already lists changesets; migrate into an empty index ` +
        `(a new database, or a file that does not exist yet)`,
    );
  }
  const changesets = from.listChangesets();
  let files = 0;
  let done = 0;
  for (const cs of changesets) {
    let batch: ReturnType<Index["filesOf"]> = [];
    const flush = (first: boolean) => {
      const rows = batch;
      batch = [];
      to.tx(() => {
        if (first) to.insertChangeset(cs);
        for (const r of rows) to.insertFile(r);
      });
    };
    let first = true;
    for (const r of from.iterateFilesOf(cs.id)) {
      batch.push(r);
      if (batch.length >= BATCH) {
        flush(first);
        first = false;
      }
    }
    flush(first);
    const n = from.counts(cs.id);
    const m = to.counts(cs.id);
    if (JSON.stringify(n) !== JSON.stringify(m)) {
      throw new Error(
        `index ${to.path}: changeset ${cs.id} has other entries than in ${from.path} after ` +
          `copying (${JSON.stringify(m)} instead of ${JSON.stringify(n)}); nothing in ` +
          `${from.path} changed`,
      );
    }
    files += n.files;
    opts.onProgress?.(++done, changesets.length);
  }
  const lost = from.lostBlobs();
  to.tx(() => {
    for (const b of lost) to.restoreLost(b);
    const mark = from.getMeta("rewrites");
    if (mark !== undefined) to.setMeta("rewrites", mark);
  });
  if (to.listChangesets().length !== changesets.length) {
    throw new Error(`index ${to.path}: not every changeset was copied`);
  }
  return {
    from: from.path,
    to: to.path,
    changesets: changesets.length,
    files,
    lostBlobs: lost.length,
  };
}
