// Packs: many small blobs in one object. Each entry is a complete blob container behind a
// 40-byte frame that names its keyed blob id and length, so every entry opens alone, and a
// damaged entry (or a damaged frame) never hides the others: readers find entries by their
// markers, and the container's own authentication decides what is intact. No I/O here.

import { fromHex, toHex, utf8 } from "./bytes.ts";
import { FORMAT_VERSION, MAGIC } from "./container.ts";

/** The 8-byte preamble of a pack object: "N2SP", the format version, flags, two zero bytes. */
export const PACK_PREAMBLE: Uint8Array = Uint8Array.of(...utf8("N2SP"), FORMAT_VERSION, 0, 0, 0);
/** The magic that starts each entry's frame. */
export const ENTRY_MAGIC: Uint8Array = utf8("N2SE");
/** Bytes of an entry's frame: magic (4), raw blob id (32), container length (4, big-endian). */
export const ENTRY_FRAME_BYTES = 40;

/** Where one blob lies in a pack: its container's offset and length in the pack object. */
export interface PackEntry {
  blobId: string;
  /** Offset of the container (after its frame) from the start of the pack object. */
  offset: number;
  /** Length of the container in bytes. */
  length: number;
}

/** The frame of one entry, to write just before its container. */
export function entryFrame(blobId: string, length: number): Uint8Array {
  const f = new Uint8Array(ENTRY_FRAME_BYTES);
  f.set(ENTRY_MAGIC, 0);
  f.set(fromHex(blobId), 4);
  new DataView(f.buffer).setUint32(36, length, false);
  return f;
}

/** True when `bytes` start like a pack object. */
export function isPack(bytes: Uint8Array): boolean {
  if (bytes.length < PACK_PREAMBLE.length) return false;
  for (let i = 0; i < 4; i++) if (bytes[i] !== PACK_PREAMBLE[i]) return false;
  return true;
}

/** The pack's format version byte, for messages about packs this reader cannot open. */
export function packVersion(bytes: Uint8Array): number | null {
  return isPack(bytes) ? bytes[4] : null;
}

const BLOB_MAGIC = MAGIC.blob;

function frameAt(bytes: Uint8Array, p: number): PackEntry | null {
  if (p + ENTRY_FRAME_BYTES + 8 > bytes.length) return null;
  for (let i = 0; i < 4; i++) if (bytes[p + i] !== ENTRY_MAGIC[i]) return null;
  const c = p + ENTRY_FRAME_BYTES;
  // The container that follows starts with its own magic and version: together with the frame
  // magic, eight fixed bytes, so ciphertext that happens to contain "N2SE" is not an entry.
  for (let i = 0; i < 4; i++) if (bytes[c + i] !== BLOB_MAGIC[i]) return null;
  if (bytes[c + 4] !== FORMAT_VERSION) return null;
  const length = new DataView(bytes.buffer, bytes.byteOffset + p + 36, 4).getUint32(0, false);
  if (c + length > bytes.length) return null;
  return { blobId: toHex(bytes.subarray(p + 4, p + 36)), offset: c, length };
}

/**
 * Every entry of a pack held in memory (`bytes` is the whole object, or a part of it that
 * starts at pack offset `base`). Entries are found by their frames anywhere in the bytes, not
 * only by walking from one length to the next, so damage to one entry, its frame included,
 * leaves every other entry found. A candidate is only a candidate: opening its container (the
 * blob id is in its key and additional data) is what proves it intact.
 */
export function findPackEntries(bytes: Uint8Array, base = 0): PackEntry[] {
  const out: PackEntry[] = [];
  const end = bytes.length - ENTRY_FRAME_BYTES - 8;
  const [m0, m1, m2, m3] = ENTRY_MAGIC;
  for (let p = 0; p <= end; p++) {
    if (bytes[p] !== m0 || bytes[p + 1] !== m1 || bytes[p + 2] !== m2 || bytes[p + 3] !== m3) {
      continue;
    }
    const e = frameAt(bytes, p);
    if (e) out.push({ ...e, offset: base + e.offset });
  }
  return out;
}
