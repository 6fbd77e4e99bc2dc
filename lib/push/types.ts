// What a push takes and what it reports.

import type { Client } from "../clients/client.ts";
import type { UlidGenerator } from "../format/ids.ts";
import type { LockWaitOptions } from "../repository/lock.ts";

/** Progress of a push, reported as it goes. */
export interface PushProgress {
  phase: "scan" | "upload" | "commit";
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
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
  onProgress?: (p: PushProgress) => void;
  /** When another command holds the source's lock: wait (default) or fail, and what to say. */
  lock?: LockWaitOptions;
  now?: () => number;
  ids?: UlidGenerator;
}

/** A problem with one entry: the rest of the push went on. */
export interface EntryProblem {
  path: string;
  message: string;
}

/** What a push did. */
export interface PushResult {
  /** Changeset id, or null when nothing changed and the client keeps no empty changesets. */
  changeset: string | null;
  /** Changesets of this source that were interrupted earlier and completed now. */
  resumed: string[];
  files: number;
  bytes: number;
  uploaded: number;
  uploadedBytes: number;
  present: number;
  deleted: number;
  links: number;
  unchanged: number;
  /** Entries that were not stored (the command fails after storing the rest). */
  problems: EntryProblem[];
  /** Things skipped on purpose, such as sockets and FIFOs. */
  notes: EntryProblem[];
}
