// Before forget or prune change anything: the index catches up with the repository, finishes
// what an interrupted forget left (manifests of forgotten changesets still stored), and takes
// from the manifests any rewrite it missed (a forget or prune killed between its manifest and
// its index transaction). Every manifest is read and verified: what they name is what is live.

import type { Index } from "../index/sqlite.ts";
import { catchUpIndex, type ReadManifest, resyncChangesets } from "../repository/catch_up.ts";
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
  // A manifest that names a parent no manifest is: a lost one, whose blobs only the recovery
  // tools can still bring back. Prune must not delete them.
  for (const m of manifests.values()) {
    const parent = m.header.parent;
    if (parent !== null && !manifests.has(parent)) {
      throw new Error(
        `changeset ${m.header.id} names parent ${parent}, whose manifest is missing; nothing ` +
          `was changed: run "n2s check"`,
      );
    }
  }
  resyncChangesets(index, manifests.values());
  return manifests;
}
