// Before forget or prune change anything: the index catches up with the repository, finishes
// what an interrupted forget left (manifests of forgotten changesets still stored), and takes
// from the manifests any rewrite it missed (a forget or prune killed between its manifest and
// its index transaction). Every manifest is read and verified: what they name is what is live.

import { type Index, toDb } from "../index/sqlite.ts";
import { catchUpIndex, insertManifestFiles, type ReadManifest } from "../repository/catch_up.ts";
import {
  deleteManifest,
  hasManifest,
  listManifests,
  readManifest,
} from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";
import { crashPoint } from "../testing/crash.ts";
import { dropChangeset, forgottenIds, promoteConfirmed } from "./rows.ts";

/** Finishes forgetting the changesets the index marks as forgotten: manifests, then rows. */
export async function finishForgotten(repo: Repository, index: Index): Promise<string[]> {
  const ids = forgottenIds(index);
  if (ids.length === 0) return ids;
  for (const id of ids) {
    if (await hasManifest(repo, id)) {
      await deleteManifest(repo, id);
      crashPoint("forget-delete");
    }
  }
  await repo.flush();
  index.tx(() => {
    for (const id of ids) dropChangeset(index, id);
    promoteConfirmed(index);
  });
  return ids;
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
 * Brings the index in line with the repository and returns every manifest, verified. Throws
 * when a manifest cannot be read or a complete changeset has none: what is live is then
 * unknown, and nothing may be deleted.
 */
export async function reconcile(
  repo: Repository,
  index: Index,
  opts: { dryRun?: boolean } = {},
): Promise<Map<string, ReadManifest>> {
  const caught = await catchUpIndex(repo, index);
  if (caught.problems.length > 0) {
    const p = caught.problems[0];
    throw new Error(
      `${p.object} cannot be read (${p.message}); nothing was changed: run "n2s check"`,
    );
  }
  if (!opts.dryRun) await finishForgotten(repo, index);
  const manifests = new Map<string, ReadManifest>();
  for (const id of await listManifests(repo)) {
    try {
      manifests.set(id, await readManifest(repo, id));
    } catch (e) {
      throw new Error(
        `changesets/${id} cannot be read (${e instanceof Error ? e.message : e}); nothing ` +
          `was changed: run "n2s check"`,
      );
    }
  }
  for (const c of index.listChangesets()) {
    if (c.status === "complete" && !manifests.has(c.id) && !opts.dryRun) {
      throw new Error(
        `changeset ${c.id} is complete in the index but its manifest is missing; nothing was ` +
          `changed: run "n2s check"`,
      );
    }
  }
  const stale = [...manifests.values()].filter((m) => !agrees(index, m));
  if (stale.length > 0) {
    index.tx(() => {
      for (const m of stale) {
        // The changeset's row stays (its place in the order of its source), its rows go.
        const keep = new Map(index.filesOf(m.header.id).map((f) => [f.path, f]));
        index.db.prepare("DELETE FROM files WHERE changeset = ?").run(m.header.id);
        index.updateChangeset(m.header.id, { parent: m.header.parent, chain: m.header.chain });
        insertManifestFiles(index, m, { seen: new Set() });
        index.setStatus(m.header.id, "complete");
        // What tells a push whether a file changed is kept where the entry did not change.
        for (const e of m.entries) {
          const old = keep.get(e.path);
          if (old && old.file_hash === (e.file_hash ?? null) && old.inode !== null) {
            index.db.prepare(
              "UPDATE files SET inode = ?, ctime = ? WHERE changeset = ? AND path = ?",
            ).run(old.inode, old.ctime, m.header.id, toDb(e.path));
          }
        }
      }
      promoteConfirmed(index);
    });
  }
  return manifests;
}
