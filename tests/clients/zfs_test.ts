// The ZFS client: the `zfs diff` parser on recorded output (every change type, escaped names),
// and snapshot reading and first pushes on real pools from zfs-fuse (which has no `zfs diff`).

import assert from "node:assert/strict";
import { pathBytes } from "../../lib/format/names.ts";
import { parseZfsDiff, unescapeZfsPath, zfsChanges, zfsClient } from "../../lib/clients/zfs.ts";
import { replayRunner } from "../../lib/clients/runner.ts";
import type { PreviousState } from "../../lib/clients/client.ts";
import type { PathState } from "../../lib/index/types.ts";
import { assertSameTree, makeStore, requireTool, sh, testBackend } from "./helpers.ts";

// Shaped as OpenZFS 2.x prints `zfs diff -FHt` (four-digit octal escapes).
const RECORDED = [
  "1718300000.123456789\tM\t/\t/tank/data/",
  "1718300000.123456789\t+\tF\t/tank/data/new\\0040file.txt",
  "1718300001.000000000\tM\tF\t/tank/data/edited.csv",
  "1718300002.000000000\t-\tF\t/tank/data/removed.txt",
  "1718300003.000000000\tR\tF\t/tank/data/old\\0040name\t/tank/data/new\\0040name",
  "1718300004.000000000\t+\t/\t/tank/data/newdir",
  "1718300004.000000000\t+\tF\t/tank/data/newdir/inner",
  "1718300005.000000000\t-\t/\t/tank/data/olddir",
  "1718300005.000000000\t-\tF\t/tank/data/olddir/f",
  "1718300006.000000000\tR\t/\t/tank/data/dir\\0040a\t/tank/data/dir\\0040b",
  "1718300007.000000000\t+\t@\t/tank/data/link",
  "1718300008.000000000\tM\t@\t/tank/data/retargeted",
  "1718300009.000000000\t-\t@\t/tank/data/dead\\0134link",
  "1718300010.000000000\t+\tF\t/tank/data/caf\\0303\\0251\\0012nl",
  "1718300011.000000000\t+\t|\t/tank/data/pipe",
  "",
].join("\n");

Deno.test("zfs diff output parses every change and file type", () => {
  const lines = parseZfsDiff(RECORDED);
  assert.equal(lines.length, 15);
  assert.deepEqual(lines[1], {
    time: 1718300000.123456789,
    change: "+",
    type: "F",
    path: "/tank/data/new file.txt",
    newPath: undefined,
  });
  assert.equal(lines[4].change, "R");
  assert.equal(lines[4].path, "/tank/data/old name");
  assert.equal(lines[4].newPath, "/tank/data/new name");
  assert.equal(lines[12].path, "/tank/data/dead\\link");
  assert.equal(lines[13].path, "/tank/data/café\nnl");
  assert.deepEqual(lines.map((l) => l.type).join(""), "/FFFF/F/F/@@@F|");
});

Deno.test("zfs diff escapes: three-digit octal of older releases, four-digit of OpenZFS", () => {
  assert.equal(unescapeZfsPath("/p/a\\040b", 3), "/p/a b");
  assert.equal(unescapeZfsPath("/p/a\\0040b", 4), "/p/a b");
  assert.equal(unescapeZfsPath("/p/a\\040b"), "/p/a b");
  assert.equal(unescapeZfsPath("/p/a\\0040b"), "/p/a b");
  const old = parseZfsDiff("-\tF\t/p/x\\040y\\0401\n+\tF\t/p/\\303\\251\n");
  assert.deepEqual(old.map((l) => l.path), ["/p/x y 1", "/p/é"]);
  assert.equal(old[0].time, undefined);
  // A byte that is not UTF-8 (Latin-1 é) stays that byte: a lone surrogate, not U+FFFD.
  const raw = parseZfsDiff("M\tF\t/p/caf\\0351\n+\tF\t/p/d\\0377\\0012x\n");
  assert.deepEqual(raw.map((l) => pathBytes(l.path)), [
    new Uint8Array([...new TextEncoder().encode("/p/caf"), 0xe9]),
    new Uint8Array([...new TextEncoder().encode("/p/d"), 0xff, 0x0a, 0x78]),
  ]);
});

