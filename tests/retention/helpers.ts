// A source pushed once a day for a month (N2S_TEST_NOW sets each changeset's time), and what
// a local repository holds, for the forget and prune tests.

import assert from "node:assert/strict";
import { findPackEntries } from "../../lib/format/pack.ts";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, seededBytes, writeTree } from "../helpers/fs.ts";
import { looseBlobFiles, packFiles } from "../helpers/repo.ts";

export const ENV = { N2S_PASSPHRASE: "pw" };
export const SOURCE = "daily";
/** Day 0: Monday 5 January 2026 (ISO week 2), noon UTC. */
export const DAY0 = Date.UTC(2026, 0, 5, 12);

export interface Env {
  dir: string;
  /** The repository's location (a directory, unless `setupAt` was given another). */
  repo: string;
  index: string;
  src: string;
  args: string[];
  /** What the CLI needs besides the passphrase (credentials of a server). */
  env: Record<string, string>;
}

/** A repository with small packs and a low pack threshold, so that both kinds of blob occur. */
export function setup(dir: string): Promise<Env> {
  return setupAt(dir, `${dir}/repo`);
}

/** As `setup`, with the repository at any location, reached with `env`. */
export async function setupAt(
  dir: string,
  location: string,
  env: Record<string, string> = {},
): Promise<Env> {
  const e: Env = {
    dir,
    repo: location,
    index: `${dir}/index.sqlite`,
    src: `${dir}/src`,
    args: ["--repo", location, "--index", `${dir}/index.sqlite`],
    env: { ...ENV, ...env },
  };
  await n2sOk(["init", ...e.args, "--pack-size", "16KiB", "--pack-threshold", "4KiB"], e.env);
  return e;
}

/**
 * Day `d`'s changes: a new small file, the next of three large files rewritten, a small file
 * rewritten, the small file of five days ago deleted, and on day 15 a symlink retargeted.
 */
export function changeDay(src: string, d: number): void {
  const files: Record<string, Uint8Array | string> = {
    [`daily/d${d}.bin`]: seededBytes(1500 + (d * 37) % 900, 100 + d),
    [`big/b${d % 3}.bin`]: seededBytes(6000 + d * 11, 500 + d),
    "notes.txt": `day ${d}\n`.repeat(1 + d % 4),
  };
  if (d === 0) {
    for (let i = 0; i < 4; i++) files[`static/s${i}.bin`] = seededBytes(2500, 900 + i);
    Deno.mkdirSync(src, { recursive: true });
    Deno.symlinkSync("static/s0.bin", `${src}/link`);
  }
  writeTree(src, files);
  if (d >= 5) Deno.removeSync(`${src}/daily/d${d - 5}.bin`);
  if (d === 15) {
    Deno.removeSync(`${src}/link`);
    Deno.symlinkSync("static/s1.bin", `${src}/link`);
  }
}

/** The time of day `d`'s push. */
export function dayTime(d: number): string {
  return new Date(DAY0 + d * 86_400_000).toISOString();
}

/** Pushes day `d` and returns its changeset id. */
export async function pushDay(e: Env, d: number): Promise<string> {
  const r = JSON.parse(
    await n2sOk(["push", "--scan", e.src, "--source", SOURCE, "--json", ...e.args], {
      ...e.env,
      N2S_TEST_NOW: dayTime(d),
    }),
  );
  assert.ok(r.changeset, `day ${d}: no changeset: ${JSON.stringify(r)}`);
  return r.changeset;
}

/** Pushes days 0…n−1; returns each day's changeset id and the tree the source held. */
export async function pushDays(
  e: Env,
  n: number,
): Promise<{ ids: string[]; trees: Record<string, string>[] }> {
  const ids: string[] = [];
  const trees: Record<string, string>[] = [];
  for (let d = 0; d < n; d++) {
    changeDay(e.src, d);
    ids.push(await pushDay(e, d));
    trees.push(readTree(e.src));
  }
  return { ids, trees };
}

/** The blobs a set of trees needs: one per path and content (links need none). */
export function blobsOf(trees: Record<string, string>[]): Set<string> {
  const out = new Set<string>();
  for (const t of trees) {
    for (const [path, what] of Object.entries(t)) {
      if (!what.startsWith("-> ")) out.add(`${path}\0${what}`);
    }
  }
  return out;
}

/** What a local repository stores: every blob's id and container size, packs and bytes. */
export function stored(repo: string): {
  blobs: Map<string, number>;
  copies: number;
  packs: number;
  bytes: number;
  packed: Set<string>;
} {
  const blobs = new Map<string, number>();
  const packed = new Set<string>();
  let copies = 0, bytes = 0;
  for (const f of looseBlobFiles(repo)) {
    const size = Deno.statSync(f).size;
    blobs.set(f.slice(f.lastIndexOf("/") + 1), size);
    bytes += size;
    copies++;
  }
  const packs = packFiles(repo);
  for (const p of packs) {
    const bytesOf = Deno.readFileSync(p);
    bytes += bytesOf.length;
    for (const e of findPackEntries(bytesOf)) {
      blobs.set(e.blobId, e.length);
      packed.add(e.blobId);
      copies++;
    }
  }
  return { blobs, copies, packs: packs.length, bytes, packed };
}

/** `check --read-data`: exits 0, and its findings. */
export async function checkClean(
  e: Env,
  what: string,
): Promise<{ severity: string; kind: string; message: string }[]> {
  const r = await n2s(["check", "--read-data", "--json", ...e.args], e.env);
  assert.equal(r.code, 0, `${what}: check exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout).findings;
}

/** Pulls a changeset into a fresh directory and returns its tree. */
export async function pulled(e: Env, id: string, args = e.args): Promise<Record<string, string>> {
  const out = Deno.makeTempDirSync({ dir: e.dir, prefix: "pull-" });
  await n2sOk(["pull", "--changeset-id", id, "--target-path", out, ...args], e.env);
  return readTree(out);
}

/** Copies an index file (with its WAL), as a second machine's index that saw the same pushes. */
export function copyIndex(from: string, to: string): void {
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      Deno.copyFileSync(`${from}${suffix}`, `${to}${suffix}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}
