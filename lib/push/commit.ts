// The commit point of a push: once every entry is settled, the changeset's manifest (its
// entries with each blob's location, chained to the parent) is written and made durable, and
// only then is the changeset complete.

import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow } from "../index/types.ts";
import { entryOfRow, type ManifestEntry, writeManifest } from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";
import { crashPoint } from "../testing/crash.ts";

/**
 * Gives the hard links whose content was not yet stored when they were planned the content of
 * the path they link to, now that it is settled. Returns the problems of those whose content
 * was not stored (they are settled as failed, and left out of the changeset).
 */
function resolveHardlinks(index: Index, cs: ChangesetRow): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  index.tx(() => {
    for (const h of index.unresolvedHardlinks(cs.id)) {
      const lead = index.getFile(cs.id, h.target!);
      if (lead && (lead.status === "confirmed" || lead.status === "present") && lead.blob_id) {
        index.resolveHardlink(cs.id, h.path, lead);
      } else {
        const message = `a hard link of ${h.target}, which was not stored; it was not stored`;
        index.settleFile(cs.id, h.path, { status: "failed", error: message });
        problems.push({ path: h.path, message });
      }
    }
  });
  return problems;
}

/**
 * Writes the manifest of a changeset whose entries are all settled, and marks it complete.
 * Returns the entries that could not be stored after all (hard links of files that failed).
 */
export async function commitChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  now: () => number,
): Promise<{ problems: { path: string; message: string }[] }> {
  const problems = resolveHardlinks(index, cs);
  const parent = cs.parent ? index.getChangeset(cs.parent) : undefined;
  const counts = index.counts(cs.id);
  const completed = isoNow(now());
  const entries = function* (): Iterable<ManifestEntry> {
    for (const f of index.settledEntriesOf(cs.id)) yield entryOfRow(f);
  };
  crashPoint("manifest");
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
    ...(cs.host ? { host: cs.host } : {}),
  }, entries);
  await repo.flush();
  crashPoint("status");
  index.setStatus(cs.id, "complete", { completed, chain: header.chain, error: null });
  return { problems };
}
