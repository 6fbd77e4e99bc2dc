// The library's front door: open a repository with its index, then push, pull, list, search
// and read status. The CLI is a thin layer over this class.

import type { Backend } from "./backends/backend.ts";
import { openBackend, type OpenOptions as BackendOpenOptions } from "./backends/open.ts";
import { denoSuite } from "./crypto_deno.ts";
import type { Suite } from "./format/suite.ts";
import { Index } from "./index/sqlite.ts";
import type { ChangesetRow } from "./index/types.ts";
import type { Client } from "./clients/client.ts";
import { compileGlob, isGlob, unescapePath } from "./glob.ts";
import { parseKey } from "./repository/layout.ts";
import {
  initRepository,
  openRepository,
  readConfig,
  type Repository,
  type RepositoryConfig,
} from "./repository/repository.ts";
import { push, resume } from "./push/push.ts";
import {
  acquireLock,
  type AcquireOptions,
  type LockHandle,
  type LockWaitOptions,
} from "./repository/lock.ts";
import type { PushOptions, PushResult } from "./push/types.ts";
import { type PullResult, restoreState } from "./pull/restore.ts";
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
import { RECOVERY_PAGE_HTML } from "./recovery_page/page.ts";

/** A changeset as `status` and `log` report it. */
export interface ChangesetSummary {
  id: string;
  name: string | null;
  source: string;
  client: string;
  parent: string | null;
  status: string;
  /** Entries in the changeset (writes, links, deletions). */
  files: number;
  /** Bytes of the files written. */
  bytes: number;
  /** Blobs uploaded by this changeset. */
  uploaded: number;
  uploaded_bytes: number;
  /** Files whose blob was already stored. */
  present: number;
  failed: number;
  pending: number;
  created: string;
  completed: string | null;
  error: string | null;
}

/** One entry of a changeset as `ls` reports it. */
export interface FileListing {
  path: string;
  action: string;
  size: number | null;
  blob_id: string | null;
  file_hash: string | null;
  status: string;
  confirmed: string | null;
  target: string | null;
}

/**
 * What is known to be missing from a state (a hole in its chain): the answer is incomplete, and
 * the command exits 1.
 */
export interface Problem {
  path: string;
  message: string;
}

/** One path of the state at a changeset, as `ls` reports it. */
export interface TreeEntry {
  path: string;
  action: string;
  size: number | null;
  blob_id: string | null;
  file_hash: string | null;
  target: string | null;
  mode: number | null;
  /** Milliseconds since 1970 UTC. */
  mtime: number | null;
}

/** The figures of the whole repository, as `stats` without a changeset reports them. */
export interface RepositoryStats {
  changesets: number;
  sources: number;
  /** Distinct file versions (blobs) the index knows, and their content in bytes. */
  blobs: number;
  bytes: number;
  /** Every blob and pack object in the repository, and their size. */
  storedBytes: number;
  packs: number;
  looseBlobs: number;
  /** bytes / storedBytes. */
  compressionRatio: number | null;
}

/** One stored version of a path as `find` reports it. */
export interface FindHit {
  path: string;
  changeset: string;
  source: string;
  action: string;
  size: number | null;
  blob_id: string | null;
  confirmed: string | null;
}

/** Options of a pull. */
export interface StorePullOptions {
  patterns?: string[];
  concurrency?: number;
  onProgress?: Parameters<typeof restoreState>[2]["onProgress"];
  /** Restore owner and group (default: when running as root). */
  owner?: boolean;
  /** When a command that deletes holds the repository: wait (default) or fail. */
  lock?: LockWaitOptions;
  /** A file already in the target: replaced when it differs (default), always, or never. */
  overwrite?: Overwrite;
  /** Decides and reports what would be written, replaced and kept; writes nothing. */
  dryRun?: boolean;
}

