// Where a push reads content: plain files under a directory, which the Workers read themselves,
// or a client's own `open` (a library client), read on this thread and handed to the Workers.
// Both give the pipeline the same two calls: hash a batch of files, and seal a large one.

import { BodyError } from "../backends/backend.ts";
import type { ContentFile } from "../clients/client.ts";
import { type BlobHeader, readFull, sealBlob, type SealResult } from "../format/blob.ts";
import { toHex } from "../format/bytes.ts";
import { SEGMENT_DATA_MAX } from "../format/container.ts";
import type { Repository } from "../repository/repository.ts";
import type { Batch, SealPool } from "../workers/pool.ts";
import type { FileStat } from "../workers/seal_worker.ts";
import {
  CHANGE_RETRIES,
  describeReadError,
  type Hashed,
  SMALL_FILE,
} from "../workers/seal_jobs.ts";

/** What a push reads content through. */
export interface ContentSource {
  /** The directory the Workers read files from; null when only the client can read them. */
  readonly root: string | null;
  /**
   * Reads and hashes files (pass 1). The content of files up to SMALL_FILE bytes stays in the
   * batch for the pool's `seal`, which must then be called (the batch is null when nothing was
   * kept).
   */
  hash(paths: string[]): Promise<{ batch: Batch | null; results: Hashed[] }>;
  /**
   * Seals a large file (pass 2) as the parts of its object, hashing it again: BodyError when
   * it is not the file `header` describes any more, or cannot be read.
   */
  large(header: BlobHeader): AsyncIterable<Uint8Array[]>;
}

/** Files under `root`, read, hashed and sealed by the pool's Workers. */
export function filesUnder(pool: SealPool, root: string): ContentSource {
  return {
    root,
    hash: (paths) => pool.hash(root, paths),
    large: (header) => pool.large(root, header),
  };
}

/** Files that a client's `open` reads: this thread reads them, the Workers hash and seal. */
export function clientFiles(
  pool: SealPool,
  repo: Repository,
  open: (path: string) => Promise<ContentFile>,
  compressLevel: number | undefined,
): ContentSource {
  return {
    root: null,
    async hash(paths) {
      const bytes: Uint8Array[] = [];
      const stats: FileStat[] = [];
      const own: (Hashed | null)[] = [];
      for (const p of paths) {
        const r = await readForHash(repo, open, p);
        own.push(r.hashed);
        bytes.push(r.bytes ?? EMPTY);
        stats.push(r.stat ?? { size: 0, mtime: 0, mode: 0, inode: null });
      }
      const { batch, results } = await pool.take(paths, bytes, stats);
      // Large and unreadable files were handled here: their results replace the Worker's.
      return { batch, results: results.map((r, k) => own[k] ?? r) };
    },
    async *large(header) {
      const f = await open(header.path).catch((e) => {
        throw new BodyError(describeReadError(e));
      });
      try {
        const res: SealResult = { fileHash: "", size: 0 };
        yield* sealBlob(repo.suite, repo.keys, header, f, res, {
          compressLevel,
          beforeFinal: (h, size) => {
            if (h !== header.file_hash || size !== header.size) {
              throw new BodyError("changed while it was read");
            }
          },
        });
      } finally {
        f.close();
      }
    },
  };
}

const EMPTY = new Uint8Array(0);

/**
 * Reads one file through a client's `open`: a small one whole (its hash is the Worker's), a
 * large one hashed here as it streams by. A file that changes while it is read is read again.
 */
async function readForHash(
  repo: Repository,
  open: (path: string) => Promise<ContentFile>,
  path: string,
): Promise<{ hashed: Hashed | null; bytes?: Uint8Array; stat?: FileStat }> {
  for (let attempt = 1;; attempt++) {
    let f: ContentFile;
    try {
      f = await open(path);
    } catch (e) {
      return { hashed: { ok: false, message: describeReadError(e) } };
    }
    try {
      const st = await f.stat();
      let bytes: Uint8Array | undefined;
      let total = 0;
      let fileHash = "";
      if (st.size <= SMALL_FILE) {
        const buf = new Uint8Array(st.size + 1);
        total = await readFull(f, buf);
        bytes = buf.subarray(0, total);
      } else {
        const h = repo.suite.newHasher();
        const buf = new Uint8Array(SEGMENT_DATA_MAX);
        while (true) {
          const n = await readFull(f, buf);
          if (n === 0) break;
          h.update(buf.subarray(0, n));
          total += n;
        }
        fileHash = toHex(h.digest());
      }
      const after = await f.stat();
      if (after.size !== st.size || after.mtime !== st.mtime || total !== st.size) {
        if (attempt < CHANGE_RETRIES) continue;
        return {
          hashed: {
            ok: false,
            message: `changed while it was read (${CHANGE_RETRIES} tries); it was not stored`,
          },
        };
      }
      const stat = { size: st.size, mtime: st.mtime, mode: st.mode, inode: st.inode ?? null };
      if (bytes) return { hashed: null, bytes, stat };
      return {
        hashed: {
          ok: true,
          fileHash,
          blobId: repo.blobId(path, fileHash),
          ...stat,
        },
      };
    } catch (e) {
      return { hashed: { ok: false, message: describeReadError(e) } };
    } finally {
      f.close();
    }
  }
}
