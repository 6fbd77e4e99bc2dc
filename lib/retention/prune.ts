// `prune`: deletes the loose blobs and packs that no manifest references, and repacks packs
// whose unused share exceeds a limit (their live entries copied, frame and container unchanged,
// into new packs). Order, so that a kill at any point leaves a repository whose manifests all
// point at stored blobs: new packs stored and made durable; manifests naming moved blobs
// rewritten in place (each one put; old and new packs both hold the blob meanwhile); the index
// moved; only then are objects deleted. The next prune deletes what a killed one left.

import { blobPartsSync } from "../format/blob.ts";
import { bytesEqual, fromHex } from "../format/bytes.ts";
import { ENTRY_FRAME_BYTES, ENTRY_MAGIC, PACK_PREAMBLE } from "../format/pack.ts";
import type { Index } from "../index/sqlite.ts";
import { type ManifestEntry, rewriteManifest, writeRewriteMark } from "../repository/manifest.ts";
import { setRewriteMarkSeen } from "../repository/catch_up.ts";
import { PackWriter } from "../repository/packer.ts";
import type { Repository } from "../repository/repository.ts";
import { crashPoint } from "../testing/crash.ts";
import { reconcile } from "./reconcile.ts";
import { forgetStoredIn, relocate } from "./rows.ts";

/** Options of `prune`. */
export interface PruneOptions {
  /** Decide and report, change nothing. */
  dryRun?: boolean;
  /** A pack whose unused share is above this fraction is repacked (default 0.05). */
  maxUnused?: number;
}

/** What a prune did (or, with `dryRun`, would do). */
export interface PruneResult {
  /** Loose blobs that nothing references, deleted. */
  deletedBlobs: number;
  /** Packs that nothing references, deleted. */
  deletedPacks: number;
  /** Packs mostly unused, repacked and deleted. */
  repackedPacks: number;
  /** Live blobs copied out of those packs. */
  copiedBlobs: number;
  /** New packs written with them. */
  newPacks: number;
  /** Manifests rewritten with the new locations of their blobs. */
  rewrittenManifests: number;
  /** Bytes of blob and pack objects before the prune. */
  bytesBefore: number;
  /** Bytes of blob and pack objects after it. */
  bytesAfter: number;
}

/** One live entry of a pack. */
interface LiveEntry {
  blobId: string;
  offset: number;
  length: number;
}

const placeOf = (blobId: string, pack: string, offset: number) => `${blobId}@${pack}:${offset}`;

