// The SSH backend against a real OpenSSH server started by the test: the conformance suite
// (with the remote's GNU tools, and again with only POSIX ones), the CLI round trip, both
// location forms (an ssh_config alias, and user@host:port with a minimal config; a path under
// the home), fast one-line failures (closed port, wrong key, not a directory), an SFTP-only
// account, a connection cut midway, and one SSH handshake for many operations.

import assert from "node:assert/strict";
import {
  type Backend,
  BackendError,
  bytesBody,
  errorKind,
  readAll,
} from "../../lib/backends/backend.ts";
import { openSftpLocation, parseSftpLocation, SftpBackend } from "../../lib/backends/sftp.ts";
import { buildStack } from "../../lib/backends/wrappers.ts";
import { startSshd } from "../servers/sshd.ts";
import { expectFastFailure, runCliRoundTrip, runConformance } from "./harness.ts";

const MiB = 1 << 20;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
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
  const sshd = await startSshd();
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

    await runConformance(t, async () => buildStack(await openSftpLocation(`${alias}/c`, env)));

    await t.step("conformance with only POSIX tools on the remote", async (t) => {
      const loc = parseSftpLocation(`${alias}/portable`);
      await runConformance(
        t,
        () =>
          Promise.resolve(
            buildStack(new SftpBackend(loc, { config: sshd.configFile, portable: true })),
          ),
      );
    });

    await t.step("no temporary file is left behind", () => {
      for (const root of ["c", "portable"]) {
        const tmp = `${sshd.dir}/${root}/.n2s-tmp`;
        assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), [], tmp);
      }
    });

    await runCliRoundTrip(t, `${alias}/cli`, env);

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

    await t.step("an SFTP-only account is refused, pointing to the rclone backend", async () => {
      const only = await startSshd({ extraConfig: ["ForceCommand internal-sftp"] });
      try {
        const b = await openSftpLocation(`sftp://${only.alias}${only.dir}/repo`, {
          N2S_SSH_CONFIG: only.configFile,
        });
        try {
          await assert.rejects(() => b.stat("config"), (err) => {
            assert.equal(errorKind(err), "permanent", String(err));
            assert.match((err as Error).message, /POSIX shell.*rclone backend/);
            return true;
          });
        } finally {
          await b.close();
        }
      } finally {
        await only.stop();
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

    await t.step("one SSH handshake serves many operations; small calls are cheap", async () => {
      const before = accepted(await sshd.log());
      const b = await openSftpLocation(`${alias}/master`, env);
      let putMs = 0, statMs = 0;
      try {
        await b.put("warm", bytesBody(new Uint8Array(10)));
        let t0 = performance.now();
        for (let i = 0; i < 20; i++) await b.put(`blobs/aa/${i}`, bytesBody(new Uint8Array(1000)));
        putMs = (performance.now() - t0) / 20;
        t0 = performance.now();
        for (let i = 0; i < 50; i++) assert.equal((await b.stat(`blobs/aa/${i % 20}`))?.size, 1000);
        statMs = (performance.now() - t0) / 50;
        // Many at once: several sessions, still over the one connection.
        await Promise.all(Array.from({ length: 50 }, (_, i) => b.stat(`blobs/aa/${i % 20}`)));
      } finally {
        await b.close();
      }
      await new Promise((r) => setTimeout(r, 100));
      const handshakes = accepted(await sshd.log()) - before;
      console.log(
        `sftp: ${handshakes} handshake(s) for 121 operations; small put ${putMs.toFixed(1)} ms, ` +
          `stat ${statMs.toFixed(1)} ms`,
      );
      assert.equal(handshakes, 1, "one ControlMaster connection for the whole backend instance");
    });
  } finally {
    await sshd.stop();
    await Deno.remove(homeDir, { recursive: true }).catch(() => {});
  }
});
