// The btrfs client: changed paths between two read-only snapshots from
// `btrfs send --no-data -p PARENT SNAP | btrfs receive --dump`, content read from the snapshot.

import { pathText } from "../format/names.ts";
import { basename, resolve } from "node:path";
import type { Client, ClientProblem, PreviousState, SourceEntry } from "./client.ts";
import { type Runner, systemRunner } from "./runner.ts";
import { type ChangedPaths, emptyChanges, resolveChanges, walkSnapshot } from "./snapshot.ts";
import type { Problem } from "./tree.ts";
import * as arg from "../args.ts";

const SIMPLE_ESCAPES: Record<string, number> = {
  a: 7,
  b: 8,
  e: 27,
  f: 12,
  n: 10,
  r: 13,
  t: 9,
  v: 11,
  " ": 32,
  "\\": 92,
};

/**
 * Decodes a path as `btrfs receive --dump` prints it: C escapes (`\n`, `\t`, `\ `, `\\`, …) and
 * three-digit octal escapes for other bytes; bytes that are not UTF-8 stay bytes (names.ts).
 */
export function unescapeDumpPath(s: string): string {
  if (!s.includes("\\")) return s;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== "\\" || i + 1 >= s.length) {
      bytes.push(...enc.encode(c));
      continue;
    }
    const n = s[i + 1];
    if (/[0-7]/.test(n) && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (n in SIMPLE_ESCAPES) {
      bytes.push(SIMPLE_ESCAPES[n]);
      i += 1;
    } else {
      bytes.push(...enc.encode(n));
      i += 1;
    }
  }
  return pathText(new Uint8Array(bytes));
}

/** One line of `btrfs receive --dump`: the operation, its path and its key=value fields. */
export interface DumpOp {
  op: string;
  path: string;
  fields: Record<string, string>;
}

/** Splits a dump line at unescaped whitespace. */
function tokens(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let any = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && i + 1 < line.length) {
      cur += c + line[++i];
      any = true;
    } else if (c === " " || c === "\t") {
      if (any) out.push(cur);
      cur = "";
      any = false;
    } else {
      cur += c;
      any = true;
    }
  }
  if (any) out.push(cur);
  return out;
}

