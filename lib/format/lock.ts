// Repository locks as stored: a container (magic N2SL) sealed with the master key whose header
// says who holds the lock and what it locks, and an empty body. No I/O here.

import { fromHex } from "./bytes.ts";
import { ContainerError, containerPartsSync, ContainerWriter } from "./container.ts";
import { isHex128 } from "./ids.ts";
import type { Suite } from "./suite.ts";

/**
 * What a lock allows beside it. `shared`: anything but an exclusive lock (pulls and other
 * readers that must not have blobs deleted under them). `source`: anything but an exclusive lock
 * or another lock of the same source (a push). `exclusive`: nothing (commands that delete).
 */
export type LockKind = "shared" | "source" | "exclusive";

/** The header of a lock object: who holds it, since when, and what it locks. */
export interface LockRecord {
  /** Version of the lock record. */
  v: 1;
  /** What the lock allows beside it. */
  kind: LockKind;
  /** The source a `source` lock is for; absent on the other kinds. */
  source?: string;
  /** What holds it, for people: "push", "pull", "check --repair". */
  command: string;
  /** Host name of the machine holding it. */
  host: string;
  /** Process id of the holder on that machine. */
  pid: number;
  /** When the process started (Linux: clock ticks after boot), to tell a reused pid; or null. */
  pid_start: string | null;
  /** User running the holder. */
  user: string;
  /** When the lock was taken, UTC ISO-8601. */
  created: string;
  /** When the holder last said it still holds it (every few minutes), UTC ISO-8601. */
  refreshed: string;
}

const KINDS = new Set<LockKind>(["shared", "source", "exclusive"]);

/** The sealed bytes of a lock object (`id` is the object's name: 32 hex digits, random). */
export function sealLock(
  suite: Suite,
  master: Uint8Array,
  id: string,
  record: LockRecord,
): Uint8Array[] {
  const w = new ContainerWriter(suite, "lock", master, lockRawId(id), { compressLevel: 0 });
  return [...w.start(record), ...w.body(new Uint8Array(0), true)];
}

/** Opens a lock object and checks its fields; throws ContainerError when it cannot. */
export function openLock(
  suite: Suite,
  master: Uint8Array,
  id: string,
  bytes: Uint8Array,
  what: string,
): LockRecord {
  let header: Record<string, unknown> | undefined;
  for (const part of containerPartsSync(suite, "lock", master, lockRawId(id), bytes, what)) {
    if (part.type === "header") header = part.header;
    else throw new ContainerError(`${what}: a lock has no content`);
  }
  const r = header as Partial<LockRecord> | undefined;
  const bad = (why: string): never => {
    throw new ContainerError(`${what}: ${why}`);
  };
  if (!r) return bad("no header");
  if (r.v !== 1) bad(`lock format ${r.v} is not 1`);
  if (!KINDS.has(r.kind as LockKind)) bad(`unknown lock kind ${JSON.stringify(r.kind)}`);
  if ((r.kind === "source") !== (typeof r.source === "string")) {
    bad("a source lock names its source, and only a source lock does");
  }
  for (const f of ["command", "host", "user", "created", "refreshed"] as const) {
    if (typeof r[f] !== "string") bad(`${f} is not a string`);
  }
  if (!Number.isSafeInteger(r.pid)) bad("pid is not an integer");
  if (r.pid_start !== null && typeof r.pid_start !== "string") bad("pid_start is malformed");
  for (const f of ["created", "refreshed"] as const) {
    if (Number.isNaN(Date.parse(r[f]!))) bad(`${f} is not a time`);
  }
  return r as LockRecord;
}

/** The raw id a lock is sealed with: the 16 bytes its name is the hex of. */
function lockRawId(id: string): Uint8Array {
  if (!isHex128(id)) throw new Error(`a lock id is 32 hex digits, not "${id}"`);
  return fromHex(id);
}
