// A prune run with another index cannot know what this index's interrupted push stored, and
// deletes it as unreferenced. The mark prune writes before deleting makes this index look again:
// the entries that trusted a deleted object go back to pending, and push --resume stores them
// again instead of completing a changeset whose manifest names objects that are gone.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, tempDir } from "../helpers/fs.ts";
import {
  changeDay,
  checkClean,
  copyIndex,
  dayTime,
  ENV,
  pulled,
  pushDays,
  setup,
  SOURCE,
  stored,
} from "./helpers.ts";

Deno.test("objects of an interrupted push that a prune with another index deleted are stored again by push --resume", async () => {
  using t = tempDir("n2s-prune-elsewhere-");
  const e = await setup(t.path);
  await pushDays(e, 3);
  // The second machine's index saw the same pushes.
  const other = [...e.args.slice(0, 2), "--index", `${t.path}/other.sqlite`];
  copyIndex(e.index, `${t.path}/other.sqlite`);
  changeDay(e.src, 3);
  const tree = readTree(e.src);
  const killed = await n2s(["push", "--scan", e.src, "--source", SOURCE, ...e.args], {
    ...ENV,
    N2S_TEST_NOW: dayTime(3),
    N2S_CRASH_AT: "confirmed:1",
  });
  assert.notEqual(killed.code, 0, "the push was killed after a confirmation");
  const before = stored(e.repo);
  const pruned = JSON.parse(await n2sOk(["prune", "--json", ...other], ENV));
  assert.ok(
    pruned.deletedPacks + pruned.deletedBlobs > 0,
    `the other index's prune deleted the interrupted push's objects: ${JSON.stringify(pruned)}`,
  );
  assert.ok(stored(e.repo).bytes < before.bytes);
  const resumed = JSON.parse(
    await n2sOk(["push", "--resume", "--source", SOURCE, "--json", ...e.args], ENV),
  );
  assert.equal(resumed.resumed.length, 1, JSON.stringify(resumed));
  const findings = await checkClean(e, "after the resume");
  assert.deepEqual(findings.filter((f) => f.severity !== "unused"), []);
  assert.deepEqual(await pulled(e, resumed.resumed[0]), tree);
  assert.deepEqual(await pulled(e, resumed.resumed[0], other), tree, "and through the other index");
});
