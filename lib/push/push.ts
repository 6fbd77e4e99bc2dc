// A push: take a client's entries, plan what changed, upload it through one pipeline, and
// commit the changeset's manifest; interrupted changesets of the source are completed first.

import { UlidGenerator } from "../format/ids.ts";
import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow } from "../index/types.ts";
import { releaseMemory } from "../perf/memory.ts";
import type { Repository } from "../repository/repository.ts";
import { catchUpIndex } from "../repository/catch_up.ts";
import { hasManifest } from "../repository/manifest.ts";
import {
  acquireLock,
  type LockHandle,
  type LockWaitOptions,
  thisHost,
} from "../repository/lock.ts";
import { commitChangeset } from "./commit.ts";
import type { FileRow } from "../index/types.ts";
import { Queue } from "../scheduler.ts";
import { type Plan, planChangeset, stateView } from "./plan.ts";
import type { EntryProblem, PushOptions, PushProgress, PushResult } from "./types.ts";
import { uploadChangeset, type UploadOptions } from "./upload.ts";

/**
 * Pushes one client's changes as a changeset of `source`, resuming an interrupted one first.
 * The source's lock is held from before the plan to after the commit, and the index first
 * catches up with changesets pushed from elsewhere, so that the new changeset's parent is the
 * newest one of its source in the repository. `repo` may be a promise (a key still being
 * derived); the push waits for it (the lock is sealed with the key), and fails with its error
 * before anything is recorded.
 */
export async function push(
  repoOrPromise: Repository | Promise<Repository>,
  index: Index,
  opts: PushOptions,
): Promise<PushResult> {
  const repoP = Promise.resolve(repoOrPromise);
  repoP.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  const now = opts.now ?? Date.now;
  const ids = opts.ids ?? new UlidGenerator(now);
  const client = opts.client;
  const result: PushResult = {
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
  };
  let lock: LockHandle | undefined;
  try {
    lock = await lockSource(await repoP, index, opts.source, "push", opts.lock, result.problems);
    if (index.incomplete(opts.source).length > 0) {
      const resumed = await resumeLocked(await repoP, index, lock, { ...opts, now });
      result.resumed.push(...resumed.resumed);
      result.problems.push(...resumed.problems);
      // This push lists the changes of a superseded changeset again: a note, not a failure.
      result.notes.push(...resumed.superseded);
    }

    const last = index.lastComplete(opts.source);
    const previous = stateView(index, index.chain(opts.source), last);
    // The walk makes garbage for every entry: memory is given back as it goes, and once the
    // state of the source is loaded.
    releaseMemory();
    const id = ids.next();
    beginChangeset(index, opts, id, last, now);
    const forget = () =>
      index.tx(() => {
        index.db.prepare("DELETE FROM files WHERE changeset = ?").run(id);
        index.db.prepare("DELETE FROM changesets WHERE id = ?").run(id);
      });
    // The upload starts as soon as the key is there and the first entries are planned, and
    // runs beside the walk; the walk waits when the upload falls behind, and stops if it fails.
    const planned = new Queue<FileRow[]>(2);
    const stopped: { e?: unknown; set: boolean } = { set: false };
    const content = client.open ? { open: client.open.bind(client) } : { root: client.root };
    const upload = (async () => {
      const repo = await repoP;
      return uploadChangeset(repo, index, index.getChangeset(id)!, {
        content,
        planned,
        confirmBatch: opts.confirmBatch,
        compressLevel: opts.compressLevel,
        concurrency: opts.concurrency,
        onProgress: opts.onProgress,
        now,
      });
    })();
    upload.catch((e) => {
      if (!stopped.set) Object.assign(stopped, { e, set: true });
      planned.close();
    });
    let plan: Plan;
    try {
      plan = await planChangeset(index, client, previous, id, result, {
        now,
        onProgress: opts.onProgress,
        onPending: async (rows) => {
          if (stopped.set) throw stopped.e;
          await planned.push(rows);
        },
      });
    } catch (e) {
      planned.fail(e);
      await upload.catch(() => {});
      const failure = stopped.set ? stopped.e : e;
      if (await repoP.then(() => false, () => true)) forget();
      throw failure;
    }
    // The whole plan is in the index: from here an interruption is resumed from it.
    index.updateChangeset(id, {
      status: "uploading",
      files_planned: plan.planned,
      bytes_planned: plan.plannedBytes,
    });
    planned.close();
    index.shrinkMemory();
    for (const p of client.problems ?? []) {
      if (p.note) result.notes.push({ path: p.path, message: p.message });
      else result.problems.push({ path: p.path, message: p.message });
    }
    let repo: Repository;
    try {
      repo = await repoP;
    } catch (e) {
      // No key (a wrong passphrase): the plan is forgotten, as if the push never started.
      forget();
      throw e;
    }
    const r: { problems: EntryProblem[]; progress: PushProgress } = await upload;
    if (plan.planned === 0 && !client.keepEmpty) {
      forget();
      return result;
    }
    opts.onProgress?.({ ...r.progress, phase: "commit" });
    lock.check();
    const committed = await commitChangeset(repo, index, index.getChangeset(id)!, now);
    result.problems.push(...committed.problems);
    result.changeset = id;
    result.problems.push(...r.problems);
    const c = index.counts(id);
    result.files = c.files;
    result.bytes = c.bytes;
    result.uploaded = c.uploaded;
    result.uploadedBytes = c.uploadedBytes;
    result.present = c.present;
    return result;
  } finally {
    await lock?.release();
    await client.close?.();
  }
}

