// The ZFS client: changed paths from `zfs diff -FHt`, content read from the snapshot directory
// `<mountpoint>/.zfs/snapshot/<snap>` or, where that is absent, a temporary read-only clone.

import { pathText } from "../format/names.ts";
import { tmpdir } from "node:os";
import type { Client, ClientProblem, PreviousState, SourceEntry } from "./client.ts";
import { CommandError, runChecked, type Runner, systemRunner } from "./runner.ts";
import { type ChangedPaths, emptyChanges, resolveChanges, walkSnapshot } from "./snapshot.ts";
import type { Problem } from "./tree.ts";
import * as arg from "../args.ts";

/** One line of `zfs diff -FHt`. */
export interface ZfsDiffLine {
  /** Change time, seconds since the epoch, when the output is timestamped. */
  time?: number;
  /** `+` added, `-` removed, `M` modified, `R` renamed. */
  change: "+" | "-" | "M" | "R";
  /** `F` file, `/` directory, `@` symlink, `|` FIFO, `=` socket, `B`/`C` devices, `>` door, `P` port. */
  type: string;
  /** Absolute path (for `R`, the old one). */
  path: string;
  /** For `R`: the new absolute path. */
  newPath?: string;
}

/**
 * Decodes a path as `zfs diff` prints it: every byte that is not printable ASCII, a space or a
 * backslash is written as a backslash and octal digits, four in current OpenZFS (`\0040`) and
 * three in older releases (`\040`). `digits` says which; by default both are accepted, taking
 * four digits when they start with 0 and the fourth is an octal digit.
 */
export function unescapeZfsPath(s: string, digits?: 3 | 4): string {
  if (!s.includes("\\")) return s;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\") {
      const four = s.slice(i + 1, i + 5);
      const three = s.slice(i + 1, i + 4);
      if (digits !== 3 && /^0[0-3][0-7]{2}$/.test(four)) {
        bytes.push(parseInt(four, 8));
        i += 4;
        continue;
      }
      if (digits !== 4 && /^[0-3][0-7]{2}$/.test(three)) {
        bytes.push(parseInt(three, 8));
        i += 3;
        continue;
      }
    }
    bytes.push(...enc.encode(c));
  }
  return pathText(new Uint8Array(bytes));
}

/** Picks the escape width of a whole `zfs diff` output: 4 when every escape has four digits. */
export function escapeDigits(output: string): 3 | 4 {
  const all = output.match(/\\[0-7]+/g) ?? [];
  if (all.length === 0) return 4;
  return all.every((e) => /^\\0[0-3][0-7]{2}/.test(e)) ? 4 : 3;
}

/** Parses the output of `zfs diff -FH` (with or without `-t`). */
export function parseZfsDiff(output: string): ZfsDiffLine[] {
  const digits = escapeDigits(output);
  const out: ZfsDiffLine[] = [];
  for (const line of output.split("\n")) {
    if (line.trim() === "") continue;
    const f = line.split("\t");
    let time: number | undefined;
    if (/^\d+(\.\d+)?$/.test(f[0])) time = Number(f.shift());
    const [change, type, path, newPath] = f;
    if (!["+", "-", "M", "R"].includes(change) || type === undefined || path === undefined) {
      throw new Error(`zfs diff: cannot read line ${JSON.stringify(line)}`);
    }
    if (change === "R" && newPath === undefined) {
      throw new Error(`zfs diff: rename without a new path: ${JSON.stringify(line)}`);
    }
    out.push({
      time,
      change: change as ZfsDiffLine["change"],
      type,
      path: unescapeZfsPath(path, digits),
      newPath: newPath === undefined ? undefined : unescapeZfsPath(newPath, digits),
    });
  }
  return out;
}

/** Turns parsed `zfs diff` lines into changed paths relative to the dataset's mountpoint. */
export function zfsChanges(lines: ZfsDiffLine[], mountpoint: string): ChangedPaths {
  const mp = mountpoint.replace(/\/+$/, "");
  const rel = (p: string): string => {
    if (p === mp) return "";
    if (!p.startsWith(mp + "/")) throw new Error(`zfs diff: ${p} is outside ${mp}`);
    return p.slice(mp.length + 1);
  };
  const out = emptyChanges();
  for (const l of lines) {
    const p = rel(l.path);
    const dir = l.type === "/";
    switch (l.change) {
      case "+":
        if (dir) out.walk.add(p);
        else out.changed.add(p);
        break;
      case "M":
        if (!dir) out.changed.add(p);
        break;
      case "-":
        out.gone.add(p);
        if (dir) out.goneDirs.add(p);
        break;
      case "R": {
        const q = rel(l.newPath!);
        out.gone.add(p);
        if (dir) {
          out.goneDirs.add(p);
          out.walk.add(q);
        } else out.changed.add(q);
        break;
      }
    }
  }
  return out;
}

/** Options of the ZFS client. */
export interface ZfsOptions {
  /** The snapshot to push: `pool/dataset@snap`. */
  snapshot: string;
  /** The snapshot to compare with: `@snap` or `pool/dataset@snap`; by default the last pushed. */
  parent?: string;
  /** Runs `zfs`; the system's by default. */
  runner?: Runner;
  /** Where a temporary clone is mounted; a directory under the system's temp dir by default. */
  cloneDir?: string;
}

/** What the ZFS client records with a changeset. */
export interface ZfsInfo {
  snapshot: string;
}

