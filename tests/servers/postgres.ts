// A throwaway PostgreSQL server for tests: Debian's PostgreSQL (the highest version under
// /usr/lib/postgresql, else whatever initdb is on PATH), with a fresh cluster in a temporary
// directory, trusting every local connection, listening on a free loopback port (and on a Unix
// socket in its own directory only), without fsync (its data is thrown away). initdb and pg_ctl
// refuse to run as root: as root they run as the `postgres` user (runuser), which owns the
// temporary directory. A watcher stops the server and removes its directory if this process dies
// without calling stop() (a killed test run).

import { join } from "node:path";

const SETUP_HINT = "run `bash scripts/setup.sh` (it installs Debian's postgresql package)";
const STOP_TIMEOUT_S = 60;

/** A running test PostgreSQL server. */
export interface PgServer {
  /** Its TCP port on 127.0.0.1. */
  port: number;
  /** Its temporary directory: the cluster (data/), the log (server.log) and the socket. */
  dir: string;
  /** The address of database `db` on this server (user postgres, no password). */
  url(db: string): string;
  /**
   * Creates an empty database (a unique name unless `name` is given) and returns its address.
   * Its collation is the cluster's (C.UTF-8, code point order) unless `icuLocale` names an ICU
   * locale (e.g. "en-US", whose order is linguistic: "a" < "B" < "é" < "Z").
   */
  createDatabase(name?: string, opts?: { icuLocale?: string }): Promise<string>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** The directory holding initdb, pg_ctl and psql, or "" to take them from PATH. */
function binDir(): string {
  const root = "/usr/lib/postgresql";
  let best: { version: number; dir: string } | null = null;
  try {
    for (const e of Deno.readDirSync(root)) {
      const version = Number(e.name);
      if (!Number.isFinite(version)) continue;
      const dir = join(root, e.name, "bin");
      try {
        Deno.statSync(join(dir, "initdb"));
      } catch {
        continue;
      }
      if (best === null || version > best.version) best = { version, dir };
    }
  } catch {
    // No Debian layout: PATH decides.
  }
  return best?.dir ?? "";
}

/** True when `name` is an executable file in a directory of PATH. */
function onPath(name: string): boolean {
  for (const d of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!d) continue;
    try {
      if (((Deno.statSync(join(d, name)).mode ?? 0) & 0o111) !== 0) return true;
    } catch {
      // Not there.
    }
  }
  return false;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function output(cmd: string, args: string[]): Promise<Deno.CommandOutput> {
  try {
    return await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { LC_ALL: "C.UTF-8", PGCONNECT_TIMEOUT: "10" },
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${cmd} not found; ${SETUP_HINT}`);
    throw e;
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await output(cmd, args);
  const dec = new TextDecoder();
  if (!out.success) {
    const text = (dec.decode(out.stderr) + dec.decode(out.stdout)).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code}): ${text}`);
  }
  return dec.decode(out.stdout);
}

/** The numeric id of a user, from id(1). */
async function idOf(flag: "-u" | "-g", user: string): Promise<number> {
  const out = await output("id", [flag, user]);
  if (!out.success) {
    throw new Error(`there is no "${user}" user to run PostgreSQL as; ${SETUP_HINT}`);
  }
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** Starts a fresh PostgreSQL cluster and waits until it accepts connections. */
export async function startPostgres(): Promise<PgServer> {
  const bin = binDir();
  const tool = (name: string) => (bin ? join(bin, name) : name);
  const asRoot = Deno.uid() === 0;
  // As root the tools run as postgres, which must reach the directory: /tmp is open to it.
  const dir = await Deno.makeTempDir({ prefix: "n2s-pg-", ...(asRoot ? { dir: "/tmp" } : {}) });
  // Runs a server tool as the user that owns the cluster.
  const admin = (name: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", tool(name), ...args]) : run(tool(name), args);
  const data = join(dir, "data");
  const log = join(dir, "server.log");

  let watcherGroup = 0;
  let running = false;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (running) {
      await admin("pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", String(STOP_TIMEOUT_S), "stop"])
        .catch(() => {});
    }
    if (watcherGroup) {
      try {
        Deno.kill(-watcherGroup, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    if (!bin && !onPath("initdb")) {
      throw new Error(`PostgreSQL's initdb is not installed; ${SETUP_HINT}`);
    }
    if (asRoot) {
      await Deno.chown(dir, await idOf("-u", "postgres"), await idOf("-g", "postgres"));
    }
    await admin("initdb", [
      "-D",
      data,
      "-A",
      "trust",
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--locale=C.UTF-8",
      "--no-sync",
    ]);

    // A port found free may be taken before the server binds it: then try another one.
    let port = 0;
    for (let attempt = 1;; attempt++) {
      port = freePort();
      try {
        await admin("pg_ctl", [
          "-D",
          data,
          "-l",
          log,
          "-w",
          "-t",
          "60",
          "-o",
          `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=off ` +
          "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
          "start",
        ]);
        running = true;
        break;
      } catch (e) {
        const text = await Deno.readTextFile(log).catch(() => "");
        if (attempt < 3 && /could not bind|address already in use/i.test(text)) continue;
        throw new Error(`${e instanceof Error ? e.message : e}\nserver log:\n${text.trim()}`);
      }
    }

    // Should this process die without stop(), a watcher stops the server and removes the
    // directory. It runs in a session of its own (stop() ends the group) and in the background
    // of a shell that exits at once: Deno kills the processes it started when it exits.
    const pidFile = join(data, "postmaster.pid");
    const script = `(while kill -0 ${Deno.pid} 2>/dev/null; do sleep 1; done
pm=$(head -n 1 '${pidFile}' 2>/dev/null) && kill -INT "$pm" 2>/dev/null
while [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null; do sleep 0.2; done
rm -rf '${dir}') &`;
    const watcher = new Deno.Command("setsid", {
      args: ["sh", "-c", script],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await watcher.status;
    watcherGroup = watcher.pid;
    const url = (db: string) => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(db)}`;
    let created = 0;
    const createDatabase = async (name?: string, opts: { icuLocale?: string } = {}) => {
      const db = name ??
        `n2s_${++created}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
      const quote = (s: string, q: string) => q + s.replaceAll(q, q + q) + q;
      const sql = `CREATE DATABASE ${quote(db, '"')}` +
        (opts.icuLocale === undefined
          ? ""
          : ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE ${quote(opts.icuLocale, "'")}`);
      const psql = bin && (await Deno.stat(join(bin, "psql")).catch(() => null))
        ? join(bin, "psql")
        : "psql";
      const where = ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres"];
      await run(psql, ["-X", "-q", ...where, "-v", "ON_ERROR_STOP=1", "-c", sql]);
      return url(db);
    };
    return { port, dir, url, createDatabase, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
