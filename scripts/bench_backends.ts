// Push and pull throughput of n2s on every backend, against the same real servers the tests
// start on loopback: one 1 GiB incompressible file, and 10,000 small files. Each backend gets a
// fresh repository; every command runs through the CLI under /usr/bin/time. restic 0.14 runs
// beside n2s in the same run, on the same servers and datasets, where it has a backend: local (a
// directory), sftp (its sftp backend through `ssh -F <the test's ssh_config>`) and s3 (its rclone
// backend, an rclone `s3` remote on s3rver: restic's own S3 client sends aws-chunked bodies that
// s3rver stores verbatim). Each restic run has its own cache in the run's work directory.
//
//   deno run -A scripts/bench_backends.ts                 all backends, both tools, full size
//   deno run -A scripts/bench_backends.ts --quick         64 MiB and 1,000 files
//   deno run -A scripts/bench_backends.ts --backends local,s3 --out .bench/backends.md
//   deno run -A scripts/bench_backends.ts --tools n2s     n2s alone (or --tools restic)
//   deno run -A scripts/bench_backends.ts --no-wait       do not wait out recent deletions
//
// Nothing is deleted while tools are measured: the repositories, restores and servers stay until
// the report is written, because on this disk creating files is slower for minutes after many
// were deleted nearby, which would penalise whichever tool runs next (docs/BENCHMARKS.md). The
// deletion time is noted in .bench/deleted-at (shared with scripts/bench.ts), and a run first
// waits until it is six minutes old.

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { type DatasetInfo, type DatasetSpec, ensureDataset } from "./bench_data.ts";
import { ensurePeers, measure, type Measured, sameTree, settle } from "./bench_tools.ts";
import { startSshd } from "../tests/servers/sshd.ts";
import { startS3 } from "../tests/servers/s3.ts";
import { startIpfs } from "../tests/servers/ipfs.ts";

const MiB = 1 << 20;
const ALL = ["local", "sftp", "s3", "ipfs", "rclone-local", "rclone-sftp"];
const TOOLS = ["n2s", "restic"];
const PASS = "bench-passphrase-not-secret";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean" },
    backends: { type: "string" },
    tools: { type: "string", default: TOOLS.join(",") },
    out: { type: "string" },
    n2s: { type: "string" },
    "no-wait": { type: "boolean" },
  },
});
const quick = values.quick ?? false;
const chosen = values.backends ? values.backends.split(",") : ALL;
for (const b of chosen) {
  if (!ALL.includes(b)) throw new Error(`unknown backend "${b}": choose from ${ALL.join(", ")}`);
}
const tools = values.tools!.split(",");
for (const t of tools) {
  if (!TOOLS.includes(t)) throw new Error(`unknown tool "${t}": choose from ${TOOLS.join(", ")}`);
}

const root = resolve(new URL("..", import.meta.url).pathname);
const benchDir = join(root, ".bench");
const dataRoot = join(benchDir, "data-backends");
const cli = values.n2s
  ? values.n2s.split(" ")
  : [Deno.execPath(), "run", "--allow-all", "--cached-only", join(root, "cli.ts")];
const log = (s: string) => console.error(`[bench-backends] ${s}`);

const specs: DatasetSpec[] = [
  {
    name: quick ? "one-64mib" : "one-1gib",
    bigFiles: 1,
    bigSize: quick ? 64 * MiB : 1024 * MiB,
    smallFiles: 0,
    smallDirs: 0,
  },
  {
    name: quick ? "small-1k" : "small-10k",
    bigFiles: 0,
    bigSize: 0,
    smallFiles: quick ? 1000 : 10000,
    smallDirs: quick ? 10 : 100,
  },
];
Deno.mkdirSync(dataRoot, { recursive: true });
const datasets: [DatasetSpec, DatasetInfo][] = specs.map((s) => {
  log(`dataset ${s.name}`);
  return [s, ensureDataset(dataRoot, s)];
});

/** How restic reaches a repository on a backend. */
interface ResticTarget {
  /** The `-r` argument for a repository named `name`. */
  repo: (name: string) => string;
  /** Extended options (`-o key=value`) and other global flags. */
  args: string[];
  env: Record<string, string>;
  /** Variables to take out of restic's environment (and so rclone's). */
  unset?: string[];
}