/** Options to open a store. */
export interface OpenOptions {
  /** Repository location: a path, file://, sftp://, s3://, ipfs:// or rclone: (see README). */
  repository: string;
  /** Options of the backend stack (environment, retries, concurrency); see `openBackend`. */
  backendOptions?: BackendOpenOptions;
  /** Index file; defaults to one per repository under the user's data directory. */
  index?: string;
  /** Passphrase; needed for push and pull, not for status, ls, find and log. */
  passphrase?: string | (() => Promise<string>);
  /** Crypto primitives; the fast Deno suite by default. */
  suite?: Suite;
  /** A backend to use instead of opening `repository` (for wrappers and tests). */
  backend?: Backend;
}

/** A repository and its index, opened together. */
export class N2S {
  #repo: Repository | null = null;
  private constructor(
    readonly backend: Backend,
    readonly config: RepositoryConfig,
    readonly index: Index,
    readonly suite: Suite,
    private readonly passphrase: OpenOptions["passphrase"],
  ) {}

  /** Creates a repository at `repository` and opens it. */
  static async init(
    opts: OpenOptions & {
      passphrase: string;
      label?: string;
      logN?: number;
      /** Target size of pack objects in bytes (default 16 MiB). */
      packSize?: number;
      /** Sealed blobs under this many bytes go into packs (default 1 MiB). */
      packThreshold?: number;
    },
  ): Promise<N2S> {
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

  /** Opens an existing repository and its index (created when absent). */
  static async open(opts: OpenOptions): Promise<N2S> {
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

  /** Path of the index file. */
  get indexPath(): string {
    return this.index.path;
  }

  /** The repository with its master key (asks for the passphrase once). */
  async repository(): Promise<Repository> {
    if (this.#repo) return this.#repo;
    const p = typeof this.passphrase === "function" ? await this.passphrase() : this.passphrase;
    if (p === undefined) throw new Error("a passphrase is needed to open the repository");
    this.#repo = await openRepository(this.backend, this.suite, p);
    return this.#repo;
  }

  /** Pushes the changes a client finds as a new changeset of `source`. */
  async push(opts: PushOptions): Promise<PushResult> {
    // The key is derived before the walk, not during it: scrypt's 128 MiB on top of the walk's
    // memory took a 50,000-file push past 250 MiB; after it, both stay under 200 MiB.
    return push(await this.repository(), this.index, opts);
  }

  /** Completes interrupted pushes (of one source, or of all). */
  async resume(opts: Parameters<typeof resume>[2] = {}): ReturnType<typeof resume> {
    return resume(await this.repository(), this.index, opts);
  }

  /**
   * Takes a lock of the repository (see lib/repository/lock.ts): `exclusive` for a command that
   * deletes, which then runs beside no other command; release it in a `finally`.
   */
  async lock(opts: AcquireOptions): Promise<LockHandle> {
    return acquireLock(await this.repository(), opts);
  }

  /**
   * Restores the state of a source at a changeset (id or unique prefix) under `target`, holding
   * a shared lock (nothing is deleted meanwhile; on read-only storage it goes on without one).
   */
  async pull(
    changeset: string,
    target: string,
    opts: StorePullOptions = {},
  ): Promise<PullResult & { changeset: string }> {
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
  ): Promise<PullResult & { changeset: string }> {
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
   */
  async resolve(ref: string): Promise<Located> {
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
   */
  async tree(
    ref: string,
    patterns: string[] = [],
  ): Promise<{ changeset: string; source: string; entries: TreeEntry[]; problems: Problem[] }> {
    const s = await this.#chosen(ref, patterns);
    return {
      changeset: s.id,
      source: s.source,
      problems: s.problems,
      entries: s.entries.map((e) => ({
        path: e.path,
        action: e.action,
        size: e.size ?? null,
        blob_id: e.blob_id ?? null,
        file_hash: e.file_hash ?? null,
        target: e.target ?? null,
        mode: e.mode ?? null,
        mtime: e.mtime ?? null,
      })),
    };
  }

  /** What differs from the state at `from` to the state at `to`. */
  async diff(
    from: string,
    to: string,
  ): Promise<{ from: string; to: string; changes: DiffEntry[]; problems: Problem[] }> {
    const a = await this.#state(from);
    const b = await this.#state(to);
    return {
      from: a.id,
      to: b.id,
      changes: diffStates(a.entries, b.entries),
      problems: [...a.problems, ...b.problems],
    };
  }

  /** Files, bytes, stored bytes and packs of the state at a changeset. */
  async stats(
    ref: string,
  ): Promise<Stats & { changeset: string; source: string; problems: Problem[] }> {
    const s = await this.#state(ref);
    const stats = await stateStats(s.entries, async (blobId) => {
      const known = this.index.blobConfirmed(blobId)?.stored_size;
      if (known !== undefined && known !== null) return known;
      return (await (await this.repository()).statBlob(blobId))?.size ?? null;
    });
    return { changeset: s.id, source: s.source, ...stats, problems: s.problems };
  }

  /** The figures of the whole repository: what the index knows, and what the repository holds. */
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
   */
  async dump(
    ref: string,
    path: string,
    sink: Sink,
    opts: { allowTar?: boolean } = {},
  ): Promise<{ changeset: string; tar: boolean; members: number; problems: Problem[] }> {
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
   */
  async check(opts: CheckOptions & { lock?: LockWaitOptions } = {}): Promise<CheckResult> {
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
   */
  async forget(opts: ForgetOptions & { lock?: LockWaitOptions }): Promise<ForgetResult> {
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
   */
  async prune(opts: PruneOptions & { lock?: LockWaitOptions } = {}): Promise<PruneResult> {
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

  /** Changesets (all, or one by id prefix) with counts. */
  status(id?: string): ChangesetSummary[] {
    const rows = id ? [this.index.resolveChangeset(id)] : this.index.listChangesets();
    return rows.map((c) => this.#summary(c));
  }

  /** The changeset chain of a source (or of every source), oldest first. */
  log(source?: string): ChangesetSummary[] {
    return this.index.listChangesets(source).map((c) => this.#summary(c));
  }

  /** Entries of one changeset. */
  ls(id: string): FileListing[] {
    const cs = this.index.resolveChangeset(id);
    return this.index.filesOf(cs.id).map((f) => ({
      path: f.path,
      action: f.action,
      size: f.size,
      blob_id: f.blob_id,
      file_hash: f.file_hash,
      status: f.status,
      confirmed: f.confirmed,
      target: f.target,
    }));
  }

  /** Every stored version of the paths matching a glob (or containing a plain string). */
  find(pattern: string): FindHit[] {
    const glob = isGlob(pattern) ? compileGlob(pattern) : undefined;
    const needle = unescapePath(pattern).normalize("NFC");
    const test = glob
      ? (p: string) => glob.matches(p)
      : (p: string) => p.normalize("NFC").includes(needle);
    const sources = new Map(this.index.listChangesets().map((c) => [c.id, c.source]));
    const out: FindHit[] = [];
    for (const f of this.index.findPaths(test)) {
      out.push({
        path: f.path,
        changeset: f.changeset,
        source: sources.get(f.changeset) ?? "",
        action: f.action,
        size: f.size,
        blob_id: f.blob_id,
        confirmed: f.confirmed,
      });
    }
    return out;
  }

  #summary(c: ChangesetRow): ChangesetSummary {
    const n = this.index.counts(c.id);
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
      uploaded_bytes: n.uploadedBytes,
      present: n.present,
      failed: n.failed,
      pending: n.pending,
      created: c.created,
      completed: c.completed,
      error: c.error,
    };
  }

  /** Closes the index and the backend. */
  async close(): Promise<void> {
    this.index.close();
    await this.backend.close();
  }
}

export type { Client };
