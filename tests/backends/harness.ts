// The backend conformance suite and the end-to-end checks every backend's test file runs
// against its real server: the same steps for every backend, so that they all keep the one
// contract of lib/backends/backend.ts.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type Backend,
  type Body,
  BodyError,
  type ByteRange,
  errorKind,
  NotFoundError,
  type ObjectInfo,
  readAll,
} from "../../lib/backends/backend.ts";
import { fromBody, RetryBackend } from "../../lib/backends/wrappers.ts";
import { n2s } from "../helpers/cli.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const MiB = 1 << 20;

/**
 * Passing trouble of a backend's own kind (its connection cut, its helper process killed, its
 * server busy), which the suite strikes while a get is under way.
 */
export interface Trouble {
  /** What goes wrong, for the step's name. */
  what: string;
  /**
   * Opens the backend the trouble hits, without the retry wrapper (default: the suite's `open`).
   */
  open?: () => Promise<Backend>;
  /**
   * Strikes: the get under way, or else the next call, must fail. Returns what ends the trouble
   * (nothing to do for trouble that passes by itself, such as a connection that is gone).
   */
  strike(b: Backend): Promise<() => void | Promise<void>>;
  /**
   * Stores the object the step reads, where storing it through the troubled path is itself
   * unreliable (default: the backend's put).
   */
  store?: (b: Backend, key: string, body: Body) => Promise<unknown>;
}

/** Options of the conformance suite. */
export interface ConformanceOptions {
  /** The backend's list page size, if it pages: the listing test stores this many + 50. */
  listPageHint?: number;
  /** How to cause passing trouble, for the step on transient errors. */
  trouble: Trouble;
}

/** Pseudo-random bytes from a seed, produced in pieces of `piece` bytes. */
function* pieces(size: number, seed: number, piece = MiB): Generator<Uint8Array> {
  let state = seed >>> 0 || 1;
  for (let off = 0; off < size; off += piece) {
    const n = Math.min(piece, size - off);
    const out = new Uint8Array(n);
    const words = new Uint32Array(out.buffer, 0, n >>> 2);
    for (let i = 0; i < words.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      words[i] = state >>> 0;
    }
    for (let i = words.length * 4; i < n; i++) out[i] = (state >>> (8 * (i & 3))) & 0xff;
    yield out;
  }
}

/** A re-openable body of `size` seeded bytes; `knownSize` decides whether it tells its size. */
function seededBody(size: number, seed: number, knownSize = true): Body {
  return {
    size: knownSize ? size : undefined,
    async *open() {
      yield* pieces(size, seed);
    },
  };
}

function digestOf(size: number, seed: number): string {
  const h = createHash("sha256");
  for (const p of pieces(size, seed)) h.update(p);
  return h.digest("hex");
}

async function digestStream(stream: AsyncIterable<Uint8Array>): Promise<[string, number]> {
  const h = createHash("sha256");
  let n = 0;
  for await (const p of stream) {
    h.update(p);
    n += p.length;
  }
  return [h.digest("hex"), n];
}

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const i of it) out.push(i);
  return out;
}

async function keysUnder(b: Backend, prefix: string): Promise<string[]> {
  return (await collect(b.list(prefix))).map((i) => i.key).sort();
}

async function assertNotFound(b: Backend, key: string, range?: ByteRange): Promise<void> {
  await assert.rejects(
    async () => {
      for await (const _ of await b.get(key, range)) {
        // drain
      }
    },
    (e) => e instanceof NotFoundError || errorKind(e) === "notfound",
    `get of the absent ${key}${range ? ` (range ${JSON.stringify(range)})` : ""} must fail ` +
      "with a not-found error",
  );
}

/** The seeded bytes of `pieces` in one buffer. */
function seededWhole(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of pieces(size, seed)) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Asserts equal bytes, naming the first difference instead of printing megabytes. */
function assertSameBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} bytes, not ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) assert.fail(`${what}: byte ${i} is ${got[i]}, not ${want[i]}`);
  }
}

