// The n2s command line: a thin layer that parses arguments, calls the library and prints.
// Exit codes: 0 success, 1 operational error, 2 usage error.

import { CORE_COMMANDS } from "./lib/cli/commands.ts";
import { RECOVERY_COMMANDS } from "./lib/cli/recovery.ts";
import { CHECK_COMMANDS } from "./lib/cli/check.ts";
import { LOCK_COMMANDS } from "./lib/cli/lock.ts";
import { RETENTION_COMMANDS } from "./lib/cli/retention.ts";
import { INSPECT_COMMANDS } from "./lib/cli/inspect.ts";
import { INDEX_COMMANDS } from "./lib/cli/index_command.ts";
import { type Command, parse } from "./lib/cli/common.ts";
import { commandHelp, completion, manPage, overview, SHELLS } from "./lib/cli/docs.ts";
import { GLOBAL_OPTIONS, type OptionTable } from "./lib/cli/spec.ts";
import { UsageError } from "./lib/cli/prompt.ts";
import { didYouMean } from "./lib/cli/suggest.ts";
import { RELEASED, VERSION } from "./lib/version.ts";

const COMMANDS: Record<string, Command> = {
  ...CORE_COMMANDS,
  ...INSPECT_COMMANDS,
  ...CHECK_COMMANDS,
  ...RETENTION_COMMANDS,
  ...LOCK_COMMANDS,
  ...RECOVERY_COMMANDS,
  ...INDEX_COMMANDS,
};

const COMPLETION_OPTIONS = {} as const satisfies OptionTable;

COMMANDS.completion = {
  summary: "a completion script for bash, zsh or fish, from the command table",
  usage: "n2s completion bash|zsh|fish",
  options: COMPLETION_OPTIONS,
  subcommands: SHELLS,
  examples: [
    "n2s completion bash > ~/.local/share/bash-completion/completions/n2s",
    "n2s completion zsh > ~/.zfunc/_n2s   # with fpath+=(~/.zfunc) before compinit",
    "n2s completion fish > ~/.config/fish/completions/n2s.fish",
  ],
  run(args) {
    const { positionals } = parse(args, { ...GLOBAL_OPTIONS, ...COMPLETION_OPTIONS }, this.usage);
    const script = positionals.length === 1 ? completion(positionals[0], COMMANDS) : undefined;
    if (script === undefined) {
      const hint = positionals[0] === undefined ? "" : didYouMean(positionals[0], SHELLS);
      throw new UsageError(`name one shell: bash, zsh or fish${hint}`);
    }
    Deno.stdout.writeSync(new TextEncoder().encode(script));
    return Promise.resolve(0);
  },
};

const MAN_OPTIONS = {} as const satisfies OptionTable;

COMMANDS.man = {
  summary: "the man page (roff), from the command table",
  usage: "n2s man",
  options: MAN_OPTIONS,
  examples: ["n2s man > ~/.local/share/man/man1/n2s.1 && man n2s", "n2s man | man -l -"],
  run(args) {
    parse(args, { ...GLOBAL_OPTIONS, ...MAN_OPTIONS }, this.usage);
    const page = manPage(COMMANDS, VERSION, RELEASED);
    Deno.stdout.writeSync(new TextEncoder().encode(page));
    return Promise.resolve(0);
  },
};

/** Runs the CLI with `args` and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const verbose = args.includes("--verbose");
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h") {
    console.log(overview(COMMANDS));
    return 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`n2s ${VERSION}`);
    return 0;
  }
  if (name === "help") {
    if (rest[0] === undefined) {
      console.log(overview(COMMANDS));
      return 0;
    }
    const about = COMMANDS[rest[0]];
    if (!about) return unknownCommand(rest[0]);
    console.log(commandHelp(rest[0], about));
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) return unknownCommand(name);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(commandHelp(name, cmd));
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
