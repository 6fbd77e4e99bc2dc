// `forget`: a retention policy decides which complete changesets of each source are kept; the
// others are forgotten. A kept changeset whose parent is forgotten gets its manifest rewritten
// onto its nearest kept ancestor, carrying every entry by which its state differs from that
// ancestor's (all of its state when none is kept), so no chain depends on a forgotten manifest.
// Order, so that a crash never loses a kept state: rewritten manifests first (durable), then the
// index, then the forgotten manifests are deleted. Their blobs stay until `prune`.

import type { Index } from "../index/sqlite.ts";
import type { ChangesetRow, FileRow } from "../index/types.ts";
import {
  deleteManifest,
  entryOfRow,
  type ManifestHeader,
  rewriteManifest,
  writeRewriteMark,
} from "../repository/manifest.ts";
import { setRewriteMarkSeen } from "../repository/catch_up.ts";
import type { Repository } from "../repository/repository.ts";
import { crashPoint } from "../testing/crash.ts";
import { applyPolicy, type RetentionPolicy } from "./policy.ts";
import { reconcile } from "./reconcile.ts";
import {
  dropChangeset,
  fullStateAt,
  markForgotten,
  promoteConfirmed,
  replaceFiles,
} from "./rows.ts";

/** One changeset and what forget decided for it. */
export interface ForgetDecision {
  /** The changeset's id. */
  id: string;
  /** Its source. */
  source: string;
  /** When it was pushed, UTC ISO-8601. */
  created: string;
  /** True when some rule keeps it; false when it is forgotten. */
  keep: boolean;
  /** The rules that keep it. */
  reasons: string[];
}

/** What a forget did (or, with `dryRun`, would do). */
export interface ForgetResult {
  /** Every complete changeset of the sources concerned, newest first per source. */
  decisions: ForgetDecision[];
  /** Ids of the changesets forgotten (their manifests deleted). */
  forgotten: string[];
  /** Kept changesets whose manifest was rewritten onto their nearest kept ancestor. */
  rewritten: string[];
}

/** Options of `forget`. */
export interface ForgetOptions {
  /** Which changesets to keep; an empty policy is refused. */
  policy: RetentionPolicy;
  /** Only this source (default: every source). */
  source?: string;
  /** Decide and report, change nothing. */
  dryRun?: boolean;
}

/** The rows that take a state from `from` to `to`: changed paths, then deletions. */
function stateDiff(
  from: Map<string, FileRow>,
  to: Map<string, FileRow>,
  deletedAt: string,
): FileRow[] {
  const out: FileRow[] = [];
  for (const [path, r] of to) {
    const a = from.get(path);
    if (a && (a.changeset === r.changeset || sameEntry(a, r))) continue;
    out.push(r);
  }
  for (const [path, a] of from) {
    if (to.has(path)) continue;
    out.push({
      ...a,
      action: "delete",
      file_hash: null,
      blob_id: null,
      size: null,
      mtime: null,
      mode: null,
      inode: null,
      target: null,
      status: "confirmed",
      started: null,
      confirmed: deletedAt,
      stored_size: null,
      ref: null,
      pack: null,
      pack_offset: null,
      pack_length: null,
      meta: null,
      ctime: null,
      error: null,
    });
  }
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

const ENTRY_FIELDS = [
  "action",
  "file_hash",
  "blob_id",
  "size",
  "mtime",
  "mode",
  "target",
  "pack",
  "pack_offset",
  "pack_length",
  "meta",
] as const;

function sameEntry(a: FileRow, b: FileRow): boolean {
  return ENTRY_FIELDS.every((f) => a[f] === b[f]);
}

/** Applies a retention policy (see the module comment). Hold the exclusive lock. */
export async function forget(
  repo: Repository,
  index: Index,
  opts: ForgetOptions,
): Promise<ForgetResult> {
  const manifests = await reconcile(repo, index, { dryRun: opts.dryRun });
  const bySource = new Map<string, ChangesetRow[]>();
  for (const c of index.listChangesets(opts.source)) {
    if (c.status !== "complete") continue;
    bySource.set(c.source, [...(bySource.get(c.source) ?? []), c]);
  }
  const result: ForgetResult = { decisions: [], forgotten: [], rewritten: [] };
  const keep = new Set<string>();
  for (const [source, rows] of [...bySource].sort((a, b) => a[0].localeCompare(b[0]))) {
    for (const d of applyPolicy(rows, (r) => new Date(r.created), opts.policy)) {
      result.decisions.push({
        id: d.item.id,
        source,
        created: d.item.created,
        keep: d.keep,
        reasons: d.reasons,
      });
      if (d.keep) keep.add(d.item.id);
      else result.forgotten.push(d.item.id);
    }
  }
  const forgotten = new Set(result.forgotten);
  if (opts.dryRun || forgotten.size === 0) return result;

  // 1. Kept changesets whose parent goes: manifests rewritten onto the nearest kept ancestor.
  const rebased: { id: string; parent: string | null; rows: FileRow[] }[] = [];
  for (const id of keep) {
    const cs = index.getChangeset(id)!;
    if (cs.parent === null || !forgotten.has(cs.parent)) continue;
    const chain = index.chainOf(cs).rows;
    let at = chain.length - 2;
    while (at >= 0 && !keep.has(chain[at].id)) at--;
    const ancestor = at >= 0 ? chain[at] : null;
    const from = ancestor ? fullStateAt(index, chain.slice(0, at + 1)) : new Map();
    const to = fullStateAt(index, chain);
    const old = manifests.get(id)!.header;
    const rows = stateDiff(from, to, old.completed);
    const header: Omit<ManifestHeader, "link" | "v"> = {
      id,
      name: old.name,
      source: old.source,
      client: old.client,
      parent: ancestor?.id ?? null,
      parent_chain: ancestor ? manifests.get(ancestor.id)!.header.chain : null,
      chain: old.chain,
      created: old.created,
      completed: old.completed,
      files: rows.length,
      bytes: rows.reduce((n, r) => n + (r.action === "write" ? r.size ?? 0 : 0), 0),
      info: old.info,
      ...(old.host !== undefined ? { host: old.host } : {}),
    };
    await rewriteManifest(repo, header, rows.map(entryOfRow));
    crashPoint("forget-manifest");
    rebased.push({ id, parent: header.parent, rows });
    result.rewritten.push(id);
  }
  await repo.flush();
  // Other indexes compare themselves with every manifest when this mark changes.
  const mark = rebased.length > 0 ? await writeRewriteMark(repo) : null;

  // 2. The index: forgotten changesets marked (never caught up again), rewritten ones replaced.
  crashPoint("forget-index");
  index.tx(() => {
    if (mark !== null) setRewriteMarkSeen(index, mark);
    markForgotten(index, result.forgotten);
    for (const r of rebased) {
      replaceFiles(index, r.id, r.rows);
      index.updateChangeset(r.id, { parent: r.parent });
      index.setStatus(r.id, "complete");
    }
    promoteConfirmed(index);
  });

  // 3. The forgotten manifests, then their rows.
  for (const id of result.forgotten) {
    await deleteManifest(repo, id);
    crashPoint("forget-delete");
  }
  await repo.flush();
  index.tx(() => {
    for (const id of result.forgotten) dropChangeset(index, id);
    promoteConfirmed(index);
  });
  return result;
}
