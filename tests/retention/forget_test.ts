// forget and prune on a month of daily pushes: `forget --keep-daily 7 --keep-weekly 4` keeps
// exactly the changesets restic's policy keeps, every kept changeset restores the source as it
// was that day (from the index and from the manifests alone), prune leaves exactly the blobs
// the kept states need, and check --read-data finds nothing wrong or unused.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import {
  blobsOf,
  changeDay,
  checkClean,
  copyIndex,
  DAY0,
  ENV,
  type Env,
  pulled,
  pushDay,
  pushDays,
  setup,
  stored,
} from "./helpers.ts";
import { readTree, tempDir } from "../helpers/fs.ts";

/**
 * Days 0…29 run from Monday 5 January to Tuesday 3 February 2026. The 7 newest days are 23…29
 * (28 January to 3 February); the newest changeset of each of the 4 newest ISO weeks is day 29
 * (week 6), day 27 (Sunday 1 February, week 5), day 20 (Sunday 25 January) and day 13 (Sunday
 * 18 January).
 */
const KEPT_DAYS = [13, 20, 23, 24, 25, 26, 27, 28, 29];

interface Decision {
  id: string;
  keep: boolean;
  reasons: string[];
}

async function forgetJson(e: Env, ...flags: string[]) {
  return JSON.parse(await n2sOk(["forget", "--json", ...flags, ...e.args], ENV));
}

async function logOf(e: Env): Promise<{ id: string; parent: string | null; status: string }[]> {
  return JSON.parse(await n2sOk(["log", "--json", ...e.args], ENV));
}

Deno.test("forget --keep-daily 7 --keep-weekly 4 over 30 daily pushes keeps what restic keeps, each kept state restores exactly, and prune leaves only what they need", async () => {
  using t = tempDir("n2s-forget-");
  const e = await setup(t.path);
  const { ids, trees } = await pushDays(e, 30);
  const before = stored(e.repo);
  assert.equal(before.copies, blobsOf(trees).size, "every version stored once before forget");

  // A dry run decides and changes nothing.
  const dry = await forgetJson(e, "--keep-daily", "7", "--keep-weekly", "4", "--dry-run");
  assert.deepEqual(
    dry.decisions.filter((d: Decision) => d.keep).map((d: Decision) => d.id).sort(),
    KEPT_DAYS.map((d) => ids[d]),
  );
  assert.equal((await logOf(e)).length, 30);

  const r = await forgetJson(e, "--keep-daily", "7", "--keep-weekly", "4");
  const kept = KEPT_DAYS.map((d) => ids[d]);
  assert.deepEqual(
    r.decisions.filter((d: Decision) => d.keep).map((d: Decision) => d.id).sort(),
    kept,
  );
  const reasons = new Map(r.decisions.map((d: Decision) => [d.id, d.reasons.join(",")]));
  assert.equal(reasons.get(ids[29]), "newest,daily,weekly");
  assert.equal(reasons.get(ids[27]), "daily,weekly");
  assert.equal(reasons.get(ids[26]), "daily");
  assert.equal(reasons.get(ids[13]), "weekly");
  assert.equal(r.forgotten.length, 21);
  // Day 13's parent (12), day 20's (19) and day 23's (22) were forgotten: those are rewritten.
  assert.deepEqual(r.rewritten.sort(), [ids[13], ids[20], ids[23]]);

  // The index holds the kept changesets only, each linked to the previous kept one.
  const log = await logOf(e);
  assert.deepEqual(log.map((c) => c.id), kept);
  assert.deepEqual(log.map((c) => c.parent), [null, ...kept.slice(0, -1)]);

  // Storage is untouched until prune: the forgotten versions are unused, nothing is damaged.
  assert.equal(stored(e.repo).copies, before.copies);
  const unused = await checkClean(e, "after forget");
  assert.ok(unused.every((f) => f.severity === "unused"), JSON.stringify(unused));
  assert.deepEqual(
    (await forgetJson(e, "--keep-daily", "7", "--keep-weekly", "4")).forgotten,
    [],
    "a second forget with the same policy forgets nothing",
  );

  // Prune with no tolerance: exactly the blobs of the kept states remain, once each, in packs
  // that hold nothing else, and the bytes are those blobs' (with their frames and preambles).
  const p = JSON.parse(await n2sOk(["prune", "--max-unused", "0%", "--json", ...e.args], ENV));
  const after = stored(e.repo);
  const live = blobsOf(KEPT_DAYS.map((d) => trees[d]));
  assert.equal(after.copies, live.size, "one copy of each blob the kept states need");
  assert.equal(after.blobs.size, live.size);
  let expectBytes = 8 * after.packs;
  for (const [id, size] of after.blobs) {
    assert.equal(size, before.blobs.get(id), `blob ${id} was stored before, with the same size`);
    expectBytes += after.packed.has(id) ? 40 + size : size;
  }
  assert.equal(after.bytes, expectBytes);
  assert.equal(p.bytesAfter, after.bytes);
  assert.equal(p.bytesBefore, before.bytes);
  assert.ok(after.bytes < before.bytes);
  assert.equal(p.deletedBlobs + p.deletedPacks + p.repackedPacks > 0, true);

  assert.deepEqual(await checkClean(e, "after prune"), [], "nothing damaged, nothing unused");
  for (const [i, d] of KEPT_DAYS.entries()) {
    assert.deepEqual(await pulled(e, kept[i]), trees[d], `day ${d} from the index`);
  }
  // A machine without the index restores from the manifests, verified link by link.
  const fresh = ["--repo", e.repo, "--index", `${t.path}/fresh.sqlite`];
  for (const d of [13, 23, 29]) {
    assert.deepEqual(await pulled(e, ids[d], fresh), trees[d], `day ${d} from the manifests`);
  }

  // Pushing goes on: day 30 builds on day 29 and stores what prune deleted again when needed.
  changeDay(e.src, 30);
  const id30 = await pushDay(e, 30);
  assert.equal((await logOf(e)).at(-1)!.parent, ids[29]);
  assert.deepEqual(await pulled(e, id30), readTree(e.src));
  assert.deepEqual(await checkClean(e, "after the next push"), []);
});

