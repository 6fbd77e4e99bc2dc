// The benchmark: n2s, restic and borg on the same seeded datasets, each on a fresh local
// repository: first backup, a backup with no change, a backup after touching 1% of the files,
// and a full restore. Prints wall time, MB/s, files/s, peak RSS, repository size and the ratios
// n2s / restic and n2s / borg from the same run.
//
//   deno task bench                       all datasets, all tools, once
//   deno task bench --quick               scaled-down datasets, for development (under a minute)
//   deno task bench --datasets small --tools n2s,restic --repeat 3
//   deno task bench --n2s "deno run -A dist/n2s.js"   measure another n2s build
//   deno task bench --backends            also run scripts/bench_backends.ts when present
//   deno task bench --memory              also run scripts/bench_memory.ts (zeros, sparse, text)
//   deno task bench --ceilings            measure the disk's ceilings (lib/perf/ceilings.c) only
//   deno task bench --quick --no-wait     do not wait out recent deletions (development only)
//
// Nothing is deleted while tools are measured: every run's repositories and restores stay until
// the report is written. On ext4 without a journal (this machine) creating files costs several
// times more for minutes after many files were deleted nearby (the inode allocator skips inodes
// deleted less than 60 s ago, 360 s while their inode table block is dirty; see
// docs/BENCHMARKS.md), which would penalise whichever tool runs after a deletion. So the time of
// every deletion is kept in .bench/deleted-at, and a run first waits until it is 6 minutes old.

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { type DatasetInfo, datasetSpecs, ensureDataset, touchOnePercent } from "./bench_data.ts";
import {
  borgTool,
  duBytes,
  ensurePeers,
  type Measured,
  n2sTool,
  resticTool,
  sameTree,
  settle,
  type Tool,
} from "./bench_tools.ts";

const OPS = ["init", "first", "nochange", "touch", "restore", "check"] as const;
type Op = typeof OPS[number];
const OP_LABEL: Record<Op, string> = {
  init: "init",
  first: "first backup",
  nochange: "no-change backup",
  touch: "backup after touching 1%",
  restore: "full restore",
  check: "check, reading all data",
};

interface Sample extends Measured {
  dataset: string;
  tool: string;
  op: Op;
  repoBytes?: number;
  verified?: boolean;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    datasets: { type: "string" },
    tools: { type: "string", default: "n2s,restic,borg" },
    repeat: { type: "string", default: "1" },
    dir: { type: "string", default: ".bench" },
    n2s: { type: "string" },
    out: { type: "string" },
    "no-verify": { type: "boolean" },
    backends: { type: "boolean" },
    memory: { type: "boolean" },
    ceilings: { type: "boolean" },
    "no-wait": { type: "boolean" },
    "ceiling-files": { type: "string", default: "20000" },
    "ceiling-mib": { type: "string", default: "2048" },
  },
});

const quick = values.quick ?? false;
const root = resolve(values.dir!);
const dataRoot = join(root, quick ? "data-quick" : "data");
const specs = datasetSpecs(quick);
const wanted = (values.datasets ?? (quick ? "large,small" : "large,small,mixed")).split(",");
const toolNames = values.tools!.split(",");
const repeat = Math.max(1, Number(values.repeat));
const repoRoot = new URL("..", import.meta.url).pathname;
const n2sCmd = values.n2s?.split(" ") ??
  ["deno", "run", "--allow-all", "--cached-only", join(repoRoot, "cli.ts")];

const log = (s: string) => console.error(`[bench] ${s}`);

/** After deletions, how long ext4 without a journal can keep creations slow. */
const RECENTLY_DELETED_S = 370;
const deletedAt = join(root, "deleted-at");

