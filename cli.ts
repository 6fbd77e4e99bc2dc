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
import { didYouMean } from "./lib/cli/suggest.ts";
import { VERSION } from "./lib/version.ts";

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
    "usage: n2s COMMAND [OPTIONS]      n2s help COMMAND      n2s --version",
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
  if (name === undefined || name === "--help" || name === "-h") {
    console.log(help());
    return 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`n2s ${VERSION}`);
    return 0;
  }
  if (name === "help") {
    if (rest[0] === undefined) {
      console.log(help());
      return 0;
    }
    const about = COMMANDS[rest[0]];
    if (!about) return unknownCommand(rest[0]);
    console.log(`usage: ${about.usage}`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) return unknownCommand(name);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`usage: ${cmd.usage}`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    // A reader that stopped early (`n2s ls | head`) is not an error.
    if (e instanceof Deno.errors.BrokenPipe) return 0;
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

function unknownCommand(name: string): number {
  const hint = didYouMean(name, Object.keys(COMMANDS));
  console.error(`n2s: unknown command "${name}"${hint}; run "n2s help" for the list`);
  return 2;
}

/**
 * Under `deno task n2s`, Deno runs the CLI in the checkout and names the directory the task was
 * started from in INIT_CWD: relative paths on the command line mean that directory.
 */
function taskDirectory(): void {
  const from = Deno.env.get("INIT_CWD");
  if (!from || !import.meta.url.startsWith("file:")) return;
  const checkout = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
  try {
    if (Deno.cwd() === checkout && from !== checkout) Deno.chdir(from);
  } catch {
    // A directory that is gone: paths stay relative to the checkout.
  }
}

if (import.meta.main) {
  taskDirectory();
  Deno.exit(await main(Deno.args));
}
