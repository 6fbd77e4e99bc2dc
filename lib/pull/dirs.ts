// Directories of a restore target, made one component at a time, refusing to pass through
// anything but real directories, so that nothing is ever written outside the target.

import { dirname } from "node:path";

/** Creates directories under the target, refusing to pass through anything but directories. */
export class DirGuard {
  #ok = new Set<string>();
  constructor(private readonly target: string) {
    this.#ok.add(target);
  }

  ensure(dir: string): void {
    if (this.#ok.has(dir)) return;
    const rel = dir.slice(this.target.length + 1);
    if (!dir.startsWith(this.target + "/") || rel === "") {
      throw new Error("refused: outside the target");
    }
    this.ensure(dirname(dir));
    try {
      const st = Deno.lstatSync(dir);
      if (st.isSymlink) {
        throw new Error(`refused: ${rel} is a symlink in the target; not writing through it`);
      }
      if (!st.isDirectory) throw new Error(`refused: ${rel} exists and is not a directory`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      try {
        Deno.mkdirSync(dir);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      }
      const st = Deno.lstatSync(dir);
      if (!st.isDirectory) throw new Error(`refused: ${rel} is not a directory`);
    }
    this.#ok.add(dir);
  }
}
