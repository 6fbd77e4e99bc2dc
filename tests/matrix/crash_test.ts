// The crash matrix: a push killed with SIGKILL at seeded points (N2S_CRASH_AT) spread over
// hashing, puts, confirmations and the manifest, on a local repository and on S3. After each
// crash the next push of the same source completes; `check --read-data` finds no damage and
// nothing unfinished (only the unused objects ARCHITECTURE.md says a crash leaves); a pull gives
// back the source's bytes and modes; and no blob confirmed before the crash was stored again.
// CI runs a few points per backend; `deno run -A scripts/matrix.ts crash` runs all 20 on each.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { openBackend } from "../../lib/backends/open.ts";
import { readAll } from "../../lib/backends/backend.ts";
import { findPackEntries } from "../../lib/format/pack.ts";
import { parseKey } from "../../lib/repository/layout.ts";
import { CRASH_PHASES, type CrashPhase } from "../../lib/testing/crash.ts";
import { seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import {
  assertSameEntries,
  cliOk,
  fingerprint,
  FULL,
  matrixSeed,
  runDeno,
  seeded,
  shuffled,
  startTarget,
  type Target,
  type TargetKind,
} from "./common.ts";

const FIXTURE = new URL("../fixtures/crash_push.ts", import.meta.url).pathname;
const SOURCE = "crash-matrix";
/** Blobs per confirmation group in the killed push, so that it confirms several times. */
const CONFIRM_BATCH = 3;
/** Points per backend in the full matrix, and in CI. */
const FULL_POINTS = 20;
const CI_POINTS: Record<string, number> = { local: 6, s3: 3 };

/** About 10 MiB: small files over several hash batches and packs, loose blobs, a packed zero file. */
function writeSource(dir: string): void {
  const files: Record<string, Uint8Array | string> = {};
  for (let i = 0; i < 100; i++) {
    files[`${["a", "a/b", "c", "d/e/f"][i % 4]}/f${i}.bin`] = seededBytes(
      10_000 + ((i * 7919) % 50_000),
      i + 1,
    );
  }
  for (let i = 0; i < 3; i++) {
    files[`large/l${i}.bin`] = seededBytes(1_500_000 + i * 500_000, 900 + i);
  }
  files["large/zeros.bin"] = new Uint8Array(2_000_000);
  files["empty"] = "";
  files["script.sh"] = "#!/bin/sh\necho hi\n";
  files["secret.txt"] = "only for me\n";
  writeTree(dir, files);
  Deno.chmodSync(`${dir}/script.sh`, 0o755);
  Deno.chmodSync(`${dir}/secret.txt`, 0o600);
  Deno.mkdirSync(`${dir}/empty-dir`);
  Deno.symlinkSync("a/f0.bin", `${dir}/link`);
}

interface Point {
  phase: CrashPhase;
  count: number;
}

/**
 * `n` crash points from a seed: phases in a seeded order, taken in turn so that each gets its
 * share, and a count drawn within what a push reaches (`tally`, from a push that was not killed),
 * kept below it where the number of arrivals varies from run to run (packs cut differently,
 * confirmation groups that grow while a flush runs).
 */
function crashPoints(seed: number, tally: Record<CrashPhase, number>, n: number): Point[] {
  const random = seeded(seed);
  const order = shuffled(CRASH_PHASES, random);
  const reachable = (p: CrashPhase) => {
    const t = tally[p];
    if (p === "confirm" || p === "confirmed") return Math.max(1, Math.floor(t / 2));
    if (p === "put-start" || p === "put-end") return Math.max(1, Math.floor(t * 0.8));
    return Math.max(1, t);
  };
  return Array.from({ length: n }, (_, i) => {
    const phase = order[i % order.length];
    return { phase, count: 1 + Math.floor(random() * reachable(phase)) };
  });
}

/** The stored copies of blobs: blob id → keys of the objects holding it, and each object's hash. */
async function storedCopies(
  location: string,
  env: Record<string, string>,
): Promise<{ copies: Map<string, string[]>; digests: Map<string, string> }> {
  const backend = await openBackend(location, { env: { ...Deno.env.toObject(), ...env } });
  const copies = new Map<string, string[]>();
  const digests = new Map<string, string>();
  const add = (id: string, key: string) => copies.set(id, [...(copies.get(id) ?? []), key]);
  try {
    for await (const o of backend.list("")) {
      const k = parseKey(o.key);
      if (k.kind !== "blob" && k.kind !== "pack") continue;
      const bytes = await readAll(await backend.get(o.key));
      digests.set(o.key, createHash("sha256").update(bytes).digest("hex"));
      if (k.kind === "blob") add(k.id, o.key);
      else for (const e of findPackEntries(bytes)) add(e.blobId, o.key);
    }
  } finally {
    await backend.close();
  }
  return { copies, digests };
}

/** The blobs the index records as confirmed: blob id → the object key that holds it. */
function confirmedBlobs(index: string): Map<string, string> {
  const db = new DatabaseSync(index);
  try {
    const rows = db.prepare(
      "SELECT blob_id, pack FROM files WHERE status = 'confirmed' AND action = 'write'",
    ).all() as { blob_id: string; pack: string | null }[];
    return new Map(rows.map((r) => [
      r.blob_id,
      r.pack === null
        ? `blobs/${r.blob_id.slice(0, 2)}/${r.blob_id}`
        : `packs/${r.pack.slice(0, 2)}/${r.pack}`,
    ]));
  } finally {
    db.close();
  }
}

/** A push through the fixture; returns its crash tally when it ends, or null when killed. */
async function fixturePush(
  target: Target,
  location: string,
  index: string,
  src: string,
  crashAt?: Point,
): Promise<Record<CrashPhase, number> | null> {
  const env = {
    ...target.env,
    ...(crashAt ? { N2S_CRASH_AT: `${crashAt.phase}:${crashAt.count}` } : {}),
  };
  const r = await runDeno([location, index, src, SOURCE, String(CONFIRM_BATCH)], env, {
    script: FIXTURE,
  });
  assert.ok(!r.hung, `the push ran for more than a minute:\n${r.stderr}`);
  // timeout(1) reports a child killed by SIGKILL as 128 + 9.
  if (r.code === 137) return null;
  assert.equal(r.code, 0, `the push exited ${r.code}:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!).tally;
}

async function crashAndResume(
  target: Target,
  dir: string,
  src: string,
  expected: Map<string, string>,
  label: string,
  point: Point,
): Promise<string> {
  const location = target.location(label);
  const index = `${dir}/${label}.sqlite`;
  const args = ["--repo", location, "--index", index];
  const where = `${target.name} ${label} (N2S_CRASH_AT=${point.phase}:${point.count})`;
  await cliOk(["init", ...args, "--pack-size", "256KiB"], target.env);
  const tally = await fixturePush(target, location, index, src, point);
  assert.equal(
    tally,
    null,
    `${where}: the push ended before reaching the point: ${JSON.stringify(tally)}`,
  );
  const confirmed = confirmedBlobs(index);
  const before = await storedCopies(location, target.env);

  // The next push of the same source completes the interrupted one (or, when it was killed
  // while its plan was still being made, lists the changes again).
  const pushed = JSON.parse(
    await cliOk(["push", "--scan", src, "--source", SOURCE, "--json", ...args], target.env),
  );
  assert.deepEqual(pushed.problems, [], `${where}: ${JSON.stringify(pushed.problems)}`);
  const changeset: string | null = pushed.changeset ?? pushed.resumed.at(-1) ?? null;
  assert.ok(changeset, `${where}: no changeset completed: ${JSON.stringify(pushed)}`);

  // Nothing confirmed before the crash was stored again: each such blob has its one copy, in
  // the very object (same bytes) that held it then.
  const after = await storedCopies(location, target.env);
  for (const [blob, key] of confirmed) {
    assert.deepEqual(
      after.copies.get(blob),
      [key],
      `${where}: confirmed blob ${blob} stored again`,
    );
    assert.equal(after.digests.get(key), before.digests.get(key), `${where}: ${key} was rewritten`);
  }

  // No damage and nothing unfinished: only objects stored but never confirmed before the crash
  // (packs), and temporary files of writes the crash cut off.
  const check = await runDeno(["check", "--read-data", "--json", ...args], target.env);
  assert.equal(check.code, 0, `${where}: check exited ${check.code}\n${check.stderr}`);
  const findings = JSON.parse(check.stdout).findings as { severity: string; kind: string }[];
  const unexpected = findings.filter((f) =>
    f.severity !== "unused" || !["pack", "temporary"].includes(f.kind)
  );
  assert.deepEqual(unexpected, [], `${where}: findings`);

  const out = `${dir}/${label}-out`;
  await cliOk(["pull", "--changeset-id", changeset, "--target-path", out, ...args], target.env);
  assertSameEntries(out, expected, where);
  const unused = findings.map((f) => f.kind).join(",") || "none";
  return `${point.phase}:${point.count} confirmed at the crash ${confirmed.size}, unused ${unused}`;
}

async function crashMatrix(t: Deno.TestContext, kind: TargetKind, seed: number): Promise<void> {
  using tmp = tempDir("n2s-crash-");
  const src = `${tmp.path}/src`;
  writeSource(src);
  const expected = fingerprint(src);
  const target = await startTarget(kind, `${tmp.path}/repos`);
  try {
    // A push that is not killed says how often it reaches each point.
    const refLocation = target.location("reference");
    const refIndex = `${tmp.path}/reference.sqlite`;
    await cliOk(
      ["init", "--repo", refLocation, "--index", refIndex, "--pack-size", "256KiB"],
      target.env,
    );
    const tally = await fixturePush(target, refLocation, refIndex, src);
    assert.ok(tally !== null, "the reference push was killed");
    const all = crashPoints(seed, tally, FULL_POINTS);
    const points = FULL ? all : all.slice(0, CI_POINTS[kind]);
    console.log(
      `crash matrix on ${kind}: seed ${seed} (N2S_MATRIX_SEED), reference ${JSON.stringify(tally)}`,
    );
    for (const [i, point] of points.entries()) {
      await t.step(
        `${kind} ${i + 1}/${points.length}: kill -9 at ${point.phase}:${point.count}`,
        async () => {
          const seen = await crashAndResume(target, tmp.path, src, expected, `p${i}`, point);
          console.log(`  ${kind} seed ${seed} point ${i + 1}: ${seen}`);
        },
      );
    }
  } finally {
    await target.stop();
  }
}

Deno.test("crash matrix, local: kill -9 at seeded points, then the next push completes, check is clean, the pull is exact", async (t) => {
  await crashMatrix(t, "local", matrixSeed(1));
});

Deno.test("crash matrix, S3: kill -9 at seeded points, then the next push completes, check is clean, the pull is exact", async (t) => {
  await crashMatrix(t, "s3", matrixSeed(1) + 1000);
});
