// The index file is private: it lists every stored path. n2s creates it 0600 in a 0700
// directory (SQLite gives its -wal and -shm files the same mode); an existing file that others
// can read is left as it is and named in a warning with the chmod that closes it.

import { dirname } from "node:path";
import { shellWord } from "./errors.ts";

/** Writes a warning line on stderr (the default of `onWarning`). */
export function warnOnStderr(message: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`n2s: warning: ${message}\n`));
}

/**
 * Makes sure the index file at `path` exists and is private: creates its directory (0700) and
 * the empty file (0600) when absent; calls `onWarning` when an existing one is open to others.
 */
export function preparePrivateFile(path: string, onWarning: (message: string) => void): void {
  let st: Deno.FileInfo | null = null;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return; // SQLite's open says what is wrong
  }
  if (st === null) {
    Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    return;
  }
  const mode = (st.mode ?? 0) & 0o777;
  if (st.isFile && (mode & 0o077) !== 0) {
    onWarning(
      `index ${path} is readable or writable by other users (mode ` +
        `${mode.toString(8).padStart(4, "0")}); make it private with: chmod go= ${
          shellWord(path)
        }*`,
    );
  }
}
