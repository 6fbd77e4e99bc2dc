// Shared pieces of the command line: global options, opening the store, output helpers.

import { parseArgs, type ParseArgsConfig } from "node:util";
import { N2S } from "../n2s.ts";
import { defaultRepository, readUserConfig } from "../paths.ts";
import { getPassphrase, UsageError } from "./prompt.ts";
import { didYouMean } from "./suggest.ts";
import { GLOBAL_OPTIONS, type OptionTable, parseConfig } from "./spec.ts";

/**
 * A command: its line in the table (summary, synopsis, options, examples) and what it runs. The
 * options are what `parse` accepts besides the global ones, and what help, completion and the
 * man page show.
 */
export type Command = {
  summary: string;
  usage: string;
  options?: OptionTable;
  /** Subcommands named in the synopsis (`key add`, `recover index`), for completion. */
  subcommands?: readonly string[];
  /** Command lines that show the command in use. */
  examples?: readonly string[];
  run(args: string[]): Promise<number>;
};

/** Options every command accepts (the global options). */
export const REPO_OPTIONS = GLOBAL_OPTIONS;

/** parseArgs with usage errors turned into UsageError. */
export function parse<T extends ParseArgsConfig["options"]>(
  args: string[],
  options: T,
  usage: string,
) {
  try {
    const config = parseConfig(options as OptionTable) as T;
    return parseArgs({ args, options: config, allowPositionals: true, strict: true });
  } catch (e) {
    // One line: what is wrong, the closest valid option, and where the options are listed.
    const command = usage.split(" ").slice(0, 2).join(" ");
    const help = `run "n2s help ${usage.split(" ")[1]}" for its options`;
    const code = (e as { code?: string }).code;
    const msg = e instanceof Error ? e.message : String(e);
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const flag = /'(-{1,2}[^']*)'/.exec(msg)?.[1] ?? msg;
      const hint = flag.startsWith("--")
        ? didYouMean(flag.slice(2).split("=")[0], Object.keys(options ?? {}), "--")
        : "";
      throw new UsageError(`unknown option ${flag} for ${command}${hint}; ${help}`);
    }
    throw new UsageError(`${msg.split("\n")[0].replace(/\.$/, "")}; ${help}`);
  }
}

/** Where the repository is: --repo, N2S_REPOSITORY, the config file, or the embedded default. */
export function repositoryLocation(
  flag: string | undefined,
): { location: string; isDefault: boolean } {
  if (flag) return { location: flag, isDefault: false };
  const env = Deno.env.get("N2S_REPOSITORY");
  if (env) return { location: env, isDefault: false };
  const conf = readUserConfig();
  if (conf.repository) return { location: conf.repository, isDefault: false };
  return { location: defaultRepository(), isDefault: true };
}

/** The index file: --index, N2S_INDEX, the config file, or the per-repository default. */
export function indexLocation(flag: string | undefined): string | undefined {
  return flag ?? Deno.env.get("N2S_INDEX") ?? readUserConfig().index;
}

/** Opens the store named by the global options; asks for the passphrase only when needed. */
export async function openStore(
  values: { repo?: string; index?: string; "passphrase-file"?: string },
): Promise<N2S> {
  const { location } = repositoryLocation(values.repo);
  return await N2S.open({
    repository: location,
    index: indexLocation(values.index),
    passphrase: () => getPassphrase(values["passphrase-file"], false),
  });
}

const enc = new TextEncoder();

/** Writes a line to stdout. */
export function out(line: string): void {
  Deno.stdout.writeSync(enc.encode(line + "\n"));
}

/** Writes a line to stderr. */
export function note(line: string): void {
  Deno.stderr.writeSync(enc.encode(line + "\n"));
}

/** Prints a value as JSON on stdout. */
export function printJson(v: unknown): void {
  out(JSON.stringify(v, null, 2));
}

/** Formats rows as aligned columns. */
export function table(head: string[], rows: string[][]): string {
  // A loop, not Math.max(...rows): spreading a million rows overflows the stack.
  const w = head.map((h) => h.length);
  for (const r of rows) for (let i = 0; i < w.length; i++) w[i] = Math.max(w[i], r[i].length);
  const line = (r: string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]))).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}

/** Scrypt cost override for tests (N2S_KDF_LOG_N); the default is the safe one. */
export function kdfLogN(): number | undefined {
  const v = Deno.env.get("N2S_KDF_LOG_N");
  if (!v) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 10 || n > 22) {
    throw new UsageError("N2S_KDF_LOG_N must be an integer from 10 to 22");
  }
  return n;
}
