// The retry, limit and fault wrappers over a real local backend: transient faults are retried
// until the operation succeeds, permanent ones and body errors are not retried at all, a get
// broken midway resumes where it stopped, and the limit holds.

import assert from "node:assert/strict";
import {
  type Backend,
  BackendError,
  BodyError,
  type ByteRange,
  bytesBody,
  errorKind,
  readAll,
} from "../../lib/backends/backend.ts";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import {
  buildStack,
  FaultBackend,
  fromBody,
  LimitBackend,
  parseFaults,
  parseRetry,
  RetryBackend,
  seeded,
} from "../../lib/backends/wrappers.ts";
import { seededBytes, tempDir } from "../helpers/fs.ts";

/** Counts the calls that reach `inner`, per operation. */
function counted(inner: Backend): Backend & { calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const c = (op: string) => void (calls[op] = (calls[op] ?? 0) + 1);
  return {
    name: inner.name,
    calls,
    put: (k, b) => (c("put"), inner.put(k, b)),
    get: (k, r) => (c("get"), inner.get(k, r)),
    stat: (k) => (c("stat"), inner.stat(k)),
    list: (p) => (c("list"), inner.list(p)),
    delete: (k) => (c("delete"), inner.delete(k)),
    flush: () => (c("flush"), inner.flush()),
    close: () => inner.close(),
  };
}

const FAST = { baseMs: 1, maxMs: 5 };

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

Deno.test("transient faults on a fifth of all calls are retried until every call succeeds", async () => {
  using tmp = tempDir();
  const faults = new FaultBackend(new LocalBackend(tmp.path), parseFaults("transient=0.2,seed=7"));
  const b = new RetryBackend(faults, { ...FAST, attempts: 12 });
  const data = Array.from({ length: 200 }, (_, i) => seededBytes(1000 + i * 3000, i));
  await Promise.all(data.map((d, i) => b.put(`o/${i}`, bytesBody(d))));
  await b.flush();
  for (let i = 0; i < data.length; i++) {
    assert.deepEqual(await readAll(await b.get(`o/${i}`)), data[i]);
    assert.equal((await b.stat(`o/${i}`))?.size, data[i].length);
  }
  const listed = [];
  for await (const o of b.list("o/")) listed.push(o.key);
  assert.equal(listed.length, data.length);
  assert.ok(faults.injected.transient > 100, `faults injected: ${faults.injected.transient}`);
});

Deno.test("a get that breaks midway resumes after the bytes already delivered", async () => {
  using tmp = tempDir();
  const local = new LocalBackend(tmp.path);
  const data = seededBytes(9 << 20, 3);
  await local.put("big", bytesBody(data));
  // Every get breaks after half of its first piece until the retry layer reopens it.
  let gets = 0;
  const breaking: Backend = {
    ...local,
    name: local.name,
    put: (k, b) => local.put(k, b),
    stat: (k) => local.stat(k),
    list: (p) => local.list(p),
    delete: (k) => local.delete(k),
    flush: () => local.flush(),
    close: () => local.close(),
    async get(k) {
      const n = ++gets;
      const inner = await local.get(k);
      if (n > 3) return inner;
      return (async function* () {
        for await (const p of inner) {
          yield p.subarray(0, p.length >> 1);
          throw new BackendError("transient", "test", "connection reset");
        }
      })();
    },
  };
  const b = new RetryBackend(breaking, FAST);
  assert.deepEqual(await readAll(await b.get("big")), data);
  assert.equal(gets, 4);
});

