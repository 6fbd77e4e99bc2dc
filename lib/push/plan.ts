// The plan of a push: the client's entries compared with the source's last known state, and
// every change recorded in the index as a pending row before anything is read, so that the
// plan survives a crash and an interrupted push can be completed from it.

import { badPath, type Client, type PreviousState, type SourceEntry } from "../clients/client.ts";
import { type Index, isoNow } from "../index/sqlite.ts";
import type { ChangesetRow, FileRow, PathState } from "../index/types.ts";
import { releaseMemory } from "../perf/memory.ts";
import { turn } from "../scheduler.ts";
import { joinRoot } from "../clients/tree.ts";
import { readXattrs } from "../fs/meta.ts";
import { posixAvailable } from "../fs/posix.ts";
import type { PushProgress, PushResult } from "./types.ts";

/** Rows written to the index per transaction while planning (larger transactions cost less
 * per row: each commit writes the pages it touched to the WAL), and handed to the upload. */
const PLAN_BATCH = 4000;
/** Entries walked between two returns of free memory to the system (a full collection costs
 * 50–80 ms once the state of 50,000 files is loaded). */
const RELEASE_ENTRIES = 65536;
/** Entries walked between two turns of the event loop. */
const YIELD_ENTRIES = 256;

/** The source's state after its chain of complete changesets, as a client sees it. */
export function stateView(index: Index, chain: ChangesetRow[], last?: ChangesetRow): PreviousState {
  const state = index.stateAt(chain);
  let info: unknown = undefined;
  if (last?.info) {
    try {
      info = JSON.parse(last.info);
    } catch {
      info = undefined;
    }
  }
  return {
    changeset: last,
    info,
    get: (p) => state.get(p),
    paths: () => state.keys(),
  };
}

/**
 * True when an entry says the same as the last known state of its path. The change time
 * counts where both have one: chmod, chown and new extended attributes change it, not mtime.
 * A hard link is stored as `hardlink` and found again as `write`: the same, unless it changed.
 */
function unchanged(prev: PathState | undefined, e: SourceEntry): boolean {
  if (!prev) return false;
  const action = prev.action === "hardlink" ? "write" : prev.action;
  if (action !== e.action) return false;
  if (e.meta?.ctime !== undefined && prev.ctime !== null && prev.ctime !== e.meta.ctime) {
    return false;
  }
  if (e.action === "link") return prev.target === e.target && prev.mtime === (e.mtime ?? null);
  if (e.action === "dir" || e.action === "special") {
    return prev.mtime === (e.mtime ?? null) && prev.mode === (e.mode ?? null);
  }
  if (e.action !== "write") return false;
  return prev.size === e.size && prev.mtime === e.mtime &&
    (e.inode === undefined || prev.inode === null || prev.inode === e.inode) &&
    (e.mode === undefined || prev.mode === null || prev.mode === e.mode);
}

/** The metadata an entry's row keeps as JSON (change time and device have columns or none). */
export function storedMeta(e: SourceEntry): string | null {
  if (!e.meta) return null;
  const { ctime: _c, dev: _d, ...rest } = e.meta;
  return Object.keys(rest).length > 0 ? JSON.stringify(rest) : null;
}

/** A files row with every column not given set to null. */
export function fileRow(
  changeset: string,
  p: Partial<FileRow> & Pick<FileRow, "path" | "action" | "status">,
): FileRow {
  return {
    changeset,
    file_hash: null,
    blob_id: null,
    size: null,
    mtime: null,
    mode: null,
    inode: null,
    target: null,
    started: null,
    confirmed: null,
    stored_size: null,
    ref: null,
    pack: null,
    pack_offset: null,
    pack_length: null,
    meta: null,
    ctime: null,
    error: null,
    ...p,
  };
}

/** What planning found: how many entries and bytes to settle. */
export interface Plan {
  planned: number;
  plannedBytes: number;
}

/**
 * Walks the client's entries into pending rows of changeset `id` (already inserted), counting
 * unchanged files, deletions and links into `result`. Under the client's `completeWithin`
 * prefixes, known paths that were not yielded become deletions, except under a directory that
 * could not be read.
 */
