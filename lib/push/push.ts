// A push: take a client's entries, plan what changed, upload it through one pipeline, and
// commit the changeset's manifest; interrupted changesets of the source are completed first.

import { UlidGenerator } from "../format/ids.ts";
import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow } from "../index/types.ts";
import { releaseMemory } from "../perf/memory.ts";
import type { Repository } from "../repository/repository.ts";
import { commitChangeset } from "./commit.ts";
import type { FileRow } from "../index/types.ts";
import { Queue } from "../scheduler.ts";
import { type Plan, planChangeset, stateView } from "./plan.ts";
import type { EntryProblem, PushOptions, PushProgress, PushResult } from "./types.ts";
import { uploadChangeset, type UploadOptions } from "./upload.ts";

/**
 * Pushes one client's changes as a changeset of `source`, resuming an interrupted one first.
 * `repo` may be a promise (a key still being derived): the walk and the comparison with the
 * index's state need no key and run meanwhile; the push waits for it before any upload, and
 * fails with its error (nothing of the new changeset is left in the index then).
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
  try {
    if (index.incomplete(opts.source).length > 0) {
      const resumed = await resume(await repoP, index, { ...opts, now });
      result.resumed.push(...resumed.resumed);
      result.problems.push(...resumed.problems);
    }

    const last = index.lastComplete(opts.source);
    const previous = stateView(index, index.chain(opts.source), last);
    // The walk makes garbage for every entry: memory is given back as it goes, and once the
    // state of the source is loaded.
    releaseMemory();
    const id = ids.next();
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
    });
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
    await client.close?.();
  }
}

/** Uploads what a changeset still has pending, then commits it. */
async function completeChangeset(
  repo: Repository,
  index: Index,
  cs: ChangesetRow,
  opts: UploadOptions,
): Promise<{ problems: EntryProblem[] }> {
  index.updateChangeset(cs.id, { status: "uploading" });
  const r = await uploadChangeset(repo, index, cs, opts);
  opts.onProgress?.({ ...r.progress, phase: "commit" });
  const committed = await commitChangeset(repo, index, cs, opts.now);
  return { problems: [...r.problems, ...committed.problems] };
}

/** Completes interrupted changesets (all sources, or one) without a new scan. */
export async function resume(
  repo: Repository,
  index: Index,
  opts: Partial<
    Pick<
      PushOptions,
      "source" | "concurrency" | "compressLevel" | "confirmBatch" | "onProgress" | "now"
    >
  > = {},
): Promise<{ resumed: string[]; problems: EntryProblem[] }> {
  const now = opts.now ?? Date.now;
  const out = { resumed: [] as string[], problems: [] as EntryProblem[] };
  for (const cs of index.incomplete(opts.source)) {
    if (cs.status === "pending") {
      // Interrupted while its changes were still being listed: its plan is partial (a snapshot
      // client's changeset would miss changes). What it stored stays known, so the next push
      // lists the changes again and uploads none of it twice.
      index.setStatus(cs.id, "failed", {
        error: "interrupted while its changes were being listed; the next push lists them again",
      });
      continue;
    }
    const r = await completeChangeset(repo, index, cs, {
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
