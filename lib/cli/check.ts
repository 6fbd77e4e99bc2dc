// `n2s check`: finds damage before a restore needs the data, and `--repair` makes the next push
// store lost content again.

import { displayPath } from "../format/names.ts";
import { type CheckResult, parseSubset, type ReadData } from "../check.ts";
import { UsageError } from "./prompt.ts";
import { type Command, note, openStore, out, parse, printJson, REPO_OPTIONS } from "./common.ts";
import { formatBytes } from "./progress.ts";
import { lockMessages } from "./lock.ts";
import type { OptionTable } from "./spec.ts";

/** How many paths of one damaged changeset the text output names. */
const PATHS_SHOWN = 20;

const CHECK_OPTIONS = {
  "read-data": {
    type: "boolean",
    help: "also read every stored byte and verify it (tags, hashes, sizes, paths)",
    byDefault: "off: objects are listed and their sizes compared",
    example: "n2s check --read-data",
  },
  "read-data-subset": {
    type: "string",
    value: "N%|K/M",
    help: "read a share of the packs and blobs: a percentage, or part K of M",
    byDefault: "none",
    example: "n2s check --read-data-subset 1/7   # a seventh each day of the week",
  },
  repair: {
    type: "boolean",
    help: "record lost blobs so the next push stores them again; delete old temporary objects",
    byDefault: "off (check changes nothing)",
    example: "n2s check --repair",
  },
  "no-wait": {
    type: "boolean",
    help: "fail at once when another command holds a conflicting lock",
    byDefault: "off: wait for the lock",
    example: "n2s check --repair --no-wait",
  },
} as const satisfies OptionTable;

const check: Command = {
  summary: "verify the repository and the index; --read-data verifies content; --repair",
  usage: "n2s check [--read-data | --read-data-subset N%|K/M] [--repair] [--no-wait] [--json]",
  options: CHECK_OPTIONS,
  examples: ["n2s check", "n2s check --read-data --json > check.json", "n2s check --repair"],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...CHECK_OPTIONS }, this.usage);
    if (values["read-data"] && values["read-data-subset"]) {
      throw new UsageError(`--read-data and --read-data-subset exclude each other`);
    }
    let readData: ReadData = { kind: values["read-data"] ? "all" : "none" };
    if (values["read-data-subset"]) {
      try {
        readData = parseSubset(values["read-data-subset"]);
      } catch (e) {
        throw new UsageError(e instanceof Error ? e.message : String(e));
      }
    }
    const store = await openStore(values);
    try {
      const r = await store.check({
        readData,
        repair: values.repair ?? false,
        lock: lockMessages(values.repair ? "check --repair" : "check", !values["no-wait"]),
      });
      if (values.json) printJson(r);
      else printText(r);
      return r.findings.some((f) => f.severity === "damage") ? 1 : 0;
    } finally {
      await store.close();
    }
  },
};

function printText(r: CheckResult): void {
  for (const f of r.findings) {
    const where = [
      f.changeset ? `changeset ${f.changeset}` : "",
      f.path ? displayPath(f.path) : "",
    ].filter((x) => x !== "").join(", ");
    note(`${f.severity}: ${f.message}${where && !f.message.includes(where) ? ` [${where}]` : ""}`);
  }
  if (r.damagedChangesets.length > 0) {
    note("changesets that cannot be restored in full:");
    for (const d of r.damagedChangesets) {
      const shown = d.paths.slice(0, PATHS_SHOWN).map(displayPath);
      const more = d.paths.length > PATHS_SHOWN ? `, and ${d.paths.length - PATHS_SHOWN} more` : "";
      const holes = d.holes.length ? `; missing from its chain: ${d.holes.join(", ")}` : "";
      note(
        `  ${d.changeset} (${d.source}): ${d.paths.length} paths lost` +
          (shown.length ? `: ${shown.join(", ")}${more}` : "") + holes,
      );
    }
  }
  const damage = r.findings.filter((f) => f.severity === "damage").length;
  const read = r.readObjects > 0
    ? `; read and verified ${r.readObjects} objects (${formatBytes(r.readBytes)})`
    : "";
  out(
    `checked ${r.manifests} changesets, ${r.referenced} blobs they need, ${r.blobs} blob ` +
      `objects and ${r.packs} packs${read}: ` +
      (damage === 0 ? "no damage found" : `${damage} problems found`),
  );
  if (r.repaired) {
    out(
      `repaired: ${r.repaired.lostBlobs} lost blobs recorded (the next push of a source that ` +
        `still has those files stores them again), ${r.repaired.temporariesDeleted} temporary ` +
        `objects deleted`,
    );
  } else if (damage > 0) {
    out(`run "n2s check --repair" so that the next push stores lost content again`);
  }
}

export const CHECK_COMMANDS: Record<string, Command> = { check };
