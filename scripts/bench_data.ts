// Seeded benchmark datasets: generated once, identical on every machine for the same seed.
// large: incompressible files; small: many 1–16 KiB text files in ~500 directories (zstd ~2.8×);
// mixed: a copy of small plus two incompressible files.

import { seeded } from "../lib/backends/wrappers.ts";
import { createCipheriv } from "node:crypto";
import { join } from "node:path";

/** Shape of one generated dataset. */
export interface DatasetSpec {
  name: string;
  /** Incompressible files: count and size in bytes. */
  bigFiles: number;
  bigSize: number;
  /** Small text files: count, and the number of directories they are spread over. */
  smallFiles: number;
  smallDirs: number;
}

const MiB = 1 << 20;

/** The datasets of a full run, and the scaled-down ones of a quick run. */
export function datasetSpecs(quick: boolean): DatasetSpec[] {
  return quick
    ? [
      { name: "large", bigFiles: 2, bigSize: 64 * MiB, smallFiles: 0, smallDirs: 0 },
      { name: "small", bigFiles: 0, bigSize: 0, smallFiles: 5000, smallDirs: 50 },
      { name: "mixed", bigFiles: 1, bigSize: 64 * MiB, smallFiles: 5000, smallDirs: 50 },
    ]
    : [
      { name: "large", bigFiles: 4, bigSize: 512 * MiB, smallFiles: 0, smallDirs: 0 },
      { name: "small", bigFiles: 0, bigSize: 0, smallFiles: 50000, smallDirs: 500 },
      { name: "mixed", bigFiles: 2, bigSize: 256 * MiB, smallFiles: 50000, smallDirs: 500 },
    ];
}

/** mulberry32: a small seeded PRNG (not for cryptography), shared with the fault injector. */
const prng = seeded;

/** A 4 MiB text pool of Zipf-weighted words from a 1000-word vocabulary. */
function textPool(seed: number): Uint8Array {
  const rnd = prng(seed);
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const words: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const n = 2 + Math.floor(rnd() * 9);
    let w = "";
    for (let j = 0; j < n; j++) w += letters[Math.floor(rnd() * 26)];
    words.push(w);
  }
  const weights = words.map((_, i) => 1 / (i + 1));
  const cum: number[] = [];
  let s = 0;
  for (const w of weights) cum.push(s += w);
  const pick = () => {
    const x = rnd() * s;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return words[lo];
  };
  const parts: string[] = [];
  let len = 0;
  let line = 0;
  while (len < 4 * MiB) {
    const w = pick();
    const sep = ++line % 12 === 0 ? "\n" : " ";
    parts.push(w, sep);
    len += w.length + 1;
  }
  return new TextEncoder().encode(parts.join("")).subarray(0, 4 * MiB);
}

/** Writes `size` bytes of a seeded ChaCha20 keystream (incompressible) to `path`. */
function writeRandomFile(path: string, size: number, seed: number): void {
  const key = new Uint8Array(32);
  new DataView(key.buffer).setUint32(0, seed);
  const c = createCipheriv("chacha20", key, new Uint8Array(16));
  const zeros = new Uint8Array(4 * MiB);
  const f = Deno.openSync(path, { write: true, create: true, truncate: true });
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(zeros.length, size - done);
      const out = c.update(zeros.subarray(0, n));
      let o = 0;
      while (o < out.length) o += f.writeSync(out.subarray(o));
      done += n;
    }
  } finally {
    f.close();
  }
}

/** Totals of a dataset on disk. */
export interface DatasetInfo {
  dir: string;
  files: number;
  bytes: number;
}

/** Generates a dataset under `root` unless a complete copy is already there. */
export function ensureDataset(root: string, spec: DatasetSpec, seed = 20261125): DatasetInfo {
  const dir = join(root, spec.name);
  const marker = join(root, `${spec.name}.json`);
  const want = JSON.stringify({ ...spec, seed });
  try {
    const have = Deno.readTextFileSync(marker);
    const info = JSON.parse(have);
    if (JSON.stringify(info.spec) === want) return { dir, files: info.files, bytes: info.bytes };
  } catch {
    // not generated yet
  }
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // nothing to remove
  }
  Deno.mkdirSync(dir, { recursive: true });
  let files = 0;
  let bytes = 0;
  if (spec.smallFiles > 0) {
    const pool = textPool(seed);
    const rnd = prng(seed + 1);
    const outer = Math.max(1, Math.round(Math.sqrt(spec.smallDirs)));
    const inner = Math.max(1, Math.round(spec.smallDirs / outer));
    for (let i = 0; i < spec.smallFiles; i++) {
      const d = i % (outer * inner);
      const sub = join(dir, `d${String(Math.floor(d / inner)).padStart(2, "0")}`, `s${d % inner}`);
      if (i < outer * inner) Deno.mkdirSync(sub, { recursive: true });
      const size = 1024 + Math.floor(rnd() * 15 * 1024);
      const off = Math.floor(rnd() * (pool.length - size));
      Deno.writeFileSync(join(sub, `f${i}.txt`), pool.subarray(off, off + size));
      files++;
      bytes += size;
    }
  }
  for (let i = 0; i < spec.bigFiles; i++) {
    writeRandomFile(join(dir, `big${i}.bin`), spec.bigSize, seed + 100 + i);
    files++;
    bytes += spec.bigSize;
  }
  Deno.writeTextFileSync(marker, JSON.stringify({ spec: JSON.parse(want), files, bytes }));
  return { dir, files, bytes };
}

/** Every regular file under `dir`, sorted (for touching a deterministic 1%). */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) walk(p);
      else if (e.isFile) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Sets a new mtime on 1% of the files (at least one), the same ones every time. */
export function touchOnePercent(dir: string, when: Date): number {
  const files = listFiles(dir);
  const step = 100;
  let n = 0;
  for (let i = 0; i < files.length; i += step) {
    Deno.utimeSync(files[i], when, when);
    n++;
  }
  return n;
}
