// Questions about what is stored: how two changesets differ (diff), one file's bytes or a tar
// of a directory (dump), and how much a changeset or the repository holds (stats).

import { displayPath } from "../format/names.ts";
import { UsageError } from "./prompt.ts";
import { type Command, note, out, parse, printJson, REPO_OPTIONS } from "./common.ts";
import { withStore } from "./commands.ts";
import { formatBytes } from "./progress.ts";
import type { OptionTable } from "./spec.ts";

const NO_OPTIONS = {} as const satisfies OptionTable;

const diff: Command = {
  summary: "what differs between the states at two changesets",
  usage: "n2s diff ID1 ID2 [--json]   (ids, prefixes, latest or latest:SOURCE)",
  options: NO_OPTIONS,
  examples: ["n2s diff 01KB3 latest", "n2s diff latest:data 01KC9 --json"],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...NO_OPTIONS }, this.usage);
    if (positionals.length !== 2) {
      throw new UsageError(`two changeset ids are needed\nusage: ${this.usage}`);
    }
    let failed = false;
    const code = await withStore(values, async (store) => {
      const d = await store.diff(positionals[0], positionals[1]);
      failed = printProblems(d.problems);
      if (values.json) {
        printJson(d);
        return;
      }
      for (const c of d.changes) {
        const fields = c.fields ? ` (${c.fields.join(", ")})` : "";
        out(`${c.change.padEnd(8)} ${displayPath(c.path)}${fields}`);
      }
      const n = (k: string) => d.changes.filter((c) => c.change === k).length;
      out(
        d.changes.length === 0
          ? `no differences between ${d.from} and ${d.to}`
          : `${d.from} → ${d.to}: ${n("added")} added, ${n("removed")} removed, ` +
            `${n("modified")} modified, ${n("metadata")} with other metadata only`,
      );
    });
    return failed ? 1 : code;
  },
};

/** Writes all of `bytes` to stdout. */
async function toStdout(bytes: Uint8Array): Promise<void> {
  for (let o = 0; o < bytes.length;) o += await Deno.stdout.write(bytes.subarray(o));
}

const dump: Command = {
  summary: "write one stored file to stdout, or a tar of a directory or pattern",
  usage: "n2s dump ID PATH|GLOB > OUTPUT   (a regular file: its bytes; else a POSIX tar)",
  options: NO_OPTIONS,
  examples: [
    "n2s dump latest reports/q3.csv > q3.csv",
    "n2s dump latest:data reports > reports.tar",
  ],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...NO_OPTIONS }, this.usage);
    if (positionals.length !== 2) {
      throw new UsageError(`a changeset id and a path are needed\nusage: ${this.usage}`);
    }
    let failed = false;
    const code = await withStore(values, async (store) => {
      const r = await store.dump(positionals[0], positionals[1], toStdout, {
        allowTar: !Deno.stdout.isTerminal(),
      });
      failed = printProblems(r.problems);
    });
    return failed ? 1 : code;
  },
};

const stats: Command = {
  summary: "files, bytes, stored bytes, packs and compression of a changeset or the repository",
  usage: "n2s stats [ID|latest[:SOURCE]] [--json]",
  options: NO_OPTIONS,
  examples: ["n2s stats", "n2s stats latest:data --json"],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...NO_OPTIONS }, this.usage);
    if (positionals.length > 1) {
      throw new UsageError(`at most one changeset id\nusage: ${this.usage}`);
    }
    let failed = false;
    const code = await withStore(values, async (store) => {
      const ratio = (r: number | null) => r === null ? "-" : `${r}x`;
      if (positionals.length === 0) {
        const s = await store.repositoryStats();
        if (values.json) printJson(s);
        else {
          out(`${s.changesets} changesets of ${s.sources} sources`);
          out(`file versions: ${s.blobs} (${formatBytes(s.bytes)})`);
          out(
            `stored:        ${formatBytes(s.storedBytes)} in ${s.packs} packs and ` +
              `${s.looseBlobs} loose blobs`,
          );
          out(`compression:   ${ratio(s.compressionRatio)}`);
        }
        return;
      }
      const s = await store.stats(positionals[0]);
      failed = printProblems(s.problems);
      if (values.json) printJson(s);
      else {
        out(`changeset ${s.changeset} of ${s.source}`);
        out(`files:         ${s.files} (${formatBytes(s.bytes)})`);
        out(`directories:   ${s.dirs}; links: ${s.links}; special files: ${s.specials}`);
        out(
          `stored:        ${formatBytes(s.storedBytes)} for ${s.blobs} blobs, in ${s.packs} ` +
            `packs and ${s.looseBlobs} loose blobs`,
        );
        out(`compression:   ${ratio(s.compressionRatio)}`);
      }
    });
    return failed ? 1 : code;
  },
};

/**
 * Names what is known to be missing from a state on stderr (the answer is incomplete); true
 * when there was anything.
 */
function printProblems(problems: { path: string; message: string }[]): boolean {
  for (const p of problems) {
    note(p.path === "" ? `n2s: ${p.message}` : `n2s: ${displayPath(p.path)}: ${p.message}`);
  }
  return problems.length > 0;
}

/** The inspection commands by name. */
export const INSPECT_COMMANDS: Record<string, Command> = { diff, dump, stats };
