// The SSH backend against a real OpenSSH server started by the test: the conformance suite and
// the CLI round trip on a normal account and on an SFTP-only one (no shell, ForceCommand
// internal-sftp), the suite again in plain SFTP version 3 (no extensions), proof from sshd's log
// that only the sftp subsystem is asked for, pipelined transfers larger than the window with
// ranges at odd offsets, an ssh process killed mid-transfer and recovered by the retry wrapper,
// both location forms (an ssh_config alias, and user@host:port with a minimal config; a path
// under the home), fast one-line failures (closed port, wrong key, not a directory), a
// connection cut by the server, and one SSH handshake for many operations.

import assert from "node:assert/strict";
import {
  type Backend,
  BackendError,
  bytesBody,
  errorKind,
  readAll,
} from "../../lib/backends/backend.ts";
import { openSftpLocation, SftpBackend } from "../../lib/backends/sftp/backend.ts";
import { parseSftpLocation } from "../../lib/backends/sftp/location.ts";
import { TEMP_MARK } from "../../lib/backends/shared.ts";
import { buildStack } from "../../lib/backends/wrappers.ts";
import { startSshd } from "../servers/sshd.ts";
import { expectFastFailure, runCliRoundTrip, runConformance, type Trouble } from "./harness.ts";

const MiB = 1 << 20;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * The sshd log from `offset` on, once sshd has logged the end of every connection it accepted
 * there: the lines of those connections are all in it then. Fails after a minute.
 */