function splitSnapshot(s: string): { dataset: string; snap: string } {
  const i = s.indexOf("@");
  if (i <= 0 || i === s.length - 1) throw new Error(`--zfs: "${s}" is not DATASET@SNAPSHOT`);
  return { dataset: s.slice(0, i), snap: s.slice(i + 1) };
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function destroyClone(runner: Runner, clone: string): Promise<void> {
  let last = "";
  // A just-unmounted clone can stay "busy" for a moment.
  for (let i = 0; i < 20; i++) {
    const r = await runner.run("zfs", ["destroy", clone]);
    if (r.code === 0) return;
    last = r.stderr;
    if (/does not exist/.test(r.stderr)) return;
    await new Promise((ok) => setTimeout(ok, 250));
  }
  throw new CommandError(`zfs destroy ${clone}`, 1, last);
}

/** The ZFS client, with the clone it made (if any). */
export interface ZfsClient extends Client {
  /** Entries found but not stored (unreadable, or skipped on purpose), filled as it runs. */
  readonly problems: ClientProblem[];
  /** The temporary clone content is read from, or undefined when `.zfs/snapshot` is used. */
  readonly clone?: string;
}

/**
 * Makes a client that pushes one ZFS snapshot. When the dataset's `.zfs/snapshot` directory is
 * absent, a read-only clone is made now and destroyed by `close()`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { N2S, type Runner, zfsClient } from "@n2s/n2s";
 *
 * // A dataset tank/home mounted at dir/home with a snapshot "monday"; a Runner that answers as
 * // `zfs` would stands in for the real command.
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/home/.zfs/snapshot/monday`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/home/.zfs/snapshot/monday/notes.txt`, "monday\n");
 * const runner: Runner = {
 *   run(cmd, args) {
 *     assert.equal([cmd, ...args].join(" "), "zfs get -H -o value mountpoint tank/home");
 *     const stdout = new TextEncoder().encode(`${dir}/home\n`);
 *     return Promise.resolve({ code: 0, stdout, stderr: "" });
 *   },
 *   lines() {
 *     throw new Error("a first push runs no pipeline");
 *   },
 * };
 * const client = await zfsClient({ snapshot: "tank/home@monday", runner });
 * assert.equal(client.root, `${dir}/home/.zfs/snapshot/monday`);
 * const store = await N2S.init({
 *   repository: `${dir}/repo`,
 *   index: `${dir}/index.sqlite`,
 *   passphrase: "correct horse",
 *   logN: 10, // a cheap key: for examples and tests only
 * });
 * const r = await store.push({ client, source: "zfs:tank/home" });
 * assert.equal(r.uploaded, 1);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function zfsClient(opts: ZfsOptions): Promise<ZfsClient> {
  const o = arg.object("zfsClient", "options", opts);
  arg.string("zfsClient", "options.snapshot", o.snapshot);
  arg.optionalString("zfsClient", "options.parent", o.parent);
  arg.optionalString("zfsClient", "options.cloneDir", o.cloneDir);
  if (o.runner !== undefined) {
    arg.withMethods("zfsClient", "options.runner", o.runner, "a Runner", ["run", "lines"]);
  }
  const runner = opts.runner ?? systemRunner;
  const { dataset, snap } = splitSnapshot(opts.snapshot);
  const snapshot = `${dataset}@${snap}`;
  const mountpoint = (await runChecked(runner, "zfs", [
    "get",
    "-H",
    "-o",
    "value",
    "mountpoint",
    dataset,
  ])).trim();
  const snapDir = `${mountpoint}/.zfs/snapshot/${snap}`;
  let root: string;
  let clone: string | undefined;
  if (mountpoint.startsWith("/") && await isDir(snapDir)) {
    root = snapDir;
  } else {
    const tag = snapshot.replace(/[^A-Za-z0-9_.-]/g, "_");
    root = opts.cloneDir ?? `${tmpdir()}/n2s-zfs-${tag}`;
    clone = `${dataset.split("/")[0]}/n2s-read-${tag.slice(-40)}-${
      Math.random().toString(36).slice(2, 8)
    }`;
    await Deno.mkdir(root, { recursive: true });
    await runChecked(runner, "zfs", [
      "clone",
      "-o",
      "readonly=on",
      "-o",
      `mountpoint=${root}`,
      snapshot,
      clone,
    ]);
  }
  const problems: Problem[] = [];
  let same = false;
  let closed = false;
  return {
    kind: "zfs",
    root,
    clone,
    completeWithin: [],
    get keepEmpty() {
      return !same;
    },
    changesetName: snapshot,
    problems,
    async *entries(previous: PreviousState): AsyncGenerator<SourceEntry> {
      const last = (previous.info as Partial<ZfsInfo> | undefined)?.snapshot;
      let parent: string | undefined;
      if (opts.parent !== undefined) {
        parent = opts.parent.startsWith("@") ? dataset + opts.parent : opts.parent;
      } else if (last !== undefined && splitSnapshot(last).dataset === dataset) parent = last;
      if (parent === undefined || !previous.changeset) {
        yield* walkSnapshot(root, previous, problems);
        return;
      }
      if (parent === snapshot) {
        same = true;
        return;
      }
      const r = await runner.run("zfs", ["diff", "-FHt", parent, snapshot]);
      if (r.code !== 0) {
        throw new CommandError(`zfs diff -FHt ${parent} ${snapshot}`, r.code, r.stderr);
      }
      const changes = zfsChanges(parseZfsDiff(new TextDecoder().decode(r.stdout)), mountpoint);
      yield* resolveChanges(root, changes, previous, problems);
    },
    info(): ZfsInfo {
      return { snapshot };
    },
    async close() {
      if (closed || clone === undefined) return;
      closed = true;
      await destroyClone(runner, clone);
      await Deno.remove(root).catch(() => {});
    },
  };
}
