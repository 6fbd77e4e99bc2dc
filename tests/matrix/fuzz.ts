// Seeded mutations of what someone holding a repository can change: the stored bytes of
// containers (loose blobs, manifests), of packs, of key files and of the config. Mutations know
// the layout (segment lengths, pack entry frames, JSON fields) so that length fields are set to
// 0, to their limits and beyond, not only hit by chance; each is a small JSON value that a
// failure prints, so that it can be replayed.

import { ENTRY_FRAME_BYTES, findPackEntries } from "../../lib/format/pack.ts";
import { HEADER_MAX, SEGMENT_DATA_MAX } from "../../lib/format/container.ts";

/** What kind of object a mutant was made from. */
export type ObjectKind = "blob" | "manifest" | "pack" | "key" | "config";

/** One object of a repository: its key and bytes. */
export interface StoredObject {
  key: string;
  kind: ObjectKind;
  bytes: Uint8Array;
}

/** One mutation, as JSON-friendly data. */
export type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "truncate"; at: number }
  | { op: "extend"; bytes: number; fill: number }
  | { op: "u32"; at: number; value: number; field: string }
  | { op: "splice"; at: number; other: string; from: number }
  | { op: "copy"; from: number; to: number; length: number }
  | { op: "json"; path: string[]; value?: unknown; remove?: boolean };

const TAG = 16;

/** Where a container's segment length fields are: [offset, what] from the intact bytes. */
export function segmentFields(bytes: Uint8Array, base = 0, end = bytes.length): [number, string][] {
  const out: [number, string][] = [];
  let at = base + 24;
  for (let i = 0; at + 4 <= end; i++) {
    out.push([at, `segment ${i} length`]);
    const len = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, false);
    at += 4 + len;
  }
  return out;
}

/** Length fields of an object with the values worth trying for each. */
function lengthFields(o: StoredObject): { at: number; field: string; values: number[] }[] {
  const dv = new DataView(o.bytes.buffer, o.bytes.byteOffset, o.bytes.length);
  const fields: { at: number; field: string; values: number[] }[] = [];
  const segmentValues = (at: number, first: boolean) => {
    const v = dv.getUint32(at, false);
    const max = (first ? HEADER_MAX : SEGMENT_DATA_MAX + 1) + TAG;
    return [0, 1, TAG - 1, TAG, TAG + 1, v - 1, v + 1, max, max + 1, 0x7fffffff, 0xffffffff];
  };
  const container = (base: number, end: number, label: string) => {
    for (const [at, what] of segmentFields(o.bytes, base, end)) {
      fields.push({
        at,
        field: `${label}${what}`,
        values: segmentValues(at, what === "segment 0 length"),
      });
    }
  };
  if (o.kind === "pack") {
    for (const e of findPackEntries(o.bytes)) {
      const at = e.offset - 4;
      fields.push({
        at,
        field: `entry at ${e.offset - ENTRY_FRAME_BYTES} length`,
        values: [0, 1, 39, e.length - 1, e.length + 1, o.bytes.length, 0x7fffffff, 0xffffffff],
      });
      container(e.offset, e.offset + e.length, `entry at ${e.offset - ENTRY_FRAME_BYTES} `);
    }
  } else if (o.kind === "blob" || o.kind === "manifest") {
    container(0, o.bytes.length, "");
  }
  return fields.filter((f) => f.at + 4 <= o.bytes.length);
}

/** The bytes worth hitting in particular: preambles, salts, frames. */
function structureBytes(o: StoredObject): number[] {
  const at: number[] = [];
  const container = (base: number) => {
    for (let i = 0; i < 24; i++) at.push(base + i);
  };
  if (o.kind === "pack") {
    for (let i = 0; i < 8; i++) at.push(i);
    for (const e of findPackEntries(o.bytes)) {
      for (let i = e.offset - ENTRY_FRAME_BYTES; i < e.offset; i++) at.push(i);
      container(e.offset);
    }
  } else container(0);
  return at.filter((i) => i < o.bytes.length);
}

