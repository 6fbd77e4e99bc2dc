// The library's front door: open a repository with its index, then push, pull, list, search
// and read status. The CLI is a thin layer over this class.

import type { Backend } from "./backends/backend.ts";
import { openBackend, type OpenOptions as BackendOpenOptions } from "./backends/open.ts";
import { denoSuite } from "./crypto_deno.ts";
import type { Suite } from "./format/suite.ts";
import { Index } from "./index/sqlite.ts";
import type { ChangesetRow } from "./index/types.ts";
import { compileGlob, isGlob, unescapePath } from "./glob.ts";
import { parseKey } from "./repository/layout.ts";
import {
  initRepository,
  openRepository,
  readConfig,
  type Repository,
  type RepositoryConfig,
} from "./repository/repository.ts";
import { push, resume, type ResumeOptions, type ResumeResult } from "./push/push.ts";
import {
  acquireLock,
  type AcquireOptions,
  listLocks,
  type LockHandle,
  type LockState,
  type LockWaitOptions,
  unlockRepository,
  type UnlockResult,
  type UnreadableLock,
} from "./repository/lock.ts";
import type { PushOptions, PushResult } from "./push/types.ts";
import { type PullProgress, type PullResult, restoreState } from "./pull/restore.ts";
import { type PullState, stateFromIndex, stateFromManifests } from "./pull/state.ts";
import type { Overwrite } from "./pull/overwrite.ts";
import { type CheckOptions, checkRepository, type CheckResult } from "./check.ts";
import { locateChangeset, type Located } from "./inspect/resolve.ts";
import { type DiffEntry, diffStates } from "./inspect/diff.ts";
import { ratio, stateStats, type Stats } from "./inspect/stats.ts";
import { type Sink, writeTar, writeVerified } from "./inspect/dump.ts";
import { noMatchError, pathMatcher, unmatchedPatterns } from "./glob.ts";
import { forget, type ForgetOptions, type ForgetResult } from "./retention/forget.ts";
import { prune, type PruneOptions, type PruneResult } from "./retention/prune.ts";
import { defaultIndexPath } from "./paths.ts";
import { sharedPush, type SharedPushOptions, type SharedPushResult } from "./push/shared.ts";
import { RECOVERY_PAGE_HTML } from "./recovery_page/page.ts";
import * as arg from "./args.ts";
import {
  checkInitOptions,
  checkOpenOptions,
  checkPullOptions,
  checkPushOptions,
  checkResumeOptions,
} from "./n2s_checks.ts";

/** A changeset as `status` and `log` report it. */
export interface ChangesetSummary {
  /** The changeset's id (a ULID). */
  id: string;
  /** Its name (`--changeset-name` or the client's suggestion), or null when it has none. */
  name: string | null;
  /** The source whose chain it belongs to. */
  source: string;
  /** The kind of client that found its entries ("scan", "btrfs", "zfs", "dsg" or a custom one). */
  client: string;
  /** The id of the previous changeset of its source, or null for the first. */
  parent: string | null;
  /** "pending", "uploading" (an unfinished push), "complete" or "failed". */
  status: string;
  /** Entries in the changeset (writes, links, deletions). */
  files: number;
  /** Bytes of the files written. */
  bytes: number;
  /** Blobs uploaded by this changeset. */
  uploaded: number;
  /** Bytes of the files whose blobs this changeset uploaded (content, before compression). */
  uploadedBytes: number;
  /** Files whose blob was already stored. */
  present: number;
  /** Entries that could not be stored. */
  failed: number;
  /** Entries not yet settled (an interrupted push). */
  pending: number;
  /** When the push started, UTC ISO-8601. */
  created: string;
  /** When it completed, UTC ISO-8601, or null while it is not complete. */
  completed: string | null;
  /** Why it failed, or null. */
  error: string | null;
  /** The machine it was pushed from, or null when not recorded (older versions, recoveries). */
  host: string | null;
}

/** Which changesets a query answers for: those of one source, or pushed from one machine. */
export interface ChangesetFilter {
  /** Only changesets of this source. */
  source?: string;
  /** Only changesets pushed from this machine. */
  host?: string;
}

/** One entry of a changeset as `ls --changed` reports it. */
export interface FileListing {
  /** Path relative to the source root (bytes that are not UTF-8 as lone surrogates). */
  path: string;
  /** What the entry does: "write", "link", "dir", "special", "hardlink" or "delete". */
  action: string;
  /** Size of a written file in bytes, or null for other actions. */
  size: number | null;
  /** The keyed blob id (hex) holding a written file's content, or null. */
  blobId: string | null;
  /** BLAKE3 of a written file's content (hex), or null. */
  fileHash: string | null;
  /** Upload state: "pending", "confirmed" (uploaded now), "present" (already stored), "failed". */
  status: string;
  /** When the blob's upload was confirmed durable, UTC ISO-8601, or null. */
  confirmed: string | null;
  /** A symlink's target or the path a hard link shares content with, else null. */
  target: string | null;
}

