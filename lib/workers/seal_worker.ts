// The n2s Worker: runs lib/workers/seal_jobs.ts (read, hash and seal files for a push) and
// lib/workers/restore_jobs.ts (open, verify and write blobs for a pull) off the main thread. It
// answers only messages of its own protocol, so loading this module anywhere else does nothing:
// the main thread imports it statically (so that `deno compile` embeds it), and in a one-file
// bundle the Worker loads the whole bundle, this module included.

import { denoSuite } from "../crypto_deno.ts";
import type { BlobHeader } from "../format/blob.ts";
import { type RepoKeys, repoKeys } from "../format/ids.ts";
import type { Suite } from "../format/suite.ts";
import {
  Arena,
  ChangedError,
  describeReadError,
  hashBytes,
  type Hashed,
  hashFile,
  sealBatch,
  type SealedSpan,
  sealLarge,
  sealLargeTo,
  SMALL_FILE,
} from "./seal_jobs.ts";
import { DirMaker } from "../backends/local/files.ts";
import {
  alignedChunks,
  restoreBlob,
  type RestoreItem,
  restoreWhole,
  reusingSuite,
} from "./restore_jobs.ts";
import { MemoryRelease } from "../perf/memory.ts";

/** Bytes a Worker handles between two returns of free memory to the system. */
const RELEASE_BYTES = 48 << 20;
/** An arena for a batch's small files: a batch is cut at 4 MiB, plus one file of up to 1 MiB. */
const ARENA_BYTES = (5 << 20) + 4096;
/** The same for the chunks of streamed restores. */
const STREAM_RELEASE_BYTES = 24 << 20;

/** This module's URL: what a Worker is started on (the bundle's URL in a one-file bundle). */
export const SEAL_WORKER_MODULE: string = import.meta.url;
/** Tag of the protocol's init message, so that other Workers' messages are left alone. */
export const SEAL_PROTOCOL = "n2s-seal-2";

/** A large blob written straight into a local repository's object file. */
export interface DirectTarget {
  /** The repository's directory. */
  objects: string;
  /** The blob's object key in it. */
  key: string;
  /** A container under this many bytes is answered instead (it belongs in a pack). */
  threshold: number;
}

/** Messages from the main thread. */
export type ToWorker =
  | {
    t: "init";
    proto: typeof SEAL_PROTOCOL;
    master: Uint8Array;
    level?: number;
    /** Sealed blobs under this size are framed as pack entries. */
    threshold: number;
  }
  | { t: "hash"; id: number; root: string; paths: string[] }
  /** Hashes content that the main thread read (from a client's own `open`). */
  | { t: "take"; id: number; paths: string[]; bytes: Uint8Array[]; stats: FileStat[] }
  /** Seals the listed files of a hashed batch (by index), with the header fields they share. */
  | { t: "seal"; id: number; items: number[]; meta: SealMeta }
  | {
    t: "large";
    id: number;
    root: string;
    header: BlobHeader;
    credit: number;
    direct?: DirectTarget;
  }
  | { t: "credit"; id: number; n: number }
  | { t: "cancel"; id: number }
  | { t: "restore"; id: number; items: RestoreItem[]; buffer: Uint8Array; spans: number[] }
  | { t: "rstart"; id: number; item: RestoreItem }
  /** Restores files from the object files of a local repository (each item's `object`). */
  | { t: "rfiles"; id: number; items: RestoreItem[] }
  /**
   * Restores files from one range of a pack file of a local repository, which the thread reads
   * itself: item k's container is at file offsets [spans[2k], spans[2k+1]).
   */
  | { t: "rpack"; id: number; file: string; items: RestoreItem[]; spans: number[] }
  | { t: "rdata"; id: number; data: Uint8Array }
  | { t: "rend"; id: number }
  | { t: "rabort"; id: number; message: string };

/** The blob header fields that every file of a batch shares. */
export interface SealMeta {
  source: string;
  changeset: string;
  created: string;
}

/** What the main thread knew of a file it read for a Worker. */
export interface FileStat {
  size: number;
  mtime: number;
  mode: number;
  inode: number | null;
}

