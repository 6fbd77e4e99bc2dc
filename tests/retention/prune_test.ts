// prune on its own: a dry run changes nothing and announces what the prune does; --max-unused
// leaves no pack with more unused bytes than it allows; what an interrupted push stored survives
// a prune, so that push --resume still completes it.

import assert from "node:assert/strict";
import { N2S } from "../../lib/n2s.ts";
import { listManifests, readManifest } from "../../lib/repository/manifest.ts";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, tempDir } from "../helpers/fs.ts";
import { packFiles } from "../helpers/repo.ts";
import {
  blobsOf,
  changeDay,
  checkClean,
  dayTime,
  ENV,
  type Env,
  pulled,
  pushDays,
  setup,
  SOURCE,
  stored,
} from "./helpers.ts";

/** Pack id → bytes of its live entries (frames and preamble included), from the manifests. */
async function liveBytes(e: Env): Promise<Map<string, number>> {
  const store = await N2S.open({
    repository: e.repo,
    index: e.index,
    passphrase: ENV.N2S_PASSPHRASE,
  });
  try {
    const repo = await store.repository();
    const places = new Map<string, Set<string>>();
    const bytes = new Map<string, number>();
    for (const id of await listManifests(repo)) {
      for (const entry of (await readManifest(repo, id)).entries) {
        if (entry.pack === undefined) continue;
        const seen = places.get(entry.pack) ?? new Set();
        if (seen.has(`${entry.offset}`)) continue;
        seen.add(`${entry.offset}`);
        places.set(entry.pack, seen);
        bytes.set(entry.pack, (bytes.get(entry.pack) ?? 8) + 40 + entry.length!);
      }
    }
    return bytes;
  } finally {
    await store.close();
  }
}

Deno.test("prune --dry-run changes nothing and says what prune then does; --max-unused 5% leaves no pack more than 5% unused", async () => {
  using t = tempDir("n2s-prune-");
  const e = await setup(t.path);
  const { ids, trees } = await pushDays(e, 12);
  await n2sOk(["forget", "--keep-last", "2", ...e.args], ENV);
  const before = stored(e.repo);
  const dry = JSON.parse(await n2sOk(["prune", "--dry-run", "--json", ...e.args], ENV));
  assert.deepEqual(stored(e.repo), before, "a dry run deletes and writes nothing");
  const r = JSON.parse(await n2sOk(["prune", "--json", ...e.args], ENV));
  for (const k of ["deletedBlobs", "deletedPacks", "repackedPacks", "copiedBlobs", "bytesBefore"]) {
    assert.equal(r[k], dry[k], k);
  }
  assert.ok(r.repackedPacks > 0 && r.deletedBlobs > 0, JSON.stringify(r));
  const live = await liveBytes(e);
  for (const f of packFiles(e.repo)) {
    const id = f.slice(f.lastIndexOf("/") + 1);
    const size = Deno.statSync(f).size;
    assert.ok(live.has(id), `pack ${id} holds something live`);
    assert.ok(size - live.get(id)! <= 0.05 * size, `pack ${id}: ${live.get(id)} of ${size} live`);
  }
  // Within that tolerance some forgotten blobs may stay, but never more than the kept states'.
  assert.ok(stored(e.repo).blobs.size >= blobsOf([trees[10], trees[11]]).size);
  assert.deepEqual(await checkClean(e, "after prune"), []);
  assert.deepEqual(await pulled(e, ids[10]), trees[10]);
  assert.deepEqual(await pulled(e, ids[11]), trees[11]);
  // A second prune finds nothing more to do.
  const again = JSON.parse(await n2sOk(["prune", "--json", ...e.args], ENV));
  assert.equal(again.deletedBlobs + again.deletedPacks + again.repackedPacks, 0);
});

Deno.test("what an interrupted push stored survives forget --prune, and push --resume completes it", async () => {
  using t = tempDir("n2s-prune-resume-");
  const e = await setup(t.path);
  await pushDays(e, 4);
  changeDay(e.src, 4);
  const tree = readTree(e.src);
  const killed = await n2s(["push", "--scan", e.src, "--source", SOURCE, ...e.args], {
    ...ENV,
    N2S_TEST_NOW: dayTime(4),
    N2S_CRASH_AT: "confirmed:1",
  });
  assert.notEqual(killed.code, 0, "the push was killed");
  await n2sOk(["forget", "--keep-last", "1", "--prune", "--max-unused", "0%", ...e.args], ENV);
  const resumed = JSON.parse(
    await n2sOk(["push", "--resume", "--source", SOURCE, "--json", ...e.args], ENV),
  );
  assert.equal(resumed.resumed.length, 1, JSON.stringify(resumed));
  const findings = await checkClean(e, "after the resume");
  assert.deepEqual(findings.filter((f) => f.severity !== "unused"), []);
  assert.deepEqual(await pulled(e, resumed.resumed[0]), tree);
});
