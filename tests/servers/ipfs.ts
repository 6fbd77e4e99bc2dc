// Starts a throwaway IPFS node for tests: js-ipfs 0.66.1 (installed by scripts/setup/ipfs.sh into
// .cache/jsipfs; Kubo cannot be installed on machines that reach only the npm registry), offline,
// on loopback, with a fresh repository in a temporary directory and port 0 for every listener.
// The node speaks the same HTTP RPC API as Kubo (POST /api/v0/…).

import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;
const CLI = join(ROOT, ".cache/jsipfs/node_modules/ipfs/src/cli.js");
const INIT_CONFIG = join(ROOT, "tests/servers/jsipfs/init-config.json");
const READY_TIMEOUT_MS = 60_000;
const LOG_KEEP = 16 << 10;

/** A running IPFS node. */
export interface IpfsServer {
  /** Base URL of the RPC API, e.g. "http://127.0.0.1:34009" (without /api/v0). */
  api: string;
  /** The node's repository directory (IPFS_PATH). */
  repo: string;
  /** Stops the node (its whole process group) and removes its directory. */
  stop(): Promise<void>;
}

/** Starts a fresh offline js-ipfs daemon and waits until its API answers. */
export async function startIpfs(): Promise<IpfsServer> {
  try {
    await Deno.stat(CLI);
  } catch {
    throw new Error(
      `js-ipfs is not installed (${CLI} is missing): run \`bash scripts/setup.sh\``,
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "n2s-ipfs-" });
  const repo = join(dir, "repo");
  const env: Record<string, string> = { ...Deno.env.toObject(), IPFS_PATH: repo };
  delete env.IPFS_API;
  delete env.N2S_IPFS_API;
  // The daemon runs under a small shell in a new session (setsid), so that stop() reaches every
  // process in the group. The shell forwards SIGTERM to the daemon and waits for it, and a
  // watcher stops the daemon and removes its directory if this process dies without calling
  // stop() (a killed test run).
  const script = `node "$@" & child=$!
(while kill -0 ${Deno.pid} 2>/dev/null; do sleep 1; done; kill -TERM $child 2>/dev/null) &
watcher=$!
trap 'kill -TERM $child 2>/dev/null' TERM
wait $child; status=$?
if kill -0 $child 2>/dev/null; then wait $child; status=$?; fi
kill $watcher 2>/dev/null
kill -0 ${Deno.pid} 2>/dev/null || rm -rf '${dir}'
exit $status`;
  const child = new Deno.Command("setsid", {
    args: [
      "sh",
      "-c",
      script,
      "sh",
      CLI,
      "daemon",
      "--init-profile",
      "test",
      "--init-config",
      INIT_CONFIG,
      "--offline",
      "--enable-preload=false",
    ],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let log = "";
  let ready: () => void;
  const readySeen = new Promise<void>((r) => ready = r);
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      log = (log + text).slice(-LOG_KEEP);
      if (log.includes("Daemon is ready")) ready();
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      try {
        Deno.kill(child.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => signalGroup(child.pid, "SIGKILL"), 10_000);
      await status;
      clearTimeout(timer);
    }
    // Whatever is left in the group (the watcher's sleep) goes too.
    signalGroup(child.pid, "SIGKILL");
    await drained.catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const outcome = await Promise.race([
      readySeen.then(() => "ready" as const),
      status.then(() => "exited" as const),
      new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), READY_TIMEOUT_MS)),
    ]);
    if (outcome !== "ready") {
      const why = outcome === "exited"
        ? "exited before it was ready"
        : `was not ready within ${READY_TIMEOUT_MS / 1000} s`;
      throw new Error(`js-ipfs daemon ${why}; its output:\n${log.trim()}`);
    }
    const addr = (await Deno.readTextFile(join(repo, "api"))).trim();
    const m = /^\/ip4\/([0-9.]+)\/tcp\/(\d+)/.exec(addr);
    if (!m) throw new Error(`js-ipfs daemon wrote an unexpected API address: ${addr}`);
    return { api: `http://${m[1]}:${m[2]}`, repo, stop };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

function signalGroup(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
