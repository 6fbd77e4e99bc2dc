// The command line on a PostgreSQL index, against a real server the test starts: two machines
// (two processes with their own N2S_HOST) push into one repository and one index at the same
// time; every query answers for both and filters by host and source; content one machine
// stored is not uploaded again by the other; pulls are identical; check is clean; the index is
// rebuilt in place by recover index, and a SQLite index moves to PostgreSQL with index migrate.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, tempDir, writeTree } from "../helpers/fs.ts";
import { startPostgres } from "../servers/postgres.ts";
import { PgDatabase } from "../../lib/index/postgres/client.ts";

const PASS = { N2S_PASSPHRASE: "correct horse" };

interface Summary {
  id: string;
  source: string;
  status: string;
  host: string | null;
  files: number;
  uploaded: number;
}

/** A tree of `n` small files and one larger one, different for each seed. */
function tree(seed: number, n: number): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < n; i++) files[`docs/d${seed}-${i}.txt`] = `file ${i} of tree ${seed}\n`;
  files["big.bin"] = String(seed).repeat(400_000);
  return files;
}

function count(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync(dir)) {
    n += e.isDirectory ? count(`${dir}/${e.name}`) : 1;
  }
  return n;
}

Deno.test("a PostgreSQL index shared by two machines: push, query, pull, check, recover, migrate", async (t) => {
  const pg = await startPostgres();
  using tmp = tempDir();
  const repo = `${tmp.path}/repo`;
  try {
    const index = await pg.createDatabase();
    const env = { ...PASS, N2S_INDEX: index };
    writeTree(`${tmp.path}/alpha`, tree(1, 40));
    writeTree(`${tmp.path}/beta`, tree(2, 30));

    await t.step("init creates the repository and the index's tables", async () => {
      const out = await n2sOk(["init", "--repo", repo, "--index", index], PASS);
      assert.match(out, /postgres:\/\/postgres@127\.0\.0\.1:\d+\//);
    });

    await t.step("two machines push at the same time into one repository and index", async () => {
      const [a, b] = await Promise.all([
        n2s(["push", "--repo", repo, `${tmp.path}/alpha`, "--source", "alpha-data", "--json"], {
          ...env,
          N2S_HOST: "alpha",
        }),
        n2s(["push", "--repo", repo, `${tmp.path}/beta`, "--source", "beta-data", "--json"], {
          ...env,
          N2S_HOST: "beta",
        }),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      assert.equal(JSON.parse(a.stdout).uploaded, 41);
      assert.equal(JSON.parse(b.stdout).uploaded, 31);
    });

    await t.step("status, log and find answer for both machines, and filter", async () => {
      const all = JSON.parse(await n2sOk(["status", "--repo", repo, "--json"], env)) as Summary[];
      assert.deepEqual(
        all.map((c) => [c.source, c.host, c.status, c.files]).sort(),
        [["alpha-data", "alpha", "complete", 42], ["beta-data", "beta", "complete", 32]],
      );
      const alpha = JSON.parse(
        await n2sOk(["status", "--repo", repo, "--host", "alpha", "--json"], env),
      ) as Summary[];
      assert.deepEqual(alpha.map((c) => c.source), ["alpha-data"]);
      const log = JSON.parse(
        await n2sOk(["log", "--repo", repo, "--host", "beta", "--json"], env),
      ) as Summary[];
      assert.deepEqual(log.map((c) => c.source), ["beta-data"]);
      assert.deepEqual(
        JSON.parse(await n2sOk(["log", "--repo", repo, "--host", "gamma", "--json"], env)),
        [],
      );
      const hits = JSON.parse(await n2sOk(["find", "--repo", repo, "big.bin", "--json"], env)) as {
        source: string;
      }[];
      assert.deepEqual(hits.map((h) => h.source).sort(), ["alpha-data", "beta-data"]);
      const onlyBeta = JSON.parse(
        await n2sOk(["find", "--repo", repo, "big.bin", "--source", "beta-data", "--json"], env),
      ) as { source: string }[];
      assert.deepEqual(onlyBeta.map((h) => h.source), ["beta-data"]);
      const text = await n2sOk(["status", "--repo", repo], env);
      assert.match(text, /HOST/);
      assert.match(text, /alpha-data\s+alpha/);
    });

    await t.step("what one machine stored, the other does not upload again", async () => {
      const objects = count(repo);
      const r = JSON.parse(
        await n2sOk([
          "push",
          "--repo",
          repo,
          `${tmp.path}/alpha`,
          "--source",
          "alpha-again",
          "--json",
        ], { ...env, N2S_HOST: "beta" }),
      );
      assert.equal(r.uploaded, 0);
      assert.equal(r.present, 41);
      // Only the new changeset's manifest (and no blob or pack) was written.
      assert.equal(count(repo), objects + 1);
    });

    await t.step("an interrupted push is resumed on its own machine only", async () => {
      writeTree(`${tmp.path}/gamma`, tree(3, 20));
      const args = ["push", "--repo", repo, `${tmp.path}/gamma`, "--source", "gamma-data"];
      const killed = await n2s(args, { ...env, N2S_HOST: "beta", N2S_CRASH_AT: "put-end:1" });
      assert.equal(killed.code, 137, killed.stderr);
      // Another machine neither completes it (its files are elsewhere) nor is told to.
      const elsewhere = await n2s(["push", "--repo", repo, "--resume", "--json"], {
        ...env,
        N2S_HOST: "alpha",
      });
      assert.equal(elsewhere.code, 0, elsewhere.stderr);
      assert.deepEqual(JSON.parse(elsewhere.stdout).resumed, []);
      const hint = await n2s(["status", "--repo", repo], { ...env, N2S_HOST: "alpha" });
      assert.match(hint.stderr, /unless a push of it is running on beta, "n2s push --resume"/);
      const own = await n2s(["push", "--repo", repo, "--resume", "--json"], {
        ...env,
        N2S_HOST: "beta",
      });
      assert.equal(own.code, 0, own.stderr);
      assert.equal(JSON.parse(own.stdout).resumed.length, 1);
      await n2sOk([
        "pull",
        "--repo",
        repo,
        "--changeset-id",
        "latest:gamma-data",
        "--target-path",
        `${tmp.path}/out-gamma`,
      ], env);
      assertSameTree(`${tmp.path}/out-gamma`, `${tmp.path}/gamma`);
    });

    await t.step("ls and pull of either machine's changeset give its tree", async () => {
      const ls = JSON.parse(
        await n2sOk(["ls", "--repo", repo, "latest:beta-data", "--json"], env),
      ) as { path: string }[];
      assert.ok(ls.some((e) => e.path === "docs/d2-29.txt"));
      for (const [source, dir] of [["alpha-data", "alpha"], ["beta-data", "beta"]]) {
        const target = `${tmp.path}/out-${dir}`;
        await n2sOk([
          "pull",
          "--repo",
          repo,
          "--changeset-id",
          `latest:${source}`,
          "--target-path",
          target,
        ], env);
        assertSameTree(target, `${tmp.path}/${dir}`);
      }
    });

    await t.step("check --read-data is clean, the index included", async () => {
      const r = await n2s(["check", "--repo", repo, "--read-data"], env);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /no damage found/);
    });

    await t.step("recover index rebuilds the database in place, with --force only", async () => {
      const before = JSON.parse(
        await n2sOk(["status", "--repo", repo, "--json"], env),
      ) as Summary[];
      const refused = await n2s(["recover", "index", "--repo", repo], env);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /already lists changesets; add --force/);
      await n2sOk(["recover", "index", "--repo", repo, "--force"], env);
      const after = JSON.parse(await n2sOk(["status", "--repo", repo, "--json"], env)) as Summary[];
      assert.deepEqual(
        after.map((c) => [c.id, c.source, c.status, c.files, c.host]).sort(),
        before.filter((c) => c.status === "complete")
          .map((c) => [c.id, c.source, c.status, c.files, c.host]).sort(),
      );
    });

    await t.step("index migrate moves a SQLite index to PostgreSQL, row for row", async () => {
      const repo2 = `${tmp.path}/repo2`;
      const file = `${tmp.path}/index2.sqlite`;
      const local = { ...PASS, N2S_INDEX: file };
      await n2sOk(["init", "--repo", repo2], local);
      await n2sOk(["push", "--repo", repo2, `${tmp.path}/alpha`, "--source", "s"], local);
      writeTree(`${tmp.path}/alpha`, { "docs/new.txt": "added later\n" });
      await n2sOk(["push", "--repo", repo2, `${tmp.path}/alpha`, "--source", "s"], local);
      const target = await pg.createDatabase();
      const out = await n2sOk(["index", "migrate", "--repo", repo2, "--to", target], local);
      assert.match(out, /copied 2 changesets, 44 entries and 0 lost blobs/);
      const moved = { ...PASS, N2S_INDEX: target };
      for (const cmd of [["status"], ["log"], ["find", "new.txt"], ["ls", "latest:s"]]) {
        assert.deepEqual(
          JSON.parse(await n2sOk([...cmd, "--repo", repo2, "--json"], moved)),
          JSON.parse(await n2sOk([...cmd, "--repo", repo2, "--json"], local)),
          cmd.join(" "),
        );
      }
      await n2sOk([
        "pull",
        "--repo",
        repo2,
        "--changeset-id",
        "latest:s",
        "--target-path",
        `${tmp.path}/out-migrated`,
      ], moved);
      assertSameTree(`${tmp.path}/out-migrated`, `${tmp.path}/alpha`);
      // A second migrate into the same (no longer empty) database is refused.
      const again = await n2s(["index", "migrate", "--repo", repo2, "--to", target], local);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already lists changesets; migrate into an empty index/);
    });

    await t.step(
      "roles: the owner creates the tables, a pusher pushes, a reader reads",
      async () => {
        const admin = new PgDatabase(pg.url("postgres"));
        try {
          admin.exec(
            "CREATE ROLE n2s_owner LOGIN; CREATE ROLE n2s_push LOGIN; CREATE ROLE n2s_read LOGIN",
          );
          admin.exec("CREATE DATABASE n2s_roles OWNER n2s_owner");
        } finally {
          admin.close();
        }
        const roles = new PgDatabase(pg.url("n2s_roles"));
        try {
          roles.exec(`REVOKE ALL ON DATABASE n2s_roles FROM PUBLIC;
          GRANT CONNECT ON DATABASE n2s_roles TO n2s_push, n2s_read;
          GRANT USAGE ON SCHEMA public TO n2s_push, n2s_read;
          ALTER DEFAULT PRIVILEGES FOR ROLE n2s_owner IN SCHEMA public
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO n2s_push;
          ALTER DEFAULT PRIVILEGES FOR ROLE n2s_owner IN SCHEMA public
            GRANT SELECT ON TABLES TO n2s_read;`);
        } finally {
          roles.close();
        }
        const as = (role: string) => pg.url("n2s_roles").replace("postgres@", `${role}@`);
        const repo3 = `${tmp.path}/repo-roles`;
        await n2sOk(["init", "--repo", repo3, "--index", as("n2s_owner")], PASS);
        const pushed = JSON.parse(
          await n2sOk([
            "push",
            "--repo",
            repo3,
            `${tmp.path}/beta`,
            "--source",
            "b",
            "--index",
            as("n2s_push"),
            "--json",
          ], PASS),
        );
        assert.equal(pushed.uploaded, 31);
        // A push with no change removes the changeset it began: the pusher may delete rows.
        const again = await n2sOk([
          "push",
          "--repo",
          repo3,
          `${tmp.path}/beta`,
          "--source",
          "b",
          "--index",
          as("n2s_push"),
        ], PASS);
        assert.match(again, /no changes in b/);
        const read = JSON.parse(
          await n2sOk(["status", "--repo", repo3, "--index", as("n2s_read"), "--json"], PASS),
        ) as Summary[];
        assert.deepEqual(read.map((c) => [c.source, c.status]), [["b", "complete"]]);
        const refused = await n2s([
          "push",
          "--repo",
          repo3,
          `${tmp.path}/alpha`,
          "--source",
          "a",
          "--index",
          as("n2s_read"),
        ], PASS);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /permission denied for table changesets; check the role/);
        // The pusher can change rows, not the tables.
        const pusher = new PgDatabase(as("n2s_push"));
        try {
          assert.throws(() => pusher.exec("DROP TABLE files"), /must be owner of table files/);
          assert.throws(
            () => pusher.exec("ALTER TABLE files ADD COLUMN x TEXT"),
            /must be owner of table files/,
          );
        } finally {
          pusher.close();
        }
      },
    );

    await t.step("index addresses n2s does not know are errors, never files", async () => {
      for (const bad of ["postgress://x/y", "mysql://h/db", "postgres:db"]) {
        const r = await n2s(["status", "--repo", repo, "--index", bad], PASS, { cwd: tmp.path });
        assert.equal(r.code, 1, bad);
        assert.match(r.stderr, /n2s does not know "[a-z]+:" addresses/, bad);
      }
      const names = [...Deno.readDirSync(tmp.path)].map((e) => e.name);
      assert.ok(!names.some((n) => n.includes(":")), `no file named like an address: ${names}`);
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (closed.addr as Deno.NetAddr).port;
      closed.close();
      const r = await n2s([
        "status",
        "--repo",
        repo,
        "--index",
        `postgres://someone:secret@127.0.0.1:${port}/n2s`,
      ], PASS);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /check that PostgreSQL is running/);
      assert.match(r.stderr, /someone:\*\*\*@/);
      assert.doesNotMatch(r.stderr, /secret/);
    });
  } finally {
    await pg.stop();
  }
});
