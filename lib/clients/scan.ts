// The scan client: walks a directory tree like `find`, with include/exclude globs. A full walk
// also records deletions; with `since`, only files modified since then are pushed.

import { resolve } from "node:path";
import type { Client, ClientProblem, PreviousState, SourceEntry } from "./client.ts";
import { anyMatch, compileGlob } from "../glob.ts";
import { lstatPath, type Problem, walkTree } from "./tree.ts";
import * as arg from "../args.ts";

/** Options of the scan client. */
export interface ScanOptions {
  /** The directory to walk; it becomes the source root. Alias: `root`. */
  dir?: string;
  /** The source root, when `paths` are given and the root should not be their common parent. */
  root?: string;
  /**
   * Files and directories to push (absolute or relative to the working directory), as in
   * `n2s push PATH...`. Without `root`, one directory becomes the root itself and several
   * paths have their common parent directory as the root.
   */
  paths?: string[];
  /** Only files modified at or after this: a duration ago ("90s", "30m", "24h", "7d", "2w"),
   * an ISO-8601 time, a Date, or milliseconds since the epoch. Deletions are then not recorded. */
  since?: string | number | Date;
  /** Globs of paths to leave out; an excluded directory is not read. */
  exclude?: string[];
  /** Globs of files to keep; when given, other files are left out. */
  include?: string[];
  /** The clock, for relative `since` values (milliseconds since the epoch). */
  now?: () => number;
}

const UNITS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** Turns a `--since` value into milliseconds since the epoch. */
export function parseSince(since: string | number | Date, now: number): number {
  if (since instanceof Date) return since.getTime();
  if (typeof since === "number") return since;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$/.exec(since);
  if (m) return now - Number(m[1]) * UNITS[m[2]];
  const t = Date.parse(since);
  if (Number.isNaN(t)) {
    throw new Error(`--since: "${since}" is neither a duration (24h, 7d) nor an ISO-8601 time`);
  }
  return t;
}

function commonParent(paths: string[]): string {
  const parts = paths.map((p) => p.split("/").slice(0, -1));
  let n = parts[0].length;
  for (const p of parts) {
    let i = 0;
    while (i < n && i < p.length && p[i] === parts[0][i]) i++;
    n = i;
  }
  return parts[0].slice(0, n).join("/") || "/";
}

function relativeTo(root: string, abs: string): string {
  if (abs === root) return "";
  const prefix = root.endsWith("/") ? root : root + "/";
  if (!abs.startsWith(prefix)) throw new Error(`${abs} is not inside the source root ${root}`);
  return abs.slice(prefix.length);
}

/** The scan client and what it found to complain about. */
export interface ScanClient extends Client {
  /** Entries found but not stored (unreadable, or skipped on purpose), filled as it runs. */
  readonly problems: ClientProblem[];
}

/**
 * Makes a find-style client over a directory tree (or some paths within one).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { N2S, scanClient } from "@n2s/n2s";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/data/logs`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/data/report.csv`, "1,2\n");
 * await Deno.writeTextFile(`${dir}/data/logs/today.log`, "...\n");
 * const store = await N2S.init({
 *   repository: `${dir}/repo`,
 *   index: `${dir}/index.sqlite`,
 *   passphrase: "correct horse",
 *   logN: 10, // a cheap key: for examples and tests only
 * });
 * const client = scanClient({ dir: `${dir}/data`, exclude: ["logs"] });
 * const r = await store.push({ client, source: "data" });
 * assert.deepEqual(store.ls(r.changeset!).map((f) => f.path), ["report.csv"]);
 * assert.deepEqual(client.problems, []);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function scanClient(opts: ScanOptions): ScanClient {
  const o = arg.object("scanClient", "options", opts);
  arg.optionalString("scanClient", "options.dir", o.dir);
  arg.optionalString("scanClient", "options.root", o.root);
  arg.optionalStrings("scanClient", "options.paths", o.paths);
  if (!(o.since instanceof Date || typeof o.since === "number")) {
    arg.optionalString("scanClient", "options.since", o.since);
  }
  arg.optionalStrings("scanClient", "options.exclude", o.exclude);
  arg.optionalStrings("scanClient", "options.include", o.include);
  arg.optionalFunction("scanClient", "options.now", o.now);
  const abs = (opts.paths ?? []).map((p) => resolve(p).replace(/(.)\/+$/, "$1"));
  let root: string;
  let starts: string[];
  if (opts.dir ?? opts.root) {
    root = resolve((opts.dir ?? opts.root)!);
    starts = abs.length > 0 ? abs.map((p) => relativeTo(root, p)) : [""];
  } else if (abs.length === 1 && Deno.statSync(abs[0]).isDirectory) {
    root = abs[0];
    starts = [""];
  } else if (abs.length > 0) {
    root = commonParent(abs);
    starts = abs.map((p) => relativeTo(root, p));
  } else {
    throw new Error("scan: give a directory or some paths");
  }
  if (starts.includes("")) starts = [""];
  starts = [...new Set(starts)].sort();
  const since = opts.since === undefined
    ? undefined
    : parseSince(opts.since, (opts.now ?? Date.now)());
  const exclude = (opts.exclude ?? []).map(compileGlob);
  const include = (opts.include ?? []).map(compileGlob);
  const problems: Problem[] = [];

  // Include globs choose files (directories stay, so that the tree restores); since applies to
  // every entry.
  const keep = (e: SourceEntry): boolean => {
    if (e.action !== "dir" && include.length > 0 && !anyMatch(include, e.path)) return false;
    if (since !== undefined && (e.mtime ?? 0) < since) return false;
    return true;
  };

  return {
    kind: "scan",
    root,
    completeWithin: since === undefined ? starts : [],
    problems,
    async *entries(_previous: PreviousState): AsyncGenerator<SourceEntry> {
      for (const start of starts) {
        if (start !== "" && anyMatch(exclude, start)) continue;
        const found = await lstatPath(root, start);
        if (found.kind === "entry") {
          if (keep(found.entry)) yield found.entry;
        } else if (found.kind === "special") {
          problems.push({ path: start, message: `${found.what} skipped`, note: true });
        } else if (found.kind === "unreadable") {
          problems.push({ path: start, message: `${found.why}; it was not stored` });
        } else if (found.kind === "dir") {
          // A directory given by name is an entry of its own; the root is not.
          if (start !== "" && keep(found.entry)) yield found.entry;
          for await (
            const e of walkTree(root, start, {
              skipDir: (p) => anyMatch(exclude, p),
              skipEntry: (p) => anyMatch(exclude, p),
              problems,
            })
          ) {
            if (keep(e)) yield e;
          }
        } else if (found.kind === "missing" && start === "") {
          throw new Error(`scan: ${root} does not exist`);
        }
      }
    },
    info() {
      return since === undefined ? { full: true } : { since: new Date(since).toISOString() };
    },
  };
}
