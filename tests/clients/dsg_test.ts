// The dsg client on repositories built in the shapes dsg 0.4 writes (s1 → s2 → s3, archived
// manifests compressed with the lz4 CLI), and the LZ4 frame decoder on the CLI's output.

import assert from "node:assert/strict";
import { dsgClient, readDsgManifest } from "../../lib/clients/dsg.ts";
import { decodeLz4Frames, xxh32 } from "../../lib/clients/lz4.ts";
import { makeStore, requireTool, snapshotTree, testBackend } from "./helpers.ts";

const enc = new TextEncoder();

async function lz4(data: Uint8Array, ...opts: string[]): Promise<Uint8Array> {
  const p = new Deno.Command("lz4", {
    args: ["-q", "-c", ...opts],
    stdin: "piped",
    stdout: "piped",
  })
    .spawn();
  const output = p.output(); // read while writing, or a large input fills the pipe
  const w = p.stdin.getWriter();
  await w.write(data);
  await w.close();
  const out = await output;
  assert.equal(out.code, 0);
  return out.stdout;
}

Deno.test("xxHash32 matches the reference values", () => {
  assert.equal(xxh32(new Uint8Array()), 0x02cc5d05);
  assert.equal(xxh32(enc.encode("abc")), 0x32d153ff);
});

Deno.test("LZ4 frames written by the lz4 CLI decode, whatever the options", async () => {
  await requireTool("lz4", "lz4");
  const text = Array.from({ length: 40000 }, (_, i) => `row ${i},${(i * 7) % 13}\n`).join("");
  const data = new Uint8Array([
    ...enc.encode(text),
    ...crypto.getRandomValues(new Uint8Array(60000)),
  ]);
  for (
    const opts of [[], ["-BD"], ["--content-size"], ["-BX"], ["-9"], ["-1", "-B4"], [
      "--no-frame-crc",
    ]]
  ) {
    assert.deepEqual(decodeLz4Frames(await lz4(data, ...opts)), data, opts.join(" "));
  }
  assert.equal(decodeLz4Frames(await lz4(new Uint8Array())).length, 0);
  const two = await lz4(enc.encode("one"));
  assert.equal(
    new TextDecoder().decode(decodeLz4Frames(new Uint8Array([...two, ...two]))),
    "oneone",
  );
  const bad = await lz4(data);
  bad[bad.length - 100] ^= 0xff;
  assert.throws(() => decodeLz4Frames(bad), /lz4/);
});

type Spec = Record<string, string | { link: string }>;

function laTime(ms: number): string {
  // dsg writes America/Los_Angeles times with an offset, to the second.
  const d = new Date(Math.floor(ms / 1000) * 1000 - 7 * 3600_000);
  return d.toISOString().replace(/\.\d{3}Z$/, "-07:00");
}

function fakeHash(s: string): string {
  return xxh32(enc.encode(s)).toString(16).padStart(8, "0").repeat(2);
}