/**
 * What is known to be missing from a state (a hole in its chain): the answer is incomplete, and
 * the command exits 1.
 */
export interface Problem {
  /** The path concerned, or the changeset reference when the whole state is affected. */
  path: string;
  /** What is missing, for people. */
  message: string;
}

/** One path of the state at a changeset, as `ls` reports it. */
export interface TreeEntry {
  /** Path relative to the source root (bytes that are not UTF-8 as lone surrogates). */
  path: string;
  /** What the entry is: "write", "link", "dir", "special" or "hardlink". */
  action: string;
  /** Size of a file in bytes, or null for other entries. */
  size: number | null;
  /** The keyed blob id (hex) holding a file's content, or null. */
  blobId: string | null;
  /** BLAKE3 of a file's content (hex), or null. */
  fileHash: string | null;
  /** A symlink's target or the path a hard link shares content with, else null. */
  target: string | null;
  /** POSIX permission bits, or null when the client recorded none. */
  mode: number | null;
  /** Milliseconds since 1970 UTC. */
  mtime: number | null;
}

/** The full tree at a changeset, as `N2S.tree` returns it. */
export interface Tree {
  /** The changeset's full id. */
  changeset: string;
  /** Its source. */
  source: string;
  /** The paths, in path order. */
  entries: TreeEntry[];
  /** Holes in the chain: when not empty, the tree is incomplete. */
  problems: Problem[];
}

/** What differs between two states, as `N2S.diff` returns it. */
export interface DiffResult {
  /** Full id of the older changeset. */
  from: string;
  /** Full id of the newer changeset. */
  to: string;
  /** The paths that differ, in path order. */
  changes: DiffEntry[];
  /** Holes in either chain: when not empty, the comparison is incomplete. */
  problems: Problem[];
}

/** The figures of the state at one changeset, as `N2S.stats` returns them. */
export interface ChangesetStats extends Stats {
  /** The changeset's full id. */
  changeset: string;
  /** Its source. */
  source: string;
  /** Holes in the chain: when not empty, the figures are incomplete. */
  problems: Problem[];
}

/** The figures of the whole repository, as `stats` without a changeset reports them. */
export interface RepositoryStats {
  /** Complete changesets in the index. */
  changesets: number;
  /** Sources with at least one complete changeset. */
  sources: number;
  /** Distinct file versions (blobs) the index knows. */
  blobs: number;
  /** Content of those blobs in bytes, before compression and encryption. */
  bytes: number;
  /** Bytes of every blob and pack object in the repository. */
  storedBytes: number;
  /** Pack objects in the repository. */
  packs: number;
  /** Blobs stored as objects of their own (not in a pack). */
  looseBlobs: number;
  /** bytes / storedBytes, or null when nothing is stored. */
  compressionRatio: number | null;
}

/** One stored version of a path as `find` reports it. */
export interface FindHit {
  /** Path relative to the source root (bytes that are not UTF-8 as lone surrogates). */
  path: string;
  /** The id of the changeset holding this version. */
  changeset: string;
  /** That changeset's source. */
  source: string;
  /** What the entry does: "write", "link", "dir", "special", "hardlink" or "delete". */
  action: string;
  /** Size of a written file in bytes, or null for other actions. */
  size: number | null;
  /** The keyed blob id (hex) holding a written file's content, or null. */
  blobId: string | null;
  /** When the blob's upload was confirmed durable, UTC ISO-8601, or null. */
  confirmed: string | null;
}

/** Options of `N2S.dump`. */
export interface DumpOptions {
  /** Refuse to write a tar (when the sink is a terminal); default true: a tar is allowed. */
  allowTar?: boolean;
}

/** What `N2S.dump` wrote. */
export interface DumpResult {
  /** The changeset's full id. */
  changeset: string;
  /** True when a tar was written, false when the bytes of one file were. */
  tar: boolean;
  /** Entries written: 1 for a single file, else the tar's members. */
  members: number;
  /** Holes in the chain: when not empty, the output is incomplete. */
  problems: Problem[];
}

