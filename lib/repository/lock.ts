// Repository locks, as restic has them: each command that must not run beside some others writes
// a lock object under locks/, then reads the others; on a conflict it removes its own and waits
// (or fails). A held lock is refreshed every few minutes; one whose holder is gone is stale.

import { hostname, userInfo } from "node:os";
import { NotFoundError } from "../backends/backend.ts";
import { ContainerError } from "../format/container.ts";
import type { LockKind, LockRecord } from "../format/lock.ts";
import type { Repository } from "./repository.ts";

export type { LockKind, LockRecord } from "../format/lock.ts";

/** How often a held lock is refreshed. */
export const LOCK_REFRESH_MS = 5 * 60_000;
/** A lock not refreshed for this long is stale, whoever holds it. */
export const LOCK_STALE_MS = 30 * 60_000;
/** First and longest pause between two looks while waiting for a lock (with jitter). */
const POLL_FIRST_MS = 200;
const POLL_MAX_MS = 5_000;

/** A lock object as read from the repository. */
export interface LockInfo extends LockRecord {
  /** The object's name under locks/. */
  id: string;
}

/** A lock with what makes it stale (null when its holder may still run). */
export interface LockState extends LockInfo {
  /**
   * Why the lock is stale (its process is gone, it was not refreshed), or null while its holder may
   * run.
   */
  stale: string | null;
}

/** A lock object that could not be opened (damaged, or not n2s's): ignored, and reported. */
export interface UnreadableLock {
  /** The object's name under locks/. */
  id: string;
  /** Why it could not be read. */
  message: string;
}

/** What a command does when the lock it needs is held, and how it reports what it meets. */
export interface LockWaitOptions {
  /** Wait for the holder to release it (default), or fail at once with LockBusyError. */
  wait?: boolean;
  /** Called once when the command has to wait, with one line saying who holds the lock. */
  onWait?: (line: string, holder: LockInfo) => void;
  /** Called with one line per stale or unreadable lock met, and when a release fails. */
  onNote?: (line: string) => void;
}

/** Options of acquireLock. */
export interface AcquireOptions extends LockWaitOptions {
  /** What the lock allows beside it: shared, source or exclusive. */
  kind: LockKind;
  /** The source of a `source` lock. */
  source?: string;
  /** What takes it, for the messages of others ("push", "pull", "check --repair"). */
  command?: string;
  /**
   * Go on without a lock when none can be written (a repository on read-only storage), saying
   * so through onNote. For readers only: what they read is verified anyway.
   */
  bestEffort?: boolean;
  /**
   * The clock, in milliseconds since 1970 (tests replace it).
   * @internal
   */
  now?: () => number;
  /**
   * The random source of the lock's id and the jitter of waits (tests replace it).
   * @internal
   */
  random?: () => number;
  /** Refresh interval in milliseconds (default five minutes). */
  refreshMs?: number;
}

/** A lock this process holds. */
export interface LockHandle {
  /** The lock as stored (null when `bestEffort` went on without one). */
  readonly info: LockInfo | null;
  /**
   * Throws when the lock may have been lost (a refresh failed for so long that others may
   * count it stale, or someone removed it): a command checks before its commit point.
   */
  check(): void;
  /** Stops refreshing and removes the lock; never throws (a failure is reported via onNote). */
  release(): Promise<void>;
  /** Releases the lock at the end of an `await using` block. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The lock a command needs is held and it was told not to wait. */
export class LockBusyError extends Error {
  /** The error's name. */
  override name = "LockBusyError";
  /** Makes the error; `holder` is the lock that is in the way. */
  constructor(message: string, readonly holder: LockInfo) {
    super(message);
  }
}

/** True when a lock of kind `a` (of source `sa`) cannot be held beside one of kind `b`. */
export function conflicts(
  a: { kind: LockKind; source?: string },
  b: { kind: LockKind; source?: string },
): boolean {
  if (a.kind === "exclusive" || b.kind === "exclusive") return true;
  return a.kind === "source" && b.kind === "source" && a.source === b.source;
}

/** This process as a lock records it. */
interface Holder {
  host: string;
  pid: number;
  pidStart: string | null;
  user: string;
}

let self: Holder | undefined;

/** This machine's name, as locks and changesets record it. */
export function thisHost(): string {
  return thisProcess().host;
}

function thisProcess(): Holder {
  if (self) return self;
  let user = Deno.env.get("USER") ?? "";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry: keep $USER
  }
  // N2S_HOST names the machine where its host name does not (containers, clones of one image).
  let host = Deno.env.get("N2S_HOST") ?? "";
  if (host === "") {
    host = Deno.env.get("HOSTNAME") ?? "";
    try {
      host = hostname();
    } catch {
      // no --allow-sys: keep $HOSTNAME
    }
  }
  const pidStart = processStart(Deno.pid) ?? null;
  self = { host: host || "?", pid: Deno.pid, pidStart, user: user || "?" };
  return self;
}

/**
 * When process `pid` started, from Linux's /proc/PID/stat (field 22, clock ticks after boot);
 * null where there is no /proc, and undefined when there is no such process.
 */
