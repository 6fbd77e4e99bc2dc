// BLAKE3 implementations side by side under Deno: the native addon n2s uses by default
// (@napi-rs/blake-hash, fetched from npm), hash-wasm (n2s's fallback, plain WASM), blake3-jit
// (WASM SIMD generated at run time) and @noble/hashes (pure JS, the tests' reference). Four
// workloads, each measured the way n2s calls the implementation, and every digest is checked
// against @noble/hashes before a figure counts:
//
// - a large file: the seeded buffer in 1 MiB updates (how n2s feeds a hasher);
// - the same buffer in one call (hash-wasm has no one-shot: a hasher, as n2s then uses it);
// - 16,384 small files: one-shot hashes of 4 KiB;
// - 50,000 blob ids: keyed_hash of about 100 bytes (a path, ":" and a hex file hash).
//
//   deno run -A scripts/bench_blake3.ts [MiB, default 256] [repeats, default 3]
//
// blake3-jit is fetched from npm on first use; it is measured here only, never used by n2s.

import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";
import { loadNapiBlake3 } from "../lib/format/blake3_napi.ts";
import { wasmBlake3, wasmKeyedHash } from "../lib/format/blake3_wasm.ts";
import { toHex, utf8 } from "../lib/format/bytes.ts";

const mib = Number(Deno.args[0] ?? 256);
const repeats = Number(Deno.args[1] ?? 3);
const data = new Uint8Array(mib << 20);
// xorshift32: a cheap seeded fill (the content does not matter to BLAKE3's speed).
let x = 20261126;
for (let i = 0; i < data.length; i += 4) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  data[i] = x;
  data[i + 1] = x >>> 8;
  data[i + 2] = x >>> 16;
  data[i + 3] = x >>> 24;
}
const STEP = 1 << 20;
const SMALL = 4096;
const SMALL_COUNT = Math.min(16_384, data.length / SMALL);
const small = Array.from(
  { length: SMALL_COUNT },
  (_, i) => data.subarray(i * SMALL, (i + 1) * SMALL),
);
const KEYED_COUNT = 50_000;
const idKey = data.slice(12_345, 12_345 + 32);
const idInputs = Array.from(
  { length: KEYED_COUNT },
  (_, i) =>
    utf8(`photos/2026/trip-${i % 97}/IMG_${10_000 + i}.jpg:${toHex(small[i % SMALL_COUNT])}`)
      .subarray(0, 100),
);

interface Digester {
  update(d: Uint8Array): unknown;
  digest(): Uint8Array;
}

interface Impl {
  name: string;
  hasher: () => Digester;
  /** One call for bytes in memory; absent: a new hasher per input (what n2s does then). */
  oneShot?: (d: Uint8Array) => Uint8Array;
  keyed: (key: Uint8Array, d: Uint8Array) => Uint8Array;
}