Deno.test("a ranged get that breaks midway resumes inside its range", async () => {
  using tmp = tempDir();
  const local = new LocalBackend(tmp.path);
  const data = seededBytes(13 << 20, 4);
  await local.put("pack", bytesBody(data));
  // The first three gets break after half of their first piece; every range asked is kept.
  const asked: (ByteRange | undefined)[] = [];
  const breaking: Backend = {
    name: local.name,
    put: (k, b) => local.put(k, b),
    stat: (k) => local.stat(k),
    list: (p) => local.list(p),
    delete: (k) => local.delete(k),
    flush: () => local.flush(),
    close: () => local.close(),
    async get(k, range) {
      asked.push(range);
      const inner = await local.get(k, range);
      if (asked.length > 3) return inner;
      return (async function* () {
        for await (const p of inner) {
          yield p.subarray(0, p.length >> 1);
          throw new BackendError("transient", "test", "connection reset");
        }
      })();
    },
  };
  const b = new RetryBackend(breaking, FAST);
  const offset = (1 << 20) + 3;
  const length = (9 << 20) + 5;
  const got = await readAll(await b.get("pack", { offset, length }));
  assert.equal(got.length, length);
  assert.ok(equalBytes(got, data.subarray(offset, offset + length)), "the bytes of the range");
  // The local backend yields pieces of up to 4 MiB: each try delivered half of its first one.
  assert.deepEqual(asked, [
    { offset, length },
    { offset: offset + (2 << 20), length: length - (2 << 20) },
    { offset: offset + (4 << 20), length: length - (4 << 20) },
    { offset: offset + (6 << 20), length: length - (6 << 20) },
  ]);
});

Deno.test("ranged gets under injected faults, midway breaks included, return exact bytes", async () => {
  using tmp = tempDir();
  const size = (9 << 20) + 77;
  const data = seededBytes(size, 5);
  await new LocalBackend(tmp.path).put("pack", bytesBody(data));
  const faults = new FaultBackend(new LocalBackend(tmp.path), parseFaults("transient=0.4,seed=11"));
  const inner = counted(faults);
  const b = buildStack(inner, { retry: { ...FAST, attempts: 30 }, concurrency: 4 });
  const random = seeded(99);
  const ranges: ByteRange[] = [
    { offset: 0, length: size },
    { offset: 0, length: 1 },
    { offset: size - 1, length: 1 },
    { offset: size - 10, length: 1000 },
    { offset: size, length: 5 },
    { offset: 3, length: 0 },
  ];
  for (let i = 0; i < 60; i++) {
    const offset = Math.floor(random() * size);
    ranges.push({ offset, length: Math.floor(random() * (6 << 20)) });
  }
  await Promise.all(ranges.map(async (r) => {
    const got = await readAll(await b.get("pack", r));
    const want = data.subarray(Math.min(r.offset, size), Math.min(r.offset + r.length, size));
    assert.equal(got.length, want.length, `length of ${JSON.stringify(r)}`);
    assert.ok(equalBytes(got, want), `bytes of ${JSON.stringify(r)}`);
  }));
  assert.ok(faults.injected.transient >= 20, `faults injected: ${faults.injected.transient}`);
  assert.ok(inner.calls.get > ranges.length, "broken gets were asked again");
  // A missing key stays not found, and a bad range is refused without a retry.
  await assert.rejects(
    async () => await readAll(await b.get("absent", { offset: 5, length: 5 })),
    (e) => errorKind(e) === "notfound",
  );
  const before = inner.calls.get;
  await assert.rejects(
    async () => await readAll(await b.get("pack", { offset: -1, length: 5 })),
    (e) => errorKind(e) === "permanent",
  );
  assert.equal(inner.calls.get, before);
});

Deno.test("permanent errors, missing objects and body errors are not retried", async () => {
  using tmp = tempDir();
  const inner = counted(
    new FaultBackend(new LocalBackend(tmp.path), parseFaults("permanent=1,seed=1")),
  );
  const b = new RetryBackend(inner, FAST);
  await assert.rejects(() => b.stat("x"), /injected permanent fault/);
  assert.equal(inner.calls.stat, 1);

  const plain = counted(new LocalBackend(tmp.path));
  const r = new RetryBackend(plain, FAST);
  await assert.rejects(async () => await readAll(await r.get("absent")), /not found/);
  assert.equal(plain.calls.get, 1);
  await assert.rejects(
    () =>
      r.put("k", {
        async *open() {
          yield new Uint8Array(10);
          throw new BodyError("the file changed while it was read");
        },
      }),
    (e) => fromBody(e),
  );
  assert.equal(plain.calls.put, 1);
  assert.equal(await r.stat("k"), null);
});

