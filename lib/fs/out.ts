// A restored file being written: created private (0600) under its name, or beside it under a
// temporary name when something is already there; written with the holes of a sparse file left
// as holes; then given its metadata and renamed into place. Raw names go through libc
// (lib/fs/posix.ts); without it, Deno's calls do the same for UTF-8 names.

import { isRawName } from "../format/names.ts";
import { applyMeta, type FileMeta, joinTime } from "./meta.ts";
import {
  closeFd,
  ftruncateFd,
  openRaw,
  posixAvailable,
  PosixError,
  renameRaw,
  S_IFREG,
  unlinkRaw,
  writeFd,
} from "./posix.ts";

/** Where a file goes and what it gets back. */
export interface OutSpec {
  /** Absolute path of the file. */
  full: string;
  /** Its size (what it is truncated to when it ends in a hole). */
  size?: number;
  meta?: FileMeta;
  holes?: [number, number][];
  /** Restore owner and group (default: when running as root). */
  owner?: boolean;
}

/** A temporary name beside `full`, in the same directory (see PULL_TEMP_NAME). */
export function tempBeside(full: string): string {
  const i = full.lastIndexOf("/");
  return `${full.slice(0, i + 1)}.n2s-pull-${crypto.randomUUID().slice(0, 8)}`;
}

/** The names tempBeside gives: what a pull that was killed can leave behind. */
export const PULL_TEMP_NAME = /^\.n2s-pull-[0-9a-f]{8}$/;

/** One file being written; see the module comment. */
export class FileOut {
  #fd: number | null = null;
  #file: Deno.FsFile | null = null;
  #at = 0;
  readonly #path: string;
  readonly #direct: boolean;

  private constructor(
    private readonly spec: OutSpec,
    path: string,
    direct: boolean,
    fd: number | null,
    file: Deno.FsFile | null,
  ) {
    this.#path = path;
    this.#direct = direct;
    this.#fd = fd;
    this.#file = file;
  }

  /**
   * Creates the file: straight under its name when nothing is there (which saves a rename),
   * else under a temporary name, so that an existing file is never seen half written. With
   * `beside`, always under a temporary name (content that is not verified yet).
   */
  static create(spec: OutSpec, beside = false): FileOut {
    if (posixAvailable()) {
      if (!beside) {
        try {
          return new FileOut(spec, spec.full, true, openRaw(spec.full, "write-new"), null);
        } catch (e) {
          if (!(e instanceof PosixError && e.code === "EEXIST")) throw e;
        }
      }
      const tmp = tempBeside(spec.full);
      return new FileOut(spec, tmp, false, openRaw(tmp, "write-new"), null);
    }
    if (isRawName(spec.full)) {
      throw new Error("its name is not UTF-8, which n2s writes only with --allow-ffi");
    }
    if (!beside) {
      try {
        const f = Deno.openSync(spec.full, { write: true, createNew: true, mode: 0o600 });
        return new FileOut(spec, spec.full, true, null, f);
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    const tmp = tempBeside(spec.full);
    const f = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
    return new FileOut(spec, tmp, false, null, f);
  }

  /** Appends content; what falls in a hole is not written (it reads as zeros anyway). */
  write(data: Uint8Array): void {
    const holes = this.spec.holes;
    if (!holes || holes.length === 0) {
      this.#put(data, this.#at);
      this.#at += data.length;
      return;
    }
    let from = 0;
    while (from < data.length) {
      const pos = this.#at + from;
      const hole = holes.find(([s, e]) => pos >= s && pos < e);
      if (hole) {
        from = Math.min(data.length, hole[1] - this.#at);
        continue;
      }
      const next = holes.find(([s]) => s > pos);
      const to = next ? Math.min(data.length, next[0] - this.#at) : data.length;
      this.#put(data.subarray(from, to), pos);
      from = to;
    }
    this.#at += data.length;
  }

  #put(data: Uint8Array, at: number): void {
    if (data.length === 0) return;
    if (this.#fd !== null) writeFd(this.#fd, data, at);
    else {
      const f = this.#file!;
      f.seekSync(at, Deno.SeekMode.Start);
      let o = 0;
      while (o < data.length) o += f.writeSync(o === 0 ? data : data.subarray(o));
    }
  }

  /**
   * Closes the file, gives it its metadata and puts it under its name. Returns what metadata
   * could not be given back (the content is in place either way).
   */
  finish(): string[] {
    const size = this.spec.size ?? this.#at;
    let problems: string[] = [];
    if (this.#fd !== null) {
      // A file that ends in a hole has its size only once truncated to it.
      if (this.spec.holes?.length) ftruncateFd(this.#fd, size);
      closeFd(this.#fd);
      this.#fd = null;
      if (this.spec.meta) problems = applyMeta(this.#path, this.spec.meta, S_IFREG, this.spec);
      if (!this.#direct) renameRaw(this.#path, this.spec.full);
      return problems;
    }
    const f = this.#file!;
    if (this.spec.holes?.length) f.truncateSync(size);
    const meta = this.spec.meta;
    if (meta) {
      const t = new Date(Number(joinTime(meta.mtime, meta.nsec) / 1_000_000n));
      f.utimeSync(t, t);
    }
    f.close();
    this.#file = null;
    if (meta) Deno.chmodSync(this.#path, meta.mode & 0o7777);
    if (!this.#direct) Deno.renameSync(this.#path, this.spec.full);
    return problems;
  }

  /** Closes and removes the file; never throws. */
  abort(): void {
    try {
      if (this.#fd !== null) closeFd(this.#fd);
      this.#file?.close();
    } catch {
      // already closed
    }
    this.#fd = null;
    this.#file = null;
    try {
      if (posixAvailable()) unlinkRaw(this.#path);
      else Deno.removeSync(this.#path);
    } catch {
      // never created, or already gone
    }
  }
}
