// A real OpenSSH server for tests: Debian's /usr/sbin/sshd in the foreground on a free loopback
// port, with freshly generated ed25519 host and client keys in a temp dir, logging in as root,
// with the internal SFTP subsystem. It also writes the client files a test needs: a known_hosts
// line for the host key and an ssh_config naming the server by an alias. On request it also
// serves an account limited to SFTP: a system user with no shell (created when missing) in a
// Match block with ForceCommand internal-sftp, as NAS boxes and hosting accounts are.

const SSHD = "/usr/sbin/sshd";
const SETUP_HINT = "run `bash scripts/setup.sh` (it installs openssh-server and openssh-client)";
/** The SFTP-only test account: no shell, no home. */
export const SFTP_ONLY_USER = "n2s-sftp-only";

/** A running test sshd and the client-side files that reach it. */
export interface SshServer {
  host: "127.0.0.1";
  port: number;
  user: "root";
  /** The server's temp dir (keys, config, log); tests may keep their data under it too. */
  dir: string;
  /** Path of the client's private key (ed25519, no passphrase). */
  keyFile: string;
  /** The host's public key: "ssh-ed25519 AAAA…" (type and base64, no comment). */
  hostKeyPub: string;
  /** Path of a known_hosts file with the line "[127.0.0.1]:PORT ssh-ed25519 AAAA…". */
  knownHostsFile: string;
  /** Path of an ssh_config with a `Host n2s-test-sshd` entry for this server. */
  configFile: string;
  /** The Host alias in configFile: "n2s-test-sshd". */
  alias: "n2s-test-sshd";
  /** Path of the server's log (sshd -e output), e.g. to count "Accepted publickey" lines. */
  logFile: string;
  /** The server's log so far. */
  log(): Promise<string>;
  /** Cuts every open connection (ends sshd's per-connection processes); sshd keeps listening. */
  dropConnections(): Promise<void>;
  /** Stops sshd (and its sessions) and removes the temp dir. */
  stop(): Promise<void>;
  /** The SFTP-only account, when `sftpOnly` was asked for. */
  sftpOnly?: SftpOnlyAccount;
}

/** An account that may only use SFTP (its shell is /usr/sbin/nologin; ForceCommand internal-sftp). */
export interface SftpOnlyAccount {
  user: typeof SFTP_ONLY_USER;
  /** The Host alias in the server's configFile that logs in as this user. */
  alias: "n2s-test-sftp-only";
  /** A directory the account owns, for its data (under the server's temp dir). */
  dir: string;
}

async function run(cmd: string, args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${cmd} not found; ${SETUP_HINT}`);
    throw e;
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code}): ${err}`);
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Pids whose parent is `ppid` (Linux /proc). */
function childPids(ppid: number): number[] {
  const pids: number[] = [];
  try {
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
        // Fields after the command name (which may contain spaces): state, ppid, …
        const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (Number(rest[1]) === ppid) pids.push(Number(e.name));
      } catch {
        // The process ended meanwhile.
      }
    }
  } catch {
    // No /proc: the children end when their clients disconnect.
  }
  return pids;
}