/** Runs `n` tasks with at most `width` at once. */
async function pool<T>(n: number, width: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await f(i);
      }
    }),
  );
  return out;
}

/**
 * The conformance suite: every step opens the backend once, works under its own random key
 * prefix and closes the backend at the end.
 */
export async function runConformance(
  t: Deno.TestContext,
  open: () => Promise<Backend>,
  opts: ConformanceOptions,
): Promise<void> {
  const step = (
    name: string,
    f: (b: Backend, p: string) => Promise<void>,
    opener: () => Promise<Backend> = open,
  ) =>
    t.step(name, async () => {
      const b = await opener();
      const p = `conf-${crypto.randomUUID().slice(0, 8)}/`;
      try {
        await f(b, p);
      } finally {
        await b.close();
      }
    });

  await step("put/get round trip of 0 B, 1 B, 5 MiB and 64 MiB", async (b, p) => {
    const cases: [number, boolean][] = [[0, true], [1, true], [5 * MiB, false], [64 * MiB, true]];
    for (const [size, known] of cases) {
      const key = `${p}blobs/ab/obj-${size}`;
      const info = await b.put(key, seededBody(size, size + 1, known));
      assert.equal(info.key, key);
      assert.equal(info.size, size, `put of ${size} B reports its size`);
      const [digest, n] = await digestStream(await b.get(key));
      assert.equal(n, size, `get of ${size} B returns ${size} B`);
      assert.equal(digest, digestOf(size, size + 1), `get of ${size} B returns the same bytes`);
      const st = await b.stat(key);
      assert.ok(st, `stat finds the ${size} B object`);
      assert.equal(st.size, size);
    }
    await b.flush();
  });

  await step("stat and get of an absent object", async (b, p) => {
    assert.equal(await b.stat(`${p}absent`), null);
    assert.equal(await b.stat(`${p}no/such/dir/absent`), null);
    await assertNotFound(b, `${p}absent`);
  });

  await step("ranged get reads exactly the bytes asked for", async (b, p) => {
    const size = 5 * MiB + 123;
    const seed = 4242;
    const key = `${p}packs/ab/pack-1`;
    await b.put(key, seededBody(size, seed));
    const whole = seededWhole(size, seed);
    const cases: [string, number, number][] = [
      ["the first byte", 0, 1],
      ["the first 100 bytes", 0, 100],
      ["3 MiB from the middle", MiB + 7, 3 * MiB],
      ["a few bytes across the 4 KiB and 1 MiB marks", MiB - 5, 4106],
      ["the last byte", size - 1, 1],
      ["a range that runs past the end (the tail only)", size - 1000, 5000],
      ["the whole object as a range", 0, size],
      ["from the middle to far past the end", 2 * MiB + 1, Number.MAX_SAFE_INTEGER - 2 * MiB],
      ["an offset exactly at the end", size, 10],
      ["an offset past the end", size + 5 * MiB, 10],
      ["length 0", 100, 0],
      ["length 0 at the end", size, 0],
    ];
    for (const [what, offset, length] of cases) {
      const got = await readAll(await b.get(key, { offset, length }));
      const want = whole.subarray(Math.min(offset, size), Math.min(offset + length, size));
      assertSameBytes(got, want, `${what} (offset ${offset}, length ${length})`);
    }
    // Ranges of an empty and of a one-byte object.
    await b.put(`${p}tiny/empty`, seededBody(0, 1));
    await b.put(`${p}tiny/one`, seededBody(1, 2));
    const one = seededWhole(1, 2);
    for (const [offset, length] of [[0, 0], [0, 1], [0, 10], [1, 1], [3, 0]]) {
      const r = { offset, length };
      assertSameBytes(
        await readAll(await b.get(`${p}tiny/empty`, r)),
        one.subarray(0, 0),
        `empty object, ${JSON.stringify(r)}`,
      );
      assertSameBytes(
        await readAll(await b.get(`${p}tiny/one`, r)),
        one.subarray(Math.min(offset, 1), Math.min(offset + length, 1)),
        `1 B object, ${JSON.stringify(r)}`,
      );
    }
    // A missing key is not found, whatever the range.
    for (
      const r of [{ offset: 0, length: 10 }, { offset: 7, length: 1 }, { offset: 0, length: 0 }]
    ) {
      await assertNotFound(b, `${p}packs/ab/absent`, r);
    }
    // A range that is not two non-negative safe integers is refused, permanently.
    const bad = [
      { offset: -1, length: 1 },
      { offset: 0, length: -1 },
      { offset: 0.5, length: 1 },
      { offset: 0, length: Number.NaN },
      { offset: 2 ** 53, length: 1 },
      { offset: 0, length: Infinity },
    ];
    for (const r of bad) {
      await assert.rejects(
        async () => await readAll(await b.get(key, r)),
        (e) => errorKind(e) === "permanent" && /range/i.test(String((e as Error).message)),
        `get with the range ${JSON.stringify(r)} must fail with a permanent error`,
      );
    }
  });

  await step("list with a prefix over many objects", async (b, p) => {
    const count = (opts.listPageHint ?? 1000) + 50;
    const keys = Array.from({ length: count }, (_, i) => {
      const fan = i % 3 === 0 ? "aa" : i % 3 === 1 ? "ab" : "ba";
      return `${p}blobs/${fan}/${String(i).padStart(5, "0")}`;
    });
    await pool(keys.length, 16, (i) => b.put(keys[i], seededBody(i % 7, i)));
    await b.put(`${p}config`, seededBody(10, 1));
    await b.put(`${p}blobsx`, seededBody(3, 2));
    const all = await collect(b.list(`${p}blobs/`));
    assert.equal(all.length, count, "every object under the prefix, each once");
    assert.deepEqual(all.map((i) => i.key).sort(), [...keys].sort());
    for (const i of all) assert.equal(i.size, Number(i.key.slice(-5)) % 7, `size of ${i.key}`);
    // A prefix that ends in the middle of a name.
    assert.deepEqual(
      await keysUnder(b, `${p}blobs/a`),
      keys.filter((k) => k.startsWith(`${p}blobs/a`)).sort(),
    );
    assert.deepEqual(
      await keysUnder(b, `${p}blobs/aa/0000`),
      keys.slice(0, 10).filter((k) => k.includes("/aa/")).sort(),
    );
    assert.deepEqual(await keysUnder(b, `${p}blobsx`), [`${p}blobsx`]);
    assert.deepEqual(await keysUnder(b, `${p}nothing-here/`), []);
    assert.equal((await keysUnder(b, p)).length, count + 2);
  });

  await step("delete removes an object; deleting an absent one is not an error", async (b, p) => {
    await b.put(`${p}keys/k1`, seededBody(100, 5));
    await b.put(`${p}keys/k2`, seededBody(100, 6));
    await b.delete(`${p}keys/k1`);
    assert.equal(await b.stat(`${p}keys/k1`), null);
    await assertNotFound(b, `${p}keys/k1`);
    assert.deepEqual(await keysUnder(b, `${p}keys/`), [`${p}keys/k2`]);
    await b.delete(`${p}keys/k1`);
    await b.delete(`${p}never/was`);
  });

  await step("overwrite replaces the whole object", async (b, p) => {
    const key = `${p}changesets/c1`;
    await b.put(key, seededBody(300_000, 7));
    await b.put(key, seededBody(1_000, 8));
    const [digest, n] = await digestStream(await b.get(key));
    assert.equal(n, 1_000);
    assert.equal(digest, digestOf(1_000, 8));
    assert.equal((await b.stat(key))?.size, 1_000);
  });

  await step("an interrupted put leaves no visible partial object", async (b, p) => {
    const failing = (size: number): Body => ({
      size: 8 * MiB,
      async *open() {
        yield* pieces(size, 9);
        throw new BodyError("source changed while it was read");
      },
    });
    const key = `${p}blobs/cd/interrupted`;
    await assert.rejects(
      () => b.put(key, failing(3 * MiB)),
      (e) => fromBody(e) && errorKind(e) === "permanent",
      "the body's own error reaches the caller in the cause chain, as a permanent error",
    );
    assert.equal(await b.stat(key), null, "no object after a failed put");
    await assertNotFound(b, key);
    assert.deepEqual(await keysUnder(b, p), [], "no temporary object is listed");
    // An interrupted overwrite keeps the previous object whole.
    await b.put(key, seededBody(1234, 10));
    await assert.rejects(() => b.put(key, failing(2 * MiB)), (e) => fromBody(e));
    const [digest, n] = await digestStream(await b.get(key));
    assert.equal(n, 1234);
    assert.equal(digest, digestOf(1234, 10));
    assert.deepEqual(await keysUnder(b, p), [key]);
  });

  await step(
    "a put under way shows nothing under its key, nor part of the new object",
    async (b, p) => {
      // A body that stops after 3 MiB of 6 until the test lets it go on.
      const body = (seed: number) => {
        const reached = Promise.withResolvers<void>();
        const resume = Promise.withResolvers<void>();
        const paused: Body = {
          size: 6 * MiB,
          async *open() {
            let n = 0;
            for (const piece of pieces(6 * MiB, seed)) {
              if (n === 3 * MiB) {
                reached.resolve();
                await resume.promise;
              }
              n += piece.length;
              yield piece;
            }
          },
        };
        return { body: paused, reached: reached.promise, resume: resume.resolve };
      };
      const key = `${p}blobs/ef/under-way`;
      // A first call: the rclone backend lets one request at a time through until the remote
      // has answered, and the stalled put would hold it.
      assert.equal(await b.stat(key), null);
      const first = body(21);
      const putting = b.put(key, first.body);
      await first.reached;
      assert.equal(await b.stat(key), null, "stat shows no object while the put is under way");
      await assertNotFound(b, key);
      assert.deepEqual(await keysUnder(b, p), [], "a listing shows nothing while it is under way");
      first.resume();
      assert.equal((await putting).size, 6 * MiB);
      // An overwrite under way: the previous object stays whole until the new one is complete.
      const second = body(22);
      const overwriting = b.put(key, second.body);
      await second.reached;
      const [during, n] = await digestStream(await b.get(key));
      assert.equal(n, 6 * MiB);
      assert.equal(during, digestOf(6 * MiB, 21), "the previous object, whole");
      assert.equal((await b.stat(key))?.size, 6 * MiB);
      assert.deepEqual(await keysUnder(b, p), [key]);
      second.resume();
      await overwriting;
      assert.equal((await digestStream(await b.get(key)))[0], digestOf(6 * MiB, 22));
    },
  );

  await step("permanent errors: invalid keys are refused by every call", async (b, p) => {
    const permanent = (e: unknown) => errorKind(e) === "permanent";
    for (const key of ["", "/abs", `${p}a/../b`, `${p}a//b`, `${p}./a`, `${p}nul\0`]) {
      const what = JSON.stringify(key);
      await assert.rejects(() => b.put(key, seededBody(10, 1)), permanent, `put ${what}`);
      await assert.rejects(async () => await readAll(await b.get(key)), permanent, `get ${what}`);
      await assert.rejects(() => b.stat(key), permanent, `stat ${what}`);
      await assert.rejects(() => b.delete(key), permanent, `delete ${what}`);
    }
    assert.deepEqual(await keysUnder(b, p), [], "nothing was stored");
  });

  await step(
    `transient errors: ${opts.trouble.what} fails a get as transient; then it works again`,
    async (b, p) => {
      const size = 64 * MiB;
      const key = `${p}packs/ab/large`;
      await (opts.trouble.store ?? ((b, k, body) => b.put(k, body)))(b, key, seededBody(size, 31));
      // A get under way: its first piece read, the rest still to come when the trouble strikes.
      const reading = (await b.get(key))[Symbol.asyncIterator]();
      assert.equal((await reading.next()).done, false);
      const end = await opts.trouble.strike(b);
      try {
        await assert.rejects(
          async () => {
            while (!(await reading.next()).done) {
              // the rest of the object, or as much of it as comes
            }
            // A get that was beyond the trouble's reach (a file already open): the next call.
            await readAll(await b.get(key));
          },
          (e) => {
            assert.equal(errorKind(e), "transient", `a transient error, not: ${e}`);
            assert.ok(e instanceof Error && e.message.startsWith(b.name), `named: ${e}`);
            return true;
          },
        );
      } finally {
        await reading.return?.();
        await end();
      }
      // Trying again helps, as a transient error says: the object reads back whole.
      const retried = new RetryBackend(b, { attempts: 10, baseMs: 50, maxMs: 1000 });
      const [digest, n] = await digestStream(await retried.get(key));
      assert.equal(n, size);
      assert.equal(digest, digestOf(size, 31));
    },
    opts.trouble.open,
  );

  await step("concurrent puts", async (b, p) => {
    const n = 24;
    await Promise.all(
      Array.from({ length: n }, (_, i) => b.put(`${p}c/${i}`, seededBody(200_000 + i, 100 + i))),
    );
    for (let i = 0; i < n; i++) {
      const [digest, len] = await digestStream(await b.get(`${p}c/${i}`));
      assert.equal(len, 200_000 + i);
      assert.equal(digest, digestOf(200_000 + i, 100 + i));
    }
    // Puts racing on one key: the object ends up whole, as one of them wrote it.
    const key = `${p}same`;
    await Promise.all(
      [0, 1, 2, 3].map((i) => b.put(key, seededBody(500_000 + i * 1000, 200 + i))),
    );
    const [digest, len] = await digestStream(await b.get(key));
    const i = (len - 500_000) / 1000;
    assert.ok([0, 1, 2, 3].includes(i), `the object has one writer's length, not ${len}`);
    assert.equal(digest, digestOf(len, 200 + i));
    assert.equal((await keysUnder(b, p)).length, n + 1);
  });
}