Deno.test("retries give up after the configured tries with the last cause", async () => {
  using tmp = tempDir();
  const inner = counted(
    new FaultBackend(new LocalBackend(tmp.path), parseFaults("transient=1,seed=1")),
  );
  const b = new RetryBackend(inner, { ...FAST, attempts: 4 });
  await assert.rejects(() => b.stat("x"), /gave up after 4 tries: stat x: injected transient/);
  assert.equal(inner.calls.stat, 4);
});

Deno.test("the limit caps operations in flight, and the stack exposes it", async () => {
  using tmp = tempDir();
  let now = 0;
  let peak = 0;
  // Each put waits at a gate until the test lets it through, one at a time.
  const held: (() => void)[] = [];
  let arrived: (() => void) | null = null;
  const until = async (cond: () => boolean) => {
    while (!cond()) await new Promise<void>((r) => arrived = r);
  };
  const local = new LocalBackend(tmp.path);
  const slow: Backend = {
    name: "slow",
    async put(k, b) {
      peak = Math.max(peak, ++now);
      const gate = Promise.withResolvers<void>();
      held.push(gate.resolve);
      arrived?.();
      await gate.promise;
      try {
        return await local.put(k, b);
      } finally {
        now--;
      }
    },
    get: (k) => local.get(k),
    stat: (k) => local.stat(k),
    list: (p) => local.list(p),
    delete: (k) => local.delete(k),
    flush: () => local.flush(),
    close: () => local.close(),
  };
  const b = new LimitBackend(slow, 3);
  const all = Promise.all(
    Array.from({ length: 30 }, (_, i) => b.put(`k${i}`, bytesBody(new Uint8Array(i)))),
  );
  // Whenever as many puts as the limit allows wait at the gate, let one through.
  for (let done = 0; done < 30; done++) {
    await until(() => held.length >= Math.min(3, 30 - done));
    held.shift()!();
  }
  await all;
  assert.equal(peak, 3);
  assert.equal(buildStack(slow, { concurrency: 5 }).parallelism, 5);
  assert.equal(buildStack({ ...slow, parallelism: 7 }).parallelism, 7);
});

Deno.test("fault and retry specs are parsed strictly", () => {
  assert.deepEqual(parseFaults("transient=0.2,seed=7"), { transient: 0.2, permanent: 0, seed: 7 });
  assert.throws(() => parseFaults("transient=2"), /between 0 and 1/);
  assert.throws(() => parseFaults("flaky=0.1"), /bad fault spec/);
  assert.deepEqual(parseRetry("attempts=3,base=10,max=50"), { attempts: 3, baseMs: 10, maxMs: 50 });
  assert.throws(() => parseRetry("tries=3"), /bad retry spec/);
});

Deno.test("slowed calls are drawn apart from failures: a delay share slows calls and fails the same ones", async () => {
  assert.deepEqual(parseFaults("transient=0.2,delay=0.5,delay_ms=3,seed=4"), {
    transient: 0.2,
    permanent: 0,
    seed: 4,
    delay: 0.5,
    delayMs: 3,
  });
  assert.throws(() => parseFaults("delay=2"), /delay must be between 0 and 1/);
  assert.throws(() => parseFaults("delay_ms=-1"), /delay_ms must be at least 0/);
  const failures = async (spec: string) => {
    using tmp = tempDir();
    const b = new FaultBackend(new LocalBackend(tmp.path), parseFaults(spec));
    const failed: number[] = [];
    for (let i = 0; i < 60; i++) {
      try {
        await b.put(`k${i}`, bytesBody(seededBytes(10, i)));
      } catch {
        failed.push(i);
      }
    }
    return { failed, injected: b.injected };
  };
  const plain = await failures("transient=0.3,seed=9");
  const slow = await failures("transient=0.3,delay=0.5,delay_ms=2,seed=9");
  assert.deepEqual(slow.failed, plain.failed, "the same calls fail");
  assert.equal(plain.injected.delayed, 0);
  assert.ok(slow.injected.delayed > 10 && slow.injected.delayed < 50, `${slow.injected.delayed}`);
  assert.ok(plain.failed.length > 5);
});
