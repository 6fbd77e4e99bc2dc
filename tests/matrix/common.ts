// What the crash, fault and fuzz matrices share: which share of the matrix runs (a seeded subset
// in CI, everything with N2S_MATRIX=full), the CLI run under a hang watchdog with its peak memory
// measured, trees compared by bytes and modes, and the backends with their test servers.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { seeded } from "../../lib/backends/wrappers.ts";
import { CLI_PATH } from "../helpers/cli.ts";
import { startIpfs } from "../servers/ipfs.ts";
import { startS3 } from "../servers/s3.ts";
import { startSshd } from "../servers/sshd.ts";

export { seeded };

/** True when the whole matrix runs (N2S_MATRIX=full, as scripts/matrix.ts sets it). */
export const FULL = Deno.env.get("N2S_MATRIX") === "full";

/** The seed of a matrix: N2S_MATRIX_SEED when set, else the matrix's own fixed seed. */
export function matrixSeed(fallback: number): number {
  const s = Deno.env.get("N2S_MATRIX_SEED");
  if (s === undefined || s === "") return fallback;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`N2S_MATRIX_SEED must be an integer, not "${s}"`);
  return n;
}

/** Seeds for a matrix whose CI share is one seed: N2S_MATRIX_SEEDS="1,2,3", else 1 or 1..n. */
export function matrixSeeds(ciSeed: number, fullCount: number): number[] {
  const s = Deno.env.get("N2S_MATRIX_SEEDS");
  if (s) return s.split(",").map((x) => Number(x.trim()));
  const first = matrixSeed(ciSeed);
  return FULL ? Array.from({ length: fullCount }, (_, i) => first + i) : [first];
}

/** The ENV every matrix command runs with (a cheap key cost, no colour). */
export const BASE_ENV = { N2S_KDF_LOG_N: "10", NO_COLOR: "1", N2S_PASSPHRASE: "matrix pw" };

/** One command's outcome. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** Peak resident memory in KiB (when measured). */
  rssKiB: number | null;
  /** The watchdog stopped it. */
  hung: boolean;
}

/** Seconds a command may run before the watchdog calls it a hang. */
export const WATCHDOG_S = 60;

/**
 * Runs a Deno script (the CLI by default) in a child process under `timeout`: a run still going
 * after `watchdogS` seconds is stopped and reported as hung (a hang detector, not a timed
 * assertion). With `measure`, /usr/bin/time records its peak resident memory.
 */
export async function runDeno(
  args: string[],
  env: Record<string, string>,
  opts: { watchdogS?: number; measure?: boolean; script?: string; cwd?: string } = {},
): Promise<Run> {
  const script = opts.script ?? CLI_PATH;
  const deno = [Deno.execPath(), "run", "-A", "--quiet", script, ...args];
  const guarded = ["timeout", "-s", "TERM", "-k", "5", String(opts.watchdogS ?? WATCHDOG_S)];
  let rssFile: string | null = null;
  let argv = [...guarded, ...deno];
  if (opts.measure) {
    rssFile = Deno.makeTempFileSync({ prefix: "n2s-rss-" });
    argv = ["/usr/bin/time", "-f", "%M", "-o", rssFile, ...argv];
  }
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { ...BASE_ENV, ...env },
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  let rssKiB: number | null = null;
  if (rssFile !== null) {
    // time(1) writes "Command exited with non-zero status N" first when it did.
    const lines = Deno.readTextFileSync(rssFile).trim().split("\n");
    rssKiB = Number(lines[lines.length - 1]);
    Deno.removeSync(rssFile);
  }
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    rssKiB,
    hung: out.code === 124,
  };
}

/** Runs the CLI and fails the test unless it exits 0 (or hangs). */
export async function cliOk(args: string[], env: Record<string, string>): Promise<string> {
  const r = await runDeno(args, env);
  assert.ok(!r.hung, `n2s ${args.join(" ")} ran for more than ${WATCHDOG_S} s`);
  assert.equal(r.code, 0, `n2s ${args.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * Every entry under `root` (the root itself left out): path → its kind, permission bits and,
 * for files, size and SHA-256, for symlinks the target.
 */
export function fingerprint(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel === "" ? root : `${root}/${rel}`)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const full = `${root}/${r}`;
      const st = Deno.lstatSync(full);
      const mode = ((st.mode ?? 0) & 0o7777).toString(8);
      if (st.isSymlink) out.set(r, `link -> ${Deno.readLinkSync(full)}`);
      else if (st.isDirectory) {
        out.set(r, `dir ${mode}`);
        walk(r);
      } else {
        const sha = createHash("sha256").update(Deno.readFileSync(full)).digest("hex");
        out.set(r, `file ${mode} ${st.size} ${sha}`);
      }
    }
  };
  walk("");
  return out;
}

/** Asserts that two trees hold the same entries with the same bytes, modes and link targets. */
export function assertSameEntries(actual: string, expected: Map<string, string>, what: string) {
  const got = fingerprint(actual);
  const diff: string[] = [];
  for (const [p, v] of expected) {
    if (got.get(p) !== v) diff.push(`${p}: ${got.get(p) ?? "absent"}, expected ${v}`);
  }
  for (const [p, v] of got) if (!expected.has(p)) diff.push(`${p}: ${v}, not expected`);
  assert.deepEqual(diff, [], `${what}: the restore differs from the source`);
}

/** A backend with its test server running: where repositories go, and what reaches them. */
export interface Target {
  name: string;
  /** The location of a repository named `sub` on this backend. */
  location(sub: string): string;
  /** Environment the CLI needs to reach it. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export type TargetKind = "local" | "s3" | "sftp" | "ipfs" | "rclone";

/** Starts the server of a backend (none for local and rclone's local remote). */
export async function startTarget(kind: TargetKind, dir: string): Promise<Target> {
  switch (kind) {
    case "local":
      return { name: kind, location: (s) => `${dir}/${s}`, env: {}, stop: async () => {} };
    case "rclone":
      return { name: kind, location: (s) => `rclone:${dir}/${s}`, env: {}, stop: async () => {} };
    case "s3": {
      const s3 = await startS3();
      return {
        name: kind,
        location: (s) => `s3://${s3.bucket}/${s}?endpoint=${s3.endpoint}`,
        env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
        stop: () => s3.stop(),
      };
    }
    case "sftp": {
      const sshd = await startSshd();
      return {
        name: kind,
        location: (s) => `sftp://${sshd.alias}${sshd.dir}/${s}`,
        env: { N2S_SSH_CONFIG: sshd.configFile },
        stop: () => sshd.stop(),
      };
    }
    case "ipfs": {
      const node = await startIpfs();
      return {
        name: kind,
        location: (s) => `ipfs://${s}?api=${node.api}`,
        env: {},
        stop: () => node.stop(),
      };
    }
  }
}

/** A seeded shuffle of `items` (a copy). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
