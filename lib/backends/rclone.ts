// The rclone backend: a repository on any remote rclone knows (a configured remote
// "myremote:bucket/dir", a connection string ":sftp,host=…:dir", or a local path), driven
// through one long-lived `rclone rcd` per backend instance over its HTTP remote-control API
// on loopback, so that an operation costs an HTTP request instead of an rclone process.
//
// Location form: `rclone:PATH`, where PATH is an rclone path exactly as rclone itself takes it.
// Environment: N2S_RCLONE names the program (default "rclone"); RCLONE_CONFIG and every other
// RCLONE_* variable reach rclone as usual, so any rclone flag can be set (RCLONE_TIMEOUT=1m),
// except those that would change what an operation does or where rcd logs. AWS_CA_BUNDLE is
// removed: rclone 1.60's s3 backend fails at once when it is set. Defaults that differ from
// rclone's own, each overridden by its variable: RCLONE_LOW_LEVEL_RETRIES=3,
// RCLONE_CONTIMEOUT=15s, RCLONE_SFTP_DISABLE_HASHCHECK=true (see DEFAULT_FLAGS).
//
// rcd listens on 127.0.0.1 on a port of its choosing, with a random user and password passed
// in its environment (never --rc-no-auth: --rc-serve would let any local process read the
// remote). It knows the location as an alias remote defined in its environment.
//
// Operations: put uploads to `.n2s-tmp/<random>` (operations/uploadfile, streamed as multipart)
// and moves it to the key (operations/movefile); get reads through --rc-serve (a ranged get
// sends a Range header, which rcd answers 206); stat, list and delete are operations/stat,
// operations/list and operations/deletefile. list never shows the temporary area.
//
// Atomicity: the final key only ever receives a whole object by a move. On local and SFTP
// remotes the move is a rename; on object stores rclone copies server-side, then deletes the
// temporary object. When the key already exists rclone deletes it just before the move, so an
// overwrite interrupted at that moment leaves no object (never a partial one).
//
// Durability, per remote type (what `flush` can promise):
// - local paths: rclone writes without fsync, so flush syncs the file system that holds the
//   root (`sync -f`), as the local backend does.
// - SFTP: data sits in the server's page cache when a put returns; rclone 1.60 sends no fsync
//   request, so a crash of the server (not of this machine) can lose recent puts.
// - object stores (S3, B2, GCS, Azure, …): an object is durable when its upload returns.
// - other remotes: whatever the service promises once its upload call returns.
//
// Errors: a remote missing from the config, an unknown backend type, refused logins, denied
// access, and any failure of the remote's first call that is not passing trouble (refused
// connection, unknown host, a bad option) are permanent; later timeouts, resets and 5xx are
// transient. An rcd that dies is started again by the next call.

import {
  type Backend,
  BackendError,
  type Body,
  BodyError,
  type ByteRange,
  checkKey,
  checkRange,
  judgeRangeAnswer,
  noBytes,
  NotFoundError,
  type ObjectInfo,
  rangeHeader,
  type TemporaryObject,
} from "./backend.ts";
import { moveWithRetry, oneLine, randomHex } from "./shared.ts";

/** The folder (under the remote's root) that holds uploads until they are moved to their key. */
export const TEMP_DIR = ".n2s-tmp";

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const STDERR_LINES = 20;

/** rclone messages of passing trouble: a retry may well succeed. */
const TRANSIENT =
  /timeout|timed out|deadline exceeded|reset|broken pipe|EOF|temporar|throttl|rate ?limit|too many|slow down|unavailable|try again|internal error|\b5\d\d\b|busy|closed/i;

/**
 * Environment variables rclone must not see: they would change what an operation does
 * (dry runs, skipping existing files), where rcd logs (it announces its address on stderr) or
 * how its remote control listens. RCLONE_RC_* is removed as a whole.
 */
