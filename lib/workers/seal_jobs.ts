// The CPU-heavy half of a push, as plain functions that run in any thread: read and hash files,
// seal the small ones from the bytes hashed, and seal a large one segment by segment. A Worker
// runs them (lib/workers/seal_worker.ts) and so does the main thread when no Worker can start.

import { type BlobHeader, sealBlob, type SealResult } from "../format/blob.ts";
import { concat, fromHex, toHex } from "../format/bytes.ts";
import { ContainerWriter, SEGMENT_DATA_MAX } from "../format/container.ts";
import { concat as join, utf8 } from "../format/bytes.ts";
import type { Suite } from "../format/suite.ts";

/** Files up to this size are read whole and sealed from memory in one body segment. */
export const SMALL_FILE = SEGMENT_DATA_MAX;
/** How many times a file that changes while it is read is read again. */
export const CHANGE_RETRIES = 3;

/** What hashing one file found, or why it could not be read. */
export type Hashed =
  | {
    ok: true;
    fileHash: string;
    blobId: string;
    size: number;
    mtime: number;
    mode: number;
    inode: number | null;
  }
  | { ok: false; message: string };

/** Why a file could not be read, in words for the user. */
export function describeReadError(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "vanished before it could be read";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied; it was not stored";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory now; it was not stored";
  return e instanceof Error ? e.message : String(e);
}

/** `root/path` with one slash between them. */
export function fullPath(root: string, path: string): string {
  return root.endsWith("/") ? root + path : `${root}/${path}`;
}

interface Stat {
  size: number;
  mtime: number;
  mode: number;
  inode: number | null;
}

function statOf(f: Deno.FsFile): Stat {
  const st = f.statSync();
  return {
    size: st.size,
    mtime: st.mtime?.getTime() ?? 0,
    mode: (st.mode ?? 0o644) & 0o7777,
    inode: st.ino ?? null,
  };
}

const syncReader = (f: Deno.FsFile) => ({
  read: (buf: Uint8Array) => Promise.resolve(f.readSync(buf)),
});

/**
 * Reads and hashes one file. A file of at most SMALL_FILE bytes is read whole and its bytes are
 * returned too (sealed later without reading again); a larger one is hashed through `buf`.
 * A file that changes while it is read (size or mtime) is read again, up to CHANGE_RETRIES times.
 */
export function hashFile(
  suite: Suite,
  root: string,
  path: string,
  buf: Uint8Array,
): { hashed: Hashed; bytes: Uint8Array | null } {
  for (let attempt = 1;; attempt++) {
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(fullPath(root, path), { read: true });
    } catch (e) {
      return { hashed: { ok: false, message: describeReadError(e) }, bytes: null };
    }
    try {
      const st = statOf(f);
      let bytes: Uint8Array | null = null;
      let fileHash: string;
      let total = 0;
      if (st.size <= SMALL_FILE) {
        // One byte more than the size, to see a file that grew.
        const whole = new Uint8Array(st.size + 1);
        while (total < whole.length) {
          const k = f.readSync(whole.subarray(total));
          if (k === null) break;
          total += k;
        }
        bytes = whole.subarray(0, total);
        fileHash = toHex(suite.hash ? suite.hash(bytes) : hashOnce(suite, bytes));
      } else {
        const h = suite.newHasher();
        while (true) {
          let n = 0;
          while (n < buf.length) {
            const k = f.readSync(n === 0 ? buf : buf.subarray(n));
            if (k === null) break;
            n += k;
          }
          if (n === 0) break;
          h.update(buf.subarray(0, n));
          total += n;
        }
        fileHash = toHex(h.digest());
      }
      const after = statOf(f);
      if (after.size !== st.size || after.mtime !== st.mtime || total !== st.size) {
        if (attempt < CHANGE_RETRIES) continue;
        return {
          hashed: {
            ok: false,
            message: `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`,
          },
          bytes: null,
        };
      }
      return {
        hashed: {
          ok: true,
          fileHash,
          blobId: blobIdOf(suite, path, fileHash),
          size: st.size,
          mtime: st.mtime,
          mode: st.mode,
          inode: st.inode,
        },
        bytes,
      };
    } catch (e) {
      return { hashed: { ok: false, message: describeReadError(e) }, bytes: null };
    } finally {
      f.close();
    }
  }
}

const COLON = utf8(":");

/** blob_id as lib/format/ids.ts defines it, with the suite's one-shot hash when it has one. */
function blobIdOf(suite: Suite, path: string, fileHash: string): string {
  const input = join([utf8(path), COLON, utf8(fileHash)]);
  return toHex(suite.hash ? suite.hash(input) : hashOnce(suite, input));
}

function hashOnce(suite: Suite, data: Uint8Array): Uint8Array {
  const h = suite.newHasher();
  h.update(data);
  return h.digest();
}

/**
 * Seals a small file's bytes (those hashed in pass 1) into a whole blob object: the layout
 * sealBlob gives a file of at most one segment.
 */
export function sealSmall(
  suite: Suite,
  master: Uint8Array,
  blobId: string,
  header: BlobHeader,
  bytes: Uint8Array,
  compressLevel: number | undefined,
): Uint8Array {
  const w = new ContainerWriter(suite, "blob", master, fromHex(blobId), { compressLevel });
  return concat([...w.start(header), ...w.body(bytes, true)]);
}

/** Thrown while sealing a large file when the file is not the one hashed in pass 1. */
export class ChangedError extends Error {}

/**
 * Seals a large file segment by segment, hashing it again; yields each sealed segment's parts.
 * Throws ChangedError when the content differs from `header.file_hash`, and the read error's
 * description when the file cannot be read. The file is closed when the generator ends.
 */
export async function* sealLarge(
  suite: Suite,
  master: Uint8Array,
  root: string,
  header: BlobHeader,
  compressLevel: number | undefined,
): AsyncGenerator<Uint8Array[]> {
  let f: Deno.FsFile;
  try {
    f = Deno.openSync(fullPath(root, header.path), { read: true });
  } catch (e) {
    throw new ChangedError(describeReadError(e));
  }
  try {
    const res: SealResult = { fileHash: "", size: 0 };
    yield* sealBlob(suite, master, header, syncReader(f), res, {
      compressLevel,
      beforeFinal: (h, size) => {
        if (h !== header.file_hash || size !== header.size) {
          throw new ChangedError("changed while it was read");
        }
      },
    });
  } finally {
    f.close();
  }
}
