// Changeset manifests: the commit point of a push. One sealed container per changeset holding
// its metadata in the header and its entries as JSON lines, chained to the parent by a digest.

import { blobKey, type Body, changesetKey, readAll } from "./backends/backend.ts";
import { concat, fromHex, fromUtf8, toHex, utf8 } from "./format/bytes.ts";
import {
  ContainerError,
  ContainerWriter,
  openContainer,
  SEGMENT_DATA_MAX,
} from "./format/container.ts";
import type { Action } from "./index/types.ts";
import type { Repository } from "./repository.ts";

/** Header of a changeset manifest. */
export interface ManifestHeader {
  v: 1;
  id: string;
  name: string | null;
  source: string;
  client: string;
  parent: string | null;
  /** Chain digest of the parent (hex), or null for the first changeset of a source. */
  parent_chain: string | null;
  /** BLAKE3(parent chain digest (32 zero bytes when none) || BLAKE3(entry lines)). */
  chain: string;
  created: string;
  completed: string;
  files: number;
  bytes: number;
  /** Client facts (e.g. the snapshot), as recorded in the index. */
  info: unknown;
}

/** One entry of a manifest. */
export interface ManifestEntry {
  path: string;
  action: Action;
  file_hash?: string;
  blob_id?: string;
  size?: number;
  mtime?: number;
  mode?: number;
  target?: string;
  /** When the blob's upload was confirmed. */
  confirmed?: string;
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

function entryLine(e: ManifestEntry): Uint8Array {
  return utf8(JSON.stringify(e) + "\n");
}

/** Digest of the entry lines, as the chain uses it. */
export function entriesDigest(repo: Repository, entries: Iterable<ManifestEntry>): Uint8Array {
  const h = repo.suite.newHasher();
  for (const e of entries) h.update(entryLine(e));
  return h.digest();
}

/**
 * Writes the manifest of a changeset. `entries` is called twice (digest, then sealing), so the
 * entries are never all held as bytes at once.
 */
export async function writeManifest(
  repo: Repository,
  header: Omit<ManifestHeader, "chain" | "v">,
  entries: () => Iterable<ManifestEntry>,
): Promise<ManifestHeader> {
  const full: ManifestHeader = {
    v: 1,
    ...header,
    chain: chainDigest(repo, header.parent_chain, entriesDigest(repo, entries())),
  };
  const salt = repo.suite.randomBytes(16);
  const body: Body = {
    async *open() {
      const w = new ContainerWriter(repo.suite, "changeset", repo.master, utf8(full.id), { salt });
      yield w.start(full);
      let pending: Uint8Array[] = [];
      let size = 0;
      for (const e of entries()) {
        const line = entryLine(e);
        if (size + line.length > SEGMENT_DATA_MAX && size > 0) {
          yield w.body(concat(pending), false);
          pending = [];
          size = 0;
        }
        // A single line longer than a segment is split across segments.
        let rest = line;
        while (rest.length > SEGMENT_DATA_MAX) {
          yield w.body(rest.subarray(0, SEGMENT_DATA_MAX), false);
          rest = rest.subarray(SEGMENT_DATA_MAX);
        }
        pending.push(rest);
        size += rest.length;
      }
      yield w.body(concat(pending), true);
    },
  };
  await repo.backend.put(changesetKey(full.id), body);
  return full;
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
  const text = fromUtf8(concat(chunks));
  const entries: ManifestEntry[] = [];
  for (const line of text.split("\n")) {
    if (line !== "") entries.push(JSON.parse(line));
  }
  const digest = entriesDigest(repo, entries);
  if (chainDigest(repo, header.parent_chain, digest) !== header.chain) {
    throw new ContainerError(`${what}: entries do not match the chain digest`);
  }
  return { header, entries };
}

/** Ids of every manifest in the repository, oldest first (ULIDs sort by time). */
export async function listManifests(repo: Repository): Promise<string[]> {
  const ids: string[] = [];
  for await (const o of repo.backend.list("changesets/")) {
    ids.push(o.key.slice("changesets/".length));
  }
  return ids.sort();
}

/** Reads a blob object fully (for small blobs and tests). */
export async function readBlobObject(repo: Repository, blobId: string): Promise<Uint8Array> {
  return readAll(await repo.backend.get(blobKey(blobId)));
}
