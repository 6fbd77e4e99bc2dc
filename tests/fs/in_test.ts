// Reading a file for a push (lib/fs/in.ts): a sparse file's holes come back as zeros without
// being read, its data exactly, whatever the buffer sizes; and a file that grew is seen.

import assert from "node:assert/strict";
import { openIn } from "../../lib/fs/in.ts";

/** Asserts equal bytes, naming the first difference (a diff of 64 MiB would not fit a screen). */
function assertSameBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.equal(i, -1, `${what}: first difference at byte ${i}`);
}

function readAll(path: string, chunk: number): Uint8Array {
  const f = openIn(path);
  try {
    const parts: Uint8Array[] = [];
    const buf = new Uint8Array(chunk).fill(0xee); // stale bytes a hole must overwrite
    for (let k; (k = f.read(buf)) > 0;) parts.push(buf.slice(0, k));
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  } finally {
    f.close();
  }
}

Deno.test("a sparse file reads as its bytes: holes as zeros, data exact, any buffer size", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/sparse`;
    const size = 64 << 20;
    const f = Deno.openSync(path, { create: true, write: true });
    const marks: [number, Uint8Array][] = [
      [0, new Uint8Array(5000).map((_, i) => (i * 7 + 1) & 0xff)],
      [(20 << 20) + 123, new Uint8Array(70000).map((_, i) => (i * 13 + 5) & 0xff)],
      [size - 4096, new Uint8Array(100).fill(9)],
    ];
    for (const [at, data] of marks) {
      f.seekSync(at, Deno.SeekMode.Start);
      f.writeSync(data);
    }
    f.truncateSync(size); // ends in a hole
    f.close();
    const st = Deno.statSync(path);
    assert.ok(st.blocks! * 512 < size / 4, "the file system made it sparse");
    const want = Deno.readFileSync(path);
    for (const chunk of [1 << 20, 4096, 65537, 3]) {
      if (chunk === 3) {
        // A tiny buffer over the first data range and into the first hole only: fast enough.
        const g = openIn(path);
        const buf = new Uint8Array(3);
        const got: number[] = [];
        while (got.length < 6000) {
          const k = g.read(buf);
          got.push(...buf.subarray(0, k));
        }
        g.close();
        assertSameBytes(new Uint8Array(got), want.subarray(0, got.length), "3-byte buffers");
        continue;
      }
      assertSameBytes(readAll(path, chunk), want, `buffers of ${chunk} bytes`);
    }
    // A file that grew after it was opened reads past its old size.
    const g = openIn(path);
    Deno.writeFileSync(path, new Uint8Array([1, 2, 3]), { append: true });
    const buf = new Uint8Array(1 << 20);
    let total = 0;
    for (let k; (k = g.read(buf)) > 0;) total += k;
    g.close();
    assert.equal(total, size + 3);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