/**
 * Takes the lock of `source`, then records in the index the changesets pushed from elsewhere
 * that it does not know (manifests that cannot be read are reported in `problems`).
 */
async function lockSource(
  repo: Repository,
  index: Index,
  source: string,
  command: string,
  lock: LockWaitOptions | undefined,
  problems: EntryProblem[],
): Promise<LockHandle> {
  const held = await acquireLock(repo, { kind: "source", source, command, ...lock });
  try {
    const caught = await catchUpIndex(repo, index);
    for (const p of caught.problems) {
      problems.push({
        path: "",
        message: `${p.object} cannot be read (${p.message}); this push does not build on it`,
      });
    }
  } catch (e) {
    await held.release();
    throw e;
  }
  return held;
}

/** Uploads what a changeset still has pending, then commits it. */
async function completeChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  lock: LockHandle,
  opts: UploadOptions,
): Promise<{ problems: EntryProblem[] }> {
  index.updateChangeset(cs.id, { status: "uploading" });
  const r = await uploadChangeset(repo, index, cs, opts);
  opts.onProgress?.({ ...r.progress, phase: "commit" });
  lock.check();
  const committed = await commitChangeset(repo, index, cs, opts.now);
  return { problems: [...r.problems, ...committed.problems] };
}

/** Options of resume. */
export type ResumeOptions = Partial<
  Pick<
    PushOptions,
    "source" | "concurrency" | "compressLevel" | "confirmBatch" | "onProgress" | "now" | "lock"
  >
>;

/** What a resume did. */
export interface ResumeResult {
  /** Ids of the interrupted changesets that were completed now. */
  resumed: string[];
  /** Entries left out of them, and changesets marked failed instead of forking a chain. */
  problems: EntryProblem[];
}

/**
 * Completes interrupted changesets (all sources, or one) without a new scan, holding the lock
 * of each source while its changesets are completed.
 */
