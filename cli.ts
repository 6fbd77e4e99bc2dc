// The n2s command line: a thin layer that parses arguments, calls the library and prints.
// Exit codes: 0 success, 1 operational error, 2 usage error.

import { CORE_COMMANDS } from "./lib/cli/commands.ts";
import { RECOVERY_COMMANDS } from "./lib/cli/recovery.ts";
import { CHECK_COMMANDS } from "./lib/cli/check.ts";
import { LOCK_COMMANDS } from "./lib/cli/lock.ts";
import { RETENTION_COMMANDS } from "./lib/cli/retention.ts";
import { INSPECT_COMMANDS } from "./lib/cli/inspect.ts";
import type { Command } from "./lib/cli/common.ts";
import { UsageError } from "./lib/cli/prompt.ts";

const COMMANDS: Record<string, Command> = {
  ...CORE_COMMANDS,
  ...INSPECT_COMMANDS,
  ...CHECK_COMMANDS,
  ...RETENTION_COMMANDS,
  ...LOCK_COMMANDS,
  ...RECOVERY_COMMANDS,
};

function help(): string {
  const names = Object.keys(COMMANDS);
  const w = Math.max(...names.map((n) => n.length));
  return [
    "n2s: encrypted, path-aware storage of changing files",
    "",
    "usage: n2s COMMAND [OPTIONS]",
    "",
    ...names.map((n) => `  ${n.padEnd(w)}  ${COMMANDS[n].summary}`),
    "",
    "Common options: --repo LOCATION, --index FILE, --passphrase-file FILE, --json, --verbose",
    "Environment: N2S_REPOSITORY, N2S_INDEX, N2S_PASSPHRASE, N2S_CONFIG",
  ].join("\n");
}

/** Runs the CLI with `args` and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const verbose = args.includes("--verbose");
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`n2s: unknown command "${name}"; run "n2s help" for the list`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`usage: ${cmd.usage}`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`n2s ${name}: ${e.message}`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`n2s ${name}: ${msg.split("\n")[0]}`);
    if (verbose && e instanceof Error && e.stack) console.error(e.stack);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
