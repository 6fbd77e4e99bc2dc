// How the benchmark runs each tool: n2s through its real CLI, restic and borg through Debian's
// packages. Every command runs under /usr/bin/time, which reports the peak RSS of the process.

import { join, resolve } from "node:path";

/** One measured command. */
export interface Measured {
  wall: number;
  /** Peak resident set size in MiB (largest process of the tree). */
  rssMiB: number;
  cpu: number;
  stdout: string;
}

const PASS = "bench-passphrase-not-secret";

/**
 * Runs a command under /usr/bin/time; throws with its stderr when it fails. `env` adds to this
 * process's environment, unless `clearEnv`: then it is the whole environment.
 */
export async function measure(
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string>; clearEnv?: boolean } = {},
): Promise<Measured> {
  const timeFile = await Deno.makeTempFile({ prefix: "n2s-bench-time-" });
  try {
    const t0 = performance.now();
    const out = await new Deno.Command("/usr/bin/time", {
      args: ["-f", "%M %U %S", "-o", timeFile, ...cmd],
      cwd: opts.cwd,
      env: opts.env,
      clearEnv: opts.clearEnv,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const wall = (performance.now() - t0) / 1000;
    const text = new TextDecoder();
    if (!out.success) {
      throw new Error(
        `${cmd.join(" ")} failed (${out.code}):\n${text.decode(out.stderr).slice(-2000)}`,
      );
    }
    const last = Deno.readTextFileSync(timeFile).trim().split("\n").pop() ?? "0 0 0";
    const [kb, user, sys] = last.split(/\s+/).map(Number);
    return { wall, rssMiB: kb / 1024, cpu: user + sys, stdout: text.decode(out.stdout) };
  } finally {
    Deno.removeSync(timeFile);
  }
}

/** A tool under test: each method runs one whole command. */
export interface Tool {
  name: string;
  init(): Promise<Measured>;
  backup(src: string): Promise<Measured>;
  restore(src: string, target: string): Promise<Measured>;
  /** Verifies the repository, reading every stored byte. */
  check(): Promise<Measured>;
  /** Where the restored copy of `src` lands under `target`. */
  restoredPath(src: string, target: string): string;
  repoDir: string;
}

/** n2s through `deno run cli.ts` (or another command given as `cmd`). */
export function n2sTool(work: string, cmd: string[]): Tool {
  const repo = join(work, "repo");
  const index = join(work, "index.sqlite");
  // The whole environment is passed with clearEnv, or a deleted variable would still be inherited:
  // a benchmark measures the default key derivation, never a test's cheap one.
  const env = { ...Deno.env.toObject(), N2S_PASSPHRASE: PASS };
  delete (env as Record<string, string>).N2S_KDF_LOG_N;
  const run = (args: string[]) => measure([...cmd, ...args], { env, clearEnv: true });
  let last = "";
  return {
    name: "n2s",
    repoDir: repo,
    init: () => run(["init", "--repo", repo, "--index", index]),
    async backup(src) {
      const m = await run(["push", src, "--repo", repo, "--index", index, "--json"]);
      const id = JSON.parse(m.stdout).changeset;
      if (id) last = id;
      return m;
    },
    restore: (_src, target) =>
      run([
        "pull",
        "--changeset-id",
        last,
        "--target-path",
        target,
        "--repo",
        repo,
        "--index",
        index,
      ]),
    restoredPath: (_src, target) => target,
    check: () => run(["check", "--read-data", "--repo", repo, "--index", index]),
  };
}

/** restic 0.14 with zstd (`--compression auto`) and its cache inside the work directory. */
export function resticTool(work: string): Tool {
  const repo = join(work, "repo");
  const env = {
    ...Deno.env.toObject(),
    RESTIC_PASSWORD: PASS,
    RESTIC_REPOSITORY: repo,
    RESTIC_CACHE_DIR: join(work, "cache"),
  };
  return {
    name: "restic",
    repoDir: repo,
    init: () => measure(["restic", "init"], { env }),
    backup: (src) =>
      measure(["restic", "backup", "--compression", "auto", "--quiet", resolve(src)], { env }),
    restore: (_src, target) =>
      measure(["restic", "restore", "latest", "--target", target, "--quiet"], { env }),
    restoredPath: (src, target) => join(target, resolve(src)),
    check: () => measure(["restic", "check", "--read-data", "--quiet"], { env }),
  };
}

/** borg 1.2 with repokey-blake2 and its default compression (lz4). */
export function borgTool(work: string): Tool {
  const repo = join(work, "repo");
  const env = {
    ...Deno.env.toObject(),
    BORG_PASSPHRASE: PASS,
    BORG_BASE_DIR: join(work, "home"),
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
  };
  let n = 0;
  return {
    name: "borg",
    repoDir: repo,
    init: () => measure(["borg", "init", "-e", "repokey-blake2", repo], { env }),
    backup: (src) => measure(["borg", "create", `${repo}::a${++n}`, "."], { env, cwd: src }),
    restore: (_src, target) => measure(["borg", "extract", `${repo}::a${n}`], { env, cwd: target }),
    restoredPath: (_src, target) => target,
    check: () => measure(["borg", "check", "--verify-data", repo], { env }),
  };
}

/** Installs restic and borg (or only the `bins` named) from Debian when they are missing. */
export async function ensurePeers(bins = ["restic", "borg"]): Promise<void> {
  const missing: string[] = [];
  const peers = [["restic", "restic"], ["borg", "borgbackup"]].filter(([b]) => bins.includes(b));
  for (const [bin, pkg] of peers) {
    const ok = await new Deno.Command("sh", { args: ["-c", `command -v ${bin}`], stdout: "null" })
      .output().then((o) => o.success);
    if (!ok) missing.push(pkg);
  }
  if (missing.length === 0) return;
  console.error(`installing ${missing.join(" ")} with apt-get`);
  const run = async (args: string[]) => {
    const o = await new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    if (!o.success) throw new Error(`apt-get ${args.join(" ")} failed`);
  };
  await run(["update", "-qq"]);
  await run(["install", "-y", "-qq", ...missing]);
}

/** Bytes of a directory tree (apparent sizes). */
export async function duBytes(dir: string): Promise<number> {
  const o = await new Deno.Command("du", { args: ["-sb", dir], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(o.stdout).split(/\s+/)[0]);
}

/** True when two trees have the same files and contents. */
export async function sameTree(a: string, b: string): Promise<boolean> {
  const o = await new Deno.Command("diff", { args: ["-rq", a, b], stdout: "null", stderr: "null" })
    .output();
  return o.success;
}

/** `sync`, so that one measurement's write-back does not land in the next. */
export async function settle(): Promise<void> {
  await new Deno.Command("sync").output();
}
