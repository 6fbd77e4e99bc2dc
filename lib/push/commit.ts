// The commit point of a push: once every entry is settled, the changeset's manifest (its
// entries with each blob's location, chained to the parent) is written and made durable, and
// only then is the changeset complete.

import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow } from "../index/types.ts";
import { type ManifestEntry, writeManifest } from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";

/** Writes the manifest of a changeset whose entries are all settled, and marks it complete. */
export async function commitChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  now: () => number,
): Promise<void> {
  const parent = cs.parent ? index.getChangeset(cs.parent) : undefined;
  const counts = index.counts(cs.id);
  const completed = isoNow(now());
  const entries = function* (): Iterable<ManifestEntry> {
    for (const f of index.settledEntriesOf(cs.id)) {
      const e: ManifestEntry = { path: f.path, action: f.action };
      if (f.action === "write") {
        e.file_hash = f.file_hash!;
        e.blob_id = f.blob_id!;
        e.size = f.size!;
        e.mtime = f.mtime!;
        e.mode = f.mode!;
        e.confirmed = f.confirmed!;
        if (f.pack !== null) {
          e.pack = f.pack;
          e.offset = f.pack_offset!;
          e.length = f.pack_length!;
        }
      } else if (f.action === "link") {
        e.target = f.target!;
        if (f.mtime !== null) e.mtime = f.mtime;
      }
      // Links and deletions carry their time too, so a rebuilt index answers exactly as before.
      if (f.action !== "write" && f.confirmed) e.confirmed = f.confirmed;
      yield e;
    }
  };
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
  }, entries);
  await repo.flush();
  index.setStatus(cs.id, "complete", { completed, chain: header.chain, error: null });
}
