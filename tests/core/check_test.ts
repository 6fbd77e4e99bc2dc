// `n2s check` on real repositories damaged on purpose: a deleted loose blob, a flipped byte in
// a pack, a lost manifest in the middle of a chain, temporary objects, a truncated manifest.
// Each finding names the path, changeset and object; damage exits 1; --repair makes the next
// push store lost content again; a pull of a damaged changeset exits 1 and says what it lacks.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";
import { blobBytes } from "../helpers/repo.ts";
import { N2S } from "../../lib/n2s.ts";
import { changesetKey } from "../../lib/repository/layout.ts";
import type { CheckFinding } from "../../lib/check.ts";

const ENV = { N2S_PASSPHRASE: "pw" };

interface Env {
  dir: string;
  repo: string;
  index: string;
  args: string[];
}

async function setup(dir: string): Promise<Env> {
  const repo = `${dir}/repo`;
  const index = `${dir}/index.sqlite`;
  const args = ["--repo", repo, "--index", index];
  await n2sOk(["init", ...args], ENV);
  return { dir, repo, index, args };
}

async function push(e: Env, src: string): Promise<{ changeset: string; uploaded: number }> {
  return JSON.parse(await n2sOk(["push", src, "--json", "--source", "s", ...e.args], ENV));
}

async function check(e: Env, ...flags: string[]) {
  const r = await n2s(["check", "--json", ...flags, ...e.args], ENV);
  assert.ok(r.code === 0 || r.code === 1, `check exited ${r.code}: ${r.stderr}`);
  return { code: r.code, result: JSON.parse(r.stdout), stderr: r.stderr };
}

/** The row of one path in a changeset, from the index. */
async function rowOf(e: Env, changeset: string, path: string) {
  const s = await N2S.open({ repository: e.repo, index: e.index, passphrase: "pw" });
  try {
    return s.index.filesOf(changeset).find((f) => f.path === path)!;
  } finally {
    await s.close();
  }
}

function damageOf(result: { findings: CheckFinding[] }): CheckFinding[] {
  return result.findings.filter((f) => f.severity === "damage");
}

Deno.test("a clean repository checks clean, with and without reading every blob", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  writeTree(`${t.path}/src`, {
    "big.bin": seededBytes(3 << 20, 1),
    "a/small.txt": "small\n",
    "a/b/other.txt": "other\n",
  });
  await push(e, `${t.path}/src`);
  writeTree(`${t.path}/src`, { "a/small.txt": "changed\n" });
  await push(e, `${t.path}/src`);
  const plain = await check(e);
  assert.equal(plain.code, 0, JSON.stringify(plain.result.findings));
  assert.equal(plain.result.manifests, 2);
  assert.equal(plain.result.readObjects, 0);
  const full = await check(e, "--read-data");
  assert.equal(full.code, 0, JSON.stringify(full.result.findings));
  assert.ok(full.result.readObjects >= 2, "the loose blob and the packs were read");
  assert.ok(full.result.readBytes >= 3 << 20);
  // A subset reads some objects, never more than all of them.
  const part = await check(e, "--read-data-subset", "1/1");
  assert.equal(part.result.readObjects, full.result.readObjects);
  const bad = await n2s(["check", "--read-data-subset", "3/2", ...e.args], ENV);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /K\/M/);
});