function processStart(pid: number): string | null | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return existsSync("/proc/self/stat") ? undefined : null;
    }
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: count after its end.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return fields[19] ?? null;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True unless process `pid` of this host is known to be gone (or to be another process now). */
function processAlive(pid: number, start: string | null): boolean {
  const now = processStart(pid);
  if (now === undefined) return false;
  if (now !== null) return start === null || now === start;
  // No /proc (macOS, BSD): ps says whether the pid exists.
  try {
    const r = new Deno.Command("ps", { args: ["-p", String(pid)], stdout: "null", stderr: "null" })
      .outputSync();
    return r.success;
  } catch {
    return true;
  }
}

/** Why a lock is stale, or null when its holder may still run. */
export function staleReason(lock: LockRecord, now: number): string | null {
  const age = now - Date.parse(lock.refreshed);
  if (age > LOCK_STALE_MS) return `not refreshed for ${Math.floor(age / 60_000)} minutes`;
  const me = thisProcess();
  if (lock.host === me.host && !processAlive(lock.pid, lock.pid_start)) {
    return `its process ${lock.pid} is gone`;
  }
  return null;
}

/** Every lock of the repository with its staleness, and the objects that are not locks. */
export async function listLocks(
  repo: Repository,
  opts: { now?: () => number; except?: string } = {},
): Promise<{ locks: LockState[]; unreadable: UnreadableLock[] }> {
  const now = (opts.now ?? Date.now)();
  const locks: LockState[] = [];
  const unreadable: UnreadableLock[] = [];
  for (const id of await repo.listLockIds()) {
    if (id === opts.except) continue;
    try {
      const r = await repo.readLock(id);
      locks.push({ ...r, id, stale: staleReason(r, now) });
    } catch (e) {
      if (e instanceof NotFoundError) continue; // released since the listing
      if (!(e instanceof ContainerError)) throw e;
      unreadable.push({ id, message: e.message });
    }
  }
  return { locks, unreadable };
}

/** The words for a lock's holder: 'push of source "data" (pid 12 on host, user alice, since …)'. */
export function describeHolder(l: LockRecord, withSource = true): string {
  const what = withSource && l.source !== undefined
    ? `${l.command} of source ${JSON.stringify(l.source)}`
    : l.command;
  return `${what} (pid ${l.pid} on ${l.host}, user ${l.user}, since ${l.created})`;
}

/** One line saying what is locked by whom, from the view of a command that wants `want`. */
function lockedBy(want: { kind: LockKind; source?: string }, holder: LockInfo): string {
  const who = describeHolder(holder);
  if (holder.kind === "exclusive") return `the repository is locked exclusively by ${who}`;
  if (want.kind === "exclusive") return `the repository is in use by ${who}`;
  return `source ${JSON.stringify(holder.source)} is locked by ${describeHolder(holder, false)}`;
}