/** Parses one dump line (paths still escaped in `fields`, the main path decoded). */
export function parseDumpLine(line: string): DumpOp | null {
  const t = tokens(line);
  if (t.length < 2) return null;
  const fields: Record<string, string> = {};
  for (const kv of t.slice(2)) {
    const i = kv.indexOf("=");
    if (i > 0) fields[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { op: t[0], path: unescapeDumpPath(t[1]), fields };
}

class Node {
  children = new Map<string, Node>();
  parent: Node | null = null;
  name = "";
  changed = false;
  renamed = false;
  /** The path this node had in the parent snapshot, when it existed there. */
  constructor(readonly orig: string | undefined) {}
}

function join(a: string, b: string): string {
  return a === "" ? b : `${a}/${b}`;
}

/**
 * Replays a `btrfs receive --dump` stream over a tree of the paths it touches, following
 * renames (including the temporary orphan names `oINO-GEN-IDX`), and returns which paths of the
 * new snapshot may have changed and which paths of the parent may be gone.
 */
export class DumpReplay {
  #root = new Node("");
  #prefix: string | null = null;
  #gone = new Set<string>();
  #goneDirs = new Set<string>();

  #rel(path: string): string {
    if (this.#prefix === null) throw new Error("btrfs dump: no snapshot or subvol line first");
    if (path === this.#prefix || path === this.#prefix + "/") return "";
    if (!path.startsWith(this.#prefix + "/")) {
      throw new Error(`btrfs dump: path ${JSON.stringify(path)} is outside the snapshot`);
    }
    return path.slice(this.#prefix.length + 1).replace(/\/+$/, "");
  }

  #lookup(rel: string): Node {
    let n = this.#root;
    if (rel === "") return n;
    for (const name of rel.split("/")) {
      let c = n.children.get(name);
      if (!c) {
        c = new Node(n.orig === undefined ? undefined : join(n.orig, name));
        this.#attach(n, name, c);
      }
      n = c;
    }
    return n;
  }

  #attach(parent: Node, name: string, node: Node): void {
    const old = parent.children.get(name);
    if (old && old !== node) this.#drop(old, false);
    node.parent = parent;
    node.name = name;
    parent.children.set(name, node);
  }

  #detach(node: Node): void {
    if (node.parent && node.parent.children.get(node.name) === node) {
      node.parent.children.delete(node.name);
    }
    node.parent = null;
  }

  /** A node leaves the tree (unlinked, removed, or replaced by a rename onto its name). */
  #drop(node: Node, dir: boolean): void {
    this.#detach(node);
    if (node.orig !== undefined) {
      this.#gone.add(node.orig);
      if (dir) this.#goneDirs.add(node.orig);
    }
  }

  #create(rel: string): Node {
    const i = rel.lastIndexOf("/");
    const parent = this.#lookup(i < 0 ? "" : rel.slice(0, i));
    const node = new Node(undefined);
    node.changed = true;
    this.#attach(parent, i < 0 ? rel : rel.slice(i + 1), node);
    return node;
  }

  /** Applies one parsed dump line. */
  apply(op: DumpOp): void {
    if (op.op === "snapshot" || op.op === "subvol") {
      this.#prefix = op.path.replace(/\/+$/, "");
      return;
    }
    const rel = this.#rel(op.path);
    switch (op.op) {
      case "mkfile":
      case "mkdir":
      case "mknod":
      case "mkfifo":
      case "mksock":
      case "symlink":
      case "link":
        this.#create(rel);
        return;
      case "rename": {
        const to = this.#rel(unescapeDumpPath(op.fields.dest ?? ""));
        const node = this.#lookup(rel);
        if (node.orig !== undefined) {
          this.#gone.add(node.orig);
          this.#goneDirs.add(node.orig);
        }
        this.#detach(node);
        const i = to.lastIndexOf("/");
        const parent = this.#lookup(i < 0 ? "" : to.slice(0, i));
        this.#attach(parent, i < 0 ? to : to.slice(i + 1), node);
        node.changed = true;
        node.renamed = node.orig !== undefined;
        return;
      }
      case "unlink":
        this.#drop(this.#lookup(rel), false);
        return;
      case "rmdir":
        this.#drop(this.#lookup(rel), true);
        return;
      default:
        // write, update_extent, clone, truncate, chmod, chown, utimes, set_xattr, remove_xattr,
        // fileattr, enable_verity, encoded_write…: the path's content or metadata changed.
        this.#lookup(rel).changed = true;
    }
  }

  /** The changed paths, as paths of the new snapshot and of the parent. */
  result(): ChangedPaths {
    const out = emptyChanges();
    for (const g of this.#gone) out.gone.add(g);
    for (const g of this.#goneDirs) out.goneDirs.add(g);
    const stack: [Node, string][] = [[this.#root, ""]];
    while (stack.length > 0) {
      const [n, path] = stack.pop()!;
      if (path !== "" && n.changed) out.changed.add(path);
      if (n.renamed) out.walk.add(path);
      for (const [name, c] of n.children) stack.push([c, join(path, name)]);
    }
    return out;
  }
}

/** Reads a whole dump (as lines) into changed paths. */
export async function replayDump(lines: AsyncIterable<string> | Iterable<string>) {
  const r = new DumpReplay();
  for await (const line of lines) {
    const op = parseDumpLine(line);
    if (op) r.apply(op);
  }
  return r.result();
}

/** Options of the btrfs client. */
export interface BtrfsOptions {
  /** The read-only snapshot to push. */
  snapshot: string;
  /** The read-only snapshot it is compared with; by default the source's last pushed one. */
  parent?: string;
  /** Runs `btrfs`; the system's by default. */
  runner?: Runner;
}

/** What the btrfs client records with a changeset. */
export interface BtrfsInfo {
  snapshot: string;
  parent?: string;
}

/** A client that pushes one btrfs snapshot; `problems` lists the entries it could not use. */
export interface BtrfsClient extends Client {
  /** Entries found but not stored (unreadable, or skipped on purpose), filled as it runs. */
  readonly problems: ClientProblem[];
}

/**
 * Makes a client that pushes one btrfs snapshot.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { btrfsClient, N2S } from "@n2s/n2s";
 *
 * // The first push of a source walks the snapshot; later ones read `btrfs send --no-data`
 * // between the last pushed snapshot and the new one. Here a directory stands in for the first.
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/snap/home.monday`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/snap/home.monday/notes.txt`, "monday\n");
 * const store = await N2S.init({
 *   repository: `${dir}/repo`,
 *   index: `${dir}/index.sqlite`,
 *   passphrase: "correct horse",
 *   logN: 10, // a cheap key: for examples and tests only
 * });
 * const client = btrfsClient({ snapshot: `${dir}/snap/home.monday` });
 * const r = await store.push({ client, source: "home" });
 * assert.equal(r.uploaded, 1);
 * assert.equal(store.status(r.changeset!)[0].name, "home.monday");
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function btrfsClient(opts: BtrfsOptions): BtrfsClient {
  const o = arg.object("btrfsClient", "options", opts);
  arg.string("btrfsClient", "options.snapshot", o.snapshot);
  arg.optionalString("btrfsClient", "options.parent", o.parent);
  if (o.runner !== undefined) {
    arg.withMethods("btrfsClient", "options.runner", o.runner, "a Runner", ["run", "lines"]);
  }
  const snapshot = resolve(opts.snapshot);
  const runner = opts.runner ?? systemRunner;
  const problems: Problem[] = [];
  let parent: string | undefined;
  let same = false;
  return {
    kind: "btrfs",
    root: snapshot,
    completeWithin: [],
    get keepEmpty() {
      return !same;
    },
    changesetName: basename(snapshot),
    problems,
    async *entries(previous: PreviousState): AsyncGenerator<SourceEntry> {
      const last = (previous.info as Partial<BtrfsInfo> | undefined)?.snapshot;
      parent = opts.parent !== undefined ? resolve(opts.parent) : last;
      if (parent !== undefined && opts.parent === undefined) {
        try {
          await Deno.stat(parent);
        } catch {
          problems.push({
            path: ".",
            message: `last pushed snapshot ${parent} is gone; walking the whole snapshot`,
            note: true,
          });
          parent = undefined;
        }
      }
      if (parent === undefined || !previous.changeset) {
        parent = undefined;
        yield* walkSnapshot(snapshot, previous, problems);
        return;
      }
      if (parent === snapshot) {
        same = true;
        return;
      }
      const changes = await replayDump(runner.lines([
        { cmd: "btrfs", args: ["send", "--no-data", "-q", "-p", parent, snapshot] },
        { cmd: "btrfs", args: ["receive", "--dump"] },
      ]));
      yield* resolveChanges(snapshot, changes, previous, problems);
    },
    info(): BtrfsInfo {
      return parent === undefined ? { snapshot } : { snapshot, parent };
    },
  };
}