Deno.test("a deleted blob is found, named, repaired by the next push, and fails its pull", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  writeTree(`${t.path}/src`, { "big.bin": seededBytes(3 << 20, 2), "keep.txt": "keep\n" });
  const first = await push(e, `${t.path}/src`);
  const row = await rowOf(e, first.changeset, "big.bin");
  assert.equal(row.pack, null, "a 3 MiB incompressible file is a loose blob");
  Deno.removeSync(blobBytes(e.repo, row).file);

  const c = await check(e);
  assert.equal(c.code, 1);
  const d = damageOf(c.result);
  assert.ok(
    d.some((f: CheckFinding) =>
      f.path === "big.bin" && f.changeset === first.changeset &&
      f.object === `blobs/${row.blob_id!.slice(0, 2)}/${row.blob_id}`
    ),
    JSON.stringify(d),
  );
  assert.deepEqual(
    c.result.damagedChangesets.map((x: { changeset: string; paths: string[] }) => [
      x.changeset,
      x.paths,
    ]),
    [[first.changeset, ["big.bin"]]],
  );

  // The pull of that changeset restores the rest and exits 1 naming the file.
  const out = `${t.path}/out`;
  const p = await n2s([
    "pull",
    "--changeset-id",
    first.changeset,
    "--target-path",
    out,
    ...e.args,
  ], ENV);
  assert.equal(p.code, 1);
  assert.match(p.stderr, /big\.bin/);
  assert.deepEqual(Object.keys(readTree(out)), ["keep.txt"]);

  // Without repair the next push trusts the index and stores nothing: check says so.
  const again = await n2s(["push", `${t.path}/src`, "--json", "--source", "s", ...e.args], ENV);
  assert.equal(JSON.parse(again.stdout).changeset, null);

  // After repair, the next push of the unchanged source stores the file again, and the loose
  // blob is back at its key: the old changeset restores in full too.
  const r = await check(e, "--repair");
  assert.equal(r.result.repaired.lostBlobs, 1);
  const healed = await push(e, `${t.path}/src`);
  assert.equal(healed.uploaded, 1);
  const after = await check(e, "--read-data");
  assert.equal(after.code, 0, JSON.stringify(after.result.findings));
  const out2 = `${t.path}/out2`;
  await n2sOk(
    ["pull", "--changeset-id", first.changeset, "--target-path", out2, ...e.args],
    ENV,
  );
  assert.deepEqual(readTree(out2), readTree(`${t.path}/src`));
});

Deno.test("a flipped byte in a pack is found only by reading, and repair stores it again", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  const files: Record<string, string> = {};
  for (let i = 0; i < 30; i++) files[`d/f${i}.txt`] = `file ${i}\n`.repeat(50 + i);
  writeTree(`${t.path}/src`, files);
  const first = await push(e, `${t.path}/src`);
  const row = await rowOf(e, first.changeset, "d/f7.txt");
  assert.ok(row.pack, "small files are packed");
  const where = blobBytes(e.repo, row);
  const bytes = Deno.readFileSync(where.file);
  bytes[where.offset + where.length - 20] ^= 0x40;
  Deno.writeFileSync(where.file, bytes);

  const plain = await check(e);
  assert.equal(plain.code, 0, "sizes and presence are intact; only reading finds it");
  const full = await check(e, "--read-data");
  assert.equal(full.code, 1);
  const d = damageOf(full.result);
  assert.equal(d.length, 1, JSON.stringify(d));
  assert.equal(d[0].path, "d/f7.txt");
  assert.equal(d[0].changeset, first.changeset);
  assert.equal(d[0].object, `packs/${row.pack!.slice(0, 2)}/${row.pack}`);
  assert.match(d[0].message, /damaged/);

  await check(e, "--read-data", "--repair");
  const healed = await push(e, `${t.path}/src`);
  assert.equal(healed.uploaded, 1, "only the damaged file is stored again");
  const out = `${t.path}/out`;
  await n2sOk(["pull", "--changeset-id", healed.changeset, "--target-path", out, ...e.args], ENV);
  assert.deepEqual(readTree(out), readTree(`${t.path}/src`));
  // The first changeset still points at the damaged copy: check keeps saying so.
  const still = await check(e, "--read-data");
  assert.deepEqual(
    still.result.damagedChangesets.map((x: { changeset: string }) => x.changeset),
    [first.changeset],
  );
});

Deno.test("a lost manifest in the middle of a chain: check names the hole, a pull exits 1", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  const src = `${t.path}/src`;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const files: Record<string, string> = {};
    for (let k = 0; k < 5; k++) files[`gen${i}/f${k}.txt`] = `generation ${i} file ${k}\n`;
    writeTree(src, files);
    ids.push((await push(e, src)).changeset);
  }
  Deno.removeSync(`${e.repo}/${changesetKey(ids[1])}`);
  const c = await check(e);
  assert.equal(c.code, 1);
  assert.ok(
    damageOf(c.result).some((f: CheckFinding) =>
      f.kind === "chain" && f.changeset === ids[2] && f.message.includes(ids[1])
    ),
  );
  assert.ok(
    damageOf(c.result).some((f: CheckFinding) => f.kind === "index" && f.changeset === ids[1]),
    "the index knows a complete changeset whose manifest is gone",
  );

  // A fresh index rebuilt from the repository; the pull of the last changeset restores what
  // the chain still holds (generations 0 and 2), names the hole, and exits 1.
  const fresh = `${t.path}/fresh.sqlite`;
  await n2sOk(["recover", "index", "--repo", e.repo, "--index", fresh], ENV);
  for (const ix of [fresh, `${t.path}/none.sqlite`]) {
    const out = `${t.path}/out-${ix.length}`;
    const p = await n2s([
      "pull",
      "--changeset-id",
      ids[2],
      "--target-path",
      out,
      "--repo",
      e.repo,
      "--index",
      ix,
    ], ENV);
    assert.equal(p.code, 1, p.stderr);
    assert.ok(p.stderr.includes(ids[1]), p.stderr);
    const got = Object.keys(readTree(out)).sort();
    assert.equal(got.filter((x) => x.startsWith("gen0/")).length, 5, got.join(" "));
    assert.equal(got.filter((x) => x.startsWith("gen2/")).length, 5, got.join(" "));
    assert.equal(got.filter((x) => x.startsWith("gen1/")).length, 0);
  }
});

