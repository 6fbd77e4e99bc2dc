// Changeset manifests: the commit point of a push. One sealed container per changeset holding
// its metadata in the header and its entries as JSON lines, chained to the parent by a digest.

import { type Body, bytesBody, NotFoundError, readAll } from "../backends/backend.ts";
import { concat, fromHex, fromUtf8, toHex, utf8 } from "../format/bytes.ts";
import {
  ContainerError,
  ContainerWriter,
  openContainer,
  SEGMENT_DATA_MAX,
} from "../format/container.ts";
import type { Action, FileRow } from "../index/types.ts";
import { changesetKey, parseKey, REWRITES_KEY } from "./layout.ts";
import type { BlobLocation, Repository } from "./repository.ts";

/** Header of a changeset manifest. */
export interface ManifestHeader {
  v: 2;
  id: string;
  name: string | null;
  source: string;
  client: string;
  parent: string | null;
  /** Chain digest of the parent (hex), or null for the first changeset of a source. */
  parent_chain: string | null;
  /** BLAKE3(parent chain digest (32 zero bytes when none) || BLAKE3(entry lines)). */
  chain: string;
  /**
   * Only on a rewritten manifest (forget, prune): the digest above of its new entries and
   * parent, while `chain` keeps the value its children record.
   */
  link?: string;
  created: string;
  completed: string;
  /** Entries in the manifest: writes, links and deletions. */
  files: number;
  /** Bytes of the files written by this changeset's entries. */
  bytes: number;
  /** Client facts (e.g. the snapshot), as recorded in the index. */
  info: unknown;
  /** The machine the push ran on (absent in manifests of older versions). */
  host?: string;
}

/** One entry of a manifest. */
export interface ManifestEntry {
  /** The path; bytes that are not UTF-8 as lone surrogates (lib/format/names.ts). */
  path: string;
  action: Action;
  file_hash?: string;
  blob_id?: string;
  size?: number;
  /** Modification time, milliseconds since 1970 UTC, and the nanoseconds within its second. */
  mtime?: number;
  nsec?: number;
  /** st_mode & 07777. */
  mode?: number;
  /** A link's target, or the path a hard link shares its content with. */
  target?: string;
  uid?: number;
  gid?: number;
  user?: string;
  group?: string;
  /** Extended attributes: name → value (base64). */
  xattrs?: Record<string, string>;
  /** A special file: "fifo", "char" or "block", and a device's numbers. */
  kind?: "fifo" | "char" | "block";
  major?: number;
  minor?: number;
  /** A sparse file's holes: [start, end) byte ranges. */
  holes?: [number, number][];
  /** When the blob's upload was confirmed (or the entry settled). */
  confirmed?: string;
  /** For a blob in a pack: the pack id, and the container's offset and length in it. */
  pack?: string;
  offset?: number;
  length?: number;
}

/** Metadata fields of an entry kept in the index's `meta` column as JSON. */
export const META_FIELDS = [
  "nsec",
  "uid",
  "gid",
  "user",
  "group",
  "xattrs",
  "kind",
  "major",
  "minor",
  "holes",
] as const;

/** Copies the fields of a row's `meta` JSON onto an entry. */
export function addMeta(
  e: Omit<ManifestEntry, "action"> & { action: string },
  meta: string | null,
): void {
  if (meta === null) return;
  const m = JSON.parse(meta) as Record<string, unknown>;
  for (const f of META_FIELDS) {
    if (m[f] !== undefined) (e as Record<string, unknown>)[f] = m[f];
  }
}

/** The `meta` JSON of an entry's metadata fields, or null when it has none. */
export function metaOfEntry(e: ManifestEntry): string | null {
  const m: Record<string, unknown> = {};
  for (const f of META_FIELDS) if (e[f] !== undefined) m[f] = e[f];
  return Object.keys(m).length > 0 ? JSON.stringify(m) : null;
}

