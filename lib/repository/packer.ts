// Packs being written: sealed small blobs (already framed as pack entries) are appended to the
// current pack until it reaches the repository's pack size; full packs are stored with a bounded
// number in flight, and each stored pack is reported with the location of every blob in it, so
// that the pack and all its blobs are confirmed together.

import type { ObjectInfo } from "../backends/backend.ts";
import { ENTRY_FRAME_BYTES, PACK_PREAMBLE } from "../format/pack.ts";
import { TaskGroup } from "../scheduler.ts";
import { crashPoint } from "../testing/crash.ts";
import type { Repository } from "./repository.ts";

/** A blob in a stored pack, with whatever the caller attached to it. */
export interface PackedBlob<T> {
  blobId: string;
  /** The container's offset and length in the pack object. */
  offset: number;
  length: number;
  item: T;
}

/** A pack that was stored (not yet durable: the caller flushes before it confirms). */
export interface StoredPack<T> {
  packId: string;
  info: ObjectInfo;
  blobs: PackedBlob<T>[];
}

/** One entry of a fragment: its blob and where its container lies in the fragment. */
export interface FragmentEntry<T> {
  blobId: string;
  start: number;
  end: number;
  item: T;
}

/** Packs packs: see the module comment. */
export class PackWriter<T> {
  #parts: Uint8Array[] = [PACK_PREAMBLE];
  #size: number = PACK_PREAMBLE.length;
  #blobs: PackedBlob<T>[] = [];
  readonly #group = new TaskGroup();
  readonly #uploads;

  constructor(
    private readonly repo: Repository,
    private readonly onStored: (pack: StoredPack<T>) => Promise<void>,
    /** Packs stored at once; each holds up to a pack's size in memory. */
    inFlight = 2,
    /** Called with each pack before it is stored (a shared push records where it goes). */
    private readonly beforeStore?: (pack: { packId: string; blobs: PackedBlob<T>[] }) => void,
  ) {
    this.#uploads = this.#group.lane(inFlight);
  }

  /**
   * Appends a fragment: framed entries one after the other as one piece of bytes, the
   * containers of `entries` (in fragment order) at their offsets in it. A fragment that does
   * not fit the pack being filled is cut between entries (views, no copy). Waits while too many
   * full packs are being stored; throws the error of any pack that failed.
   */
  async add(fragment: Uint8Array, entries: FragmentEntry<T>[]): Promise<void> {
    this.#group.check();
    const target = this.repo.config.pack_size;
    let first = 0;
    while (first < entries.length) {
      // The entries that fit in the room left (at least one, into an empty pack).
      const from = entries[first].start - ENTRY_FRAME_BYTES;
      let last = first;
      while (
        last + 1 < entries.length && this.#size + (entries[last + 1].end - from) <= target
      ) last++;
      if (this.#blobs.length > 0 && this.#size + (entries[last].end - from) > target) {
        await this.#seal();
        continue;
      }
      const base = this.#size - from;
      this.#parts.push(fragment.subarray(from, entries[last].end));
      this.#size += entries[last].end - from;
      for (let k = first; k <= last; k++) {
        const e = entries[k];
        this.#blobs.push({
          blobId: e.blobId,
          offset: base + e.start,
          length: e.end - e.start,
          item: e.item,
        });
      }
      first = last + 1;
      if (this.#size >= target) await this.#seal();
    }
  }

  /** Stores the pack being filled, if it holds anything, and waits for every pack. */
  async close(): Promise<void> {
    if (this.#blobs.length > 0) await this.#seal();
    await this.#group.wait();
  }

  async #seal(): Promise<void> {
    const parts = this.#parts;
    const blobs = this.#blobs;
    this.#parts = [PACK_PREAMBLE];
    this.#size = PACK_PREAMBLE.length;
    this.#blobs = [];
    const packId = this.repo.newPackId();
    await this.#uploads.spawn(async () => {
      this.beforeStore?.({ packId, blobs });
      crashPoint("put-start");
      const info = await this.repo.putPack(packId, parts);
      crashPoint("put-end");
      await this.onStored({ packId, info, blobs });
    });
    this.#group.check();
  }
}