/** Messages to the main thread. */
export type FromWorker =
  | { t: "ready"; info: unknown }
  | { t: "hashed"; id: number; results: Hashed[]; kept: boolean }
  | { t: "sealed"; id: number; buffer: Uint8Array; fragmentEnd: number; spans: SealedSpan[] }
  | { t: "seg"; id: number; parts: Uint8Array[] }
  /** A large blob is done: written (`size`), or small enough for a pack (`container`). */
  | { t: "end"; id: number; size?: number; container?: Uint8Array }
  | { t: "fail"; id: number; message: string; changed: boolean; write?: boolean }
  | {
    t: "restored";
    id: number;
    results: (string | null)[];
    /** For "rfiles" and "rpack": the items whose object could not be read (nothing was
     * written for them). */
    unread?: number[];
  }
  | { t: "rack"; id: number }
  | { t: "error"; message: string };

/** Buffers that can be moved to the other thread without a copy (whole, unshared ones). */
export function transferList(parts: Uint8Array[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const p of parts) {
    const b = p.buffer;
    if (b instanceof ArrayBuffer && p.byteOffset === 0 && p.byteLength === b.byteLength) {
      out.add(b);
    }
  }
  return [...out];
}

/** Chunks of a blob arriving from the main thread for a streamed restore. */
interface Inbound {
  chunks: Uint8Array[];
  ended: boolean;
  error: string | null;
  wake: (() => void) | null;
}

async function* toAsync<T>(it: Iterable<T>): AsyncGenerator<T> {
  yield* it;
}

interface Stream {
  credit: number;
  wake: (() => void) | null;
  cancelled: boolean;
}

/**
 * The protocol's server: takes messages from the main thread and answers through `post`. A
 * Worker runs it; so does the main thread itself when no Worker can start.
 */