const PASS = { N2S_PASSPHRASE: "conformance passphrase" };

/**
 * Through the CLI: init, push a tree, change it, push again, pull both changesets and compare
 * byte for byte; then again on a fresh repository under the location with a fifth of all
 * backend calls failing transiently.
 */
export async function runCliRoundTrip(
  t: Deno.TestContext,
  location: string,
  env: Record<string, string>,
): Promise<void> {
  const roundTrip = async (loc: string, extra: Record<string, string>) => {
    using tmp = tempDir();
    const e: Record<string, string> = { ...PASS, ...env, ...extra };
    let stderr = "";
    // Every command is a process of its own, whose fault injector starts again from its seed:
    // one seed for all would give every command the same first draws, and a seed whose first
    // few draws miss would inject next to no faults. Each command gets the next seed.
    let command = 0;
    const run = async (a: string[]) => {
      const seeded = e.N2S_FAULTS?.replace(/seed=(\d+)/, (_, s) => `seed=${Number(s) + command}`);
      command++;
      const r = await n2s(a, seeded ? { ...e, N2S_FAULTS: seeded } : e);
      stderr += r.stderr;
      assert.equal(r.code, 0, `n2s ${a.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
      return r.stdout;
    };
    const args = ["--repo", loc, "--index", `${tmp.path}/index.sqlite`];
    const src = `${tmp.path}/src`;
    writeTree(src, {
      "a.txt": "alpha\n",
      "docs/readme.md": "# readme\n",
      "data/big.bin": seededBytes(3 * MiB + 7, 1),
      "data/empty": "",
      "names/with space.txt": "spaces",
      "names/ünïcødé.txt": "unicode",
    });
    for (let i = 0; i < 40; i++) writeTree(src, { [`many/f${i}.txt`]: `file ${i}\n`.repeat(i) });
    await run(["init", ...args]);
    const first = JSON.parse(await run(["push", src, "--json", ...args]));
    const state1 = `${tmp.path}/state1`;
    Deno.mkdirSync(state1);
    new Deno.Command("cp", { args: ["-a", `${src}/.`, state1] }).outputSync();

    Deno.writeTextFileSync(`${src}/a.txt`, "alpha, edited\n");
    Deno.removeSync(`${src}/docs/readme.md`);
    writeTree(src, { "new/file.txt": "new", "data/big2.bin": seededBytes(MiB + 3, 2) });
    const second = JSON.parse(await run(["push", src, "--json", ...args]));
    assert.equal(second.uploaded, 3);
    assert.equal(second.deleted, 1);

    for (const [cs, expected] of [[first.changeset, state1], [second.changeset, src]]) {
      const out = `${tmp.path}/out-${cs}`;
      await run(["pull", "--changeset-id", cs, "--target-path", out, ...args]);
      assertSameTree(out, expected);
    }
    // The index is a cache: a pull with a fresh index rebuilds from the backend alone.
    const fresh = ["--repo", loc, "--index", `${tmp.path}/fresh.sqlite`];
    await run(["recover", "index", ...fresh]);
    const out = `${tmp.path}/out-fresh`;
    await run(["pull", "--changeset-id", second.changeset, "--target-path", out, ...fresh]);
    assertSameTree(out, src);
    if (extra.N2S_FAULTS) {
      const retries = stderr.match(/^retrying \w+ .*injected transient fault/gm) ?? [];
      assert.ok(retries.length >= 5, `faults were injected and retried (${retries.length})`);
    }
  };
  const sub = (name: string) => location.replace(/(\?|$)/, `/${name}$1`);
  await t.step("CLI: init, push, change, push, pull both changesets", async () => {
    await roundTrip(sub(`cli-${crypto.randomUUID().slice(0, 8)}`), {});
  });
  await t.step("CLI with a fifth of all backend calls failing transiently", async () => {
    await roundTrip(sub(`faults-${crypto.randomUUID().slice(0, 8)}`), {
      N2S_FAULTS: `transient=0.2,seed=${Math.floor(Math.random() * 1e6)}`,
      N2S_RETRY: "attempts=12,base=5,max=100",
    });
  });
}

/**
 * A permanent error (bad credentials, missing bucket, unreachable host) makes `n2s init` and
 * `n2s push` fail at once, without a single retry, with one line naming the backend and the
 * cause. (N2S_FAULTS with no fault makes the CLI print every retry it makes.)
 */
export async function expectFastFailure(
  t: Deno.TestContext,
  location: string,
  env: Record<string, string>,
  pattern: RegExp,
): Promise<void> {
  await t.step(`fails fast: ${pattern.source}`, async () => {
    using tmp = tempDir();
    writeTree(`${tmp.path}/src`, { "a.txt": "a" });
    const args = ["--repo", location, "--index", `${tmp.path}/index.sqlite`];
    for (const cmd of [["init"], ["push", `${tmp.path}/src`]]) {
      const r = await n2s([...cmd, ...args], { ...PASS, N2S_FAULTS: "transient=0", ...env });
      assert.notEqual(r.code, 0, `${cmd[0]} must fail`);
      const retries = r.stderr.match(/^retrying /gm) ?? [];
      assert.equal(retries.length, 0, `${cmd[0]} retried a permanent error:\n${r.stderr}`);
      const lines = r.stderr.trim().split("\n").filter((l) => l.trim() !== "");
      assert.equal(lines.length, 1, `${cmd[0]} prints one line, not:\n${r.stderr}`);
      assert.match(lines[0], pattern);
    }
  });
}
