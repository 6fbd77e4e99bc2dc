// Checking a repository before a restore needs it: its config and key files, every manifest and
// its chain, every blob a complete changeset needs (present, of a plausible size, and with
// --read-data opened and verified in full, packs included), the index against the repository,
// and what nothing references. With --repair: blobs found missing or damaged are recorded in the
// index as lost (the next push of a source that still has the files stores them again), and
// temporary objects older than an hour are deleted.

import { NotFoundError, type ObjectInfo } from "./backends/backend.ts";
import { type BlobHeader, blobPartsSync } from "./format/blob.ts";
import { bytesEqual, fromHex } from "./format/bytes.ts";
import { ENTRY_FRAME_BYTES, ENTRY_MAGIC, PACK_PREAMBLE } from "./format/pack.ts";
import { parseKeyFile } from "./format/keyfile.ts";
import type { Index } from "./index/sqlite.ts";
import { parseKey } from "./repository/layout.ts";
import { listManifests, type ManifestHeader, readManifest } from "./repository/manifest.ts";
import { readConfig, type Repository } from "./repository/repository.ts";
import { Semaphore } from "./scheduler.ts";
import { MemoryRelease, releaseMemory } from "./perf/memory.ts";

/** How much content `check` reads and verifies. */
export type ReadData =
  | { kind: "none" }
  | { kind: "all" }
  /** A random share of the blob and pack objects, in percent. */
  | { kind: "percent"; percent: number }
  /** Part `part` of `of` (1-based): objects whose id's first 32 bits ≡ part − 1 (mod `of`). */
  | { kind: "part"; part: number; of: number };

/**
 * One thing `check` found. `damage` makes it exit 1: something a restore needs is missing or
 * does not verify. `unused` is storage nothing references (a prune's work, not damage);
 * `unfinished` is a push that was started and never completed (`push --resume` finishes it).
 */
export interface CheckFinding {
  /** How serious it is (see above); only `damage` makes check exit 1. */
  severity: "damage" | "unused" | "unfinished";
  /** What kind of finding: "config", "key", "manifest", "chain", "blob", "pack", "index",
   * "temporary", "unknown". */
  kind: string;
  /** The object key in the repository, when one is concerned. */
  object?: string;
  /** The changeset concerned, when one is. */
  changeset?: string;
  /** The path of the file concerned (bytes that are not UTF-8 as lone surrogates). */
  path?: string;
  /** What was found, for people. */
  message: string;
}

/** A changeset whose state can no longer be restored in full, and the paths it would lose. */
export interface DamagedChangeset {
  /** The damaged changeset's id. */
  changeset: string;
  /** Its source. */
  source: string;
  /** Paths of its state whose content is missing or damaged. */
  paths: string[];
  /** Changesets missing from its chain (their writes cannot be restored). */
  holes: string[];
}

/** What `check` found and how much it read. */
export interface CheckResult {
  /** Everything found: damage, unused storage, unfinished pushes. */
  findings: CheckFinding[];
  /** Changesets that a pull could not restore in full (each pull of them exits 1). */
  damagedChangesets: DamagedChangeset[];
  /** Changeset manifests in the repository. */
  manifests: number;
  /** Loose blob objects in the repository. */
  blobs: number;
  /** Pack objects in the repository. */
  packs: number;
  /** Blobs that complete changesets reference (each counted once). */
  referenced: number;
  /** Objects read in full and verified (with `readData`). */
  readObjects: number;
  /** Bytes read to verify them. */
  readBytes: number;
  /** What --repair did. */
  repaired?: { lostBlobs: number; temporariesDeleted: number };
}

/** Options of `check`. */
export interface CheckOptions {
  /** How much content to read and verify (default none: only sizes and presence). */
  readData?: ReadData;
  /** Record lost blobs in the index and delete old temporary objects (takes the exclusive lock). */
  repair?: boolean;
  /** Age in milliseconds above which repair deletes a temporary object (default one hour). */
  temporaryAge?: number;
  /** Called as objects are checked: done of total, and what is being checked. */
  onProgress?: (done: number, total: number, what: string) => void;
}

/** A reference to a blob from a complete changeset's entry. */
interface Ref {
  changeset: string;
  path: string;
}

