// The SSH backend: a repository in a directory on any host the system's OpenSSH client reaches,
// so that ~/.ssh/config, ssh-agent, known_hosts and ProxyJump work as users expect.
//
// Locations: sftp://[user@]host[:port]/absolute/path, or sftp://[user@]host[:port]/~/path for a
// path under the login's home; ssh:// is the same. Env: N2S_SSH_CONFIG (an ssh_config file,
// passed as `ssh -F`) and N2S_SSH_COMMAND (the ssh program, default "ssh"; words split on
// spaces). ssh always runs with BatchMode=yes: it never prompts.
//
// How it works. Each backend instance opens one ControlMaster connection (its socket in a
// private 0700 temp dir, ControlPersist so that it outlives the first command) and, over it, up
// to MAX_WORKERS long-lived remote shells ("workers", one SSH session each). A worker reads one
// command line at a time, `<nonce> <script>`, runs the script, and answers with the script's
// output, then `<nonce> <status>\n<stderr><nonce>\n`; a line that does not start with the
// worker's secret token makes it exit, so a desynchronised stream is never run as commands.
// One operation is one script, so it costs one round trip and a few process starts on the
// remote, not a key exchange or a login shell. Objects are files under the root directory:
// - put writes `.n2s-tmp/<random>` and renames it over the key (atomic; list skips
//   `.n2s-tmp`), only when the byte count matches. The body goes through the worker in pieces
//   of at most 4 MiB, each read with GNU `head -c N` (which reads exactly N bytes from a pipe).
//   Without GNU head, a body of up to 256 KiB goes through the worker read by `dd count=1`
//   (one pipe read each, so never too much), and a larger one streams through its own
//   session (`cat > tmp`); a worker then checks the size and renames.
// - get runs `cat`; a ranged get runs `dd`, which seeks on the remote (GNU dd with
//   `iflag=skip_bytes,count_bytes`, else the 4 KiB blocks that hold the range, trimmed here).
// - stat runs `wc -c`, list `find` under the deepest directory of the prefix
//   (`-printf` where find is GNU find, else `-exec wc -c`), delete `rm -f`, flush `sync` once
//   for all puts since the last flush. close() also removes temporary files older than a day
//   (left by puts whose connection was cut).
//
// The remote needs a POSIX shell (sh) with cat, mv, mkdir, find, rm, wc, head, dd, tee, ls and
// sync: any Linux or BSD host. An SFTP-only account (ForceCommand internal-sftp) has no shell: reach it
// through the rclone backend instead.

import {
  type Backend,
  BackendError,
  type Body,
  type ByteRange,
  checkKey,
  checkRange,
  type ErrorKind,
  NotFoundError,
  type ObjectInfo,
} from "./backend.ts";

const TMP_DIR = ".n2s-tmp";
/** Largest piece of a put body sent as one command. */
const CHUNK = 4 << 20;
/** Sessions per connection: sshd allows 10 by default (MaxSessions); leave room for puts. */
const MAX_WORKERS = 8;
/** Puts streaming through their own session, where head is not GNU head. */
const MAX_PUT_SESSIONS = 2;
/** Without GNU head, bodies up to this size go through a worker, larger ones a session. */
const PORTABLE_SMALL = 256 << 10;
/** Block size of ranged reads with a dd that counts only in blocks (not GNU dd). */
const PORTABLE_BLOCK = 4096;
/** Exit statuses the scripts use. */
const ST_NOT_FOUND = 44;
const ST_SHORT = 45;
/** How long a new worker may take to answer its first command. */
const HELLO_TIMEOUT_MS = 30_000;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Quotes a string as one POSIX shell word. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function oneLine(s: string, max = 300): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

