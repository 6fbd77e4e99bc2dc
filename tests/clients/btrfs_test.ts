// The btrfs client on a real btrfs file system (a loop device; needs root and btrfs-progs):
// each pushed snapshot pulls back byte for byte. And the dump parser on recorded output.

import assert from "node:assert/strict";
import {
  btrfsClient,
  parseDumpLine,
  replayDump,
  unescapeDumpPath,
} from "../../lib/clients/btrfs.ts";
import { replayRunner } from "../../lib/clients/runner.ts";
import { closeFd, mkdirRaw, openRaw, renameRaw, writeFd } from "../../lib/fs/posix.ts";
import { pathText } from "../../lib/format/names.ts";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { countingBackend } from "../helpers/backends.ts";
import { assertSameTree, makeStore, requireTool, sh, testBackend } from "./helpers.ts";

Deno.test("btrfs dump paths decode C escapes, escaped spaces and octal UTF-8 bytes", () => {
  assert.equal(unescapeDumpPath("./s2/sp\\ ace"), "./s2/sp ace");
  assert.equal(unescapeDumpPath("./s2/new\\nline"), "./s2/new\nline");
  assert.equal(unescapeDumpPath("./s2/\\303\\274n\\303\\257"), "./s2/ünï");
  assert.equal(unescapeDumpPath("a\\\\b\\tc"), "a\\b\tc");
  // Bytes that are not UTF-8 stay bytes (lone surrogates, lib/format/names.ts).
  assert.equal(unescapeDumpPath("./s2/caf\\351"), `./s2/${LATIN1}`);
  assert.equal(unescapeDumpPath("./s2/d\\377\\nx"), `./s2/${RAW_DIR}`);
  const op = parseDumpLine("rename          ./s2/o261-8-0                   dest=./s2/new\\nline");
  assert.deepEqual(op, {
    op: "rename",
    path: "./s2/o261-8-0",
    fields: { dest: "./s2/new\\nline" },
  });
});

// Recorded from `btrfs send --no-data -p s1 s2 | btrfs receive --dump` (btrfs-progs 6.2).
const RECORDED =
  `snapshot        ./s2                            uuid=7c4dece5 transid=8 parent_uuid=1c32bef7 parent_transid=7
rename          ./s2/d                          dest=./s2/e
link            ./s2/hard                       dest=e/a
update_extent   ./s2/e/a                        offset=0 len=4
utimes          ./s2/e/a                        atime=2026-11-25T03:00:57+0000 mtime=2026-11-25T03:00:57+0000 ctime=2026-11-25T03:00:57+0000
unlink          ./s2/sp\\ ace
mkfile          ./s2/o261-8-0
rename          ./s2/o261-8-0                   dest=./s2/new\\nline
update_extent   ./s2/new\\nline                  offset=0 len=1
mkfile          ./s2/o262-8-0
rename          ./s2/o262-8-0                   dest=./s2/\\303\\274n\\303\\257
update_extent   ./s2/\\303\\274n\\303\\257          offset=0 len=2
chmod           ./s2/\\303\\274n\\303\\257          mode=600
mkdir           ./s2/o263-8-0
rename          ./s2/o263-8-0                   dest=./s2/d
mkfile          ./s2/o264-8-0
rename          ./s2/o264-8-0                   dest=./s2/d/a
update_extent   ./s2/d/a                        offset=0 len=2
utimes          ./s2/d                          atime=2026-11-25T03:00:57+0000 mtime=2026-11-25T03:00:57+0000 ctime=2026-11-25T03:00:57+0000
utimes          ./s2/                           atime=2026-11-25T03:00:57+0000 mtime=2026-11-25T03:00:57+0000 ctime=2026-11-25T03:00:57+0000
`;

Deno.test("a recorded dump resolves orphan names, renamed directories and deletions", async () => {
  const c = await replayDump(RECORDED.split("\n"));
  assert.deepEqual([...c.changed].sort(), ["d", "d/a", "e", "e/a", "hard", "new\nline", "ünï"]);
  assert.deepEqual([...c.walk], ["e"]);
  assert.deepEqual([...c.gone].sort(), ["d", "sp ace"]);
});

