// One push shared by several workers (processes on one or more machines that share the index,
// the repository and the source's files at the same path): the first to come lists the changes
// into the index; then every worker claims pending entries in batches (lib/index/claims.ts),
// stores them, and claims again; the last to find nothing pending commits the changeset.
//
// A worker that dies leaves its claims to the others once their lease runs out. What it stored
// and did not confirm is found before anything is sent again: each pack's place is recorded in
// the index before the pack is stored, and a loose blob's id says where it is.

import { UlidGenerator } from "../format/ids.ts";
import { type ClaimedRow, claimPending, releaseClaims, renewClaims } from "../index/claims.ts";
import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow, FileRow } from "../index/types.ts";
import { catchUpIndex } from "../repository/catch_up.ts";
import { packKey } from "../repository/layout.ts";
import { acquireLock, type LockHandle, thisHost } from "../repository/lock.ts";
import type { Repository } from "../repository/repository.ts";
import { commitChangeset } from "./commit.ts";
import { beginChangeset } from "./push.ts";
import { planChangeset, stateView } from "./plan.ts";
import type { PushOptions, PushResult } from "./types.ts";
import { uploadChangeset } from "./upload.ts";

/** Entries a worker claims at a time. */
const CLAIM_BATCH = 256;
/** How long a claim holds when its worker does not renew it. */
export const DEFAULT_LEASE_MS = 120_000;

/** Options of a shared push. */
export interface SharedPushOptions extends PushOptions {
  /** How long this worker's claims hold without renewal (default two minutes). */
  leaseMs?: number;
}

