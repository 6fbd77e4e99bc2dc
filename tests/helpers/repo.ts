// What a local repository directory holds, read without the key: the blob ids stored loose
// and in packs, and where a blob's bytes lie, for tests that count or damage stored blobs.

import { findPackEntries } from "../../lib/format/pack.ts";
import { blobKey, packKey } from "../../lib/repository/layout.ts";

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const d of Deno.readDirSync(dir)) {
      for (const f of Deno.readDirSync(`${dir}/${d.name}`)) out.push(`${dir}/${d.name}/${f.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** Every pack file of a local repository. */
export function packFiles(repo: string): string[] {
  return filesUnder(`${repo}/packs`);
}

/** Every loose blob file of a local repository. */
export function looseBlobFiles(repo: string): string[] {
  return filesUnder(`${repo}/blobs`);
}

/** The ids of every blob stored in a local repository, loose or in a pack (with repeats). */
export function storedBlobIds(repo: string): string[] {
  const ids = looseBlobFiles(repo).map((f) => f.slice(f.lastIndexOf("/") + 1));
  for (const p of packFiles(repo)) {
    for (const e of findPackEntries(Deno.readFileSync(p))) ids.push(e.blobId);
  }
  return ids.sort();
}

/** The file holding a blob and the range of its container in it. */
export function blobBytes(
  repo: string,
  row: {
    blob_id: string | null;
    pack: string | null;
    pack_offset: number | null;
    pack_length: number | null;
  },
): { file: string; offset: number; length: number } {
  if (row.pack !== null) {
    return {
      file: `${repo}/${packKey(row.pack)}`,
      offset: row.pack_offset!,
      length: row.pack_length!,
    };
  }
  const file = `${repo}/${blobKey(row.blob_id!)}`;
  return { file, offset: 0, length: Deno.statSync(file).size };
}
