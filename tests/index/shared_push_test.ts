// One push shared by four workers over 20,000 files, on a PostgreSQL index and an S3 repository
// (s3rver behind a proxy that logs every request), two of the workers killed with SIGKILL once
// each (one right after storing a pack it had not confirmed, one after a confirmation) and
// started again: the changeset completes, one worker commits it, every pack and loose blob is
// stored exactly once (counted in the proxy's log, and each is one the changeset names), the
// pull is identical and check --read-data is clean.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, seededBytes, tempDir } from "../helpers/fs.ts";
import { startPostgres } from "../servers/postgres.ts";
import { startS3, startS3Proxy } from "../servers/s3.ts";
import { PgDatabase } from "../../lib/index/postgres/client.ts";

const FILES = 20_000;

Deno.test("a push shared by 4 workers, 2 killed once each: every blob stored once, restore identical", async () => {
  const pg = await startPostgres();
  const s3 = await startS3();
  const proxy = startS3Proxy(s3.endpoint);
  using tmp = tempDir();
  try {
    const data = `${tmp.path}/data`;
    // 20,000 small files in 100 directories, and three that become loose blobs.
    for (let d = 0; d < 100; d++) {
      Deno.mkdirSync(`${data}/d${d}`, { recursive: true });
      for (let i = 0; i < FILES / 100; i++) {
        Deno.writeTextFileSync(`${data}/d${d}/f${i}.txt`, `file ${i} of directory ${d}\n`);
      }
    }
    for (let i = 0; i < 3; i++) {
      Deno.writeFileSync(`${data}/large${i}.bin`, seededBytes(300_000, i + 1));
    }
    const index = await pg.createDatabase();
    const repo = `s3://${s3.bucket}/shared?endpoint=${proxy.endpoint}`;
    const env = {
      N2S_PASSPHRASE: "pw",
      N2S_INDEX: index,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    };
    // Small packs (64 KiB) so that each worker stores many; blobs over 64 KiB are loose.
    await n2sOk(["init", "--repo", repo, "--pack-size", "65536", "--pack-threshold", "65536"], env);
    const args = [
      "push",
      "--repo",
      repo,
      "--scan",
      data,
      "--source",
      "archive",
      "--shared",
      // Long enough that a worker held up on this busy machine keeps its claims; the claims of
      // the killed ones go to the others once it runs out.
      "--lease",
      "30",
      "--json",
    ];
    const worker = async (name: string, crashAt?: string) => {
      const runs = [];
      if (crashAt !== undefined) {
        const killed = await n2s(args, { ...env, N2S_HOST: name, N2S_CRASH_AT: crashAt });
        runs.push(killed);
      }
      runs.push(await n2s(args, { ...env, N2S_HOST: name }));
      return runs;
    };
    const all = await Promise.all([
      worker("w1"),
      worker("w2", "put-end:3"),
      worker("w3", "confirmed:2"),
      worker("w4"),
    ]);
    // The two crashes happened (SIGKILL: exit code 137), and every last run finished.
    assert.equal(all[1][0].code, 137, all[1][0].stderr);
    assert.equal(all[2][0].code, 137, all[2][0].stderr);
    const finals = all.map((runs) => runs[runs.length - 1]);
    for (const r of finals) assert.equal(r.code, 0, r.stderr + r.stdout);
    const results = finals.map((r) => JSON.parse(r.stdout));
    const changeset = results[0].changeset;
    assert.ok(results.every((r) => r.changeset === changeset), "one changeset for all");
    assert.equal(results.filter((r) => r.committed).length, 1, "one worker commits");
    assert.equal(results[0].files, FILES + 3 + 100); // and the 100 directories

    // Every pack and loose blob was stored once, and is one the changeset names.
    const puts = proxy.log.filter((l) => /^PUT \/[^/]+\/shared\/(packs|blobs)\//.test(l))
      .map((l) => l.slice(4).split("?")[0]);
    assert.equal(new Set(puts).size, puts.length, "no object stored twice");
    const db = new PgDatabase(index);
    let named: Set<string>;
    let blobs: Set<string>;
    try {
      const rows = db.query(
        "SELECT status, blob_id, pack FROM files WHERE changeset = $1 AND action = 'write'",
        [changeset],
      ).rows as { status: string; blob_id: string; pack: string | null }[];
      assert.equal(rows.length, FILES + 3);
      const statuses: Record<string, number> = {};
      for (const f of rows) statuses[f.status] = (statuses[f.status] ?? 0) + 1;
      assert.deepEqual(statuses, { confirmed: FILES + 3 }, "every file stored by this push");
      blobs = new Set(rows.map((f) => f.blob_id));
      named = new Set(
        rows.map((f) =>
          f.pack === null
            ? `/${s3.bucket}/shared/blobs/${f.blob_id.slice(0, 2)}/${f.blob_id}`
            : `/${s3.bucket}/shared/packs/${f.pack.slice(0, 2)}/${f.pack}`
        ),
      );
    } finally {
      db.close();
    }
    assert.equal(blobs.size, FILES + 3, "one blob per file");
    assert.deepEqual([...puts].sort(), [...named].sort());
    assert.equal(puts.filter((p) => p.includes("/blobs/")).length, 3);

    const out = `${tmp.path}/out`;
    await n2sOk([
      "pull",
      "--repo",
      repo,
      "--changeset-id",
      "latest:archive",
      "--target-path",
      out,
    ], env);
    assertSameTree(out, data);
    const check = await n2s(["check", "--repo", repo, "--read-data"], env);
    assert.equal(check.code, 0, check.stdout + check.stderr);
  } finally {
    await proxy.stop();
    await s3.stop();
    await pg.stop();
  }
});
