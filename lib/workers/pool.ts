// The main thread's side of the n2s Workers: starts them (from source, in a `deno compile`
// binary and in the one-file bundle), spreads batches over them, streams large files back (push)
// and to them (pull) with a bounded number of pieces in flight. When no Worker can start, the
// same protocol runs on the main thread, so a push or a pull works the same either way, only on
// one core.

import { BodyError } from "../backends/backend.ts";
import type { BlobHeader } from "../format/blob.ts";
import type { Hashed, SealedSpan } from "./seal_jobs.ts";
import type { RestoreItem } from "./restore_jobs.ts";
import { MemoryRelease } from "../perf/memory.ts";
import {
  type DirectTarget,
  type FileStat,
  type FromWorker,
  SEAL_PROTOCOL,
  SEAL_WORKER_MODULE,
  type SealMeta,
  serve,
  type ToWorker,
} from "./seal_worker.ts";

/** Segments of one large file sealed ahead of the writer (about 1 MiB each). */
const STREAM_CREDIT = 4;
/** Chunks of a blob read ahead of the thread that restores it. */
const RESTORE_CREDIT = 4;
/**
 * Backends yield pieces of their own size (a 255 KiB SFTP read, a 64 KiB socket read); they
 * travel to the restoring thread joined into messages of at least this size, so that a
 * message's round trip is paid per MiB, not per piece.
 */
const RESTORE_MESSAGE = 1 << 20;
/** How long a Worker may take to load before the push goes on without it. */
const START_TIMEOUT_MS = 30_000;

/** Options of a pool. */
export interface PoolOptions {
  master: Uint8Array;
  /** zstd level (default 3; 0 stores everything). */
  level?: number;
  /** Sealed blobs under this many bytes are framed as pack entries (the repository's
   * pack_threshold); 0 for a pool that only restores. */
  threshold?: number;
  /** Worker count; 0 runs everything on the main thread. Default: N2S_WORKERS, else one less
   * than the number of cores (at least 1, at most 3), or one per core (at most 4) with
   * `lightMain`. */
  workers?: number;
  /** The main thread has little work of its own: the Workers write the objects themselves. */
  lightMain?: boolean;
  /** The module to start Workers on (tests use it to make a Worker fail to start). */
  workerUrl?: string;
}

/** A batch of hashed files whose small ones wait, in the thread that read them, to be sealed. */
export interface Batch {
  readonly id: number;
  readonly endpoint: Endpoint;
}

interface Endpoint {
  post(m: ToWorker, transfer?: ArrayBuffer[]): void;
  handlers: Map<number, (m: FromWorker) => void>;
  load: number;
  close(): void;
}

/** A batch of small files sealed: a pack fragment, then loose containers, in one buffer. */
export interface SealedBatch {
  buffer: Uint8Array;
  /** The fragment (framed entries to append to a pack) is buffer[0, fragmentEnd). */
  fragmentEnd: number;
  /** Per item sealed: where its container lies and whether it is in the fragment. */
  spans: SealedSpan[];
}

/** A Worker could not write an object into a local repository; store it the usual way. */
export class DirectWriteError extends Error {
  override name = "DirectWriteError";
}

/** The number of Workers a pool starts by default. */
export function defaultWorkers(lightMain = false): number {
  try {
    const v = Deno.env.get("N2S_WORKERS");
    if (v !== undefined && v !== "" && Number.isInteger(Number(v)) && Number(v) >= 0) {
      return Number(v);
    }
  } catch {
    // no env permission: the default
  }
  const cores = navigator.hardwareConcurrency ?? 2;
  // The main thread keeps the index; when it also puts the objects, one core is left to it.
  return lightMain ? Math.max(1, Math.min(4, cores)) : Math.max(1, Math.min(3, cores - 1));
}

/**
 * The URL to start a Worker on. From source and in a compiled binary that is the worker module
 * itself. In a one-file bundle every module's URL is the bundle's: the Worker then starts on a
 * one-line module that imports the bundle, so that the bundle's own entry code (the CLI) sees
 * that it is not the main module and stays idle.
 */
function workerUrl(): string {
  if (/\/seal_worker\.(ts|js)$/.test(SEAL_WORKER_MODULE)) return SEAL_WORKER_MODULE;
  const src = `import ${JSON.stringify(SEAL_WORKER_MODULE)};\n`;
  return URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
}

/** The buffer of a chunk when it can move to the other thread without a copy. */
function transferable(c: Uint8Array): ArrayBuffer[] {
  const b = c.buffer;
  return b instanceof ArrayBuffer && c.byteOffset === 0 && c.byteLength === b.byteLength ? [b] : [];
}