/** Resolves once something on the port answers with an SSH banner. */
async function waitForBanner(port: number, timeoutMs: number, exited: () => boolean) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited()) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const buf = new Uint8Array(64);
        const n = await conn.read(buf);
        if (n && new TextDecoder().decode(buf.subarray(0, n)).startsWith("SSH-")) return true;
      } finally {
        conn.close();
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Options of startSshd. */
export interface SshdOptions {
  /** More sshd_config lines, e.g. ["ForceCommand internal-sftp"]. */
  extraConfig?: string[];
  /** Also serve the SFTP-only account (see SftpOnlyAccount); needs root. */
  sftpOnly?: boolean;
  /** sshd's LogLevel (default INFO); VERBOSE logs each session's kind ("Starting session: …"). */
  logLevel?: "INFO" | "VERBOSE" | "DEBUG1";
}

/** Creates the SFTP-only system user when it is missing: shell nologin, no home, not locked. */
async function ensureSftpOnlyUser(): Promise<number> {
  const uid = async () => {
    const out = await new Deno.Command("id", { args: ["-u", SFTP_ONLY_USER], stderr: "null" })
      .output();
    return out.success ? Number(new TextDecoder().decode(out.stdout).trim()) : null;
  };
  const known = await uid();
  if (known !== null) return known;
  try {
    // A password of "*" (not "!"): sshd without PAM refuses locked accounts even for keys.
    await run("useradd", [
      "--system",
      "--shell",
      "/usr/sbin/nologin",
      "--home-dir",
      "/nonexistent",
      "--no-create-home",
      "--password",
      "*",
      SFTP_ONLY_USER,
    ]);
  } catch (e) {
    // Another test may have created it meanwhile.
    const again = await uid();
    if (again !== null) return again;
    throw new Error(
      `cannot create the SFTP-only test user ${SFTP_ONLY_USER} (${(e as Error).message}); ` +
        "the sftp tests run as root",
    );
  }
  const created = await uid();
  if (created === null) throw new Error(`useradd did not create ${SFTP_ONLY_USER}`);
  return created;
}

/** Starts a test sshd; throws if sshd is not installed or does not come up. */
export async function startSshd(opts: SshdOptions = {}): Promise<SshServer> {
  try {
    await Deno.stat(SSHD);
  } catch {
    throw new Error(`${SSHD} not found; ${SETUP_HINT}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "n2s-sshd-" });
  try {
    return await startIn(dir, opts);
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

async function startIn(dir: string, opts: SshdOptions): Promise<SshServer> {
  // Root's sshd insists on its privilege separation directory.
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = `${dir}/host_ed25519`;
  const keyFile = `${dir}/client_ed25519`;
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "n2s-test-host", "-f", hostKey]);
  await run("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "n2s-test-client",
    "-f",
    keyFile,
  ]);
  const authorized = `${dir}/authorized_keys`;
  await Deno.writeTextFile(authorized, await Deno.readTextFile(`${keyFile}.pub`), { mode: 0o600 });
  let sftpOnlyDir: string | undefined;
  if (opts.sftpOnly) {
    const uid = await ensureSftpOnlyUser();
    // sshd reads authorized_keys as the user logging in: let that user reach and read it.
    await Deno.chmod(dir, 0o711);
    await Deno.chmod(authorized, 0o644);
    sftpOnlyDir = `${dir}/sftp-only`;
    await Deno.mkdir(sftpOnlyDir, { mode: 0o700 });
    await Deno.chown(sftpOnlyDir, uid, null);
  }
  const hostKeyPub = (await Deno.readTextFile(`${hostKey}.pub`)).trim().split(/\s+/)
    .slice(0, 2).join(" ");
  const logFile = `${dir}/sshd.log`;

  // A port picked now may be taken before sshd binds it: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const sshdConfig = `${dir}/sshd_config`;
    await Deno.writeTextFile(
      sshdConfig,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${dir}/sshd.pid`,
        `AuthorizedKeysFile ${authorized}`,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        `LogLevel ${opts.logLevel ?? "INFO"}`,
        "Subsystem sftp internal-sftp",
        ...(opts.extraConfig ?? []),
        // A Match block runs to the end of the file: it comes last.
        ...(opts.sftpOnly ? [`Match User ${SFTP_ONLY_USER}`, "  ForceCommand internal-sftp"] : []),
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(SSHD, {
      args: ["-D", "-e", "-f", sshdConfig],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    // Drain the log into a file so that the pipe never fills.
    const logDone = (async () => {
      using f = await Deno.open(logFile, { create: true, append: true });
      for await (const chunk of child.stderr) await f.write(chunk);
    })().catch(() => {});

    if (await waitForBanner(port, 10_000, () => exited)) {
      const knownHostsFile = `${dir}/known_hosts`;
      await Deno.writeTextFile(knownHostsFile, `[127.0.0.1]:${port} ${hostKeyPub}\n`);
      const configFile = `${dir}/ssh_config`;
      await Deno.writeTextFile(
        configFile,
        [
          "Host n2s-test-sshd",
          "  HostName 127.0.0.1",
          `  Port ${port}`,
          "  User root",
          `  IdentityFile ${keyFile}`,
          "  IdentitiesOnly yes",
          `  UserKnownHostsFile ${knownHostsFile}`,
          "  StrictHostKeyChecking yes",
          "  BatchMode yes",
          ...(sftpOnlyDir === undefined ? [] : [
            "Host n2s-test-sftp-only",
            "  HostName 127.0.0.1",
            `  Port ${port}`,
            `  User ${SFTP_ONLY_USER}`,
            `  IdentityFile ${keyFile}`,
            "  IdentitiesOnly yes",
            `  UserKnownHostsFile ${knownHostsFile}`,
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
          ]),
          "",
        ].join("\n"),
      );
      let stopped = false;
      return {
        host: "127.0.0.1",
        port,
        sftpOnly: sftpOnlyDir === undefined
          ? undefined
          : { user: SFTP_ONLY_USER, alias: "n2s-test-sftp-only", dir: sftpOnlyDir },
        user: "root",
        dir,
        keyFile,
        hostKeyPub,
        knownHostsFile,
        configFile,
        alias: "n2s-test-sshd",
        logFile,
        log: () => Deno.readTextFile(logFile).catch(() => ""),
        async dropConnections() {
          const pids = childPids(child.pid);
          for (const pid of pids) {
            try {
              Deno.kill(pid, "SIGKILL");
            } catch {
              // Already gone.
            }
          }
          // Wait until they are gone (reaped by sshd), or fail saying which are left.
          for (const deadline = Date.now() + 30_000; childPids(child.pid).length > 0;) {
            if (Date.now() > deadline) {
              throw new Error(
                `sshd's connection processes ${childPids(child.pid).join(", ")} did not end ` +
                  `within 30 s of SIGKILL`,
              );
            }
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        async stop() {
          if (stopped) return;
          stopped = true;
          // The listener's per-connection children outlive it: end them first.
          if (!exited) {
            for (const pid of childPids(child.pid)) {
              try {
                Deno.kill(pid, "SIGTERM");
              } catch {
                // Already gone.
              }
            }
            child.kill("SIGTERM");
          }
          await status;
          await logDone;
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        },
      };
    }
    if (!exited) child.kill("SIGKILL");
    await status;
    await logDone;
    const log = await Deno.readTextFile(logFile).catch(() => "");
    // Another process took the port: pick another one.
    if (/Address already in use|Cannot bind any address/.test(log)) continue;
    throw new Error(`sshd did not start on 127.0.0.1:${port}: ${log.trim() || "no output"}`);
  }
  throw new Error("sshd could not bind a free loopback port after 5 attempts");
}