/** What is known of one stored copy of a blob that complete changesets need. */
interface Needed {
  /** The blob id and where the copy is (see placeKey). */
  key: string;
  blobId: string;
  fileHash: string;
  /** The path its id binds (every entry naming this blob id has it). */
  path: string;
  pack: string | null;
  offset: number;
  length: number;
  refs: Ref[];
}

/** A copy of a blob: its id and where it lies (entries naming another copy are apart). */
function placeKey(blobId: string, pack: string | null, offset: number): string {
  return pack === null ? blobId : `${blobId}@${pack}:${offset}`;
}

/** A blob found missing or damaged, and why. */
interface Lost {
  blobId: string;
  why: string;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Parses `--read-data-subset`: "N%" (a random share) or "K/M" (a deterministic part). */
export function parseSubset(text: string): ReadData {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 0 && percent <= 100) return { kind: "percent", percent };
  }
  const part = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (part) {
    const [k, m] = [Number(part[1]), Number(part[2])];
    if (m >= 1 && k >= 1 && k <= m) return { kind: "part", part: k, of: m };
  }
  throw new Error(
    `--read-data-subset takes a percentage (e.g. 10%) or a part K/M (e.g. 2/5), not "${text}"`,
  );
}

/** Whether the object with this hex id is read under `rd`. */
function selected(rd: ReadData, id: string): boolean {
  switch (rd.kind) {
    case "none":
      return false;
    case "all":
      return true;
    case "percent":
      return Math.random() * 100 < rd.percent;
    case "part":
      return parseInt(id.slice(0, 8), 16) % rd.of === rd.part - 1;
  }
}

