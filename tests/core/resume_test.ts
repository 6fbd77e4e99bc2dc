// An interrupted push (kill -9) is completed by the next push without sending any blob whose
// upload was already confirmed: only the blobs of unconfirmed packs are sealed again. Backend
// puts are counted to prove it.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { N2S } from "../../lib/n2s.ts";
import { scanClient } from "../../lib/clients/scan.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import { n2sOk } from "../helpers/cli.ts";
import { countingBackend } from "../helpers/backends.ts";

const FIXTURE = new URL("../fixtures/slow_push.ts", import.meta.url).pathname;

/** Confirmed blobs of the index: blob id → the pack holding it (null when loose). */
function confirmedBlobs(indexPath: string): Map<string, string | null> {
  const db = new DatabaseSync(indexPath, { readOnly: true });
  try {
    const rows = db.prepare(
      "SELECT blob_id, pack FROM files WHERE status = 'confirmed' AND action = 'write'",
    ).all() as { blob_id: string; pack: string | null }[];
    return new Map(rows.map((r) => [r.blob_id, r.pack]));
  } catch {
    return new Map();
  } finally {
    db.close();
  }
}

/** The blobs the index places in a pack. */
function blobsOfPack(indexPath: string, pack: string): string[] {
  const db = new DatabaseSync(indexPath, { readOnly: true });
  try {
    return (db.prepare("SELECT DISTINCT blob_id FROM files WHERE pack = ?").all(pack) as {
      blob_id: string;
    }[]).map((r) => r.blob_id);
  } finally {
    db.close();
  }
}

async function killMidPush(
  repo: string,
  index: string,
  src: string,
): Promise<Map<string, string | null>> {
  // The push stops for good before its 13th pack (the fixture), so it cannot finish before it
  // is killed; the test waits until the packs before it are confirmed, for a minute at most.
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", FIXTURE, repo, index, src],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let ended = false;
  child.status.then(() => ended = true);
  const deadline = Date.now() + 60_000;
  let confirmed = new Map<string, string | null>();
  while (Date.now() < deadline && !ended) {
    confirmed = confirmedBlobs(index);
    if (confirmed.size >= 9) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // it already ended; the assertions below say why
  }
  const status = await child.status;
  const stderr = new TextDecoder().decode(
    await new Response(child.stderr).arrayBuffer(),
  );
  await child.stdin.close().catch(() => {});
  assert.equal(status.signal, "SIGKILL", `the push ended by itself:\n${stderr}`);
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
    assert.equal(counting.puts.filter((k) => k.startsWith("blobs/")).length, 0, "no loose blob");
    const packPuts = counting.puts.filter((k) => k.startsWith("packs/"));
    const sent = packPuts.flatMap((k) => blobsOfPack(index, k.slice(k.lastIndexOf("/") + 1)));
    for (const b of sent) assert.ok(!confirmed.has(b), `confirmed blob ${b} was sent again`);
    assert.equal(sent.length, 60 - confirmed.size, "every unconfirmed blob was sent once");
    assert.equal(counting.puts.filter((k) => k.startsWith("changesets/")).length, 1);
    const [status] = store.status(r.resumed[0]);
    assert.equal(status.status, "complete");
    assert.equal(status.files, 64, "60 files and their 4 directories");
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
  // The packs of confirmed blobs are never written again: same files, same inodes, and no
  // confirmed blob in any new pack.
  const packs = new Set([...confirmed.values()].filter((p) => p !== null) as string[]);
  const key = (p: string) => `packs/${p.slice(0, 2)}/${p}`;
  const inodes = new Map([...packs].map((p) => [key(p), Deno.statSync(`${repo}/${key(p)}`).ino]));
  const env = { N2S_PASSPHRASE: "pw" };
  const out = await n2sOk(["push", "--resume", "--repo", repo, "--index", index, "--json"], env);
  const r = JSON.parse(out);
  assert.equal(r.resumed.length, 1);
  for (const [k, ino] of inodes) {
    assert.equal(Deno.statSync(`${repo}/${k}`).ino, ino, `${k} rewritten`);
  }
  const after = confirmedBlobs(index);
  for (const [b, pack] of confirmed) assert.equal(after.get(b), pack, `${b} moved`);
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
  // Packs of about three files each, so that the push stores many and is killed between them.
  await n2sOk(["init", "--repo", repo, "--index", index, "--pack-size", "64KiB"], {
    N2S_PASSPHRASE: "pw",
  });
  const confirmed = await killMidPush(repo, index, src);
  assert.ok(confirmed.size < 60, "the push finished before it was killed");
  return { src, repo, index };
}