async function settledLog(sshd: { log(): Promise<string> }, offset: number): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const log = (await sshd.log()).slice(offset);
    const ports = [...log.matchAll(/Accepted publickey for \S+ from \S+ port (\d+)/g)].map((m) =>
      m[1]
    );
    const open = ports.filter((p) =>
      !new RegExp(
        `(Disconnected from|Received disconnect from|Connection (closed|reset) by) .*port ${p}\\b`,
      )
        .test(log)
    );
    if (ports.length > 0 && open.length === 0) return log;
    if (Date.now() > deadline) {
      throw new Error(
        `sshd logged no end of the connection(s) from port(s) ${open.join(", ")} in 60 s:\n${log}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Files under `dir`, at any depth, whose names mark them as temporary. */
function temporaries(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory) out.push(...temporaries(`${dir}/${e.name}`));
    else if (e.name.includes(TEMP_MARK)) out.push(`${dir}/${e.name}`);
  }
  return out;
}

/** The ssh processes this test process started whose command line names `alias`. */
function sshChildren(alias: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state === "Z" || Number(ppid) !== Deno.pid) continue;
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (argv[0].split("/").pop() === "ssh" && argv.includes(alias)) pids.push(Number(e.name));
    } catch {
      // The process ended meanwhile.
    }
  }
  return pids;
}

/** `size` seeded bytes, and a body that yields them in pieces of odd and varying sizes. */
function oddBody(size: number, seed: number, onBytes?: (sent: number) => void) {
  const data = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  const cuts = [1, 100_003, 7, 261_121, 65_536, 3 * MiB + 1, 13];
  const body = {
    size,
    async *open() {
      let sent = 0;
      for (let i = 0; sent < size; i++) {
        const n = Math.min(cuts[i % cuts.length], size - sent);
        // Sometimes several pieces at once, as pack fragments come.
        if (i % 3 === 0 && sent + n + 5 <= size) {
          yield [data.subarray(sent, sent + n), data.subarray(sent + n, sent + n + 5)];
          sent += n + 5;
        } else {
          yield data.subarray(sent, sent + n);
          sent += n;
        }
        onBytes?.(sent);
      }
    },
  };
  return { data, body };
}

function accepted(log: string): number {
  return log.split("\n").filter((l) => l.includes("Accepted publickey")).length;
}

async function keysOf(b: Backend, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(prefix)) out.push(o.key);
  return out.sort();
}

/** A few operations that every location form must support. */
async function smallRoundTrip(b: Backend): Promise<void> {
  const data = new TextEncoder().encode("it's a 'quoted' $name; `x`\n");
  await b.put("config", bytesBody(data));
  await b.put("keys/k 1", bytesBody(data));
  assert.deepEqual(await readAll(await b.get("config")), data);
  assert.equal((await b.stat("keys/k 1"))?.size, data.length);
  assert.deepEqual(await keysOf(b, ""), ["config", "keys/k 1"]);
  await b.delete("keys/k 1");
  assert.deepEqual(await keysOf(b, "keys/"), []);
  await b.flush();
}

Deno.test("sftp backend: conformance, CLI round trip, location forms, failures", async (t) => {
  const sshd = await startSshd({ sftpOnly: true, logLevel: "DEBUG1" });
  const homeDir = `/root/n2s-sftp-test-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const env = { N2S_SSH_CONFIG: sshd.configFile };
    const alias = `sftp://${sshd.alias}${sshd.dir}`;
    // A config with only the key and known_hosts: user and port come from the location.
    const plainConfig = `${sshd.dir}/plain_config`;
    Deno.writeTextFileSync(
      plainConfig,
      `IdentityFile ${sshd.keyFile}\nUserKnownHostsFile ${sshd.knownHostsFile}\n`,
    );
    const plainEnv = { N2S_SSH_CONFIG: plainConfig };
    const direct = `sftp://root@127.0.0.1:${sshd.port}${sshd.dir}`;

    // The backend alone (without the retry wrapper) when its ssh process dies.
    const killed = (host: string, open: () => Promise<Backend>): Trouble => ({
      what: "its ssh process killed",
      open,
      // deno-lint-ignore require-await
      strike: async () => {
        const pids = sshChildren(host);
        assert.equal(pids.length, 1, `one ssh process, not ${pids.length}`);
        Deno.kill(pids[0], "SIGKILL");
        return () => {};
      },
    });
    await runConformance(t, async () => buildStack(await openSftpLocation(`${alias}/c`, env)), {
      trouble: killed(sshd.alias, () => openSftpLocation(`${alias}/c`, env)),
    });

    const only = sshd.sftpOnly!;
    const onlyLocation = `sftp://${only.alias}${only.dir}`;
    await t.step("conformance on an SFTP-only account (no shell)", async (t) => {
      await runConformance(
        t,
        async () => buildStack(await openSftpLocation(`${onlyLocation}/c`, env)),
        { trouble: killed(only.alias, () => openSftpLocation(`${onlyLocation}/c`, env)) },
      );
    });

    await t.step("conformance in plain SFTP version 3 (no extensions)", async (t) => {
      const loc = parseSftpLocation(`${alias}/plain`);
      const plain = () => new SftpBackend(loc, { config: sshd.configFile, useExtensions: false });
      await runConformance(t, () => Promise.resolve(buildStack(plain())), {
        trouble: killed(sshd.alias, () => Promise.resolve(plain())),
      });
    });

    await t.step("no temporary file is left behind", () => {
      for (const root of [`${sshd.dir}/c`, `${only.dir}/c`, `${sshd.dir}/plain`]) {
        assert.deepEqual(temporaries(root), [], root);
      }
    });

    await runCliRoundTrip(t, `${alias}/cli`, env);
    await t.step("CLI on the SFTP-only account", async (t) => {
      await runCliRoundTrip(t, `${onlyLocation}/cli`, env);
    });

    await t.step(
      "only the sftp subsystem is asked for: sshd logs no command or shell",
      async () => {
        // sshd at DEBUG1 logs each channel request ("req subsystem", "req exec", "req shell") and
        // at VERBOSE each session's kind.
        const requests = (log: string) =>
          [...log.matchAll(/session_input_channel_req: .* req (\S+)/g)].map((m) => m[1]);
        const sessions = (log: string) =>
          [...log.matchAll(/Starting session: (.*?) for /g)].map((m) => m[1]);
        // Every connection so far has ended, so all its lines are in the log.
        const log = await settledLog(sshd, 0);
        assert.deepEqual([...new Set(requests(log))], ["subsystem"]);
        assert.deepEqual(
          [...new Set(sessions(log))].sort(),
          ["forced-command (config) 'internal-sftp'", "subsystem 'sftp'"],
          "the normal account's sessions are the sftp subsystem, the SFTP-only account's " +
            "internal-sftp",
        );
        // The checks can fail: a command shows as one, and the SFTP-only account refuses it.
        const offset = log.length;
        const run = (host: string) =>
          new Deno.Command("ssh", {
            args: ["-F", sshd.configFile, host, "true"],
            stdin: "null",
            stdout: "piped",
            stderr: "null",
          }).output();
        assert.equal((await run(sshd.alias)).code, 0);
        const refused = await run(only.alias);
        assert.notEqual(refused.code, 0);
        assert.match(new TextDecoder().decode(refused.stdout), /allows sftp connections only/);
        const after = await settledLog(sshd, offset);
        assert.deepEqual(requests(after), ["exec", "exec"]);
        assert.deepEqual(sessions(after), ["command", "forced-command (config) 'internal-sftp'"]);
      },
    );

    await t.step("pipelined transfers larger than the window, ranges at odd offsets", async () => {
      for (const useExtensions of [true, false]) {
        const loc = parseSftpLocation(`${alias}/pipe-${useExtensions}`);
        const b = new SftpBackend(loc, { config: sshd.configFile, useExtensions });
        try {
          const size = 40 * MiB + 12345;
          const { data, body } = oddBody(size, 7);
          assert.equal((await b.put("blobs/ab/big", body)).size, size);
          assert.equal((await b.stat("blobs/ab/big"))?.size, size);
          const whole = await readAll(await b.get("blobs/ab/big"));
          assert.equal(whole.length, size);
          assert.ok(whole.every((v, i) => v === data[i]), "the whole object comes back");
          for (
            const [offset, length] of [
              [1, 261_120 * 3 + 5],
              [32_767, 32_770],
              [261_119, 10 * MiB + 7],
              [size - 300_001, 300_051],
              [17 * MiB + 3, 1],
            ]
          ) {
            const got = await readAll(await b.get("blobs/ab/big", { offset, length }));
            const want = data.subarray(offset, Math.min(offset + length, size));
            assert.equal(got.length, want.length, `range ${offset}+${length}`);
            assert.ok(got.every((v, i) => v === want[i]), `range ${offset}+${length}`);
          }
          const peak = await b.peakInFlight();
          assert.ok(peak > 8, `requests were pipelined (at most ${peak} in flight at once)`);
        } finally {
          await b.close();
        }
      }
    });

    await t.step("an ssh killed mid-transfer: the retry wrapper starts a new session", async () => {
      const loc = parseSftpLocation(`${alias}/killed`);
      const inner = new SftpBackend(loc, { config: sshd.configFile });
      const retries: string[] = [];
      const b = buildStack(inner, {
        retry: { baseMs: 1, maxMs: 10, onRetry: (op) => retries.push(op) },
      });
      const kill = () => {
        const pids = sshChildren(sshd.alias);
        assert.equal(pids.length, 1, `one ssh process, not ${pids.length}`);
        Deno.kill(pids[0], "SIGKILL");
      };
      try {
        const size = 30 * MiB + 5;
        let killed = false;
        const { data, body } = oddBody(size, 11, (sent) => {
          if (!killed && sent > 10 * MiB) {
            killed = true;
            kill();
          }
        });
        assert.equal((await b.put("blobs/cd/obj", body)).size, size);
        assert.ok(killed);
        assert.deepEqual(retries, ["put"]);
        assert.equal(inner.sessions, 2);
        // Mid-get: the retry wrapper reopens the object after the bytes already delivered.
        const got = new Uint8Array(size);
        let n = 0;
        let killedGet = false;
        for await (const piece of await b.get("blobs/cd/obj")) {
          got.set(piece, n);
          n += piece.length;
          if (!killedGet && n > 5 * MiB) {
            killedGet = true;
            kill();
          }
        }
        assert.equal(n, size);
        assert.ok(got.every((v, i) => v === data[i]), "the object comes back whole");
        assert.deepEqual(retries, ["put", "get"]);
        assert.equal(inner.sessions, 3);
        assert.deepEqual(
          await keysOf(b, ""),
          ["blobs/cd/obj"],
          "the put cut off leaves nothing that lists",
        );
        // What it left is a temporary object, which check --repair deletes.
        const left = await inner.temporaries();
        assert.equal(left.length, 1);
        assert.match(left[0].key, /^blobs\/cd\/obj\.n2s-tmp-[0-9a-f]{8}$/);
        assert.ok(left[0].size > 0 && left[0].size < size, `a partial upload: ${left[0].size} B`);
        await inner.deleteTemporary(left[0].key);
        assert.deepEqual(await inner.temporaries(), []);
      } finally {
        await b.close();
      }
    });

    await t.step(
      "sftp://root@127.0.0.1:PORT/dir with a config of key and known_hosts",
      async () => {
        const b = await openSftpLocation(`${direct}/direct`, plainEnv);
        try {
          await smallRoundTrip(b);
          assert.match(b.name, /^sftp root@127\.0\.0\.1:\d+\/.*\/direct$/);
        } finally {
          await b.close();
        }
        assert.ok(Deno.statSync(`${sshd.dir}/direct/config`).isFile);
      },
    );

    await t.step("ssh://host/~/dir is under the login's home", async () => {
      const name = homeDir.slice("/root/".length);
      const b = await openSftpLocation(
        `ssh://root@127.0.0.1:${sshd.port}/~/${name}`,
        plainEnv,
      );
      try {
        await smallRoundTrip(b);
      } finally {
        await b.close();
      }
      assert.ok(Deno.statSync(`${homeDir}/config`).isFile);
    });

    await t.step("location forms and their errors", () => {
      assert.deepEqual(parseSftpLocation("sftp://u@h:2222/a/b/"), {
        user: "u",
        host: "h",
        port: 2222,
        home: false,
        path: "/a/b",
      });
      assert.deepEqual(parseSftpLocation("ssh://alias/~"), {
        user: undefined,
        host: "alias",
        port: undefined,
        home: true,
        path: "",
      });
      assert.deepEqual(parseSftpLocation("sftp://[::1]/srv/with%20space").host, "::1");
      assert.equal(parseSftpLocation("sftp://[::1]/srv/with%20space").path, "/srv/with space");
      for (
        const [bad, why] of [
          ["sftp://u:hunter2@h/x", /passwords are not supported/],
          ["sftp://h", /directory path is missing/],
          ["sftp://h/", /directory path is missing/],
          ["sftp://h/x?y=1", /query/],
          ["sftp://-oProxyCommand=x/y", /host name is not valid/],
          ["ftp://h/x", /not sftp: or ssh:/],
        ] as const
      ) {
        assert.throws(() => parseSftpLocation(bad), (e) => {
          assert.ok(e instanceof BackendError && e.kind === "permanent");
          assert.match(e.message, why);
          assert.doesNotMatch(e.message, /hunter2/);
          return true;
        });
      }
    });

    const closed = freePort();
    await expectFastFailure(
      t,
      `sftp://root@127.0.0.1:${closed}/srv/repo`,
      plainEnv,
      new RegExp(`sftp root@127\\.0\\.0\\.1:${closed}/srv/repo.*connection refused.*sshd`, "i"),
    );

    const stranger = `${sshd.dir}/stranger_ed25519`;
    await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-f", stranger],
      stdout: "null",
    }).output();
    const strangerConfig = `${sshd.dir}/stranger_config`;
    Deno.writeTextFileSync(
      strangerConfig,
      `IdentityFile ${stranger}\nIdentitiesOnly yes\nUserKnownHostsFile ${sshd.knownHostsFile}\n`,
    );
    await expectFastFailure(
      t,
      `${direct}/stranger`,
      { N2S_SSH_CONFIG: strangerConfig },
      /sftp root@127\.0\.0\.1:\d+\/.*authentication as root failed.*Permission denied.*check the key/,
    );

    Deno.writeTextFileSync(`${sshd.dir}/a-file`, "not a directory");
    await expectFastFailure(
      t,
      `${alias}/a-file/repo`,
      env,
      /sftp n2s-test-sshd\/.*a-file\/repo.*Not a directory/,
    );

    await t.step("permanent errors: unknown host key, unknown host, no ssh program", async () => {
      const cases: [string, Record<string, string>, RegExp][] = [
        [
          `${direct}/x`,
          { N2S_SSH_CONFIG: "/dev/null" },
          /host key verification failed.*known_hosts/,
        ],
        ["sftp://no-such-host.invalid/x", env, /cannot resolve the host name of no-such-host/],
        [`${alias}/x`, { ...env, N2S_SSH_COMMAND: "no-such-ssh" }, /"no-such-ssh" not found/],
      ];
      for (const [loc, e, pattern] of cases) {
        const b = await openSftpLocation(loc, e);
        try {
          await assert.rejects(() => b.stat("config"), (err) => {
            assert.equal(errorKind(err), "permanent", String(err));
            assert.match((err as Error).message, pattern);
            assert.doesNotMatch((err as Error).message, /\n/);
            return true;
          });
        } finally {
          await b.close();
        }
      }
    });

    await t.step("a connection cut midway is transient, and the next call reconnects", async () => {
      const b = await openSftpLocation(`${alias}/cut`, env);
      try {
        const size = 48 * MiB;
        await b.put("big", {
          size,
          async *open() {
            for (let i = 0; i < size / MiB; i++) yield new Uint8Array(MiB).fill(i);
          },
        });
        const it = (await b.get("big"))[Symbol.asyncIterator]();
        await it.next();
        await sshd.dropConnections();
        await assert.rejects(async () => {
          while (!(await it.next()).done) {
            // read on
          }
        }, (e) => {
          assert.equal(errorKind(e), "transient", String(e));
          assert.match((e as Error).message, /^sftp n2s-test-sshd\//);
          return true;
        });
        assert.equal((await b.stat("big"))?.size, size);
      } finally {
        await b.close();
      }
    });

    await t.step("one SSH handshake serves many operations", async () => {
      const offset = (await sshd.log()).length;
      const b = await openSftpLocation(`${alias}/master`, env);
      try {
        await b.put("warm", bytesBody(new Uint8Array(10)));
        for (let i = 0; i < 20; i++) await b.put(`blobs/aa/${i}`, bytesBody(new Uint8Array(1000)));
        for (let i = 0; i < 50; i++) assert.equal((await b.stat(`blobs/aa/${i % 20}`))?.size, 1000);
        // Many at once, all in flight in the one session.
        await Promise.all(Array.from({ length: 50 }, (_, i) => b.stat(`blobs/aa/${i % 20}`)));
      } finally {
        await b.close();
      }
      const handshakes = accepted(await settledLog(sshd, offset));
      assert.equal(handshakes, 1, "one SSH connection for the whole backend instance");
    });
  } finally {
    await sshd.stop();
    await Deno.remove(homeDir, { recursive: true }).catch(() => {});
  }
});