export async function resume(
  repo: Repository,
  index: Index,
  opts: ResumeOptions = {},
): Promise<ResumeResult> {
  const out: ResumeResult = { resumed: [], problems: [] };
  // On an index several machines share, a push is resumed on the machine that started it: it
  // reads the files at the path recorded there.
  const sources = [
    ...new Set(index.incomplete(opts.source).filter(ours).map((c) => c.source)),
  ];
  for (const source of sources) {
    const lock = await lockSource(repo, index, source, "push --resume", opts.lock, out.problems);
    try {
      const r = await resumeLocked(repo, index, lock, { ...opts, source });
      out.resumed.push(...r.resumed);
      out.problems.push(...r.problems, ...r.superseded);
    } finally {
      await lock.release();
    }
  }
  return out;
}

/** Completes the interrupted changesets of one source, whose lock the caller holds. */
async function resumeLocked(
  repo: Repository,
  index: Index,
  lock: LockHandle,
  opts: ResumeOptions & { source: string },
): Promise<{ resumed: string[]; problems: EntryProblem[]; superseded: EntryProblem[] }> {
  const now = opts.now ?? Date.now;
  const out = {
    resumed: [] as string[],
    problems: [] as EntryProblem[],
    superseded: [] as EntryProblem[],
  };
  for (const cs of index.incomplete(opts.source)) {
    if (!ours(cs)) {
      out.superseded.push({
        path: "",
        message: `changeset ${cs.id} of ${cs.source} was started on ${cs.host} and is left to ` +
          `it: "n2s push --resume" there completes it`,
      });
      continue;
    }
    const newest = index.lastComplete(cs.source)?.id ?? null;
    if (cs.status === "uploading" && cs.parent !== newest && !(await hasManifest(repo, cs.id))) {
      // A changeset of the source was completed since this one was planned (pushed from
      // another machine, or beside it before pushes took locks): committing this one would fork
      // the chain. What it stored stays known, so the next push uploads none of it twice. (One
      // whose manifest was stored is committed already, and others may build on it: it is
      // completed below.)
      index.setStatus(cs.id, "failed", {
        error: `superseded by changeset ${newest}, completed after it was planned; ` +
          `the next push lists its changes again`,
      });
      out.superseded.push({
        path: "",
        message: `interrupted changeset ${cs.id} was superseded by ${newest}, completed ` +
          `after it was planned; a push lists its changes again (nothing stored is sent twice)`,
      });
      continue;
    }
    if (cs.status === "pending") {
      // Interrupted while its changes were still being listed: its plan is partial (a snapshot
      // client's changeset would miss changes). What it stored stays known, so the next push
      // lists the changes again and uploads none of it twice.
      index.setStatus(cs.id, "failed", {
        error: "interrupted while its changes were being listed; the next push lists them again",
      });
      continue;
    }
    const r = await completeChangeset(repo, index, cs, lock, {
      content: { root: cs.root ?? "." },
      compressLevel: opts.compressLevel,
      concurrency: opts.concurrency,
      confirmBatch: opts.confirmBatch,
      onProgress: opts.onProgress,
      now,
    });
    out.resumed.push(cs.id);
    out.problems.push(...r.problems);
  }
  return out;
}

/** True for a changeset this machine started (or one whose machine is not recorded). */
function ours(cs: ChangesetRow): boolean {
  return cs.host === null || cs.host === undefined || cs.host === thisHost();
}

/** Records a new changeset of `opts.source` as pending, its parent `last`, before its plan. */
export function beginChangeset(
  index: Index,
  opts: Pick<PushOptions, "client" | "source" | "name">,
  id: string,
  last: ChangesetRow | undefined,
  now: () => number,
): void {
  const client = opts.client;
  const info = client.info?.();
  index.insertChangeset({
    id,
    name: opts.name ?? client.changesetName ?? null,
    source: opts.source,
    client: client.kind,
    root: client.root,
    parent: last?.id ?? null,
    status: "pending",
    files_planned: 0,
    bytes_planned: 0,
    files_uploaded: 0,
    bytes_uploaded: 0,
    created: isoNow(now()),
    completed: null,
    error: null,
    chain: null,
    info: info === undefined ? null : JSON.stringify(info),
    host: thisHost(),
  });
}
