// File-tree helpers for tests: temporary directories, writing trees, comparing trees.

import assert from "node:assert/strict";

/** A temporary directory removed by `using`. */
export function tempDir(prefix = "n2s-test-"): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({ prefix });
  return {
    path,
    [Symbol.dispose]() {
      try {
        Deno.removeSync(path, { recursive: true });
      } catch {
        // already gone
      }
    },
  };
}

/** Writes files (string or bytes content) under `root`, creating directories. */
export function writeTree(root: string, files: Record<string, string | Uint8Array>): void {
  for (const [path, content] of Object.entries(files)) {
    const full = `${root}/${path}`;
    Deno.mkdirSync(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    if (typeof content === "string") Deno.writeTextFileSync(full, content);
    else Deno.writeFileSync(full, content);
  }
}

/** Every file and symlink under `root`: path → content (files) or "-> target" (links). */
export function readTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel === "" ? root : `${root}/${rel}`)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const full = `${root}/${r}`;
      const st = Deno.lstatSync(full);
      if (st.isSymlink) out[r] = `-> ${Deno.readLinkSync(full)}`;
      else if (st.isDirectory) walk(r);
      else out[r] = hashFile(full);
    }
  };
  walk("");
  return out;
}

function hashFile(path: string): string {
  const data = Deno.readFileSync(path);
  // FNV-1a over the bytes plus the length: enough to tell test files apart.
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i], 0x01000193) >>> 0;
  return `${data.length}:${h.toString(16)}`;
}

/** Asserts that two trees hold the same paths with the same bytes and link targets. */
export function assertSameTree(actual: string, expected: string): void {
  assert.deepStrictEqual(readTree(actual), readTree(expected));
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function seededBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
