// Giving memory back to the operating system during long pushes and pulls. Two things hold
// freed memory: V8 grows its young generation to its maximum (about 50 MiB here) under a steady
// stream of short-lived objects and keeps it, and glibc's allocator keeps freed pages of the
// many buffers in its heaps. A full collection (V8's `gc`, reached through a fresh node:vm
// context once --expose-gc is set) shrinks the first; malloc_trim(0) (glibc, through FFI)
// returns the second. Where either is unavailable, that part does nothing.

import v8 from "node:v8";
import vm from "node:vm";

let gc: (() => void) | null | undefined;
let trim: (() => void) | null | undefined;
let libc: Deno.DynamicLibrary<typeof LIBC>["symbols"] | null | undefined;

const LIBC = {
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

function openLibc(): Deno.DynamicLibrary<typeof LIBC>["symbols"] | null {
  try {
    if (
      typeof Deno?.dlopen !== "function" || Deno.build.os !== "linux" ||
      Deno.permissions.querySync({ name: "ffi" }).state !== "granted"
    ) return null;
    return Deno.dlopen("libc.so.6", LIBC).symbols;
  } catch {
    return null;
  }
}

function findGc(): (() => void) | null {
  try {
    v8.setFlagsFromString("--expose-gc");
    const f = vm.runInNewContext("gc");
    return typeof f === "function" ? f as () => void : null;
  } catch {
    return null;
  }
}

function findTrim(): (() => void) | null {
  if (libc === undefined) libc = openLibc();
  const lib = libc;
  return lib ? () => void lib.malloc_trim(0n) : null;
}

/**
 * Collects garbage and returns the allocator's free pages to the system. It costs a full
 * collection (milliseconds for the heaps a push has), so call it every few tens of MiB of work.
 */
export function releaseMemory(): void {
  if (gc === undefined) gc = findGc();
  if (trim === undefined) trim = findTrim();
  gc?.();
  trim?.();
}

/**
 * Calls releaseMemory after every `bytes` of work counted with `add` (a file counts its size
 * plus `perItem`, for the objects and index work it brings).
 */
export class MemoryRelease {
  #since = 0;
  constructor(private readonly bytes: number, private readonly perItem = 4096) {}

  add(size: number): void {
    this.#since += size + this.perItem;
    if (this.#since >= this.bytes) {
      this.#since = 0;
      releaseMemory();
    }
  }
}