/** Writes the working tree and dsg's state for one sync, archiving the previous manifest. */
async function sync(repo: string, id: string, message: string, spec: Spec, base: number) {
  const dsg = `${repo}/.dsg`;
  await Deno.mkdir(`${dsg}/archive`, { recursive: true });
  const prev = await readDsgManifest(repo);
  if (prev) {
    const raw = await Deno.readFile(`${dsg}/last-sync.json`);
    await Deno.writeFile(
      `${dsg}/archive/${prev.metadata.snapshot_id}-sync.json.lz4`,
      await lz4(raw),
    );
  }
  const entries: Record<string, unknown> = {};
  let i = 0;
  for (const [path, v] of Object.entries(spec)) {
    const full = `${repo}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    if (typeof v === "string") {
      let st = await Deno.lstat(full).catch(() => null);
      const same = st?.isFile && (await Deno.readTextFile(full)) === v;
      if (!same) {
        await Deno.remove(full).catch(() => {});
        await Deno.writeTextFile(full, v);
        const t = new Date(base + 1000 * i++);
        await Deno.utime(full, t, t);
      }
      st = await Deno.lstat(full);
      entries[path] = {
        type: "file",
        path,
        user: "pb@hrdag.org",
        filesize: st.size,
        mtime: laTime(st.mtime!.getTime()),
        hash: fakeHash(v),
      };
    } else {
      await Deno.remove(full).catch(() => {});
      await Deno.symlink(v.link, full);
      entries[path] = { type: "link", path, user: "", reference: v.link };
    }
  }
  const metadata = {
    manifest_version: "0.4.4",
    snapshot_id: id,
    created_at: laTime(base),
    entry_count: Object.keys(entries).length,
    entries_hash: "0",
    created_by: "pb@hrdag.org",
    snapshot_message: message,
    snapshot_previous: prev?.metadata.snapshot_id ?? null,
    snapshot_hash: "0",
    snapshot_notes: null,
    project_config: {},
  };
  await Deno.writeTextFile(`${dsg}/last-sync.json`, JSON.stringify({ entries, metadata }));
  const msgsFile = `${dsg}/sync-messages.json`;
  const msgs = JSON.parse(
    await Deno.readTextFile(msgsFile).catch(() => '{"metadata_version":"0.4.4","snapshots":{}}'),
  );
  msgs.snapshots[id] = metadata;
  await Deno.writeTextFile(msgsFile, JSON.stringify(msgs));
}

async function removeFile(repo: string, path: string) {
  await Deno.remove(`${repo}/${path}`);
}

/** The working tree as dsg tracks it: everything but dsg's own files. */
async function tracked(repo: string): Promise<Map<string, string>> {
  const t = await snapshotTree(repo);
  for (const k of [...t.keys()]) {
    if (k === ".dsg" || k.startsWith(".dsg/") || k === ".dsgconfig.yml") t.delete(k);
  }
  return t;
}

Deno.test("a dsg repository pushes one changeset per snapshot, s1 → s2 → s3", async () => {
  await requireTool("lz4", "lz4");
  const work = await Deno.makeTempDir({ prefix: "n2s-dsg-" });
  try {
    const repo = `${work}/project`;
    await Deno.mkdir(repo);
    await Deno.writeTextFile(
      `${repo}/.dsgconfig.yml`,
      "repo_name: syria-killings\ndata_dirs:\n  - input\n  - output\n",
    );
    const base = Date.parse("2025-06-13T17:00:00Z");
    const store = await makeStore(work);
    const pushPull = async (backend?: ReturnType<typeof testBackend>) => {
      const client = await dsgClient({ repoDir: repo });
      assert.equal(client.defaultSource, "dsg:syria-killings");
      const s = await store.open(backend);
      try {
        const r = await s.push({ client, source: client.defaultSource });
        if (r.changeset) {
          const out = `${work}/pull-${r.changeset}`;
          await s.pull(r.changeset, out);
          assert.deepEqual(await snapshotTree(out), await tracked(repo));
        }
        return { r, name: r.changeset ? s.status(r.changeset)[0].name : null, s, client };
      } finally {
        await s.close();
      }
    };

    // s1
    await sync(repo, "s1", "initial import", {
      "input/dt1.csv": "id,name\n1,a\n",
      "input/dt2.csv": "id,name\n2,b\n",
      "output/result1.csv": "n\n2\n",
      "output/latest.csv": { link: "result1.csv" },
    }, base);
    const p1 = await pushPull();
    assert.equal(p1.name, "s1: initial import");
    assert.equal(p1.r.uploaded, 3);
    assert.equal(p1.r.links, 1);

    // s2: an edit, an addition, a deletion, a retargeted link; interrupted, then resumed.
    await removeFile(repo, "input/dt2.csv");
    await sync(repo, "s2", "add Q2 extraction", {
      "input/dt1.csv": "id,name\n1,a\n3,c\n",
      "input/q2 extraction.csv": "id\n9\n",
      "output/result1.csv": "n\n2\n",
      "output/result2.csv": "n\n3\n",
      "output/latest.csv": { link: "result2.csv" },
    }, base + 86400_000);
    {
      const failing = testBackend(store.repo, 1);
      const s = await store.open(failing);
      await assert.rejects(
        s.push({
          client: await dsgClient({ repoDir: repo }),
          source: "dsg:syria-killings",
          concurrency: 1,
          confirmBatch: 1,
        }),
        /injected/,
      );
      await s.close();
    }
    const resumeBackend = testBackend(store.repo);
    const p2 = await pushPull(resumeBackend);
    assert.equal(p2.r.resumed.length, 1);
    assert.equal(p2.r.changeset, null, "the resumed changeset already holds s2");
    assert.equal(resumeBackend.blobPuts.length, 2);
    {
      const s = await store.open();
      const [cs] = s.status(p2.r.resumed[0]);
      assert.equal(cs.name, "s2: add Q2 extraction");
      const files = s.ls(cs.id).map((f) => `${f.action} ${f.path}`).sort();
      assert.deepEqual(files, [
        "delete input/dt2.csv",
        "link output/latest.csv",
        "write input/dt1.csv",
        "write input/q2 extraction.csv",
        "write output/result2.csv",
      ]);
      const out = `${work}/pull-s2`;
      await s.pull(cs.id, out);
      assert.deepEqual(await snapshotTree(out), await tracked(repo));
      await s.close();
    }

    // s3: a file rewritten with the same bytes and time (new inode: the dsg hash says unchanged),
    // one new file; then the tree moves on after the sync.
    const dt1 = `${repo}/input/dt1.csv`;
    const st = await Deno.lstat(dt1);
    await Deno.copyFile(dt1, `${dt1}.tmp`);
    await Deno.rename(`${dt1}.tmp`, dt1);
    await Deno.utime(dt1, st.mtime!, st.mtime!);
    await sync(repo, "s3", "Q3", {
      "input/dt1.csv": "id,name\n1,a\n3,c\n",
      "input/q2 extraction.csv": "id\n9\n",
      "input/q3.csv": "id\n10\n",
      "output/result1.csv": "n\n2\n",
      "output/result2.csv": "n\n3\n",
      "output/latest.csv": { link: "result2.csv" },
    }, base + 2 * 86400_000);
    const p3 = await pushPull();
    assert.equal(p3.name, "s3: Q3");
    assert.equal(p3.r.uploaded, 1);
    assert.ok(p3.r.unchanged >= 4);
    assert.deepEqual(p3.client.problems, []);

    // The same snapshot again: nothing uploaded, no changeset.
    const again = testBackend(store.repo);
    const p4 = await pushPull(again);
    assert.equal(p4.r.changeset, null);
    assert.equal(again.blobPuts.length, 0);

    // The working tree moved on without a sync: reported, never stored in place of s4's files.
    await Deno.writeTextFile(`${repo}/input/q3.csv`, "id\n10\n11\n");
    await removeFile(repo, "output/result1.csv");
    await sync(repo, "s4", "touch", {
      "input/dt1.csv": "id,name\n1,a\n3,c\n",
      "input/q2 extraction.csv": "id\n9\n",
      "input/q3.csv": "id\n10\n11\n",
      "output/result1.csv": "n\n2\n",
    }, base + 3 * 86400_000);
    await Deno.writeTextFile(`${repo}/input/q3.csv`, "changed again after the sync\n");
    await removeFile(repo, "output/result1.csv");
    const client = await dsgClient({ repoDir: repo });
    const s = await store.open();
    try {
      const r = await s.push({ client, source: client.defaultSource });
      const msgs = r.problems.map((p) => `${p.path}: ${p.message}`).join("\n");
      assert.match(msgs, /input\/q3.csv: size 29 on disk, 9 in the manifest/);
      assert.match(msgs, /output\/result1.csv: in the manifest but missing/);
      const files = s.ls(r.changeset!).map((f) => `${f.action} ${f.path}`).sort();
      assert.deepEqual(files, ["delete output/latest.csv", "delete output/result2.csv"]);
    } finally {
      await s.close();
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
