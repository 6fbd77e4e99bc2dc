// The local backend's transport: object files written with synchronous calls, under a temporary
// name beside the final one and renamed into place. Seal Workers use it too (objectFiles).

import { dirname, join } from "node:path";
import { tempName } from "../shared.ts";

/** Bytes of a large object written between two starts of its write-back (fdatasync). */
const WRITEBACK_BYTES = 32 << 20;

/** Creates `path` (which must not exist) holding `data`. */
export function writeNew(path: string, data: Uint8Array, mode = 0o600): void {
  const f = Deno.openSync(path, { write: true, createNew: true, mode });
  try {
    let o = 0;
    while (o < data.length) o += f.writeSync(o === 0 ? data : data.subarray(o));
  } finally {
    f.close();
  }
}

/** Permissions of a repository's directories and object files. */
export interface ObjectModes {
  dir: number;
  file: number;
}

/** Makes the directories that objects go into, once per directory and writer. */
export class DirMaker {
  #made = new Set<string>();
  #modes = new Map<string, ObjectModes>();

  /** The modes of objects under `root` (see the module comment); makes the root when absent. */
  modes(root: string): ObjectModes {
    let m = this.#modes.get(root);
    if (m === undefined) {
      let dir = 0o700;
      try {
        dir = ((Deno.statSync(root).mode ?? 0) & 0o777) | 0o700;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        Deno.mkdirSync(root, { recursive: true, mode: dir });
      }
      m = { dir, file: dir & 0o666 };
      this.#modes.set(root, m);
    }
    return m;
  }

  /** Makes `dir`, a directory under `root`, and its parents. */
  ensure(root: string, dir: string): void {
    if (this.#made.has(dir)) return;
    Deno.mkdirSync(dir, { recursive: true, mode: this.modes(root).dir });
    this.#made.add(dir);
  }
}

/** Stores a whole object held in memory: temporary file, one write, rename. */
export function putFileSync(root: string, key: string, data: Uint8Array, dirs: DirMaker): void {
  const path = join(root, key);
  dirs.ensure(root, dirname(path));
  const tmp = tempName(path);
  try {
    writeNew(tmp, data, dirs.modes(root).file);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch {
      // never created, or already gone
    }
    throw e;
  }
}

/**
 * Writes one object in pieces to a temporary file, starting its write-back every
 * WRITEBACK_BYTES so that the final flush does not find the whole object still in memory;
 * `commit` renames it into place, `abort` removes it.
 */
export class ObjectFileWriter {
  readonly #path: string;
  readonly #tmp: string;
  #file: Deno.FsFile | null;
  #sinceSync = 0;
  #syncing: Promise<void> | null = null;
  size = 0;

  constructor(root: string, key: string, dirs: DirMaker) {
    this.#path = join(root, key);
    dirs.ensure(root, dirname(this.#path));
    this.#tmp = tempName(this.#path);
    this.#file = Deno.openSync(this.#tmp, {
      write: true,
      createNew: true,
      mode: dirs.modes(root).file,
    });
  }

  /** Writes `p` completely; the caller may reuse `p` as soon as this returns. */
  write(p: Uint8Array): void {
    const f = this.#file!;
    let o = 0;
    while (o < p.length) o += f.writeSync(o === 0 ? p : p.subarray(o));
    this.size += p.length;
    this.#sinceSync += p.length;
    if (this.#sinceSync >= WRITEBACK_BYTES && this.#syncing === null) {
      this.#sinceSync = 0;
      this.#syncing = f.syncData().catch(() => {}).finally(() => this.#syncing = null);
    }
  }

  /**
   * Waits for the running write-back when another WRITEBACK_BYTES were written since it began.
   * That bounds a large object's unwritten pages, so the disk works while the object is still
   * being produced rather than all at the final flush, and it lets the next write-back start in
   * a thread that would otherwise not return to its event loop before the object is done.
   */
  async pace(): Promise<void> {
    if (this.#syncing !== null && this.#sinceSync >= WRITEBACK_BYTES) await this.#syncing;
  }

  /** Closes the temporary file and renames it over the object's name. */
  async commit(): Promise<number> {
    await this.#syncing;
    this.#file!.close();
    this.#file = null;
    Deno.renameSync(this.#tmp, this.#path);
    return this.size;
  }

  /** Closes and removes the temporary file; never throws. */
  async abort(): Promise<void> {
    await this.#syncing;
    try {
      this.#file?.close();
    } catch {
      // already closed
    }
    this.#file = null;
    await Deno.remove(this.#tmp).catch(() => {});
  }
}
