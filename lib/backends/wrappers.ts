// Wrappers with the Backend interface that every backend is stacked in: retries with
// exponential backoff and jitter for transient errors, a limit on operations in flight, and a
// fault injector for tests. `buildStack` puts them together in the one order n2s uses.

import {
  type Backend,
  BackendError,
  type Body,
  BodyError,
  type ByteRange,
  checkRange,
  errorKind,
  type ObjectFiles,
  type ObjectInfo,
} from "./backend.ts";
import { Semaphore } from "../scheduler.ts";

/** How the retry wrapper waits and gives up. */
export interface RetryOptions {
  /** Tries per operation, the first included (default 10). */
  attempts?: number;
  /** First backoff in milliseconds (default 100); it doubles per try, with full jitter. */
  baseMs?: number;
  /** Longest single backoff in milliseconds (default 5000). */
  maxMs?: number;
  /** Random numbers in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
  /** Called before each backoff, e.g. to log it. */
  onRetry?: (op: string, key: string, attempt: number, error: unknown) => void;
}

/** True when `e`, or an error in its cause chain, came from producing a put's body. */
export function fromBody(e: unknown): boolean {
  for (let c = e, depth = 0; c instanceof Error && depth < 16; c = c.cause, depth++) {
    if (c instanceof BodyError) return true;
  }
  return false;
}

