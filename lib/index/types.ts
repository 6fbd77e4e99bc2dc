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
  id: string;
  name: string | null;
  source: string;
  client: string;
  /** Where content was read from (a directory or a snapshot), for resuming. */
  root: string | null;
  parent: string | null;
  status: ChangesetStatus;
  files_planned: number;
  bytes_planned: number;
  files_uploaded: number;
  bytes_uploaded: number;
  created: string;
  completed: string | null;
  error: string | null;
  /** Chain digest, hex, once complete. */
  chain: string | null;
  /** Client-specific JSON (e.g. the snapshot name), used by the next push of the source. */
  info: string | null;
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
  action: Action;
  size: number | null;
  mtime: number | null;
  inode: number | null;
  mode: number | null;
  target: string | null;
  /** The changeset whose entry this is. */
  changeset: string;
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
  uid?: number;
  gid?: number;
  /** Owner and group names, where the source system knew them. */
  user?: string;
  group?: string;
  /** Extended attributes: name → value (base64). */
  xattrs?: Record<string, string>;
  /** A special file: a FIFO, or a character or block device and its numbers. */
  kind?: "fifo" | "char" | "block";
  major?: number;
  minor?: number;
  /** A sparse file's holes: [start, end) byte ranges that read as zeros and take no space. */
  holes?: [number, number][];
  /** The change time (nanoseconds, decimal) and device: for detecting changes only. */
  ctime?: string;
  dev?: string;
}
