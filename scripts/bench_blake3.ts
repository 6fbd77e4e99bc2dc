// BLAKE3 implementations side by side under Deno: the native library that n2s loads through FFI,
// hash-wasm (n2s's portable fallback, plain WASM), blake3-jit (WASM SIMD generated at run time)
// and @noble/hashes (pure JS, the tests' reference). Each hashes the same seeded buffer in 1 MiB
// updates (how n2s feeds it), and every digest is checked against @noble's before it counts.
//
//   deno run -A scripts/bench_blake3.ts [MiB, default 256] [repeats, default 3]
//
// blake3-jit is fetched from npm on first use; it is measured here only, never used by n2s.

import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";
import { nativeBlake3 } from "../lib/format/blake3_native.ts";
import { wasmBlake3 } from "../lib/format/blake3_wasm.ts";
import { toHex } from "../lib/format/bytes.ts";

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

interface Impl {
  name: string;
  make: () => { update(d: Uint8Array): unknown; digest(): Uint8Array };
}

const impls: Impl[] = [];
const native = nativeBlake3();
if (native) impls.push({ name: "native C (FFI, AVX-512/AVX2)", make: native });
const wasm = await wasmBlake3();
impls.push({ name: "hash-wasm 4.13.0 (WASM)", make: wasm });
try {
  const jit = await import("blake3-jit");
  jit.warmupSimd?.();
  impls.push({
    name: "blake3-jit 1.1.0 (WASM SIMD)",
    make: () => {
      const h = jit.createHasher();
      return { update: (d: Uint8Array) => h.update(d), digest: () => h.finalize(32) };
    },
  });
} catch (e) {
  console.error(`blake3-jit not measured: ${e instanceof Error ? e.message : e}`);
}
impls.push({
  name: "@noble/hashes 2.4.0 (JS)",
  make: () => {
    const h = nobleBlake3.create();
    return { update: (d: Uint8Array) => h.update(d), digest: () => h.digest() };
  },
});

const expected = toHex(nobleBlake3(data));
console.log(`| implementation | MB/s (best of ${repeats}, ${mib} MiB in 1 MiB updates) |`);
console.log("| --- | ---: |");
for (const impl of impls) {
  let best = Infinity;
  // @noble runs at tens of MB/s: one pass is enough to place it.
  const n = impl.name.startsWith("@noble") ? 1 : repeats;
  for (let r = 0; r < n; r++) {
    const t = performance.now();
    const h = impl.make();
    for (let o = 0; o < data.length; o += STEP) h.update(data.subarray(o, o + STEP));
    const got = toHex(h.digest());
    const dt = (performance.now() - t) / 1000;
    if (got !== expected) throw new Error(`${impl.name}: wrong digest`);
    best = Math.min(best, dt);
  }
  console.log(`| ${impl.name} | ${(data.length / 1e6 / best).toFixed(0)} |`);
}
