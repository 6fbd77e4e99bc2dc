// `n2s forget` (a retention policy: which changesets to keep) and `n2s prune` (delete what no
// kept changeset references, repack packs that are mostly unused).

import type { ForgetResult } from "../retention/forget.ts";
import { isEmptyPolicy, parseDuration, type RetentionPolicy } from "../retention/policy.ts";
import type { PruneResult } from "../retention/prune.ts";
import { lockMessages } from "./lock.ts";
import { formatBytes } from "./progress.ts";
import { UsageError } from "./prompt.ts";
import { type Command, openStore, out, parse, printJson, REPO_OPTIONS } from "./common.ts";
import type { OptionTable } from "./spec.ts";

const KEEP_RULES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"] as const;

/** A `--keep-*` count: a non-negative integer, or "unlimited". */
function keepCount(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (text === "unlimited") return -1;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new UsageError(`${flag} takes a count (or "unlimited"), not "${text}"`);
  }
  return n;
}

/** `--max-unused`: a percentage of each pack (e.g. 5%). */
function maxUnused(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  if (!m || Number(m[1]) > 100) {
    throw new UsageError(`--max-unused takes a percentage from 0% to 100%, not "${text}"`);
  }
  return Number(m[1]) / 100;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

function printForget(r: ForgetResult, dryRun: boolean, pruneNext: boolean): void {
  let source: string | null = null;
  for (const d of r.decisions) {
    if (d.source !== source) {
      source = d.source;
      out(`source ${source}:`);
    }
    out(
      `  ${d.keep ? "keep  " : "forget"} ${d.id}  ${d.created}` +
        (d.keep ? `  (${d.reasons.join(", ")})` : ""),
    );
  }
  const kept = r.decisions.length - r.forgotten.length;
  out(
    dryRun
      ? `would keep ${plural(kept, "changeset")} and forget ${r.forgotten.length} (dry run: ` +
        `nothing changed)`
      : `kept ${plural(kept, "changeset")}, forgot ${r.forgotten.length}; ` +
        `${plural(r.rewritten.length, "kept changeset")} rewritten onto the nearest kept ` +
        `ancestor` +
        (r.forgotten.length > 0 && !pruneNext ? `; "n2s prune" frees their storage` : ""),
  );
}

function printPrune(r: PruneResult, dryRun: boolean): void {
  const verb = dryRun ? "would delete" : "deleted";
  out(
    `${verb} ${plural(r.deletedBlobs, "unused blob object")} and ` +
      `${plural(r.deletedPacks, "unused pack")}; ${dryRun ? "would repack" : "repacked"} ` +
      `${plural(r.repackedPacks, "pack")} (${plural(r.copiedBlobs, "blob")} copied` +
      (dryRun ? "" : ` into ${plural(r.newPacks, "new pack")}, ` +
        `${plural(r.rewrittenManifests, "manifest")} rewritten`) +
      `); ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}` +
      (dryRun ? " (dry run: nothing changed)" : ""),
  );
}

const KEEP = (what: string, example: string) => ({
  type: "string" as const,
  value: "N",
  help: `keep the newest changeset of each of the last N ${what} that have one`,
  byDefault: "0",
  example,
});

const FORGET_OPTIONS = {
  source: {
    type: "string",
    value: "NAME",
    help: "apply the policy to this source only",
    byDefault: "every source, each on its own",
    example: "--source laptop-home",
  },
  "keep-last": {
    type: "string",
    value: "N",
    help: "keep the N newest changesets",
    byDefault: "0 (the newest of each source is always kept)",
    example: "--keep-last 10",
  },
  "keep-hourly": KEEP("hours", "--keep-hourly 24"),
  "keep-daily": KEEP("days", "--keep-daily 7"),
  "keep-weekly": KEEP("weeks", "--keep-weekly 4"),
  "keep-monthly": KEEP("months", "--keep-monthly 12"),
  "keep-yearly": KEEP("years", "--keep-yearly 5"),
  "keep-within": {
    type: "string",
    value: "DURATION",
    help: "keep every changeset newer than this, counted back from the newest (1y2m3d4h)",
    byDefault: "none",
    example: "--keep-within 14d",
  },
  "dry-run": {
    type: "boolean",
    help: "say what would be kept and forgotten; change nothing",
    byDefault: "off",
    example: "n2s forget --keep-daily 7 --dry-run",
  },
  prune: {
    type: "boolean",
    help: "then delete and repack what no kept changeset needs (as n2s prune)",
    byDefault: "off: only the changesets are forgotten",
    example: "n2s forget --keep-daily 7 --keep-weekly 4 --prune",
  },
  "max-unused": {
    type: "string",
    value: "N%",
    help: "with --prune: repack packs of which more than this share is unused",
    byDefault: "5%",
    example: "--max-unused 10%",
  },
  "no-wait": {
    type: "boolean",
    help: "fail at once when another command holds the repository's lock",
    byDefault: "off: wait for the lock",
    example: "--no-wait",
  },
} as const satisfies OptionTable;

const PRUNE_OPTIONS = {
  "dry-run": {
    type: "boolean",
    help: "say what would be deleted and repacked; change nothing",
    byDefault: "off",
    example: "n2s prune --dry-run",
  },
  "max-unused": {
    type: "string",
    value: "N%",
    help: "repack packs of which more than this share is unused",
    byDefault: "5%",
    example: "n2s prune --max-unused 0%",
  },
  "no-wait": {
    type: "boolean",
    help: "fail at once when another command holds the repository's lock",
    byDefault: "off: wait for the lock",
    example: "n2s prune --no-wait",
  },
} as const satisfies OptionTable;

const forget: Command = {
  summary: "forget changesets a retention policy does not keep (--prune: then prune)",
  usage: "n2s forget [--source NAME] [--keep-last N] [--keep-hourly N] [--keep-daily N] " +
    "[--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within 1y2m3d4h] " +
    "[--dry-run] [--prune [--max-unused 5%]] [--no-wait] [--json]",
  options: FORGET_OPTIONS,
  examples: [
    "n2s forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run",
    "n2s forget --source laptop-home --keep-within 30d --prune",
  ],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...FORGET_OPTIONS }, this.usage);
    const policy: RetentionPolicy = {};
    for (const rule of KEEP_RULES) {
      policy[rule] = keepCount(values[`keep-${rule}`], `--keep-${rule}`);
    }
    if (values["keep-within"] !== undefined) {
      try {
        policy.within = parseDuration(values["keep-within"]);
      } catch (e) {
        throw new UsageError(`--keep-within: ${e instanceof Error ? e.message : e}`);
      }
    }
    if (isEmptyPolicy(policy)) {
      throw new UsageError(`no --keep-* rule given: nothing would be kept\nusage: ${this.usage}`);
    }
    const limit = maxUnused(values["max-unused"]);
    if (limit !== undefined && !values.prune) {
      throw new UsageError("--max-unused goes with --prune");
    }
    const dryRun = values["dry-run"] ?? false;
    const store = await openStore(values);
    try {
      const lock = lockMessages("forget", !values["no-wait"]);
      const r = await store.forget({ policy, source: values.source, dryRun, lock });
      // A dry run forgets nothing, so a prune after it would free nothing of what it would forget.
      const pruned = values.prune && !dryRun
        ? await store.prune({ maxUnused: limit, lock: lockMessages("prune") })
        : undefined;
      if (values.json) printJson({ ...r, prune: pruned ?? null });
      else {
        printForget(r, dryRun, values.prune ?? false);
        if (pruned) printPrune(pruned, dryRun);
        else if (values.prune) out(`prune: not run (dry run); "n2s prune --dry-run" after forget`);
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};

const prune: Command = {
  summary: "delete what no changeset references; repack packs mostly unused",
  usage: "n2s prune [--dry-run] [--max-unused 5%] [--no-wait] [--json]",
  options: PRUNE_OPTIONS,
  examples: ["n2s prune --dry-run", "n2s prune --max-unused 10%"],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...PRUNE_OPTIONS }, this.usage);
    const limit = maxUnused(values["max-unused"]);
    const dryRun = values["dry-run"] ?? false;
    const store = await openStore(values);
    try {
      const r = await store.prune({
        dryRun,
        maxUnused: limit,
        lock: lockMessages("prune", !values["no-wait"]),
      });
      if (values.json) printJson(r);
      else printPrune(r, dryRun);
      return 0;
    } finally {
      await store.close();
    }
  },
};

/** The retention commands by name. */
export const RETENTION_COMMANDS: Record<string, Command> = { forget, prune };