Deno.test("zfs diff lines become changed, walked and gone paths", () => {
  const c = zfsChanges(parseZfsDiff(RECORDED), "/tank/data");
  assert.deepEqual([...c.changed].sort(), [
    "caf\u00e9\nnl",
    "edited.csv",
    "link",
    "new file.txt",
    "new name",
    "newdir/inner",
    "pipe",
    "retargeted",
  ]);
  assert.deepEqual([...c.walk].sort(), ["dir b", "newdir"]);
  assert.deepEqual([...c.gone].sort(), [
    "dead\\link",
    "dir a",
    "old name",
    "olddir",
    "olddir/f",
    "removed.txt",
  ]);
  assert.deepEqual([...c.goneDirs].sort(), ["dir a", "olddir"]);
});

function previousOf(paths: string[], info: unknown): PreviousState {
  const st = (p: string): PathState | undefined =>
    paths.includes(p)
      ? {
        action: "write",
        size: 1,
        mtime: 0,
        inode: null,
        mode: null,
        target: null,
        changeset: "c",
        ctime: null,
      }
      : undefined;
  return { changeset: {} as never, info, get: st, paths: () => paths };
}

Deno.test("an incremental ZFS push reads .zfs/snapshot and follows recorded zfs diff", async () => {
  const mp = await Deno.makeTempDir();
  try {
    const snap = `${mp}/.zfs/snapshot/s2`;
    await Deno.mkdir(`${snap}/dir b`, { recursive: true });
    await Deno.mkdir(`${snap}/newdir`);
    await Deno.writeTextFile(`${snap}/dir b/kept`, "k");
    await Deno.writeTextFile(`${snap}/newdir/inner`, "i");
    await Deno.writeTextFile(`${snap}/new name`, "n");
    await Deno.writeTextFile(`${snap}/edited.csv`, "e");
    await Deno.symlink("new name", `${snap}/link`);
    const diff = [
      "1.0\tM\tF\t" + `${mp}/edited.csv`,
      "1.0\t-\tF\t" + `${mp}/removed.txt`,
      "1.0\tR\tF\t" + `${mp}/old\\0040name\t${mp}/new\\0040name`,
      "1.0\tR\t/\t" + `${mp}/dir\\0040a\t${mp}/dir\\0040b`,
      "1.0\t+\t/\t" + `${mp}/newdir`,
      "1.0\t+\t@\t" + `${mp}/link`,
      "",
    ].join("\n");
    const runner = replayRunner({
      "zfs get -H -o value mountpoint tank/data": `${mp}\n`,
      "zfs diff -FHt tank/data@s1 tank/data@s2": diff,
    });
    const client = await zfsClient({ snapshot: "tank/data@s2", runner });
    assert.equal(client.root, snap);
    assert.equal(client.clone, undefined);
    const prev = previousOf(
      ["edited.csv", "removed.txt", "old name", "dir a/kept", "untouched"],
      { snapshot: "tank/data@s1" },
    );
    const got: string[] = [];
    for await (const e of client.entries(prev)) got.push(`${e.action} ${e.path}`);
    await client.close?.();
    assert.deepEqual(got.sort(), [
      "delete dir a/kept",
      "delete old name",
      "delete removed.txt",
      "dir dir b",
      "dir newdir",
      "link link",
      "write dir b/kept",
      "write edited.csv",
      "write new name",
      "write newdir/inner",
    ]);
    assert.deepEqual(client.info?.(), { snapshot: "tank/data@s2" });
  } finally {
    await Deno.remove(mp, { recursive: true });
  }
});

