// Push and pull throughput of n2s on every backend, against the same real servers the tests
// start on loopback: one 1 GiB incompressible file, and 10,000 small files. Each backend gets a
// fresh repository; every command runs through the CLI under /usr/bin/time.
//
//   deno run -A scripts/bench_backends.ts                 all backends, full size
//   deno run -A scripts/bench_backends.ts --quick         64 MiB and 1,000 files
//   deno run -A scripts/bench_backends.ts --backends local,s3 --out .bench/backends.md

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { type DatasetInfo, type DatasetSpec, ensureDataset } from "./bench_data.ts";
import { measure, type Measured, sameTree } from "./bench_tools.ts";
import { startSshd } from "../tests/servers/sshd.ts";
import { startS3 } from "../tests/servers/s3.ts";
import { startIpfs } from "../tests/servers/ipfs.ts";

const MiB = 1 << 20;
const ALL = ["local", "sftp", "s3", "ipfs", "rclone-local", "rclone-sftp"];

const { values } = parseArgs({
  options: {
    quick: { type: "boolean" },
    backends: { type: "string" },
    out: { type: "string" },
    n2s: { type: "string" },
  },
});
const quick = values.quick ?? false;
const chosen = values.backends ? values.backends.split(",") : ALL;
for (const b of chosen) {
  if (!ALL.includes(b)) throw new Error(`unknown backend "${b}": choose from ${ALL.join(", ")}`);
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

interface Target {
  location: (name: string) => string;
  env: Record<string, string>;
  stop: () => Promise<void>;
}

/** Starts what a backend needs and says how to name a repository on it. */
async function target(backend: string, work: string): Promise<Target> {
  switch (backend) {
    case "local":
      return { location: (n) => join(work, n), env: {}, stop: async () => {} };
    case "sftp": {
      const s = await startSshd();
      return {
        location: (n) => `sftp://${s.alias}${s.dir}/${n}`,
        env: { N2S_SSH_CONFIG: s.configFile },
        stop: s.stop,
      };
    }
    case "s3": {
      const s = await startS3();
      return {
        location: (n) => `s3://${s.bucket}/${n}?endpoint=${encodeURIComponent(s.endpoint)}`,
        env: { AWS_ACCESS_KEY_ID: s.accessKeyId, AWS_SECRET_ACCESS_KEY: s.secretAccessKey },
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

interface Row {
  backend: string;
  dataset: string;
  op: string;
  m: Measured;
  bytes: number;
  files: number;
}
const rows: Row[] = [];

for (const backend of chosen) {
  const work = Deno.makeTempDirSync({ dir: benchDir, prefix: `backend-${backend}-` });
  log(`${backend}: starting`);
  const t = await target(backend, work);
  try {
    for (const [spec, info] of datasets) {
      const loc = t.location(`repo-${spec.name}`);
      const index = join(work, `index-${spec.name}.sqlite`);
      const env = {
        ...Deno.env.toObject(),
        ...t.env,
        N2S_PASSPHRASE: "bench-passphrase-not-secret",
      };
      const args = ["--repo", loc, "--index", index];
      await measure([...cli, "init", ...args], { env });
      log(`${backend} ${spec.name}: push`);
      const pushed = await measure([...cli, "push", info.dir, "--json", ...args], { env });
      const id = JSON.parse(pushed.stdout).changeset;
      rows.push({ backend, dataset: spec.name, op: "push", m: pushed, ...info });
      const out = join(work, `restore-${spec.name}`);
      log(`${backend} ${spec.name}: pull`);
      const pulled = await measure(
        [...cli, "pull", "--changeset-id", id, "--target-path", out, ...args],
        { env },
      );
      if (!(await sameTree(info.dir, out))) {
        throw new Error(`${backend}: the restore of ${spec.name} differs from its source`);
      }
      rows.push({ backend, dataset: spec.name, op: "pull", m: pulled, ...info });
      Deno.removeSync(out, { recursive: true });
    }
  } finally {
    await t.stop();
    Deno.removeSync(work, { recursive: true });
  }
}

const fmt = (n: number, d = 1) =>
  n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const lines = [
  `Backends (${quick ? "quick" : "full"}): ${
    datasets.map(([s, i]) => `${s.name} ${i.files} files, ${fmt(i.bytes / 1e6, 0)} MB`).join("; ")
  }.`,
  "",
  "| backend | dataset | operation | wall s | MB/s | files/s | peak RSS MiB |",
  "| ------- | ------- | --------- | -----: | ---: | ------: | -----------: |",
  ...rows.map((r) =>
    `| ${r.backend} | ${r.dataset} | ${r.op} | ${fmt(r.m.wall, 2)} | ${
      fmt(r.bytes / 1e6 / r.m.wall)
    } | ${fmt(r.files / r.m.wall, 0)} | ${fmt(r.m.rssMiB, 0)} |`
  ),
];
const report = lines.join("\n");
console.log(report);
if (values.out) Deno.writeTextFileSync(values.out, report + "\n");