export function serve(
  post: (m: FromWorker, transfer?: ArrayBuffer[]) => void,
  inWorker = false,
): (m: ToWorker) => void {
  let suite: Suite | null = null;
  let keys: RepoKeys | null = null;
  let level: number | undefined;
  let threshold = 0;
  const kept = new Map<
    number,
    { paths: string[]; results: Hashed[]; bytes: (Uint8Array | null)[]; arena: Arena }
  >();
  // Arenas that batches read their small files into, reused once a batch is sealed.
  const arenas: Arena[] = [];
  const takeArena = () => arenas.pop() ?? new Arena(ARENA_BYTES);
  const giveArena = (a: Arena) => {
    a.reset();
    if (arenas.length < 3) arenas.push(a);
  };
  const streams = new Map<number, Stream>();
  const buf = new Uint8Array(SMALL_FILE);
  const inbound = new Map<number, Inbound>();
  const dirs = new DirMaker();
  // Collections and malloc_trim by the bytes this thread went through (in a Worker; on the
  // main thread the push and pull count their own).
  const release = inWorker ? new MemoryRelease(RELEASE_BYTES, 1024) : null;
  // A streamed restore leaves every chunk behind (up to 4 MiB each, and a copy of the segments
  // that straddle two): those are counted apart, against a lower bound.
  const chunks = inWorker ? new MemoryRelease(STREAM_RELEASE_BYTES, 0) : null;

  const why = (e: unknown) => e instanceof Error ? e.message : String(e);
  // One decryption buffer for every small file this thread restores whole: such files are
  // restored synchronously (restoreWhole), so no other restore can run in between and reuse it.
  let whole: Suite | null = null;
  const wholeSuite = () => whole ??= reusingSuite(suite!);

  function restore(m: Extract<ToWorker, { t: "restore" }>): void {
    const results: (string | null)[] = [];
    const batchSuite = wholeSuite();
    for (let k = 0; k < m.items.length; k++) {
      const piece = m.buffer.subarray(m.spans[2 * k], m.spans[2 * k + 1]);
      try {
        restoreWhole(batchSuite, keys!, m.items[k], piece);
        results.push(null);
      } catch (e) {
        results.push(why(e));
      }
    }
    // Every file's content was decrypted (and copied once): count it, not only the objects.
    let bytes = m.buffer.length;
    for (const item of m.items) bytes += 2048 + (item.size ?? 0);
    release?.add(bytes);
    post({ t: "restored", id: m.id, results });
  }

  /**
   * Restores files from a local repository's object files: small ones are read whole and
   * verified before their file is created, large ones are streamed. An object file that cannot
   * be opened is reported as unread, for the main thread to fetch through the backend.
   */
  // The buffer a thread reads ranges of packs into, reused (see wholeSuite for why it can be).
  let rangeBuf = new Uint8Array(0);

  function restorePackRange(m: Extract<ToWorker, { t: "rpack" }>): void {
    const start = m.spans[0];
    const end = m.spans[m.spans.length - 1];
    const n = end - start;
    let got = 0;
    try {
      if (rangeBuf.length < n) rangeBuf = new Uint8Array(Math.max(n, 2 << 20));
      using f = Deno.openSync(m.file, { read: true });
      f.seekSync(start, Deno.SeekMode.Start);
      while (got < n) {
        const k = f.readSync(rangeBuf.subarray(got, n));
        if (k === null) break;
        got += k;
      }
    } catch {
      got = -1;
    }
    if (got !== n) {
      // Not read here (a short pack reads short through the repository too, with its message).
      post({
        t: "restored",
        id: m.id,
        results: m.items.map(() => null),
        unread: m.items.map((_, k) => k),
      });
      return;
    }
    const results: (string | null)[] = [];
    const batchSuite = wholeSuite();
    let bytes = n;
    for (let k = 0; k < m.items.length; k++) {
      const piece = rangeBuf.subarray(m.spans[2 * k] - start, m.spans[2 * k + 1] - start);
      try {
        restoreWhole(batchSuite, keys!, m.items[k], piece);
        results.push(null);
      } catch (e) {
        results.push(why(e));
      }
      bytes += 2048 + (m.items[k].size ?? 0);
    }
    release?.add(bytes);
    post({ t: "restored", id: m.id, results, unread: [] });
  }

  async function restoreFiles(m: Extract<ToWorker, { t: "rfiles" }>): Promise<void> {
    const results: (string | null)[] = [];
    const unread: number[] = [];
    const batchSuite = wholeSuite();
    for (let k = 0; k < m.items.length; k++) {
      const item = m.items[k];
      let f: Deno.FsFile;
      try {
        f = Deno.openSync(item.object!, { read: true });
      } catch {
        results.push(null);
        unread.push(k);
        continue;
      }
      let open = true;
      try {
        const size = f.statSync().size;
        if (size <= SMALL_FILE + 4096) {
          let data = new Uint8Array(size);
          let n = 0;
          while (n < size) {
            const got = f.readSync(data.subarray(n));
            if (got === null) break;
            n += got;
          }
          data = data.subarray(0, n);
          f.close();
          open = false;
          release?.add(size + 2048);
          restoreWhole(batchSuite, keys!, item, data);
        } else {
          const file = f;
          const readFull = (into: Uint8Array) => {
            let n = 0;
            while (n < into.length) {
              const k = file.readSync(n === 0 ? into : into.subarray(n));
              if (k === null) break;
              n += k;
            }
            return n;
          };
          await restoreBlob(suite!, keys!, item, toAsync(alignedChunks(readFull)), false);
        }
        results.push(null);
      } catch (e) {
        results.push(why(e));
      } finally {
        if (open) f.close();
      }
    }
    post({ t: "restored", id: m.id, results, unread });
  }

  async function restoreStream(id: number, item: RestoreItem, q: Inbound): Promise<void> {
    async function* source(): AsyncGenerator<Uint8Array> {
      while (true) {
        while (q.chunks.length === 0 && !q.ended && q.error === null) {
          await new Promise<void>((r) => q.wake = r);
        }
        if (q.chunks.length > 0) {
          const c = q.chunks.shift()!;
          chunks?.add(c.length + (c.length >> 2));
          post({ t: "rack", id });
          yield c;
        } else if (q.error !== null) throw new Error(q.error);
        else return;
      }
    }
    try {
      await restoreBlob(suite!, keys!, item, source(), false);
      post({ t: "restored", id, results: [null] });
    } catch (e) {
      post({ t: "restored", id, results: [why(e)] });
    } finally {
      inbound.delete(id);
    }
  }

  async function largeTo(m: Extract<ToWorker, { t: "large" }>, to: DirectTarget): Promise<void> {
    try {
      const r = await sealLargeTo(suite!, keys!, m.root, m.header, level, to, dirs);
      if ("size" in r) post({ t: "end", id: m.id, size: r.size });
      else post({ t: "end", id: m.id, container: r.container }, transferList([r.container]));
    } catch (e) {
      const changed = e instanceof ChangedError;
      post({ t: "fail", id: m.id, message: why(e), changed, write: !changed });
    }
  }

  async function large(m: Extract<ToWorker, { t: "large" }>): Promise<void> {
    if (m.direct !== undefined) return largeTo(m, m.direct);
    const s: Stream = { credit: m.credit, wake: null, cancelled: false };
    streams.set(m.id, s);
    try {
      for await (const parts of sealLarge(suite!, keys!, m.root, m.header, level)) {
        while (s.credit <= 0 && !s.cancelled) await new Promise<void>((r) => s.wake = r);
        if (s.cancelled) return;
        s.credit--;
        // No memory release counted here: a large file's segments leave this thread (their
        // buffers move), and its read buffer is reused, so it leaves no garbage behind.
        post({ t: "seg", id: m.id, parts }, transferList(parts));
      }
      post({ t: "end", id: m.id });
    } catch (e) {
      const changed = e instanceof ChangedError;
      post({ t: "fail", id: m.id, message: changed ? e.message : describeReadError(e), changed });
    } finally {
      streams.delete(m.id);
    }
  }

  return (m) => {
    try {
      switch (m.t) {
        case "init":
          level = m.level;
          threshold = m.threshold;
          denoSuite().then((s) => {
            suite = s;
            keys = repoKeys(s, m.master);
            post({ t: "ready", info: s.info });
          }, (e) => post({ t: "error", message: String(e) }));
          return;
        case "hash":
        case "take": {
          const results: Hashed[] = [];
          const bytes: (Uint8Array | null)[] = [];
          const arena = takeArena();
          const alloc = (n: number) => arena.take(n);
          m.paths.forEach((p, k) => {
            const r = m.t === "hash"
              ? hashFile(suite!, keys!, m.root, p, buf, alloc)
              : hashBytes(suite!, keys!, p, m.bytes[k], m.stats[k]);
            results.push(r.hashed);
            bytes.push(r.bytes);
            release?.add(r.hashed.ok ? r.hashed.size : 0);
          });
          const keep = bytes.some((b) => b !== null);
          if (keep) kept.set(m.id, { paths: m.paths, results, bytes, arena });
          else giveArena(arena);
          post({ t: "hashed", id: m.id, results, kept: keep });
          return;
        }
        case "seal": {
          const batch = kept.get(m.id);
          kept.delete(m.id);
          const items = m.items.map((i) => {
            const h = batch!.results[i] as Extract<Hashed, { ok: true }>;
            const header: BlobHeader = {
              v: 2,
              path: batch!.paths[i],
              file_hash: h.fileHash,
              size: h.size,
              mtime: h.mtime,
              mode: h.mode,
              source: m.meta.source,
              changeset: m.meta.changeset,
              created: m.meta.created,
            };
            return { blobId: h.blobId, header, bytes: batch!.bytes[i]! };
          });
          const r = sealBatch(suite!, keys!, items, threshold, level);
          if (batch) giveArena(batch.arena);
          post(
            { t: "sealed", id: m.id, buffer: r.buffer, fragmentEnd: r.fragmentEnd, spans: r.spans },
            [r.buffer.buffer as ArrayBuffer],
          );
          return;
        }
        case "large":
          large(m);
          return;
        case "credit": {
          const s = streams.get(m.id);
          if (s) {
            s.credit += m.n;
            s.wake?.();
            s.wake = null;
          }
          return;
        }
        case "restore":
          restore(m);
          return;
        case "rfiles":
          restoreFiles(m);
          return;
        case "rpack":
          restorePackRange(m);
          return;
        case "rstart": {
          const q: Inbound = { chunks: [], ended: false, error: null, wake: null };
          inbound.set(m.id, q);
          restoreStream(m.id, m.item, q);
          return;
        }
        case "rdata":
        case "rend":
        case "rabort": {
          const q = inbound.get(m.id);
          if (!q) return;
          if (m.t === "rdata") q.chunks.push(m.data);
          else if (m.t === "rend") q.ended = true;
          else q.error = m.message;
          q.wake?.();
          q.wake = null;
          return;
        }
        case "cancel": {
          const s = streams.get(m.id);
          if (s) {
            s.cancelled = true;
            s.wake?.();
            s.wake = null;
          }
          return;
        }
      }
    } catch (e) {
      post({ t: "error", message: e instanceof Error ? e.message : String(e) });
    }
  };
}

type Scope = {
  addEventListener(type: "message", f: (e: MessageEvent) => void): void;
  postMessage(m: unknown, transfer?: ArrayBuffer[]): void;
};

const WorkerScope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
if (WorkerScope && globalThis instanceof WorkerScope) {
  const scope = globalThis as unknown as Scope;
  let handle: ((m: ToWorker) => void) | null = null;
  scope.addEventListener("message", (e: MessageEvent) => {
    const m = e.data as ToWorker;
    if (handle === null) {
      if (m?.t !== "init" || m.proto !== SEAL_PROTOCOL) return;
      handle = serve((out, transfer) => scope.postMessage(out, transfer ?? []), true);
    }
    handle(m);
  });
}
