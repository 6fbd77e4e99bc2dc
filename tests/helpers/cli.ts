// Runs the real CLI in a subprocess, as a user would.

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** Output of one CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `n2s ARGS` with a cheap key cost and the given environment. */
export async function n2s(
  args: string[],
  env: Record<string, string> = {},
  opts: { cwd?: string } = {},
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, ...args],
    // INIT_CWD empty: a test runner started by `deno task` must not move the CLI elsewhere.
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", INIT_CWD: "", ...env },
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs the CLI and throws with its stderr unless it exits 0. */
export async function n2sOk(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await n2s(args, env);
  if (r.code !== 0) {
    throw new Error(`n2s ${args.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** The path of cli.ts, for tests that spawn it themselves. */
export const CLI_PATH = CLI;
