// The native BLAKE3 that comes with n2s (@napi-rs/blake-hash): it loads, in the main thread and
// in Workers, with the permissions the n2s task grants, and agrees with @noble/hashes on random
// inputs of many sizes fed in uneven pieces. A failure to load fails these tests: nothing here is
// skipped when the addon is missing. (The official vectors: tests/format/blake3_test.ts.)

import assert from "node:assert/strict";
import { blake3 } from "@noble/hashes/blake3.js";
import { loadNapiBlake3, type NapiBlake3 } from "../../lib/format/blake3_napi.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { nobleDeriveKey } from "../../lib/format/suite_js.ts";
import type { Hasher } from "../../lib/format/suite.ts";
import { SEAL_PROTOCOL, SEAL_WORKER_MODULE } from "../../lib/workers/seal_worker.ts";

const ROOT = new URL("../../", import.meta.url);
const SIZES = [
  0,
  1,
  63,
  64,
  65,
  1023,
  1024,
  1025,
  2048,
  4097,
  65536,
  100_003,
  (1 << 20) + 1,
];
const CONTEXT = "n2s napi test context v1";

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, o + 65536));
  return out;
}

/** Feeds each input in uneven pieces to one hasher, reused after every digest. */
function checkHasher(newHasher: () => Hasher, what: string): void {
  const h = newHasher();
  for (const n of SIZES) {
    const data = random(n);
    let o = 0;
    for (let step = 1; o < n; step = step * 3 + 1) {
      h.update(data.subarray(o, o + step));
      o += step;
    }
    assert.deepEqual(h.digest(), blake3(data), `${what}: size ${n}`);
  }
}

async function napi(): Promise<NapiBlake3> {
  try {
    return await loadNapiBlake3();
  } catch (e) {
    throw new Error(`@napi-rs/blake-hash did not load: ${e instanceof Error ? e.message : e}`);
  }
}

Deno.test("napi BLAKE3: hasher, one-shot, keyed_hash and derive_key match @noble/hashes", async () => {
  const b3 = await napi();
  checkHasher(b3.newHasher, "hasher");
  for (const n of SIZES) {
    const data = random(n);
    const key = random(32);
    assert.deepEqual(b3.hash(data), blake3(data), `one-shot, size ${n}`);
    assert.deepEqual(b3.keyedHash(key, data), blake3(data, { key }), `keyed_hash, size ${n}`);
    assert.deepEqual(
      b3.deriveKey(CONTEXT, data),
      nobleDeriveKey(CONTEXT, data),
      `derive_key, size ${n}`,
    );
    // A view that starts at an odd offset of a larger buffer.
    const inner = new Uint8Array(n + 9);
    inner.set(data, 5);
    const view = inner.subarray(5, 5 + n);
    assert.deepEqual(b3.hash(view), blake3(data), `one-shot of a view, size ${n}`);
    assert.deepEqual(b3.keyedHash(key, view), blake3(data, { key }), `keyed view, size ${n}`);
  }
  // Results are plain Uint8Arrays that own their 32 bytes (safe to transfer to another thread).
  const d = b3.hash(random(100));
  assert.equal(Object.getPrototypeOf(d), Uint8Array.prototype);
  assert.equal(d.byteLength, 32);
  assert.equal(d.buffer.byteLength, 32);
  assert.throws(() => b3.keyedHash(new Uint8Array(16), d), RangeError);
});

Deno.test("interleaved napi hashers keep separate states, and digest resets them", async () => {
  const { newHasher } = await napi();
  const a = newHasher();
  const b = newHasher();
  const x = random(5000);
  const y = random(7000);
  a.update(x.subarray(0, 100));
  b.update(y.subarray(0, 3000));
  a.update(x.subarray(100));
  b.update(y.subarray(3000));
  assert.deepEqual(a.digest(), blake3(x));
  // `b` still has its state after `a` went back to the pool, and a third hasher takes `a`'s.
  const c = newHasher();
  c.update(x);
  assert.deepEqual(b.digest(), blake3(y));
  assert.deepEqual(c.digest(), blake3(x));
  assert.deepEqual(a.digest(), blake3(new Uint8Array(0)));
  a.update(y);
  assert.deepEqual(a.digest(), blake3(y));
});

Deno.test("the suite of the CLI uses napi, and its BLAKE3 matches @noble/hashes", async () => {
  const suite = await denoSuite();
  assert.equal(suite.info.blake3, "napi");
  checkHasher(suite.newHasher, "suite hasher");
  const data = random(4096);
  assert.deepEqual(suite.hash!(data), blake3(data));
});

