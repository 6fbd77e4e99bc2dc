// Bad input: a wrong passphrase, unreadable and changing files, a corrupted blob, and manifests
// whose paths would escape the restore target. Each is an error that names the file, and
// nothing is lost or written where it should not be.

import assert from "node:assert/strict";
import { N2S } from "../../lib/n2s.ts";
import { scanClient } from "../../lib/clients/scan.ts";
import { type Client, type ContentFile, openLocalFile } from "../../lib/clients/client.ts";
import { writeManifest } from "../../lib/repository/manifest.ts";
import { blobIdFor } from "../../lib/format/ids.ts";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, tempDir, writeTree } from "../helpers/fs.ts";
import { blobBytes, storedBlobIds } from "../helpers/repo.ts";

const ENV = { N2S_PASSPHRASE: "pw" };

async function freshStore(
  dir: string,
): Promise<{ store: N2S; repo: string; index: string; args: string[] }> {
  const repo = `${dir}/repo`;
  const index = `${dir}/index.sqlite`;
  await n2sOk(["init", "--repo", repo, "--index", index], ENV);
  const store = await N2S.open({ repository: repo, index, passphrase: "pw" });
  return { store, repo, index, args: ["--repo", repo, "--index", index] };
}

/** Wraps a client so that opening chosen paths misbehaves. */
function withOpen(client: Client, open: (path: string) => Promise<ContentFile>): Client {
  return Object.assign(Object.create(client), { open });
}