const impls: Impl[] = [];
const loads: string[] = [];
let t0 = performance.now();
try {
  const napi = await loadNapiBlake3();
  loads.push(`napi ${(performance.now() - t0).toFixed(0)} ms`);
  impls.push({
    name: "@napi-rs/blake-hash 1.3.4 (native, n2s default)",
    hasher: napi.newHasher,
    oneShot: napi.hash,
    keyed: napi.keyedHash,
  });
} catch (e) {
  console.error(`napi not measured: ${e instanceof Error ? e.message : e}`);
}
t0 = performance.now();
const wasm = await wasmBlake3();
const wasmKeyed = await wasmKeyedHash();
loads.push(`hash-wasm ${(performance.now() - t0).toFixed(0)} ms`);
impls.push({ name: "hash-wasm 4.13.0 (WASM, n2s fallback)", hasher: wasm, keyed: wasmKeyed });
try {
  t0 = performance.now();
  const jit = await import("blake3-jit");
  jit.warmupSimd?.();
  loads.push(`blake3-jit ${(performance.now() - t0).toFixed(0)} ms`);
  const keyedJit = jit.createKeyed(idKey);
  impls.push({
    name: "blake3-jit 1.1.0 (WASM SIMD)",
    hasher: () => {
      const h = jit.createHasher();
      return {
        update: (d: Uint8Array) => h.update(d),
        digest: () => {
          const out = h.finalize(32);
          h.reset();
          return out;
        },
      };
    },
    oneShot: (d) => jit.hash(d),
    // One keyed hasher, reset per call (the fastest way it offers; this bench has one key).
    keyed: (key, d) => {
      if (key !== idKey) throw new Error("blake3-jit: one key only");
      return keyedJit.reset().update(d).finalize(32);
    },
  });
} catch (e) {
  console.error(`blake3-jit not measured: ${e instanceof Error ? e.message : e}`);
}
impls.push({
  name: "@noble/hashes 2.4.0 (JS)",
  hasher: () => {
    let h = nobleBlake3.create();
    return {
      update: (d: Uint8Array) => h.update(d),
      digest: () => {
        const out = h.digest();
        h = nobleBlake3.create();
        return out;
      },
    };
  },
  oneShot: (d) => nobleBlake3(d),
  keyed: (key, d) => nobleBlake3(d, { key }),
});

// The reference digests, from @noble/hashes.
const expected = toHex(nobleBlake3(data));
const expectedSmall = small.map((s) => toHex(nobleBlake3(s)));
const expectedIds = idInputs.map((d) => toHex(nobleBlake3(d, { key: idKey })));

/** Best time of `n` runs of `run` (seconds), after `check` accepted each run's output. */
function best<T>(n: number, run: () => T, check: (out: T) => void): number {
  let b = Infinity;
  for (let r = 0; r < n; r++) {
    const t = performance.now();
    const out = run();
    const dt = (performance.now() - t) / 1000;
    check(out);
    b = Math.min(b, dt);
  }
  return b;
}

function same(name: string, what: string, got: string, want: string): void {
  if (got !== want) throw new Error(`${name}: wrong digest (${what})`);
}

console.log(
  `| implementation | ${mib} MiB in 1 MiB updates, MB/s | ${mib} MiB in one call, MB/s | ` +
    `${SMALL_COUNT} × 4 KiB one-shots, k/s | ${KEYED_COUNT} × 100 B keyed_hash, µs/call |`,
);
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const impl of impls) {
  // @noble runs at tens of MB/s: one pass is enough to place it.
  const n = impl.name.startsWith("@noble") ? 1 : repeats;
  const oneShot = impl.oneShot ?? ((d: Uint8Array) => {
    const h = impl.hasher();
    h.update(d);
    return h.digest();
  });
  const updates = best(n, () => {
    const h = impl.hasher();
    for (let o = 0; o < data.length; o += STEP) h.update(data.subarray(o, o + STEP));
    return h.digest();
  }, (d) => same(impl.name, "1 MiB updates", toHex(d), expected));
  const whole = best(
    n,
    () => oneShot(data),
    (d) => same(impl.name, "one call", toHex(d), expected),
  );
  const smallTime = best(n, () => small.map((s) => oneShot(s)), (ds) => {
    ds.forEach((d, i) => same(impl.name, `4 KiB #${i}`, toHex(d), expectedSmall[i]));
  });
  const keyedTime = best(n, () => idInputs.map((d) => impl.keyed(idKey, d)), (ds) => {
    ds.forEach((d, i) => same(impl.name, `keyed #${i}`, toHex(d), expectedIds[i]));
  });
  console.log(
    `| ${impl.name}${impl.oneShot ? "" : " (one call: a hasher)"} | ` +
      `${(data.length / 1e6 / updates).toFixed(0)} | ${(data.length / 1e6 / whole).toFixed(0)} | ` +
      `${(SMALL_COUNT / smallTime / 1000).toFixed(0)} | ` +
      `${(keyedTime * 1e6 / KEYED_COUNT).toFixed(2)} |`,
  );
}
console.log(`\nfirst load in this thread: ${loads.join(", ")}`);