/** Options of a pull. */
export interface StorePullOptions {
  /** Globs of the paths to restore (default: every path); each must match some path. */
  patterns?: string[];
  /** Reads in flight at once (default: what the backend says suits it). */
  concurrency?: number;
  /** Called as files are restored. */
  onProgress?: (p: PullProgress) => void;
  /** Restore owner and group (default: when running as root). */
  owner?: boolean;
  /** When a command that deletes holds the repository: wait (default) or fail. */
  lock?: LockWaitOptions;
  /** A file already in the target: replaced when it differs (default), always, or never. */
  overwrite?: Overwrite;
  /** Decides and reports what would be written, replaced and kept; writes nothing. */
  dryRun?: boolean;
}

/** What a pull did, and the changeset it restored. */
export interface StorePullResult extends PullResult {
  /** The full id of the changeset restored. */
  changeset: string;
}

/** The repository's locks, as `N2S.locks` returns them. */
export interface LocksResult {
  /** Every lock n2s can read, with what makes it stale (null while its holder may run). */
  locks: LockState[];
  /** Objects under locks/ that are not locks n2s can read. */
  unreadable: UnreadableLock[];
}

/** Options of `N2S.unlock`. */
export interface UnlockOptions {
  /** Remove every lock, also those whose holders may still run (default: stale ones only). */
  all?: boolean;
}

/** Options to open a store. */
export interface OpenOptions {
  /** Repository location: a path, file://, sftp://, s3://, ipfs:// or rclone: (see README). */
  repository: string;
  /** Options of the backend stack (environment, retries, concurrency); see `openBackend`. */
  backendOptions?: BackendOpenOptions;
  /**
   * The index: a SQLite file, or a PostgreSQL database (`postgres://USER@HOST/DATABASE`, one
   * database per repository); defaults to a SQLite file per repository under the user's data
   * directory.
   */
  index?: string;
  /** Passphrase; needed for push and pull, not for status, ls, find and log. */
  passphrase?: string | (() => Promise<string>);
  /** Crypto primitives; the fast Deno suite by default. */
  suite?: Suite;
  /** A backend to use instead of opening `repository` (for wrappers and tests). */
  backend?: Backend;
}

/** Options to create a repository: those to open one, a passphrase and the new key's cost. */
export interface InitOptions extends OpenOptions {
  /** Passphrase of the repository's first key. */
  passphrase: string;
  /** A label for the first key, shown by `n2s key list`. */
  label?: string;
  /**
   * log2 of the scrypt cost of the first key (default 17). Lower values (10) make a cheap key
   * for tests; never for real data.
   */
  logN?: number;
  /** Target size of pack objects in bytes (default 16 MiB). */
  packSize?: number;
  /** Sealed blobs under this many bytes go into packs (default 1 MiB). */
  packThreshold?: number;
}

/** A repository and its index, opened together. */
export class N2S {
  #repo: Repository | null = null;
  private constructor(
    /**
     * The backend stack the repository is read and written through.
     * @internal
     */
    readonly backend: Backend,
    /** The repository's configuration: its id, format version and pack sizes. */
    readonly config: RepositoryConfig,
    /**
     * The index database.
     * @internal
     */
    readonly index: Index,
    /**
     * The crypto primitives in use.
     * @internal
     */
    readonly suite: Suite,
    private readonly passphrase: OpenOptions["passphrase"],
  ) {}

