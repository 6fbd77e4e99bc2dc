// What n2s records of a file system object besides its content (mode, times to the nanosecond,
// owner by number and name, extended attributes), read from an lstat and given back on restore
// in the order that keeps each step from undoing the one before.

import { fromBase64, toBase64 } from "../format/bytes.ts";
import {
  fchmodatRaw,
  geteuid,
  getXattr,
  gidOf,
  groupName,
  lchownRaw,
  listXattrs,
  type RawStat,
  S_IFLNK,
  S_IFMT,
  setXattr,
  uidOf,
  userName,
  utimensRaw,
} from "./posix.ts";

/** The metadata of one object, as manifests and the index keep it. */
export interface FileMeta {
  /** st_mode & 07777: permission, setuid, setgid and sticky bits. */
  mode: number;
  /** Modification time in milliseconds since 1970 (UTC), rounded down. */
  mtime: number;
  /** Nanoseconds within the second of `mtime` (0..999,999,999). */
  nsec: number;
  uid: number;
  gid: number;
  /** The owner's and group's names where the source system knew them. */
  user?: string;
  group?: string;
  /** Extended attributes: name → value (base64). */
  xattrs?: Record<string, string>;
}

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;

/** mtime and nsec from nanoseconds since the epoch (negative times included). */
export function splitTime(ns: bigint): { mtime: number; nsec: number } {
  let nsec = ns % NS_PER_S;
  if (nsec < 0n) nsec += NS_PER_S;
  const ms = ns >= 0n ? ns / NS_PER_MS : -((-ns + NS_PER_MS - 1n) / NS_PER_MS);
  return { mtime: Number(ms), nsec: Number(nsec) };
}

/** Nanoseconds since the epoch from mtime and nsec. */
export function joinTime(mtime: number, nsec: number | undefined): bigint {
  const ms = BigInt(Math.floor(mtime));
  if (nsec === undefined) return ms * NS_PER_MS;
  // The second that `mtime` falls in, then its nanoseconds.
  let sec = ms / 1000n;
  if (ms < 0n && ms % 1000n !== 0n) sec -= 1n;
  return sec * NS_PER_S + BigInt(nsec);
}

/** Which extended attributes a process may read and give back: user.* always, all as root. */
export function xattrAllowed(name: string, root: boolean): boolean {
  return root || name.startsWith("user.");
}

/**
 * The metadata of `path` from its lstat. Extended attributes are read only when `xattrs` is
 * set (a file system without them, or an object that refuses them, yields none).
 */
export function metaOf(path: string, st: RawStat, opts: { xattrs?: boolean } = {}): FileMeta {
  const { mtime, nsec } = splitTime(st.mtimeNs);
  const meta: FileMeta = { mode: st.mode & 0o7777, mtime, nsec, uid: st.uid, gid: st.gid };
  const user = userName(st.uid);
  const group = groupName(st.gid);
  if (user !== null) meta.user = user;
  if (group !== null) meta.group = group;
  if (opts.xattrs) {
    const xs = readXattrs(path);
    if (xs) meta.xattrs = xs;
  }
  return meta;
}

/** The extended attributes of `path` (not following a final symlink), or undefined when none. */
export function readXattrs(path: string): Record<string, string> | undefined {
  let names: string[];
  try {
    names = listXattrs(path);
  } catch {
    // ENOTSUP and the like: the file system keeps none.
    return undefined;
  }
  if (names.length === 0) return undefined;
  const root = geteuid() === 0;
  const out: Record<string, string> = {};
  for (const name of names.sort()) {
    if (!xattrAllowed(name, root)) continue;
    try {
      out[name] = toBase64(getXattr(path, name));
    } catch {
      // removed meanwhile, or not ours to read
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** How to give metadata back. */
export interface ApplyOptions {
  /** Restore owner and group (only works as root; default: when running as root). */
  owner?: boolean;
}

/**
 * Gives `path` its metadata back, in the order that keeps each step: owner first (chown clears
 * the setuid and setgid bits), then extended attributes, then mode, then times (every other
 * change would touch them). Returns what could not be given back, in words; the caller reports
 * it. A symlink gets owner, xattrs (user.* cannot be set on one) and times, never a mode.
 */
export function applyMeta(
  path: string,
  meta: FileMeta,
  fileType: number,
  opts: ApplyOptions = {},
): string[] {
  const problems: string[] = [];
  const root = geteuid() === 0;
  const isLink = (fileType & S_IFMT) === S_IFLNK;
  if (opts.owner ?? root) {
    const uid = (meta.user !== undefined ? uidOf(meta.user) : null) ?? meta.uid;
    const gid = (meta.group !== undefined ? gidOf(meta.group) : null) ?? meta.gid;
    try {
      lchownRaw(path, uid, gid);
    } catch (e) {
      problems.push(`owner ${uid}:${gid} not set: ${(e as Error).message}`);
    }
  }
  for (const [name, value] of Object.entries(meta.xattrs ?? {})) {
    if (!xattrAllowed(name, root)) continue;
    if (isLink && name.startsWith("user.")) continue;
    try {
      setXattr(path, name, fromBase64(value));
    } catch (e) {
      problems.push(`extended attribute ${name} not set: ${(e as Error).message}`);
    }
  }
  if (!isLink) {
    try {
      fchmodatRaw(path, meta.mode & 0o7777);
    } catch (e) {
      problems.push(`mode ${meta.mode.toString(8)} not set: ${(e as Error).message}`);
    }
  }
  try {
    utimensRaw(path, null, joinTime(meta.mtime, meta.nsec), true);
  } catch (e) {
    problems.push(`modification time not set: ${(e as Error).message}`);
  }
  return problems;
}