Deno.test("the btrfs client asks the runner for the send | receive --dump pipeline", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/s1`);
    await Deno.mkdir(`${dir}/s2`);
    await Deno.writeTextFile(`${dir}/s2/new`, "x");
    const key = `btrfs send --no-data -q -p ${dir}/s1 ${dir}/s2 | btrfs receive --dump`;
    const runner = replayRunner({
      [key]: `snapshot ./s2 uuid=1\nmkfile ./s2/o257-1-0\nrename ./s2/o257-1-0 dest=./s2/new\n` +
        `unlink ./s2/old\n`,
    });
    const client = btrfsClient({ snapshot: `${dir}/s2`, runner });
    const old = { action: "write" as const } as never;
    const out = [];
    for await (
      const e of client.entries({
        changeset: {} as never,
        info: { snapshot: `${dir}/s1` },
        get: (p) => p === "old" ? old : undefined,
        paths: () => ["old"],
      })
    ) out.push({ path: e.path, action: e.action });
    assert.deepEqual(runner.calls, [key]);
    assert.deepEqual(out, [{ path: "new", action: "write" }, { path: "old", action: "delete" }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function write(path: string, text: string | Uint8Array) {
  if (typeof text === "string") await Deno.writeTextFile(path, text);
  else await Deno.writeFile(path, text);
}

/** Writes a file whose name may hold bytes that are not UTF-8 (see lib/format/names.ts). */
function writeRaw(path: string, text: string) {
  const fd = openRaw(path, "write-new", 0o644);
  try {
    writeFd(fd, new TextEncoder().encode(text));
  } finally {
    closeFd(fd);
  }
}

/** Latin-1 "café" and a lone 0xff: names a UTF-8 decoder cannot read. */
const LATIN1 = pathText(new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
const RAW_DIR = pathText(new Uint8Array([0x64, 0xff, 0x0a, 0x78]));

Deno.test("btrfs snapshots pushed in a chain pull back byte for byte", async () => {
  await requireTool("mkfs.btrfs", "btrfs-progs");
  const work = await Deno.makeTempDir({ prefix: "n2s-btrfs-" });
  const img = `${work}/fs.img`;
  const mnt = `${work}/mnt`;
  let mounted = false;
  try {
    await Deno.mkdir(mnt);
    const f = await Deno.open(img, { create: true, write: true });
    await f.truncate(300 << 20);
    f.close();
    await sh("mkfs.btrfs", "-q", img);
    await sh("mount", "-o", "loop", img, mnt);
    mounted = true;
    const v = `${mnt}/vol`;
    await sh("btrfs", "subvolume", "create", v);
    const store = await makeStore(work);
    const snap = async (name: string) => {
      await sh("btrfs", "subvolume", "snapshot", "-r", v, `${mnt}/${name}`);
      return `${mnt}/${name}`;
    };
    const pushAndCheck = async (name: string, backend?: ReturnType<typeof testBackend>) => {
      const s = await store.open(backend);
      try {
        const r = await s.push({
          client: btrfsClient({ snapshot: `${mnt}/${name}` }),
          source: "bt",
        });
        assert.ok(r.changeset, `${name} made a changeset`);
        const out = `${work}/pull-${name}`;
        await s.pull(r.changeset, out);
        await assertSameTree(out, `${mnt}/${name}`, name);
        return { r, files: s.ls(r.changeset).map((f) => `${f.action} ${f.path}`) };
      } finally {
        await s.close();
      }
    };

    // s1: the first push walks the whole snapshot.
    await Deno.mkdir(`${v}/d/sub`, { recursive: true });
    await Deno.mkdir(`${v}/dir to rename/inner`, { recursive: true });
    await Deno.mkdir(`${v}/gone`);
    const big = new Uint8Array(3 << 20).map((_, i) => (i * 7919) & 0xff);
    await write(`${v}/d/a.txt`, "alpha\n");
    await write(`${v}/d/sub/big.bin`, big);
    await write(`${v}/keep.txt`, "keep\n");
    await write(`${v}/sp ace.txt`, "space\n");
    await write(`${v}/dir to rename/x`, "x\n");
    await write(`${v}/dir to rename/inner/y`, "y\n");
    await write(`${v}/gone/z`, "z\n");
    await write(`${v}/ünïcødé.txt`, "unicode\n");
    await write(`${v}/swap1`, "one\n");
    await write(`${v}/swap2`, "two\n");
    await Deno.symlink("d/a.txt", `${v}/link`);
    await snap("s1");
    const p1 = await pushAndCheck("s1");
    assert.equal(p1.r.uploaded, 10);

    // s2: creates, edits, deletes, renames of files and directories, links, odd names.
    await write(`${v}/new file.txt`, "new\n");
    await write(`${v}/new\nline`, "newline\n");
    await write(`${v}/tab\tand\\backslash`, "tab\n");
    writeRaw(`${v}/${LATIN1}`, "latin-1 name\n");
    mkdirRaw(`${v}/${RAW_DIR}`, 0o750);
    writeRaw(`${v}/${RAW_DIR}/in\nside`, "raw dir, newline name\n");
    await Deno.writeTextFile(`${v}/d/a.txt`, "more\n", { append: true });
    await Deno.remove(`${v}/keep.txt`);
    await Deno.rename(`${v}/dir to rename`, `${v}/renamed dir`);
    await Deno.rename(`${v}/sp ace.txt`, `${v}/spaced out.txt`);
    await Deno.remove(`${v}/gone`, { recursive: true });
    await Deno.symlink("renamed dir/x", `${v}/l2`);
    await Deno.remove(`${v}/link`);
    await Deno.symlink("keep-not", `${v}/link`);
    await Deno.chmod(`${v}/ünïcødé.txt`, 0o600);
    await Deno.mkdir(`${v}/e/f/g`, { recursive: true });
    await write(`${v}/e/f/g/deep`, "deep\n");
    await Deno.rename(`${v}/swap1`, `${v}/tmp`);
    await Deno.rename(`${v}/swap2`, `${v}/swap1`);
    await Deno.rename(`${v}/tmp`, `${v}/swap2`);
    await snap("s2");
    const p2 = await pushAndCheck("s2");
    assert.ok(!p2.files.some((f) => f.includes("big.bin")), "unchanged files are not listed");
    assert.ok(p2.r.unchanged <= 3, `changed paths only, not a walk (${p2.r.unchanged} unchanged)`);
    assert.ok(p2.files.includes("delete keep.txt"));
    assert.ok(p2.files.includes("delete gone/z"));
    assert.ok(p2.files.includes("delete dir to rename/inner/y"));
    assert.ok(p2.files.includes("write renamed dir/inner/y"));
    assert.ok(p2.files.includes(`write ${LATIN1}`), "a Latin-1 name is stored as its bytes");
    assert.ok(p2.files.includes(`write ${RAW_DIR}/in\nside`));

    // s3: a directory with a subdirectory renamed, a file replaced by a directory, a hard link,
    // a truncation, a removed symlink.
    await Deno.rename(`${v}/d`, `${v}/d2`);
    await Deno.remove(`${v}/spaced out.txt`);
    await Deno.mkdir(`${v}/spaced out.txt`);
    await write(`${v}/spaced out.txt/inside`, "inside\n");
    await Deno.link(`${v}/d2/a.txt`, `${v}/hard`);
    renameRaw(`${v}/${RAW_DIR}`, `${v}/${RAW_DIR}2`);
    await Deno.truncate(`${v}/new file.txt`, 0);
    await Deno.remove(`${v}/l2`);
    await snap("s3");
    const p3 = await pushAndCheck("s3");
    assert.ok(p3.files.includes("delete d/sub/big.bin"));
    assert.ok(p3.files.includes("write d2/sub/big.bin"));
    assert.ok(p3.files.includes(`delete ${RAW_DIR}/in\nside`));
    assert.ok(p3.files.includes(`write ${RAW_DIR}2/in\nside`));

    // The same snapshot again: nothing to do, nothing uploaded, and no walk of the snapshot.
    {
      const backend = countingBackend(new LocalBackend(store.repo));
      const s = await store.open(backend);
      try {
        const r = await s.push({ client: btrfsClient({ snapshot: `${mnt}/s3` }), source: "bt" });
        assert.equal(r.changeset, null);
        const stored = backend.puts.filter((k) => !k.startsWith("locks/"));
        assert.deepEqual(stored, [], "nothing is stored, not even a manifest");
        assert.equal(r.files, 0);
        assert.ok(r.unchanged <= 3, `changed paths only, not a walk (${r.unchanged} unchanged)`);
      } finally {
        await s.close();
      }
    }

    // s4: a push interrupted after two blobs is resumed by the next push, which sends only the
    // blobs that were not confirmed.
    for (let i = 0; i < 6; i++) await write(`${v}/batch-${i}`, `batch ${i}\n`);
    await snap("s4");
    {
      const failing = testBackend(store.repo, 2);
      const s = await store.open(failing);
      await assert.rejects(
        s.push({
          client: btrfsClient({ snapshot: `${mnt}/s4` }),
          source: "bt",
          concurrency: 1,
          confirmBatch: 1,
        }),
        /injected/,
      );
      await s.close();
      const backend = testBackend(store.repo);
      const s2 = await store.open(backend);
      try {
        const r = await s2.push({ client: btrfsClient({ snapshot: `${mnt}/s4` }), source: "bt" });
        assert.equal(r.resumed.length, 1);
        assert.equal(r.changeset, null, "the resumed changeset already holds s4");
        assert.equal(backend.blobPuts.length, 4);
        const out = `${work}/pull-s4`;
        await s2.pull(r.resumed[0], out);
        await assertSameTree(out, `${mnt}/s4`, "s4");
      } finally {
        await s2.close();
      }
    }
  } finally {
    if (mounted) await sh("umount", mnt).catch(() => sh("umount", "-l", mnt));
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