function concat2(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Index of `needle` in `hay`, or -1. */
function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  const last = hay.length - needle.length;
  for (let i = hay.indexOf(first); i >= 0 && i <= last; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** A parsed sftp:// or ssh:// location. */
export interface SftpLocation {
  user?: string;
  /** Host name, address or ssh_config alias (IPv6 without brackets). */
  host: string;
  port?: number;
  /** True for sftp://host/~/path: `path` is then relative to the login's home ("" = home). */
  home: boolean;
  /** The directory: absolute (home false) or relative to the home (home true). */
  path: string;
}

const FORMS = "sftp://[user@]host[:port]/absolute/path or sftp://[user@]host[:port]/~/path";

function badLocation(location: string, why: string): BackendError {
  // Never echo a password that was put in the location.
  const shown = location.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/i, "$1:***@");
  return new BackendError("permanent", "sftp", `invalid location "${shown}": ${why}; use ${FORMS}`);
}

/** Parses `sftp://[user@]host[:port]/path` (also `ssh://`, and `/~/path` under the home). */
export function parseSftpLocation(location: string): SftpLocation {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw badLocation(location, "not a URL");
  }
  if (url.protocol !== "sftp:" && url.protocol !== "ssh:") {
    throw badLocation(location, `scheme "${url.protocol}" is not sftp: or ssh:`);
  }
  if (url.password !== "") {
    throw badLocation(location, "passwords are not supported (use a key or ssh-agent)");
  }
  if (url.search !== "" || url.hash !== "") {
    throw badLocation(location, "no ?query or #fragment is allowed");
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw badLocation(location, "the host is missing");
  if (host.startsWith("-") || /[\s'"\\]/.test(host)) {
    throw badLocation(location, "the host name is not valid");
  }
  let user: string | undefined;
  if (url.username !== "") {
    user = decodeURIComponent(url.username);
    if (user.startsWith("-") || /[\s\0]/.test(user)) {
      throw badLocation(location, "the user name is not valid");
    }
  }
  let raw: string;
  try {
    raw = decodeURIComponent(url.pathname);
  } catch {
    throw badLocation(location, "the path is not valid percent-encoding");
  }
  if (/[\0\n\r]/.test(raw)) throw badLocation(location, "the path has a control character");
  const home = raw === "/~" || raw.startsWith("/~/");
  const parts = (home ? raw.slice(2) : raw).split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw badLocation(location, 'the path may not contain ".."');
  if (!home && parts.length === 0) throw badLocation(location, "the directory path is missing");
  return {
    user,
    host,
    port: url.port === "" ? undefined : Number(url.port),
    home,
    path: home ? parts.join("/") : `/${parts.join("/")}`,
  };
}

/** Options of an SftpBackend. */
export interface SftpOptions {
  /** The ssh program and any leading arguments (default ["ssh"]). */
  ssh?: string[];
  /** An ssh_config file (`ssh -F`); default: ssh's own (~/.ssh/config). */
  config?: string;
  /** Use only POSIX tools on the remote, as on a host without GNU coreutils and findutils. */
  portable?: boolean;
}

/** What a worker answered to one command. */
interface Reply {
  status: number;
  err: string;
}

/** The worker's stream ended (ssh exited): its exit code and the end of its stderr. */
class WorkerLost extends Error {
  constructor(readonly code: number | null, readonly stderr: string) {
    super(`ssh exited (${code}): ${oneLine(stderr)}`);
  }
}

// The remote loop ($1 is the worker's token). Each script runs in a subshell whose stderr is
// captured; fd 3 is the session's stdout. Written for any login shell: no newlines, no `!`.
const LOOP = "t=$1; exec 3>&1; nf() { return 44; }; short() { return 45; }; " +
  'while IFS=" " read -r m c; do case $m in "$t".*) ;; *) exit 97;; esac; ' +
  'e=$( { eval "$c"; } 2>&1 1>&3 ); s=$?; printf "%s %s\\n%s%s\\n" "$m" "$s" "$e" "$m"; done';

/** One long-lived remote shell over one SSH session. */
class Worker {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #stderr: Promise<string>;
  readonly #token: string;
  #buf: Uint8Array = new Uint8Array(0);
  #seq = 0;
  /** Set once the stream cannot be trusted any more; the worker is then killed. */
  dead = false;

  constructor(child: Deno.ChildProcess, token: string) {
    this.#child = child;
    this.#token = token;
    this.#writer = child.stdin.getWriter();
    this.#reader = child.stdout.getReader();
    // An idle worker whose connection went away must not be handed out again.
    child.status.then(() => this.dead = true, () => this.dead = true);
    // Keep the last few KiB of stderr (ssh's own messages) and never let the pipe fill.
    this.#stderr = (async () => {
      let tail = "";
      const d = new TextDecoder();
      for await (const chunk of child.stderr) tail = (tail + d.decode(chunk)).slice(-4096);
      return tail;
    })().catch(() => "");
  }

  /** Sends one command (and the bytes its script reads from stdin); returns its nonce. */
  async send(script: string, data: Uint8Array[] = []): Promise<string> {
    const nonce = `${this.#token}.${++this.#seq}`;
    try {
      await this.#writer.write(enc.encode(`${nonce} ${script}\n`));
      for (const d of data) if (d.length > 0) await this.#writer.write(d);
    } catch {
      this.dead = true;
      throw await this.#lost();
    }
    return nonce;
  }

  async #lost(): Promise<WorkerLost> {
    this.dead = true;
    await this.#reader.cancel().catch(() => {});
    const status = await this.#child.status;
    return new WorkerLost(status.code, await this.#stderr);
  }

  async #fill(): Promise<void> {
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await this.#reader.read();
    } catch {
      r = { done: true, value: undefined };
    }
    if (r.done) throw await this.#lost();
    this.#buf = concat2(this.#buf, r.value);
  }

  async #readUntil(mark: Uint8Array): Promise<Uint8Array> {
    let i: number;
    while ((i = indexOfBytes(this.#buf, mark)) < 0) await this.#fill();
    const out = this.#buf.slice(0, i);
    this.#buf = this.#buf.subarray(i + mark.length);
    return out;
  }

  /** The output of the command with this nonce, then its reply (as the generator's value). */
  async *output(nonce: string): AsyncGenerator<Uint8Array, Reply, void> {
    const mark = enc.encode(nonce);
    try {
      while (true) {
        const i = indexOfBytes(this.#buf, mark);
        if (i >= 0) {
          if (i > 0) yield this.#buf.subarray(0, i);
          this.#buf = this.#buf.subarray(i + mark.length);
          break;
        }
        // Everything but a tail that could be the start of the mark is output.
        const keep = Math.min(this.#buf.length, mark.length - 1);
        if (this.#buf.length > keep) {
          const out = this.#buf.subarray(0, this.#buf.length - keep);
          this.#buf = this.#buf.slice(this.#buf.length - keep);
          yield out;
        }
        await this.#fill();
      }
      const status = Number(dec.decode(await this.#readUntil(enc.encode("\n"))).trim());
      const err = dec.decode(await this.#readUntil(mark));
      const nl = await this.#readUntil(enc.encode("\n"));
      if (!Number.isInteger(status) || nl.length !== 0) {
        this.dead = true;
        throw new WorkerLost(null, "garbled answer from the remote shell");
      }
      return { status, err: err.trim() };
    } catch (e) {
      this.dead = true;
      throw e;
    }
  }

  /** Runs a script and collects its (small) output. */
  async call(script: string, data?: Uint8Array[]): Promise<Reply & { out: Uint8Array }> {
    const it = this.output(await this.send(script, data));
    const parts: Uint8Array[] = [];
    let r = await it.next();
    while (!r.done) {
      parts.push(r.value);
      r = await it.next();
    }
    let out: Uint8Array = new Uint8Array(0);
    for (const p of parts) out = concat2(out, p);
    return { ...r.value, out };
  }

  /** Ends the worker: gracefully (EOF on its stdin) or by killing the local ssh. */
  async end(kill: boolean): Promise<void> {
    this.dead = true;
    if (kill) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
    }
    await this.#writer.close().catch(() => {});
    await this.#reader.cancel().catch(() => {});
    await this.#child.status;
    await this.#stderr;
  }
}

/** A directory on a host reached with the system's OpenSSH client. */
export class SftpBackend implements Backend {
  readonly name: string;
  readonly parallelism = MAX_WORKERS;
  readonly #loc: SftpLocation;
  readonly #ssh: string[];
  readonly #config?: string;
  readonly #portable: boolean;
  /** "host:port" (or the alias) for messages. */
  readonly #where: string;
  #ctlDir: string | null = null;
  #connecting: Promise<void> | null = null;
  /** Set once a connection has worked: from then on, a lost connection is transient. */
  #connected = false;
  /** Set once a remote shell has answered: from then on, a shell that ends is transient. */
  #shellWorked = false;
  #closed = false;
  #idle: Worker[] = [];
  #workers = 0;
  #waiters: ((w: Worker | null) => void)[] = [];
  #ending = new Set<Promise<void>>();
  #putSessions = 0;
  #putWaiters: (() => void)[] = [];
  #gnuHead = false;
  #gnuFind = false;
  #gnuDd = false;
  #tmpReady: Promise<void> | null = null;
  #unsynced = 0;
  #putCount = 0;

  constructor(loc: SftpLocation, opts: SftpOptions = {}) {
    this.#loc = loc;
    this.#ssh = opts.ssh && opts.ssh.length > 0 ? opts.ssh : ["ssh"];
    this.#config = opts.config;
    this.#portable = opts.portable ?? false;
    const h = loc.host.includes(":") ? `[${loc.host}]` : loc.host;
    this.#where = `${h}${loc.port ? `:${loc.port}` : ""}`;
    const path = loc.home ? `/~${loc.path ? `/${loc.path}` : ""}` : loc.path;
    this.name = `sftp ${loc.user ? `${loc.user}@` : ""}${this.#where}${path}`;
  }

  // ---- paths and scripts ----

  /** A shell word for a path under the root ("" = the root itself). */
  #q(rel: string): string {
    const { home, path } = this.#loc;
    if (home) {
      const p = [path, rel].filter((x) => x !== "").join("/");
      return p === "" ? '"$HOME"' : `"$HOME"/${shellQuote(p)}`;
    }
    return shellQuote(rel === "" ? path : `${path}/${rel}`);
  }

  #checkKey(key: string): void {
    checkKey(this.name, key);
    if (/[\n\r]/.test(key) || key.split("/").includes(TMP_DIR)) {
      throw new BackendError("permanent", this.name, `invalid object key: ${JSON.stringify(key)}`);
    }
  }

  /** Renames tmp over the key, creating the key's directory when needed. */
  #publish(tmp: string, key: string): string {
    const t = this.#q(tmp);
    const f = this.#q(key);
    const slash = key.lastIndexOf("/");
    const dir = this.#q(slash < 0 ? "" : key.slice(0, slash));
    // mv onto a directory would move the file into it: refuse that, as a rename would.
    return `if [ -d ${f} ]; then rm -f ${t}; echo ${shellQuote(`${key}: Is a directory`)} >&2; ` +
      `false; else mv -f ${t} ${f} 2>/dev/null || { mkdir -p ${dir} && mv -f ${t} ${f}; } || ` +
      `{ rm -f ${t}; false; }; fi`;
  }

  /** Publishes tmp if it holds exactly `size` bytes, else removes it. */
  #checkAndPublish(tmp: string, key: string, size: number): string {
    const t = this.#q(tmp);
    return `n=$(wc -c <${t}) && if [ $n -eq ${size} ]; then ${this.#publish(tmp, key)}; ` +
      `else rm -f ${t}; short; fi`;
  }

  /**
   * The branch for a key that is not a file: "not found", unless the path cannot be reached
   * (a parent is not a directory, no permission), which is an error.
   */
  #missing(f: string): string {
    return `e=$(ls -d ${f} 2>&1 >/dev/null); case $e in *"Not a directory"*|*"ermission denied"*) ` +
      `printf '%s\\n' "$e" >&2; false;; *) nf;; esac`;
  }

  // ---- ssh ----

  #sshArgs(extra: string[], command?: string): string[] {
    const a = this.#ssh.slice(1);
    if (this.#config !== undefined) a.push("-F", this.#config);
    for (
      const o of [
        "BatchMode=yes",
        "ControlMaster=auto",
        `ControlPath=${this.#ctlDir}/m`,
        "ControlPersist=60",
        "ConnectTimeout=10",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
        "ClearAllForwardings=yes",
        "ForwardAgent=no",
        "ForwardX11=no",
        "PermitLocalCommand=no",
        "RemoteCommand=none",
        "RequestTTY=no",
      ]
    ) a.push("-o", o);
    if (this.#loc.port !== undefined) a.push("-p", String(this.#loc.port));
    if (this.#loc.user !== undefined) a.push("-l", this.#loc.user);
    a.push(...extra, "--", this.#loc.host);
    if (command !== undefined) a.push(command);
    return a;
  }

  #spawn(extra: string[], command: string | undefined, stdin: "piped" | "null") {
    try {
      return new Deno.Command(this.#ssh[0], {
        args: this.#sshArgs(extra, command),
        stdin,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new BackendError(
          "permanent",
          this.name,
          `ssh program "${this.#ssh[0]}" not found; install the OpenSSH client or set ` +
            "N2S_SSH_COMMAND",
          { cause: e },
        );
      }
      throw new BackendError("permanent", this.name, `cannot run ssh: ${e}`, { cause: e });
    }
  }

  /** Classifies a failed ssh run from its exit code and stderr. */
  #sshError(code: number | null, stderr: string, cause?: unknown): BackendError {
    const s = stderr;
    const last = oneLine(s.split("\n").map((l) => l.trim()).filter((l) => l).at(-1) ?? "");
    const first = !this.#connected;
    const hp = this.#where;
    let kind: ErrorKind = first ? "permanent" : "transient";
    let msg: string;
    if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(s)) {
      kind = "permanent";
      msg = `host key verification failed for ${hp}; check known_hosts (connect once with ssh ` +
        "to accept the key, or fix a changed key)";
    } else if (/Permission denied \(|Too many authentication failures/i.test(s)) {
      kind = "permanent";
      msg = `authentication${this.#loc.user ? ` as ${this.#loc.user}` : ""} failed (${last}); ` +
        "check the key (IdentityFile, ssh-agent) and the remote authorized_keys";
    } else if (
      /Bad configuration option|bad configuration options|Can't open user config file|Bad owner or permissions|Unsupported option|Bad port|garbage at end of line/i
        .test(s)
    ) {
      kind = "permanent";
      msg = `ssh configuration error (${last}); check N2S_SSH_CONFIG and ~/.ssh/config`;
    } else if (/Connection refused/i.test(s)) {
      msg = `connection refused by ${hp}; is sshd running there?`;
    } else if (
      /Could not resolve hostname|Name or service not known|nodename nor servname/i.test(s)
    ) {
      msg = `cannot resolve the host name of ${hp}; check the location (or the Host entry ` +
        "in the ssh config)";
    } else if (/No route to host|Network is unreachable|Host is unreachable/i.test(s)) {
      msg = `${hp} is unreachable (${last}); check the address and the network`;
    } else if (/timed out/i.test(s)) {
      msg = `connection to ${hp} timed out; is the host up and the port right?`;
    } else if (
      /Connection (closed|reset)|Broken pipe|kex_exchange_identification|closed by remote|lost connection|client_loop|Shared connection/i
        .test(s)
    ) {
      kind = "transient";
      msg = `connection to ${hp} lost (${last || `ssh exit ${code}`})`;
    } else {
      msg = `ssh to ${hp} failed (exit ${code}${last ? `: ${last}` : ""})`;
    }
    return new BackendError(kind, this.name, msg, { cause });
  }

  /** Classifies a script's failure from its status and stderr. */
  #remoteError(what: string, r: Reply): BackendError {
    const err = oneLine(r.err);
    const detail = err || `exit status ${r.status}`;
    if (r.status === 127 || /command not found|: not found/i.test(err)) {
      return new BackendError(
        "permanent",
        this.name,
        `${what}: a remote command is missing (${detail}); the remote needs a POSIX shell with ` +
          "cat, mv, mkdir, find, rm, wc, head, dd, tee, ls and sync",
      );
    }
    if (/Permission denied|Operation not permitted/i.test(err)) {
      return new BackendError(
        "permanent",
        this.name,
        `${what}: permission denied (${detail}); check the owner and mode of the remote ` +
          "directory",
      );
    }
    if (
      /No space left|Disk quota|Read-only file system|Not a directory|Is a directory|File exists/i
        .test(err)
    ) {
      return new BackendError("permanent", this.name, `${what}: ${detail}`);
    }
    if (r.status === ST_SHORT) {
      return new BackendError(
        "transient",
        this.name,
        `${what}: the remote received fewer bytes than were sent`,
      );
    }
    return new BackendError("transient", this.name, `${what}: remote command failed (${detail})`);
  }

  /** Turns any failure of a worker into a BackendError. */
  #fail(what: string, e: unknown): BackendError {
    if (e instanceof BackendError) return e;
    if (e instanceof WorkerLost) {
      if (e.code === 255) {
        return this.#sshError(e.code, e.stderr, e);
      }
      return new BackendError(
        this.#shellWorked ? "transient" : "permanent",
        this.name,
        `${what}: the remote shell ended (exit ${e.code}${
          e.stderr.trim() ? `: ${oneLine(e.stderr)}` : ""
        }); the account needs a POSIX shell (SFTP-only accounts: use the rclone backend)`,
        { cause: e },
      );
    }
    const msg = e instanceof Error ? e.message : String(e);
    return new BackendError("transient", this.name, `${what}: ${oneLine(msg)}`, { cause: e });
  }

  /** Opens the master connection once (again after a failed attempt). */
  #connect(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new BackendError("permanent", this.name, "backend is closed"));
    }
    this.#connecting ??= (async () => {
      if (this.#ctlDir === null) {
        // A short path: a unix socket path is limited to about 100 bytes.
        let base: string | undefined = "/tmp";
        try {
          await Deno.stat(base);
        } catch {
          base = undefined;
        }
        this.#ctlDir = await Deno.makeTempDir({ dir: base, prefix: "n2s-ssh-" });
        await Deno.chmod(this.#ctlDir, 0o700);
      }
      // -N: no session; with ControlPersist the master goes to the background once it is
      // authenticated, and this process exits 0.
      const child = this.#spawn(["-N"], undefined, "null");
      const [status, , err] = await Promise.all([
        child.status,
        child.stdout.cancel(),
        new Response(child.stderr).text(),
      ]);
      if (status.code !== 0) throw this.#sshError(status.code, err);
      this.#connected = true;
    })().catch((e) => {
      this.#connecting = null;
      throw e;
    });
    return this.#connecting;
  }

  async #newWorker(): Promise<Worker> {
    await this.#connect();
    const token = `n2s${randomHex(12)}`;
    const child = this.#spawn(["-T"], `exec sh -c ${shellQuote(LOOP)} n2s ${token}`, "piped");
    const w = new Worker(child, token);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const hello = w.call(
        "{ if head --version 2>/dev/null | grep 'GNU coreutils' >/dev/null; then " +
          "printf 'gnuhead '; fi; if find . -maxdepth 0 -printf '' >/dev/null 2>&1; then " +
          "printf 'gnufind '; fi; if dd --version 2>/dev/null | grep 'GNU coreutils' " +
          ">/dev/null; then printf 'gnudd '; fi; } </dev/null",
      );
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new BackendError(
                "permanent",
                this.name,
                `the remote shell did not answer within ${HELLO_TIMEOUT_MS / 1000} s; the ` +
                  "account needs a POSIX shell (SFTP-only accounts: use the rclone backend)",
              ),
            ),
          HELLO_TIMEOUT_MS,
        );
      });
      hello.catch(() => {}); // after a timeout, its rejection is expected
      const r = await Promise.race([hello, timeout]);
      // Anything a login script printed comes before the answer; only the last word matters.
      const out = dec.decode(r.out);
      this.#gnuHead = !this.#portable && out.includes("gnuhead ");
      this.#gnuFind = !this.#portable && out.includes("gnufind ");
      this.#gnuDd = !this.#portable && out.includes("gnudd ");
      this.#shellWorked = true;
      return w;
    } catch (e) {
      await w.end(true);
      throw this.#fail("connect", e);
    } finally {
      clearTimeout(timer);
    }
  }

  async #acquire(): Promise<Worker> {
    if (this.#closed) throw new BackendError("permanent", this.name, "backend is closed");
    for (let idle = this.#idle.pop(); idle; idle = this.#idle.pop()) {
      if (!idle.dead) return idle;
      this.#workers--;
      this.#track(idle.end(true));
    }
    if (this.#workers < MAX_WORKERS) {
      this.#workers++;
      try {
        return await this.#newWorker();
      } catch (e) {
        this.#workers--;
        this.#waiters.shift()?.(null);
        throw e;
      }
    }
    const w = await new Promise<Worker | null>((r) => this.#waiters.push(r));
    return w ?? this.#acquire();
  }

  #release(w: Worker): void {
    if (w.dead || this.#closed) {
      this.#workers--;
      this.#track(w.end(true));
      // A waiter may start a new worker in its place.
      this.#waiters.shift()?.(null);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter(w);
    else this.#idle.push(w);
  }

  /** Keeps a worker's ending, so that close() can wait for it. */
  #track(ending: Promise<void>): void {
    const p = ending.catch(() => {});
    this.#ending.add(p);
    p.then(() => this.#ending.delete(p));
  }

  async #with<T>(what: string, f: (w: Worker) => Promise<T>): Promise<T> {
    const w = await this.#acquire();
    try {
      return await f(w);
    } catch (e) {
      throw this.#fail(what, e);
    } finally {
      this.#release(w);
    }
  }

  /** Runs one script that reads nothing; throws on a non-zero status unless it is allowed. */
  #run(what: string, script: string, allow: number[] = []): Promise<Reply & { out: Uint8Array }> {
    return this.#with(what, async (w) => {
      const r = await w.call(`{ ${script}; } </dev/null`);
      if (r.status !== 0 && !allow.includes(r.status)) throw this.#remoteError(what, r);
      return r;
    });
  }

  #ensureTmp(): Promise<void> {
    this.#tmpReady ??= this.#run("create the root directory", `mkdir -p ${this.#q(TMP_DIR)}`)
      .then(() => {}, (e) => {
        this.#tmpReady = null;
        throw e;
      });
    return this.#tmpReady;
  }

  // ---- Backend ----

  async put(key: string, body: Body): Promise<ObjectInfo> {
    this.#checkKey(key);
    await this.#ensureTmp();
    const tmp = `${TMP_DIR}/${randomHex(12)}`;
    const size = this.#gnuHead
      ? await this.#putChunked(key, tmp, body)
      : await this.#putPortable(key, tmp, body);
    this.#unsynced++;
    this.#putCount++;
    return { key, size };
  }

  #bodyError(what: string, e: unknown): BackendError {
    return new BackendError("permanent", this.name, `${what}: ${errText(e)}`, { cause: e });
  }

  /** Sends the body through a worker in pieces of at most CHUNK bytes, read with GNU head. */
  #putChunked(key: string, tmp: string, body: Body): Promise<number> {
    const what = `put ${key}`;
    return this.#with(what, async (w) => {
      const t = this.#q(tmp);
      let pending: Uint8Array[] = [];
      let pendingSize = 0;
      let total = 0;
      let sent = 0;
      const send = async (last: boolean) => {
        // head reads exactly N bytes; if writing fails, the rest is drained so that the shell
        // never reads body bytes as commands.
        const recv = `head -c ${pendingSize} | (cat ${sent === 0 ? ">" : ">>"}${t} || ` +
          `{ cat >/dev/null; false; })`;
        const script = last
          ? `if ${recv}; then ${this.#checkAndPublish(tmp, key, total)}; ` +
            `else rm -f ${t}; false; fi`
          : `${recv} || { rm -f ${t}; false; }`;
        const r = await w.call(script, pending);
        sent++;
        pending = [];
        pendingSize = 0;
        if (r.status !== 0) throw this.#remoteError(what, r);
      };
      let sending = false;
      try {
        for await (const piece of body.open()) {
          for (const p of Array.isArray(piece) ? piece : [piece]) {
            if (p.length === 0) continue;
            pending.push(p);
            pendingSize += p.length;
            total += p.length;
            if (pendingSize >= CHUNK) {
              sending = true;
              await send(false);
              sending = false;
            }
          }
        }
      } catch (e) {
        if (sending) throw e;
        // The body failed: drop what was sent, and report the body's error.
        if (sent > 0) await w.call(`rm -f ${t} </dev/null`);
        throw this.#bodyError(what, e);
      }
      await send(true);
      return total;
    });
  }

  /**
   * Puts with POSIX tools only: a small body goes through a worker, read with one `dd` per
   * pipe read (dd never reads past its count); a larger one streams through its own session.
   */
  async #putPortable(key: string, tmp: string, body: Body): Promise<number> {
    const what = `put ${key}`;
    const it = body.open()[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let size = 0;
    let ended = false;
    try {
      try {
        while (size <= PORTABLE_SMALL) {
          const r = await it.next();
          if (r.done) {
            ended = true;
            break;
          }
          for (const p of Array.isArray(r.value) ? r.value : [r.value]) {
            if (p.length === 0) continue;
            head.push(p);
            size += p.length;
          }
        }
      } catch (e) {
        ended = true;
        throw this.#bodyError(what, e);
      }
      if (!ended) return await this.#putSession(key, tmp, head, it);
    } finally {
      if (!ended) await it.return?.();
    }
    const t = this.#q(tmp);
    // tee counts what dd read even where writing the file fails, so the stream stays in step.
    const script = `: >${t}; n=0; while [ $n -lt ${size} ]; do ` +
      `k=$(dd bs=$((${size}-n)) count=1 2>/dev/null | tee -a ${t} | wc -c); ` +
      `[ $k -gt 0 ] || break; n=$((n+k)); done; ${this.#checkAndPublish(tmp, key, size)}`;
    return await this.#with(what, async (w) => {
      const r = await w.call(script, head);
      if (r.status !== 0) throw this.#remoteError(what, r);
      return size;
    });
  }

  /**
   * Streams a body (its first pieces already read, then the rest of its iterator) through its
   * own session (`cat > tmp`); a worker then checks the size and renames.
   */
  async #putSession(
    key: string,
    tmp: string,
    head: Uint8Array[],
    rest: AsyncIterator<Uint8Array | Uint8Array[]>,
  ): Promise<number> {
    const what = `put ${key}`;
    while (this.#putSessions >= MAX_PUT_SESSIONS) {
      await new Promise<void>((r) => this.#putWaiters.push(r));
    }
    this.#putSessions++;
    let total = 0;
    try {
      const script = `cat >${this.#q(tmp)}`;
      const child = this.#spawn(["-T"], `exec sh -c ${shellQuote(script)}`, "piped");
      const errDone = new Response(child.stderr).text();
      const outDone = child.stdout.cancel();
      const writer = child.stdin.getWriter();
      let bodyError: unknown = null;
      let writeError = false;
      const write = async (pieces: Uint8Array[]) => {
        for (const p of pieces) {
          if (p.length === 0 || writeError) continue;
          try {
            await writer.write(p);
            total += p.length;
          } catch {
            writeError = true;
          }
        }
      };
      await write(head);
      while (!writeError) {
        let r: IteratorResult<Uint8Array | Uint8Array[]>;
        try {
          r = await rest.next();
        } catch (e) {
          bodyError = e;
          // The remote cat sees an EOF either way; the file is never renamed.
          try {
            child.kill("SIGTERM");
          } catch {
            // Already exited.
          }
          break;
        }
        if (r.done) break;
        await write(Array.isArray(r.value) ? r.value : [r.value]);
      }
      await writer.close().catch(() => {});
      const [status, err] = await Promise.all([child.status, errDone, outDone]);
      if (bodyError !== null) {
        await this.#run(what, `rm -f ${this.#q(tmp)}`).catch(() => {});
        throw this.#bodyError(what, bodyError);
      }
      if (status.code === 255) throw this.#sshError(status.code, err);
      if (status.code !== 0 || writeError) {
        await this.#run(what, `rm -f ${this.#q(tmp)}`).catch(() => {});
        throw this.#remoteError(what, { status: status.code, err });
      }
    } finally {
      this.#putSessions--;
      this.#putWaiters.shift()?.();
    }
    await this.#run(what, this.#checkAndPublish(tmp, key, total));
    return total;
  }

  /**
   * Streams the file with `cat`; a range with `dd`, which seeks to the offset on the remote:
   * GNU dd takes the offset and length in bytes; any other dd reads the whole 4 KiB blocks
   * that hold the range, and the few bytes around it are dropped here.
   */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    this.#checkKey(key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    const f = this.#q(key);
    const w = await this.#acquire();
    let handedOff = false;
    try {
      // Known once this worker (or an earlier one) has greeted: whether dd is GNU dd.
      let read = `cat ${f}`;
      let trim: ByteRange | undefined;
      if (range && range.length === 0) {
        // Only whether the file exists (BSD dd takes count=0 as "no limit").
        read = ":";
      } else if (range && this.#gnuDd) {
        read = `dd if=${f} bs=${1 << 20} iflag=skip_bytes,count_bytes,fullblock ` +
          `skip=${range.offset} count=${range.length} status=none`;
      } else if (range) {
        // POSIX dd counts in blocks: read the blocks that hold the range, trim the rest here.
        // Its statistics go to stderr, which is passed on only when dd fails.
        const first = Math.floor(range.offset / PORTABLE_BLOCK);
        const end = Math.ceil((range.offset + range.length) / PORTABLE_BLOCK);
        trim = { offset: range.offset - first * PORTABLE_BLOCK, length: range.length };
        read = `{ e=$(dd if=${f} bs=${PORTABLE_BLOCK} skip=${first} count=${end - first} ` +
          `2>&1 >&4) || { printf '%s\\n' "$e" >&2; false; }; } 4>&1`;
      }
      const it = w.output(
        await w.send(
          `{ if [ -f ${f} ]; then printf +; ${read}; else ${this.#missing(f)}; fi; } </dev/null`,
        ),
      );
      // The first byte is "+" when the file exists; otherwise the reply comes at once.
      let first = await it.next();
      while (!first.done && first.value.length === 0) first = await it.next();
      if (first.done) {
        const r = first.value;
        if (r.status === ST_NOT_FOUND) throw new NotFoundError(this.name, key);
        throw this.#remoteError(what, r);
      }
      handedOff = true;
      const stream = this.#stream(w, it, first.value.subarray(1), what);
      return trim ? slice(stream, trim) : stream;
    } catch (e) {
      throw this.#fail(what, e);
    } finally {
      if (!handedOff) this.#release(w);
    }
  }

  async *#stream(
    w: Worker,
    it: AsyncGenerator<Uint8Array, Reply, void>,
    head: Uint8Array,
    what: string,
  ): AsyncGenerator<Uint8Array> {
    let done = false;
    try {
      if (head.length > 0) yield head;
      while (true) {
        let r: IteratorResult<Uint8Array, Reply>;
        try {
          r = await it.next();
        } catch (e) {
          throw this.#fail(what, e);
        }
        if (r.done) {
          done = true;
          if (r.value.status !== 0) throw this.#remoteError(what, r.value);
          return;
        }
        if (r.value.length > 0) yield r.value;
      }
    } finally {
      // A reader that stopped early leaves output in the stream: that worker cannot be reused.
      if (!done) w.dead = true;
      this.#release(w);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    this.#checkKey(key);
    const f = this.#q(key);
    const r = await this.#run(
      `stat ${key}`,
      `if [ -f ${f} ]; then wc -c <${f}; else ${this.#missing(f)}; fi`,
      [ST_NOT_FOUND],
    );
    if (r.status === ST_NOT_FOUND) return null;
    const size = Number(dec.decode(r.out).trim());
    if (!Number.isSafeInteger(size)) {
      throw new BackendError("transient", this.name, `stat ${key}: unexpected answer`);
    }
    return { key, size };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const what = `list ${prefix}`;
    if (/[\n\r\0]/.test(prefix)) return;
    const slash = prefix.lastIndexOf("/");
    const dir = slash < 0 ? "" : prefix.slice(0, slash);
    if (dir.split("/").some((c) => c === "..")) return;
    const start = dir === "" ? "." : `./${dir}`;
    const w = await this.#acquire();
    let done = false;
    try {
      // After the first worker's greeting, it is known whether find is GNU find.
      const find = `find ${shellQuote(start)} -name ${TMP_DIR} -prune -o -type f ` +
        (this.#gnuFind ? "-printf '%s %p\\n'" : "-exec wc -c {} +");
      const script = `{ if [ -d ${this.#q(dir)} ]; then cd ${this.#q("")} && ${find}; fi; } ` +
        "</dev/null";
      const it = w.output(await w.send(script));
      let rest = "";
      const d = new TextDecoder();
      const entries = function* (text: string): Generator<ObjectInfo> {
        for (const line of text.split("\n")) {
          const m = /^\s*(\d+) \.\/(.*)$/.exec(line);
          if (!m) continue; // wc's "total" line
          if (m[2].startsWith(prefix)) yield { key: m[2], size: Number(m[1]) };
        }
      };
      while (true) {
        let r: IteratorResult<Uint8Array, Reply>;
        try {
          r = await it.next();
        } catch (e) {
          throw this.#fail(what, e);
        }
        if (r.done) {
          done = true;
          yield* entries(rest + d.decode());
          const { status, err } = r.value;
          // Files removed while find ran are not an error.
          const real = err.split("\n").filter((l) => l.trim() && !/No such file/.test(l));
          if (status !== 0 && real.length > 0) throw this.#remoteError(what, r.value);
          return;
        }
        const text = rest + d.decode(r.value, { stream: true });
        const nl = text.lastIndexOf("\n");
        rest = text.slice(nl + 1);
        if (nl >= 0) yield* entries(text.slice(0, nl));
      }
    } finally {
      if (!done) w.dead = true;
      this.#release(w);
    }
  }

  async delete(key: string): Promise<void> {
    this.#checkKey(key);
    await this.#run(`delete ${key}`, `rm -f ${this.#q(key)}`);
  }

  /** Runs `sync` on the remote once for every put since the last flush. */
  async flush(): Promise<void> {
    if (this.#unsynced === 0) return;
    const n = this.#unsynced;
    // GNU sync -f syncs only the file system of the root (syncfs); elsewhere, sync them all.
    await this.#run("flush (sync)", `sync -f ${this.#q("")} 2>/dev/null || sync`);
    this.#unsynced -= n;
  }

  /** Flushes, ends the workers and the master connection, and removes the socket dir. */
  async close(): Promise<void> {
    if (this.#closed) return;
    let error: unknown = null;
    try {
      await this.flush();
    } catch (e) {
      error = e;
    }
    // Only over a live connection: close must not wait for a reconnection.
    if (this.#putCount > 0 && this.#idle.some((w) => !w.dead)) {
      // Temporary files of puts cut off long ago (a day: -mtime +0), never recent ones.
      await this.#run(
        "clean temporary files",
        `find ${this.#q(TMP_DIR)} -type f -mtime +0 -exec rm -f {} + 2>/dev/null; true`,
      ).catch(() => {});
    }
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) waiter(null);
    await Promise.all(this.#idle.splice(0).map((w) => w.end(false)));
    await Promise.all(this.#ending);
    if (this.#ctlDir !== null) {
      if (this.#connected) {
        const out = await new Deno.Command(this.#ssh[0], {
          args: [...this.#sshArgs(["-O", "exit"])],
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).output().catch(() => null);
        void out;
      }
      await Deno.remove(this.#ctlDir, { recursive: true }).catch(() => {});
    }
    if (error !== null) throw error;
  }
}

/**
 * The bytes of `range` within a stream; the stream is read to its end either way, so that the
 * worker behind it stays in step (it holds at most the ends of two blocks more).
 */
async function* slice(
  stream: AsyncIterable<Uint8Array>,
  range: ByteRange,
): AsyncGenerator<Uint8Array> {
  let pos = 0;
  const end = range.offset + range.length;
  for await (const piece of stream) {
    const from = Math.max(range.offset - pos, 0);
    const to = Math.min(end - pos, piece.length);
    pos += piece.length;
    if (to > from) yield piece.subarray(from, to);
  }
}

function errText(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e));
}

/**
 * Opens `sftp://[user@]host[:port]/path` (or ssh://) with settings from `env`: N2S_SSH_CONFIG
 * (an ssh_config file) and N2S_SSH_COMMAND (the ssh program). It connects on first use.
 */
export function openSftpLocation(
  location: string,
  env: Record<string, string | undefined>,
): Promise<Backend> {
  const loc = parseSftpLocation(location);
  const ssh = (env.N2S_SSH_COMMAND ?? "").split(/\s+/).filter((w) => w !== "");
  return Promise.resolve(
    new SftpBackend(loc, {
      ssh: ssh.length > 0 ? ssh : undefined,
      config: env.N2S_SSH_CONFIG || undefined,
    }),
  );
}
