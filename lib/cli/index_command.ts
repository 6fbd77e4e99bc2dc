// `n2s index migrate --to LOCATION`: moves the index to another engine or file (SQLite to
// PostgreSQL, typically). The repository is not touched and needs no passphrase: only its id is
// read, so that both indexes are known to belong to it.

import { resolve } from "node:path";
import { openBackend } from "../backends/open.ts";
import { migrateIndex } from "../index/migrate.ts";
import { Index, parseIndexLocation } from "../index/sqlite.ts";
import { defaultIndexPath } from "../paths.ts";
import { readConfig } from "../repository/repository.ts";
import {
  type Command,
  indexLocation,
  note,
  out,
  parse,
  printJson,
  REPO_OPTIONS,
  repositoryLocation,
} from "./common.ts";
import { UsageError } from "./prompt.ts";
import type { OptionTable } from "./spec.ts";

const INDEX_OPTIONS = {
  to: {
    type: "string",
    value: "FILE|URL",
    help: "the index to copy every row into: a new SQLite file or an empty PostgreSQL database",
    byDefault: "none: required",
    example: "--to postgres://n2s@db.example.org/n2s",
  },
} as const satisfies OptionTable;

/** A location as the index opens it: files as absolute paths. */
function absolute(location: string): string {
  const where = parseIndexLocation(location);
  return where.kind === "sqlite" ? resolve(where.path) : where.url;
}

const index: Command = {
  summary: "move the index to PostgreSQL or another file (index migrate --to LOCATION)",
  usage: "n2s index migrate --to FILE|URL [--repo LOCATION] [--index FILE|URL] [--json]",
  options: INDEX_OPTIONS,
  subcommands: ["migrate"],
  examples: [
    "n2s index migrate --to postgres://n2s@db.example.org/n2s",
    "n2s index migrate --index postgres://n2s@db/n2s --to ~/n2s-index.sqlite",
  ],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...INDEX_OPTIONS }, this.usage);
    if (positionals.length !== 1 || positionals[0] !== "migrate") {
      throw new UsageError(`what to do with the index is needed\nusage: ${this.usage}`);
    }
    if (values.to === undefined) {
      throw new UsageError(`--to is needed: where the index goes\nusage: ${this.usage}`);
    }
    const { location } = repositoryLocation(values.repo);
    const backend = await openBackend(location);
    let id: string;
    try {
      id = (await readConfig(backend)).id;
    } finally {
      await backend.close();
    }
    const fromLocation = absolute(indexLocation(values.index) ?? defaultIndexPath(id));
    const toLocation = absolute(values.to);
    if (fromLocation === toLocation) {
      throw new UsageError(`--to names the index itself (${values.to}); give another location`);
    }
    const to = parseIndexLocation(toLocation);
    if (to.kind === "sqlite") {
      try {
        await Deno.stat(to.path);
        throw new Error(
          `index ${to.path} exists; migrate into a file that does not exist yet`,
        );
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    const from = Index.open(fromLocation, id);
    try {
      const target = Index.open(toLocation, id);
      try {
        const r = migrateIndex(from, target, {
          onProgress: values.json ? undefined : (done, total) => {
            if (done === total || done % 100 === 0) note(`copied ${done}/${total} changesets`);
          },
        });
        if (values.json) printJson(r);
        else {
          out(
            `copied ${r.changesets} changesets, ${r.files} entries and ${r.lostBlobs} lost ` +
              `blobs from ${r.from} to ${r.to}`,
          );
          out(
            `use it with --index ${values.to}, N2S_INDEX or "index" in the config file; ` +
              `${r.from} is left as it was`,
          );
        }
        return 0;
      } finally {
        target.close();
      }
    } finally {
      from.close();
    }
  },
};

/** The index's own commands. */
export const INDEX_COMMANDS: Record<string, Command> = { index };
