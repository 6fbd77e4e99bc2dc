// User and group names for ids and back (getpwuid_r and friends, so NSS is honoured), cached per
// thread: a backup records names beside ids, and a restore maps names back where they exist.

import { pathText } from "../format/names.ts";
import { cstr, E, fail, lib } from "./posix_ffi.ts";

const SC_GETGR_R_SIZE_MAX = 69;
const SC_GETPW_R_SIZE_MAX = 70;

// struct passwd (48 bytes on LP64): pw_name @0, pw_passwd @8, pw_uid u32 @16, pw_gid u32 @20, …
// struct group (32 bytes): gr_name @0, gr_passwd @8, gr_gid u32 @16, gr_mem @24.
const record = new Uint8Array(48);
const recordView = new DataView(record.buffer);
const result = new BigUint64Array(1);
let strings: Uint8Array | undefined;

const userNames = new Map<number, string | null>();
const groupNames = new Map<number, string | null>();
const uids = new Map<string, number | null>();
const gids = new Map<string, number | null>();

type Lookup = (rec: Uint8Array, buf: Uint8Array, size: bigint, res: BigUint64Array) => number;

/** Runs one *_r lookup, growing the string buffer on ERANGE; false when there is no entry. */
function lookup(f: Lookup, call: string, what: string): boolean {
  if (!strings) {
    const c = lib();
    const hint = Math.max(
      Number(c.sysconf(SC_GETPW_R_SIZE_MAX)),
      Number(c.sysconf(SC_GETGR_R_SIZE_MAX)),
    );
    strings = new Uint8Array(hint > 0 && hint <= 1 << 20 ? Math.max(hint, 4096) : 16384);
  }
  for (;;) {
    result[0] = 0n;
    const r = f(record, strings, BigInt(strings.length), result);
    if (r === 0) return result[0] !== 0n;
    if (r === E.ERANGE && strings.length < 1 << 26) strings = new Uint8Array(strings.length * 4);
    else if (r === E.EINTR) continue;
    // These say "no such entry" (getpwnam_r(3)).
    else if (r === E.ENOENT || r === E.EPERM || r === E.EBADF || r === E.ESRCH) {
      return false;
    } else throw fail(call, what, r);
  }
}

/** The C string a field of the record points at; it lies in `strings`. */
function field(offset: number): string {
  const addr = recordView.getBigUint64(offset, true);
  const base = Deno.UnsafePointer.value(Deno.UnsafePointer.of(strings!));
  const at = Number(addr - base);
  if (at >= 0 && at < strings!.length) {
    let end = strings!.indexOf(0, at);
    if (end < 0) end = strings!.length;
    return pathText(strings!.subarray(at, end));
  }
  // Not in our buffer (never seen with glibc): read it through the pointer.
  const p = Deno.UnsafePointer.create(addr)!;
  const v = new Deno.UnsafePointerView(p);
  let n = 0;
  while (v.getUint8(n) !== 0) n++;
  const out = new Uint8Array(n);
  if (n > 0) v.copyInto(out);
  return pathText(out);
}

/** The name of user `uid`, or null when the system knows none. */
export function userName(uid: number): string | null {
  let v = userNames.get(uid);
  if (v !== undefined) return v;
  const c = lib();
  v = lookup((r, b, n, res) => c.getpwuid_r(uid >>> 0, r, b, n, res), "getpwuid_r", `uid ${uid}`)
    ? field(0)
    : null;
  userNames.set(uid, v);
  return v;
}

/** The name of group `gid`, or null when the system knows none. */
export function groupName(gid: number): string | null {
  let v = groupNames.get(gid);
  if (v !== undefined) return v;
  const c = lib();
  v = lookup((r, b, n, res) => c.getgrgid_r(gid >>> 0, r, b, n, res), "getgrgid_r", `gid ${gid}`)
    ? field(0)
    : null;
  groupNames.set(gid, v);
  return v;
}

/** The uid of user `name`, or null when there is no such user. */
export function uidOf(name: string): number | null {
  let v = uids.get(name);
  if (v !== undefined) return v;
  const c = lib();
  const k = cstr(name, 2, "getpwnam_r");
  v = lookup((r, b, n, res) => c.getpwnam_r(k, r, b, n, res), "getpwnam_r", JSON.stringify(name))
    ? recordView.getUint32(16, true)
    : null;
  uids.set(name, v);
  return v;
}

/** The gid of group `name`, or null when there is no such group. */
export function gidOf(name: string): number | null {
  let v = gids.get(name);
  if (v !== undefined) return v;
  const c = lib();
  const k = cstr(name, 2, "getgrnam_r");
  v = lookup((r, b, n, res) => c.getgrnam_r(k, r, b, n, res), "getgrnam_r", JSON.stringify(name))
    ? recordView.getUint32(16, true)
    : null;
  gids.set(name, v);
  return v;
}

/** Empties the caches and makes the string buffer tiny, so that tests exercise ERANGE. */
export function _shrinkIdBuffer(): void {
  strings = new Uint8Array(8);
  for (const m of [userNames, groupNames, uids, gids]) m.clear();
}
