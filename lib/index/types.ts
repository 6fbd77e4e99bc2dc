// Rows of the index: what the changesets and files tables hold.

/** Changeset status: pending → uploading → complete, or failed. */
export type ChangesetStatus = "pending" | "uploading" | "complete" | "failed";
/**
 * What a changeset entry does at its path: a file's content (`write`), a symlink (`link`), a
 * directory (`dir`), a FIFO or device (`special`), another path's hard link (`hardlink`, its
 * `target` the path whose content it shares), or a deletion.
 */
export type Action = "write" | "link" | "dir" | "special" | "hardlink" | "delete";
/** Upload state of one entry: pending, confirmed (uploaded now), present (already stored), failed. */
export type UploadStatus = "pending" | "confirmed" | "present" | "failed";

/** One row of `changesets`. */
export interface ChangesetRow {
  /** The changeset's id (a ULID). */
  id: string;
  /** Its name, or null when it has none. */
  name: string | null;
  /** The source whose chain it belongs to. */
  source: string;
  /** The kind of client that found its entries. */
  client: string;
  /** Where content was read from (a directory or a snapshot), for resuming. */
  root: string | null;
  /** The previous changeset of its source, or null for the first. */
  parent: string | null;
  /** Where its push stands. */
  status: ChangesetStatus;
  /** Entries the push planned. */
  files_planned: number;
  /** Bytes of the files the push planned to read. */
  bytes_planned: number;
  /** Blobs uploaded so far. */
  files_uploaded: number;
  /** Bytes of content uploaded so far. */
  bytes_uploaded: number;
  /** When the push started, UTC ISO-8601. */
  created: string;
  /** When it completed, UTC ISO-8601, or null. */
  completed: string | null;
  /** Why it failed, or null. */
  error: string | null;
  /** Chain digest, hex, once complete. */
  chain: string | null;
  /** Client-specific JSON (e.g. the snapshot name), used by the next push of the source. */
  info: string | null;
  /** The machine the push ran on, when known. */
  host?: string | null;
  /** A finished changeset's counts (JSON), kept so that listing needs no count of entries. */
  counts?: string | null;
}

/** One row of `files`. */
export interface FileRow {
  changeset: string;
  path: string;
  action: Action;
  file_hash: string | null;
  blob_id: string | null;
  size: number | null;
  /** Milliseconds since the epoch. */
  mtime: number | null;
  mode: number | null;
  inode: number | null;
  target: string | null;
  status: UploadStatus;
  started: string | null;
  confirmed: string | null;
  stored_size: number | null;
  ref: string | null;
  /** The pack holding the blob, and the container's offset and length in it; null when the
   * blob is an object of its own. */
  pack: string | null;
  pack_offset: number | null;
  pack_length: number | null;
  /** The rest of what a restore gives back, as JSON (see EntryMeta). */
  meta: string | null;
  /** The change time when it was planned (nanoseconds, decimal): detects metadata changes. */
  ctime: string | null;
  error: string | null;
}

/** The last known state of one path of a source: what tells whether it changed. */
export interface PathState {
  /** What the path is in that state. */
  action: Action;
  /** A file's size in bytes, else null. */
  size: number | null;
  /** Modification time, milliseconds since 1970 UTC, or null. */
  mtime: number | null;
  /** Inode number when the push saw one, else null. */
  inode: number | null;
  /** POSIX permission bits, or null. */
  mode: number | null;
  /** A symlink's target or a hard link's leader path, else null. */
  target: string | null;
  /** The changeset whose entry this is. */
  changeset: string;
  /** Change time when it was planned (nanoseconds, decimal), or null. */
  ctime: string | null;
}

/** What the index knows of a confirmed blob: when, how large, and where it is stored. */
export interface StoredBlob {
  confirmed: string;
  stored_size: number | null;
  ref: string | null;
  pack: string | null;
  pack_offset: number | null;
  pack_length: number | null;
}

/**
 * What an entry records besides its path, action, content and location: the metadata a
 * restore gives back (the index keeps it as JSON in `meta`; manifests carry the same fields on
 * the entry itself, except `ctime` and `dev`, which only detect changes).
 */
export interface EntryMeta {
  /** Nanoseconds within the second of `mtime`. */
  nsec?: number;
  /** Numeric owner. */
  uid?: number;
  /** Numeric group. */
  gid?: number;
  /** Owner name, where the source system knew it. */
  user?: string;
  /** Group name, where the source system knew it. */
  group?: string;
  /** Extended attributes: name → value (base64). */
  xattrs?: Record<string, string>;
  /** A special file: a FIFO, or a character or block device and its numbers. */
  kind?: "fifo" | "char" | "block";
  /** A device's major number. */
  major?: number;
  /** A device's minor number. */
  minor?: number;
  /** A sparse file's holes: [start, end) byte ranges that read as zeros and take no space. */
  holes?: [number, number][];
  /** The change time (nanoseconds, decimal): for detecting changes only. */
  ctime?: string;
  /** The device holding the file (decimal): for detecting changes only. */
  dev?: string;
}
