// Planning a push of a source of a million files with no change: the second `n2s push --scan`
// of an unchanged tree of 1,000,000 small files, on the SQLite index and on PostgreSQL, against
// restic's backup of the same unchanged tree. Targets: under 200 MiB peak RSS, and under 3x
// restic's wall time. Every command runs through its real CLI under /usr/bin/time (peak RSS of
// the process; PostgreSQL's own processes are not counted), the measured runs of n2s and restic
// alternate so that both see the same load, and the load average is recorded around each run.
//
//   deno run -A scripts/bench_million.ts
//   deno run -A scripts/bench_million.ts --files 100000 --engines sqlite --runs 2
//   deno run -A scripts/bench_million.ts --keep /tmp/n2s-million    keeps the tree, the restic
//       repository and the SQLite index there, and reuses them (and their first push) next time
//   deno run -A scripts/bench_million.ts --cli /other/checkout/cli.ts    another n2s
//
// Options: --files N (1000000), --engines sqlite,postgres, --runs N (3: best of N),
// --keep DIR (else a temporary directory under /tmp, removed at the end), --out FILE
// (.bench/million.md), --cli FILE (this checkout's cli.ts), --no-restic, --fresh (forget
// repositories kept in DIR; the tree stays).

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { startPostgres } from "../tests/servers/postgres.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    files: { type: "string", default: "1000000" },
    engines: { type: "string", default: "sqlite,postgres" },
    runs: { type: "string", default: "3" },
    keep: { type: "string" },
    out: { type: "string", default: ".bench/million.md" },
    cli: { type: "string" },
    "no-restic": { type: "boolean", default: false },
    fresh: { type: "boolean", default: false },
  },
});

const repoRoot = resolve(dirname(new URL(import.meta.url).pathname), "..");
const FILES = Number(values.files);
const RUNS = Number(values.runs);
const ENGINES = values.engines!.split(",").map((s) => s.trim()).filter(Boolean);
const CLI = resolve(values.cli ?? join(repoRoot, "cli.ts"));
const OUT = resolve(repoRoot, values.out!);
const WITH_RESTIC = !values["no-restic"];
const PER_DIR = 1000;
const TIME = "/usr/bin/time";
const RESTIC_PASSWORD = "bench-password-not-secret";
const N2S_PASSPHRASE = "pw";

if (!Number.isInteger(FILES) || FILES < 1) throw new Error(`--files: ${values.files}`);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs: ${values.runs}`);
for (const e of ENGINES) {
  if (e !== "sqlite" && e !== "postgres") throw new Error(`--engines: unknown engine ${e}`);
}

const work = values.keep
  ? resolve(values.keep)
  : await Deno.makeTempDir({ dir: "/tmp", prefix: "n2s-million-" });
await Deno.mkdir(join(work, "logs"), { recursive: true });
const tree = join(work, `tree-${FILES}`);
const haveTime = await Deno.stat(TIME).then(() => true, () => false);

function log(msg: string) {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/** The load averages (1, 5, 15 minutes). */
function loadavg(): number[] {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
}

async function text(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

// --- the tree -----------------------------------------------------------------------------------

/** Free inodes and bytes of the file system holding `dir`, from df. */
async function freeSpace(dir: string): Promise<{ inodes: number; bytes: number }> {
  const last = (s: string) => s.trim().split("\n").pop()!.trim().split(/\s+/);
  const i = last(await text("df", ["-P", "-i", dir]));
  const b = last(await text("df", ["-P", "-B1", dir]));
  return { inodes: Number(i[3]), bytes: Number(b[3]) };
}

/** Creates the tree unless a complete one is there: DIRS directories of up to 1,000 files. */
async function makeTree(): Promise<void> {
  const done = `${tree}.complete`;
  if (await Deno.stat(done).then(() => true, () => false)) {
    log(`tree ${tree} is there`);
    return;
  }
  await Deno.remove(tree, { recursive: true }).catch(() => {});
  const dirs = Math.ceil(FILES / PER_DIR);
  const free = await freeSpace(work);
  // The files, their directories, and the repositories' objects and caches beside them; each
  // small file takes a block of 4 KiB.
  const inodes = Math.ceil((FILES + dirs) * 1.1) + 100_000;
  const bytes = FILES * 4096 * 1.5 + 2 * 2 ** 30;
  log(`df -i ${work}: ${free.inodes} inodes free, ${(free.bytes / 2 ** 30).toFixed(1)} GiB free`);
  if (free.inodes < inodes) {
    throw new Error(`${work} has ${free.inodes} free inodes; the tree needs about ${inodes}`);
  }
  if (free.bytes < bytes) {
    throw new Error(`${work} has ${free.bytes} bytes free; the tree needs about ${bytes}`);
  }
  log(`creating ${FILES} files in ${dirs} directories under ${tree}`);
  const t0 = performance.now();
  const enc = new TextEncoder();
  const pad = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(3);
  for (let d = 0, i = 0; d < dirs; d++) {
    const dir = join(tree, `d${String(d).padStart(4, "0")}`);
    Deno.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < PER_DIR && i < FILES; f++, i++) {
      // 10 to 100 bytes, each file's content its own.
      const size = 10 + (i * 7919) % 91;
      const head = `${i}:`;
      Deno.writeFileSync(
        join(dir, `f${String(f).padStart(4, "0")}`),
        enc.encode((head + pad).slice(0, size)),
      );
    }
    if (d % 100 === 99) log(`  ${i} files`);
  }
  Deno.writeTextFileSync(done, `${FILES}\n`);
  log(`tree created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// --- measuring ----------------------------------------------------------------------------------