/** Checks the repository (and the index, when given). */
export async function checkRepository(
  repo: Repository,
  index: Index | null,
  opts: CheckOptions = {},
): Promise<CheckResult> {
  const rd = opts.readData ?? { kind: "none" };
  const findings: CheckFinding[] = [];
  const damage = (f: Omit<CheckFinding, "severity">) => findings.push({ severity: "damage", ...f });
  const result: CheckResult = {
    findings,
    damagedChangesets: [],
    manifests: 0,
    blobs: 0,
    packs: 0,
    referenced: 0,
    readObjects: 0,
    readBytes: 0,
  };
  const backend = repo.backend;

  // 1. Config and key files.
  try {
    await readConfig(backend);
  } catch (e) {
    damage({ kind: "config", object: "config", message: message(e) });
  }

  // 2. Every object, in one listing.
  const blobs = new Map<string, number>();
  const packs = new Map<string, number>();
  const manifestIds: string[] = [];
  const keyObjects: ObjectInfo[] = [];
  for await (const o of backend.list("")) {
    const k = parseKey(o.key);
    if (k.kind === "blob") blobs.set(k.id, o.size);
    else if (k.kind === "pack") packs.set(k.id, o.size);
    else if (k.kind === "changeset") manifestIds.push(k.id);
    else if (k.kind === "key") keyObjects.push(o);
    else if (k.kind === "other" && o.key !== "recovery.html") {
      findings.push({
        severity: "unused",
        kind: "unknown",
        object: o.key,
        message: `${o.key} is not an object n2s writes (${o.size} bytes)`,
      });
    }
  }
  result.blobs = blobs.size;
  result.packs = packs.size;
  if (keyObjects.length === 0) {
    damage({ kind: "key", message: "the repository has no key file: no passphrase can open it" });
  }
  for (const o of keyObjects) {
    try {
      const raw = await readAllBytes(await backend.get(o.key));
      parseKeyFile(raw, `${backend.name} ${o.key}`);
    } catch (e) {
      damage({ kind: "key", object: o.key, message: message(e) });
    }
  }

  // 3. Manifests: each opens and verifies; then the chains, link by link.
  manifestIds.sort();
  if (manifestIds.length === 0) manifestIds.push(...(await listManifests(repo)));
  result.manifests = manifestIds.length;
  const headers = new Map<string, ManifestHeader>();
  const needed = new Map<string, Needed>();
  /** Per changeset, its entries: path → place key of its content (null for none), or deletes. */
  const writes = new Map<string, { path: string; blob: string | null; del: boolean }[]>();
  let done = 0;
  for (const id of manifestIds) {
    opts.onProgress?.(done++, manifestIds.length, "manifests");
    let m;
    try {
      m = await readManifest(repo, id);
    } catch (e) {
      damage({
        kind: "manifest",
        object: `changesets/${id}`,
        changeset: id,
        message: `changeset ${id} cannot be read: ${message(e)}`,
      });
      continue;
    }
    headers.set(id, m.header);
    const w: { path: string; blob: string | null; del: boolean }[] = [];
    for (const e of m.entries) {
      if (e.action === "delete") {
        w.push({ path: e.path, blob: null, del: true });
        continue;
      }
      const place = e.action === "write" || e.action === "hardlink"
        ? placeKey(e.blob_id!, e.pack ?? null, e.offset ?? 0)
        : null;
      w.push({ path: e.path, blob: place, del: false });
      if (e.action !== "write") continue;
      let n = needed.get(place!);
      if (!n) {
        n = {
          key: place!,
          blobId: e.blob_id!,
          fileHash: e.file_hash!,
          path: e.path,
          pack: e.pack ?? null,
          offset: e.offset ?? 0,
          length: e.length ?? 0,
          refs: [],
        };
        needed.set(place!, n);
      }
      n.refs.push({ changeset: id, path: e.path });
    }
    writes.set(id, w);
    // A manifest's parsed entries are garbage now: without a collection V8 keeps growing.
    if (m.entries.length > 10_000) releaseMemory();
  }
  releaseMemory();
  result.referenced = needed.size;
  const chainHoles = new Map<string, string[]>();
  for (const [id, h] of headers) {
    const holes: string[] = [];
    if (h.parent !== null) {
      const p = headers.get(h.parent);
      if (!p) {
        holes.push(h.parent);
        damage({
          kind: "chain",
          changeset: id,
          object: `changesets/${h.parent}`,
          message: `changeset ${id} (${h.source}) names parent ${h.parent}, which is missing ` +
            `or unreadable: what the parent wrote cannot be restored at ${id}`,
        });
      } else if (p.chain !== h.parent_chain) {
        holes.push(h.parent);
        damage({
          kind: "chain",
          changeset: id,
          message: `changeset ${id}: the chain digest it records for parent ${h.parent} does ` +
            `not match that manifest`,
        });
      }
    } else if (h.parent_chain !== null) {
      damage({
        kind: "chain",
        changeset: id,
        message: `changeset ${id} has no parent but records a parent chain digest`,
      });
    }
    chainHoles.set(id, holes);
  }

  // 4. Every needed blob is there, with a plausible size; with --read-data, it verifies.
  // Lost copies by place key (what the state replay looks up), and lost blob ids (what repair
  // records: a push then stores the content again).
  const lostPlaces = new Set<string>();
  const lost = new Map<string, Lost>();
  const lose = (n: Needed, why: string, object: string) => {
    lostPlaces.add(n.key);
    if (!lost.has(n.blobId)) lost.set(n.blobId, { blobId: n.blobId, why });
    const first = n.refs[0];
    damage({
      kind: n.pack === null ? "blob" : "pack",
      object,
      changeset: first.changeset,
      path: n.path,
      message: `${why}` +
        (n.refs.length > 1 ? ` (needed by ${n.refs.length} changesets)` : ""),
    });
  };
  const byPack = new Map<string, Needed[]>();
  for (const n of needed.values()) {
    if (n.pack === null) {
      const size = blobs.get(n.blobId);
      const object = `blobs/${n.blobId.slice(0, 2)}/${n.blobId}`;
      if (size === undefined) lose(n, `blob ${n.blobId} is missing`, object);
      else if (size < MIN_CONTAINER) {
        lose(n, `blob ${n.blobId} is ${size} bytes, too short to be a blob`, object);
      } else if (index) {
        const stored = index.blobConfirmed(n.blobId)?.stored_size;
        if (stored != null && stored !== size) {
          lose(n, `blob ${n.blobId} is ${size} bytes; ${stored} were stored`, object);
        }
      }
    } else {
      const list = byPack.get(n.pack) ?? [];
      list.push(n);
      byPack.set(n.pack, list);
    }
  }
  for (const [packId, list] of byPack) {
    const size = packs.get(packId);
    const object = `packs/${packId.slice(0, 2)}/${packId}`;
    for (const n of list) {
      if (size === undefined) lose(n, `pack ${packId} is missing`, object);
      else if (n.offset < 8 + ENTRY_FRAME_BYTES || n.offset + n.length > size) {
        lose(n, `pack ${packId} is ${size} bytes, too short for the entry at ${n.offset}`, object);
      }
    }
  }
  if (rd.kind !== "none") {
    await readAndVerify(repo, rd, needed, byPack, lostPlaces, lose, result, opts);
  }

  // 5. The index against the repository.
  const manifestSet = new Set(manifestIds);
  if (index) {
    for (const row of index.integrityCheck()) {
      if (row !== "ok") {
        damage({ kind: "index", object: index.path, message: `index ${index.path}: ${row}` });
      }
    }
    for (const c of index.listChangesets()) {
      if (c.status === "complete" && !manifestSet.has(c.id)) {
        damage({
          kind: "index",
          changeset: c.id,
          object: `changesets/${c.id}`,
          message: `changeset ${c.id} is complete in the index but its manifest is missing ` +
            `from the repository`,
        });
      }
      if (c.status === "pending" || c.status === "uploading") {
        findings.push({
          severity: "unfinished",
          kind: "index",
          changeset: c.id,
          message: `changeset ${c.id} (${c.source}) was started ${c.created} and never ` +
            `completed; "n2s push --resume" finishes it`,
        });
      }
    }
    // What deduplication trusts: every blob the index calls confirmed must be there, or the
    // next push of that content would point at nothing.
    for (const b of index.confirmedBlobs()) {
      if (lost.has(b.blob_id) || index.isLost(b.blob_id)) continue;
      const there = b.pack === null ? blobs.has(b.blob_id) : packs.has(b.pack);
      if (!there) {
        lost.set(b.blob_id, { blobId: b.blob_id, why: "missing" });
        damage({
          kind: b.pack === null ? "blob" : "pack",
          object: b.pack === null
            ? `blobs/${b.blob_id.slice(0, 2)}/${b.blob_id}`
            : `packs/${b.pack.slice(0, 2)}/${b.pack}`,
          changeset: b.changeset,
          message: `the index records blob ${b.blob_id} as stored` +
            (b.pack === null ? "" : ` in pack ${b.pack}`) + `, but it is missing`,
        });
      }
    }
  }

  // 6. What nothing references: blobs and packs no manifest needs (an unfinished push's are
  // counted apart), and temporary objects.
  const unfinishedBlobs = new Set<string>();
  const unfinishedPacks = new Set<string>();
  if (index) {
    for (const c of index.incomplete()) {
      for (const f of index.filesOf(c.id)) {
        if (f.blob_id) unfinishedBlobs.add(f.blob_id);
        if (f.pack) unfinishedPacks.add(f.pack);
      }
    }
  }
  let unusedBlobs = 0, unusedBlobBytes = 0;
  for (const [id, size] of blobs) {
    if (needed.has(id) || unfinishedBlobs.has(id)) continue;
    unusedBlobs++;
    unusedBlobBytes += size;
  }
  let unusedPacks = 0, unusedPackBytes = 0;
  for (const [id, size] of packs) {
    if (byPack.has(id) || unfinishedPacks.has(id)) continue;
    unusedPacks++;
    unusedPackBytes += size;
  }
  if (unusedBlobs > 0) {
    findings.push({
      severity: "unused",
      kind: "blob",
      message: `${unusedBlobs} blob objects (${unusedBlobBytes} bytes) are referenced by no ` +
        `manifest (left by pushes that never completed, or by forgotten changesets)`,
    });
  }
  if (unusedPacks > 0) {
    findings.push({
      severity: "unused",
      kind: "pack",
      message: `${unusedPacks} packs (${unusedPackBytes} bytes) hold no blob a manifest references`,
    });
  }
  const age = opts.temporaryAge ?? 3600_000;
  let temporariesDeleted = 0;
  if (backend.temporaries) {
    for (const t of await backend.temporaries()) {
      const old = Date.now() - t.mtime > age;
      if (opts.repair && old) {
        await backend.deleteTemporary!(t.key);
        temporariesDeleted++;
        continue;
      }
      findings.push({
        severity: "unused",
        kind: "temporary",
        object: t.key,
        message:
          `temporary object ${t.key} (${t.size} bytes, ${
            Math.round((Date.now() - t.mtime) / 60_000)
          } minutes old) was left by an interrupted upload` +
          (old ? `; "n2s check --repair" deletes it` : ""),
      });
    }
  }

  // 7. Which changesets can no longer be restored in full: each source's chain replayed once.
  result.damagedChangesets = damagedChangesets(headers, writes, chainHoles, lostPlaces);

  if (opts.repair) {
    const lostList = [...lost.values()];
    if (index && lostList.length > 0) index.markLost(lostList);
    result.repaired = { lostBlobs: index ? lostList.length : 0, temporariesDeleted };
  }
  return result;
}