/** JSON values that a hostile key file or config could hold in a field. */
const JSON_VALUES: unknown[] = [
  null,
  true,
  0,
  -1,
  1,
  2,
  1.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  1e308,
  -1e308,
  "",
  "x",
  "!!!!",
  "AAAA",
  "=",
  "AAAAAAAAAAAAAAAAAAAAAA==",
  "a".repeat(100_000),
  [],
  {},
  [1, 2],
  { N: 1024 },
];

/**
 * scrypt settings a tampered key file may ask for, no costlier than the default (128 MiB): a key
 * file may by design ask for more (n2s accepts N up to 2^22 and r up to 32), so larger costs are
 * not drawn here, where every command must stay under the matrix's memory bound.
 */
const KDF_VALUES: Record<string, unknown[]> = {
  N: [0, 1, 2, 3, 1023, 1024, 1025, 2 ** 10, 2 ** 12, 2 ** 17, -1024, 1024.5, "1024", null],
  r: [0, 1, 2, 8, -1, 0.5, "8", null, 1e308],
  p: [0, 1, 2, -1, "1", null],
};

/** Every field path of a JSON object (objects only, arrays as leaves). */
function jsonPaths(v: unknown, prefix: string[] = []): string[][] {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return [prefix];
  const out: string[][] = prefix.length ? [prefix] : [];
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out.push(...jsonPaths(x, [...prefix, k]));
  }
  return out;
}

/** A seeded mutation of `o`; `others` are the objects a splice may take its tail from. */
export function drawMutation(
  o: StoredObject,
  others: StoredObject[],
  random: () => number,
): Mutation {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const n = o.bytes.length;
  const r = random();
  if (o.kind === "key" || o.kind === "config") {
    if (r < 0.6) {
      const doc = JSON.parse(new TextDecoder().decode(o.bytes));
      const path = pick(jsonPaths(doc));
      if (random() < 0.15) return { op: "json", path, remove: true };
      const last = path[path.length - 1];
      const pool = path[0] === "kdf" && KDF_VALUES[last] && random() < 0.7
        ? KDF_VALUES[last]
        : JSON_VALUES;
      return { op: "json", path, value: pick(pool) };
    }
    if (r < 0.85) {
      return { op: "flip", at: Math.floor(random() * n), bit: Math.floor(random() * 8) };
    }
    return { op: "truncate", at: Math.floor(random() * n) };
  }
  if (r < 0.2) return { op: "flip", at: Math.floor(random() * n), bit: Math.floor(random() * 8) };
  if (r < 0.35) return { op: "flip", at: pick(structureBytes(o)), bit: Math.floor(random() * 8) };
  if (r < 0.5) {
    // Cut anywhere, or just before or after a length field.
    const f = lengthFields(o);
    const at = f.length && random() < 0.5
      ? Math.max(0, pick(f).at + Math.floor(random() * 9) - 4)
      : Math.floor(random() * n);
    return { op: "truncate", at };
  }
  if (r < 0.75) {
    const f = lengthFields(o);
    if (f.length) {
      const field = pick(f);
      return { op: "u32", at: field.at, field: field.field, value: pick(field.values) >>> 0 };
    }
  }
  if (r < 0.85 && others.length) {
    const other = pick(others);
    return {
      op: "splice",
      at: Math.floor(random() * n),
      other: other.key,
      from: Math.floor(random() * other.bytes.length),
    };
  }
  if (r < 0.93) {
    // A region written again elsewhere: a segment or an entry repeated, moved or overlapping.
    const length = 1 + Math.floor(random() * Math.min(n, 4096));
    return {
      op: "copy",
      from: Math.floor(random() * (n - length + 1)),
      to: Math.floor(random() * (n + 1)),
      length,
    };
  }
  return { op: "extend", bytes: pick([1, 4, 16, 17, 40, 1000]), fill: pick([0, 0xff, 0x4e]) };
}