/** The manifest entry of a settled index row. */
export function entryOfRow(
  f: Pick<
    FileRow,
    | "path"
    | "action"
    | "file_hash"
    | "blob_id"
    | "size"
    | "pack"
    | "pack_offset"
    | "pack_length"
    | "target"
    | "mtime"
    | "mode"
    | "meta"
    | "confirmed"
  >,
): ManifestEntry {
  const e: ManifestEntry = { path: f.path, action: f.action };
  if (f.action === "write" || f.action === "hardlink") {
    e.file_hash = f.file_hash!;
    e.blob_id = f.blob_id!;
    e.size = f.size!;
    if (f.pack !== null) {
      e.pack = f.pack;
      e.offset = f.pack_offset!;
      e.length = f.pack_length!;
    }
  }
  if (f.action === "link" || f.action === "hardlink") e.target = f.target!;
  if (f.mtime !== null) e.mtime = f.mtime;
  if (f.mode !== null) e.mode = f.mode;
  addMeta(e, f.meta);
  // Every entry carries its time, so a rebuilt index answers exactly as before.
  if (f.confirmed) e.confirmed = f.confirmed;
  return e;
}

/** Where an entry's blob is stored, from its location fields. */
export function entryLocation(e: ManifestEntry): BlobLocation {
  if (e.pack === undefined) return { pack: null };
  return { pack: e.pack, offset: e.offset!, length: e.length! };
}

const ZERO32 = new Uint8Array(32);

/** Chain digest from the parent's digest and the digest of the entry lines. */
export function chainDigest(
  repo: Repository,
  parentChain: string | null,
  entriesDigest: Uint8Array,
): string {
  const h = repo.suite.newHasher();
  h.update(concat([parentChain ? fromHex(parentChain) : ZERO32, entriesDigest]));
  return toHex(h.digest());
}

/**
 * One entry as a JSON line. Written field by field: JSON.stringify of the object and a
 * TextEncoder per line cost several times more, and a manifest may hold millions of entries.
 * Strings that are not known to be plain hex, numbers or times go through JSON.stringify.
 */
export function entryJson(e: ManifestEntry): string {
  let s = `{"path":${JSON.stringify(e.path)},"action":${JSON.stringify(e.action)}`;
  for (const k of Object.keys(e) as (keyof ManifestEntry)[]) {
    if (k === "path" || k === "action") continue;
    const v = e[k];
    if (v === undefined) continue;
    s += typeof v === "number" ? `,"${k}":${v}` : `,"${k}":${JSON.stringify(v)}`;
  }
  return s + "}\n";
}

const encoder = new TextEncoder();

/** The entry lines, cut into pieces of at most one segment's worth of bytes. */
function* lineChunks(entries: Iterable<ManifestEntry>): Generator<Uint8Array> {
  let buf = new Uint8Array(SEGMENT_DATA_MAX);
  let n = 0;
  for (const e of entries) {
    const text = entryJson(e);
    // Most lines go straight into the piece; one that does not fit is encoded on its own.
    if (text.length * 3 <= SEGMENT_DATA_MAX - n) {
      n += encoder.encodeInto(text, buf.subarray(n)).written;
      continue;
    }
    let line = encoder.encode(text);
    while (line.length > 0) {
      if (n === SEGMENT_DATA_MAX) {
        yield buf;
        buf = new Uint8Array(SEGMENT_DATA_MAX);
        n = 0;
      }
      // A line longer than what is left is split across pieces (and so across segments).
      const k = Math.min(line.length, SEGMENT_DATA_MAX - n);
      buf.set(line.subarray(0, k), n);
      n += k;
      line = line.subarray(k);
    }
  }
  yield buf.subarray(0, n);
}

/** Digest of the entry lines, as the chain uses it. */
export function entriesDigest(repo: Repository, entries: Iterable<ManifestEntry>): Uint8Array {
  const h = repo.suite.newHasher();
  for (const c of lineChunks(entries)) h.update(c);
  return h.digest();
}

/** Encoded entries kept between the digest and the sealing when they take at most this much. */
const KEEP_LINES = 32 << 20;