function dispatch(ep: Endpoint, m: FromWorker): void {
  if (m.t === "error" || m.t === "ready") return;
  ep.handlers.get(m.id)?.(m);
}

function failAll(ep: Endpoint, message: string): void {
  for (const h of [...ep.handlers.values()]) h({ t: "error", message });
  ep.handlers.clear();
}

function startWorker(opts: PoolOptions): Promise<Endpoint> {
  return new Promise((resolve, reject) => {
    let w: Worker;
    try {
      w = new Worker(opts.workerUrl ?? workerUrl(), { type: "module" });
    } catch (e) {
      reject(e);
      return;
    }
    let ready = false;
    const ep: Endpoint = {
      post: (m, transfer) => w.postMessage(m, transfer ?? []),
      handlers: new Map(),
      load: 0,
      close: () => w.terminate(),
    };
    const timer = setTimeout(() => {
      w.terminate();
      reject(new Error("the seal worker did not start in time"));
    }, START_TIMEOUT_MS);
    w.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (!ready) {
        if (m.t === "ready") {
          ready = true;
          clearTimeout(timer);
          resolve(ep);
        } else if (m.t === "error") {
          clearTimeout(timer);
          w.terminate();
          reject(new Error(m.message));
        }
        return;
      }
      if (m.t === "error") failAll(ep, `seal worker: ${m.message}`);
      else dispatch(ep, m);
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      if (!ready) {
        clearTimeout(timer);
        w.terminate();
        reject(new Error(e.message));
      } else {
        failAll(ep, `seal worker failed: ${e.message}`);
      }
    };
    w.postMessage(initMessage(opts));
  });
}

function initMessage(opts: PoolOptions): ToWorker {
  return {
    t: "init",
    proto: SEAL_PROTOCOL,
    master: opts.master,
    level: opts.level,
    threshold: opts.threshold ?? 0,
  };
}

function inThread(opts: PoolOptions): Promise<Endpoint> {
  return new Promise((resolve, reject) => {
    const ep: Endpoint = {
      post: (m) => handle(m),
      handlers: new Map(),
      load: 0,
      close: () => {},
    };
    // Answers arrive on a later turn, as they would from a Worker.
    const handle = serve((m) =>
      queueMicrotask(() => {
        if (m.t === "ready") resolve(ep);
        else if (m.t === "error" && ep.handlers.size === 0) reject(new Error(m.message));
        else if (m.t === "error") failAll(ep, m.message);
        else dispatch(ep, m);
      })
    );
    handle(initMessage(opts));
  });
}

/** Hashing and sealing spread over Workers (or run on the main thread when there are none). */
export class SealPool {
  #next = 0;
  /** The main thread's own endpoint, for streamed restores when there are Workers too. */
  #local: Promise<Endpoint> | null = null;
  /** Large files' bytes pass through this thread too: release memory every 64 MiB of them. */
  #release = new MemoryRelease(64 << 20, 0);
  /** Chunks of streamed restores are read here (and restored here too, for one of them): they
   * are counted apart, against the Workers' lower bound. */
  #chunkRelease = new MemoryRelease(24 << 20, 0);
  private constructor(
    private readonly endpoints: Endpoint[],
    /** Workers running; 0 when the work runs on the main thread. */
    readonly workers: number,
    private readonly opts?: PoolOptions,
  ) {}

  /** Starts the Workers; falls back to the main thread when none can start. */
  static async start(opts: PoolOptions): Promise<SealPool> {
    const n = opts.workers ?? defaultWorkers(opts.lightMain);
    if (n > 0) {
      const started = await Promise.allSettled(Array.from({ length: n }, () => startWorker(opts)));
      const ok = started.filter((s) => s.status === "fulfilled").map((s) => s.value);
      if (ok.length > 0) return new SealPool(ok, ok.length, opts);
    }
    return new SealPool([await inThread(opts)], 0);
  }