  /**
   * Creates a repository at `repository` and opens it.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * assert.match(store.config.id, /^[0-9a-f]{32}$/);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async init(opts: InitOptions): Promise<N2S> {
    checkInitOptions("N2S.init", opts);
    const suite = opts.suite ?? (await denoSuite());
    const backend = opts.backend ?? (await openBackend(opts.repository, opts.backendOptions));
    try {
      const { repo } = await initRepository(backend, suite, opts.passphrase, {
        label: opts.label,
        logN: opts.logN,
        packSize: opts.packSize,
        packThreshold: opts.packThreshold,
      });
      // The offline recovery page travels with the data (plaintext; it holds no secret).
      await repo.putRecoveryPage(RECOVERY_PAGE_HTML);
      const store = await N2S.#openWith(backend, repo.config, suite, opts);
      store.#repo = repo;
      return store;
    } catch (e) {
      if (!opts.backend) await backend.close().catch(() => {});
      throw e;
    }
  }

  /**
   * Opens an existing repository and its index (created when absent).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * const opts = { repository: `${dir}/repo`, index: `${dir}/index.sqlite` };
   * await (await N2S.init({ ...opts, passphrase: "correct horse", logN: 10 })).close();
   *
   * // status, ls, find and log need no passphrase; push and pull ask for it once.
   * const store = await N2S.open({ ...opts, passphrase: () => Promise.resolve("correct horse") });
   * assert.deepEqual(store.status(), []);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(opts: OpenOptions): Promise<N2S> {
    checkOpenOptions("N2S.open", opts);
    const suite = opts.suite ?? (await denoSuite());
    const backend = opts.backend ?? (await openBackend(opts.repository, opts.backendOptions));
    try {
      const config = await readConfig(backend);
      return await N2S.#openWith(backend, config, suite, opts);
    } catch (e) {
      if (!opts.backend) await backend.close().catch(() => {});
      throw e;
    }
  }

  static #openWith(
    backend: Backend,
    config: RepositoryConfig,
    suite: Suite,
    opts: OpenOptions,
  ): N2S {
    // The index layer makes the file and its directory, both private.
    const index = Index.open(opts.index ?? defaultIndexPath(config.id), config.id);
    return new N2S(backend, config, index, suite, opts.passphrase);
  }

  /**
   * Path of the index file.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * assert.equal(store.indexPath, `${dir}/index.sqlite`);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  get indexPath(): string {
    return this.index.path;
  }

  /**
   * The repository with its master key (asks for the passphrase once).
   * @internal
   */
  async repository(): Promise<Repository> {
    if (this.#repo) return this.#repo;
    const p = typeof this.passphrase === "function" ? await this.passphrase() : this.passphrase;
    if (p === undefined) throw new Error("a passphrase is needed to open the repository");
    this.#repo = await openRepository(this.backend, this.suite, p);
    return this.#repo;
  }

  /**
   * Pushes the changes a client finds as a new changeset of `source`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const r = await store.push({ client: scanClient({ dir: `${dir}/data` }), source: "data" });
   * assert.equal(r.uploaded, 1);
   * // Nothing changed: no new changeset, nothing uploaded.
   * const again = await store.push({ client: scanClient({ dir: `${dir}/data` }), source: "data" });
   * assert.equal(again.changeset, null);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async push(opts: PushOptions): Promise<PushResult> {
    checkPushOptions("N2S.push", opts);
    // The key is derived before the walk, not during it: scrypt's 128 MiB on top of the walk's
    // memory took a 50,000-file push past 250 MiB; after it, both stay under 200 MiB.
    return push(await this.repository(), this.index, { now: this.index.clock, ...opts });
  }

  /**
   * Takes part in one push shared by several workers (processes on this and other machines that
   * share the index, the repository, and the client's directory at the same path): the first
   * worker lists the changes, every worker claims and stores batches of them, and the last one
   * commits the changeset. Resolves when the changeset is complete.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const open = () =>
   *   N2S.open({ repository: `${dir}/repo`, index: `${dir}/index.sqlite`, passphrase: "pw" });
   * await (await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "pw",
   *   logN: 10, // a cheap key: for examples and tests only
   * })).close();
   * const [one, two] = [await open(), await open()];
   * const results = await Promise.all([one, two].map((store) =>
   *   store.pushShared({ client: scanClient({ dir: `${dir}/data` }), source: "data" })
   * ));
   * assert.equal(results[0].changeset, results[1].changeset);
   * assert.equal(results.filter((r) => r.committed).length, 1);
   * await one.close();
   * await two.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async pushShared(opts: SharedPushOptions): Promise<SharedPushResult> {
    checkPushOptions("N2S.pushShared", opts);
    return sharedPush(await this.repository(), this.index, { now: this.index.clock, ...opts });
  }

  /**
   * Completes interrupted pushes (of one source, or of all).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * // Nothing was interrupted here; after a killed push, this completes it.
   * const r = await store.resume({ source: "data" });
   * assert.deepEqual(r.resumed, []);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async resume(opts: ResumeOptions = {}): Promise<ResumeResult> {
    checkResumeOptions("N2S.resume", opts);
    return resume(await this.repository(), this.index, { now: this.index.clock, ...opts });
  }

  /**
   * Takes a lock of the repository (see lib/repository/lock.ts): `exclusive` for a command that
   * deletes, which then runs beside no other command; release it in a `finally`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const lock = await store.lock({ kind: "exclusive", command: "maintenance", wait: false });
   * try {
   *   assert.equal((await store.locks()).locks.length, 1);
   * } finally {
   *   await lock.release();
   * }
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async lock(opts: AcquireOptions): Promise<LockHandle> {
    const o = arg.object("N2S.lock", "options", opts);
    arg.oneOf("N2S.lock", "options.kind", o.kind, ["shared", "source", "exclusive"]);
    return acquireLock(await this.repository(), opts);
  }

  /**
   * Every lock of the repository, with what makes it stale, and the objects that are not locks.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const { locks, unreadable } = await store.locks();
   * assert.deepEqual([locks, unreadable], [[], []]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async locks(): Promise<LocksResult> {
    return await listLocks(await this.repository());
  }

  /**
   * Removes stale locks and lock objects that cannot be read; with `all`, every lock, for when
   * no n2s command runs on the repository.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const { removed, kept } = await store.unlock();
   * assert.deepEqual([removed, kept], [[], []]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async unlock(opts: UnlockOptions = {}): Promise<UnlockResult> {
    const o = arg.object("N2S.unlock", "options", opts);
    arg.optionalBoolean("N2S.unlock", "options.all", o.all);
    return await unlockRepository(await this.repository(), { all: opts.all });
  }

  /**
   * Restores the state of a source at a changeset (id or unique prefix) under `target`, holding
   * a shared lock (nothing is deleted meanwhile; on read-only storage it goes on without one).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const r = await store.pull(changeset!, `${dir}/out`, { patterns: ["*.txt"] });
   * assert.equal(r.files, 1);
   * assert.equal(await Deno.readTextFile(`${dir}/out/a.txt`), "hello\n");
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async pull(
    changeset: string,
    target: string,
    opts: StorePullOptions = {},
  ): Promise<StorePullResult> {
    arg.string("N2S.pull", "changeset", changeset);
    arg.string("N2S.pull", "target", target);
    checkPullOptions("N2S.pull", opts);
    const repo = await this.repository();
    const lock = await acquireLock(repo, {
      kind: "shared",
      command: "pull",
      bestEffort: true,
      ...opts.lock,
    });
    try {
      return await this.#pull(repo, changeset, target, opts);
    } finally {
      await lock.release();
    }
  }

  async #pull(
    repo: Repository,
    changeset: string,
    target: string,
    opts: StorePullOptions,
  ): Promise<StorePullResult> {
    const state = await this.#state(changeset);
    const patterns = opts.patterns ?? [];
    const unmatched = unmatchedPatterns(patterns, state.entries.map((e) => e.path));
    if (unmatched.length > 0) throw noMatchError(unmatched, `changeset ${state.id}`);
    const r = await restoreState(repo, state.entries, { target, ...opts });
    // What is known to be missing goes first: the restore is incomplete whatever else happened.
    r.problems.unshift(...state.problems);
    return { ...r, changeset: state.id };
  }

  /**
   * The changeset a reference names: an id or a unique prefix, `latest` (the newest complete
   * changeset, when the repository holds one source) or `latest:SOURCE`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * assert.equal((await store.resolve("latest:data")).id, changeset);
   * assert.equal((await store.resolve(changeset!.slice(0, 12))).id, changeset);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async resolve(ref: string): Promise<Located> {
    arg.string("N2S.resolve", "ref", ref);
    return await locateChangeset(this.index, this.backend, () => this.repository(), ref);
  }

  /** The state at a changeset, from the index, or from the manifests when it does not know it. */
  async #state(ref: string): Promise<Located & PullState> {
    const at = await this.resolve(ref);
    const state = at.inIndex
      ? stateFromIndex(this.index, at.id)
      : await stateFromManifests(await this.repository(), at.id);
    return { ...at, ...state };
  }