interface Target {
  location: (name: string) => string;
  env: Record<string, string>;
  /** Absent where restic has no backend for this kind of server. */
  restic?: ResticTarget;
  stop: () => Promise<void>;
}

/** Starts what a backend needs and says how to name a repository on it. */
async function target(backend: string, work: string): Promise<Target> {
  switch (backend) {
    case "local":
      return {
        location: (n) => join(work, n),
        env: {},
        restic: { repo: (n) => join(work, n), args: [], env: {} },
        stop: async () => {},
      };
    case "sftp": {
      const s = await startSshd();
      return {
        location: (n) => `sftp://${s.alias}${s.dir}/${n}`,
        env: { N2S_SSH_CONFIG: s.configFile },
        // The host in the location is only a name: restic runs this command to get its sftp
        // session, over the same ssh_config (key, known_hosts, port) that n2s uses.
        restic: {
          repo: (n) => `sftp:${s.alias}:${s.dir}/${n}`,
          args: ["-o", `sftp.command=ssh -F ${s.configFile} ${s.alias} -s sftp`],
          env: {},
        },
        stop: s.stop,
      };
    }
    case "s3": {
      const s = await startS3();
      const conf = join(work, "rclone-s3.conf");
      Deno.writeTextFileSync(
        conf,
        [
          "[bench-s3]",
          "type = s3",
          "provider = Other",
          `endpoint = ${s.endpoint}`,
          `region = ${s.region}`,
          `access_key_id = ${s.accessKeyId}`,
          `secret_access_key = ${s.secretAccessKey}`,
          "force_path_style = true",
          "no_check_bucket = true",
          "",
        ].join("\n"),
      );
      return {
        location: (n) => `s3://${s.bucket}/${n}?endpoint=${encodeURIComponent(s.endpoint)}`,
        env: { AWS_ACCESS_KEY_ID: s.accessKeyId, AWS_SECRET_ACCESS_KEY: s.secretAccessKey },
        // rclone 1.60's s3 backend fails at once while AWS_CA_BUNDLE is set.
        restic: {
          repo: (n) => `rclone:bench-s3:${s.bucket}/${n}`,
          args: [],
          env: { RCLONE_CONFIG: conf },
          unset: ["AWS_CA_BUNDLE"],
        },
        stop: s.stop,
      };
    }
    case "ipfs": {
      const s = await startIpfs();
      return {
        location: (n) => `ipfs://${n}?api=${encodeURIComponent(s.api)}`,
        env: {},
        stop: s.stop,
      };
    }
    case "rclone-local":
      return { location: (n) => `rclone:${join(work, n)}`, env: {}, stop: async () => {} };
    case "rclone-sftp": {
      const s = await startSshd();
      const conf = join(s.dir, "rclone.conf");
      Deno.writeTextFileSync(
        conf,
        [
          "[bench-sftp]",
          "type = sftp",
          `host = ${s.host}`,
          `port = ${s.port}`,
          `user = ${s.user}`,
          `key_file = ${s.keyFile}`,
          `known_hosts_file = ${s.knownHostsFile}`,
          "",
        ].join("\n"),
      );
      return {
        location: (n) => `rclone:bench-sftp:${s.dir}/${n}`,
        env: { RCLONE_CONFIG: conf },
        stop: s.stop,
      };
    }
  }
  throw new Error(`unknown backend ${backend}`);
}

/** One measured step: "init", "push" (restic backup) or "pull" (restic restore). */
type Op = "init" | "push" | "pull";
const OPS: Op[] = ["init", "push", "pull"];

interface Row {
  backend: string;
  dataset: string;
  tool: string;
  op: Op;
  m: Measured;
  bytes: number;
  files: number;
}
const rows: Row[] = [];

/** Runs init, push and pull of one dataset with n2s; returns the restore's directory. */
async function runN2s(t: Target, work: string, spec: DatasetSpec, info: DatasetInfo) {
  const loc = t.location(`repo-${spec.name}`);
  const index = join(work, `index-${spec.name}.sqlite`);
  const env = { ...Deno.env.toObject(), ...t.env, N2S_PASSPHRASE: PASS };
  delete (env as Record<string, string>).N2S_KDF_LOG_N; // the default key derivation is measured
  const args = ["--repo", loc, "--index", index];
  const out = join(work, `restore-n2s-${spec.name}`);
  let id = "";
  const steps: Record<Op, () => Promise<Measured>> = {
    init: () => measure([...cli, "init", ...args], { env, clearEnv: true }),
    push: () => measure([...cli, "push", info.dir, "--json", ...args], { env, clearEnv: true }),
    pull: () =>
      measure([...cli, "pull", "--changeset-id", id, "--target-path", out, ...args], {
        env,
        clearEnv: true,
      }),
  };
  const done: Partial<Record<Op, Measured>> = {};
  for (const op of OPS) {
    await settle();
    done[op] = await steps[op]();
    if (op === "push") id = JSON.parse(done[op].stdout).changeset;
  }
  return { done, restored: out };
}

