// The rclone backend's process: one `rclone rcd` on 127.0.0.1, on a port of its choosing, with
// a random user and password passed in its environment (never --rc-no-auth: --rc-serve would let
// any local process read the remote). It knows the location as an alias remote defined there.

import { randomHex } from "../shared.ts";
import { rcloneLine } from "./errors.ts";
import { DEFAULT_FLAGS } from "./location.ts";

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const STDERR_LINES = 20;

/** A running `rclone rcd`: its process, address, credentials and recent stderr lines. */
export class Rcd {
  exited = false;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<void>;
  readonly #onUnload = () => this.kill("SIGKILL");

  private constructor(
    readonly child: Deno.ChildProcess,
    readonly url: string,
    readonly auth: string,
    readonly client: Deno.HttpClient,
    /** The newest lines of rcd's stderr. */
    readonly stderr: string[],
    status: Promise<Deno.CommandStatus>,
    drained: Promise<void>,
  ) {
    this.#status = status;
    this.#drained = drained;
    // rcd outlives a process that exits without close(); stop it then too.
    globalThis.addEventListener("unload", this.#onUnload);
  }

  /** Starts rcd on a free loopback port; resolves once it serves. */
  static async start(program: string, env: Record<string, string>): Promise<Rcd> {
    const user = `n2s-${randomHex(4)}`;
    const pass = randomHex(24);
    const args = [
      "rcd",
      "--rc-addr=127.0.0.1:0",
      "--rc-serve",
      "--rc-server-read-timeout=24h",
      "--rc-server-write-timeout=24h",
      "--log-level=NOTICE",
      // Always move, even onto an object of the same size and time (an overwrite).
      "--ignore-times",
      "--ask-password=false",
      ...DEFAULT_FLAGS.filter(([v]) => env[v] === undefined).map(([, f]) => f),
    ];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, {
        args,
        // The credentials go through the environment, which other users cannot read (unlike
        // the command line).
        env: { ...env, RCLONE_RC_USER: user, RCLONE_RC_PASS: pass },
        clearEnv: true,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(
          `${program} not found; install it (apt-get install rclone) or set N2S_RCLONE`,
        );
      }
      throw new Error(`cannot run ${program}: ${e instanceof Error ? e.message : e}`);
    }
    const lines: string[] = [];
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    const { promise: announced, resolve: announce } = Promise.withResolvers<string>();
    const drained = (async () => {
      let buf = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          const m = /Serving remote control on (http:\/\/127\.0\.0\.1:\d+)\//.exec(line);
          if (m) announce(m[1]);
          if (line !== "") lines.push(line);
          if (lines.length > STDERR_LINES) lines.shift();
        }
      }
      if (buf.trim() !== "") lines.push(buf.trim());
    })().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const url = await Promise.race([
      announced,
      status.then(() => null),
      new Promise<null>((r) => timer = setTimeout(() => r(null), STARTUP_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    if (url === null) {
      if (!exited) child.kill("SIGKILL");
      const code = (await status).code;
      await drained;
      const last = lines.map((l) => l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, "")).at(-1);
      throw new Error(
        exited && code !== 0 && last === undefined
          ? `${program} rcd exited with code ${code}`
          : `${program} rcd did not start: ${rcloneLine(last ?? "no output within 20 s")}`,
      );
    }
    const port = Number(new URL(url).port);
    const client = Deno.createHttpClient({
      // Straight to rcd, whatever proxy the environment names.
      proxy: { transport: "tcp", hostname: "127.0.0.1", port },
      http2: false,
    });
    const auth = `Basic ${btoa(`${user}:${pass}`)}`;
    const rcd = new Rcd(child, `${url}/`, auth, client, lines, status, drained);
    status.then(() => rcd.exited = true);
    return rcd;
  }

  /** The last line rcd printed, without its timestamp. */
  lastLine(): string {
    const l = this.stderr.at(-1);
    return l ? rcloneLine(l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, "")) : "no output";
  }

  kill(signal: Deno.Signal): void {
    if (this.exited) return;
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /** Stops rcd (SIGTERM, then SIGKILL after a while) and waits for it. */
  async stop(): Promise<void> {
    globalThis.removeEventListener("unload", this.#onUnload);
    this.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      this.#status.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), STOP_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    if (late) this.kill("SIGKILL");
    await this.#status;
    await this.#drained;
    this.client.close();
  }
}
