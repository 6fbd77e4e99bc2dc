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
import { stateFromIndex, stateFromManifests } from "./pull/state.ts";
import { type CheckOptions, checkRepository, type CheckResult } from "./check.ts";
import { listManifests } from "./repository/manifest.ts";
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
    let id: string;
    let entries;
    const known = this.index.listChangesets().some((c) => c.id.startsWith(changeset.toUpperCase()));
    if (known) {
      id = this.index.resolveChangeset(changeset).id;
      entries = stateFromIndex(this.index, id);
    } else {
      // No index (a fresh machine), or an index that never saw this changeset (pushed from
      // another machine): the manifests in the repository are enough.
      const all = (await listManifests(repo)).filter((m) => m.startsWith(changeset.toUpperCase()));
      if (all.length !== 1) {
        throw new Error(
          all.length === 0
            ? `no changeset matches "${changeset}" in ${this.backend.name}`
            : `"${changeset}" matches several changesets`,
        );
      }
      id = all[0];
      entries = await stateFromManifests(repo, id);
    }
    const r = await restoreState(repo, entries.entries, { target, ...opts });
    // What is known to be missing goes first: the restore is incomplete whatever else happened.
    r.problems.unshift(...entries.problems);
    return { ...r, changeset: id };
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