const DROPPED_ENV = [
  "AWS_CA_BUNDLE",
  "RCLONE_DRY_RUN",
  "RCLONE_IGNORE_EXISTING",
  "RCLONE_IMMUTABLE",
  "RCLONE_UPDATE",
  "RCLONE_SIZE_ONLY",
  "RCLONE_CHECKSUM",
  "RCLONE_NO_CHECK_DEST",
  "RCLONE_LOG_FILE",
  "RCLONE_LOG_LEVEL",
  "RCLONE_USE_JSON_LOG",
  "RCLONE_QUIET",
  "RCLONE_VERBOSE",
  "RCLONE_SYSLOG",
  "RCLONE_INTERACTIVE",
];

/** Default rclone flags, each left out when the user set the flag's own variable. */
const DEFAULT_FLAGS: [string, string][] = [
  // A refused or unknown host fails in well under a second instead of ~11 s of rclone's own
  // retries; the backend stack retries transient errors itself.
  ["RCLONE_LOW_LEVEL_RETRIES", "--low-level-retries=3"],
  ["RCLONE_CONTIMEOUT", "--contimeout=15s"],
  // Over SFTP, rclone checks each upload by running md5sum on the server: ~190 ms per small
  // put instead of ~6 ms. Every n2s object is authenticated and verified when it is read, so
  // that check adds little; RCLONE_SFTP_DISABLE_HASHCHECK=false restores it.
  ["RCLONE_SFTP_DISABLE_HASHCHECK", "--sftp-disable-hashcheck"],
];

/** Parses `rclone:PATH` into the rclone path; throws on a malformed location. */
export function parseRcloneLocation(location: string): string {
  if (!/^rclone:/i.test(location)) {
    throw new Error(`not an rclone location: "${location}" (expected rclone:REMOTE:path)`);
  }
  let path = location.slice("rclone:".length);
  if (path.trim() === "") {
    throw new Error(
      `empty rclone path in "${location}": use rclone:REMOTE:path, rclone::backend,opt=…:path ` +
        "or rclone:/local/path",
    );
  }
  if (/[\r\n\0]/.test(path)) {
    throw new Error(`rclone path in "${location}" contains a control character`);
  }
  // "remote:dir/" and "remote:dir" are one place; keep "remote:/" and "/" as they are.
  while (path.length > 1 && path.endsWith("/") && !path.endsWith(":/")) path = path.slice(0, -1);
  return path;
}

/** Whether a connection-string parameter holds a secret (its value is hidden in messages). */
function secretParam(name: string): boolean {
  return /pass|secret|token|credential|sas_url|pem/i.test(name) || /(^|_)key$/i.test(name);
}

/** The rclone path with the values of secret connection-string parameters hidden. */
export function redactRemote(path: string): string {
  return path.replace(
    /([,:]\s*)([A-Za-z0-9_-]+)=('(?:[^']|'')*'|"(?:[^"]|"")*"|[^,:]*)/g,
    (all, sep: string, name: string) => secretParam(name) ? `${sep}${name}=***` : all,
  );
}

/** The configured remote a path names ("myremote" of "myremote:dir"), or null. */
function remoteName(path: string): string | null {
  const m = /^([^:/\\,]+)(?:,[^:]*)?:/.exec(path);
  return m && !/^[A-Za-z]$/.test(m[1]) ? m[1] : null;
}

/** The process environment (when readable) with `env` laid over it; undefined removes. */
function childEnv(env: Record<string, string | undefined>): Record<string, string> {
  let out: Record<string, string> = {};
  try {
    out = Deno.env.toObject();
  } catch {
    // Without env permission rclone sees only what `env` gives.
  }
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  for (const k of Object.keys(out)) {
    if (DROPPED_ENV.includes(k) || k.startsWith("RCLONE_RC_") || k.startsWith("N2S_")) {
      delete out[k];
    }
  }
  return out;
}

/** One line of rclone's error text: prefixes rclone adds dropped, whitespace collapsed. */
function rcloneLine(msg: string): string {
  return oneLine(msg, 500)
    .replace(/^(failed to make Fs: |NewFs: )+/g, "")
    .replace(/\{[A-Za-z0-9_-]{5}\}/g, "");
}