/** Whether a zfs-fuse process runs (read from /proc: procps may not be installed). */
function zfsFuseRunning(): boolean {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/comm`).trim() === "zfs-fuse") return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

/**
 * Makes sure a zfs-fuse daemon answers. One may already run (Debian's package starts one when it
 * is installed), be starting, or have died and left its pid file behind, which makes a new
 * daemon exit at once with status 1 and no message; a stale pid file is removed first.
 */
async function ensureZfsFuse(): Promise<void> {
  await requireTool("zpool", "zfs-fuse");
  const pidFile = "/run/zfs-fuse.pid";
  const ok = async () =>
    (await new Deno.Command("zpool", { args: ["list"], stdout: "null", stderr: "null" }).output())
      .code === 0;
  // Within 30 s: wait for a daemon that runs (it may be starting, or a killed one may still be
  // going away), and start one, at most every 2 s, whenever none runs.
  let last: Deno.CommandOutput | null = null;
  let lastStart = 0;
  for (const end = Date.now() + 30_000; Date.now() < end;) {
    if (await ok()) return;
    if (!zfsFuseRunning() && Date.now() - lastStart >= 2000) {
      await Deno.remove(pidFile).catch(() => {});
      lastStart = Date.now();
      last = await new Deno.Command("/usr/sbin/zfs-fuse", {
        args: ["--pidfile", pidFile],
        stdout: "piped",
        stderr: "piped",
      }).output();
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const said = last ? new TextDecoder().decode(last.stderr).trim() : "";
  throw new Error(
    `zfs-fuse did not answer within 30 s (${
      last ? `last start: exit ${last.code}${said ? `, ${said}` : ""}` : "a daemon runs"
    }); check /dev/fuse and ${pidFile}`,
  );
}

Deno.test("a first push from a real zfs-fuse snapshot reads a temporary clone", async () => {
  await ensureZfsFuse();
  const work = await Deno.makeTempDir({ prefix: "n2s-zfs-" });
  const pool = `n2stest${Math.random().toString(36).slice(2, 8)}`;
  const img = `${work}/pool.img`;
  const mp = `${work}/mnt`;
  let created = false;
  try {
    const f = await Deno.open(img, { create: true, write: true });
    await f.truncate(128 << 20);
    f.close();
    await sh("zpool", "create", "-f", "-m", mp, pool, img);
    created = true;
    await sh("zfs", "create", `${pool}/data`);
    const ds = `${mp}/data`;
    await Deno.mkdir(`${ds}/dir with space/sub`, { recursive: true });
    await Deno.writeTextFile(`${ds}/dir with space/sub/a.txt`, "a\n");
    await Deno.writeTextFile(`${ds}/naïve\nname`, "odd\n");
    await Deno.writeFile(`${ds}/big.bin`, new Uint8Array(2 << 20).map((_, i) => i % 251));
    await Deno.symlink("dir with space/sub/a.txt", `${ds}/link`);
    for (let i = 0; i < 5; i++) await Deno.writeTextFile(`${ds}/f${i}`, `file ${i}\n`);
    await sh("zfs", "snapshot", `${pool}/data@s1`);
    const expected = `${work}/expected`;
    await sh("cp", "-a", ds, expected);
    // The live dataset moves on; the push must read the snapshot.
    await Deno.writeTextFile(`${ds}/f0`, "changed after the snapshot\n");
    await Deno.remove(`${ds}/f1`);

    const store = await makeStore(work);
    // Interrupted after two blobs, then resumed from a new clone of the same snapshot.
    const failing = testBackend(store.repo, 2);
    let s = await store.open(failing);
    await assert.rejects(
      s.push({
        client: await zfsClient({ snapshot: `${pool}/data@s1` }),
        source: "zfs",
        concurrency: 1,
        confirmBatch: 1,
      }),
      /injected/,
    );
    await s.close();
    assert.doesNotMatch(await sh("zfs", "list", "-H", "-o", "name"), /n2s-read/);

    const backend = testBackend(store.repo);
    s = await store.open(backend);
    try {
      const client = await zfsClient({ snapshot: `${pool}/data@s1` });
      assert.ok(client.clone, "zfs-fuse has no .zfs/snapshot: a clone is used");
      const r = await s.push({ client, source: "zfs" });
      assert.equal(r.resumed.length, 1);
      assert.equal(r.changeset, null);
      assert.equal(backend.blobPuts.length, 8 - 2);
      assert.doesNotMatch(await sh("zfs", "list", "-H", "-o", "name"), /n2s-read/);
      const out = `${work}/pulled`;
      await s.pull(r.resumed[0], out);
      await assertSameTree(out, expected, "s1");

      // Pushing the same snapshot again uploads nothing.
      const again = testBackend(store.repo);
      await s.close();
      s = await store.open(again);
      const r2 = await s.push({
        client: await zfsClient({ snapshot: `${pool}/data@s1` }),
        source: "zfs",
      });
      assert.equal(r2.changeset, null);
      assert.equal(again.blobPuts.length, 0);
    } finally {
      await s.close();
    }
    assert.doesNotMatch(await sh("zfs", "list", "-H", "-o", "name"), /n2s-read/);
  } finally {
    if (created) await sh("zpool", "destroy", "-f", pool).catch(() => {});
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