/** The restic command line (without the subcommand) for a repository on `r`. */
function resticCmd(r: ResticTarget, name: string): string[] {
  return ["restic", "-r", r.repo(name), ...r.args];
}

/** Runs init, backup and restore of one dataset with restic; returns where the copy landed. */
async function runRestic(r: ResticTarget, work: string, spec: DatasetSpec, info: DatasetInfo) {
  const env: Record<string, string> = {
    ...Deno.env.toObject(),
    ...r.env,
    RESTIC_PASSWORD: PASS,
    RESTIC_CACHE_DIR: join(work, "restic-cache"),
  };
  for (const k of r.unset ?? []) delete env[k];
  const base = resticCmd(r, `restic-${spec.name}`);
  const out = join(work, `restore-restic-${spec.name}`);
  const steps: Record<Op, string[]> = {
    init: [...base, "init"],
    push: [...base, "backup", "--compression", "auto", "--quiet", info.dir],
    pull: [...base, "restore", "latest", "--target", out, "--quiet"],
  };
  const done: Partial<Record<Op, Measured>> = {};
  for (const op of OPS) {
    await settle();
    // The whole environment is given, so that the variables in `unset` are really gone.
    done[op] = await measure(steps[op], { env, clearEnv: true });
  }
  // restic restores the absolute path it backed up under the target.
  return { done, restored: join(out, info.dir) };
}

/** Bytes free on the file system that holds `dir`, from df. */
async function freeBytes(dir: string): Promise<number> {
  const out = await new Deno.Command("df", { args: ["-B1", "--output=avail", dir] }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim().split("\n").pop());
  return out.success && Number.isFinite(n) ? n : Infinity;
}

/** After deletions, how long ext4 without a journal can keep file creation slow. */
const RECENTLY_DELETED_S = 370;
const deletedAt = join(benchDir, "deleted-at");

/** Waits until the last deletion noted in `deleted-at` is RECENTLY_DELETED_S old. */
async function waitOutDeletions(): Promise<void> {
  let last = 0;
  try {
    last = Date.parse(Deno.readTextFileSync(deletedAt).trim());
  } catch {
    return;
  }
  const wait = last + RECENTLY_DELETED_S * 1000 - Date.now();
  if (!(wait > 0)) return;
  const ago = ((Date.now() - last) / 1000).toFixed(0);
  if (values["no-wait"]) {
    log(`files were deleted here ${ago} s ago: file creation may be slower (--no-wait)`);
    return;
  }
  await settle();
  log(`files were deleted here ${ago} s ago; waiting ${(wait / 1000).toFixed(0)} s`);
  await new Promise((r) => setTimeout(r, wait));
}

const restics = (b: string) => ["local", "sftp", "s3"].includes(b);
if (tools.includes("restic")) {
  await ensurePeers(["restic"]);
  const skipped = chosen.filter((b) => !restics(b));
  if (skipped.length) log(`restic has no backend for ${skipped.join(", ")}: n2s alone there`);
}
{
  // Each run keeps its repository and its restore (about 2.3× the dataset) until the report.
  const perRun = datasets.reduce((n, [, i]) => n + i.bytes * 2.3, 0);
  const runs = chosen.reduce(
    (n, b) => n + tools.filter((t) => t === "n2s" || restics(b)).length,
    0,
  );
  const free = await freeBytes(benchDir);
  if (free < perRun * runs) {
    throw new Error(
      `this run needs about ${(perRun * runs / 1e9).toFixed(1)} GB free on the disk of ` +
        `${benchDir}; ${(free / 1e9).toFixed(1)} GB are: measure fewer --backends or --tools`,
    );
  }
}
await waitOutDeletions();
const resticVersion = tools.includes("restic")
  ? new TextDecoder().decode(
    (await new Deno.Command("restic", { args: ["version"], stdout: "piped" }).output()).stdout,
  ).trim().split(" ").slice(0, 2).join(" ")
  : "";

