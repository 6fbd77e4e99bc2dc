// The index gives the same answers on SQLite and on PostgreSQL (tests/index/conformance.ts run
// on both), and refuses addresses it cannot use: a PostgreSQL server that does not answer, and
// locations that look like addresses of something else.

import assert from "node:assert/strict";
import { IndexError } from "../../lib/index/errors.ts";
import { Index, parseIndexLocation } from "../../lib/index/sqlite.ts";
import { tempDir } from "../helpers/fs.ts";
import { startPostgres } from "../servers/postgres.ts";
import { runIndexConformance } from "./conformance.ts";

/** Remembers where each index was opened, so that the suite can open the same one again. */
function locations() {
  const where = new Map<Index, string>();
  return {
    open(location: string, repositoryId: string): Index {
      const ix = Index.open(location, repositoryId);
      where.set(ix, location);
      return ix;
    },
    of(ix: Index): string {
      const location = where.get(ix);
      if (location === undefined) throw new Error("an index this test did not open");
      return location;
    },
  };
}

Deno.test("index conformance: SQLite", async (t) => {
  using tmp = tempDir("n2s-index-");
  const opened = locations();
  let n = 0;
  await runIndexConformance(t, (repositoryId, sameAs) => {
    const location = sameAs ? opened.of(sameAs) : `${tmp.path}/index-${++n}.sqlite`;
    const ix = opened.open(location, repositoryId);
    assert.equal(ix.dialect, "sqlite");
    return ix;
  });
});

Deno.test("index conformance: PostgreSQL", async (t) => {
  const server = await startPostgres();
  try {
    const opened = locations();
    await runIndexConformance(t, async (repositoryId, sameAs) => {
      // Databases whose own collation is linguistic (ICU en-US: "a" < "B" < "é"): the index
      // must sort and compare byte by byte whatever the database's locale.
      const location = sameAs
        ? opened.of(sameAs)
        : await server.createDatabase(undefined, { icuLocale: "en-US" });
      const ix = opened.open(location, repositoryId);
      assert.equal(ix.dialect, "postgres");
      assert.equal(ix.path, location);
      return ix;
    });
  } finally {
    await server.stop();
  }
});

Deno.test("a PostgreSQL index on a port where nothing listens is refused at once", () => {
  // A port that was free a moment ago: nothing listens on it.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const url = `postgres://n2s:s3cret-word@127.0.0.1:${port}/n2s_index`;
  assert.throws(
    () => Index.open(url, "repo"),
    (e: unknown) => {
      assert.ok(e instanceof IndexError, `not an IndexError: ${e}`);
      assert.equal(e.problem, "io");
      assert.equal(e.file, `postgres://n2s:***@127.0.0.1:${port}/n2s_index`);
      assert.ok(
        e.message.includes(`index postgres://n2s:***@127.0.0.1:${port}/n2s_index`),
        e.message,
      );
      assert.match(e.message, /check that PostgreSQL is running/);
      assert.ok(!e.message.includes("s3cret-word"), e.message);
      return true;
    },
  );
});

Deno.test("locations of other kinds are refused, and no file is made for them", () => {
  const cwd = Deno.cwd();
  const names = ["foo:", "foo:x", "foo", "postgres:bar", "postgres:", "postgresql:bar"];
  const exists = (name: string) => {
    try {
      Deno.lstatSync(`${cwd}/${name}`);
      return true;
    } catch {
      return false;
    }
  };
  const before = names.filter(exists);

  assert.throws(() => Index.open("foo://x", "repo"), /n2s does not know "foo:" addresses/);
  assert.throws(() => Index.open("foo:x", "repo"), /n2s does not know "foo:" addresses/);
  assert.throws(() => Index.open("postgres:bar", "repo"), (e: Error) => {
    assert.match(e.message, /^index postgres:bar: n2s does not know "postgres:" addresses/);
    // It says how to name such a file, and how to write a PostgreSQL address.
    assert.ok(e.message.includes("./postgres:bar"), e.message);
    assert.ok(e.message.includes("postgres://USER@HOST/DATABASE"), e.message);
    return true;
  });
  assert.throws(
    () => Index.open("postgresql:bar", "repo"),
    /n2s does not know "postgresql:" addresses/,
  );
  assert.throws(() => Index.open("postgres://127.0.0.1:5432", "repo"), /no database named/);
  assert.throws(() => Index.open("postgres://127.0.0.1:5432/", "repo"), /no database named/);
  assert.throws(
    () => Index.open("postgres://u:pw-secret@127.0.0.1:5432/", "repo"),
    (e: Error) => /no database named/.test(e.message) && !e.message.includes("pw-secret"),
  );
  assert.throws(() => Index.open("", "repo"), /an empty location/);

  assert.deepEqual(names.filter(exists), before);

  assert.deepEqual(parseIndexLocation("postgres://u@h/db"), {
    kind: "postgres",
    url: "postgres://u@h/db",
  });
  assert.deepEqual(parseIndexLocation("POSTGRESQL://u@h:1/db"), {
    kind: "postgres",
    url: "POSTGRESQL://u@h:1/db",
  });
  assert.deepEqual(parseIndexLocation("./a:b"), { kind: "sqlite", path: "./a:b" });
  assert.deepEqual(parseIndexLocation("/x/y.sqlite"), { kind: "sqlite", path: "/x/y.sqlite" });
});

Deno.test("a SQLite file whose name has a colon opens when written as a path", () => {
  using tmp = tempDir("n2s-index-");
  const ix = Index.open(`${tmp.path}/a:b.sqlite`, "repo");
  try {
    assert.equal(ix.dialect, "sqlite");
  } finally {
    ix.close();
  }
  assert.ok(Deno.statSync(`${tmp.path}/a:b.sqlite`).isFile);
});
