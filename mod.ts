/**
 * n2s: encrypted, path-aware storage of changing files.
 *
 * Open a repository with its index, push the files a client discovers, pull any changeset
 * back, and ask what is stored where:
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { N2S, scanClient } from "@n2s/n2s";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/data/reports`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/data/reports/q3.csv`, "region,total\nnorth,42\n");
 *
 * // A repository (a path, or sftp://, s3://, ipfs://, rclone:) and the index beside it.
 * const store = await N2S.init({
 *   repository: `${dir}/repo`,
 *   index: `${dir}/index.sqlite`,
 *   passphrase: "correct horse",
 *   logN: 10, // a cheap key: for examples and tests only
 * });
 * try {
 *   const r = await store.push({ client: scanClient({ dir: `${dir}/data` }), source: "data" });
 *   await store.pull(r.changeset!, `${dir}/restore`);
 *   const restored = await Deno.readTextFile(`${dir}/restore/reports/q3.csv`);
 *   assert.equal(restored, "region,total\nnorth,42\n");
 *   assert.deepEqual(store.find("**\/*.csv").map((h) => h.path), ["reports/q3.csv"]);
 *   assert.equal(store.status()[0].status, "complete");
 * } finally {
 *   await store.close();
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * Later runs open the same repository with `N2S.open({ repository, passphrase })`.
 *
 * @module
 */

export {
  type ChangesetFilter,
  type ChangesetStats,
  type ChangesetSummary,
  type DiffResult,
  type DumpOptions,
  type DumpResult,
  type FileListing,
  type FindHit,
  type InitOptions,
  type LocksResult,
  N2S,
  type OpenOptions,
  type Problem,
  type RepositoryStats,
  type StorePullOptions,
  type StorePullResult,
  type Tree,
  type TreeEntry,
  type UnlockOptions,
} from "./lib/n2s.ts";
export type { Located } from "./lib/inspect/resolve.ts";
export type { Change, DiffEntry } from "./lib/inspect/diff.ts";
export type { Stats } from "./lib/inspect/stats.ts";
export type { Sink } from "./lib/inspect/dump.ts";
export { type Overwrite, OVERWRITE_RULES } from "./lib/pull/overwrite.ts";
export type { PullProgress, PullResult } from "./lib/pull/restore.ts";
export type {
  CheckFinding,
  CheckOptions,
  CheckResult,
  DamagedChangeset,
  ReadData,
} from "./lib/check.ts";
export type { ForgetDecision, ForgetOptions, ForgetResult } from "./lib/retention/forget.ts";
export type { Duration, RetentionPolicy } from "./lib/retention/policy.ts";
export type { PruneOptions, PruneResult } from "./lib/retention/prune.ts";

export type {
  Client,
  ClientProblem,
  ContentFile,
  PreviousState,
  SourceEntry,
} from "./lib/clients/client.ts";
export { openLocalFile } from "./lib/clients/client.ts";
export type { ChunkReader } from "./lib/format/blob.ts";
export type {
  Action,
  ChangesetRow,
  ChangesetStatus,
  EntryMeta,
  PathState,
} from "./lib/index/types.ts";
export { type ScanClient, scanClient, type ScanOptions } from "./lib/clients/scan.ts";
export { type BtrfsClient, btrfsClient, type BtrfsOptions } from "./lib/clients/btrfs.ts";
export { type ZfsClient, zfsClient, type ZfsOptions } from "./lib/clients/zfs.ts";
export { type DsgClient, dsgClient, DsgError, type DsgOptions } from "./lib/clients/dsg.ts";
export {
  type Command,
  CommandError,
  type CommandResult,
  type Runner,
  systemRunner,
} from "./lib/clients/runner.ts";

export type { EntryProblem, PushOptions, PushProgress, PushResult } from "./lib/push/types.ts";
export type { SharedPushOptions, SharedPushResult } from "./lib/push/shared.ts";
export type { ResumeOptions, ResumeResult } from "./lib/push/push.ts";

export {
  type AcquireOptions,
  LockBusyError,
  type LockHandle,
  type LockInfo,
  type LockKind,
  type LockRecord,
  type LockState,
  type LockWaitOptions,
  type UnlockResult,
  type UnreadableLock,
} from "./lib/repository/lock.ts";
export type { RepositoryConfig } from "./lib/repository/repository.ts";

export {
  type Backend,
  BackendError,
  type Body,
  type ByteRange,
  bytesBody,
  type ErrorKind,
  NotFoundError,
  type ObjectFiles,
  type ObjectInfo,
  type TemporaryObject,
} from "./lib/backends/backend.ts";
export {
  LOCATION_FORMS,
  openBackend,
  type OpenOptions as BackendOpenOptions,
} from "./lib/backends/open.ts";
export type { RetryOptions, StackOptions } from "./lib/backends/wrappers.ts";

export { denoSuite, type SuiteInfo } from "./lib/crypto_deno.ts";
export { portableSuite } from "./lib/format/suite_js.ts";
export type { Aead, Hasher, Suite } from "./lib/format/suite.ts";

export { IndexError, type IndexProblem } from "./lib/index/errors.ts";
export { ContainerError } from "./lib/format/container.ts";
export { WrongPassphraseError } from "./lib/format/keyfile.ts";
