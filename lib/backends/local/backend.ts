// The local directory backend: objects are files under a root directory; a put writes a
// temporary file beside its target and renames it (files.ts), and `flush` makes completed puts
// durable in one file-system sync instead of one fsync per object.

import { join } from "node:path";
import { concat } from "../../format/bytes.ts";
import { TEMP_MARK } from "../shared.ts";
import {
  type Backend,
  BackendError,
  type Body,
  type ByteRange,
  checkKey,
  checkRange,
  NotFoundError,
  type ObjectFiles,
  type ObjectInfo,
  type TemporaryObject,
} from "../backend.ts";
import { classify } from "./errors.ts";
import { DirMaker, ObjectFileWriter, putFileSync } from "./files.ts";
import { parseLocalLocation } from "./location.ts";

const GET_CHUNK = 4 << 20;

/** A directory on a local (or mounted) file system. */
export class LocalBackend implements Backend {
  readonly name: string;
  /** Puts in flight: local calls are cheap, a few more keep the seal Workers busy. */
  readonly parallelism = 8;
  #unsynced = 0;
  /** Whether other threads were told to write objects here (see `directory`). */
  #direct = false;
  #dirs = new DirMaker();

  constructor(readonly root: string) {
    this.name = `local ${root}`;
  }

  #path(key: string): string {
    checkKey(this.name, key);
    return join(this.root, key);
  }

  /**
   * The objects as files under the root: Workers read them there, or write them themselves
   * (files.ts); from then on every flush syncs, since this backend no longer counts the
   * puts.
   */
  objectFiles(purpose: "read" | "write"): ObjectFiles {
    if (purpose === "write") this.#direct = true;
    return { root: this.root };
  }

  async put(key: string, body: Body): Promise<ObjectInfo> {
    checkKey(this.name, key);
    let writer: ObjectFileWriter | null = null;
    try {
      let size = 0;
      if (body.size !== undefined && body.size <= 1 << 20) {
        // Small objects: one buffer (the body's own when it is one piece), one write.
        const parts: Uint8Array[] = [];
        for await (const piece of body.open()) {
          for (const p of Array.isArray(piece) ? piece : [piece]) {
            size += p.length;
            if (size > body.size) throw new Error("body longer than its size");
            parts.push(p);
          }
        }
        if (size !== body.size) throw new Error("body shorter than its size");
        putFileSync(this.root, key, parts.length === 1 ? parts[0] : concat(parts), this.#dirs);
      } else {
        // Synchronous writes: Deno's asynchronous file calls hold the main thread for about as
        // long as the call itself takes (measured: open and writeFile), so they buy no overlap
        // and cost more per call.
        writer = new ObjectFileWriter(this.root, key, this.#dirs);
        for await (const piece of body.open()) {
          for (const p of Array.isArray(piece) ? piece : [piece]) writer.write(p);
          await writer.pace();
        }
        size = await writer.commit();
        writer = null;
      }
      this.#unsynced++;
      return { key, size };
    } catch (e) {
      await writer?.abort();
      throw classify(this.name, e, `put ${key}`);
    }
  }

  /** Reads the file; a range is served by seeking to its offset and reading only its bytes. */
  // deno-lint-ignore require-await
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const path = this.#path(key);
    checkRange(this.name, range);
    try {
      // Synchronous reads in large chunks: a small object is one read, and a large one is read
      // in 4 MiB pieces, so a 1 MiB segment seldom straddles two chunks (which costs a copy).
      const f = Deno.openSync(path, { read: true });
      const name = this.name;
      return (async function* () {
        try {
          const size = f.statSync().size;
          const start = range ? Math.min(range.offset, size) : 0;
          if (start > 0) f.seekSync(start, Deno.SeekMode.Start);
          // Bytes the range still allows, and bytes expected before the end of the file.
          let allowed = range ? range.length : Infinity;
          let left = size - start;
          while (allowed > 0) {
            const buf = new Uint8Array(Math.min(allowed, Math.max(1, Math.min(left, GET_CHUNK))));
            let n = 0;
            while (n < buf.length) {
              const k = f.readSync(buf.subarray(n));
              if (k === null) break;
              n += k;
            }
            if (n === 0) break;
            left -= n;
            allowed -= n;
            yield buf.subarray(0, n);
            if (left <= 0 && n < buf.length) break;
          }
        } catch (e) {
          throw classify(name, e, `get ${key}`);
        } finally {
          f.close();
        }
      })();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new NotFoundError(this.name, key);
      throw classify(this.name, e, `get ${key}`);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const st = await Deno.stat(this.#path(key));
      return st.isFile ? { key, size: st.size } : null;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw classify(this.name, e, `stat ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    const start = base === "" ? this.root : join(this.root, base);
    const stack: [string, string][] = [[start, base]];
    while (stack.length > 0) {
      const [dir, rel] = stack.pop()!;
      let entries: Deno.DirEntry[];
      try {
        entries = Array.from(Deno.readDirSync(dir));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw classify(this.name, e, `list ${prefix}`);
      }
      for (const ent of entries) {
        const key = rel === "" ? ent.name : `${rel}/${ent.name}`;
        if (ent.isDirectory) {
          if (key.startsWith(prefix) || prefix.startsWith(key + "/")) {
            stack.push([join(dir, ent.name), key]);
          }
        } else if (ent.isFile && key.startsWith(prefix) && !ent.name.includes(TEMP_MARK)) {
          const st = await Deno.stat(join(dir, ent.name)).catch(() => null);
          if (st) yield { key, size: st.size };
        }
      }
    }
  }

  /** Files under a temporary name (see files.ts): puts killed before their rename. */
  temporaries(): Promise<TemporaryObject[]> {
    const out: TemporaryObject[] = [];
    const walk = (dir: string, rel: string) => {
      let entries: Deno.DirEntry[];
      try {
        entries = Array.from(Deno.readDirSync(dir));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return;
        throw classify(this.name, e, "list temporary objects");
      }
      for (const ent of entries) {
        const key = rel === "" ? ent.name : `${rel}/${ent.name}`;
        if (ent.isDirectory) walk(join(dir, ent.name), key);
        else if (ent.isFile && ent.name.includes(TEMP_MARK)) {
          try {
            const st = Deno.statSync(join(dir, ent.name));
            out.push({ key, size: st.size, mtime: st.mtime?.getTime() ?? 0 });
          } catch {
            // renamed or removed meanwhile
          }
        }
      }
    };
    walk(this.root, "");
    return Promise.resolve(out);
  }

  async deleteTemporary(key: string): Promise<void> {
    if (!key.split("/").pop()!.includes(TEMP_MARK)) {
      throw new BackendError("permanent", this.name, `${key} is not a temporary object`);
    }
    await Deno.remove(this.#path(key)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw classify(this.name, e, `delete ${key}`);
    });
  }

  async delete(key: string): Promise<void> {
    try {
      await Deno.remove(this.#path(key));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw classify(this.name, e, `delete ${key}`);
    }
  }

  /** Syncs the file system that holds the root (syncfs), covering data and renames. */
  async flush(): Promise<void> {
    if (this.#unsynced === 0 && !this.#direct) return;
    const n = this.#unsynced;
    try {
      const out = await new Deno.Command("sync", { args: ["-f", this.root], stderr: "piped" })
        .output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim());
    } catch (e) {
      throw classify(this.name, e, "flush (sync -f)");
    }
    this.#unsynced -= n;
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

/** Opens a local location (a path or a file:// URL). */
export function openLocalLocation(location: string): LocalBackend {
  return new LocalBackend(parseLocalLocation(location));
}
