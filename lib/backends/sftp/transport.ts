// The ssh process an SFTP session runs over: the system's OpenSSH client, started as
// `ssh [options] -s -- host sftp`, so that ~/.ssh/config (or N2S_SSH_CONFIG), agents,
// known_hosts and ProxyJump work as for any ssh command; it asks the server for its sftp
// subsystem and never runs a remote command. Also the reading of ssh's exit and messages.

import { BackendError, type ErrorKind } from "../backend.ts";
import { oneLine } from "../shared.ts";
import type { SftpLocation } from "./location.ts";

/** How to run ssh: the program, its leading arguments, and an optional ssh_config. */
export interface SshOptions {
  /** The ssh program and any leading arguments (default ["ssh"]). */
  ssh?: string[];
  /** An ssh_config file (`ssh -F`); default: ssh's own (~/.ssh/config). */
  config?: string;
}

/** Options every session gets: never prompt, notice a dead peer, forward nothing. */
const SSH_OPTIONS = [
  "BatchMode=yes",
  "ConnectTimeout=10",
  "ServerAliveInterval=15",
  "ServerAliveCountMax=3",
  "ClearAllForwardings=yes",
  "ForwardAgent=no",
  "ForwardX11=no",
  "PermitLocalCommand=no",
  "RemoteCommand=none",
  "RequestTTY=no",
];

/** The ssh command line (program first) that opens the sftp subsystem on the location's host. */
export function sshCommand(loc: SftpLocation, opts: SshOptions): string[] {
  const ssh = opts.ssh && opts.ssh.length > 0 ? opts.ssh : ["ssh"];
  const a = [...ssh];
  if (opts.config !== undefined) a.push("-F", opts.config);
  for (const o of SSH_OPTIONS) a.push("-o", o);
  if (loc.port !== undefined) a.push("-p", String(loc.port));
  if (loc.user !== undefined) a.push("-l", loc.user);
  a.push("-s", "--", loc.host, "sftp");
  return a;
}

/** How the ssh process ended: its exit code (null if killed by a signal) and its last messages. */
export interface SshExit {
  code: number | null;
  signal: string | null;
  stderr: string;
}

/** One running ssh process, its stdin and stdout carrying the SFTP session. */
export class SshTransport {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  /** Resolves when ssh has exited and its stderr is read. */
  readonly exited: Promise<SshExit>;

  /** Starts ssh; throws a permanent BackendError (naming `backend`) when it cannot run. */
  constructor(command: string[], backend: string) {
    const child = spawn(command, backend);
    this.#child = child;
    this.#writer = this.#child.stdin.getWriter();
    this.stdout = this.#child.stdout;
    // Keep the last few KiB of ssh's messages, and never let that pipe fill.
    const stderr = (async () => {
      let tail = "";
      const d = new TextDecoder();
      for await (const chunk of child.stderr) tail = (tail + d.decode(chunk)).slice(-4096);
      return tail;
    })().catch(() => "");
    this.exited = Promise.all([this.#child.status, stderr]).then(([s, err]) => ({
      code: s.signal === null ? s.code : null,
      signal: s.signal,
      stderr: err,
    }));
  }

  /** The process id, e.g. for a test that cuts the connection. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Writes bytes to ssh's stdin; rejects once ssh is gone. */
  write(bytes: Uint8Array): Promise<void> {
    return this.#writer.write(bytes);
  }

  /** Ends the session: EOF on ssh's stdin, then SIGTERM if ssh has not exited after `graceMs`. */
  async end(graceMs = 5000): Promise<SshExit> {
    await this.#writer.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => timer = setTimeout(r, graceMs));
    const done = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (done === undefined) this.kill();
    await this.stdout.cancel().catch(() => {});
    return await this.exited;
  }

  /** Kills ssh at once. */
  kill(): void {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
  }
}

function spawn(command: string[], backend: string): Deno.ChildProcess {
  try {
    return new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new BackendError(
        "permanent",
        backend,
        `ssh program "${command[0]}" not found; install the OpenSSH client or set ` +
          "N2S_SSH_COMMAND",
        { cause: e },
      );
    }
    throw new BackendError("permanent", backend, `cannot run ssh: ${e}`, { cause: e });
  }
}

/** Where the backend connects, for messages. */
export interface Peer {
  /** "host:port" or the alias, as the location named it. */
  where: string;
  user?: string;
}

/**
 * Classifies a failed ssh run from its exit code and messages. Before the first session
 * worked (`first`), a refused, unreachable or unknown host is permanent, so that a wrong
 * location fails at once; afterwards it is transient. Authentication, host key and
 * configuration errors are always permanent.
 */
export function sshFailure(exit: SshExit, peer: Peer, first: boolean): {
  kind: ErrorKind;
  message: string;
} {
  const s = exit.stderr;
  const last = oneLine(s.split("\n").map((l) => l.trim()).filter((l) => l).at(-1) ?? "");
  const hp = peer.where;
  let kind: ErrorKind = first ? "permanent" : "transient";
  let message: string;
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(s)) {
    kind = "permanent";
    message = `host key verification failed for ${hp}; check known_hosts (connect once with ssh ` +
      "to accept the key, or fix a changed key)";
  } else if (/Permission denied \(|Too many authentication failures/i.test(s)) {
    kind = "permanent";
    message = `authentication${peer.user ? ` as ${peer.user}` : ""} failed (${last}); ` +
      "check the key (IdentityFile, ssh-agent) and the remote authorized_keys";
  } else if (
    /Bad configuration option|bad configuration options|Can't open user config file|Bad owner or permissions|Unsupported option|Bad port|garbage at end of line/i
      .test(s)
  ) {
    kind = "permanent";
    message = `ssh configuration error (${last}); check N2S_SSH_CONFIG and ~/.ssh/config`;
  } else if (/subsystem request failed/i.test(s)) {
    kind = "permanent";
    message = `${hp} refused the sftp subsystem (${last}); the server needs SFTP enabled ` +
      "(Subsystem sftp in sshd_config)";
  } else if (/Connection refused/i.test(s)) {
    message = `connection refused by ${hp}; is sshd running there?`;
  } else if (
    /Could not resolve hostname|Name or service not known|nodename nor servname/i.test(s)
  ) {
    message = `cannot resolve the host name of ${hp}; check the location (or the Host entry ` +
      "in the ssh config)";
  } else if (/No route to host|Network is unreachable|Host is unreachable/i.test(s)) {
    message = `${hp} is unreachable (${last}); check the address and the network`;
  } else if (/timed out/i.test(s)) {
    message = `connection to ${hp} timed out; is the host up and the port right?`;
  } else if (
    /Connection (closed|reset)|Broken pipe|kex_exchange_identification|closed by remote|lost connection|client_loop/i
      .test(s) || exit.signal !== null || !first
  ) {
    kind = "transient";
    const how = exit.signal !== null ? `ssh ended by ${exit.signal}` : `ssh exit ${exit.code}`;
    message = `connection to ${hp} lost (${last || how})`;
  } else {
    message = `ssh to ${hp} failed (exit ${exit.code}${last ? `: ${last}` : ""})`;
  }
  return { kind, message };
}
