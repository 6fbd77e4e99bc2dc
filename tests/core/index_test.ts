// The SQLite index: WAL mode, schema version and its migration, UTC times, and refusing another
// repository's file.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Index, isoNow, SCHEMA_VERSION } from "../../lib/index/sqlite.ts";
import { tempDir } from "../helpers/fs.ts";

Deno.test("the index uses WAL and records its schema version and repository", () => {
  using tmp = tempDir();
  const ix = Index.open(`${tmp.path}/i.sqlite`, "repo-a");
  try {
    const mode = ix.db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
    assert.equal(mode.journal_mode, "wal");
    const v = ix.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as {
      value: string;
    };
    assert.equal(Number(v.value), SCHEMA_VERSION);
    const tables =
      (ix.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
        name: string;
      }[]).map((r) => r.name);
    assert.deepEqual(tables.filter((t) => !t.startsWith("sqlite_")), [
      "changesets",
      "files",
      "lost_blobs",
      "meta",
    ]);
  } finally {
    ix.close();
  }
});

Deno.test("an index of another repository is refused with a way out", () => {
  using tmp = tempDir();
  Index.open(`${tmp.path}/i.sqlite`, "repo-a").close();
  assert.throws(
    () => Index.open(`${tmp.path}/i.sqlite`, "repo-b"),
    /belongs to repository repo-a.*--index/,
  );
});

Deno.test("an index with a newer schema is refused with the rebuild command", () => {
  using tmp = tempDir();
  const ix = Index.open(`${tmp.path}/i.sqlite`, "repo-a");
  ix.db.prepare("UPDATE meta SET value = '999' WHERE key = 'schema_version'").run();
  ix.close();
  assert.throws(
    () => Index.open(`${tmp.path}/i.sqlite`, "repo-a"),
    /schema version 999.*n2s recover index/,
  );
});

Deno.test("an index of schema version 2 is migrated on open, its rows kept", () => {
  using tmp = tempDir();
  const path = `${tmp.path}/i.sqlite`;
  // The tables as version 2 made them: no host, no claims.
  const db = new DatabaseSync(path);
  db.exec(`
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE changesets (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
      name TEXT, source TEXT NOT NULL, client TEXT NOT NULL, root TEXT, parent TEXT,
      status TEXT NOT NULL, files_planned INTEGER NOT NULL DEFAULT 0,
      bytes_planned INTEGER NOT NULL DEFAULT 0, files_uploaded INTEGER NOT NULL DEFAULT 0,
      bytes_uploaded INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL, completed TEXT,
      error TEXT, chain TEXT, info TEXT);
    CREATE TABLE files (changeset TEXT NOT NULL REFERENCES changesets(id), path TEXT NOT NULL,
      action TEXT NOT NULL, file_hash TEXT, blob_id TEXT, size INTEGER, mtime INTEGER,
      mode INTEGER, inode INTEGER, target TEXT, status TEXT NOT NULL, started TEXT,
      confirmed TEXT, stored_size INTEGER, ref TEXT, pack TEXT, pack_offset INTEGER,
      pack_length INTEGER, meta TEXT, ctime TEXT, error TEXT, UNIQUE (changeset, path));
    CREATE TABLE lost_blobs (blob_id TEXT PRIMARY KEY, found TEXT NOT NULL, why TEXT);
    INSERT INTO meta VALUES ('schema_version', '2'), ('repository', 'repo-a');
    INSERT INTO changesets (id, source, client, status, created)
      VALUES ('01OLD', 'data', 'scan', 'complete', '2026-01-01T00:00:00.000Z');
    INSERT INTO files (changeset, path, action, status) VALUES ('01OLD', 'a.txt', 'write', 'present');
  `);
  db.close();
  const ix = Index.open(path, "repo-a");
  try {
    assert.equal(ix.schemaVersion, SCHEMA_VERSION);
    const old = ix.getChangeset("01OLD")!;
    assert.equal(old.source, "data");
    assert.equal(old.host, null);
    assert.deepEqual(ix.filesOf("01OLD").map((f) => f.path), ["a.txt"]);
    ix.insertChangeset({ ...old, id: "01NEW", host: "nas1" });
    assert.equal(ix.getChangeset("01NEW")!.host, "nas1");
  } finally {
    ix.close();
  }
});

Deno.test("times are UTC ISO-8601 with Z", () => {
  assert.equal(isoNow(0), "1970-01-01T00:00:00.000Z");
  assert.match(isoNow(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

Deno.test("ids resolve by unique prefix and ambiguous prefixes are errors", () => {
  using tmp = tempDir();
  const ix = Index.open(`${tmp.path}/i.sqlite`, "r");
  try {
    const base = {
      name: null,
      source: "s",
      client: "c",
      root: null,
      parent: null,
      status: "complete" as const,
      files_planned: 0,
      bytes_planned: 0,
      files_uploaded: 0,
      bytes_uploaded: 0,
      created: isoNow(),
      completed: null,
      error: null,
      chain: null,
      info: null,
    };
    ix.insertChangeset({ ...base, id: "01AAAAAAAAAAAAAAAAAAAAAAA1" });
    ix.insertChangeset({ ...base, id: "01AAAAAAAAAAAAAAAAAAAAAAB2" });
    assert.equal(ix.resolveChangeset("01aaaaaaaaaaaaaaaaaaaaaab").id, "01AAAAAAAAAAAAAAAAAAAAAAB2");
    assert.throws(() => ix.resolveChangeset("01AAAA"), /matches several changesets/);
    assert.throws(() => ix.resolveChangeset("02"), /no changeset matches/);
  } finally {
    ix.close();
  }
});