interface Run {
  wall: number;
  cpu: number | null;
  rssMiB: number | null;
  load: number[];
  loadAfter: number[];
}

let seq = 0;

/** Runs one command under /usr/bin/time, its output in logs/; throws when it fails. */
async function measure(
  label: string,
  argv: string[],
  env: Record<string, string>,
): Promise<Run> {
  const base = join(work, "logs", `${String(++seq).padStart(3, "0")}-${label}`);
  const timeFile = `${base}.time`;
  const full = haveTime ? [TIME, "-f", "%M %U %S", "-o", timeFile, ...argv] : argv;
  const load = loadavg();
  const stdout = await Deno.open(`${base}.out`, { write: true, create: true, truncate: true });
  const stderr = await Deno.open(`${base}.err`, { write: true, create: true, truncate: true });
  const t0 = performance.now();
  let status: Deno.CommandStatus;
  try {
    const child = new Deno.Command(full[0], {
      args: full.slice(1),
      env,
      clearEnv: true,
      cwd: work,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    [, , status] = await Promise.all([
      child.stdout.pipeTo(stdout.writable),
      child.stderr.pipeTo(stderr.writable),
      child.status,
    ]);
  } catch (e) {
    stdout.close();
    stderr.close();
    throw e;
  }
  const wall = (performance.now() - t0) / 1000;
  const loadAfter = loadavg();
  if (!status.success) {
    const err = await Deno.readTextFile(`${base}.err`).catch(() => "");
    throw new Error(`${argv.join(" ")} failed (exit ${status.code}):\n${err.slice(-3000)}`);
  }
  let cpu: number | null = null;
  let rssMiB: number | null = null;
  if (haveTime) {
    const t = Deno.readTextFileSync(timeFile).trim().split("\n").pop()!.split(/\s+/);
    rssMiB = Number(t[0]) / 1024;
    cpu = Number(t[1]) + Number(t[2]);
  }
  const r = { wall, cpu, rssMiB, load, loadAfter };
  log(`${label}: ${describe(r)}`);
  return r;
}

function describe(r: Run): string {
  return `${r.wall.toFixed(1)} s wall, ${r.cpu?.toFixed(1) ?? "?"} s CPU, ` +
    `${r.rssMiB?.toFixed(0) ?? "?"} MiB peak RSS, load ${r.load[0].toFixed(2)}→` +
    `${r.loadAfter[0].toFixed(2)}`;
}

/** This process's environment without what would change what n2s or restic do. */
function baseEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const k of Object.keys(env)) {
    if (k.startsWith("N2S_") || k.startsWith("RESTIC_")) delete env[k];
  }
  return { ...env, XDG_CONFIG_HOME: join(work, "xdg") };
}

// --- the tools ----------------------------------------------------------------------------------

interface Subject {
  name: string;
  /** Creates the repository and makes the first backup: what it measured. */
  setup(): Promise<Run>;
  /** One backup of the unchanged tree. */
  again(): Promise<Run>;
  /** Commands as a user would type them (for the report). */
  commands: string[];
  close(): Promise<void>;
}