/** Runs a Worker on `src` (an ES module), sends it `msg`, and returns its first answer. */
async function askWorker(url: string, msg: unknown, timeoutMs = 60_000): Promise<unknown> {
  const w = new Worker(url, { type: "module" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await new Promise((resolve, reject) => {
      w.onmessage = (e) => resolve(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        reject(new Error(`Worker failed: ${e.message}`));
      };
      timer = setTimeout(() => reject(new Error("Worker did not answer")), timeoutMs);
      w.postMessage(msg);
    });
  } finally {
    clearTimeout(timer);
    w.terminate();
  }
}

Deno.test("a Worker loads napi and hashes like @noble/hashes", async () => {
  const suiteUrl = new URL("lib/crypto_deno.ts", ROOT).href;
  const src = `
    import { denoSuite } from ${JSON.stringify(suiteUrl)};
    self.onmessage = async (e) => {
      try {
        const { data, key } = e.data;
        const s = await denoSuite();
        const h = s.newHasher();
        h.update(data.subarray(0, 1000));
        h.update(data.subarray(1000));
        self.postMessage({
          blake3: s.info.blake3,
          hasher: h.digest(),
          hash: s.hash(data),
          keyed: s.keyedHash(key, data),
          derived: s.deriveKey("ctx", data),
        });
      } catch (err) {
        self.postMessage({ error: String(err) });
      }
    };`;
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  try {
    const data = random((1 << 20) + 1);
    const key = random(32);
    // Two Workers at once, as a push starts them.
    const answers = await Promise.all([1, 2].map(() => askWorker(url, { data, key })));
    for (const a of answers as Record<string, unknown>[]) {
      assert.equal(a.error, undefined);
      assert.equal(a.blake3, "napi");
      assert.deepEqual(a.hasher, blake3(data));
      assert.deepEqual(a.hash, blake3(data));
      assert.deepEqual(a.keyed, blake3(data, { key }));
      assert.deepEqual(a.derived, nobleDeriveKey("ctx", data));
    }
  } finally {
    URL.revokeObjectURL(url);
  }
});

Deno.test("n2s's seal Worker reports napi as its BLAKE3", async () => {
  const ready = await askWorker(SEAL_WORKER_MODULE, {
    t: "init",
    proto: SEAL_PROTOCOL,
    master: random(32),
  }) as { t: string; info?: { blake3?: string }; message?: string };
  assert.equal(ready.t, "ready", ready.message);
  assert.equal(ready.info?.blake3, "napi");
});

/** What denoSuite() picks in a subprocess with the given permission flags and environment. */
async function blake3With(flags: string[], env: Record<string, string> = {}): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "n2s-napi-" });
  try {
    const script = `${dir}/which.ts`;
    Deno.writeTextFileSync(
      script,
      `import { denoSuite } from ${JSON.stringify(new URL("lib/crypto_deno.ts", ROOT).href)};\n` +
        "console.log((await denoSuite()).info.blake3);\n",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-prompt",
        "--config",
        new URL("deno.json", ROOT).pathname,
        ...flags,
        script,
      ],
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assert.ok(out.success, dec.decode(out.stderr));
    return dec.decode(out.stdout).trim();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("napi loads with the n2s task's permissions; without them, or with N2S_NO_NATIVE=1, hash-wasm", async () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const flags = (config.tasks.n2s as string).split(/\s+/).filter((a) => a.startsWith("--allow-"));
  assert.ok(flags.includes("--allow-ffi"), "the n2s task does not grant --allow-ffi");
  assert.equal(await blake3With(flags), "napi");
  assert.equal(await blake3With(flags, { N2S_NO_NATIVE: "1" }), "hash-wasm");
  const noFfi = flags.filter((f) => f !== "--allow-ffi");
  assert.equal(await blake3With(noFfi), "hash-wasm");
  assert.equal(await blake3With(["--allow-read", "--allow-ffi"]), "hash-wasm");
});

Deno.test("deno.json pins one version of the addon for the import map and the compile task", async () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const pinned = config.imports["@napi-rs/blake-hash"] as string;
  assert.match(pinned, /^npm:@napi-rs\/blake-hash@\d+\.\d+\.\d+$/);
  // A computed import is outside the module graph: `deno compile` must be told to embed it.
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "--quiet",
      "--config",
      new URL("deno.json", ROOT).pathname,
      "compile",
      "--dry-run",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(r.stdout).trim();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.ok(
    line.split(/\s+/).includes(pinned),
    `the compile task does not --include ${pinned}: ${line}`,
  );
});