Deno.test("a wrong passphrase is refused with one clear line", async () => {
  using tmp = tempDir();
  const { store, args } = await freshStore(tmp.path);
  await store.close();
  writeTree(`${tmp.path}/src`, { "a": "1" });
  const r = await n2s(["push", `${tmp.path}/src`, ...args], { N2S_PASSPHRASE: "not it" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /wrong passphrase/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
});

Deno.test("an unreadable file is reported and the rest is stored", async () => {
  using tmp = tempDir();
  const { store } = await freshStore(tmp.path);
  try {
    const src = `${tmp.path}/src`;
    writeTree(src, { "ok1.txt": "fine", "secret.txt": "no access", "ok2.txt": "fine too" });
    const base = scanClient({ paths: [src] });
    // Root reads every file, so the permission error is injected at open.
    const client = withOpen(base, (p) => {
      if (p === "secret.txt") return Promise.reject(new Deno.errors.PermissionDenied("open"));
      return openLocalFile(src, p);
    });
    const r = await store.push({ client, source: "s" });
    assert.deepEqual(r.problems.map((p) => p.path), ["secret.txt"]);
    assert.match(r.problems[0].message, /permission denied/);
    assert.equal(r.uploaded, 2);
    const [cs] = store.status(r.changeset!);
    assert.equal(cs.status, "complete");
    await store.pull(r.changeset!, `${tmp.path}/out`);
    assert.deepEqual(Object.keys(readTree(`${tmp.path}/out`)).sort(), ["ok1.txt", "ok2.txt"]);
    // The next push tries the file again.
    const again = await store.push({ client: scanClient({ paths: [src] }), source: "s" });
    assert.equal(again.uploaded, 1);
  } finally {
    await store.close();
  }
});

Deno.test("a file that vanishes after the scan is reported and the rest is stored", async () => {
  using tmp = tempDir();
  const { store } = await freshStore(tmp.path);
  try {
    const src = `${tmp.path}/src`;
    writeTree(src, { "stays.txt": "x", "goes.txt": "y" });
    const base = scanClient({ paths: [src] });
    const client = withOpen(base, (p) => {
      if (p === "goes.txt") Deno.removeSync(`${src}/goes.txt`);
      return openLocalFile(src, p);
    });
    const r = await store.push({ client, source: "s" });
    assert.deepEqual(r.problems.map((p) => p.path), ["goes.txt"]);
    assert.match(r.problems[0].message, /vanished/);
    assert.equal(r.uploaded, 1);
  } finally {
    await store.close();
  }
});

function growingOpen(src: string, target: string, times: number) {
  let opened = 0;
  return (p: string): Promise<ContentFile> => {
    if (p === target && opened++ < times) {
      // Something else writes to the file while n2s reads it.
      return openLocalFile(src, p).then((f) => ({
        ...f,
        async read(buf: Uint8Array) {
          const n = await f.read(buf);
          Deno.writeTextFileSync(`${src}/${p}`, "more\n", { append: true });
          return n;
        },
      }));
    }
    return openLocalFile(src, p);
  };
}

Deno.test("a file that changes while it is read is retried, then stored as it settles", async () => {
  using tmp = tempDir();
  const { store } = await freshStore(tmp.path);
  try {
    const src = `${tmp.path}/src`;
    writeTree(src, { "log.txt": "start\n", "other": "o" });
    const client = withOpen(scanClient({ paths: [src] }), growingOpen(src, "log.txt", 1));
    const r = await store.push({ client, source: "s" });
    assert.deepEqual(r.problems, []);
    await store.pull(r.changeset!, `${tmp.path}/out`);
    assert.equal(
      Deno.readTextFileSync(`${tmp.path}/out/log.txt`),
      Deno.readTextFileSync(`${src}/log.txt`),
    );
  } finally {
    await store.close();
  }
});

Deno.test("a file that keeps changing while it is read is reported, never stored torn", async () => {
  using tmp = tempDir();
  const { store } = await freshStore(tmp.path);
  try {
    const src = `${tmp.path}/src`;
    writeTree(src, { "busy.log": "start\n", "calm.txt": "c" });
    const client = withOpen(scanClient({ paths: [src] }), growingOpen(src, "busy.log", 100));
    const r = await store.push({ client, source: "s" });
    assert.deepEqual(r.problems.map((p) => p.path), ["busy.log"]);
    assert.match(r.problems[0].message, /changed while it was read/);
    assert.equal(r.uploaded, 1);
    const ls = store.ls(r.changeset!);
    assert.equal(ls.find((f) => f.path === "busy.log")?.status, "failed");
  } finally {
    await store.close();
  }
});

Deno.test("a corrupted blob fails its pull with the path named, and nothing is written for it", async () => {
  using tmp = tempDir();
  const { store, repo, args } = await freshStore(tmp.path);
  let where: { file: string; offset: number; length: number };
  let id: string;
  try {
    writeTree(`${tmp.path}/src`, { "good.txt": "good", "dir/bad.txt": "this one gets corrupted" });
    const r = await store.push({
      client: scanClient({ paths: [`${tmp.path}/src`] }),
      source: "s",
    });
    id = r.changeset!;
    where = blobBytes(repo, store.index.filesOf(id).find((f) => f.path === "dir/bad.txt")!);
  } finally {
    await store.close();
  }
  // One byte of the blob's last segment, in the pack it shares with good.txt.
  const bytes = Deno.readFileSync(where.file);
  bytes[where.offset + where.length - 20] ^= 0x55;
  Deno.writeFileSync(where.file, bytes);
  const r = await n2s(
    ["pull", "--changeset-id", id, "--target-path", `${tmp.path}/out`, ...args],
    ENV,
  );
  assert.equal(r.code, 1);
  assert.match(r.stderr, /dir\/bad\.txt: .*blob [0-9a-f]{64}/);
  assert.deepEqual(readTree(`${tmp.path}/out`), {
    "good.txt": readTree(`${tmp.path}/src`)["good.txt"],
  });
});

Deno.test("manifest paths that would escape the target are refused", async () => {
  using tmp = tempDir();
  const { store, args } = await freshStore(tmp.path);
  const outside = `${tmp.path}/outside`;
  Deno.mkdirSync(outside);
  try {
    const repo = await store.repository();
    const hash = "0".repeat(64);
    const evil = ["../outside/evil.txt", "/etc/n2s-evil", "a/../../outside/x", "./dot"];
    await writeManifest(repo, {
      id: "01KZZZZZZZZZZZZZZZZZZZZZZZ",
      name: "evil",
      source: "evil",
      client: "test",
      parent: null,
      parent_chain: null,
      created: "2026-01-01T00:00:00.000Z",
      completed: "2026-01-01T00:00:00.000Z",
      files: evil.length + 1,
      bytes: 0,
      info: null,
    }, () => [
      ...evil.map((p) => ({
        path: p,
        action: "write" as const,
        file_hash: hash,
        blob_id: blobIdFor(repo.suite, repo.keys.idKey, p, hash),
        size: 1,
        mtime: 0,
        mode: 0o644,
      })),
      { path: "escape-link", action: "link" as const, target: "/etc" },
    ]);
  } finally {
    await store.close();
  }
  // A fresh index: the pull reads the manifest from the repository.
  const r = await n2s([
    "pull",
    "--changeset-id",
    "01KZZZZZ",
    "--target-path",
    `${tmp.path}/target`,
    "--repo",
    args[1],
    "--index",
    `${tmp.path}/fresh.sqlite`,
  ], ENV);
  assert.equal(r.code, 1);
  for (const p of ["../outside/evil.txt", "/etc/n2s-evil", "a/../../outside/x", "./dot"]) {
    assert.match(r.stderr, new RegExp(`${p.replace(/[.*/]/g, "\\$&")}: refused`));
  }
  assert.deepEqual(readTree(outside), {});
  // A symlink is restored as a link (never followed), pointing wherever it pointed.
  assert.equal(Deno.readLinkSync(`${tmp.path}/target/escape-link`), "/etc");
});

Deno.test("a pull never writes through a symlink already in the target", async () => {
  using tmp = tempDir();
  const { store, args } = await freshStore(tmp.path);
  let id: string;
  try {
    writeTree(`${tmp.path}/src`, { "d/file.txt": "content" });
    id = (await store.push({ client: scanClient({ paths: [`${tmp.path}/src`] }), source: "s" }))
      .changeset!;
  } finally {
    await store.close();
  }
  const outside = `${tmp.path}/outside`;
  Deno.mkdirSync(outside);
  Deno.mkdirSync(`${tmp.path}/target`);
  Deno.symlinkSync(outside, `${tmp.path}/target/d`);
  const r = await n2s([
    "pull",
    "--changeset-id",
    id,
    "--target-path",
    `${tmp.path}/target`,
    ...args,
  ], ENV);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /d\/file\.txt: refused: d is a symlink/);
  assert.deepEqual(readTree(outside), {});
});

Deno.test("a large file rewritten in place between hashing and sealing never becomes a blob", async () => {
  using tmp = tempDir();
  const { store, repo } = await freshStore(tmp.path);
  try {
    const src = `${tmp.path}/src`;
    const size = 3 * 1024 * 1024;
    writeTree(src, { "big.bin": new Uint8Array(size).fill(1) });
    const mtime = Deno.statSync(`${src}/big.bin`).mtime!;
    let opens = 0;
    const client = withOpen(scanClient({ paths: [src] }), (p) => {
      // Second open = the sealing pass: same size, same mtime, other bytes.
      if (++opens === 2) {
        Deno.writeFileSync(`${src}/${p}`, new Uint8Array(size).fill(2));
        Deno.utimeSync(`${src}/${p}`, mtime, mtime);
      }
      return openLocalFile(src, p);
    });
    const r = await store.push({ client, source: "s" });
    assert.deepEqual(r.problems, []);
    assert.ok(opens >= 3, "the file was hashed again after the mismatch");
    assert.equal(storedBlobIds(repo).length, 1, "only the blob of the settled content exists");
    await store.pull(r.changeset!, `${tmp.path}/out`);
    const back = Deno.readFileSync(`${tmp.path}/out/big.bin`);
    assert.ok(back.every((b) => b === 2));
  } finally {
    await store.close();
  }
});
