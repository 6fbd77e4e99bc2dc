// The dsg client: pushes a dsg repository's snapshot as one changeset, following its manifest
// (`.dsg/last-sync.json`, earlier ones in `.dsg/archive/sN-sync.json.lz4`), not the tree.

import { basename, resolve } from "node:path";
import {
  badPath,
  type Client,
  type ClientProblem,
  type PreviousState,
  type SourceEntry,
} from "./client.ts";
import { decodeLz4Frames } from "./lz4.ts";
import { compareNames, lstatPath, type Problem } from "./tree.ts";
import * as arg from "../args.ts";

/** One entry of a dsg manifest. */
export type DsgEntry =
  | {
    type: "file";
    path: string;
    user?: string;
    filesize: number;
    /** ISO-8601 with offset, seconds precision. */
    mtime: string;
    /** xxHash3-64, 16 hex digits, or "" when dsg did not compute it. */
    hash: string;
  }
  | { type: "link"; path: string; user?: string; reference: string };

/** The metadata of a dsg manifest (the fields n2s reads). */
export interface DsgMetadata {
  snapshot_id?: string;
  snapshot_message?: string | null;
  snapshot_previous?: string | null;
  created_at?: string;
  [key: string]: unknown;
}

/** A dsg manifest: `last-sync.json` or an archived `sN-sync.json`. */
export interface DsgManifest {
  entries: Record<string, DsgEntry>;
  metadata: DsgMetadata;
}

/** A dsg repository that cannot be read as documented. */
export class DsgError extends Error {
  /** Makes the error; the message is prefixed with "dsg: ". */
  constructor(message: string) {
    super(`dsg: ${message}`);
    this.name = "DsgError";
  }
}

