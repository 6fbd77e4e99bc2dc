// What a push takes and what it reports.

import type { Client } from "../clients/client.ts";
import type { UlidGenerator } from "../format/ids.ts";
import type { LockWaitOptions } from "../repository/lock.ts";

/** Progress of a push, reported as it goes. */
export interface PushProgress {
  /** The stage the push is in: listing changes, uploading content, writing the manifest. */
  phase: "scan" | "upload" | "commit";
  /** Files settled so far. */
  filesDone: number;
  /** Files the push has to settle (grows during the scan). */
  filesTotal: number;
  /** Bytes of content read so far. */
  bytesDone: number;
  /** Bytes of content the push has to read (grows during the scan). */
  bytesTotal: number;
}

/** Options of a push. */
export interface PushOptions {
  /** Where entries come from. */
  client: Client;
  /** Source name (a changeset chain per source). */
  source: string;
  /** Changeset name; defaults to the client's suggestion. */
  name?: string;
  /** Objects in flight to the backend at once (default: what the backend says suits it). */
  concurrency?: number;
  /** zstd level, 0 for none (default 3). */
  compressLevel?: number;
  /** Uploads confirmed per durable batch (default 1000); smaller batches lose less to a crash. */
  confirmBatch?: number;
  /** Called as the push goes (a progress bar). */
  onProgress?: (p: PushProgress) => void;
  /** When another command holds the source's lock: wait (default) or fail, and what to say. */
  lock?: LockWaitOptions;
  /**
   * The clock, in milliseconds since 1970 (tests replace it).
   * @internal
   */
  now?: () => number;
  /**
   * Makes changeset ids (tests replace it).
   * @internal
   */
  ids?: UlidGenerator;
}

/** A problem with one entry: the rest of the push went on. */
export interface EntryProblem {
  /** Path relative to the source root. */
  path: string;
  /** What went wrong, for people. */
  message: string;
}

/** What a push did. */
export interface PushResult {
  /** Changeset id, or null when nothing changed and the client keeps no empty changesets. */
  changeset: string | null;
  /** Changesets of this source that were interrupted earlier and completed now. */
  resumed: string[];
  /** Entries recorded in the changeset. */
  files: number;
  /** Bytes of the files written. */
  bytes: number;
  /** Blobs uploaded by this push. */
  uploaded: number;
  /** Bytes of content uploaded (before compression). */
  uploadedBytes: number;
  /** Files whose blob was already stored (nothing uploaded). */
  present: number;
  /** Deletions recorded. */
  deleted: number;
  /** Symlinks recorded. */
  links: number;
  /** Entries skipped because nothing changed since the last changeset. */
  unchanged: number;
  /** Entries that were not stored (the command fails after storing the rest). */
  problems: EntryProblem[];
  /** Things skipped on purpose, such as sockets and FIFOs. */
  notes: EntryProblem[];
}