const cleanups: (() => Promise<void>)[] = [];
try {
  for (const backend of chosen) {
    const work = Deno.makeTempDirSync({ dir: benchDir, prefix: `backend-${backend}-` });
    cleanups.push(() => Deno.remove(work, { recursive: true }));
    log(`${backend}: starting`);
    const t = await target(backend, work);
    cleanups.push(t.stop);
    for (const [spec, info] of datasets) {
      for (const tool of tools) {
        let run;
        if (tool === "n2s") run = await runN2s(t, work, spec, info);
        else if (t.restic) run = await runRestic(t.restic, work, spec, info);
        else continue;
        for (const op of OPS) {
          const m = run.done[op]!;
          rows.push({ backend, dataset: spec.name, tool, op, m, ...info });
          log(`${backend} ${spec.name} ${tool} ${op}: ${m.wall.toFixed(2)} s`);
        }
        if (!(await sameTree(info.dir, run.restored))) {
          throw new Error(`${backend}: ${tool}'s restore of ${spec.name} differs from its source`);
        }
        log(`${backend} ${spec.name} ${tool}: the restore is identical to the source`);
      }
    }
  }
} finally {
  // Servers (with the repositories they hold) and work trees go only now, after every
  // measurement; the next run waits this deletion out.
  let removed = false;
  for (const c of cleanups.reverse()) {
    await c().catch((e) => log(`cleanup: ${e}`));
    removed = true;
  }
  if (removed) Deno.writeTextFileSync(deletedAt, new Date().toISOString() + "\n");
}

const fmt = (n: number, d = 1) =>
  n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const order = (r: Row) => [
  chosen.indexOf(r.backend),
  datasets.findIndex(([s]) => s.name === r.dataset),
  OPS.indexOf(r.op),
  tools.indexOf(r.tool),
];
const sorted = [...rows].sort((a, b) => {
  const x = order(a);
  const y = order(b);
  return x.map((v, i) => v - y[i]).find((d) => d !== 0) ?? 0;
});
const rate = (r: Row, v: number, d: number) => r.op === "init" ? "–" : fmt(v / r.m.wall, d);
const lines = [
  `Backends (${quick ? "quick" : "full"}): ${
    datasets.map(([s, i]) => `${s.name} ${i.files} files, ${fmt(i.bytes / 1e6, 0)} MB`).join("; ")
  }. Tools: ${
    tools.map((t) => t === "restic" ? `${resticVersion} (--compression auto)` : t)
      .join(", ")
  }; push = n2s push / restic backup, pull = n2s pull / restic restore, each ` +
  `restore verified identical to its source. CPU is user + system seconds; peak RSS is the ` +
  `largest single process, children such as ssh or rclone included.`,
  "",
  "| backend | dataset | operation | tool | wall s | MB/s | files/s | peak RSS MiB | CPU s |",
  "| ------- | ------- | --------- | ---- | -----: | ---: | ------: | -----------: | ----: |",
  ...sorted.map((r) =>
    `| ${r.backend} | ${r.dataset} | ${r.op} | ${r.tool} | ${fmt(r.m.wall, 2)} | ${
      rate(r, r.bytes / 1e6, 1)
    } | ${rate(r, r.files, 0)} | ${fmt(r.m.rssMiB, 0)} | ${fmt(r.m.cpu, 2)} |`
  ),
];
const pairs = sorted.filter((r) => r.tool === "n2s").flatMap((n) => {
  const p = rows.find((r) =>
    r.tool === "restic" && r.backend === n.backend && r.dataset === n.dataset && r.op === n.op
  );
  return p ? [[n, p]] : [];
});
if (pairs.length) {
  lines.push(
    "",
    "Speed ratios n2s / restic (restic wall time / n2s wall time; above 1 means n2s is faster):",
    "",
    "| backend | dataset | operation | n2s / restic |",
    "| ------- | ------- | --------- | -----------: |",
    ...pairs.map(([n, p]) =>
      `| ${n.backend} | ${n.dataset} | ${n.op} | ${(p.m.wall / n.m.wall).toFixed(2)}× |`
    ),
  );
}
const report = lines.join("\n");
console.log(report);
if (values.out) Deno.writeTextFileSync(values.out, report + "\n");
