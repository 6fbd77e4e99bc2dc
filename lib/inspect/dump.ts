// Writes stored content out of the repository: one file's bytes, or a tar of many entries.
// Every blob is verified whole (segments, content hash, blob id, path) before any of its bytes
// is written, as a pull verifies it before a file appears.

import { displayPath, pathBytes } from "../format/names.ts";
import { TAR_END, tarHeader, type TarMember, tarPadding } from "../format/tar.ts";
import { fromBase64 } from "../format/bytes.ts";
import { entryLocation } from "../repository/manifest.ts";
import type { Repository } from "../repository/repository.ts";
import type { StateEntry } from "../pull/state.ts";

/** Where verified bytes go. */
export type Sink = (bytes: Uint8Array) => Promise<void>;

/** Content up to this size is held in memory while it is verified; larger goes to a temp file. */
const IN_MEMORY = 8 << 20;

/**
 * Reads and verifies the blob of a file entry, then hands its content to `sink`. Content that
 * does not verify is an error naming the path, and nothing of it reaches the sink.
 */
export async function writeVerified(repo: Repository, e: StateEntry, sink: Sink): Promise<void> {
  if (!e.blob_id) throw new Error(`${e.path}: the changeset names no blob for this file`);
  // A hard link's blob names the path it shares its content with.
  const expected = e.action === "hardlink" ? e.target! : e.path;
  const spool = (e.size ?? 0) > IN_MEMORY ? await Deno.makeTempFile({ prefix: "n2s-dump-" }) : null;
  const file = spool === null ? null : await Deno.open(spool, { write: true, read: true });
  const parts: Uint8Array[] = [];
  try {
    try {
      const loc = entryLocation({ ...e, action: "write" });
      for await (const part of repo.openBlob(e.blob_id, loc)) {
        if ("header" in part) {
          if (part.header.path !== expected || part.header.file_hash !== e.file_hash) {
            throw new Error(`blob ${e.blob_id} holds another path or content`);
          }
        } else if (file !== null) {
          for (let o = 0; o < part.data.length;) o += await file.write(part.data.subarray(o));
        } else parts.push(part.data.slice());
      }
    } catch (err) {
      throw new Error(
        `${displayPath(e.path)}: ${err instanceof Error ? err.message : err}; nothing of it ` +
          `was written; run "n2s check --read-data"`,
      );
    }
    if (file === null) {
      for (const p of parts) await sink(p);
      return;
    }
    await file.seek(0, Deno.SeekMode.Start);
    const buf = new Uint8Array(1 << 20);
    for (let n = await file.read(buf); n !== null; n = await file.read(buf)) {
      await sink(buf.slice(0, n));
    }
  } finally {
    file?.close();
    if (spool !== null) await Deno.remove(spool).catch(() => {});
  }
}

/** The tar member of an entry. */
function memberOf(e: StateEntry, asFile: boolean): TarMember {
  const type = asFile || e.action === "write"
    ? "file"
    : e.action === "hardlink"
    ? "hardlink"
    : e.action === "link"
    ? "symlink"
    : e.action === "dir"
    ? "dir"
    : e.kind === "char"
    ? "char"
    : e.kind === "block"
    ? "block"
    : "fifo";
  const m: TarMember = {
    path: pathBytes(e.path),
    type,
    mode: e.mode ?? (type === "dir" ? 0o755 : 0o644),
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    size: type === "file" ? e.size ?? 0 : 0,
    mtime: e.mtime ?? 0,
  };
  if (e.nsec !== undefined) m.nsec = e.nsec;
  if (e.user !== undefined) m.user = e.user;
  if (e.group !== undefined) m.group = e.group;
  if ((type === "symlink" || type === "hardlink") && e.target !== undefined) {
    m.link = pathBytes(e.target);
  }
  if (e.major !== undefined) m.major = e.major;
  if (e.minor !== undefined) m.minor = e.minor;
  if (e.xattrs !== undefined) {
    m.xattrs = Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, fromBase64(v)]));
  }
  return m;
}

/**
 * Writes `entries` as a tar archive: in path order, hard links last (linked to their file when
 * it is in the archive, else given its content). Returns how many members were written.
 */
export async function writeTar(
  repo: Repository,
  entries: StateEntry[],
  sink: Sink,
): Promise<number> {
  const sorted = [...entries].sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  const inside = new Set(sorted.filter((e) => e.action === "write").map((e) => e.path));
  const order = [
    ...sorted.filter((e) => e.action !== "hardlink"),
    ...sorted.filter((e) => e.action === "hardlink"),
  ];
  for (const e of order) {
    const asFile = e.action === "hardlink" && !inside.has(e.target!);
    const m = memberOf(e, asFile);
    if (m.type !== "file") {
      await sink(tarHeader(m));
      continue;
    }
    // The content is verified before the header goes out: a member is whole or absent.
    let headerSent = false;
    await writeVerified(repo, e, async (b) => {
      if (!headerSent) await sink(tarHeader(m));
      headerSent = true;
      await sink(b);
    });
    if (!headerSent) await sink(tarHeader(m));
    await sink(tarPadding(m.size));
  }
  await sink(TAR_END);
  return order.length;
}
