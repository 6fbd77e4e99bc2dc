// Directories of a restore target, made one component at a time, refusing to pass through
// anything but real directories, so that nothing is ever written outside the target. New
// directories are made private (0700) and get their own mode only at the end of the restore;
// those no entry describes (a client that records no directories, such as dsg) end as `mkdir -p`
// leaves them: 0777 less the umask.

import { dirname } from "node:path";
import { isRawName } from "../format/names.ts";
import {
  fchmodatRaw,
  lstatRaw,
  mkdirRaw,
  posixAvailable,
  PosixError,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
} from "../fs/posix.ts";

type Kind = "dir" | "link" | "other" | "none";

function kindOf(path: string): Kind {
  if (posixAvailable()) {
    try {
      const t = lstatRaw(path).mode & S_IFMT;
      return t === S_IFDIR ? "dir" : t === S_IFLNK ? "link" : "other";
    } catch (e) {
      if (e instanceof PosixError && e.code === "ENOENT") return "none";
      throw e;
    }
  }
  try {
    const st = Deno.lstatSync(path);
    return st.isSymlink ? "link" : st.isDirectory ? "dir" : "other";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "none";
    throw e;
  }
}

function makeDir(path: string): void {
  if (posixAvailable()) {
    try {
      mkdirRaw(path, 0o700);
    } catch (e) {
      if (!(e instanceof PosixError && e.code === "EEXIST")) throw e;
    }
    return;
  }
  if (isRawName(path)) {
    throw new Error("its name is not UTF-8, which n2s writes only with --allow-ffi");
  }
  try {
    Deno.mkdirSync(path, { mode: 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
}

/** Creates directories under the target, refusing to pass through anything but directories. */
export class DirGuard {
  #ok = new Set<string>();
  /** Directories this restore created (their metadata is the restore's to set). */
  readonly made = new Set<string>();
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
    const kind = kindOf(dir);
    if (kind === "link") {
      throw new Error(`refused: ${rel} is a symlink in the target; not writing through it`);
    }
    if (kind === "other") throw new Error(`refused: ${rel} exists and is not a directory`);
    if (kind === "none") {
      makeDir(dir);
      if (kindOf(dir) !== "dir") throw new Error(`refused: ${rel} is not a directory`);
      this.made.add(dir);
    }
    this.#ok.add(dir);
  }
}

/** The process's umask, from /proc (Deno.umask is unstable); 0o022 where it cannot be read. */
export function umask(): number {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(/^Umask:\s*([0-7]+)/m);
    if (m) return parseInt(m[1], 8);
  } catch {
    // not Linux, or no /proc
  }
  return 0o022;
}

/** Gives directories this restore made and no entry describes the mode `mkdir -p` gives. */
export function finishImplicitDirs(guard: DirGuard, described: Set<string>): void {
  const mode = 0o777 & ~umask();
  for (const dir of guard.made) {
    if (described.has(dir)) continue;
    if (posixAvailable()) fchmodatRaw(dir, mode);
    else Deno.chmodSync(dir, mode);
  }
}
