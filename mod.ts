/**
 * n2s: encrypted, path-aware storage of changing files.
 *
 * Open a repository with its index, push the files a client discovers, pull any changeset
 * back, and ask what is stored where:
 *
 * ```ts
 * import { N2S, scanClient } from "@n2s/n2s";
 *
 * const store = await N2S.open({ repository: "/srv/n2s", passphrase: "correct horse" });
 * const r = await store.push({ client: scanClient({ paths: ["./data"] }), source: "data" });
 * await store.pull(r.changeset!, "/tmp/restore");
 * console.log(store.status(), store.find("**\/*.csv"));
 * await store.close();
 * ```
 *
 * @module
 */

export {
  type ChangesetSummary,
  type FileListing,
  type FindHit,
  N2S,
  type OpenOptions,
  type Problem,
  type RepositoryStats,
  type StorePullOptions,
  type TreeEntry,
} from "./lib/n2s.ts";
export type { Located } from "./lib/inspect/resolve.ts";
export type { Change, DiffEntry } from "./lib/inspect/diff.ts";
export type { Stats } from "./lib/inspect/stats.ts";
export type { Sink } from "./lib/inspect/dump.ts";
export { type Overwrite, OVERWRITE_RULES } from "./lib/pull/overwrite.ts";
export type { Client, ContentFile, PreviousState, SourceEntry } from "./lib/clients/client.ts";
export { badPath, openLocalFile } from "./lib/clients/client.ts";
export { type ScanClient, scanClient, type ScanOptions } from "./lib/clients/scan.ts";
export { btrfsClient, type BtrfsOptions } from "./lib/clients/btrfs.ts";
export { type ZfsClient, zfsClient, type ZfsOptions } from "./lib/clients/zfs.ts";
export { type DsgClient, dsgClient, type DsgOptions } from "./lib/clients/dsg.ts";
export { type Runner, systemRunner } from "./lib/clients/runner.ts";
export type { EntryProblem, PushOptions, PushProgress, PushResult } from "./lib/push/types.ts";
export { push, resume, type ResumeOptions } from "./lib/push/push.ts";
export {
  acquireLock,
  type AcquireOptions,
  listLocks,
  LOCK_REFRESH_MS,
  LOCK_STALE_MS,
  LockBusyError,
  type LockHandle,
  type LockInfo,
  type LockKind,
  type LockRecord,
  type LockState,
  type LockWaitOptions,
  unlockRepository,
  type UnlockResult,
} from "./lib/repository/lock.ts";
export { type PullOptions, type PullResult, restoreState } from "./lib/pull/restore.ts";
export { type StateEntry, stateFromIndex, stateFromManifests } from "./lib/pull/state.ts";
export {
  initRepository,
  listKeyFiles,
  openRepository,
  readConfig,
  Repository,
  type RepositoryConfig,
} from "./lib/repository/repository.ts";
export {
  type Backend,
  BackendError,
  type Body,
  bytesBody,
  type ErrorKind,
  NotFoundError,
  type ObjectInfo,
} from "./lib/backends/backend.ts";
export { LocalBackend } from "./lib/backends/local/backend.ts";
export {
  LOCATION_FORMS,
  openBackend,
  type OpenOptions as BackendOpenOptions,
} from "./lib/backends/open.ts";
export {
  buildStack,
  FaultBackend,
  type FaultOptions,
  LimitBackend,
  parseFaults,
  RetryBackend,
  type RetryOptions,
  type StackOptions,
} from "./lib/backends/wrappers.ts";
export { Index } from "./lib/index/sqlite.ts";
export type { Action, ChangesetRow, ChangesetStatus, FileRow } from "./lib/index/types.ts";
export { denoSuite } from "./lib/crypto_deno.ts";
export { portableSuite } from "./lib/format/suite_js.ts";
export type { Aead, Hasher, Suite } from "./lib/format/suite.ts";
export { type BlobHeader, openBlob, sealBlob } from "./lib/format/blob.ts";
export { ContainerError } from "./lib/format/container.ts";
export { type KeyFile, WrongPassphraseError } from "./lib/format/keyfile.ts";
export { blobIdFor } from "./lib/format/ids.ts";
export {
  addKey,
  changePassphrase,
  findKey,
  keyFileBytes,
  type NewKeyOptions,
  removeKey,
} from "./lib/keys.ts";
export {
  type BlobFileInfo,
  blobIdFromFileName,
  decryptBlobFiles,
  inspectBlobFiles,
  readBlobHeader,
  rebuildIndex,
  rebuildIndexFile,
  type RebuildResult,
  type RecoveryProblem,
} from "./lib/recover.ts";
export { RECOVERY_PAGE_HTML, RECOVERY_PAGE_KEY } from "./lib/recovery_page/page.ts";
