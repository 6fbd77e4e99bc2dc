// The state of a source at one changeset: from the index, or, when the index knows nothing (a
// new machine), from the repository's manifests, verified link by link along the chain.

import type { Index } from "../index/sqlite.ts";
import type { Action } from "../index/types.ts";
import { releaseMemory } from "../perf/memory.ts";
import { NotFoundError } from "../backends/backend.ts";
import {
  addMeta,
  listManifests,
  type ManifestEntry,
  readManifest,
} from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";

/** One path of a restored state: a manifest entry's fields, without its confirmation time. */
export type StateEntry = Omit<ManifestEntry, "confirmed" | "action"> & {
  action: Exclude<Action, "delete">;
};

/** A state to restore, and what is known to be missing from it (a restore then exits 1). */
export interface PullState {
  entries: StateEntry[];
  problems: { path: string; message: string }[];
}

/** The problem a hole in a chain is: what it costs the restore. */
function holeProblem(changesetId: string, missing: string, why: string) {
  return {
    path: "",
    message: `changeset ${missing}, in the chain of ${changesetId}, ${why}: files it wrote are ` +
      `not restored, and files it deleted may be; run "n2s check" for the whole picture`,
  };
}

/** The state of a source at a changeset, from the index. */
export function stateFromIndex(index: Index, changesetId: string): PullState {
  const cs = index.getChangeset(changesetId);
  if (!cs) throw new Error(`no changeset ${changesetId} in the index`);
  if (cs.status !== "complete") {
    throw new Error(`changeset ${cs.id} is ${cs.status}, not complete; push again to resume it`);
  }
  const { rows, holes } = index.chainOf(cs);
  const problems = holes.map((h) => holeProblem(cs.id, h, "is not in the index as complete"));
  const state = index.restoreStateAt(rows, (s): StateEntry => {
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
  return { entries: out, problems };
}

/**
 * The state of a source at a changeset, from the repository's manifests alone: the manifest and
 * its parents are read and verified (each chain digest must match its parent's), then replayed.
 * A parent that is missing or fails to verify is a hole: the chain goes on from the newest older
 * manifest of the same source, and the hole is reported.
 */
export async function stateFromManifests(
  repo: Repository,
  changesetId: string,
): Promise<PullState> {
  const chain: { entries: ManifestEntry[] }[] = [];
  const problems: PullState["problems"] = [];
  const first = await readManifest(repo, changesetId);
  const source = first.header.source;
  chain.push(first);
  const seen = new Set([changesetId]);
  let ids: string[] | null = null;
  let expected = first.header.parent_chain;
  let id = first.header.parent;
  while (id && !seen.has(id)) {
    let m: Awaited<ReturnType<typeof readManifest>> | null = null;
    let why = "";
    try {
      m = await readManifest(repo, id);
      if (m.header.chain !== expected) {
        why = "does not match the chain digest its child recorded";
        m = null;
      }
    } catch (e) {
      why = e instanceof NotFoundError
        ? "is missing from the repository"
        : `fails to open (${e instanceof Error ? e.message : e})`;
    }
    if (m === null) {
      problems.push(holeProblem(changesetId, id, why));
      // Go on from the newest older manifest of the same source.
      ids ??= await listManifests(repo);
      const missing: string = id;
      id = null;
      for (const older of ids.filter((x) => x < missing).reverse()) {
        try {
          const o = await readManifest(repo, older);
          if (o.header.source !== source || seen.has(older)) continue;
          m = o;
          break;
        } catch {
          // damaged too: keep looking
        }
      }
      if (m === null) break;
    }
    chain.push(m);
    seen.add(m.header.id);
    expected = m.header.parent_chain;
    id = m.header.parent;
  }
  if (problems.length === 0 && expected !== null) {
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
  return { entries: [...state.values()], problems };
}
