// Runs the failure matrices in full (CI runs a seeded subset of each): 20 kill -9 points per
// backend, more fault seeds per backend, 20,000 parser mutants and 300 CLI mutants.
// usage: deno run -A scripts/matrix.ts [crash|faults|fuzz|all]... [--seed N] [--seeds N,M,...]
// See docs/TESTING.md.

import { parseArgs } from "node:util";

const FILES: Record<string, string[]> = {
  crash: ["tests/matrix/crash_test.ts", "tests/retention/crash_test.ts"],
  faults: ["tests/matrix/faults_test.ts"],
  fuzz: ["tests/matrix/fuzz_parsers_test.ts", "tests/matrix/fuzz_cli_test.ts"],
};

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { seed: { type: "string" }, seeds: { type: "string" } },
  allowPositionals: true,
});
const chosen = positionals.length === 0 || positionals.includes("all")
  ? Object.keys(FILES)
  : positionals;
for (const c of chosen) {
  if (!FILES[c]) {
    console.error(`matrix.ts: unknown matrix "${c}"; choose among crash, faults, fuzz, all`);
    Deno.exit(2);
  }
}
const env: Record<string, string> = { N2S_MATRIX: "full" };
if (values.seed !== undefined) env.N2S_MATRIX_SEED = values.seed;
if (values.seeds !== undefined) env.N2S_MATRIX_SEEDS = values.seeds;
const root = new URL("..", import.meta.url).pathname;
const status = await new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", ...chosen.flatMap((c) => FILES[c])],
  cwd: root,
  env,
  stdin: "null",
}).spawn().status;
Deno.exit(status.code);
