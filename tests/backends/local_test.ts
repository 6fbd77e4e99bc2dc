// The local directory backend under the conformance suite and the CLI round trip, through the
// same backend stack (limit, retry) as every other backend; its transient errors on a FUSE mount
// whose server dies.

import { openBackend, openBaseBackend } from "../../lib/backends/open.ts";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { tempDir } from "../helpers/fs.ts";
import { expectFastFailure, runCliRoundTrip, runConformance, type Trouble } from "./harness.ts";

const SETUP_HINT = "run `bash scripts/setup.sh` (scripts/setup/rclone.sh installs rclone and fuse)";

/**
 * The local backend on a FUSE mount (rclone mount) of a directory, as on a network file system:
 * the trouble is the mount's server dying, after which every read of the mount fails
 * ("Transport endpoint is not connected") until it is mounted again.
 */
function fuseTrouble(dir: string): Trouble & { unmount(): Promise<void> } {
  const src = `${dir}/src`;
  const mnt = `${dir}/mnt`;
  const run = async (cmd: string, args: string[]) => {
    const out = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .output()
      .catch((e) => {
        throw new Error(`${cmd}: ${e}; ${SETUP_HINT}`);
      });
    if (!out.success) {
      throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  // --daemon returns once the mount is ready.
  const mount = () =>
    run("rclone", [
      "mount",
      src,
      mnt,
      "--daemon",
      "--daemon-wait=20s",
      // Every lookup asks the directory it serves: an object stored beside the mount is seen.
      "--dir-cache-time=0s",
      "--poll-interval=0",
    ]);
  const unmount = () => run("fusermount", ["-uz", mnt]);
  /** The mount's server process. */
  const server = (): number => {
    const pids: number[] = [];
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        const args = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
        if (args[1] === "mount" && args[2] === src && args[3] === mnt) pids.push(Number(e.name));
      } catch {
        // gone meanwhile
      }
    }
    if (pids.length !== 1) throw new Error(`one rclone mount of ${mnt}, not ${pids.length}`);
    return pids[0];
  };
  return {
    what: "the server of its FUSE mount killed",
    open: async () => {
      Deno.mkdirSync(src, { recursive: true });
      Deno.mkdirSync(mnt, { recursive: true });
      await mount();
      return await openBaseBackend(`${mnt}/repo`, {});
    },
    // Written beside the mount, into the directory it serves: a FUSE mount without a write
    // cache refuses some large writes with EBADF, which is not the trouble measured here.
    store: (_b, key, body) => new LocalBackend(`${src}/repo`).put(key, body),
    // deno-lint-ignore require-await
    strike: async () => {
      Deno.kill(server(), "SIGKILL");
      return async () => {
        await unmount();
        await mount();
      };
    },
    unmount,
  };
}

Deno.test("local backend: conformance and CLI round trip", async (t) => {
  using tmp = tempDir();
  for (const location of [`${tmp.path}/repo`, `file://${tmp.path}/repo-url`]) {
    const trouble = fuseTrouble(`${tmp.path}/fuse-${crypto.randomUUID().slice(0, 8)}`);
    try {
      await runConformance(t, () => openBackend(location, { env: {} }), { trouble });
    } finally {
      await trouble.unmount().catch(() => {});
    }
  }
  await runCliRoundTrip(t, `${tmp.path}/cli`, {});
  Deno.writeTextFileSync(`${tmp.path}/a-file`, "not a directory");
  await expectFastFailure(
    t,
    `${tmp.path}/a-file/repo`,
    {},
    /local .*a-file\/repo.*not a directory/i,
  );
});