/** An error answer of rcd: its HTTP status and rclone's message. */
class RcError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A running `rclone rcd`: its process, address, credentials and recent stderr lines. */
class Rcd {
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

/**
 * Lets requests reach rcd one at a time until the remote has answered once, then up to `wide`
 * at a time. Each request in flight may hold one connection of rclone's to the remote (an SFTP
 * remote opens one SSH connection per concurrent operation), and a burst of simultaneous new
 * connections is what servers throttle (sshd's MaxStartups resets them).
 */
class Gate {
  #inFlight = 0;
  #waiting: (() => void)[] = [];

  constructor(private readonly wide: number, private readonly opened: () => boolean) {}

  #limit(): number {
    return this.opened() ? this.wide : 1;
  }

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.#inFlight < this.#limit()) this.#inFlight++;
    // Else wait: the request that leaves hands its slot over.
    else await new Promise<void>((r) => this.#waiting.push(r));
    try {
      return await f();
    } finally {
      this.#inFlight--;
      while (this.#waiting.length > 0 && this.#inFlight < this.#limit()) {
        this.#inFlight++;
        this.#waiting.shift()!();
      }
    }
  }
}

/** What an operation needs of the process that runs rclone. */
interface RcloneOptions {
  /** The rclone program (N2S_RCLONE). */
  program: string;
  /** rclone's environment, already filtered. */
  env: Record<string, string>;
}

/** A repository on an rclone remote, driven through one `rclone rcd`. */
export class RcloneBackend implements Backend {
  readonly name: string;
  readonly parallelism = 8;
  #rcd: Promise<Rcd> | null = null;
  /** True once the remote answered: connection errors after that are transient. */
  #worked = false;
  #unflushed = 0;
  #localRoot: Promise<string | null> | null = null;
  #closed = false;
  readonly #gate = new Gate(this.parallelism, () => this.#worked);

  /**
   * The name rcd knows the location by: an alias remote defined in rcd's environment. The
   * location itself may contain "//" (an endpoint URL in a connection string), which Go's HTTP
   * server would fold into "/" in a --rc-serve URL; the alias name never does.
   */
  readonly #fs: string;
  readonly #env: Record<string, string>;

  constructor(readonly fs: string, private readonly opts: RcloneOptions) {
    this.name = `rclone ${redactRemote(fs)}`;
    const alias = `n2s${randomHex(6)}`;
    const v = `RCLONE_CONFIG_${alias.toUpperCase()}`;
    this.#fs = `${alias}:`;
    this.#env = { ...opts.env, [`${v}_TYPE`]: "alias", [`${v}_REMOTE`]: fs };
  }

  /** Starts rcd now, so that a missing rclone fails the open. */
  async start(): Promise<void> {
    await this.#daemon();
  }

  /** The running rcd; started (again, after it died) when needed. */
  async #daemon(): Promise<Rcd> {
    if (this.#closed) throw new BackendError("permanent", this.name, "backend is closed");
    if (this.#rcd) {
      const rcd = await this.#rcd.catch(() => null);
      if (rcd && !rcd.exited) return rcd;
      if (rcd) await rcd.stop().catch(() => {});
    }
    const starting = Rcd.start(this.opts.program, this.#env);
    this.#rcd = starting;
    try {
      return await starting;
    } catch (e) {
      this.#rcd = null;
      throw new BackendError("permanent", this.name, (e as Error).message, { cause: e });
    }
  }

  /** The error for a request rcd did not answer. */
  #lost(rcd: Rcd, what: string, e: unknown): BackendError {
    const why = rcd.exited
      ? `rclone rcd exited (${rcd.lastLine()})`
      : `rclone rcd did not answer: ${rcloneLine(e instanceof Error ? e.message : String(e))}`;
    // A fresh rcd is started by the next call.
    return new BackendError("transient", this.name, `${what}: ${why}`, { cause: e });
  }

