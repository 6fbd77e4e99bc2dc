// The fault matrix: on every backend against its real server, a push, a second push, pulls and
// `check --read-data` with a fifth of all backend calls failing transiently (some gets breaking
// after their first piece, as a reset connection does) and a fifth of them slowed down
// (N2S_FAULTS), give what the same commands give without faults: the same changeset content, an
// identical restore, a clean check. CI runs one seed per backend; scripts/matrix.ts runs more.

import assert from "node:assert/strict";
import { seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import {
  assertSameEntries,
  fingerprint,
  matrixSeeds,
  runDeno,
  startTarget,
  type Target,
  type TargetKind,
  WATCHDOG_S,
} from "./common.ts";

const SOURCE = "fault-matrix";
const RETRY = "attempts=12,base=5,max=100";

/** The first state: a few dozen small files, one of 3 MiB, a link, modes, an empty directory. */
function writeFirst(dir: string): void {
  const files: Record<string, Uint8Array | string> = {
    "big.bin": seededBytes(3 * 1024 * 1024 + 7, 41),
    "empty": "",
    "run.sh": "#!/bin/sh\nexit 0\n",
  };
  for (let i = 0; i < 36; i++) {
    files[`${["docs", "src/lib", "data"][i % 3]}/f${i}.txt`] = `file ${i}\n`.repeat(1 + i * 40);
  }
  writeTree(dir, files);
  Deno.chmodSync(`${dir}/run.sh`, 0o755);
  Deno.mkdirSync(`${dir}/empty-dir`);
  Deno.symlinkSync("docs/f0.txt", `${dir}/link`);
}

/** The second state: an edit, a deletion, new files, a mode change alone. */
function writeSecond(dir: string): void {
  writeTree(dir, {
    "docs/f0.txt": "edited\n",
    "new/one.bin": seededBytes(200_000, 42),
    "new/two.txt": "two\n",
  });
  Deno.removeSync(`${dir}/src/lib/f1.txt`);
  Deno.chmodSync(`${dir}/data/f2.txt`, 0o600);
}

/** What a changeset records, without what differs between repositories (keyed blob ids, times). */
type Content = string[];

interface RunResult {
  content: Content[];
  retries: number;
}

/**
 * init, push, change, push, pull both, check, on a fresh repository at `sub`; with `seed`, every
 * command runs with faults (its own seed, so that commands do not repeat one another's draws).
 */
async function roundTrip(
  target: Target,
  dir: string,
  sub: string,
  seed: number | null,
): Promise<RunResult> {
  const location = target.location(sub);
  const args = ["--repo", location, "--index", `${dir}/${sub}.sqlite`];
  const src = `${dir}/${sub}-src`;
  let command = 0;
  let stderr = "";
  const run = async (a: string[]) => {
    const env: Record<string, string> = { ...target.env };
    if (seed !== null) {
      env.N2S_FAULTS = `transient=0.2,delay=0.2,delay_ms=30,seed=${seed * 1000 + command}`;
      env.N2S_RETRY = RETRY;
    }
    command++;
    const r = await runDeno(a, env);
    stderr += r.stderr;
    const what = `${target.name} ${sub}: n2s ${a.join(" ")} (${env.N2S_FAULTS ?? "no faults"})`;
    assert.ok(!r.hung, `${what} ran for more than ${WATCHDOG_S} s`);
    assert.equal(r.code, 0, `${what} exited ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  await run(["init", ...args]);
  writeFirst(src);
  const first = fingerprint(src);
  const push = ["push", "--scan", src, "--source", SOURCE, "--json", ...args];
  const one = JSON.parse(await run(push)).changeset;
  writeSecond(src);
  const second = fingerprint(src);
  const two = JSON.parse(await run(push)).changeset;
  const content: Content[] = [];
  for (const [cs, expected] of [[one, first], [two, second]] as const) {
    const rows = JSON.parse(await run(["ls", cs, "--json", ...args])) as Record<string, unknown>[];
    content.push(
      rows.map((r) => JSON.stringify([r.path, r.action, r.size, r.fileHash, r.target])).sort(),
    );
    const out = `${dir}/${sub}-out-${cs}`;
    await run(["pull", "--changeset-id", cs, "--target-path", out, ...args]);
    assertSameEntries(out, expected, `${target.name} ${sub}: pull of ${cs}`);
  }
  const check = JSON.parse(await run(["check", "--read-data", "--json", ...args]));
  assert.deepEqual(check.findings, [], `${target.name} ${sub}: check findings`);
  assert.ok(check.readObjects > 0);
  const retries = stderr.match(/^retrying \w+ .*injected transient fault/gm)?.length ?? 0;
  return { content, retries };
}

/** What the changesets hold without faults: the same on every backend, so made once, locally. */
let reference: Promise<Content[]> | null = null;

async function withoutFaults(): Promise<Content[]> {
  using tmp = tempDir("n2s-faults-");
  const local = await startTarget("local", `${tmp.path}/repos`);
  return (await roundTrip(local, tmp.path, "clean", null)).content;
}

async function faultMatrix(t: Deno.TestContext, kind: TargetKind): Promise<void> {
  const clean = { content: await (reference ??= withoutFaults()) };
  using tmp = tempDir("n2s-faults-");
  const target = await startTarget(kind, `${tmp.path}/repos`);
  try {
    for (const seed of matrixSeeds(1, 4)) {
      await t.step(`${kind}, seed ${seed}: the same changesets, restores and check`, async () => {
        const faulty = await roundTrip(target, tmp.path, `seed-${seed}`, seed);
        console.log(`fault matrix on ${kind}, seed ${seed}: ${faulty.retries} injected retries`);
        assert.deepEqual(faulty.content, clean.content, "the changesets hold the same entries");
        assert.ok(faulty.retries >= 5, `faults were injected and retried (${faulty.retries})`);
      });
    }
  } finally {
    await target.stop();
  }
}

for (const kind of ["local", "sftp", "s3", "ipfs", "rclone"] as const) {
  Deno.test(`fault matrix, ${kind}: transient failures, broken gets and slow calls change nothing`, async (t) => {
    await faultMatrix(t, kind);
  });
}
