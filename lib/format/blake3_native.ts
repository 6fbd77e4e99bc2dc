// Optional native BLAKE3: the official C implementation (SIMD, about 6× hash-wasm here) loaded
// with Deno.dlopen from a library that scripts/setup/perf.sh builds. Returns null when the
// library, the FFI permission or Deno.dlopen is missing, so callers fall back to hash-wasm.

import type { Hasher } from "./suite.ts";

const SYMBOLS = {
  b3_state_size: { parameters: [], result: "usize" },
  b3_init: { parameters: ["buffer"], result: "void" },
  b3_update: { parameters: ["buffer", "buffer", "usize"], result: "void" },
  b3_final: { parameters: ["buffer", "buffer"], result: "void" },
  b3_hash: { parameters: ["buffer", "usize", "buffer"], result: "void" },
  // Absent from libraries built before it was added: then derive_key stays in JavaScript.
  b3_derive_key: {
    parameters: ["buffer", "usize", "buffer", "usize", "buffer"],
    result: "void",
    optional: true,
  },
} as const;

/** The native library's one-shot functions, next to its hasher factory. */
export interface NativeBlake3 {
  newHasher: () => Hasher;
  /** BLAKE3-256 of bytes in memory, in one call. */
  hash(data: Uint8Array): Uint8Array;
  /** BLAKE3 derive_key, when the library has it. */
  deriveKey?: (context: string, material: Uint8Array) => Uint8Array;
}

/** Where the library is looked for: N2S_BLAKE3_LIB, then the path perf.sh installs to. */
export function nativeBlake3Paths(): string[] {
  const paths: string[] = [];
  try {
    const env = Deno.env.get("N2S_BLAKE3_LIB");
    if (env) paths.push(env);
    const home = Deno.env.get("HOME");
    if (home) paths.push(`${home}/.local/lib/n2s/libblake3.so`);
  } catch {
    // no env permission: only the default path
  }
  paths.push("/usr/local/lib/n2s/libblake3.so");
  return paths;
}

let cached: NativeBlake3 | null | undefined;

/** A factory of native BLAKE3-256 hashers, or null when the native library cannot be used. */
export function nativeBlake3(): (() => Hasher) | null {
  return nativeBlake3Lib()?.newHasher ?? null;
}

/** The native BLAKE3 library's functions, or null when it cannot be used. */
export function nativeBlake3Lib(): NativeBlake3 | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (typeof Deno?.dlopen !== "function") return null;
  if (Deno.env.get?.("N2S_NO_NATIVE") === "1") return null;
  for (const path of nativeBlake3Paths()) {
    try {
      if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") return null;
      Deno.statSync(path);
    } catch {
      continue;
    }
    try {
      const lib = Deno.dlopen(path, SYMBOLS).symbols;
      const size = Number(lib.b3_state_size());
      const newHasher = () => {
        // Caller-owned state: freed by the garbage collector with the hasher.
        const state = new Uint8Array(new ArrayBuffer(size + 8), 0, size);
        lib.b3_init(state);
        return {
          update(data: Uint8Array) {
            if (data.length > 0) lib.b3_update(state, data, BigInt(data.length));
          },
          digest() {
            const out = new Uint8Array(32);
            lib.b3_final(state, out);
            return out;
          },
        };
      };
      const contexts = new Map<string, Uint8Array>();
      const derive = lib.b3_derive_key;
      cached = {
        newHasher,
        hash(data) {
          const out = new Uint8Array(32);
          lib.b3_hash(data, BigInt(data.length), out);
          return out;
        },
        deriveKey: derive
          ? (context, material) => {
            let c = contexts.get(context);
            if (!c) contexts.set(context, c = new TextEncoder().encode(context));
            const out = new Uint8Array(32);
            derive(c, BigInt(c.length), material, BigInt(material.length), out);
            return out;
          }
          : undefined,
      };
      return cached;
    } catch {
      // not loadable here (another architecture, a broken build): try the next one
    }
  }
  return null;
}