interface Kept {
  first?: Record<string, Run>;
}
const keptFile = join(work, `kept-${FILES}.json`);
const kept: Kept = values.fresh
  ? {}
  : JSON.parse(await Deno.readTextFile(keptFile).catch(() => "{}"));
kept.first ??= {};
const saveKept = () => Deno.writeTextFileSync(keptFile, JSON.stringify(kept, null, 2));

function restic(): Subject {
  const repo = join(work, `restic-repo-${FILES}`);
  const env = {
    ...baseEnv(),
    RESTIC_PASSWORD,
    RESTIC_REPOSITORY: repo,
    RESTIC_CACHE_DIR: join(work, `restic-cache-${FILES}`),
  };
  const backup = ["restic", "backup", tree];
  return {
    name: "restic",
    commands: [
      `RESTIC_PASSWORD=… RESTIC_REPOSITORY=${repo} RESTIC_CACHE_DIR=${
        join(work, `restic-cache-${FILES}`)
      } restic init`,
      `… ${backup.join(" ")}   (first backup, then the measured no-change backups)`,
    ],
    async setup() {
      if (kept.first!.restic && !values.fresh) {
        log(`restic: reusing ${repo}`);
        return kept.first!.restic;
      }
      await Deno.remove(repo, { recursive: true }).catch(() => {});
      await Deno.remove(join(work, `restic-cache-${FILES}`), { recursive: true }).catch(() => {});
      await measure("restic-init", ["restic", "init"], env);
      const first = await measure("restic-first", backup, env);
      kept.first!.restic = first;
      saveKept();
      return first;
    },
    again: () => measure("restic-again", backup, env),
    close: () => Promise.resolve(),
  };
}

async function n2s(engine: string): Promise<Subject> {
  const repo = join(work, `n2s-repo-${engine}-${FILES}`);
  let index: string;
  let stop = () => Promise.resolve();
  let reuse = false;
  if (engine === "sqlite") {
    index = join(work, `n2s-index-${FILES}.sqlite`);
    reuse = !!kept.first![engine] && !values.fresh;
  } else {
    // A throwaway server: its database goes with it, so the first push is made every time.
    const pg = await startPostgres();
    stop = pg.stop;
    index = await pg.createDatabase();
    log(`postgres: ${pg.dir}, index ${index}`);
  }
  const env = { ...baseEnv(), N2S_PASSPHRASE };
  const cli = [Deno.execPath(), "run", "-A", CLI];
  const common = ["--repo", repo, "--index", index];
  const push = [...cli, "push", ...common, "--scan", tree, "--source", "s"];
  const name = `n2s ${engine}`;
  return {
    name,
    commands: [
      `N2S_PASSPHRASE=${N2S_PASSPHRASE} deno run -A ${CLI} init ${common.join(" ")}`,
      `N2S_PASSPHRASE=${N2S_PASSPHRASE} deno run -A ${CLI} push ${
        common.join(" ")
      } --scan ${tree} --source s   (first push, then the measured no-change pushes)`,
    ],
    async setup() {
      if (reuse) {
        log(`${name}: reusing ${repo} and ${index}`);
        return kept.first![engine];
      }
      if (engine === "sqlite") {
        for (const p of [index, `${index}-wal`, `${index}-shm`]) {
          await Deno.remove(p).catch(() => {});
        }
      }
      await Deno.remove(repo, { recursive: true }).catch(() => {});
      await measure(`n2s-${engine}-init`, [...cli, "init", ...common], env);
      const first = await measure(`n2s-${engine}-first`, push, env);
      if (engine === "sqlite") {
        kept.first![engine] = first;
        saveKept();
      }
      return first;
    },
    again: () => measure(`n2s-${engine}-again`, push, env),
    close: stop,
  };
}

// --- the run ------------------------------------------------------------------------------------

interface Result {
  name: string;
  first: Run;
  runs: Run[];
}

const fmt = (n: number | null | undefined, digits = 1) =>
  n === null || n === undefined || Number.isNaN(n) ? "–" : n.toFixed(digits);
const bestOf = (runs: Run[]) => runs.reduce((a, b) => (b.wall < a.wall ? b : a));