/** True when an error should be retried. */
export function isTransient(e: unknown): boolean {
  return !fromBody(e) && errorKind(e) === "transient";
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Retries transient failures with exponential backoff and full jitter. Permanent errors, missing
 * objects and errors from a put's own body go straight through. A get that breaks midway is
 * reopened and resumes after the bytes already delivered; a list that breaks is restarted and
 * skips the keys already yielded.
 */
export class RetryBackend implements Backend {
  readonly name: string;
  readonly parallelism?: number;
  readonly #attempts: number;
  readonly #base: number;
  readonly #max: number;
  readonly #random: () => number;

  constructor(readonly inner: Backend, private readonly opts: RetryOptions = {}) {
    this.name = inner.name;
    this.parallelism = inner.parallelism;
    this.#attempts = Math.max(1, opts.attempts ?? 10);
    this.#base = opts.baseMs ?? 100;
    this.#max = opts.maxMs ?? 5000;
    this.#random = opts.random ?? Math.random;
  }

  /** Waits before try `attempt + 1`, or throws `e` when no try is left or it cannot help. */
  async #backoff(op: string, key: string, attempt: number, e: unknown): Promise<void> {
    if (!isTransient(e)) throw e;
    if (attempt >= this.#attempts) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new BackendError(
        "transient",
        this.name,
        `${op} ${key}: gave up after ${attempt} tries: ${msg.replace(`${this.name}: `, "")}`,
        { cause: e },
      );
    }
    this.opts.onRetry?.(op, key, attempt, e);
    const ceiling = Math.min(this.#max, this.#base * 2 ** (attempt - 1));
    await sleep(this.#random() * ceiling);
  }

  async #run<T>(op: string, key: string, f: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await f();
      } catch (e) {
        await this.#backoff(op, key, attempt, e);
      }
    }
  }

  put(key: string, body: Body): Promise<ObjectInfo> {
    return this.#run("put", key, () => this.inner.put(key, body));
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    checkRange(this.name, range);
    const first = await this.#run("get", key, () => this.inner.get(key, range));
    return this.#resumable(key, range, first);
  }

  /**
   * Streams a get and, when the stream breaks, reopens it after the bytes already delivered:
   * a whole object is read again and its first bytes are skipped; a range that broke after k
   * bytes is asked again as `k` bytes further on and `k` bytes shorter, so that no byte is
   * read twice.
   */
  async *#resumable(
    key: string,
    range: ByteRange | undefined,
    first: AsyncIterable<Uint8Array>,
  ): AsyncIterable<Uint8Array> {
    let stream = first;
    let delivered = 0;
    let failures = 0;
    while (true) {
      let skip = range ? 0 : delivered;
      try {
        for await (let piece of stream) {
          if (skip > 0) {
            if (piece.length <= skip) {
              skip -= piece.length;
              continue;
            }
            piece = piece.subarray(skip);
            skip = 0;
          }
          delivered += piece.length;
          failures = 0; // progress was made: the next failure starts a fresh series of tries
          yield piece;
        }
        return;
      } catch (e) {
        await this.#backoff("get", key, ++failures, e);
        const rest = range &&
          { offset: range.offset + delivered, length: range.length - delivered };
        if (rest && rest.length <= 0) return;
        stream = await this.#run("get", key, () => this.inner.get(key, rest));
      }
    }
  }

  stat(key: string): Promise<ObjectInfo | null> {
    return this.#run("stat", key, () => this.inner.stat(key));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const seen = new Set<string>();
    let failures = 0;
    while (true) {
      try {
        for await (const info of this.inner.list(prefix)) {
          if (seen.has(info.key)) continue;
          seen.add(info.key);
          failures = 0;
          yield info;
        }
        return;
      } catch (e) {
        await this.#backoff("list", prefix, ++failures, e);
      }
    }
  }

  delete(key: string): Promise<void> {
    return this.#run("delete", key, () => this.inner.delete(key));
  }

  flush(): Promise<void> {
    return this.#run("flush", "", () => this.inner.flush());
  }

  objectFiles(purpose: "read" | "write"): ObjectFiles | null {
    return this.inner.objectFiles?.(purpose) ?? null;
  }
  get temporaries(): Backend["temporaries"] {
    return this.inner.temporaries?.bind(this.inner);
  }
  get deleteTemporary(): Backend["deleteTemporary"] {
    return this.inner.deleteTemporary?.bind(this.inner);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Lets at most `limit` operations reach the inner backend at once. A get holds its slot while
 * it opens the object; reading the stream afterwards does not, so a slow reader cannot starve
 * the others. Listings are not limited.
 */
export class LimitBackend implements Backend {
  readonly name: string;
  readonly parallelism: number;
  readonly #sem: Semaphore;

  constructor(readonly inner: Backend, limit: number) {
    this.name = inner.name;
    this.parallelism = Math.max(1, limit);
    this.#sem = new Semaphore(this.parallelism);
  }

  async #with<T>(f: () => Promise<T>): Promise<T> {
    await this.#sem.acquire();
    try {
      return await f();
    } finally {
      this.#sem.release();
    }
  }

  put(key: string, body: Body): Promise<ObjectInfo> {
    return this.#with(() => this.inner.put(key, body));
  }
  get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    return this.#with(() => this.inner.get(key, range));
  }
  stat(key: string): Promise<ObjectInfo | null> {
    return this.#with(() => this.inner.stat(key));
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    // Not limited: a caller may well run other operations while it walks a listing.
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    return this.#with(() => this.inner.delete(key));
  }
  flush(): Promise<void> {
    return this.#with(() => this.inner.flush());
  }
  objectFiles(purpose: "read" | "write"): ObjectFiles | null {
    return this.inner.objectFiles?.(purpose) ?? null;
  }
  get temporaries(): Backend["temporaries"] {
    return this.inner.temporaries?.bind(this.inner);
  }
  get deleteTemporary(): Backend["deleteTemporary"] {
    return this.inner.deleteTemporary?.bind(this.inner);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** What the fault injector does; rates are probabilities per call. */
export interface FaultOptions {
  /** Share of calls that fail with a transient error (0–1). */
  transient: number;
  /** Share of calls that fail with a permanent error (0–1). */
  permanent: number;
  /** Seed of the injector's random numbers, so a failing run can be repeated. */
  seed: number;
  /** Share of calls that first wait (0–1), as a slow server would (default 0). */
  delay?: number;
  /** The longest such wait in milliseconds; each is drawn from 0 to this (default 50). */
  delayMs?: number;
}

/** The names of N2S_FAULTS, and what each sets. */
const FAULT_NAMES: Record<string, keyof FaultOptions> = {
  transient: "transient",
  permanent: "permanent",
  seed: "seed",
  delay: "delay",
  delay_ms: "delayMs",
};

/**
 * Parses a fault spec such as "transient=0.2,seed=7" or "transient=0.2,delay=0.3,delay_ms=40"
 * (the N2S_FAULTS variable). Unknown names and rates outside 0–1 are errors.
 */
export function parseFaults(spec: string): FaultOptions {
  const f: FaultOptions = { transient: 0, permanent: 0, seed: 1 };
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, value] = part.split("=", 2);
    const v = Number(value);
    const field = Object.hasOwn(FAULT_NAMES, name) ? FAULT_NAMES[name] : undefined;
    if (field === undefined || value === undefined || value === "" || !Number.isFinite(v)) {
      throw new Error(
        `bad fault spec "${spec}": expected e.g. "transient=0.2,permanent=0,delay=0.2,` +
          `delay_ms=50,seed=7"`,
      );
    }
    if (field === "delayMs" ? v < 0 : field !== "seed" && (v < 0 || v > 1)) {
      throw new Error(
        `bad fault spec "${spec}": ${name} must be ${
          field === "delayMs" ? "at least 0" : "between 0 and 1"
        }`,
      );
    }
    f[field] = v;
  }
  return f;
}

/** True when a fault spec injects anything. */
export function injectsFaults(f: FaultOptions): boolean {
  return f.transient > 0 || f.permanent > 0 || (f.delay ?? 0) > 0;
}

