// In-process fuzzing of the parsers a repository's holder can reach: thousands of seeded
// mutants of a real repository's blobs, manifests, packs, key files and config, in a Worker
// (fuzz_worker.ts) watched for hangs. Every violation is printed with its seed, case and
// mutation; N2S_FUZZ_CASE=i with the same N2S_MATRIX_SEED replays case i alone.

import assert from "node:assert/strict";
import { tempDir } from "../helpers/fs.ts";
import { FULL, matrixSeed, WATCHDOG_S } from "./common.ts";
import { buildFuzzRepository } from "./fuzz_repo.ts";
import type { FuzzJob, FuzzReport } from "./fuzz_worker.ts";

const CASES = FULL ? 20_000 : 1_500;

/** Runs the fuzz Worker; fails when it reports no progress for WATCHDOG_S seconds. */
function runWorker(
  job: FuzzJob,
): Promise<{ violations: FuzzReport[]; outcomes: Record<string, number> }> {
  const worker = new Worker(new URL("./fuzz_worker.ts", import.meta.url).href, { type: "module" });
  const violations: FuzzReport[] = [];
  let last = "setting up";
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        worker.terminate();
        reject(new Error(`no progress for ${WATCHDOG_S} s (a hang) at ${last}`));
      }, WATCHDOG_S * 1000);
    };
    arm();
    worker.onmessage = (e: MessageEvent<FuzzReport>) => {
      const r = e.data;
      arm();
      if (r.t === "case") last = `seed ${job.seed} case ${r.i}: ${r.desc}`;
      else if (r.t === "violation") violations.push(r);
      else {
        clearTimeout(timer);
        worker.terminate();
        if (r.t === "error") reject(new Error(`the fuzz Worker failed: ${r.message}`));
        else resolve({ violations, outcomes: r.outcomes });
      }
    };
    worker.onerror = (e) => {
      clearTimeout(timer);
      worker.terminate();
      e.preventDefault();
      reject(new Error(`the fuzz Worker crashed at ${last}: ${e.message}`));
    };
    worker.postMessage(job);
  });
}

Deno.test("parsers of stored objects fail with their own one-line errors naming the object, or read the intact content", async () => {
  using tmp = tempDir("n2s-fuzz-");
  const built = await buildFuzzRepository(tmp.path);
  const seed = matrixSeed(1);
  const only = Deno.env.get("N2S_FUZZ_CASE");
  const scratch = `${tmp.path}/scratch`;
  const { violations, outcomes } = await runWorker({
    repo: built.repo,
    passphrase: "matrix pw",
    seed,
    cases: only ? Number(only) + 1 : CASES,
    only: only ? Number(only) : undefined,
    scratch,
  });
  console.log(`parser fuzz: seed ${seed} (N2S_MATRIX_SEED), ${JSON.stringify(outcomes)}`);
  const shown = violations.slice(0, 30).map((v) =>
    v.t === "violation" ? `seed ${seed} case ${v.i}: ${v.desc}\n    ${v.problem}` : ""
  );
  assert.equal(violations.length, 0, `${violations.length} violations:\n${shown.join("\n")}`);
  // Most mutants are rejected, and each kind was drawn.
  for (const kind of ["blob", "manifest", "pack", "key", "config"]) {
    assert.ok((outcomes[`${kind} rejected`] ?? 0) > 0, `${kind} mutants were drawn and rejected`);
  }
});