/** One line about a stale lock met, saying how to remove it. */
export function staleLine(l: LockState): string {
  return `ignoring a stale lock of ${describeHolder(l)}: ${l.stale}; "n2s unlock" removes it`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Takes a lock of the repository. Writes it, then reads every other lock: when one that is not
 * stale conflicts, removes its own and waits (polling with growing, jittered pauses) or, with
 * `wait: false`, throws LockBusyError. The lock is refreshed while held, on an unref'd timer,
 * until `release()`, which callers run in a `finally`.
 *
 * ```ts
 * const lock = await acquireLock(repo, { kind: "exclusive", command: "check --repair" });
 * try {
 *   // delete what must go
 * } finally {
 *   await lock.release();
 * }
 * ```
 */
export async function acquireLock(repo: Repository, opts: AcquireOptions): Promise<LockHandle> {
  if ((opts.kind === "source") !== (opts.source !== undefined)) {
    throw new Error("a source lock names its source, and only a source lock does");
  }
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const want = { kind: opts.kind, source: opts.source };
  const me = thisProcess();
  const id = repo.newLockId();
  const noted = new Set<string>();
  const note = (key: string, line: string) => {
    if (noted.has(key)) return;
    noted.add(key);
    opts.onNote?.(line);
  };
  /** The live locks in the way, reporting stale and unreadable ones once each. */
  const blocking = async (): Promise<LockInfo[]> => {
    const { locks, unreadable } = await listLocks(repo, { now, except: id });
    for (const u of unreadable) {
      note(
        u.id,
        `ignoring locks/${u.id}, which is not a lock n2s can read (${u.message}); ` +
          `"n2s unlock" removes it`,
      );
    }
    const live: LockInfo[] = [];
    for (const l of locks) {
      if (l.stale !== null) note(l.id, staleLine(l));
      else if (conflicts(want, l)) live.push(l);
    }
    return live;
  };
  let pause = POLL_FIRST_MS;
  let waited = false;
  while (true) {
    let inWay = await blocking();
    if (inWay.length === 0) {
      const created = new Date(now()).toISOString();
      const record: LockRecord = {
        v: 1,
        kind: opts.kind,
        ...(opts.source !== undefined ? { source: opts.source } : {}),
        command: opts.command ?? opts.kind,
        host: me.host,
        pid: me.pid,
        pid_start: me.pidStart,
        user: me.user,
        created,
        refreshed: created,
      };
      try {
        await repo.putLock(id, record);
      } catch (e) {
        await repo.deleteLock(id).catch(() => {});
        if (!opts.bestEffort) throw e;
        opts.onNote?.(
          `cannot write a lock (${e instanceof Error ? e.message : e}); going on without one`,
        );
        return unlocked();
      }
      try {
        inWay = await blocking();
      } catch (e) {
        await repo.deleteLock(id).catch(() => {});
        throw e;
      }
      if (inWay.length === 0) return new HeldLock(repo, { ...record, id }, opts, now);
      // Both wrote, both saw the other: both step back, and the jitter lets one win next time.
      await repo.deleteLock(id);
    }
    const line = lockedBy(want, inWay[0]);
    if (opts.wait === false) throw new LockBusyError(`${line}; not waiting (--no-wait)`, inWay[0]);
    if (!waited) {
      waited = true;
      opts.onWait?.(`${line}; waiting for it`, inWay[0]);
    }
    await sleep(pause * (0.5 + random()));
    pause = Math.min(POLL_MAX_MS, pause * 2);
  }
}

/** A handle that holds nothing (bestEffort on read-only storage). */
function unlocked(): LockHandle {
  return {
    info: null,
    check() {},
    release: () => Promise.resolve(),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
}

/** A lock this process holds and refreshes. */
class HeldLock implements LockHandle {
  #record: LockInfo;
  readonly #timer: ReturnType<typeof setInterval>;
  #refreshing: Promise<void> = Promise.resolve();
  #lastRefresh: number;
  #lost: string | null = null;
  #released = false;

  constructor(
    private readonly repo: Repository,
    record: LockInfo,
    private readonly opts: AcquireOptions,
    private readonly now: () => number,
  ) {
    this.#record = record;
    this.#lastRefresh = now();
    this.#timer = setInterval(() => {
      this.#refreshing = this.#refresh();
    }, opts.refreshMs ?? LOCK_REFRESH_MS);
    // A held lock never keeps the process alive by itself.
    Deno.unrefTimer(this.#timer);
  }

  get info(): LockInfo {
    return this.#record;
  }

  async #refresh(): Promise<void> {
    await this.#refreshing;
    if (this.#released || this.#lost !== null) return;
    const { id, ...record } = this.#record;
    try {
      if (!(await this.repo.hasLock(id))) {
        this.#lost = `the lock locks/${id} was removed while held (by "n2s unlock --remove-all"?)`;
        return;
      }
      const next = { ...record, refreshed: new Date(this.now()).toISOString() };
      await this.repo.putLock(id, next);
      this.#record = { ...next, id };
      this.#lastRefresh = this.now();
    } catch (e) {
      // Tried again at the next tick; too long without a refresh and the lock counts as lost.
      if (
        this.now() - this.#lastRefresh > LOCK_STALE_MS - (this.opts.refreshMs ?? LOCK_REFRESH_MS)
      ) {
        this.#lost = `the lock could not be refreshed for ${
          Math.floor((this.now() - this.#lastRefresh) / 60_000)
        } minutes (${e instanceof Error ? e.message : e}), so others may have taken it`;
      }
    }
  }

  check(): void {
    if (this.#lost !== null) throw new Error(`${this.#lost}; run the command again`);
    if (this.now() - this.#lastRefresh > LOCK_STALE_MS) {
      throw new Error(
        `the lock was not refreshed for ${
          Math.floor((this.now() - this.#lastRefresh) / 60_000)
        } minutes (was the machine asleep?), so others may have taken it; run the command again`,
      );
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    await this.#refreshing.catch(() => {});
    try {
      await this.repo.deleteLock(this.#record.id);
    } catch (e) {
      this.opts.onNote?.(
        `could not remove the lock locks/${this.#record.id} (${
          e instanceof Error ? e.message : e
        }); it goes stale by itself, and "n2s unlock" removes it`,
      );
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/** What unlock removed. */
export interface UnlockResult {
  /** Locks removed: stale ones (or, with `all`, every one) and objects that are not locks. */
  removed: (LockState | UnreadableLock)[];
  /** Locks left in place because their holders may still run. */
  kept: LockState[];
}

/**
 * Removes stale locks and lock objects that cannot be read; with `all`, every lock, for when
 * the user knows that no n2s command runs on the repository.
 */
export async function unlockRepository(
  repo: Repository,
  opts: { all?: boolean; now?: () => number } = {},
): Promise<UnlockResult> {
  const { locks, unreadable } = await listLocks(repo, opts);
  const out: UnlockResult = { removed: [], kept: [] };
  for (const l of [...locks, ...unreadable]) {
    if (!opts.all && "stale" in l && l.stale === null) {
      out.kept.push(l);
      continue;
    }
    await repo.deleteLock(l.id);
    out.removed.push(l);
  }
  return out;
}