/** Prunes the repository (see the module comment). Hold the exclusive lock. */
export async function prune(
  repo: Repository,
  index: Index,
  opts: PruneOptions = {},
): Promise<PruneResult> {
  const maxUnused = opts.maxUnused ?? 0.05;
  const manifests = await reconcile(repo, index, { dryRun: opts.dryRun });

  // What is live: every blob a manifest names, at its place; and whatever an unfinished push
  // of this index stored (its resume trusts it), whole packs included.
  const liveLoose = new Set<string>();
  const livePacked = new Map<string, Map<number, LiveEntry>>();
  for (const m of manifests.values()) {
    for (const e of m.entries) {
      if (e.blob_id === undefined) continue;
      if (e.pack === undefined) liveLoose.add(e.blob_id);
      else {
        const entries = livePacked.get(e.pack) ?? new Map<number, LiveEntry>();
        entries.set(e.offset!, { blobId: e.blob_id, offset: e.offset!, length: e.length! });
        livePacked.set(e.pack, entries);
      }
    }
  }
  const heldPacks = new Set<string>();
  for (const c of index.incomplete()) {
    for (const f of index.filesOf(c.id)) {
      if (f.pack !== null) heldPacks.add(f.pack);
      else if (f.blob_id !== null) liveLoose.add(f.blob_id);
    }
  }

  const result: PruneResult = {
    deletedBlobs: 0,
    deletedPacks: 0,
    repackedPacks: 0,
    copiedBlobs: 0,
    newPacks: 0,
    rewrittenManifests: 0,
    bytesBefore: 0,
    bytesAfter: 0,
  };
  const deadBlobs: string[] = [];
  for await (const b of repo.listBlobs()) {
    result.bytesBefore += b.size;
    if (liveLoose.has(b.id)) result.bytesAfter += b.size;
    else deadBlobs.push(b.id);
  }
  const deadPacks: string[] = [];
  const repack: string[] = [];
  for await (const p of repo.listPacks()) {
    result.bytesBefore += p.size;
    const live = livePacked.get(p.id);
    if (heldPacks.has(p.id)) {
      result.bytesAfter += p.size;
      continue;
    }
    if (live === undefined) {
      deadPacks.push(p.id);
      continue;
    }
    let liveBytes = PACK_PREAMBLE.length;
    for (const e of live.values()) liveBytes += ENTRY_FRAME_BYTES + e.length;
    if (p.size - liveBytes > maxUnused * p.size) {
      repack.push(p.id);
      result.copiedBlobs += live.size;
      // New packs hold the same entries; a pack's preamble is counted once per new pack below.
      result.bytesAfter += liveBytes - PACK_PREAMBLE.length;
    } else result.bytesAfter += p.size;
  }
  result.deletedBlobs = deadBlobs.length;
  result.deletedPacks = deadPacks.length;
  result.repackedPacks = repack.length;
  if (opts.dryRun) {
    if (repack.length > 0) result.bytesAfter += PACK_PREAMBLE.length;
    return result;
  }

  // 1. Live entries of the packs to repack, verified, copied into new packs made durable.
  const moves: {
    blobId: string;
    from: { pack: string; offset: number };
    to: { pack: string; offset: number; length: number };
  }[] = [];
  const writer = new PackWriter<{ pack: string; offset: number }>(repo, async (stored) => {
    crashPoint("prune-pack");
    result.newPacks++;
    result.bytesAfter += PACK_PREAMBLE.length;
    for (const b of stored.blobs) {
      moves.push({
        blobId: b.blobId,
        from: b.item,
        to: { pack: stored.packId, offset: b.offset, length: b.length },
      });
    }
    await Promise.resolve();
  });
  for (const packId of repack) {
    const pack = await repo.readPack(packId);
    const live = [...livePacked.get(packId)!.values()].sort((a, b) => a.offset - b.offset);
    for (const e of live) {
      const frame = pack.subarray(e.offset - ENTRY_FRAME_BYTES, e.offset);
      const container = pack.subarray(e.offset, e.offset + e.length);
      try {
        if (
          frame.length !== ENTRY_FRAME_BYTES || container.length !== e.length ||
          !bytesEqual(frame.subarray(0, 4), ENTRY_MAGIC) ||
          !bytesEqual(frame.subarray(4, 36), fromHex(e.blobId))
        ) throw new Error("its frame in the pack does not name it");
        for (const _ of blobPartsSync(repo.suite, repo.keys, e.blobId, container)) { /* verify */ }
      } catch (err) {
        throw new Error(
          `blob ${e.blobId} in pack ${packId} is damaged (${
            err instanceof Error ? err.message : err
          }); nothing was deleted: run "n2s check --repair"`,
        );
      }
      const fragment = pack.subarray(e.offset - ENTRY_FRAME_BYTES, e.offset + e.length);
      await writer.add(fragment, [{
        blobId: e.blobId,
        start: ENTRY_FRAME_BYTES,
        end: ENTRY_FRAME_BYTES + e.length,
        item: { pack: packId, offset: e.offset },
      }]);
    }
  }
  await writer.close();
  await repo.flush();

  // 2. Manifests that name moved blobs, rewritten in place with the new locations.
  const moved = new Map(moves.map((m) => [placeOf(m.blobId, m.from.pack, m.from.offset), m.to]));
  if (moved.size > 0) {
    for (const m of manifests.values()) {
      let changed = false;
      const entries = m.entries.map((e): ManifestEntry => {
        if (e.pack === undefined || e.blob_id === undefined) return e;
        const to = moved.get(placeOf(e.blob_id, e.pack, e.offset!));
        if (to === undefined) return e;
        changed = true;
        return { ...e, pack: to.pack, offset: to.offset, length: to.length };
      });
      if (!changed) continue;
      const { v: _v, link: _link, ...header } = m.header;
      await rewriteManifest(repo, header, entries);
      crashPoint("prune-manifest");
      result.rewrittenManifests++;
    }
    await repo.flush();
  }

  // Other indexes compare themselves with every manifest when this mark changes, before any
  // object they may trust is deleted.
  // A deletion counts too: another index's unfinished push may have stored what is deleted.
  const deletes = deadBlobs.length + deadPacks.length + repack.length > 0;
  const mark = result.rewrittenManifests > 0 || deletes ? await writeRewriteMark(repo) : null;

  // 3. The index: new locations, and no row trusting an object about to go.
  const gone = { blobs: new Set(deadBlobs), packs: new Set([...deadPacks, ...repack]) };
  index.tx(() => {
    if (mark !== null) setRewriteMarkSeen(index, mark);
    relocate(index, moves);
    forgetStoredIn(index, gone);
  });
  crashPoint("prune-index");

  // 4. Deletions.
  for (const id of deadBlobs) {
    await repo.deleteBlob(id);
    crashPoint("prune-delete");
  }
  for (const id of [...deadPacks, ...repack]) {
    await repo.deletePack(id);
    crashPoint("prune-delete");
  }
  await repo.flush();
  return result;
}