export async function planChangeset(
  index: Index,
  client: Client,
  previous: PreviousState,
  id: string,
  result: PushResult,
  opts: {
    now: () => number;
    onProgress?: (p: PushProgress) => void;
    /** Called with each transaction's pending rows once they are in the index, so that their
     * upload can start while the walk goes on; it may wait (back-pressure) or throw (stop). */
    onPending?: (rows: FileRow[]) => Promise<void>;
  },
): Promise<Plan> {
  const now = opts.now;
  const seen = new Set<string>();
  let planned = 0;
  let plannedBytes = 0;
  let seenSinceRelease = 0;
  let batch: FileRow[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const rows = batch;
    batch = [];
    index.tx(() => rows.forEach((r) => index.insertFile(r)));
    const pending = rows.filter((r) => r.status === "pending");
    if (pending.length > 0) await opts.onPending?.(pending);
  };
  const settledNow = (p: Partial<FileRow> & Pick<FileRow, "path" | "action">) =>
    fileRow(id, { status: "confirmed", confirmed: isoNow(now()), ...p });
  // Files with more than one link, by device and inode: the first path seen holds the content,
  // the others are stored as its hard links (the walk is in a stable order).
  const linked = new Map<string, string>();
  // A client that reads a directory tree (no `open` of its own) has its xattrs read here.
  const readXattrsOf = !client.open && posixAvailable();
  const seenUnchanged = new Set<string>();
  for await (const e of client.entries(previous)) {
    const bad = badPath(e.path);
    if (bad) {
      result.problems.push({ path: e.path, message: `skipped: ${bad}` });
      continue;
    }
    if (seen.has(e.path)) continue;
    seen.add(e.path);
    if (++seenSinceRelease >= RELEASE_ENTRIES) {
      seenSinceRelease = 0;
      releaseMemory();
    }
    // The walk is synchronous work: it lets the upload (messages from its Workers) run now and
    // then, so that the Workers are not left waiting until the walk ends.
    if (seen.size % YIELD_ENTRIES === 0) await turn();
    const prev = previous.get(e.path);
    let leader: string | undefined;
    if (e.action === "write" && (e.nlink ?? 1) > 1 && e.inode !== undefined) {
      const key = `${e.meta?.dev ?? ""}:${e.inode}`;
      leader = linked.get(key);
      if (leader === undefined) linked.set(key, e.path);
    }
    const common = () => {
      // Extended attributes are read only now, for what changed (see ReadOptions.xattrs).
      if (readXattrsOf && e.meta && e.meta.xattrs === undefined && e.action !== "delete") {
        const xs = readXattrs(joinRoot(client.root, e.path));
        if (xs) e.meta.xattrs = xs;
      }
      return {
        path: e.path,
        mtime: e.mtime ?? null,
        mode: e.mode ?? null,
        meta: storedMeta(e),
        ctime: e.meta?.ctime ?? null,
      };
    };
    if (e.action === "delete") {
      if (!prev) continue;
      batch.push(settledNow({ path: e.path, action: "delete" }));
      result.deleted++;
    } else if (unchanged(prev, e)) {
      result.unchanged++;
      if (leader === undefined && e.action === "write" && (e.nlink ?? 1) > 1) {
        seenUnchanged.add(e.path);
      }
      continue;
    } else if (e.action === "link") {
      batch.push(settledNow({ ...common(), action: "link", target: e.target ?? "" }));
      result.links++;
    } else if (e.action === "dir" || e.action === "special") {
      batch.push(settledNow({ ...common(), action: e.action }));
    } else if (leader !== undefined) {
      // Its content is the leader's: copied now when the leader is stored already, else at
      // the commit, once the leader's upload is confirmed.
      const had = previous.get(leader);
      const stored = had && seenUnchanged.has(leader) && had.action === "write"
        ? index.storedOf(had.changeset, leader)
        : undefined;
      batch.push(settledNow({
        ...common(),
        action: "hardlink",
        target: leader,
        size: e.size ?? null,
        inode: e.inode ?? null,
        file_hash: stored?.file_hash ?? null,
        blob_id: stored?.blob_id ?? null,
        pack: stored?.pack ?? null,
        pack_offset: stored?.pack_offset ?? null,
        pack_length: stored?.pack_length ?? null,
      }));
    } else {
      batch.push(fileRow(id, {
        ...common(),
        action: "write",
        size: e.size ?? null,
        inode: e.inode ?? null,
        status: "pending",
      }));
      plannedBytes += e.size ?? 0;
    }
    planned++;
    if (batch.length >= PLAN_BATCH) await flush();
    if (planned % 1000 === 0) {
      opts.onProgress?.({
        phase: "scan",
        filesDone: 0,
        filesTotal: planned,
        bytesDone: 0,
        bytesTotal: plannedBytes,
      });
    }
  }
  if (client.completeWithin.length > 0) {
    const prefixes = client.completeWithin;
    // A directory that could not be read says nothing about what it holds: never infer
    // deletions under it.
    const unknown = (client.problems ?? []).filter((p) => !p.note).map((p) =>
      p.path === "." ? "" : p.path
    );
    const under = (p: string, pre: string) => pre === "" || p === pre || p.startsWith(pre + "/");
    for (const p of previous.paths()) {
      if (seen.has(p)) continue;
      if (unknown.some((u) => under(p, u))) continue;
      const inside = (pre: string) =>
        pre === "" || p === pre || p.startsWith(pre.endsWith("/") ? pre : pre + "/");
      if (!prefixes.some(inside)) continue;
      batch.push(settledNow({ path: p, action: "delete" }));
      result.deleted++;
      planned++;
    }
  }
  await flush();
  return { planned, plannedBytes };
}