Deno.test("another index learns of a forget and prune at its next push: it drops what was forgotten, takes the rewritten manifests, and never points at a deleted blob", async () => {
  using t = tempDir("n2s-forget-other-");
  const e = await setup(t.path);
  const { ids, trees } = await pushDays(e, 8);
  const other = `${t.path}/other.sqlite`;
  copyIndex(e.index, other);
  const otherArgs = ["--repo", e.repo, "--index", other];
  await n2sOk(["forget", "--keep-last", "2", "--prune", "--max-unused", "0%", ...e.args], ENV);

  // The same content with a new mtime is hashed again and found stored: where it is now.
  changeDay(e.src, 8);
  const t0 = new Date(DAY0);
  Deno.utimeSync(`${e.src}/static/s0.bin`, t0, t0);
  const r = JSON.parse(
    await n2sOk(["push", "--scan", e.src, "--source", "daily", "--json", ...otherArgs], {
      ...ENV,
      N2S_TEST_NOW: new Date(DAY0 + 8 * 86_400_000).toISOString(),
    }),
  );
  assert.ok(r.present > 0, JSON.stringify(r));
  const log = JSON.parse(await n2sOk(["log", "--json", ...otherArgs], ENV));
  assert.deepEqual(log.map((c: { id: string }) => c.id), [ids[6], ids[7], r.changeset]);
  const checked = await n2s(["check", "--read-data", "--json", ...otherArgs], ENV);
  assert.equal(checked.code, 0, checked.stdout);
  assert.deepEqual(JSON.parse(checked.stdout).findings, []);
  assert.deepEqual(await pulled(e, ids[6], otherArgs), trees[6]);
  assert.deepEqual(await pulled(e, r.changeset, otherArgs), readTree(e.src));
});

Deno.test("another index learns of a prune that moved blobs into new packs at its next push, from the rewrite mark", async () => {
  using t = tempDir("n2s-prune-other-");
  const e = await setup(t.path);
  const { ids, trees } = await pushDays(e, 8);
  await n2sOk(["forget", "--keep-last", "2", ...e.args], ENV);
  const other = `${t.path}/other.sqlite`;
  copyIndex(e.index, other);
  const otherArgs = ["--repo", e.repo, "--index", other];
  const p = JSON.parse(await n2sOk(["prune", "--max-unused", "0%", "--json", ...e.args], ENV));
  assert.ok(p.rewrittenManifests > 0, JSON.stringify(p));

  changeDay(e.src, 8);
  const t0 = new Date(DAY0);
  Deno.utimeSync(`${e.src}/static/s0.bin`, t0, t0);
  const r = JSON.parse(
    await n2sOk(["push", "--scan", e.src, "--source", "daily", "--json", ...otherArgs], {
      ...ENV,
      N2S_TEST_NOW: new Date(DAY0 + 8 * 86_400_000).toISOString(),
    }),
  );
  assert.ok(r.present > 0, JSON.stringify(r));
  const checked = await n2s(["check", "--read-data", "--json", ...otherArgs], ENV);
  assert.equal(checked.code, 0, checked.stdout);
  assert.deepEqual(JSON.parse(checked.stdout).findings, []);
  assert.deepEqual(await pulled(e, ids[7], otherArgs), trees[7]);
  assert.deepEqual(await pulled(e, r.changeset, otherArgs), readTree(e.src));
});