/** What one worker of a shared push did. */
export interface SharedPushResult extends PushResult {
  /** This worker's name in the claims. */
  worker: string;
  /** Entries this worker settled. */
  claimed: number;
  /** Whether this worker committed the changeset. */
  committed: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Takes part in the shared push of `opts.source` until its changeset is complete. */
export async function sharedPush(
  repo: Repository,
  index: Index,
  opts: SharedPushOptions,
): Promise<SharedPushResult> {
  const now = opts.now ?? Date.now;
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  const worker = `${thisHost()}:${Deno.pid}:${crypto.randomUUID().slice(0, 8)}`;
  const result: SharedPushResult = {
    changeset: null,
    resumed: [],
    files: 0,
    bytes: 0,
    uploaded: 0,
    uploadedBytes: 0,
    present: 0,
    deleted: 0,
    links: 0,
    unchanged: 0,
    problems: [],
    notes: [],
    worker,
    claimed: 0,
    committed: false,
  };
  try {
    // 1. The changeset: joined when one is being pushed, else listed by this worker, holding the
    // source's lock so that two workers never list it twice.
    let cs = await joinOrPlan(repo, index, opts, now, result);
    if (cs === null) return result;
    result.changeset = cs.id;
    // 2. Claim, store, claim again; prune waits for the shared lock.
    const shared = await acquireLock(repo, {
      kind: "shared",
      command: `push --shared of source ${JSON.stringify(opts.source)}`,
      ...opts.lock,
    });
    try {
      for (;;) {
        await work(repo, index, cs, worker, leaseMs, opts, result);
        cs = index.getChangeset(cs.id)!;
        if (cs.status !== "uploading") break;
        if (index.pendingTotals(cs.id).files === 0) break;
        // The rest is claimed by others: wait for them to finish it, or for their leases to run
        // out (a worker that died).
        await sleep(Math.min(1000, leaseMs / 4));
      }
    } finally {
      await shared.release();
    }
    // 3. Whoever finds nothing pending commits, under the source's lock.
    if (cs.status === "uploading") {
      const lock = await acquireLock(repo, {
        kind: "source",
        source: opts.source,
        command: "push --shared",
        ...opts.lock,
      });
      try {
        cs = index.getChangeset(cs.id)!;
        if (cs.status === "uploading" && index.pendingTotals(cs.id).files === 0) {
          const committed = await commitChangeset(repo, index, cs, now);
          result.problems.push(...committed.problems);
          result.committed = true;
        }
      } finally {
        await lock.release();
      }
    }
    cs = index.getChangeset(cs.id)!;
    if (cs.status !== "complete") {
      throw new Error(
        `changeset ${cs.id} of ${opts.source} is ${cs.status}: another worker is still at it; ` +
          `run the shared push again to help it finish`,
      );
    }
    const c = index.counts(cs.id);
    Object.assign(result, {
      files: c.files,
      bytes: c.bytes,
      uploaded: c.uploaded,
      uploadedBytes: c.uploadedBytes,
      present: c.present,
    });
    for (const f of index.filesOf(cs.id)) {
      if (f.status === "failed") result.problems.push({ path: f.path, message: f.error ?? "" });
    }
    return result;
  } finally {
    await opts.client.close?.();
  }
}

/**
 * The changeset being pushed of the source, or a new one this worker lists into the index
 * (null when nothing changed). Runs under the source's lock, after the index caught up.
 */
async function joinOrPlan(
  repo: Repository,
  index: Index,
  opts: SharedPushOptions,
  now: () => number,
  result: SharedPushResult,
): Promise<ChangesetRow | null> {
  const lock: LockHandle = await acquireLock(repo, {
    kind: "source",
    source: opts.source,
    command: "push --shared",
    ...opts.lock,
  });
  try {
    const caught = await catchUpIndex(repo, index);
    for (const p of caught.problems) {
      result.problems.push({ path: "", message: `${p.object} cannot be read (${p.message})` });
    }
    for (const cs of index.incomplete(opts.source)) {
      if (cs.status === "uploading") return cs;
      // Its listing was cut off (the worker listing it died): listed again below.
      index.setStatus(cs.id, "failed", {
        error: "interrupted while its changes were being listed; listed again",
      });
    }
    const client = opts.client;
    const last = index.lastComplete(opts.source);
    const previous = stateView(index, index.chain(opts.source), last);
    const id = (opts.ids ?? new UlidGenerator(now)).next();
    beginChangeset(index, opts, id, last, now);
    const plan = await planChangeset(index, client, previous, id, result, {
      now,
      onProgress: opts.onProgress,
    });
    for (const p of client.problems ?? []) {
      if (p.note) result.notes.push({ path: p.path, message: p.message });
      else result.problems.push({ path: p.path, message: p.message });
    }
    if (plan.planned === 0 && !client.keepEmpty) {
      index.tx(() => {
        index.db.prepare("DELETE FROM files WHERE changeset = ?").run(id);
        index.db.prepare("DELETE FROM changesets WHERE id = ?").run(id);
      });
      return null;
    }
    index.updateChangeset(id, {
      status: "uploading",
      files_planned: plan.planned,
      bytes_planned: plan.plannedBytes,
    });
    return index.getChangeset(id)!;
  } finally {
    await lock.release();
  }
}

/** Claims and stores batches of the changeset's pending entries until none is free. */
async function work(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  worker: string,
  leaseMs: number,
  opts: SharedPushOptions,
  result: SharedPushResult,
): Promise<void> {
  const renew = setInterval(() => {
    try {
      renewClaims(index, cs.id, worker, leaseMs);
    } catch {
      // the next claim or confirmation says what is wrong
    }
  }, Math.max(250, leaseMs / 3));
  try {
    const r = await uploadChangeset(repo, index, cs, {
      content: cs.root !== null ? { root: cs.root } : { root: "." },
      planned: claims(repo, index, cs.id, worker, leaseMs, opts.now ?? Date.now, result),
      shared: true,
      confirmBatch: opts.confirmBatch,
      compressLevel: opts.compressLevel,
      concurrency: opts.concurrency,
      onProgress: opts.onProgress,
      now: opts.now ?? Date.now,
    });
    result.problems.push(...r.problems);
  } catch (e) {
    releaseClaims(index, cs.id, worker);
    throw e;
  } finally {
    clearInterval(renew);
  }
}

/** Batches of entries claimed for `worker`, each as soon as the pipeline asks for it. */
async function* claims(
  repo: Repository,
  index: Index,
  changeset: string,
  worker: string,
  leaseMs: number,
  now: () => number,
  result: SharedPushResult,
): AsyncGenerator<FileRow[]> {
  for (;;) {
    const rows = claimPending(index, changeset, worker, CLAIM_BATCH, leaseMs);
    if (rows.length === 0) return;
    result.claimed += rows.length;
    const rest = await settleStaged(repo, index, changeset, rows, now);
    if (rest.length > 0) yield rest;
  }
}

/**
 * Entries another worker held whose pack it recorded before storing it: when the pack is in the
 * repository, the entries are confirmed from it (nothing is sent again); the others are returned
 * to be stored.
 */
async function settleStaged(
  repo: Repository,
  index: Index,
  changeset: string,
  rows: ClaimedRow[],
  now: () => number,
): Promise<FileRow[]> {
  const rest: FileRow[] = [];
  const packs = new Map<string, { size: number; ref: string | null } | null>();
  const found: ClaimedRow[] = [];
  for (const r of rows) {
    if (!r.reclaimed || r.pack === null) {
      rest.push(r);
      continue;
    }
    if (!packs.has(r.pack)) {
      const info = await repo.backend.stat(packKey(r.pack));
      packs.set(r.pack, info === null ? null : { size: info.size, ref: info.ref ?? null });
    }
    if (packs.get(r.pack)) found.push(r);
    else rest.push(r);
  }
  if (found.length > 0) {
    const at = isoNow(now());
    index.tx(() => {
      for (const r of found) {
        index.settleFile(changeset, r.path, {
          status: "confirmed",
          file_hash: r.file_hash,
          blob_id: r.blob_id,
          size: r.size,
          confirmed: at,
          stored_size: r.stored_size,
          ref: packs.get(r.pack!)!.ref,
          pack: r.pack,
          pack_offset: r.pack_offset,
          pack_length: r.pack_length,
        });
      }
    });
  }
  return rest;
}