/** The smallest a blob container can be: preamble, salt, two segments with their tags. */
const MIN_CONTAINER = 8 + 16 + 2 * (4 + 16);

/** Reads the selected objects whole and verifies every needed blob in them. */
/** Packs a check reads at once (each streamed, holding about one entry). */
const PACKS_IN_MEMORY = 4;

async function readAndVerify(
  repo: Repository,
  rd: ReadData,
  needed: Map<string, Needed>,
  byPack: Map<string, Needed[]>,
  lost: Set<string>,
  lose: (n: Needed, why: string, object: string) => void,
  result: CheckResult,
  opts: CheckOptions,
): Promise<void> {
  const jobs: (() => Promise<void>)[] = [];
  const packSlots = new Semaphore(PACKS_IN_MEMORY);
  // Read objects are garbage as soon as verified; collect every 48 MiB read.
  const release = new MemoryRelease(48 << 20);
  const check = (n: Needed, header: BlobHeader) => {
    if (header.path !== n.path || header.file_hash !== n.fileHash) {
      throw new Error(`it holds ${header.path}, not the file its manifest names`);
    }
  };
  for (const [packId, list] of byPack) {
    if (!selected(rd, packId)) continue;
    const live = list.filter((n) => !lost.has(n.key));
    if (live.length === 0) continue;
    const object = `packs/${packId.slice(0, 2)}/${packId}`;
    jobs.push(() =>
      packSlots.run(async () => {
        // The pack is streamed: only the bytes from the next live entry's frame on are kept, so
        // memory stays at about one entry whatever the pack size.
        const sorted = [...live].sort((a, b) => a.offset - b.offset);
        let buf = new Uint8Array(0);
        let bufStart = 0;
        let total = 0;
        let next = 0;
        let preamble = false;
        const verify = (n: Needed) => {
          try {
            const at = n.offset - bufStart;
            const frame = buf.subarray(at - ENTRY_FRAME_BYTES, at);
            const len = new DataView(frame.buffer, frame.byteOffset + 36, 4).getUint32(0, false);
            if (
              !bytesEqual(frame.subarray(0, 4), ENTRY_MAGIC) ||
              !bytesEqual(frame.subarray(4, 36), fromHex(n.blobId)) || len !== n.length
            ) {
              throw new Error("its frame in the pack does not name it");
            }
            const bytes = buf.subarray(at, at + n.length);
            for (const p of blobPartsSync(repo.suite, repo.keys, n.blobId, bytes)) {
              if ("header" in p) check(n, p.header);
            }
          } catch (e) {
            lose(n, `blob ${n.blobId} in pack ${packId} is damaged: ${message(e)}`, object);
          }
        };
        try {
          for await (const chunk of await repo.readPackStream(packId)) {
            total += chunk.length;
            release.add(chunk.length);
            const joined = new Uint8Array(buf.length + chunk.length);
            joined.set(buf);
            joined.set(chunk, buf.length);
            buf = joined;
            if (!preamble && bufStart + buf.length >= PACK_PREAMBLE.length) {
              preamble = true;
              if (!bytesEqual(buf.subarray(0, PACK_PREAMBLE.length), PACK_PREAMBLE)) {
                // Unauthenticated, so no blob is lost; but the storage altered the object.
                result.findings.push({
                  severity: "damage",
                  kind: "pack",
                  object,
                  message: `pack ${packId} is damaged: its first 8 bytes are not a pack's (its ` +
                    `entries still open)`,
                });
              }
            }
            const end = bufStart + buf.length;
            while (next < sorted.length && sorted[next].offset + sorted[next].length <= end) {
              verify(sorted[next++]);
            }
            const keep = next < sorted.length ? sorted[next].offset - ENTRY_FRAME_BYTES : end;
            if (preamble && keep > bufStart) {
              buf = buf.slice(Math.min(buf.length, keep - bufStart));
              bufStart = Math.min(end, keep);
            }
          }
        } catch (e) {
          for (const n of sorted.slice(next)) {
            lose(n, `pack ${packId} cannot be read: ${message(e)}`, object);
          }
          return;
        }
        for (const n of sorted.slice(next)) {
          lose(n, `pack ${packId} ends at byte ${total}, before blob ${n.blobId}`, object);
        }
        result.readObjects++;
        result.readBytes += total;
      })
    );
  }
  for (const n of needed.values()) {
    if (n.pack !== null || lost.has(n.key) || !selected(rd, n.blobId)) continue;
    const object = `blobs/${n.blobId.slice(0, 2)}/${n.blobId}`;
    jobs.push(async () => {
      try {
        for await (const p of repo.openBlob(n.blobId, { pack: null })) {
          if ("header" in p) check(n, p.header);
          else {
            result.readBytes += p.data.length;
            release.add(p.data.length);
          }
        }
        result.readObjects++;
      } catch (e) {
        const why = e instanceof NotFoundError ? "is missing" : `is damaged: ${message(e)}`;
        lose(n, `blob ${n.blobId} ${why}`, object);
      }
    });
  }
  const sem = new Semaphore(repo.parallelism ?? 4);
  let done = 0;
  await Promise.all(jobs.map((j) =>
    sem.run(async () => {
      await j();
      opts.onProgress?.(++done, jobs.length, "objects read");
    })
  ));
}

