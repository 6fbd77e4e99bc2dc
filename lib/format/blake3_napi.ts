// Native BLAKE3 that comes with n2s: @napi-rs/blake-hash, the Rust `blake3` crate (SIMD up to
// AVX-512 and NEON) prebuilt as an N-API addon for Linux (glibc and musl), macOS, Windows and
// FreeBSD, fetched from npm with n2s's other dependencies: no compiler, no setup step. On a
// 2-core EPYC it hashes large files at 4–9× hash-wasm's speed, 4 KiB files at about twice its
// rate, and blob ids as cheaply (scripts/bench_blake3.ts); as fast as the C library compiled with
// gcc that it replaced.
//
// The package is imported with a specifier computed at run time, so that it stays out of the
// static module graph: `deno bundle` cannot bundle a native addon, and a bundle then runs with
// hash-wasm (crypto_deno.ts falls back when the import fails). The name is resolved through
// deno.json's import map, which pins the version: a checkout (`deno task n2s`) and `deno compile`
// (whose task --includes the package) have it; a bundle run without that deno.json does not, and
// falls back at once instead of reaching for the network.
//
// Loading it needs --allow-ffi (the addon), --allow-read (the package looks for its files) and
// --allow-sys (it asks for the C library's name to choose between its glibc and musl builds).
// It loads in Worker threads too; each thread loads its own instance.

import type { Hasher } from "./suite.ts";

/** The import-map name of the package (deno.json: npm:@napi-rs/blake-hash@1.3.4). */
export const NAPI_BLAKE3_SPECIFIER = "@napi-rs/blake-hash";

/** The parts of @napi-rs/blake-hash used here (its own types want node:buffer's Buffer). */
interface NapiHasher {
  update(input: Uint8Array): unknown;
  digestBuffer(): Uint8Array;
  reset(): void;
}

interface NapiModule {
  blake3(input: Uint8Array): Uint8Array;
  Blake3Hasher: {
    new (): NapiHasher;
    newKeyed(key: Uint8Array): NapiHasher;
    deriveKey(context: string, material: Uint8Array): Uint8Array;
  };
}

/** BLAKE3 from the native addon: the four operations a Suite needs. */
export interface NapiBlake3 {
  newHasher(): Hasher;
  /** BLAKE3-256 of bytes in memory, in one call. */
  hash(data: Uint8Array): Uint8Array;
  /** BLAKE3-256 keyed_hash with a 32-byte key. */
  keyedHash(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** BLAKE3 derive_key, 32 bytes. */
  deriveKey(context: string, material: Uint8Array): Uint8Array;
}

/** The addon returns node:buffer Buffers; callers get plain Uint8Arrays (same memory, 32 bytes). */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Native hashers outlive the JS objects that used them: making one costs 10–30 µs. */
const POOL_MAX = 8;
/** Keyed hashers kept per thread (a process uses one blob-id key per repository). */
const KEYS_MAX = 4;

function wrap(mod: NapiModule): NapiBlake3 {
  const { Blake3Hasher } = mod;
  const pool: NapiHasher[] = [];
  const emptyDigest = plain(mod.blake3(new Uint8Array(0))).slice();

  class PooledHasher implements Hasher {
    #h: NapiHasher | null = null;
    update(data: Uint8Array): void {
      if (data.length === 0) return;
      (this.#h ??= pool.pop() ?? new Blake3Hasher()).update(data);
    }
    digest(): Uint8Array {
      const h = this.#h;
      if (h === null) return emptyDigest.slice();
      this.#h = null;
      try {
        return plain(h.digestBuffer());
      } finally {
        h.reset();
        if (pool.length < POOL_MAX) pool.push(h);
      }
    }
  }

  const keyed: { key: Uint8Array; hasher: NapiHasher }[] = [];
  function keyedHasher(key: Uint8Array): NapiHasher {
    for (const k of keyed) if (sameBytes(k.key, key)) return k.hasher;
    if (key.length !== 32) throw new RangeError("a BLAKE3 key has 32 bytes");
    const hasher = Blake3Hasher.newKeyed(key);
    if (keyed.length >= KEYS_MAX) keyed.shift();
    keyed.push({ key: key.slice(), hasher });
    return hasher;
  }

  return {
    newHasher: () => new PooledHasher(),
    hash: (data) => plain(mod.blake3(data)),
    keyedHash(key, data) {
      const h = keyedHasher(key);
      try {
        if (data.length > 0) h.update(data);
        return plain(h.digestBuffer());
      } finally {
        h.reset();
      }
    },
    deriveKey: (context, material) => plain(Blake3Hasher.deriveKey(context, material)),
  };
}

let loading: Promise<NapiBlake3> | undefined;

/**
 * Loads the native BLAKE3 of this thread (once; later calls share the result). Rejects with the
 * reason when it cannot load: the package is not reachable, no build exists for this platform, a
 * permission is missing. The tests call this, so that a broken native path fails them.
 */
export function loadNapiBlake3(): Promise<NapiBlake3> {
  return loading ??= (async () => {
    // A variable, not a literal: Deno's module graph and `deno bundle` do not follow it.
    const specifier = NAPI_BLAKE3_SPECIFIER;
    const ns = await import(specifier);
    const mod = (ns.default ?? ns) as NapiModule;
    if (typeof mod?.blake3 !== "function" || typeof mod.Blake3Hasher?.newKeyed !== "function") {
      throw new Error(`${specifier} does not have the expected BLAKE3 API`);
    }
    return wrap(mod);
  })();
}

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The native BLAKE3, or null when it is turned off (N2S_NO_NATIVE=1) or cannot load: callers
 * then use hash-wasm. Without the permissions the addon needs it is not tried at all, so that
 * a library user is never prompted for them.
 */
export async function napiBlake3(): Promise<NapiBlake3 | null> {
  if (typeof Deno?.permissions?.querySync !== "function") return null;
  if (
    granted({ name: "env", variable: "N2S_NO_NATIVE" }) && Deno.env.get("N2S_NO_NATIVE") === "1"
  ) {
    return null;
  }
  if (!granted({ name: "ffi" }) || !granted({ name: "read" }) || !granted({ name: "sys" })) {
    return null;
  }
  try {
    return await loadNapiBlake3();
  } catch {
    return null;
  }
}
