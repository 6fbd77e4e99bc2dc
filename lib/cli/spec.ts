// The table every command is defined by: its options with their help, defaults and examples.
// Parsing, `--help`, shell completion and the man page all read it, so that they cannot
// disagree.

import type { ParseArgsConfig } from "node:util";

/** One option of a command. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** May be given more than once. */
  multiple?: boolean;
  /** A one-letter alias. */
  short?: string;
  /** The value's placeholder in help (ID, DIR, N). */
  value?: string;
  /** One line: what the option does. */
  help: string;
  /** The default, as help shows it; absent when there is none. */
  byDefault?: string;
  /** One example of use. */
  example?: string;
  /** What a shell completes for the value: files, directories, or one of a fixed list. */
  complete?: "file" | "dir" | readonly string[];
}

/** Options by long name (without the dashes). */
export type OptionTable = Record<string, OptionSpec>;

/** The options every command takes. */
export const GLOBAL_OPTIONS = {
  repo: {
    type: "string",
    value: "LOCATION",
    help: "the repository: a directory, sftp://, s3://, ipfs://, rclone:",
    byDefault: "$N2S_REPOSITORY, else the config file, else ~/.local/share/n2s/repository",
    example: "--repo sftp://nas/backups/n2s",
    complete: "dir",
  },
  index: {
    type: "string",
    value: "FILE|URL",
    help: "the index: a SQLite file, or postgres://USER@HOST/DATABASE",
    byDefault: "$N2S_INDEX, else the config file, else one SQLite file per repository",
    example: "--index postgres://n2s@db.example.org/n2s",
    complete: "file",
  },
  "passphrase-file": {
    type: "string",
    value: "FILE",
    help: "read the passphrase from FILE",
    byDefault: "$N2S_PASSPHRASE, else a prompt",
    example: "--passphrase-file ~/.n2s-pass",
    complete: "file",
  },
  json: {
    type: "boolean",
    help: "print the result as JSON on stdout",
    byDefault: "text",
    example: "--json",
  },
  verbose: {
    type: "boolean",
    help: "on an error, print its stack as well",
    byDefault: "off",
    example: "--verbose",
  },
} as const satisfies OptionTable;

/** The parseArgs configuration for a table (help fields left out). */
export function parseConfig(table: OptionTable): NonNullable<ParseArgsConfig["options"]> {
  const out: NonNullable<ParseArgsConfig["options"]> = {};
  for (const [name, o] of Object.entries(table)) {
    out[name] = {
      type: o.type,
      ...(o.multiple ? { multiple: true } : {}),
      ...(o.short ? { short: o.short } : {}),
    };
  }
  return out;
}