/** Replays each source's chain once and lists the changesets whose state lost something. */
function damagedChangesets(
  headers: Map<string, ManifestHeader>,
  writes: Map<string, { path: string; blob: string | null; del: boolean }[]>,
  chainHoles: Map<string, string[]>,
  lost: Set<string>,
): DamagedChangeset[] {
  const out: DamagedChangeset[] = [];
  // Children of each changeset: the chains are trees rooted at first changesets (or at holes).
  const children = new Map<string | null, string[]>();
  for (const [id, h] of headers) {
    const parent = h.parent !== null && headers.has(h.parent) &&
        (chainHoles.get(id) ?? []).length === 0
      ? h.parent
      : null;
    const list = children.get(parent) ?? [];
    list.push(id);
    children.set(parent, list);
  }
  // Depth first from every root, carrying the state (path → blob) and the lost paths in it.
  const walk = (
    id: string,
    state: Map<string, string | null>,
    lostPaths: Set<string>,
    holes: string[],
  ) => {
    const myHoles = [...holes, ...(chainHoles.get(id) ?? [])];
    const undo: [string, string | null | undefined][] = [];
    const lostUndo: [string, boolean][] = [];
    for (const w of writes.get(id) ?? []) {
      undo.push([w.path, state.get(w.path)]);
      lostUndo.push([w.path, lostPaths.has(w.path)]);
      if (w.del) {
        state.delete(w.path);
        lostPaths.delete(w.path);
      } else {
        state.set(w.path, w.blob);
        if (w.blob !== null && lost.has(w.blob)) lostPaths.add(w.path);
        else lostPaths.delete(w.path);
      }
    }
    if (lostPaths.size > 0 || myHoles.length > 0) {
      out.push({
        changeset: id,
        source: headers.get(id)!.source,
        paths: [...lostPaths].sort(),
        holes: myHoles,
      });
    }
    for (const c of children.get(id) ?? []) walk(c, state, lostPaths, myHoles);
    for (let i = undo.length - 1; i >= 0; i--) {
      const [p, prev] = undo[i];
      if (prev === undefined) state.delete(p);
      else state.set(p, prev);
      if (lostUndo[i][1]) lostPaths.add(p);
      else lostPaths.delete(p);
    }
  };
  for (const root of children.get(null) ?? []) walk(root, new Map(), new Set(), []);
  return out.sort((a, b) => a.changeset.localeCompare(b.changeset));
}

async function readAllBytes(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of stream) parts.push(p);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
