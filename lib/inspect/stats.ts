// How much a state holds and what it costs in the repository: files, bytes, the stored size of
// the distinct blobs they need, packs, and the ratio of the two sizes.

import type { StateEntry } from "../pull/state.ts";

/** Figures of a changeset's state, or of the whole repository. */
export interface Stats {
  /** Regular files (hard links included): what a pull writes. */
  files: number;
  /** Their content, in bytes. */
  bytes: number;
  /** Directories. */
  dirs: number;
  /** Symlinks. */
  links: number;
  /** FIFOs and device nodes. */
  specials: number;
  /** Distinct blobs the files need. */
  blobs: number;
  /** Sealed size of those blobs in the repository, in bytes. */
  storedBytes: number;
  /** Packs holding some of those blobs. */
  packs: number;
  /** Those blobs stored as objects of their own. */
  looseBlobs: number;
  /** bytes / storedBytes: above 1 when compression and deduplication save space. */
  compressionRatio: number | null;
}

/** Rounds a ratio to three decimals; null when nothing is stored. */
export function ratio(bytes: number, stored: number): number | null {
  return stored > 0 ? Math.round((bytes / stored) * 1000) / 1000 : null;
}

/**
 * The figures of a state. `looseSize` gives a loose blob's sealed size (packed ones carry
 * theirs in the entry), or null when it is unknown.
 */
export async function stateStats(
  entries: StateEntry[],
  looseSize: (blobId: string) => Promise<number | null>,
): Promise<Stats> {
  const s: Stats = {
    files: 0,
    bytes: 0,
    dirs: 0,
    links: 0,
    specials: 0,
    blobs: 0,
    storedBytes: 0,
    packs: 0,
    looseBlobs: 0,
    compressionRatio: null,
  };
  const blobs = new Map<string, StateEntry>();
  for (const e of entries) {
    if (e.action === "write" || e.action === "hardlink") {
      s.files++;
      s.bytes += e.size ?? 0;
      if (e.blob_id) blobs.set(e.blob_id, e);
    } else if (e.action === "dir") s.dirs++;
    else if (e.action === "link") s.links++;
    else s.specials++;
  }
  const packs = new Set<string>();
  let content = 0;
  for (const [id, e] of blobs) {
    content += e.size ?? 0;
    if (e.pack !== undefined) {
      packs.add(e.pack);
      s.storedBytes += e.length ?? 0;
    } else {
      s.looseBlobs++;
      s.storedBytes += (await looseSize(id)) ?? 0;
    }
  }
  s.blobs = blobs.size;
  s.packs = packs.size;
  s.compressionRatio = ratio(content, s.storedBytes);
  return s;
}