Deno.test("temporary objects are reported, and repair deletes only old ones; strangers are noted", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  writeTree(`${t.path}/src`, { "a.txt": "a\n" });
  await push(e, `${t.path}/src`);
  const old = `${e.repo}/packs/ab/${"ab".repeat(16)}.n2s-tmp-00000000`;
  const young = `${e.repo}/blobs/cd/${"cd".repeat(32)}.n2s-tmp-11111111`;
  for (const f of [old, young]) {
    Deno.mkdirSync(f.slice(0, f.lastIndexOf("/")), { recursive: true });
    Deno.writeFileSync(f, new Uint8Array(1000));
  }
  const twoHours = new Date(Date.now() - 2 * 3600_000);
  Deno.utimeSync(old, twoHours, twoHours);
  Deno.writeTextFileSync(`${e.repo}/notes.txt`, "someone else's file\n");

  const c = await check(e);
  assert.equal(c.code, 0, "leftovers are not damage");
  const kinds = c.result.findings.map((f: CheckFinding) => `${f.kind} ${f.object}`).sort();
  assert.ok(kinds.includes(`temporary packs/ab/${"ab".repeat(16)}.n2s-tmp-00000000`), kinds);
  assert.ok(kinds.includes(`temporary blobs/cd/${"cd".repeat(32)}.n2s-tmp-11111111`), kinds);
  assert.ok(kinds.includes("unknown notes.txt"), kinds);

  const r = await check(e, "--repair");
  assert.equal(r.result.repaired.temporariesDeleted, 1);
  assert.throws(() => Deno.statSync(old), Deno.errors.NotFound);
  assert.ok(Deno.statSync(young).isFile, "a temporary object less than an hour old may be live");
  assert.ok(Deno.statSync(`${e.repo}/notes.txt`).isFile, "check never deletes what is not its own");
});

Deno.test("a truncated manifest is damage, named by changeset and object", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  writeTree(`${t.path}/src`, { "a.txt": "a\n" });
  const { changeset } = await push(e, `${t.path}/src`);
  const m = `${e.repo}/${changesetKey(changeset)}`;
  const bytes = Deno.readFileSync(m);
  Deno.writeFileSync(m, bytes.subarray(0, bytes.length - 10));
  const c = await check(e);
  assert.equal(c.code, 1);
  const d = damageOf(c.result);
  assert.ok(
    d.some((f: CheckFinding) => f.kind === "manifest" && f.object === `changesets/${changeset}`),
    JSON.stringify(d),
  );
  // Text output: one line per finding, and a summary.
  const text = await n2s(["check", ...e.args], ENV);
  assert.equal(text.code, 1);
  assert.match(text.stderr, new RegExp(`damage: changeset ${changeset} cannot be read`));
  assert.match(text.stdout, /problems found/);
});

Deno.test("check --repair runs alone: beside a push it waits, or with --no-wait fails naming it", async () => {
  using t = tempDir();
  const e = await setup(t.path);
  writeTree(`${t.path}/src`, { "a.txt": "a\n" });
  await push(e, `${t.path}/src`);
  const s = await N2S.open({
    repository: e.repo,
    index: `${t.path}/other.sqlite`,
    passphrase: "pw",
  });
  const held = await s.lock({ kind: "source", source: "s", command: "push" });
  try {
    const plain = await check(e);
    assert.equal(plain.code, 0, "a check that only reads runs beside a push");
    const r = await n2s(["check", "--repair", "--no-wait", ...e.args], ENV);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /push/);
    assert.match(r.stderr, new RegExp(`pid ${Deno.pid}`));
  } finally {
    await held.release();
    await s.close();
  }
  const after = await check(e, "--repair", "--no-wait");
  assert.equal(after.code, 0);
});
