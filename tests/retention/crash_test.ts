// forget --prune killed with SIGKILL at seeded points (N2S_CRASH_AT) of the forget (manifests
// rewritten, index marked, manifests deleted) and of the prune (new packs, manifests rewritten,
// index moved, deletions), on a local repository and on S3. After each kill check --read-data
// finds no damage (unused objects only); the same command run again finishes, after which nothing
// is unused, every kept changeset restores as it was pushed, and exactly the blobs their states
// need are stored. Local runs every phase; S3 a seeded three in CI, all with N2S_MATRIX=full.

import assert from "node:assert/strict";
import { openBackend } from "../../lib/backends/open.ts";
import { readAll } from "../../lib/backends/backend.ts";
import { findPackEntries } from "../../lib/format/pack.ts";
import { parseKey } from "../../lib/repository/layout.ts";
import { RETENTION_CRASH_PHASES } from "../../lib/testing/crash.ts";
import { CLI_PATH, n2sOk } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fs.ts";
import {
  FULL,
  matrixSeed,
  seeded,
  shuffled,
  startTarget,
  type TargetKind,
} from "../matrix/common.ts";
import { blobsOf, checkClean, copyIndex, type Env, pulled, pushDays, setupAt } from "./helpers.ts";

const DAYS = 10;
const KEEP = ["--keep-last", "2", "--keep-weekly", "2"];
/** The kept days (5 to 14 January 2026): the last two, and Sunday 11 January (the week before). */
const KEPT_DAYS = [6, 8, 9];
const COMMAND = ["forget", ...KEEP, "--prune", "--max-unused", "0%", "--json"];
const CI_POINTS: Record<string, number> = { local: RETENTION_CRASH_PHASES.length, s3: 3 };

/** Runs the CLI; says whether SIGKILL stopped it. */
async function run(e: Env, args: string[], extra: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI_PATH, ...args, ...e.args],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...e.env, ...extra },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    killed: out.signal === "SIGKILL",
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Blob copies stored (loose and in packs), read through the backend. */
async function storedCopies(e: Env): Promise<number> {
  const backend = await openBackend(e.repo, { env: { ...Deno.env.toObject(), ...e.env } });
  let copies = 0;
  try {
    for await (const o of backend.list("")) {
      const k = parseKey(o.key);
      if (k.kind === "blob") copies++;
      if (k.kind === "pack") {
        copies += findPackEntries(await readAll(await backend.get(o.key))).length;
      }
    }
  } finally {
    await backend.close();
  }
  return copies;
}

function copyDir(from: string, to: string): void {
  Deno.mkdirSync(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) {
    if (e.isDirectory) copyDir(`${from}/${e.name}`, `${to}/${e.name}`);
    else Deno.copyFileSync(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

interface Pushed {
  e: Env;
  ids: string[];
  trees: Record<string, string>[];
}

async function retentionCrash(t: Deno.TestContext, kind: TargetKind, seed: number) {
  using tmp = tempDir("n2s-retention-crash-");
  const target = await startTarget(kind, `${tmp.path}/repos`);
  try {
    // A month's first ten days, pushed once and copied for each point on a local directory, and
    // pushed again for each point elsewhere.
    let base: Pushed | null = null;
    const push = async (label: string): Promise<Pushed> => {
      const dir = `${tmp.path}/${label}`;
      Deno.mkdirSync(dir, { recursive: true });
      const e = await setupAt(dir, target.location(label), target.env);
      return { e, ...(await pushDays(e, DAYS)) };
    };
    const prepare = async (label: string): Promise<Pushed> => {
      if (kind !== "local") return await push(label);
      base ??= await push("base");
      const dir = `${tmp.path}/${label}`;
      Deno.mkdirSync(dir, { recursive: true });
      const repo = target.location(label);
      copyDir(base.e.repo, repo);
      const index = `${dir}/index.sqlite`;
      copyIndex(base.e.index, index);
      return {
        ...base,
        e: { ...base.e, dir, repo, index, args: ["--repo", repo, "--index", index] },
      };
    };

    // A run that is not killed says how often each point is reached.
    const ref = await prepare("reference");
    const r = JSON.parse(await n2sOk([...COMMAND, ...ref.e.args], ref.e.env));
    const reached: Record<string, number> = {
      "forget-manifest": r.rewritten.length,
      "forget-index": 1,
      "forget-delete": r.forgotten.length,
      "prune-pack": r.prune.newPacks,
      "prune-manifest": r.prune.rewrittenManifests,
      "prune-index": 1,
      "prune-delete": r.prune.deletedBlobs + r.prune.deletedPacks + r.prune.repackedPacks,
    };
    for (const p of RETENTION_CRASH_PHASES) assert.ok(reached[p] > 0, `${p} is never reached`);
    const live = blobsOf(KEPT_DAYS.map((d) => ref.trees[d])).size;
    assert.equal(await storedCopies(ref.e), live);

    const random = seeded(seed);
    const all = shuffled(RETENTION_CRASH_PHASES, random).map((phase) => ({
      phase,
      count: 1 + Math.floor(random() * reached[phase]),
    }));
    const points = FULL ? all : all.slice(0, CI_POINTS[kind]);
    console.log(
      `retention crash matrix on ${kind}: seed ${seed} (N2S_MATRIX_SEED), reached ` +
        JSON.stringify(reached),
    );
    for (const [i, point] of points.entries()) {
      const spec = `${point.phase}:${point.count}`;
      await t.step(`${kind}: kill -9 at ${spec}`, async () => {
        const { e, ids, trees } = await prepare(`p${i}`);
        const killed = await run(e, COMMAND, { N2S_CRASH_AT: spec });
        assert.ok(killed.killed, `${spec}: not killed (exit ${killed.code}):\n${killed.stderr}`);

        const findings = await checkClean(e, `${spec}: after the kill`);
        const unexpected = findings.filter((f) => f.severity !== "unused");
        assert.deepEqual(unexpected, [], `${spec}: findings after the kill`);

        const again = await run(e, COMMAND);
        assert.equal(again.code, 0, `${spec}: the next run exited ${again.code}:\n${again.stderr}`);
        assert.deepEqual(await checkClean(e, `${spec}: after the next run`), []);
        const log = JSON.parse(await n2sOk(["log", "--json", ...e.args], e.env));
        assert.deepEqual(log.map((c: { id: string }) => c.id), KEPT_DAYS.map((d) => ids[d]));
        for (const d of KEPT_DAYS) {
          assert.deepEqual(await pulled(e, ids[d]), trees[d], `${spec}: day ${d}`);
        }
        assert.equal(await storedCopies(e), live, `${spec}: one copy of each live blob`);
      });
    }
  } finally {
    await target.stop();
  }
}

Deno.test("retention crash matrix, local: forget --prune killed at each point leaves a repository check passes, and the next run finishes it", async (t) => {
  await retentionCrash(t, "local", matrixSeed(7));
});

Deno.test("retention crash matrix, S3: forget --prune killed at seeded points leaves a repository check passes, and the next run finishes it", async (t) => {
  await retentionCrash(t, "s3", matrixSeed(7) + 1000);
});