Deno.test("the policy applies to each source on its own, and --source limits forget to one", async () => {
  using t = tempDir("n2s-forget-sources-");
  const e = await setup(t.path);
  const ids: Record<string, string[]> = { a: [], b: [] };
  for (let d = 0; d < 3; d++) {
    for (const s of ["a", "b"]) {
      const dir = `${t.path}/${s}`;
      Deno.mkdirSync(dir, { recursive: true });
      Deno.writeTextFileSync(`${dir}/f${d}.txt`, `${s} ${d}\n`);
      const r = JSON.parse(
        await n2sOk(["push", "--scan", dir, "--source", s, "--json", ...e.args], {
          ...ENV,
          N2S_TEST_NOW: new Date(DAY0 + d * 86_400_000).toISOString(),
        }),
      );
      ids[s].push(r.changeset);
    }
  }
  const r = await forgetJson(e, "--keep-last", "1", "--source", "a");
  assert.deepEqual(r.forgotten.sort(), ids.a.slice(0, 2));
  const all = await forgetJson(e, "--keep-last", "1", "--dry-run");
  assert.deepEqual(all.forgotten.sort(), ids.b.slice(0, 2));
  const log = await logOf(e);
  assert.deepEqual(log.map((c) => c.id).sort(), [ids.a[2], ...ids.b].sort());
  assert.deepEqual(await pulled(e, ids.a[2]), {
    "f0.txt": "4:" + fnv("a 0\n"),
    "f1.txt": "4:" + fnv("a 1\n"),
    "f2.txt": "4:" + fnv("a 2\n"),
  });
});

/** The FNV-1a hash readTree uses, of a string's bytes. */
function fnv(text: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16);
}

Deno.test("forget without a rule, with a bad count or duration, or --max-unused without --prune is a usage error", async () => {
  using t = tempDir("n2s-forget-usage-");
  const e = await setup(t.path);
  for (
    const flags of [
      [],
      ["--keep-daily", "x"],
      ["--keep-within", "3w"],
      ["--keep-last", "1", "--max-unused", "5%"],
      ["--keep-last", "1", "--prune", "--max-unused", "150%"],
    ]
  ) {
    const r = await n2s(["forget", ...flags, ...e.args], ENV);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n")[0].startsWith("n2s forget: "), true, r.stderr);
  }
});

Deno.test("an index rebuilt after forget --prune still trusts the blobs that forgotten changesets first stored and kept ones carry", async () => {
  using t = tempDir("n2s-forget-recover-");
  const e = await setup(t.path);
  const { ids, trees } = await pushDays(e, 6);
  await n2sOk(["forget", "--keep-last", "2", "--prune", ...e.args], ENV);
  const rebuilt = ["--repo", e.repo, "--index", `${t.path}/rebuilt.sqlite`];
  await n2sOk(["recover", "index", ...rebuilt], ENV);
  changeDay(e.src, 6);
  const t0 = new Date(DAY0);
  Deno.utimeSync(`${e.src}/static/s0.bin`, t0, t0);
  const before = stored(e.repo).copies;
  const r = JSON.parse(
    await n2sOk(["push", "--scan", e.src, "--source", "daily", "--json", ...rebuilt], {
      ...ENV,
      N2S_TEST_NOW: new Date(DAY0 + 6 * 86_400_000).toISOString(),
    }),
  );
  // static/s0.bin was first stored by day 0, which is forgotten: it is still found stored.
  assert.ok(r.present >= 1, JSON.stringify(r));
  assert.equal(stored(e.repo).copies, before + r.uploaded);
  assert.deepEqual(await checkClean(e, "after the push"), []);
  assert.deepEqual(await pulled(e, ids[4], rebuilt), trees[4]);
  assert.deepEqual(await pulled(e, r.changeset, rebuilt), readTree(e.src));
});