function report(results: Result[], commands: string[], startedAt: Date): string {
  const restic = results.find((r) => r.name === "restic");
  const ref = restic ? bestOf(restic.runs) : undefined;
  const cpuInfo = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1];
  const memGiB = Number(Deno.readTextFileSync("/proc/meminfo").match(/MemTotal:\s+(\d+)/)![1]) /
    2 ** 20;
  const lines = [
    `# Planning a push of ${FILES.toLocaleString("en")} files with no change`,
    "",
    `${startedAt.toISOString()}; ${navigator.hardwareConcurrency} CPUs (${cpuInfo ?? "?"}), ` +
    `${memGiB.toFixed(0)} GiB; deno ${Deno.version.deno}; ${restic ? "restic " : ""}` +
    `${restic ? resticVersion : ""}`,
    "",
    `Tree: ${tree}, ${FILES} files of 10–100 bytes in ${
      Math.ceil(FILES / PER_DIR)
    } directories (page cache warm). No-change: best wall time of ${RUNS} runs, the runs of ` +
    "the tools alternating; peak RSS and CPU of that run (/usr/bin/time; a PostgreSQL " +
    "server's own processes are not counted). Targets: peak RSS < 200 MiB, wall < 3x restic.",
    "",
    "| tool / engine | first push s | no-change s | no-change CPU s | no-change peak RSS MiB " +
    "| ratio to restic | load (1 min) |",
    "|---|--:|--:|--:|--:|--:|--:|",
  ];
  for (const r of results) {
    const b = bestOf(r.runs);
    const ratio = ref && r !== restic ? `${(b.wall / ref.wall).toFixed(2)}x` : "–";
    lines.push(
      `| ${r.name} | ${fmt(r.first.wall)} | ${fmt(b.wall)} | ${fmt(b.cpu)} | ${fmt(b.rssMiB, 0)} ` +
        `| ${ratio} | ${fmt(b.load[0], 2)}→${fmt(b.loadAfter[0], 2)} |`,
    );
  }
  lines.push("", "Every no-change run (wall s / CPU s / peak RSS MiB / load before→after):", "");
  for (const r of results) {
    lines.push(
      `- ${r.name}: ` +
        r.runs.map((x) =>
          `${fmt(x.wall)} / ${fmt(x.cpu)} / ${fmt(x.rssMiB, 0)} / ${fmt(x.load[0], 2)}→` +
          fmt(x.loadAfter[0], 2)
        ).join("; "),
    );
  }
  lines.push(
    "",
    "First push or backup (wall s / CPU s / peak RSS MiB):",
    "",
    ...results.map((r) =>
      `- ${r.name}: ${fmt(r.first.wall)} / ${fmt(r.first.cpu)} / ${fmt(r.first.rssMiB, 0)}`
    ),
    "",
    "Commands (each under `/usr/bin/time -f '%M %U %S'`):",
    "",
    "```sh",
    ...commands,
    "```",
    "",
  );
  return lines.join("\n");
}

const resticVersion = WITH_RESTIC
  ? (await text("restic", ["version"]).catch(() => "?")).trim()
  : "";
const startedAt = new Date();
log(`work dir ${work}; load ${loadavg().join(" ")}`);
const subjects: Subject[] = [];
try {
  await makeTree();
  if (WITH_RESTIC) subjects.push(restic());
  for (const e of ENGINES) subjects.push(await n2s(e));
  const results: Result[] = [];
  for (const s of subjects) {
    log(`${s.name}: first backup`);
    results.push({ name: s.name, first: await s.setup(), runs: [] });
  }
  for (let round = 0; round < RUNS; round++) {
    // Alternate the order so that no tool always runs right after another one.
    const order = round % 2 === 0 ? subjects : [...subjects].reverse();
    for (const s of order) {
      results.find((r) => r.name === s.name)!.runs.push(await s.again());
    }
  }
  const md = report(results, subjects.flatMap((s) => s.commands), startedAt);
  console.log(md);
  await Deno.mkdir(dirname(OUT), { recursive: true });
  await Deno.writeTextFile(OUT, md);
  log(`written to ${OUT}`);
} finally {
  for (const s of subjects) await s.close().catch(() => {});
  if (!values.keep) await Deno.remove(work, { recursive: true }).catch(() => {});
}
