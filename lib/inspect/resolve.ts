// Changeset references: an id or a unique prefix of one, `latest` (the newest complete
// changeset, when the repository holds one source) or `latest:SOURCE`.

import type { Backend } from "../backends/backend.ts";
import type { Index } from "../index/sqlite.ts";
import { parseKey } from "../repository/layout.ts";
import { readManifest } from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";

/** A changeset a reference names, and whether the index holds it. */
export interface Located {
  /** The changeset's full id. */
  id: string;
  /** Its source. */
  source: string;
  /** True when the index knows the changeset; false when only the repository's manifests do. */
  inIndex: boolean;
}

/** True when `ref` is `latest` or `latest:SOURCE`. */
export function isLatest(ref: string): boolean {
  return ref === "latest" || ref.startsWith("latest:");
}

/** Ids of every manifest in the repository, read by listing alone (no key needed). */
async function manifestIds(backend: Backend): Promise<string[]> {
  const ids: string[] = [];
  for await (const o of backend.list("changesets/")) {
    const k = parseKey(o.key);
    if (k.kind === "changeset") ids.push(k.id);
  }
  return ids.sort();
}

/**
 * Complete changesets, oldest first: those of the index, and those whose manifests the
 * repository holds and the index does not (pushed with another index), read with the key.
 */
async function completeChangesets(
  index: Index,
  backend: Backend,
  repo: () => Promise<Repository>,
): Promise<Located[]> {
  const rows = index.listChangesets();
  const known = new Set(rows.map((c) => c.id));
  const out: Located[] = rows.filter((c) => c.status === "complete").map((c) => ({
    id: c.id,
    source: c.source,
    inIndex: true,
  }));
  const unknown = (await manifestIds(backend)).filter((id) => !known.has(id));
  if (unknown.length > 0) {
    const r = await repo();
    for (const id of unknown) {
      try {
        out.push({ id, source: (await readManifest(r, id)).header.source, inIndex: false });
      } catch {
        // A manifest that does not open is no candidate; "n2s check" names it.
      }
    }
  }
  return out.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * The changeset `ref` names. An id prefix is looked up in the index, then among the manifests
 * in the repository; `latest` and `latest:SOURCE` take the newest complete changeset.
 */
export async function locateChangeset(
  index: Index,
  backend: Backend,
  repo: () => Promise<Repository>,
  ref: string,
): Promise<Located> {
  if (isLatest(ref)) {
    const all = await completeChangesets(index, backend, repo);
    const source = ref === "latest" ? undefined : ref.slice("latest:".length);
    if (source === undefined) {
      const sources = [...new Set(all.map((c) => c.source))].sort();
      if (sources.length > 1) {
        throw new Error(
          `"latest" is ambiguous: the repository holds ${sources.length} sources; name one with ` +
            sources.map((s) => `latest:${s}`).join(", "),
        );
      }
    }
    const mine = source === undefined ? all : all.filter((c) => c.source === source);
    if (mine.length === 0) {
      const sources = [...new Set(all.map((c) => c.source))].sort();
      throw new Error(
        source === undefined
          ? `"latest": no complete changeset in ${backend.name} yet`
          : `"${ref}": no complete changeset of source "${source}"` +
            (sources.length ? `; sources: ${sources.join(", ")}` : ""),
      );
    }
    return mine[mine.length - 1];
  }
  const prefix = ref.toUpperCase();
  if (index.listChangesets().some((c) => c.id.startsWith(prefix))) {
    const row = index.resolveChangeset(ref);
    return { id: row.id, source: row.source, inIndex: true };
  }
  // No index (a fresh machine), or an index that never saw this changeset (pushed from another
  // machine): the manifests in the repository are enough.
  const ids = (await manifestIds(backend)).filter((m) => m.startsWith(prefix));
  if (ids.length !== 1) {
    throw new Error(
      ids.length === 0
        ? `no changeset matches "${ref}" in ${backend.name}; see "n2s status"`
        : `"${ref}" matches several changesets; give more characters of the id`,
    );
  }
  const r = await repo();
  return { id: ids[0], source: (await readManifest(r, ids[0])).header.source, inIndex: false };
}
