// Confirmation: stored objects are made durable in groups (one repository flush, for a local
// repository one file-system sync) and only then recorded as confirmed, a whole pack with all
// its blobs in one index transaction, so the index never calls confirmed what a power cut could
// still lose.

import { type Index, isoNow } from "../index/sqlite.ts";
import type { Repository } from "../repository/repository.ts";
import { crashPoint } from "../testing/crash.ts";

/** One uploaded blob waiting for confirmation, with what its row will record. */
export interface Settled {
  path: string;
  fileHash: string;
  blobId: string;
  size: number;
  mtime: number;
  mode: number;
  inode: number | null;
  started: string;
  /** Bytes of the blob's container, and the object's reference (an ETag, a CID). */
  storedSize: number;
  ref: string | null;
  /** The pack holding it, and where; null when the blob is an object of its own. */
  pack: string | null;
  offset: number | null;
  length: number | null;
}

/** Objects per durable batch, bytes per batch, and seconds a batch may wait. Packs make bytes
 * the usual bound: a group every four packs keeps the syncs running beside the work instead of
 * leaving one large one (and one large index transaction) for the end. */
const CONFIRM_OBJECTS = 1000;
const CONFIRM_BYTES = 64 << 20;
const CONFIRM_SECONDS = 5;

/**
 * Confirms stored objects in batches. A flush runs while uploads go on; `add` waits only when a
 * second full batch is waiting behind a flush still running, so memory and the unconfirmed work
 * stay bounded.
 */
export class Confirmer {
  #waiting: Settled[] = [];
  #objects = 0;
  #bytes = 0;
  #since = Date.now();
  #running: Promise<void> | null = null;
  #error: { e: unknown } | null = null;

  constructor(
    private readonly repo: Repository,
    private readonly index: Index,
    private readonly changeset: string,
    private readonly now: () => number,
    /** Objects per durable batch (a pack counts as one). */
    private readonly batch: number = CONFIRM_OBJECTS,
  ) {}

  #due(): boolean {
    return this.#objects >= this.batch || this.#bytes >= CONFIRM_BYTES ||
      (this.#objects > 0 && Date.now() - this.#since > CONFIRM_SECONDS * 1000);
  }

  /** Adds one stored object: a loose blob, or a pack with every blob in it. */
  async add(object: Settled[], bytes: number): Promise<void> {
    this.#check();
    for (const s of object) this.#waiting.push(s);
    this.#objects++;
    this.#bytes += bytes;
    while (
      this.#running && (this.#objects >= 2 * this.batch || this.#bytes >= 2 * CONFIRM_BYTES)
    ) await this.#running;
    this.#check();
    if (!this.#running && this.#due()) this.#start();
  }

  #check(): void {
    if (this.#error !== null) throw this.#error.e;
  }

  #start(): void {
    const batch = this.#waiting;
    this.#waiting = [];
    this.#objects = 0;
    this.#bytes = 0;
    this.#since = Date.now();
    this.#running = (async () => {
      try {
        await this.repo.flush();
        const at = isoNow(this.now());
        this.index.tx(() => {
          batch.forEach((s, i) => {
            // Half the rows written, the transaction not committed.
            if (i === batch.length >> 1) crashPoint("confirm");
            this.index.settleFile(this.changeset, s.path, {
              status: "confirmed",
              file_hash: s.fileHash,
              blob_id: s.blobId,
              size: s.size,
              mtime: s.mtime,
              mode: s.mode,
              inode: s.inode,
              started: s.started,
              confirmed: at,
              stored_size: s.storedSize,
              ref: s.ref,
              pack: s.pack,
              pack_offset: s.offset,
              pack_length: s.length,
            });
          });
        });
        crashPoint("confirmed");
      } catch (e) {
        this.#error ??= { e };
      } finally {
        this.#running = null;
      }
    })();
  }

  /** Confirms everything added so far; throws the first error of any flush. */
  async flush(): Promise<void> {
    while (this.#running) await this.#running;
    if (this.#error === null && this.#waiting.length > 0) {
      this.#start();
      await this.#running;
    }
    this.#check();
  }
}