  #pick(): Endpoint {
    let best = this.endpoints[0];
    for (const ep of this.endpoints) if (ep.load < best.load) best = ep;
    return best;
  }

  #request(ep: Endpoint, m: ToWorker & { id: number }): Promise<FromWorker> {
    ep.load++;
    return new Promise<FromWorker>((resolve, reject) => {
      ep.handlers.set(m.id, (r) => {
        ep.handlers.delete(m.id);
        ep.load--;
        if (r.t === "error") reject(new Error(r.message));
        else resolve(r);
      });
      ep.post(m);
    });
  }

  /**
   * Reads and hashes files of `root`. Small files stay in the thread that read them until
   * `seal` is called with the batch (which must then be called, with no items if none is
   * needed); the batch is null when no file was kept.
   */
  async hash(root: string, paths: string[]): Promise<{ batch: Batch | null; results: Hashed[] }> {
    const ep = this.#pick();
    const id = ++this.#next;
    const r = await this.#request(ep, { t: "hash", id, root, paths });
    if (r.t !== "hashed") throw new Error(`seal worker: unexpected answer ${r.t}`);
    return { batch: r.kept ? { id, endpoint: ep } : null, results: r.results };
  }

  /**
   * Hashes small files whose content this thread read (a client's own `open`); they are kept
   * for `seal` as `hash` keeps the files it reads.
   */
  async take(
    paths: string[],
    bytes: Uint8Array[],
    stats: FileStat[],
  ): Promise<{ batch: Batch | null; results: Hashed[] }> {
    const ep = this.#pick();
    const id = ++this.#next;
    const r = await this.#request(ep, { t: "take", id, paths, bytes, stats });
    if (r.t !== "hashed") throw new Error(`seal worker: unexpected answer ${r.t}`);
    return { batch: r.kept ? { id, endpoint: ep } : null, results: r.results };
  }

  /**
   * Seals the listed small files of a batch (by their index in it; their headers are made from
   * what hashing found and `meta`) and releases the batch.
   */
  async seal(batch: Batch, items: number[], meta: SealMeta): Promise<SealedBatch> {
    const r = await this.#request(batch.endpoint, { t: "seal", id: batch.id, items, meta });
    if (r.t !== "sealed") throw new Error(`seal worker: unexpected answer ${r.t}`);
    return { buffer: r.buffer, fragmentEnd: r.fragmentEnd, spans: r.spans };
  }

  /**
   * Seals a large file straight into a local repository's object file and returns its size,
   * or, when it seals to less than the direct target's threshold, its container (nothing was
   * written: it belongs in a pack). A file that changed or cannot be read throws BodyError; an
   * object that could not be written throws DirectWriteError (then it is absent).
   */
  async largeTo(
    root: string,
    header: BlobHeader,
    direct: DirectTarget,
  ): Promise<{ size: number } | { container: Uint8Array }> {
    const ep = this.#pick();
    const id = ++this.#next;
    const r = await this.#request(ep, { t: "large", id, root, header, credit: 0, direct });
    if (r.t === "end" && r.size !== undefined) return { size: r.size };
    if (r.t === "end" && r.container !== undefined) return { container: r.container };
    if (r.t === "fail") throw r.write ? new DirectWriteError(r.message) : new BodyError(r.message);
    throw new Error(`seal worker: unexpected answer ${r.t}`);
  }

  /**
   * Seals a large file (hashed before; `header` says its hash and size), yielding the object's
   * parts in order with a few segments sealed ahead. A file that changed or cannot be read
   * throws BodyError. Ending the iteration early stops the sealing.
   */
  async *large(root: string, header: BlobHeader): AsyncGenerator<Uint8Array[]> {
    const ep = this.#pick();
    const id = ++this.#next;
    const queue: FromWorker[] = [];
    let wake: (() => void) | null = null;
    ep.handlers.set(id, (m) => {
      queue.push(m);
      wake?.();
      wake = null;
    });
    ep.load++;
    let finished = false;
    try {
      ep.post({ t: "large", id, root, header, credit: STREAM_CREDIT });
      while (true) {
        while (queue.length === 0) await new Promise<void>((r) => wake = r);
        const m = queue.shift()!;
        if (m.t === "seg") {
          for (const p of m.parts) this.#release.add(p.length);
          yield m.parts;
          ep.post({ t: "credit", id, n: 1 });
        } else if (m.t === "end") {
          finished = true;
          return;
        } else if (m.t === "fail") {
          finished = true;
          throw new BodyError(m.message);
        } else if (m.t === "error") {
          finished = true;
          throw new Error(m.message);
        }
      }
    } finally {
      ep.load--;
      ep.handlers.delete(id);
      if (!finished) ep.post({ t: "cancel", id });
    }
  }

  /**
   * Restores files in one thread from blobs held in one buffer (a range read of a pack, or
   * objects read one after the other): item k's container is buffer[spans[2k], spans[2k+1]).
   * Each is verified before its file is created. Returns, per item, null or why it failed.
   */
  async restore(
    items: RestoreItem[],
    buffer: Uint8Array,
    spans: number[],
  ): Promise<(string | null)[]> {
    // The buffer moves to the Worker when it is a whole buffer of its own, else it is copied.
    const own = buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength &&
      buffer.buffer instanceof ArrayBuffer;
    const sent = own ? buffer : buffer.slice();
    const ep = this.#pick();
    const id = ++this.#next;
    ep.load++;
    const r = await new Promise<FromWorker>((resolve) => {
      ep.handlers.set(id, (m) => {
        ep.handlers.delete(id);
        ep.load--;
        resolve(m);
      });
      ep.post({ t: "restore", id, items, buffer: sent, spans }, [sent.buffer as ArrayBuffer]);
    });
    if (r.t === "error") throw new Error(r.message);
    if (r.t !== "restored") throw new Error(`n2s worker: unexpected answer ${r.t}`);
    return r.results;
  }

  /**
   * Restores files in one thread from the object files of a local repository (each item's
   * `object`): the thread reads them itself. Per item, null or the reason it failed; `unread`
   * lists the items whose object file could not be opened (nothing was written for them:
   * fetch them through the repository).
   */
  async restoreFrom(
    items: RestoreItem[],
  ): Promise<{ results: (string | null)[]; unread: number[] }> {
    const ep = this.#pick();
    const r = await this.#request(ep, { t: "rfiles", id: ++this.#next, items });
    if (r.t !== "restored") throw new Error(`n2s worker: unexpected answer ${r.t}`);
    return { results: r.results, unread: r.unread ?? [] };
  }

  /**
   * Restores files in one thread from a range of a local repository's pack file, which the
   * thread reads itself (item k's container at file offsets [spans[2k], spans[2k+1])). Per
   * item, null or the reason it failed; all items are `unread` when the range could not be read
   * (nothing was written: read it through the repository).
   */
  async restoreFromPack(
    file: string,
    items: RestoreItem[],
    spans: number[],
  ): Promise<{ results: (string | null)[]; unread: number[] }> {
    const ep = this.#pick();
    const r = await this.#request(ep, { t: "rpack", id: ++this.#next, file, items, spans });
    if (r.t !== "restored") throw new Error(`n2s worker: unexpected answer ${r.t}`);
    return { results: r.results, unread: r.unread ?? [] };
  }

  /**
   * Restores one file from a blob stream, a few chunks ahead of the thread that writes it.
   * Returns null or the reason it failed; an error of the stream itself is thrown.
   */
  async restoreStream(
    item: RestoreItem,
    stream: AsyncIterable<Uint8Array>,
  ): Promise<string | null> {
    // A pull's main thread mostly waits while large files are restored: it restores one of
    // them itself when every Worker already has one.
    let ep = this.#pick();
    if (ep.load > 0 && this.workers > 0 && this.opts) {
      this.#local ??= inThread(this.opts);
      const local = await this.#local;
      if (local.load === 0) ep = local;
    }
    const id = ++this.#next;
    let acked = 0;
    let sent = 0;
    let wake: (() => void) | null = null;
    let result: FromWorker | null = null;
    ep.load++;
    ep.handlers.set(id, (m) => {
      if (m.t === "rack") acked++;
      else result = m;
      wake?.();
      wake = null;
    });
    const wait = () => new Promise<void>((r) => wake = r);
    try {
      ep.post({ t: "rstart", id, item });
      try {
        for await (const chunk of joined(stream, RESTORE_MESSAGE)) {
          while (sent - acked >= RESTORE_CREDIT && result === null) await wait();
          if (result !== null) break;
          this.#chunkRelease.add(chunk.length + (chunk.length >> 2));
          ep.post({ t: "rdata", id, data: chunk }, transferable(chunk));
          sent++;
        }
      } catch (e) {
        ep.post({ t: "rabort", id, message: e instanceof Error ? e.message : String(e) });
        while (result === null) await wait();
        throw e;
      }
      ep.post({ t: "rend", id });
      while (result === null) await wait();
      const r = result as FromWorker;
      if (r.t === "error") throw new Error(r.message);
      if (r.t !== "restored") throw new Error(`n2s worker: unexpected answer ${r.t}`);
      return r.results[0];
    } finally {
      ep.load--;
      ep.handlers.delete(id);
    }
  }

  /** Stops the Workers. */
  close(): void {
    for (const ep of this.endpoints) ep.close();
  }
}

/** The stream's bytes in pieces of at least `min` bytes (the last may be shorter). */
export async function* joined(
  stream: AsyncIterable<Uint8Array>,
  min: number,
): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let size = 0;
  const take = () => {
    const one = parts.length === 1 ? parts[0] : new Uint8Array(size);
    if (parts.length > 1) {
      let o = 0;
      for (const p of parts) {
        one.set(p, o);
        o += p.length;
      }
    }
    parts = [];
    size = 0;
    return one;
  };
  for await (const chunk of stream) {
    if (chunk.length >= min && size === 0) {
      yield chunk;
      continue;
    }
    parts.push(chunk);
    size += chunk.length;
    if (size >= min) yield take();
  }
  if (size > 0) yield take();
}