async function readOptional(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function parseManifest(bytes: Uint8Array, where: string): DsgManifest {
  let m: DsgManifest;
  try {
    m = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new DsgError(`${where} is not JSON: ${(e as Error).message}`);
  }
  if (!m || typeof m.entries !== "object" || m.entries === null) {
    throw new DsgError(`${where} has no entries`);
  }
  m.metadata ??= {};
  return m;
}

/**
 * Reads a manifest: the current one (`last-sync.json`) without `id` or when `id` is its
 * snapshot, else the archived one. Undefined when it is not on disk.
 */
export async function readDsgManifest(
  repoDir: string,
  id?: string,
): Promise<DsgManifest | undefined> {
  const dsg = `${repoDir}/.dsg`;
  const current = await readOptional(`${dsg}/last-sync.json`);
  const m = current ? parseManifest(current, `${dsg}/last-sync.json`) : undefined;
  if (id === undefined || m?.metadata.snapshot_id === id) return m;
  const archived = `${dsg}/archive/${id}-sync.json.lz4`;
  const packed = await readOptional(archived);
  if (!packed) return undefined;
  return parseManifest(decodeLz4Frames(packed), archived);
}

/** The repository's name: `repo_name` of `.dsgconfig.yml` (or `.dsg/config.yml`), else the
 * directory's name. */
export async function dsgRepoName(repoDir: string): Promise<string> {
  for (const f of [`${repoDir}/.dsgconfig.yml`, `${repoDir}/.dsg/config.yml`]) {
    const b = await readOptional(f);
    if (!b) continue;
    const m = /^repo_name:[ \t]*(.*?)[ \t]*$/m.exec(new TextDecoder().decode(b));
    if (m && m[1] !== "") return m[1].replace(/^(["'])(.*)\1$/, "$2");
  }
  return basename(resolve(repoDir));
}

/** Snapshot metadata from `.dsg/sync-messages.json`, keyed by id (empty for the legacy form). */
export async function dsgSnapshots(repoDir: string): Promise<Record<string, DsgMetadata>> {
  const b = await readOptional(`${repoDir}/.dsg/sync-messages.json`);
  if (!b) return {};
  try {
    const j = JSON.parse(new TextDecoder().decode(b));
    return j && typeof j.snapshots === "object" && j.snapshots !== null ? j.snapshots : {};
  } catch {
    return {};
  }
}

/** Options of the dsg client. */
export interface DsgOptions {
  /** The dsg repository (the directory holding `.dsg/`). */
  repoDir: string;
  /**
   * The snapshot to push; the current one (`last-sync.json`) by default. An earlier snapshot
   * needs its archived manifest and its content under `.zfs/snapshot/<id>`.
   */
  snapshot?: string;
}

/** What the dsg client records with a changeset: ids only, hashes come from the archive. */
export interface DsgInfo {
  snapshot_id: string;
  snapshot_previous?: string;
}

/** The dsg client, with its default source name (`dsg:<repo_name>`). */
export interface DsgClient extends Client {
  /** Entries found but not stored (unreadable, or skipped on purpose), filled as it runs. */
  readonly problems: ClientProblem[];
  /** The source name used when none is given: `dsg:<repo_name>`. */
  readonly defaultSource: string;
  /** The id of the dsg snapshot this client pushes. */
  readonly snapshotId: string;
}

function sameFile(a: DsgEntry | undefined, b: DsgEntry): boolean {
  return a !== undefined && a.type === "file" && b.type === "file" && b.hash !== "" &&
    a.hash === b.hash && a.filesize === b.filesize && Date.parse(a.mtime) === Date.parse(b.mtime);
}

/**
 * Makes a client that pushes a dsg snapshot.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dsgClient, N2S } from "@n2s/n2s";
 *
 * // A dsg repository whose last sync recorded one file.
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/project/.dsg`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/project/notes.txt`, "notes\n");
 * const mtime = "2026-11-25T10:00:00Z";
 * await Deno.utime(`${dir}/project/notes.txt`, new Date(mtime), new Date(mtime));
 * const file = { type: "file", path: "notes.txt", filesize: 6, mtime, hash: "" };
 * const manifest = { metadata: { snapshot_id: "s1" }, entries: { "notes.txt": file } };
 * await Deno.writeTextFile(`${dir}/project/.dsg/last-sync.json`, JSON.stringify(manifest));
 *
 * const client = await dsgClient({ repoDir: `${dir}/project` });
 * assert.equal(client.defaultSource, "dsg:project");
 * const store = await N2S.init({
 *   repository: `${dir}/repo`,
 *   index: `${dir}/index.sqlite`,
 *   passphrase: "correct horse",
 *   logN: 10, // a cheap key: for examples and tests only
 * });
 * const r = await store.push({ client, source: client.defaultSource });
 * assert.equal(r.uploaded, 1);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function dsgClient(opts: DsgOptions): Promise<DsgClient> {
  const o = arg.object("dsgClient", "options", opts);
  arg.string("dsgClient", "options.repoDir", o.repoDir);
  arg.optionalString("dsgClient", "options.snapshot", o.snapshot);
  const repoDir = resolve(opts.repoDir);
  const manifest = await readDsgManifest(repoDir, opts.snapshot);
  if (!manifest) {
    throw new DsgError(
      opts.snapshot
        ? `no manifest for snapshot ${opts.snapshot} in ${repoDir}/.dsg`
        : `${repoDir}/.dsg/last-sync.json not found: not a dsg repository, or never synced`,
    );
  }
  const current = opts.snapshot === undefined ||
    (await readDsgManifest(repoDir))?.metadata.snapshot_id === opts.snapshot;
  const id = manifest.metadata.snapshot_id ?? opts.snapshot ?? "s?";
  let root = repoDir;
  if (!current) {
    root = `${repoDir}/.zfs/snapshot/${id}`;
    const st = await Deno.stat(root).catch(() => null);
    if (!st?.isDirectory) {
      throw new DsgError(
        `the content of ${id} is not on disk (no ${root}); only the current ` +
          `snapshot can be pushed from a working tree`,
      );
    }
  }
  const message = manifest.metadata.snapshot_message ??
    (await dsgSnapshots(repoDir))[id]?.snapshot_message ?? null;
  const name = await dsgRepoName(repoDir);
  const problems: Problem[] = [];
  let same = false;
  const info: DsgInfo = { snapshot_id: id };
  if (manifest.metadata.snapshot_previous) {
    info.snapshot_previous = manifest.metadata.snapshot_previous;
  }

  async function* entries(previous: PreviousState): AsyncGenerator<SourceEntry> {
    const prevId = (previous.info as Partial<DsgInfo> | undefined)?.snapshot_id;
    if (previous.changeset && prevId === id) {
      same = true;
      return;
    }
    const before = previous.changeset && prevId
      ? await readDsgManifest(repoDir, prevId).catch(() => undefined)
      : undefined;
    const paths = Object.keys(manifest!.entries).sort(compareNames);
    for (const key of paths) {
      const e = manifest!.entries[key];
      const path = e.path ?? key;
      const bad = badPath(path);
      if (bad) {
        problems.push({ path, message: `manifest path skipped: ${bad}` });
        continue;
      }
      const found = await lstatPath(root, path);
      if (e.type === "link") {
        if (found.kind !== "entry" || found.entry.action !== "link") {
          problems.push({ path, message: "in the manifest as a link, not a link on disk" });
        } else if (found.entry.target !== e.reference) {
          problems.push({
            path,
            message: `link points to ${found.entry.target}, the manifest says ${e.reference}`,
          });
        } else yield found.entry;
        continue;
      }
      if (e.type !== "file") {
        problems.push({ path, message: `unknown manifest entry type ${(e as DsgEntry).type}` });
        continue;
      }
      if (found.kind === "missing") {
        problems.push({ path, message: "in the manifest but missing from the working tree" });
        continue;
      }
      if (found.kind !== "entry" || found.entry.action !== "write") {
        problems.push({ path, message: "in the manifest as a file, not a file on disk" });
        continue;
      }
      const st = found.entry;
      if (st.size !== e.filesize) {
        problems.push({
          path,
          message: `size ${st.size} on disk, ${e.filesize} in the manifest: changed since the sync`,
        });
        continue;
      }
      const want = Date.parse(e.mtime);
      if (!Number.isNaN(want) && Math.abs((st.mtime ?? 0) - want) >= 1000) {
        problems.push({
          path,
          message: `modified ${new Date(st.mtime ?? 0).toISOString()} on disk, ${e.mtime} in ` +
            `the manifest: changed since the sync`,
        });
        continue;
      }
      const known = previous.get(path);
      if (known?.action === "write" && sameFile(before?.entries[path], e)) {
        // Same dsg hash, size and time as at the last push: the stored state still holds.
        yield {
          path,
          action: "write",
          size: known.size ?? undefined,
          mtime: known.mtime ?? undefined,
          mode: known.mode ?? undefined,
          inode: known.inode ?? undefined,
        };
        continue;
      }
      yield st;
    }
    const inManifest = new Set(paths.map((k) => manifest!.entries[k].path ?? k));
    for (const p of previous.paths()) {
      if (inManifest.has(p)) continue;
      const s = previous.get(p);
      if (s && s.action !== "delete") yield { path: p, action: "delete" };
    }
  }

  return {
    kind: "dsg",
    root,
    completeWithin: [],
    get keepEmpty() {
      return !same;
    },
    changesetName: message ? `${id}: ${message}` : id,
    defaultSource: `dsg:${name}`,
    snapshotId: id,
    problems,
    entries,
    info: () => info,
  };
}
