// The rclone backend under the conformance suite and the CLI round trip, on two remotes: a
// local path, and an SFTP remote from an rclone config file pointed at a real test sshd. Also:
// fast, one-line failures for a remote missing from the config, a closed port and a wrong key;
// an rcd that dies is replaced; location parsing; small puts and stats served by one rcd; an S3
// connection string (an endpoint URL, a secret) against s3rver.

import assert from "node:assert/strict";
import {
  type Backend,
  type Body,
  BodyError,
  bytesBody,
  errorKind,
  type ObjectInfo,
  readAll,
} from "../../lib/backends/backend.ts";
import { fromBody, RetryBackend } from "../../lib/backends/wrappers.ts";
import { openRcloneLocation, TEMP_DIR } from "../../lib/backends/rclone/backend.ts";
import { parseRcloneLocation, redactRemote } from "../../lib/backends/rclone/location.ts";
import { startS3 } from "../servers/s3.ts";
import { startSshd } from "../servers/sshd.ts";
import { seededBytes, tempDir } from "../helpers/fs.ts";
import { expectFastFailure, runCliRoundTrip, runConformance, type Trouble } from "./harness.ts";

const SETUP_HINT = "run `bash scripts/setup.sh` (scripts/setup/rclone.sh installs rclone)";

/** Fails (never skips) when rclone is not installed. */
async function requireRclone(): Promise<void> {
  try {
    const out = await new Deno.Command("rclone", {
      args: ["version"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!out.success) throw new Error(`rclone version exited ${out.code}; ${SETUP_HINT}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`rclone not found; ${SETUP_HINT}`);
    throw e;
  }
}

/**
 * Opens the backend alone, without the retry and limit wrappers: the conformance steps prove
 * that it keeps the contract by itself (the CLI round trips run it in the full stack).
 */
function open(location: string, env: Record<string, string>): Promise<Backend> {
  return openRcloneLocation(location, env);
}

async function keys(b: Backend, prefix: string): Promise<string[]> {
  const out: ObjectInfo[] = [];
  for await (const i of b.list(prefix)) out.push(i);
  return out.map((i) => i.key).sort();
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Pids of the `rclone rcd` processes this test process started (Linux /proc). */
function rcdPids(): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (ppid === Deno.pid && cmd.includes("rcd")) pids.push(Number(e.name));
    } catch {
      // The process ended meanwhile.
    }
  }
  return pids;
}

/** rcd killed: the requests in flight fail, and the next calls start another one. */
const rcdKilled: Trouble = {
  what: "rcd killed",
  // deno-lint-ignore require-await
  strike: async () => {
    const pids = rcdPids();
    assert.equal(pids.length, 1, `one rcd runs, not ${pids.length}`);
    Deno.kill(pids[0], "SIGKILL");
    return () => {};
  },
};

/** Files left under a local directory (the temporary area must end up empty). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) out.push(...filesUnder(`${dir}/${e.name}`));
      else out.push(`${dir}/${e.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

Deno.test("rclone backend: a local path and an sftp remote", async (t) => {
  await requireRclone();

  await t.step("locations: parsing and hidden secrets", () => {
    assert.equal(parseRcloneLocation("rclone:remote:dir/sub/"), "remote:dir/sub");
    assert.equal(parseRcloneLocation("rclone:remote:/"), "remote:/");
    assert.equal(parseRcloneLocation("rclone:/srv/repo"), "/srv/repo");
    assert.equal(parseRcloneLocation("rclone::sftp,host=h:dir"), ":sftp,host=h:dir");
    assert.throws(() => parseRcloneLocation("rclone:"), /empty rclone path/);
    assert.throws(() => parseRcloneLocation("rclone:a\nb:c"), /control character/);
    assert.throws(() => parseRcloneLocation("s3://b"), /not an rclone location/);
    assert.equal(
      redactRemote(":s3,access_key_id=AK,secret_access_key='S:1',endpoint='http://h:1':b/p"),
      ":s3,access_key_id=AK,secret_access_key=***,endpoint='http://h:1':b/p",
    );
    assert.equal(
      redactRemote(":sftp,host=h,user=u,pass=P,key_file=/k:d"),
      ":sftp,host=h,user=u,pass=***,key_file=/k:d",
    );
  });

  await t.step("a missing rclone program fails the open, permanently", async () => {
    await assert.rejects(
      () => openRcloneLocation("rclone:/tmp/x", { N2S_RCLONE: "/nonexistent/rclone" }),
      (e) =>
        errorKind(e) === "permanent" &&
        /rclone not found; install it \(apt-get install rclone\) or set N2S_RCLONE/.test(
          (e as Error).message,
        ),
    );
  });

  await t.step("local path", async (t) => {
    using tmp = tempDir();
    const loc = `rclone:${tmp.path}/repo`;
    await runConformance(t, () => open(loc, {}), { trouble: rcdKilled });
    assert.deepEqual(filesUnder(`${tmp.path}/repo/${TEMP_DIR}`), [], "no temporary file is left");

    await t.step("leftovers of cut-off uploads are listed with their age and deleted", async () => {
      const b = await openRcloneLocation(`${loc}/leftovers`, {});
      try {
        await b.put("keys/k", bytesBody(seededBytes(1000, 7)));
        assert.deepEqual(await b.temporaries!(), [], "a finished put leaves nothing");
        // What an upload cut off before its move leaves in the temporary area.
        const dir = `${tmp.path}/repo/leftovers/${TEMP_DIR}`;
        Deno.mkdirSync(dir, { recursive: true });
        Deno.writeFileSync(`${dir}/dead`, seededBytes(5000, 8));
        const twoHours = new Date(Date.now() - 2 * 3600_000);
        Deno.utimeSync(`${dir}/dead`, twoHours, twoHours);
        const left = await b.temporaries!();
        assert.equal(left.length, 1);
        assert.equal(left[0].key, `${TEMP_DIR}/dead`);
        assert.equal(left[0].size, 5000);
        assert.ok(Math.abs(left[0].mtime - twoHours.getTime()) < 2000, "its modification time");
        await assert.rejects(() => b.deleteTemporary!("keys/k"), /not a temporary object/);
        await b.deleteTemporary!(left[0].key);
        assert.deepEqual(await b.temporaries!(), []);
        assert.ok(await b.stat("keys/k"), "objects stay");
      } finally {
        await b.close();
      }
    });

    await t.step("an rcd that dies is replaced; a read in flight fails transiently", async () => {
      const b = await openRcloneLocation(`${loc}/restart`, {});
      try {
        const big = seededBytes(64 << 20, 5);
        await b.put("big", bytesBody(big));
        const pids = rcdPids();
        assert.equal(pids.length, 1, `one rcd runs, not ${pids.length}`);
        // A read in flight when rcd dies: more than the sockets can hold is still to come.
        const reading = (await b.get("big"))[Symbol.asyncIterator]();
        assert.equal((await reading.next()).done, false);
        Deno.kill(pids[0], "SIGKILL");
        await assert.rejects(async () => {
          while (!(await reading.next()).done) { /* drain what was buffered */ }
        }, (e) => errorKind(e) === "transient");
        // Later calls start another rcd; one made before the death is noticed fails
        // transiently, so the retry layer that n2s stacks on every backend carries it through.
        const retried = new RetryBackend(b, { attempts: 20, baseMs: 50, maxMs: 2000 });
        assert.deepEqual(await retried.stat("big"), { key: "big", size: big.length });
        const now = rcdPids();
        assert.equal(now.length, 1, `one rcd runs, not ${now.length}`);
        assert.notEqual(now[0], pids[0], "a new rcd serves");
        const back = await readAll(await b.get("big"));
        assert.ok(back.length === big.length && back.every((x, i) => x === big[i]));
      } finally {
        await b.close();
      }
      assert.deepEqual(rcdPids(), [], "close stops rcd");
    });

    await runCliRoundTrip(t, `rclone:${tmp.path}/cli`, {});
    await expectFastFailure(
      t,
      `rclone:${tmp.path}/never`,
      { N2S_RCLONE: "/nonexistent/rclone" },
      /rclone not found; install it \(apt-get install rclone\) or set N2S_RCLONE/,
    );
  });

  await t.step("sftp remote (test sshd, rclone config file)", async (t) => {
    const sshd = await startSshd();
    try {
      const closedPort = freePort();
      const conf = `${sshd.dir}/rclone.conf`;
      const section = (name: string, port: number, keyFile: string) =>
        [
          `[${name}]`,
          "type = sftp",
          `host = ${sshd.host}`,
          `port = ${port}`,
          `user = ${sshd.user}`,
          `key_file = ${keyFile}`,
          `known_hosts_file = ${sshd.knownHostsFile}`,
          "",
        ].join("\n");
      await new Deno.Command("ssh-keygen", {
        args: ["-q", "-t", "ed25519", "-N", "", "-f", `${sshd.dir}/stranger_ed25519`],
        stdout: "null",
      }).output();
      Deno.writeTextFileSync(
        conf,
        [
          section("n2s-sftp", sshd.port, sshd.keyFile),
          section("n2s-closed", closedPort, sshd.keyFile),
          section("n2s-stranger", sshd.port, `${sshd.dir}/stranger_ed25519`),
        ].join("\n"),
      );
      const env = { RCLONE_CONFIG: conf };
      const loc = `rclone:n2s-sftp:${sshd.dir}/repo`;

      await runConformance(t, () => open(loc, env), { trouble: rcdKilled });
      assert.deepEqual(filesUnder(`${sshd.dir}/repo/${TEMP_DIR}`), [], "no temporary file is left");

      await t.step(
        "small puts and stats start no rclone process: one rcd serves them",
        async () => {
          // rclone through a script that records each start of it.
          const starts = `${sshd.dir}/rclone-starts`;
          const program = `${sshd.dir}/rclone-counted`;
          Deno.writeTextFileSync(
            program,
            `#!/bin/sh\necho "$*" >> '${starts}'\nexec rclone "$@"\n`,
          );
          Deno.chmodSync(program, 0o755);
          const b = await openRcloneLocation(`${loc}/cost`, { ...env, N2S_RCLONE: program });
          try {
            for (let i = 0; i < 20; i++) await b.put(`k/${i}`, bytesBody(new Uint8Array(1000)));
            for (let i = 0; i < 20; i++) assert.equal((await b.stat(`k/${i}`))?.size, 1000);
          } finally {
            await b.close();
          }
          const started = Deno.readTextFileSync(starts).trim().split("\n");
          assert.equal(started.length, 1, `rclone started ${started.length} times:\n${started}`);
          assert.match(started[0], /^rcd /);
        },
      );

      await runCliRoundTrip(t, loc, env);
      await expectFastFailure(
        t,
        `rclone:n2s-missing:${sshd.dir}/x`,
        env,
        /rclone n2s-missing:.*remote "n2s-missing" is not in the rclone config/,
      );
      await expectFastFailure(
        t,
        `rclone:n2s-closed:${sshd.dir}/x`,
        env,
        /rclone n2s-closed:.*couldn't connect SSH: .*connection refused/,
      );
      await expectFastFailure(
        t,
        `rclone:n2s-stranger:${sshd.dir}/x`,
        env,
        /rclone n2s-stranger:.*unable to authenticate.*check the remote's user and key/,
      );
    } finally {
      await sshd.stop();
    }
  });

  await t.step("s3 connection string with an endpoint URL (s3rver)", async () => {
    const s3 = await startS3();
    try {
      // The endpoint's "//" must survive the way to rcd, and AWS_CA_BUNDLE (which breaks
      // rclone 1.60's s3 backend) must not reach rclone.
      const loc =
        `rclone::s3,provider=Other,endpoint='${s3.endpoint}',access_key_id=${s3.accessKeyId},` +
        `secret_access_key=${s3.secretAccessKey},force_path_style=true:${s3.bucket}/repo`;
      const b = await openRcloneLocation(loc, { AWS_CA_BUNDLE: "/nonexistent/ca.pem" });
      try {
        assert.match(b.name, /,secret_access_key=\*\*\*,/, "the secret is hidden in the name");
        const enc = new TextEncoder();
        await b.put("config", bytesBody(enc.encode("first")));
        await b.put("config", bytesBody(enc.encode("second, longer")));
        assert.equal(
          new TextDecoder().decode(await readAll(await b.get("config"))),
          "second, longer",
        );
        assert.deepEqual(await b.stat("config"), { key: "config", size: 14 });
        const failing: Body = {
          size: 1 << 20,
          async *open() {
            yield new Uint8Array(1000);
            throw new BodyError("source changed");
          },
        };
        await assert.rejects(() => b.put("blobs/ab/x", failing), (e) => fromBody(e));
        await b.put("blobs/ab/y", bytesBody(new Uint8Array(10)));
        assert.deepEqual(await keys(b, ""), ["blobs/ab/y", "config"]);
        await b.delete("blobs/ab/y");
        assert.equal(await b.stat("blobs/ab/y"), null);
      } finally {
        await b.close();
      }
    } finally {
      await s3.stop();
    }
  });
});