  /** The state at a changeset, the paths matching `patterns` (every one must match some). */
  async #chosen(ref: string, patterns: string[]): Promise<Located & PullState> {
    const s = await this.#state(ref);
    const unmatched = unmatchedPatterns(patterns, s.entries.map((e) => e.path));
    if (unmatched.length > 0) throw noMatchError(unmatched, `changeset ${s.id}`);
    const match = pathMatcher(patterns);
    const entries = s.entries.filter((e) => match(e.path));
    entries.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    return { ...s, entries };
  }

  /**
   * The full tree at a changeset (what a pull restores), in path order; with `patterns`, the
   * matching paths, and a pattern that matches nothing is an error.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const tree = await store.tree("latest");
   * assert.deepEqual(tree.entries.map((e) => [e.path, e.action, e.size]), [["a.txt", "write", 6]]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async tree(
    ref: string,
    patterns: string[] = [],
  ): Promise<Tree> {
    arg.string("N2S.tree", "ref", ref);
    arg.strings("N2S.tree", "patterns", patterns);
    const s = await this.#chosen(ref, patterns);
    return {
      changeset: s.id,
      source: s.source,
      problems: s.problems,
      entries: s.entries.map((e) => ({
        path: e.path,
        action: e.action,
        size: e.size ?? null,
        blobId: e.blob_id ?? null,
        fileHash: e.file_hash ?? null,
        target: e.target ?? null,
        mode: e.mode ?? null,
        mtime: e.mtime ?? null,
      })),
    };
  }

  /**
   * What differs from the state at `from` to the state at `to`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * await Deno.writeTextFile(`${dir}/data/b.txt`, "new\n");
   * const next = scanClient({ dir: `${dir}/data` });
   * const second = await store.push({ client: next, source: "data" });
   * const d = await store.diff(changeset!, second.changeset!);
   * assert.deepEqual(d.changes.map((c) => [c.path, c.change]), [["b.txt", "added"]]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async diff(
    from: string,
    to: string,
  ): Promise<DiffResult> {
    arg.string("N2S.diff", "from", from);
    arg.string("N2S.diff", "to", to);
    const a = await this.#state(from);
    const b = await this.#state(to);
    return {
      from: a.id,
      to: b.id,
      changes: diffStates(a.entries, b.entries),
      problems: [...a.problems, ...b.problems],
    };
  }

  /**
   * Files, bytes, stored bytes and packs of the state at a changeset.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const s = await store.stats("latest");
   * assert.equal(s.files, 1);
   * assert.equal(s.bytes, 6);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async stats(ref: string): Promise<ChangesetStats> {
    arg.string("N2S.stats", "ref", ref);
    const s = await this.#state(ref);
    const stats = await stateStats(s.entries, async (blobId) => {
      const known = this.index.blobConfirmed(blobId)?.stored_size;
      if (known !== undefined && known !== null) return known;
      return (await (await this.repository()).statBlob(blobId))?.size ?? null;
    });
    return { changeset: s.id, source: s.source, ...stats, problems: s.problems };
  }

  /**
   * The figures of the whole repository: what the index knows, and what the repository holds.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const s = await store.repositoryStats();
   * assert.equal(s.changesets, 1);
   * assert.equal(s.blobs, 1);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async repositoryStats(): Promise<RepositoryStats> {
    const changesets = this.index.listChangesets().filter((c) => c.status === "complete");
    const sizes = new Map<string, number>();
    for (const f of this.index.findPaths(() => true)) {
      if (f.blob_id !== null && f.action === "write") sizes.set(f.blob_id, f.size ?? 0);
    }
    let bytes = 0;
    for (const n of sizes.values()) bytes += n;
    const out: RepositoryStats = {
      changesets: changesets.length,
      sources: new Set(changesets.map((c) => c.source)).size,
      blobs: sizes.size,
      bytes,
      storedBytes: 0,
      packs: 0,
      looseBlobs: 0,
      compressionRatio: null,
    };
    for (const prefix of ["blobs/", "packs/"]) {
      for await (const o of this.backend.list(prefix)) {
        const kind = parseKey(o.key).kind;
        if (kind !== "blob" && kind !== "pack") continue;
        out.storedBytes += o.size;
        if (kind === "pack") out.packs++;
        else out.looseBlobs++;
      }
    }
    out.compressionRatio = ratio(bytes, out.storedBytes);
    return out;
  }

  /**
   * Writes stored content to `sink`: the bytes of the file at `path` in the state at a
   * changeset, or a tar of every entry that `path` (a directory, a glob) matches. Each blob is
   * verified whole before any of its bytes is written.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const parts: Uint8Array[] = [];
   * const r = await store.dump("latest", "a.txt", (bytes) => {
   *   parts.push(bytes.slice());
   *   return Promise.resolve();
   * });
   * assert.equal(r.tar, false);
   * assert.equal(new TextDecoder().decode(parts[0]), "hello\n");
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async dump(
    ref: string,
    path: string,
    sink: Sink,
    opts: DumpOptions = {},
  ): Promise<DumpResult> {
    arg.string("N2S.dump", "ref", ref);
    arg.string("N2S.dump", "path", path);
    arg.func("N2S.dump", "sink", sink);
    const o = arg.object("N2S.dump", "options", opts);
    arg.optionalBoolean("N2S.dump", "options.allowTar", o.allowTar);
    const s = await this.#chosen(ref, [path]);
    const repo = await this.repository();
    const only = s.entries.length === 1 ? s.entries[0] : undefined;
    const exact = only?.action === "write" || only?.action === "hardlink" ? only : undefined;
    if (exact !== undefined && !isGlob(path)) {
      await writeVerified(repo, exact, sink);
      return { changeset: s.id, tar: false, members: 1, problems: s.problems };
    }
    if (opts.allowTar === false) {
      throw new Error(
        `"${path}" is not one file (it matches ${s.entries.length} entries): its tar would go ` +
          `to a terminal; redirect the output to a file or a pipe`,
      );
    }
    const members = await writeTar(repo, s.entries, sink);
    return { changeset: s.id, tar: true, members, problems: s.problems };
  }

  /**
   * Checks the repository and this index against it (see lib/check.ts): with `readData`, every
   * needed blob is read and verified; with `repair`, lost blobs are recorded so that the next
   * push stores them again, and old temporary objects are deleted.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const r = await store.check({ readData: { kind: "all" } });
   * assert.deepEqual(r.findings.filter((f) => f.severity === "damage"), []);
   * assert.equal(r.readObjects > 0, true);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async check(opts: CheckOptions & { lock?: LockWaitOptions } = {}): Promise<CheckResult> {
    const o = arg.object("N2S.check", "options", opts);
    arg.optionalBoolean("N2S.check", "options.repair", o.repair);
    arg.optionalObject("N2S.check", "options.readData", o.readData);
    const repo = await this.repository();
    // Repair deletes (temporary objects) and changes what pushes trust: it runs alone. A plain
    // check only reads, beside anything but a command that deletes.
    const lock = await acquireLock(repo, {
      kind: opts.repair ? "exclusive" : "shared",
      command: opts.repair ? "check --repair" : "check",
      bestEffort: !opts.repair,
      ...opts.lock,
    });
    try {
      return await checkRepository(repo, this.index, opts);
    } finally {
      await lock.release();
    }
  }

  /**
   * Applies a retention policy (see lib/retention/forget.ts) holding the exclusive lock: the
   * changesets it does not keep are forgotten, and kept ones that depended on them rewritten.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello again\n");
   * await store.push({ client: scanClient({ dir: `${dir}/data` }), source: "data" });
   * const r = await store.forget({ policy: { last: 1 } });
   * assert.deepEqual(r.forgotten, [changeset]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async forget(opts: ForgetOptions & { lock?: LockWaitOptions }): Promise<ForgetResult> {
    const o = arg.object("N2S.forget", "options", opts);
    arg.object("N2S.forget", "options.policy", o.policy);
    arg.optionalString("N2S.forget", "options.source", o.source);
    arg.optionalBoolean("N2S.forget", "options.dryRun", o.dryRun);
    const repo = await this.repository();
    const lock = await acquireLock(repo, {
      kind: opts.dryRun ? "shared" : "exclusive",
      command: opts.dryRun ? "forget --dry-run" : "forget",
      ...opts.lock,
    });
    try {
      return await forget(repo, this.index, opts);
    } finally {
      await lock.release();
    }
  }

  /**
   * Deletes what no changeset references and repacks packs mostly unused (see
   * lib/retention/prune.ts), holding the exclusive lock.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello again\n");
   * await store.push({ client: scanClient({ dir: `${dir}/data` }), source: "data" });
   * await store.forget({ policy: { last: 1 } });
   * // The first version of a.txt is referenced by no changeset any more.
   * const r = await store.prune();
   * assert.equal(r.bytesAfter < r.bytesBefore, true);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async prune(opts: PruneOptions & { lock?: LockWaitOptions } = {}): Promise<PruneResult> {
    const o = arg.object("N2S.prune", "options", opts);
    arg.optionalBoolean("N2S.prune", "options.dryRun", o.dryRun);
    arg.optionalNumber("N2S.prune", "options.maxUnused", o.maxUnused, 0, 1);
    const repo = await this.repository();
    const lock = await acquireLock(repo, {
      kind: opts.dryRun ? "shared" : "exclusive",
      command: opts.dryRun ? "prune --dry-run" : "prune",
      ...opts.lock,
    });
    try {
      return await prune(repo, this.index, opts);
    } finally {
      await lock.release();
    }
  }

  /**
   * Changesets (all, or one by id prefix) with counts.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const [c] = store.status(changeset!);
   * assert.equal(c.status, "complete");
   * assert.equal(c.uploadedBytes, 6);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  status(id?: string, filter: ChangesetFilter = {}): ChangesetSummary[] {
    arg.optionalString("N2S.status", "id", id);
    const rows = id
      ? [this.index.resolveChangeset(id)]
      : this.index.listChangesets(filter.source).filter(byHost(filter.host));
    return rows.map((c) => this.#summary(c));
  }

  /**
   * The changeset chain of a source (or of every source), oldest first.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * assert.deepEqual(store.log("data").map((c) => c.id), [changeset]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  log(source?: string, filter: Omit<ChangesetFilter, "source"> = {}): ChangesetSummary[] {
    arg.optionalString("N2S.log", "source", source);
    return this.index.listChangesets(source).filter(byHost(filter.host))
      .map((c) => this.#summary(c));
  }

  /**
   * Entries of one changeset.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const [a] = store.ls(changeset!);
   * assert.equal(a.path, "a.txt");
   * assert.equal(a.status, "confirmed");
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  ls(id: string): FileListing[] {
    arg.string("N2S.ls", "id", id);
    const cs = this.index.resolveChangeset(id);
    return this.index.filesOf(cs.id).map((f) => ({
      path: f.path,
      action: f.action,
      size: f.size,
      blobId: f.blob_id,
      fileHash: f.file_hash,
      status: f.status,
      confirmed: f.confirmed,
      target: f.target,
    }));
  }

  /**
   * Every stored version of the paths matching a glob (or containing a plain string).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { N2S, scanClient } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * await Deno.mkdir(`${dir}/data`);
   * await Deno.writeTextFile(`${dir}/data/a.txt`, "hello\n");
   * const store = await N2S.init({
   *   repository: `${dir}/repo`,
   *   index: `${dir}/index.sqlite`,
   *   passphrase: "correct horse",
   *   logN: 10, // a cheap key: for examples and tests only
   * });
   * const client = scanClient({ dir: `${dir}/data` });
   * const { changeset } = await store.push({ client, source: "data" });
   * const hits = store.find("*.txt");
   * assert.deepEqual(hits.map((h) => [h.path, h.changeset]), [["a.txt", changeset]]);
   * await store.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  find(pattern: string, filter: ChangesetFilter = {}): FindHit[] {
    arg.string("N2S.find", "pattern", pattern);
    const glob = isGlob(pattern) ? compileGlob(pattern) : undefined;
    const needle = unescapePath(pattern).normalize("NFC");
    const test = glob
      ? (p: string) => glob.matches(p)
      : (p: string) => p.normalize("NFC").includes(needle);
    const sources = new Map(
      this.index.listChangesets(filter.source).filter(byHost(filter.host))
        .map((c) => [c.id, c.source]),
    );
    const out: FindHit[] = [];
    for (const f of this.index.findPaths(test, literalPart(pattern))) {
      if (!sources.has(f.changeset)) continue;
      out.push({
        path: f.path,
        changeset: f.changeset,
        source: sources.get(f.changeset) ?? "",
        action: f.action,
        size: f.size,
        blobId: f.blob_id,
        confirmed: f.confirmed,
      });
    }
    return out;
  }

  #summary(c: ChangesetRow): ChangesetSummary {
    const n = this.index.summaryCounts(c);
    return {
      id: c.id,
      name: c.name,
      source: c.source,
      client: c.client,
      parent: c.parent,
      status: c.status,
      files: n.files,
      bytes: n.bytes,
      uploaded: n.uploaded,
      uploadedBytes: n.uploadedBytes,
      present: n.present,
      failed: n.failed,
      pending: n.pending,
      created: c.created,
      completed: c.completed,
      error: c.error,
      host: c.host ?? null,
    };
  }

  /**
   * Closes the index and the backend.
   *
   * @example
   * ```ts
   * import { N2S } from "@n2s/n2s";
   *
   * const dir = await Deno.makeTempDir();
   * const repository = `${dir}/repo`;
   * const index = `${dir}/index.sqlite`;
   * const store = await N2S.init({ repository, index, passphrase: "pw", logN: 10 });
   * try {
   *   const changesets = store.status();
   *   if (changesets.length !== 0) throw new Error("a new repository has no changesets");
   * } finally {
   *   await store.close();
   * }
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async close(): Promise<void> {
    this.index.close();
    await this.backend.close();
  }
}

/** Keeps the changesets pushed from `host` (all when undefined). */
function byHost(host: string | undefined): (c: ChangesetRow) => boolean {
  return host === undefined ? () => true : (c) => c.host === host;
}

/**
 * Text that every path a find pattern matches holds as the index stores it: the longest run of
 * printable ASCII (no quote) between the glob's wildcards and bracket expressions, when it has
 * two characters or more; undefined when the pattern has none, or has alternatives or escapes.
 */
export function literalPart(pattern: string): string | undefined {
  if (/[{}\\]/.test(pattern)) return undefined;
  const pieces = (isGlob(pattern) ? pattern.replace(/\[[^\]]*\]?/g, "*").split(/[*?]+/) : [pattern])
    .filter((p) => /^[\x20-\x7e]+$/.test(p) && !/["\\]/.test(p));
  const longest = pieces.sort((a, b) => b.length - a.length)[0];
  return longest !== undefined && longest.length >= 2 ? longest : undefined;
}
