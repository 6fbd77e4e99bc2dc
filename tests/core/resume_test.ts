// An interrupted push (kill -9) is completed by the next push without sending any blob whose
// upload was already confirmed. Backend puts are counted to prove it.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { LocalBackend } from "../../lib/backends/local.ts";
import { N2S } from "../../lib/n2s.ts";
import { scanClient } from "../../lib/clients/scan.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import { n2sOk } from "../helpers/cli.ts";
import { countingBackend } from "../helpers/backends.ts";

const FIXTURE = new URL("../fixtures/slow_push.ts", import.meta.url).pathname;

function confirmedBlobs(indexPath: string): Set<string> {
  const db = new DatabaseSync(indexPath, { readOnly: true });
  try {
    const rows = db.prepare(
      "SELECT blob_id FROM files WHERE status = 'confirmed' AND action = 'write'",
    ).all() as { blob_id: string }[];
    return new Set(rows.map((r) => `blobs/${r.blob_id.slice(0, 2)}/${r.blob_id}`));
  } catch {
    return new Set();
  } finally {
    db.close();
  }
}

async function killMidPush(repo: string, index: string, src: string): Promise<Set<string>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", FIXTURE, repo, index, src],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const deadline = Date.now() + 60_000;
  let confirmed = new Set<string>();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    confirmed = confirmedBlobs(index);
    if (confirmed.size >= 9) break;
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // it already ended; the assertions below say why
  }
  await child.status;
  await child.stderr.cancel();
  assert.ok(confirmed.size >= 9, "the push never got far enough to be interrupted");
  return confirmedBlobs(index);
}

Deno.test("after kill -9 during a push, the next push completes it without resending a confirmed blob", async () => {
  using tmp = tempDir();
  const { src, repo, index } = await interruptedPush(tmp.path);
  const confirmed = confirmedBlobs(index);
  const counting = countingBackend(new LocalBackend(repo));
  const store = await N2S.open({ repository: repo, index, passphrase: "pw", backend: counting });
  try {
    const r = await store.push({ client: scanClient({ paths: [src] }), source: "resume-test" });
    assert.equal(r.resumed.length, 1);
    assert.equal(r.changeset, null, "nothing changed after the interrupted push");
    const blobPuts = counting.puts.filter((k) => k.startsWith("blobs/"));
    for (const k of blobPuts) assert.ok(!confirmed.has(k), `confirmed blob ${k} was sent again`);
    assert.ok(
      blobPuts.length >= 1 && blobPuts.length <= 60 - confirmed.size,
      `${blobPuts.length} puts`,
    );
    assert.equal(counting.puts.filter((k) => k.startsWith("changesets/")).length, 1);
    const [status] = store.status(r.resumed[0]);
    assert.equal(status.status, "complete");
    assert.equal(status.files, 60);
    await store.pull(r.resumed[0], `${tmp.path}/out`);
    assertSameTree(`${tmp.path}/out`, src);
  } finally {
    await store.close();
  }
});

Deno.test("after kill -9 during a push, n2s push --resume completes it and rewrites no confirmed blob", async () => {
  using tmp = tempDir();
  const { src, repo, index } = await interruptedPush(tmp.path);
  const confirmed = confirmedBlobs(index);
  // A blob sent again would be a new file (temp file renamed over the old one): a new inode.
  const inodes = new Map([...confirmed].map((k) => [k, Deno.statSync(`${repo}/${k}`).ino]));
  const env = { N2S_PASSPHRASE: "pw" };
  const out = await n2sOk(["push", "--resume", "--repo", repo, "--index", index, "--json"], env);
  const r = JSON.parse(out);
  assert.equal(r.resumed.length, 1);
  for (const [k, ino] of inodes) {
    assert.equal(Deno.statSync(`${repo}/${k}`).ino, ino, `${k} rewritten`);
  }
  const status = JSON.parse(
    await n2sOk(["status", r.resumed[0], "--repo", repo, "--index", index, "--json"], env),
  );
  assert.equal(status[0].status, "complete");
  await n2sOk([
    "pull",
    "--changeset-id",
    r.resumed[0],
    "--target-path",
    `${tmp.path}/out`,
    "--repo",
    repo,
    "--index",
    index,
  ], env);
  assertSameTree(`${tmp.path}/out`, src);
});

async function interruptedPush(dir: string): Promise<{ src: string; repo: string; index: string }> {
  const src = `${dir}/src`;
  const repo = `${dir}/repo`;
  const index = `${dir}/index.sqlite`;
  const files: Record<string, Uint8Array> = {};
  for (let i = 0; i < 60; i++) files[`d${i % 4}/f${i}.bin`] = seededBytes(20_000 + i, i + 1);
  writeTree(src, files);
  await n2sOk(["init", "--repo", repo, "--index", index], { N2S_PASSPHRASE: "pw" });
  const confirmed = await killMidPush(repo, index, src);
  assert.ok(confirmed.size < 60, "the push finished before it was killed");
  return { src, repo, index };
}