/** mulberry32: a small seeded generator (not for cryptography); picks which calls fail. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Fails a share of calls on purpose, for tests. A failed put fails either before it reaches the
 * inner backend or after it stored the object (the caller cannot tell, as with a connection that
 * drops before the answer). A failed get may break its stream after the first piece. A share of
 * calls (`delay`) first waits, as on a slow server. The counts of injected faults are kept in
 * `injected`.
 */
export class FaultBackend implements Backend {
  readonly name: string;
  readonly parallelism?: number;
  readonly injected = { transient: 0, permanent: 0, delayed: 0 };
  readonly #random: () => number;
  /** Apart from #random, so that slowing calls down leaves the same calls failing. */
  readonly #slow: () => number;

  constructor(readonly inner: Backend, private readonly faults: FaultOptions) {
    this.name = inner.name;
    this.parallelism = inner.parallelism;
    this.#random = seeded(faults.seed);
    this.#slow = seeded(faults.seed ^ 0x5bd1e995);
  }

  /** Waits before this call goes on, for a `delay` share of calls. */
  async #maybeDelay(): Promise<void> {
    const share = this.faults.delay ?? 0;
    if (share <= 0 || this.#slow() >= share) return;
    this.injected.delayed++;
    await sleep(this.#slow() * (this.faults.delayMs ?? 50));
  }

  /** Throws an injected error for this call, or returns. */
  #maybeFail(op: string, key: string): void {
    const r = this.#random();
    if (r < this.faults.permanent) {
      this.injected.permanent++;
      throw new BackendError("permanent", this.name, `${op} ${key}: injected permanent fault`);
    }
    if (r < this.faults.permanent + this.faults.transient) {
      this.injected.transient++;
      throw new BackendError("transient", this.name, `${op} ${key}: injected transient fault`);
    }
  }

  async put(key: string, body: Body): Promise<ObjectInfo> {
    await this.#maybeDelay();
    const after = this.#random() < 0.5;
    if (!after) this.#maybeFail("put", key);
    const info = await this.inner.put(key, body);
    if (after) this.#maybeFail("put", key);
    return info;
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    await this.#maybeDelay();
    const midway = this.#random() < 0.5;
    if (!midway) this.#maybeFail("get", key);
    const stream = await this.inner.get(key, range);
    if (!midway) return stream;
    let failure: unknown = null;
    try {
      this.#maybeFail("get", key);
    } catch (e) {
      failure = e;
    }
    if (failure === null) return stream;
    return (async function* () {
      for await (const piece of stream) {
        yield piece.subarray(0, Math.ceil(piece.length / 2));
        throw failure;
      }
      throw failure;
    })();
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    await this.#maybeDelay();
    this.#maybeFail("stat", key);
    return await this.inner.stat(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.#maybeDelay();
    this.#maybeFail("list", prefix);
    yield* this.inner.list(prefix);
  }

  async delete(key: string): Promise<void> {
    await this.#maybeDelay();
    this.#maybeFail("delete", key);
    await this.inner.delete(key);
  }

  async flush(): Promise<void> {
    await this.#maybeDelay();
    this.#maybeFail("flush", "");
    await this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Options of the backend stack. */
export interface StackOptions {
  /** Retries of transient errors (default: 10 attempts with exponential backoff). */
  retry?: RetryOptions;
  /** Operations in flight (default: the backend's own `parallelism`, else 4). */
  concurrency?: number;
  /**
   * Faults to inject below the retry layer (tests only).
   * @internal
   */
  faults?: FaultOptions;
}

/**
 * Builds the stack every backend runs in: limit → retry → (faults) → backend. The limit is
 * outermost so that an operation waiting out a backoff keeps its slot and a struggling backend
 * is not hit harder.
 */
export function buildStack(base: Backend, opts: StackOptions = {}): Backend {
  let b: Backend = base;
  if (opts.faults && injectsFaults(opts.faults)) {
    b = new FaultBackend(b, opts.faults);
  }
  b = new RetryBackend(b, opts.retry);
  return new LimitBackend(b, opts.concurrency ?? base.parallelism ?? 4);
}

/** Parses retry settings such as "attempts=10,base=100,max=5000" (the N2S_RETRY variable). */
export function parseRetry(spec: string): RetryOptions {
  const r: RetryOptions = {};
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, value] = part.split("=", 2);
    const v = Number(value);
    if (!Number.isFinite(v) || v < 0) {
      throw new Error(`bad retry spec "${spec}": expected e.g. "attempts=10,base=100,max=5000"`);
    }
    if (name === "attempts") r.attempts = Math.max(1, Math.floor(v));
    else if (name === "base") r.baseMs = v;
    else if (name === "max") r.maxMs = v;
    else {
      throw new Error(`bad retry spec "${spec}": expected e.g. "attempts=10,base=100,max=5000"`);
    }
  }
  return r;
}