  /** Turns an rcd error answer into a classified BackendError. */
  #classify(what: string, e: RcError): BackendError {
    const msg = rcloneLine(e.message);
    let hint = "";
    let permanent = e.status === 400 || e.status === 401 || e.status === 403;
    if (/didn't find section in config file/i.test(msg)) {
      const remote = remoteName(this.fs) ?? this.fs;
      const cfg = this.opts.env.RCLONE_CONFIG;
      return new BackendError(
        "permanent",
        this.name,
        `${what}: remote "${remote}" is not in the rclone config (${
          cfg ? `RCLONE_CONFIG=${cfg}` : "rclone's default config file"
        }); check its name or add it with "rclone config"`,
        { cause: e },
      );
    }
    if (/didn't find backend called/i.test(msg)) {
      permanent = true;
      hint = "; check the backend type (see rclone help backends)";
    } else if (
      /unable to authenticate|authentication failed|auth fail|401 Unauthorized/i.test(msg)
    ) {
      permanent = true;
      hint = "; check the remote's user and key or password";
    } else if (
      /couldn't connect to ssh-agent|private key|key_file|knownhosts|host key/i.test(msg)
    ) {
      permanent = true;
      hint = "; check key_file and known_hosts_file of the remote";
    } else if (
      /permission denied|access ?denied|forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|bucket.* not found|no space left|quota|read-only file system|not a directory/i
        .test(msg)
    ) {
      permanent = true;
    } else if (!this.#worked && /connection refused/i.test(msg)) {
      permanent = true;
      hint = "; is the server running on that host and port?";
    } else if (!this.#worked && /no such host|server misbehaving/i.test(msg)) {
      permanent = true;
      hint = "; check the host name";
    } else if (!this.#worked && /network is unreachable|no route to host/i.test(msg)) {
      permanent = true;
      hint = "; is the host reachable from here?";
    } else if (!this.#worked && !TRANSIENT.test(msg)) {
      // The remote has never answered and this is no passing trouble (rcd answers every
      // rclone error with status 500, so only the message tells): a remote that is set up
      // wrong, e.g. with a password that is not obscured or a bad option, fails at once.
      permanent = true;
    }
    return new BackendError(
      permanent ? "permanent" : "transient",
      this.name,
      `${what}: ${msg}${hint}`,
      {
        cause: e,
      },
    );
  }

  /** Reads rcd's answer; returns its JSON or throws RcError for an error answer. */
  async #answer(rcd: Rcd, res: Response, what: string): Promise<Record<string, unknown>> {
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.#lost(rcd, what, e);
    }
    let obj: Record<string, unknown> = {};
    try {
      obj = JSON.parse(text);
    } catch {
      obj = { error: text.trim() || res.statusText };
    }
    if (res.ok) {
      this.#worked = true;
      return obj;
    }
    // A "not found" answer still proves that the remote was reached.
    if (res.status === 404) this.#worked = true;
    throw new RcError(res.status, typeof obj.error === "string" ? obj.error : text.trim());
  }

  /**
   * Sends one request to rcd, under the gate, and reads its answer (JSON; RcError for an error
   * answer), except the body of a successful `stream` request, which the caller reads.
   */
  #send(
    rcd: Rcd,
    what: string,
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: BodyInit },
    stream = false,
  ): Promise<{ res: Response; json?: Record<string, unknown> }> {
    return this.#gate.run(async () => {
      let res: Response;
      try {
        res = await fetch(rcd.url + path, {
          ...init,
          headers: { authorization: rcd.auth, ...init.headers },
          client: rcd.client,
        });
      } catch (e) {
        throw this.#lost(rcd, what, e);
      }
      if (stream && res.ok && res.body !== null) {
        this.#worked = true;
        return { res };
      }
      return { res, json: await this.#answer(rcd, res, what) };
    });
  }

  /** Calls an rc command with JSON parameters. */
  async #call(
    command: string,
    params: Record<string, unknown>,
    what: string,
  ): Promise<Record<string, unknown>> {
    const rcd = await this.#daemon();
    const { json } = await this.#send(rcd, what, command, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(params),
    });
    return json!;
  }

  /** #call with rcd's error answers classified. */
  async #run(
    command: string,
    params: Record<string, unknown>,
    what: string,
  ): Promise<Record<string, unknown>> {
    try {
      return await this.#call(command, params, what);
    } catch (e) {
      throw e instanceof RcError ? this.#classify(what, e) : e;
    }
  }

  async put(key: string, body: Body): Promise<ObjectInfo> {
    checkKey(this.name, key);
    const what = `put ${key}`;
    const name = randomHex(16);
    const tmp = `${TEMP_DIR}/${name}`;
    const rcd = await this.#daemon();
    const boundary = `n2s-${randomHex(16)}`;
    const enc = new TextEncoder();
    const head = enc.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
        `Content-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = enc.encode(`\r\n--${boundary}--\r\n`);
    let size = 0;
    let bodyError: unknown = undefined;
    let source: AsyncIterator<Uint8Array | Uint8Array[]> | null = null;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(head);
      },
      async pull(c) {
        try {
          source ??= body.open()[Symbol.asyncIterator]();
          while (true) {
            const r = await source.next();
            if (r.done) {
              if (body.size !== undefined && size !== body.size) {
                throw new BodyError(`body has ${size} bytes, not the ${body.size} it announced`);
              }
              c.enqueue(tail);
              c.close();
              return;
            }
            let any = false;
            for (const p of Array.isArray(r.value) ? r.value : [r.value]) {
              if (p.length === 0) continue;
              // A copy: the body may reuse its buffer once the next piece is asked for, while
              // this one may still wait to be sent.
              c.enqueue(p.slice());
              size += p.length;
              any = true;
            }
            if (any) return;
          }
        } catch (e) {
          // The upload still ends as a well-formed request, so that rcd has stored (and
          // answered for) the temporary object before it is deleted below. Aborting the request
          // instead raced that deletion against rcd's still running upload, which could create
          // the temporary object afterwards and leave it behind.
          bodyError = e;
          c.enqueue(tail);
          c.close();
        }
      },
      async cancel() {
        await source?.return?.();
      },
    });
    const query = `fs=${encodeURIComponent(this.#fs)}&remote=${encodeURIComponent(TEMP_DIR)}`;
    let uploaded = false;
    try {
      try {
        await this.#send(rcd, what, `operations/uploadfile?${query}`, {
          method: "POST",
          headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
          body: stream,
        });
      } catch (e) {
        // The body's own error is the cause of whatever the request ran into.
        if (bodyError !== undefined) throw bodyError;
        throw e;
      }
      if (bodyError !== undefined) throw bodyError;
      uploaded = true;
      await this.#move(tmp, key, what);
      this.#unflushed++;
      return { key, size };
    } catch (e) {
      // Best effort: an upload that failed may have left its temporary object (list skips it).
      if (uploaded || bodyError !== undefined) {
        await this.#call("operations/deletefile", { fs: this.#fs, remote: tmp }, what)
          .catch(() => {});
      }
      if (e === bodyError) {
        const msg = e instanceof Error ? e.message : String(e);
        throw new BackendError("permanent", this.name, `${what}: ${msg}`, { cause: e });
      }
      throw e instanceof RcError ? this.#classify(what, e) : e;
    }
  }

  /**
   * Moves an uploaded object to its key. rclone deletes an object already at the key and then
   * renames; over SFTP the rename fails when a concurrent put of the same key got there in
   * between, so a transient failure is tried again here rather than uploading again.
   */
  async #move(tmp: string, key: string, what: string): Promise<void> {
    const params = { srcFs: this.#fs, srcRemote: tmp, dstFs: this.#fs, dstRemote: key };
    await moveWithRetry(async () => {
      try {
        await this.#call("operations/movefile", params, what);
      } catch (e) {
        // When racing puts of one key delete each other's object around the rename, rclone
        // reports "object not found" for a move that took place: the upload is gone from the
        // temporary area, so this put did land (and another one may have replaced it since).
        if (e instanceof RcError && e.status === 404 && !(await this.#exists(tmp, what))) return;
        throw e;
      }
    }, (e) => e instanceof RcError && this.#classify(what, e).kind === "transient");
  }

  /** Whether an object exists, by any name (stat takes keys only). */
  async #exists(remote: string, what: string): Promise<boolean> {
    const out = await this.#run("operations/stat", { fs: this.#fs, remote }, what);
    return out.item !== null && out.item !== undefined;
  }

  /**
   * Reads the object through --rc-serve; a range is the same GET with a Range header, which
   * rcd answers 206 by opening the object at the offset on the remote (a seek, a ranged
   * request, whatever the remote's own ranged open is).
   */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    checkKey(this.name, key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    if (range && range.length === 0) {
      // HTTP cannot ask for no bytes; a stat tells whether the object exists.
      if ((await this.stat(key)) === null) throw new NotFoundError(this.name, key);
      return noBytes();
    }
    const rcd = await this.#daemon();
    const path = key.split("/").map(encodeURIComponent).join("/");
    let res: Response;
    try {
      ({ res } = await this.#send(
        rcd,
        what,
        `[${encodeURIComponent(this.#fs)}]/${path}`,
        range ? { headers: { range: rangeHeader(range) } } : {},
        true,
      ));
    } catch (e) {
      if (e instanceof RcError && e.status === 404) {
        // rcd answers 404 both for a missing object and for one it could not open at the
        // offset (some remotes refuse an offset past the end): a stat tells them apart.
        const st = range ? await this.stat(key) : null;
        if (st === null) throw new NotFoundError(this.name, key);
        if (st.size <= range!.offset) return noBytes();
        throw new BackendError("transient", this.name, `${what}: rcd could not open the object`, {
          cause: e,
        });
      }
      throw e instanceof RcError ? this.#classify(what, e) : e;
    }
    if (!res.ok || res.body === null) {
      throw new BackendError("transient", this.name, `${what}: rcd answered without a body`);
    }
    // Bytes to deliver: all the body has, or the range's (checked: a short body is an error).
    let take = Infinity;
    if (range) {
      const answer = judgeRangeAnswer(
        res.status,
        res.headers.get("content-range") ?? undefined,
        Number(res.headers.get("content-length") ?? NaN),
        range,
      );
      if (!("take" in answer)) {
        await res.body.cancel().catch(() => {});
        if ("empty" in answer) return noBytes();
        throw new BackendError("permanent", this.name, `${what}: ${answer.wrong}`);
      }
      take = answer.take;
    }
    const reader = res.body.getReader();
    const lost = (e: unknown) => this.#lost(rcd, what, e);
    const name = this.name;
    return (async function* () {
      let done = false;
      let n = 0;
      try {
        while (true) {
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await reader.read();
          } catch (e) {
            throw lost(e);
          }
          if (r.done) {
            done = true;
            break;
          }
          // Read to the end when the body holds just the range, so that the connection can
          // serve again; a longer one is cut off.
          if (n >= take) break;
          const piece = n + r.value.length > take ? r.value.subarray(0, take - n) : r.value;
          n += piece.length;
          if (piece.length > 0) yield piece;
        }
        if (Number.isFinite(take) && n !== take) {
          throw new BackendError("transient", name, `${what}: got ${n} of ${take} bytes`);
        }
      } finally {
        if (!done) await reader.cancel().catch(() => {});
        reader.releaseLock();
      }
    })();
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    checkKey(this.name, key);
    const out = await this.#run(
      "operations/stat",
      { fs: this.#fs, remote: key, opt: { noModTime: true, noMimeType: true } },
      `stat ${key}`,
    );
    const item = out.item as { Size: number; IsDir: boolean } | null | undefined;
    if (!item || item.IsDir) return null;
    return { key, size: item.Size };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const slash = prefix.lastIndexOf("/");
    const dir = slash < 0 ? "" : prefix.slice(0, slash);
    let out: Record<string, unknown>;
    try {
      out = await this.#call(
        "operations/list",
        {
          fs: this.#fs,
          remote: dir,
          opt: { recurse: true, filesOnly: true, noModTime: true, noMimeType: true },
        },
        `list ${prefix}`,
      );
    } catch (e) {
      // A directory (or the whole repository root) that does not exist holds nothing.
      if (e instanceof RcError && e.status === 404) return;
      throw e instanceof RcError ? this.#classify(`list ${prefix}`, e) : e;
    }
    const items = (out.list ?? []) as { Path: string; Size: number; IsDir: boolean }[];
    for (const item of items) {
      const key = item.Path;
      if (item.IsDir || !key.startsWith(prefix)) continue;
      if (key === TEMP_DIR || key.startsWith(`${TEMP_DIR}/`)) continue;
      yield { key, size: item.Size };
    }
  }

  /** Uploads under `.n2s-tmp/` that were cut off before their move into place. */
  async temporaries(): Promise<TemporaryObject[]> {
    let out: Record<string, unknown>;
    try {
      out = await this.#call(
        "operations/list",
        { fs: this.#fs, remote: TEMP_DIR, opt: { filesOnly: true, noMimeType: true } },
        "list temporary objects",
      );
    } catch (e) {
      if (e instanceof RcError && e.status === 404) return [];
      throw e instanceof RcError ? this.#classify("list temporary objects", e) : e;
    }
    const items = (out.list ?? []) as { Path: string; Size: number; ModTime?: string }[];
    return items.map((i) => ({
      key: `${TEMP_DIR}/${i.Path.split("/").pop()}`,
      size: i.Size,
      mtime: i.ModTime ? Date.parse(i.ModTime) : 0,
    }));
  }

  async deleteTemporary(key: string): Promise<void> {
    if (!key.startsWith(`${TEMP_DIR}/`)) {
      throw new BackendError("permanent", this.name, `${key} is not a temporary object`);
    }
    await this.delete(key);
  }

  async delete(key: string): Promise<void> {
    checkKey(this.name, key);
    const what = `delete ${key}`;
    try {
      await this.#call("operations/deletefile", { fs: this.#fs, remote: key }, what);
    } catch (e) {
      if (e instanceof RcError && e.status === 404) return;
      throw e instanceof RcError ? this.#classify(what, e) : e;
    }
  }

  /** The root directory when the remote is a local file system, else null. */
  #local(): Promise<string | null> {
    this.#localRoot ??= this.#run("operations/fsinfo", { fs: this.#fs }, "flush").then(
      (info) => {
        const features = info.Features as Record<string, boolean> | undefined;
        return features?.IsLocal && typeof info.Root === "string" ? info.Root : null;
      },
    ).catch((e) => {
      this.#localRoot = null;
      throw e;
    });
    return this.#localRoot;
  }

  /** Syncs the file system of a local root; remote stores need nothing (see the top). */
  async flush(): Promise<void> {
    if (this.#unflushed === 0) return;
    const n = this.#unflushed;
    const root = await this.#local();
    if (root !== null) {
      try {
        const out = await new Deno.Command("sync", { args: ["-f", root], stderr: "piped" })
          .output();
        if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim());
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        throw new BackendError("transient", this.name, `flush (sync -f): ${rcloneLine(msg)}`, {
          cause: e,
        });
      }
    }
    this.#unflushed -= n;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      const rcd = await this.#rcd?.catch(() => null);
      this.#rcd = null;
      await rcd?.stop();
    }
  }
}

/**
 * Opens `rclone:PATH` with settings from `env` (N2S_RCLONE, RCLONE_CONFIG and other RCLONE_*
 * variables); starts the backend's rcd before it returns.
 */
export async function openRcloneLocation(
  location: string,
  env: Record<string, string | undefined>,
): Promise<Backend> {
  const fs = parseRcloneLocation(location);
  const program = env.N2S_RCLONE || "rclone";
  const b = new RcloneBackend(fs, { program, env: childEnv(env) });
  await b.start();
  return b;
}
