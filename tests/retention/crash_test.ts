// forget --prune killed with SIGKILL at seeded points (N2S_CRASH_AT) of the forget (manifests
// rewritten, index marked, manifests deleted) and of the prune (new packs, manifests rewritten,
// index moved, deletions). After each kill check --read-data finds no damage (unused objects
// only); the same command run again finishes, after which nothing is unused, every kept
// changeset restores as it was pushed, and exactly the blobs their states need are stored.

import assert from "node:assert/strict";
import { RETENTION_CRASH_PHASES } from "../../lib/testing/crash.ts";
import { CLI_PATH, n2sOk } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fs.ts";
import { matrixSeed, seeded } from "../matrix/common.ts";
import { blobsOf, checkClean, ENV, type Env, pulled, pushDays, setup, stored } from "./helpers.ts";

const DAYS = 10;
const KEEP = ["--keep-last", "2", "--keep-weekly", "2"];
/** The kept days (5 to 14 January 2026): the last two, and Sunday 11 January (the week before). */
const KEPT_DAYS = [6, 8, 9];
const COMMAND = ["forget", ...KEEP, "--prune", "--max-unused", "0%", "--json"];

/** Runs the CLI; returns its exit code, or null when SIGKILL stopped it. */
async function run(e: Env, args: string[], extra: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI_PATH, ...args, ...e.args],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...ENV, ...extra },
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

function copyDir(from: string, to: string): void {
  Deno.mkdirSync(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) {
    if (e.isDirectory) copyDir(`${from}/${e.name}`, `${to}/${e.name}`);
    else Deno.copyFileSync(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

/** A copy of the base repository and index, for one crash. */
function copyOf(base: Env, dir: string): Env {
  copyDir(base.repo, `${dir}/repo`);
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      Deno.copyFileSync(`${base.index}${suffix}`, `${dir}/index.sqlite${suffix}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return {
    dir,
    repo: `${dir}/repo`,
    index: `${dir}/index.sqlite`,
    src: base.src,
    args: ["--repo", `${dir}/repo`, "--index", `${dir}/index.sqlite`],
  };
}

Deno.test("forget --prune killed at seeded points leaves a repository check passes, and the next run finishes it", async (t) => {
  using tmp = tempDir("n2s-retention-crash-");
  Deno.mkdirSync(`${tmp.path}/base`);
  const base = await setup(`${tmp.path}/base`);
  const { ids, trees } = await pushDays(base, DAYS);
  const live = blobsOf(KEPT_DAYS.map((d) => trees[d]));

  // A run that is not killed says how often each point is reached.
  const ref = copyOf(base, Deno.makeTempDirSync({ dir: tmp.path, prefix: "ref-" }));
  const r = JSON.parse(await n2sOk([...COMMAND, ...ref.args], ENV));
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
  assert.equal(stored(ref.repo).copies, live.size);

  const seed = matrixSeed(7);
  const random = seeded(seed);
  const points = RETENTION_CRASH_PHASES.map((phase) => ({
    phase,
    count: 1 + Math.floor(random() * reached[phase]),
  }));
  console.log(
    `retention crash points: seed ${seed} (N2S_MATRIX_SEED), reached ${JSON.stringify(reached)}`,
  );
  for (const point of points) {
    const spec = `${point.phase}:${point.count}`;
    await t.step(`kill -9 at ${spec}`, async () => {
      const e = copyOf(base, Deno.makeTempDirSync({ dir: tmp.path, prefix: "p-" }));
      const killed = await run(e, COMMAND, { N2S_CRASH_AT: spec });
      assert.ok(killed.killed, `${spec}: not killed (exit ${killed.code}):\n${killed.stderr}`);

      const findings = await checkClean(e, `${spec}: after the kill`);
      const unexpected = findings.filter((f) => f.severity !== "unused");
      assert.deepEqual(unexpected, [], `${spec}: findings after the kill`);

      const again = await run(e, COMMAND);
      assert.equal(again.code, 0, `${spec}: the next run exited ${again.code}:\n${again.stderr}`);
      assert.deepEqual(await checkClean(e, `${spec}: after the next run`), []);
      const log = JSON.parse(await n2sOk(["log", "--json", ...e.args], ENV)) as { id: string }[];
      assert.deepEqual(log.map((c) => c.id), KEPT_DAYS.map((d) => ids[d]), spec);
      for (const d of KEPT_DAYS) {
        assert.deepEqual(await pulled(e, ids[d]), trees[d], `${spec}: day ${d}`);
      }
      const s = stored(e.repo);
      assert.equal(s.copies, live.size, `${spec}: one copy of each live blob`);
    });
  }
});