/** Deletes trees under `root` and notes when, so that the next run can wait it out. */
async function removeTrees(names: string[]): Promise<void> {
  for (const name of names) {
    try {
      await Deno.remove(join(root, name), { recursive: true });
      await Deno.mkdir(root, { recursive: true });
      await Deno.writeTextFile(deletedAt, new Date().toISOString() + "\n");
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** Deletes what earlier runs left (work trees, ceiling files), then waits out the deletions. */
async function clearLeftovers(): Promise<void> {
  await removeTrees(["work", "ceilings"]);
  await waitOutDeletions();
}

/** Waits until the last deletion noted in `deleted-at` is RECENTLY_DELETED_S old. */
async function waitOutDeletions(): Promise<void> {
  let last = 0;
  try {
    last = Date.parse(Deno.readTextFileSync(deletedAt).trim());
  } catch {
    return;
  }
  const wait = last + RECENTLY_DELETED_S * 1000 - Date.now();
  if (wait > 0 && values["no-wait"]) {
    log(
      `files were deleted here ${((Date.now() - last) / 1000).toFixed(0)} s ago: file ` +
        `creation may be slower than normal (--no-wait)`,
    );
  } else if (wait > 0) {
    await settle();
    log(
      `files were deleted here ${((Date.now() - last) / 1000).toFixed(0)} s ago; waiting ` +
        `${(wait / 1000).toFixed(0)} s so that file creation runs at its normal speed`,
    );
    await new Promise((r) => setTimeout(r, wait));
  }
}

if (values.ceilings) {
  await clearLeftovers();
  await runCeilings();
  Deno.exit(0);
}

if (toolNames.includes("restic") || toolNames.includes("borg")) await ensurePeers();
await clearLeftovers();
const samples: Sample[] = [];
const infos = new Map<string, DatasetInfo>();

function makeTool(name: string, work: string): Tool {
  if (name === "n2s") return n2sTool(work, n2sCmd);
  if (name === "restic") return resticTool(work);
  if (name === "borg") return borgTool(work);
  throw new Error(`unknown tool ${name}`);
}

/** Bytes free on the file system that holds `dir`, from df. */
async function freeBytes(dir: string): Promise<number> {
  const out = await new Deno.Command("df", { args: ["-B1", "--output=avail", dir] }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim().split("\n").pop());
  return out.success && Number.isFinite(n) ? n : Infinity;
}

for (const [k, name] of wanted.entries()) {
  if (k > 0 && !quick) {
    // The previous dataset's repositories and restores are measured: deleting them keeps the
    // room needed to one dataset's (the quick datasets are small enough to keep). Deleting slows file creation for minutes (and a mount with
    // `discard` trims the freed blocks), which the next dataset must not pay for: that is
    // waited out.
    await removeTrees(["work"]);
    await waitOutDeletions();
  }
  const spec = specs.find((s) => s.name === name);
  if (!spec) throw new Error(`unknown dataset ${name}`);
  log(`dataset ${name}: generating if missing`);
  const info = ensureDataset(dataRoot, spec);
  infos.set(name, info);
  // Every run keeps its repository and its restore until the report: check the room first,
  // rather than fail halfway with nothing reported.
  await Deno.mkdir(root, { recursive: true });
  const need = info.bytes * 2.3 * toolNames.length * repeat;
  const free = await freeBytes(root);
  if (free < need) {
    throw new Error(
      `dataset ${name} needs about ${(need / 1e9).toFixed(1)} GB free under ${root} ` +
        `(${toolNames.length} tools × ${repeat} repeats, each keeping its repository and ` +
        `restore until the report); ${(free / 1e9).toFixed(1)} GB are free. Free some space, ` +
        `or measure fewer --datasets, --tools or --repeat.`,
    );
  }
  for (let r = 0; r < repeat; r++) {
    for (const toolName of toolNames) {
      const work = join(root, "work", `${toolName}-${name}-${r + 1}`);
      await Deno.mkdir(work, { recursive: true });
      const tool = makeTool(toolName, work);
      const add = (op: Op, m: Measured, extra: Partial<Sample> = {}) => {
        samples.push({ ...m, dataset: name, tool: toolName, op, ...extra });
        log(
          `${name} ${toolName} ${op}: ${m.wall.toFixed(2)} s, ${m.rssMiB.toFixed(0)} MiB` +
            (extra.repoBytes ? `, repo ${(extra.repoBytes / 1e6).toFixed(1)} MB` : "") +
            (extra.verified === false ? ", RESTORE DIFFERS" : ""),
        );
      };
      await settle();
      add("init", await tool.init());
      await settle();
      const first = await tool.backup(info.dir);
      add("first", first, { repoBytes: await duBytes(tool.repoDir) });
      await settle();
      add("nochange", await tool.backup(info.dir));
      touchOnePercent(info.dir, new Date());
      await settle();
      add("touch", await tool.backup(info.dir));
      const target = join(work, "restore");
      await Deno.mkdir(target, { recursive: true });
      await settle();
      const m = await tool.restore(info.dir, target);
      const verified = values["no-verify"]
        ? undefined
        : await sameTree(info.dir, tool.restoredPath(info.dir, target));
      add("restore", m, { verified });
      await settle();
      add("check", await tool.check());
    }
  }
}

// --- report -------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Row {
  dataset: string;
  op: Op;
  tool: string;
  wall: number;
  rss: number;
  cpu: number;
  repoBytes?: number;
  verified?: boolean;
  n: number;
}

const rows: Row[] = [];
for (const d of wanted) {
  for (const op of OPS) {
    for (const t of toolNames) {
      const s = samples.filter((x) => x.dataset === d && x.op === op && x.tool === t);
      if (s.length === 0) continue;
      const repo = s.filter((x) => x.repoBytes !== undefined).map((x) => x.repoBytes!);
      rows.push({
        dataset: d,
        op,
        tool: t,
        wall: median(s.map((x) => x.wall)),
        rss: Math.max(...s.map((x) => x.rssMiB)),
        cpu: median(s.map((x) => x.cpu)),
        repoBytes: repo.length ? median(repo) : undefined,
        verified: s.some((x) => x.verified === false)
          ? false
          : s.some((x) => x.verified)
          ? true
          : undefined,
        n: s.length,
      });
    }
  }
}

const f = (x: number, d = 1) => x.toLocaleString("en-US", { maximumFractionDigits: d });
const lines: string[] = [];
lines.push(
  `Datasets (${quick ? "quick" : "full"}): ` +
    [...infos].map(([n, i]) => `${n} ${f(i.files, 0)} files, ${f(i.bytes / 1e6, 0)} MB`).join(
      "; ",
    ) + `. Repeats: ${repeat} (medians; peak RSS is the maximum).`,
);
lines.push("");
lines.push(
  "| dataset | operation | tool | wall s | MB/s | files/s | peak RSS MiB | cpu s | repo MB |",
);
lines.push("|---|---|---|---:|---:|---:|---:|---:|---:|");
for (const r of rows) {
  const info = infos.get(r.dataset)!;
  const thru = r.op !== "init";
  lines.push(
    `| ${r.dataset} | ${OP_LABEL[r.op]} | ${r.tool} | ${r.wall.toFixed(2)} | ` +
      `${thru ? f(info.bytes / 1e6 / r.wall) : "–"} | ${
        thru ? f(info.files / r.wall, 0) : "–"
      } | ` +
      `${f(r.rss, 0)} | ${r.cpu.toFixed(1)} | ` +
      `${r.repoBytes !== undefined ? f(r.repoBytes / 1e6) : ""}${
        r.verified === false ? " RESTORE DIFFERS" : ""
      } |`,
  );
}

const peers = toolNames.filter((t) => t !== "n2s");
if (toolNames.includes("n2s") && peers.length > 0) {
  lines.push("");
  lines.push(
    "Speed ratios (peer wall time / n2s wall time; above 1 means n2s is faster):",
  );
  lines.push("");
  lines.push(`| dataset | operation | ${peers.map((p) => `n2s / ${p}`).join(" | ")} |`);
  lines.push(`|---|---|${peers.map(() => "---:").join("|")}|`);
  for (const d of wanted) {
    for (const op of OPS) {
      const me = rows.find((r) => r.dataset === d && r.op === op && r.tool === "n2s");
      if (!me) continue;
      const cells = peers.map((p) => {
        const o = rows.find((r) => r.dataset === d && r.op === op && r.tool === p);
        return o ? `${(o.wall / me.wall).toFixed(2)}×` : "–";
      });
      lines.push(`| ${d} | ${OP_LABEL[op]} | ${cells.join(" | ")} |`);
    }
  }
  if (toolNames.includes("restic")) {
    const get = (d: string, op: Op, t: string) =>
      rows.find((r) => r.dataset === d && r.op === op && r.tool === t);
    const ratio = (d: string, op: Op) => {
      const a = get(d, op, "n2s");
      const b = get(d, op, "restic");
      return a && b ? b.wall / a.wall : undefined;
    };
    const targets: [string, number | undefined, number][] = [
      ["large first backup ≥ 2.9× restic", ratio("large", "first"), 2.9],
      ["small first backup ≥ 2× restic", ratio("small", "first"), 2],
      ["small no-change backup ≥ 1.2× restic", ratio("small", "nochange"), 1.2],
      ["large restore ≥ 2× restic", ratio("large", "restore"), 2],
      ["small restore ≥ 2× restic", ratio("small", "restore"), 2],
    ];
    lines.push("");
    lines.push("| target | measured | met |");
    lines.push("|---|---:|---|");
    for (const [what, got, want] of targets) {
      if (got === undefined) continue;
      lines.push(`| ${what} | ${got.toFixed(2)}× | ${got >= want ? "yes" : "**no**"} |`);
    }
    // Checking every byte costs at most 1.5 full restores.
    for (const d of wanted) {
      const c = get(d, "check", "n2s");
      const r = get(d, "restore", "n2s");
      if (!c || !r) continue;
      const x = c.wall / r.wall;
      lines.push(
        `| ${d} check --read-data ≤ 1.5× its full restore | ${x.toFixed(2)}× | ${
          x <= 1.5 ? "yes" : "**no**"
        } |`,
      );
    }
    const maxRss = Math.max(...rows.filter((r) => r.tool === "n2s").map((r) => r.rss));
    lines.push(
      `| n2s peak RSS < 200 MiB in every run | ${f(maxRss, 0)} MiB | ${
        maxRss < 200 ? "yes" : "**no**"
      } |`,
    );
    const rs = get("small", "first", "restic")?.repoBytes;
    const ns = get("small", "first", "n2s")?.repoBytes;
    if (rs && ns) {
      lines.push(
        `| small repository within 15% of restic's | ${f(ns / 1e6)} / ${f(rs / 1e6)} MB = ${
          (ns / rs).toFixed(3)
        } | ${ns <= rs * 1.15 ? "yes" : "**no**"} |`,
      );
    }
  }
}

// Every tree is deleted only now, after the last measurement.
await removeTrees(["work"]);

const report = lines.join("\n");
console.log(report);
await Deno.mkdir(root, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
await Deno.writeTextFile(
  join(root, `results-${stamp}.json`),
  JSON.stringify({ quick, repeat, datasets: Object.fromEntries(infos), samples }, null, 2),
);
if (values.out) await Deno.writeTextFile(values.out, report + "\n");

/** Runs another benchmark script of this folder; a failure fails this run. */
async function runScript(name: string, args: string[]): Promise<void> {
  const script = new URL(`./${name}`, import.meta.url);
  const o = await new Deno.Command("deno", {
    args: ["run", "--allow-all", script.pathname, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!o.success) Deno.exitCode = 1;
}
if (values.backends) await runScript("bench_backends.ts", quick ? ["--quick"] : []);
if (values.memory) {
  await runScript("bench_memory.ts", [
    "--tools",
    toolNames.filter((t) => t !== "borg").join(","),
    ...(quick ? ["--scale", "0.1"] : []),
  ]);
}

/** Builds lib/perf/ceilings.c and prints the disk's ceilings as a table. */
async function runCeilings(): Promise<void> {
  const src = join(repoRoot, "lib/perf/ceilings.c");
  const bin = join(root, "ceilings-bin");
  await Deno.mkdir(root, { recursive: true });
  const cc = await new Deno.Command("gcc", {
    args: ["-O2", "-pthread", "-o", bin, src],
    stderr: "piped",
  }).output();
  if (!cc.success) {
    throw new Error(`gcc failed (apt-get install gcc):\n${new TextDecoder().decode(cc.stderr)}`);
  }
  const dir = join(root, "ceilings");
  log(`measuring the disk under ${dir}`);
  const out = await new Deno.Command(bin, {
    args: [dir, values["ceiling-files"]!, values["ceiling-mib"]!],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("ceilings failed");
  const rows = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  const table = [
    "| measurement | result |",
    "|---|---:|",
    ...rows.map((r) =>
      r.test.startsWith("write")
        ? `| ${r.test}: ${r.mib} MiB in 1 MiB writes, then fsync | ${r.mb_per_s} MB/s ` +
          `(write ${r.write_s} s + fsync ${r.fsync_s} s) |`
        : `| ${r.test}: ${r.files} files of ${r.size} B, ${r.threads} thread(s)` +
          `${r.rename ? ", temp + rename" : ""} | ${r.wall_us_per_file} µs/file ` +
          `(${(1e6 / r.wall_us_per_file).toFixed(0)} files/s; CPU ${r.cpu_us_per_file} µs/file; ` +
          `syncfs after: ${r.syncfs_s} s) |`
    ),
  ].join("\n");
  console.log(table);
  if (values.out) await Deno.writeTextFile(values.out, table + "\n");
}
