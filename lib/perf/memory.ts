// Giving freed memory back to the operating system. A push or pull allocates and frees many
// buffers of many sizes across threads; glibc's allocator keeps the freed pages in its heaps, so
// the process's resident size climbs well past what it uses. malloc_trim(0) (through FFI, when
// glibc and the FFI permission are there) returns them; elsewhere this does nothing.

let trim: (() => void) | null | undefined;

/** Returns the allocator's free pages to the system; cheap enough to call every few MiB. */
export function trimMemory(): void {
  if (trim === undefined) {
    trim = null;
    try {
      if (
        typeof Deno?.dlopen === "function" && Deno.build.os === "linux" &&
        Deno.permissions.querySync({ name: "ffi" }).state === "granted"
      ) {
        const lib = Deno.dlopen("libc.so.6", {
          malloc_trim: { parameters: ["usize"], result: "i32" },
        }).symbols;
        trim = () => lib.malloc_trim(0n);
      }
    } catch {
      trim = null;
    }
  }
  trim?.();
}