/** Applies a mutation to a copy of `o`'s bytes. */
export function applyMutation(
  o: StoredObject,
  m: Mutation,
  objects: Map<string, StoredObject>,
): Uint8Array {
  const b = o.bytes;
  switch (m.op) {
    case "flip": {
      const out = b.slice();
      out[m.at] ^= 1 << m.bit;
      return out;
    }
    case "truncate":
      return b.slice(0, m.at);
    case "extend": {
      const out = new Uint8Array(b.length + m.bytes).fill(m.fill);
      out.set(b);
      return out;
    }
    case "u32": {
      const out = b.slice();
      new DataView(out.buffer).setUint32(m.at, m.value, false);
      return out;
    }
    case "splice": {
      const tail = objects.get(m.other)!.bytes.subarray(m.from);
      const out = new Uint8Array(m.at + tail.length);
      out.set(b.subarray(0, m.at));
      out.set(tail, m.at);
      return out;
    }
    case "copy": {
      const region = b.slice(m.from, m.from + m.length);
      const out = new Uint8Array(Math.max(b.length, m.to + region.length));
      out.set(b);
      out.set(region, m.to);
      return out;
    }
    case "json": {
      const doc = JSON.parse(new TextDecoder().decode(b));
      let at = doc;
      for (const k of m.path.slice(0, -1)) at = at[k];
      const last = m.path[m.path.length - 1];
      if (m.remove) delete at[last];
      else at[last] = m.value;
      return new TextEncoder().encode(JSON.stringify(doc));
    }
  }
}

/** A mutation for messages: short, and enough to replay it on the same repository. */
export function describeMutation(o: StoredObject, m: Mutation): string {
  const shown = m.op === "json" && typeof m.value === "string" && m.value.length > 40
    ? { ...m, value: `${m.value.slice(0, 8)}… (${m.value.length} chars)` }
    : m;
  return `${o.key} (${o.kind}, ${o.bytes.length} bytes): ${JSON.stringify(shown)}`;
}

/** Errors of the JavaScript engine, which a parser must never let through. */
export function isEngineError(e: unknown): boolean {
  return e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError ||
    e instanceof ReferenceError || !(e instanceof Error);
}

/** The kind of a repository object from its key; null for what is not fuzzed. */
export function kindOfKey(key: string): ObjectKind | null {
  if (key === "config") return "config";
  if (key.startsWith("keys/")) return "key";
  if (key.startsWith("blobs/")) return "blob";
  if (key.startsWith("packs/")) return "pack";
  if (key.startsWith("changesets/")) return "manifest";
  return null;
}

/** Every fuzzed object of a local repository directory, sorted by key. */
export function readObjects(repo: string): StoredObject[] {
  const out: StoredObject[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel === "" ? repo : `${repo}/${rel}`)) {
      const key = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) walk(key);
      else {
        const kind = kindOfKey(key);
        if (kind !== null) out.push({ key, kind, bytes: Deno.readFileSync(`${repo}/${key}`) });
      }
    }
  };
  walk("");
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** Which kinds the fuzzers draw, and how often (packs and blobs hold most of the bytes). */
export const KIND_WEIGHTS: [ObjectKind, number][] = [
  ["pack", 0.3],
  ["blob", 0.2],
  ["manifest", 0.25],
  ["key", 0.15],
  ["config", 0.1],
];

/** An object drawn by kind weight, then uniformly within its kind. */
export function drawObject(objects: StoredObject[], random: () => number): StoredObject {
  const r = random();
  let acc = 0;
  let kind: ObjectKind = KIND_WEIGHTS[0][0];
  for (const [k, w] of KIND_WEIGHTS) {
    acc += w;
    if (r < acc) {
      kind = k;
      break;
    }
  }
  const pool = objects.filter((o) => o.kind === kind);
  const from = pool.length ? pool : objects;
  return from[Math.floor(random() * from.length)];
}
