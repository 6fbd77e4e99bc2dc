// The state of a source at one changeset: from the index, or, when the index knows nothing (a
// new machine), from the repository's manifests, verified link by link along the chain.

import type { Index } from "../index/sqlite.ts";
import type { Action } from "../index/types.ts";
import { releaseMemory } from "../perf/memory.ts";
import { addMeta, type ManifestEntry, readManifest } from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";

/** One path of a restored state: a manifest entry's fields, without its confirmation time. */
export type StateEntry = Omit<ManifestEntry, "confirmed" | "action"> & {
  action: Exclude<Action, "delete">;
};

/** The state of a source at a changeset, from the index. */
export function stateFromIndex(index: Index, changesetId: string): StateEntry[] {
  const cs = index.getChangeset(changesetId);
  if (!cs) throw new Error(`no changeset ${changesetId} in the index`);
  if (cs.status !== "complete") {
    throw new Error(`changeset ${cs.id} is ${cs.status}, not complete; push again to resume it`);
  }
  const state = index.restoreStateAt(index.chain(cs.source, cs.id), (s): StateEntry => {
    const e: StateEntry = { path: s.path, action: s.action as StateEntry["action"] };
    if (s.file_hash !== null) e.file_hash = s.file_hash;
    if (s.blob_id !== null) e.blob_id = s.blob_id;
    if (s.size !== null) e.size = s.size;
    if (s.mtime !== null) e.mtime = s.mtime;
    if (s.mode !== null) e.mode = s.mode;
    if (s.target !== null) e.target = s.target;
    if (s.pack !== null) {
      e.pack = s.pack;
      e.offset = s.pack_offset!;
      e.length = s.pack_length!;
    }
    addMeta(e, s.meta);
    return e;
  });
  const out = [...state.values()];
  state.clear();
  index.shrinkMemory();
  // Reading 50,000 rows leaves tens of MiB of garbage and a grown young generation: give it
  // back before the restore starts its Workers.
  releaseMemory();
  return out;
}

/**
 * The state of a source at a changeset, from the repository's manifests alone: the manifest and
 * its parents are read and verified (each chain digest must match its parent's), then replayed.
 */
export async function stateFromManifests(
  repo: Repository,
  changesetId: string,
): Promise<StateEntry[]> {
  const chain: { entries: ManifestEntry[] }[] = [];
  let id: string | null = changesetId;
  let childParentChain: string | null | undefined = undefined;
  while (id) {
    const m = await readManifest(repo, id);
    if (childParentChain !== undefined && m.header.chain !== childParentChain) {
      throw new Error(`changeset ${id}: its chain digest does not match what its child recorded`);
    }
    childParentChain = m.header.parent_chain;
    chain.push(m);
    id = m.header.parent;
  }
  if (childParentChain !== null && childParentChain !== undefined) {
    throw new Error(`changeset chain of ${changesetId} is missing its first changeset`);
  }
  const state = new Map<string, StateEntry>();
  for (const m of chain.reverse()) {
    for (const e of m.entries) {
      if (e.action === "delete") state.delete(e.path);
      else {
        const { confirmed: _, ...rest } = e;
        state.set(e.path, { ...rest, action: e.action });
      }
    }
  }
  return [...state.values()];
}