/**
 * Writes the manifest of a changeset. The entry lines are encoded once and kept for sealing
 * when they are small; `entries` is called a second time (never all held at once) otherwise.
 */
export async function writeManifest(
  repo: Repository,
  header: Omit<ManifestHeader, "chain" | "link" | "v">,
  entries: () => Iterable<ManifestEntry>,
  /** The chain digest to keep, for a rewrite (the computed one becomes its `link`). */
  keepChain?: string,
): Promise<ManifestHeader> {
  const h = repo.suite.newHasher();
  let kept: Uint8Array[] | null = [];
  for (const c of lineChunks(entries())) {
    h.update(c);
    if (kept !== null) kept.push(c);
    if (kept !== null && kept.length * SEGMENT_DATA_MAX > KEEP_LINES) kept = null;
  }
  const digest = chainDigest(repo, header.parent_chain, h.digest());
  const full: ManifestHeader = keepChain === undefined || keepChain === digest
    ? { v: 2, ...header, chain: digest }
    : { v: 2, ...header, chain: keepChain, link: digest };
  const salt = repo.suite.randomBytes(16);
  const body: Body = {
    async *open() {
      const w = new ContainerWriter(repo.suite, "changeset", repo.master, utf8(full.id), { salt });
      yield w.start(full);
      let prev: Uint8Array | null = null;
      for (const c of kept ?? lineChunks(entries())) {
        if (prev !== null && prev.length > 0) yield w.body(prev, false);
        prev = c;
      }
      yield w.body(prev ?? new Uint8Array(0), true);
    },
  };
  await repo.backend.put(changesetKey(full.id), body);
  return full;
}

/**
 * Rewrites the manifest of a changeset in place (one atomic put): new entries, and a parent that
 * may be another (the nearest kept ancestor after a forget). The changeset keeps its id and its
 * `chain`, which its children record; `link` proves the new entries and parent instead. Returns
 * the header written.
 */
export async function rewriteManifest(
  repo: Repository,
  header: Omit<ManifestHeader, "link" | "v">,
  entries: ManifestEntry[],
): Promise<ManifestHeader> {
  const { chain, ...rest } = header;
  return await writeManifest(repo, rest, () => entries, chain);
}

/** Reads and verifies a manifest: every segment, and the entry digest against the chain. */
export async function readManifest(
  repo: Repository,
  id: string,
): Promise<{ header: ManifestHeader; entries: ManifestEntry[] }> {
  const what = `changeset ${id}`;
  const stream = await repo.backend.get(changesetKey(id));
  let header: ManifestHeader | undefined;
  const chunks: Uint8Array[] = [];
  for await (
    const part of openContainer(repo.suite, "changeset", repo.master, utf8(id), stream, what)
  ) {
    if (part.type === "header") header = part.header as unknown as ManifestHeader;
    else chunks.push(part.data);
  }
  if (!header || header.id !== id) throw new ContainerError(`${what}: header names another id`);
  if (header.v !== 2) throw new ContainerError(`${what}: manifest format ${header.v} is not 2`);
  const text = fromUtf8(concat(chunks));
  const entries: ManifestEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      entries.push(checkEntry(JSON.parse(line)));
    } catch (e) {
      throw new ContainerError(`${what}: malformed entry: ${e instanceof Error ? e.message : e}`);
    }
  }
  const digest = entriesDigest(repo, entries);
  // A rewritten manifest proves its entries with `link`; its `chain` is what children record.
  if (header.link !== undefined && typeof header.link !== "string") {
    throw new ContainerError(`${what}: malformed link digest`);
  }
  if (chainDigest(repo, header.parent_chain, digest) !== (header.link ?? header.chain)) {
    throw new ContainerError(`${what}: entries do not match the chain digest`);
  }
  return { header, entries };
}

/** True when the manifest of a changeset is stored (the changeset was committed). */
export async function hasManifest(repo: Repository, id: string): Promise<boolean> {
  return (await repo.backend.stat(changesetKey(id))) !== null;
}

