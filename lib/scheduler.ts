// One bounded scheduler for push and pull: tasks run in lanes, each with its own limit on tasks
// in flight, and the first failure stops new work and is rethrown when the group is awaited;
// and the one counting semaphore of the code base.

import { setImmediate } from "node:timers";

/**
 * Lets the event loop run (Workers' messages, I/O) in the middle of long synchronous work. Not
 * setTimeout(0): timers nested in timers wait at least 4 ms each, per the HTML standard, which
 * Deno follows (200 turns: 430 ms against 2.5 ms).
 */
export function turn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * A counting semaphore: push's puts, check's reads, the backend stack's limit on operations in
 * flight and the rclone backend's requests all take their slots from one.
 */
export class Semaphore {
  #size: number;
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(n: number) {
    this.#size = Math.max(1, n);
    this.#free = this.#size;
  }

  /** Takes a slot, waiting for one when none is free. */
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((r) => this.#waiting.push(r));
  }

  /** Gives a slot back (to the longest waiter, if any). */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }

  /** Runs `f` once a slot is free, and frees the slot when it settles. */
  async run<T>(f: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await f();
    } finally {
      this.release();
    }
  }

  /** Raises the number of slots to `n` (never lowers it); waiters take the new ones. */
  widen(n: number): void {
    if (n <= this.#size) return;
    this.#free += n - this.#size;
    this.#size = n;
    while (this.#free > 0 && this.#waiting.length > 0) {
      this.#free--;
      this.#waiting.shift()!();
    }
  }
}

/** A set of tasks whose first failure is kept: later tasks are not started, and `wait` throws. */
export class TaskGroup {
  readonly #tasks = new Set<Promise<void>>();
  #error: { e: unknown } | null = null;

  /** True once a task failed: the caller stops handing out work. */
  get failed(): boolean {
    return this.#error !== null;
  }

  /** A lane of this group holding at most `limit` tasks at once. */
  lane(limit: number): Lane {
    return new Lane(this, Math.max(1, limit));
  }

  /** Starts a task now. */
  start(task: () => Promise<void>): void {
    const t: Promise<void> = task().catch((e) => {
      this.#error ??= { e };
    }).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  /** Waits until `ready()` holds, a task failed, or no task is left to wait for. */
  async until(ready: () => boolean): Promise<void> {
    while (!ready() && this.#error === null && this.#tasks.size > 0) {
      await Promise.race(this.#tasks);
    }
  }

  /** Waits for every task; throws the first failure. */
  async wait(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.race(this.#tasks);
    if (this.#error !== null) throw this.#error.e;
  }

  /** Throws the first failure, if any, without waiting. */
  check(): void {
    if (this.#error !== null) throw this.#error.e;
  }
}

/** Tasks of a group that share one limit (batches of small files, large files, ...). */
export class Lane {
  #running = 0;
  constructor(private readonly group: TaskGroup, private readonly limit: number) {}

  /** Starts `task` once the lane has room (returns at once when the group already failed). */
  async spawn(task: () => Promise<void>): Promise<void> {
    await this.group.until(() => this.#running < this.limit);
    if (this.group.failed) return;
    this.#running++;
    this.group.start(() => task().finally(() => this.#running--));
  }
}

/**
 * A bounded queue between a producer and one consumer: `push` waits while `limit` items are
 * queued, the consumer iterates until `close` (or `fail`, whose error it then throws).
 */
export class Queue<T> {
  readonly #items: T[] = [];
  #closed = false;
  #error: { e: unknown } | null = null;
  #wakeConsumer: (() => void) | null = null;
  #wakeProducer: (() => void) | null = null;

  constructor(private readonly limit: number) {}

  /** Adds items, waiting while the queue is full. */
  async push(...items: T[]): Promise<void> {
    for (const it of items) this.#items.push(it);
    this.#wakeConsumer?.();
    while (this.#items.length > this.limit && !this.#closed) {
      await new Promise<void>((r) => this.#wakeProducer = r);
    }
  }

  /** No more items will come. */
  close(): void {
    this.#closed = true;
    this.#wakeConsumer?.();
    this.#wakeProducer?.();
  }

  /** The producer failed: the consumer throws `e` once it has taken what was queued. */
  fail(e: unknown): void {
    this.#error ??= { e };
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    while (true) {
      if (this.#items.length > 0) {
        const it = this.#items.shift()!;
        if (this.#items.length <= this.limit) this.#wakeProducer?.();
        yield it;
        continue;
      }
      if (this.#closed) {
        if (this.#error !== null) throw this.#error.e;
        return;
      }
      await new Promise<void>((r) => this.#wakeConsumer = r);
      this.#wakeConsumer = null;
    }
  }
}