/**
 * The mark forget and prune replace after rewriting manifests (random hex), or null when none
 * ever did: an index that recorded another mark compares its rows with every manifest.
 */
export async function readRewriteMark(repo: Repository): Promise<string | null> {
  try {
    const text = fromUtf8(await readAll(await repo.backend.get(REWRITES_KEY))).trim();
    return /^[0-9a-f]{32}$/.test(text) ? text : `invalid:${text.length}`;
  } catch (e) {
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}

/** Replaces the rewrite mark with a new random one, durably, and returns it. */
export async function writeRewriteMark(repo: Repository): Promise<string> {
  const mark = toHex(repo.suite.randomBytes(16));
  await repo.backend.put(REWRITES_KEY, bytesBody(utf8(mark + "\n")));
  await repo.flush();
  return mark;
}

/** Deletes the manifest of a forgotten changeset (deleting one that is gone is not an error). */
export function deleteManifest(repo: Repository, id: string): Promise<void> {
  return repo.backend.delete(changesetKey(id));
}

/** Ids of every manifest in the repository, oldest first (ULIDs sort by time). */
export async function listManifests(repo: Repository): Promise<string[]> {
  const ids: string[] = [];
  for await (const o of repo.backend.list("changesets/")) {
    const k = parseKey(o.key);
    if (k.kind === "changeset") ids.push(k.id);
  }
  return ids.sort();
}

const ACTIONS = new Set(["write", "link", "dir", "special", "hardlink", "delete"]);

/** Checks the fields a reader relies on, so a hostile manifest fails here with a message. */
function checkEntry(raw: unknown): ManifestEntry {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new Error("not an object");
  }
  const e = raw as ManifestEntry;
  if (typeof e.path !== "string" || e.path === "") throw new Error("no path");
  if (!ACTIONS.has(e.action)) throw new Error(`unknown action ${JSON.stringify(e.action)}`);
  if (e.action === "write" || e.action === "hardlink") {
    if (typeof e.blob_id !== "string" || typeof e.file_hash !== "string") {
      throw new Error(`${e.path}: a ${e.action} without blob_id or file_hash`);
    }
    for (const f of ["size", "mtime", "mode"] as const) {
      if (!Number.isSafeInteger(e[f])) throw new Error(`${e.path}: ${f} is not an integer`);
    }
    if (e.pack !== undefined) {
      const ok = typeof e.pack === "string" && /^[0-9a-f]{32}$/.test(e.pack) &&
        Number.isSafeInteger(e.offset) && e.offset! >= 0 &&
        Number.isSafeInteger(e.length) && e.length! > 0;
      if (!ok) throw new Error(`${e.path}: malformed pack location`);
    }
  }
  if ((e.action === "link" || e.action === "hardlink") && typeof e.target !== "string") {
    throw new Error(`${e.path}: a ${e.action} without a target`);
  }
  if (e.action === "special" && !["fifo", "char", "block"].includes(e.kind ?? "")) {
    throw new Error(`${e.path}: a special file of unknown kind ${JSON.stringify(e.kind)}`);
  }
  for (const f of ["nsec", "uid", "gid", "major", "minor"] as const) {
    if (e[f] !== undefined && !Number.isSafeInteger(e[f])) {
      throw new Error(`${e.path}: ${f} is not an integer`);
    }
  }
  if (e.holes !== undefined) {
    const ok = Array.isArray(e.holes) &&
      e.holes.every((h) =>
        Array.isArray(h) && h.length === 2 && Number.isSafeInteger(h[0]) &&
        Number.isSafeInteger(h[1]) && 0 <= h[0] && h[0] < h[1] && h[1] <= (e.size ?? 0)
      );
    if (!ok) throw new Error(`${e.path}: malformed holes`);
  }
  if (e.xattrs !== undefined) {
    const ok = e.xattrs !== null && typeof e.xattrs === "object" &&
      Object.values(e.xattrs).every((v) => typeof v === "string");
    if (!ok) throw new Error(`${e.path}: malformed extended attributes`);
  }
  return e;
}
