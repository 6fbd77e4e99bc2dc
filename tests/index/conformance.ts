// What every engine of the index must answer alike: each public method of Index, run against
// the engine a test opens (SQLite or PostgreSQL), with the answers checked exactly. Paths that
// are not valid UTF-8 (lone surrogates, lib/format/names.ts) and paths starting with U+FFFF
// round-trip; paths sort byte by byte (SQLite's binary collation); integers above 2^32 come back
// exact; times come back as UTC ISO-8601 with Z; long answers (cursors of several pages, answers
// larger than the PostgreSQL client's buffer) come back whole and in order.

import assert from "node:assert/strict";
import { type Index, SCHEMA_VERSION } from "../../lib/index/sqlite.ts";
import type { ChangesetRow, FileRow, PathState } from "../../lib/index/types.ts";

/**
 * Opens an index of repository `repositoryId`: at a new, empty location, or, with `sameAs`, at
 * the location of that (possibly closed) index.
 */
export type OpenIndex = (repositoryId: string, sameAs?: Index) => Index | Promise<Index>;

/** A time as the index writes them. */
const T0 = "2026-01-02T03:04:05.678Z";
const T1 = "2026-01-02T04:05:06.789Z";
const T2 = "2026-02-03T05:06:07.001Z";
/** Integers above 2^32, exact as doubles. */
const BIG = 2 ** 40 + 123;
const BIG2 = 2 ** 33 + 5;
const BIG3 = 2 ** 32 + 7;
const ISO_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A changeset id (26 characters, as a ULID). */
function csId(n: number, prefix = "01JGZ"): string {
  return prefix + String(n).padStart(26 - prefix.length, "0");
}

function changeset(id: string, over: Partial<ChangesetRow> = {}): ChangesetRow {
  return {
    id,
    name: null,
    source: "src",
    client: "scan",
    root: null,
    parent: null,
    status: "complete",
    files_planned: 0,
    bytes_planned: 0,
    files_uploaded: 0,
    bytes_uploaded: 0,
    created: T0,
    completed: null,
    error: null,
    chain: null,
    info: null,
    host: null,
    counts: null,
    ...over,
  };
}

function entry(changeset: string, path: string, over: Partial<FileRow> = {}): FileRow {
  return {
    changeset,
    path,
    action: "write",
    file_hash: null,
    blob_id: null,
    size: null,
    mtime: null,
    mode: null,
    inode: null,
    target: null,
    status: "pending",
    started: null,
    confirmed: null,
    stored_size: null,
    ref: null,
    pack: null,
    pack_offset: null,
    pack_length: null,
    meta: null,
    ctime: null,
    error: null,
    ...over,
  };
}

/** A row as a plain object (engines give rows of other prototypes). */
function plain<T extends object>(r: T): T {
  return { ...r };
}

/** A changeset as read back, without the column ChangesetRow does not name (checked here). */
function csOut(r: ChangesetRow | undefined): ChangesetRow | undefined {
  if (r === undefined) return undefined;
  const { seq, ...rest } = r as ChangesetRow & { seq: unknown };
  assert.equal(typeof seq, "number");
  return rest;
}

/** A file row as read back, without the columns FileRow does not name (checked here). */
function fileOut(r: FileRow | undefined): FileRow | undefined {
  if (r === undefined) return undefined;
  const { claim, lease, ...rest } = r as FileRow & { claim: unknown; lease: unknown };
  assert.equal(claim, null);
  assert.equal(lease, null);
  return rest;
}

function filesOut(rows: FileRow[]): FileRow[] {
  return rows.map((r) => fileOut(r)!);
}

/** The paths of some rows. */
function paths(rows: Iterable<{ path: string }>): string[] {
  return [...rows].map((r) => r.path);
}

/** Byte order of UTF-8 strings (SQLite's binary collation), for expectations built in bulk. */
function byteOrder(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** `n` entries of `cs` named so that their order is known ("f/000000" …), given shuffled. */
function manyEntries(cs: string, n: number, over: Partial<FileRow> = {}): FileRow[] {
  const rows = Array.from(
    { length: n },
    (_, i) => entry(cs, `f/${String(i).padStart(6, "0")}`, { size: i, ...over }),
  );
  // A fixed permutation: rows are inserted out of path order.
  for (let i = rows.length - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1);
    [rows[i], rows[j]] = [rows[j], rows[i]];
  }
  return rows;
}

/**
 * Runs the conformance steps on the engine `open` gives. Every step opens its own index (of a
 * fresh repository id) and closes it.
 */
export async function runIndexConformance(t: Deno.TestContext, open: OpenIndex): Promise<void> {
  let n = 0;
  const newRepositoryId = () => `repo-${++n}-${crypto.randomUUID()}`;
  const withIndex = async (fn: (ix: Index) => void | Promise<void>) => {
    const ix = await open(newRepositoryId());
    try {
      await fn(ix);
    } finally {
      ix.close();
    }
  };

  await t.step("a new index: schema version, meta, empty tables, integrity", async () => {
    const repositoryId = newRepositoryId();
    const ix = await open(repositoryId);
    try {
      assert.equal(ix.schemaVersion, SCHEMA_VERSION);
      assert.equal(ix.getMeta("schema_version"), String(SCHEMA_VERSION));
      assert.equal(ix.getMeta("repository"), repositoryId);
      assert.match(ix.getMeta("created")!, ISO_Z);
      assert.equal(ix.getMeta("no such key"), undefined);
      assert.ok(ix.dialect === "sqlite" || ix.dialect === "postgres");
      assert.equal(typeof ix.path, "string");
      assert.deepEqual(ix.listChangesets(), []);
      assert.deepEqual(ix.incomplete(), []);
      assert.deepEqual(ix.lostBlobs(), []);
      assert.equal(ix.isLost("x"), false);
      assert.deepEqual([...ix.confirmedBlobs()], []);
      assert.deepEqual([...ix.findPaths(() => true)], []);
      assert.deepEqual(ix.chain("src"), []);
      assert.equal(ix.lastComplete("src"), undefined);
      assert.deepEqual(ix.integrityCheck(), ["ok"]);
      ix.shrinkMemory();
    } finally {
      ix.close();
    }
  });

  await t.step(
    "getMeta and setMeta: a key is set, replaced, and kept across a reopen",
    async () => {
      const repositoryId = newRepositoryId();
      const ix = await open(repositoryId);
      try {
        ix.setMeta("pack_size", "16777216");
        assert.equal(ix.getMeta("pack_size"), "16777216");
        ix.setMeta("pack_size", "33554432");
        assert.equal(ix.getMeta("pack_size"), "33554432");
        ix.setMeta("é/\u{1F600}", "");
        assert.equal(ix.getMeta("é/\u{1F600}"), "");
      } finally {
        ix.close();
      }
      const again = await open(repositoryId, ix);
      try {
        assert.equal(again.getMeta("pack_size"), "33554432");
        assert.equal(again.getMeta("é/\u{1F600}"), "");
        assert.equal(again.getMeta("repository"), repositoryId);
        assert.equal(again.schemaVersion, SCHEMA_VERSION);
      } finally {
        again.close();
      }
    },
  );

  await t.step("reopening keeps the data; another repository's id is refused", async () => {
    const repositoryId = newRepositoryId();
    const ix = await open(repositoryId);
    try {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertFile(entry(csId(1), "a", { status: "confirmed", size: BIG }));
    } finally {
      ix.close();
    }
    const again = await open(repositoryId, ix);
    try {
      assert.deepEqual(csOut(again.getChangeset(csId(1))), changeset(csId(1)));
      assert.deepEqual(
        fileOut(again.getFile(csId(1), "a")),
        entry(csId(1), "a", { status: "confirmed", size: BIG }),
      );
    } finally {
      again.close();
    }
    const other = newRepositoryId();
    await assert.rejects(
      async () => (await open(other, ix)).close(),
      (e: Error) => {
        assert.match(e.message, /belongs to repository/);
        assert.ok(e.message.includes(`belongs to repository ${repositoryId}, not ${other}`));
        return true;
      },
    );
    // The refused open changed nothing.
    const third = await open(repositoryId, ix);
    try {
      assert.equal(third.getMeta("repository"), repositoryId);
      assert.equal(third.listChangesets().length, 1);
    } finally {
      third.close();
    }
  });

  await t.step("insertChangeset and getChangeset round-trip every column", async () => {
    await withIndex((ix) => {
      const full = changeset(csId(1), {
        name: "nightly é",
        source: "home/\u{1F600}",
        client: "btrfs",
        root: "/mnt/snap/2026-01-02",
        parent: csId(0),
        status: "uploading",
        files_planned: 123456,
        bytes_planned: BIG,
        files_uploaded: 654,
        bytes_uploaded: BIG2,
        created: T0,
        completed: T1,
        error: "disk full",
        chain: "ab".repeat(32),
        info: JSON.stringify({ snapshot: "snap-1", n: 1 }),
        host: "host-1.example",
      });
      ix.insertChangeset(full);
      assert.deepEqual(csOut(ix.getChangeset(csId(1))), full);
      const bare = changeset(csId(2));
      ix.insertChangeset(bare);
      assert.deepEqual(csOut(ix.getChangeset(csId(2))), bare);
      // Without a host: none.
      const { host: _, ...hostless } = changeset(csId(4));
      ix.insertChangeset(hostless);
      assert.deepEqual(csOut(ix.getChangeset(csId(4))), changeset(csId(4)));
      assert.equal(ix.getChangeset(csId(3)), undefined);
      assert.equal(ix.getChangeset(csId(1).toLowerCase()), undefined);
      // Ids are unique.
      assert.throws(() => ix.insertChangeset(changeset(csId(1), { source: "other" })));
      assert.deepEqual(csOut(ix.getChangeset(csId(1))), full);
      assert.equal(ix.listChangesets().length, 3);
    });
  });

  await t.step("updateChangeset sets the given columns only", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1), { status: "pending", info: "{}" }));
      ix.updateChangeset(csId(1), {
        status: "complete",
        completed: T2,
        chain: "cd".repeat(32),
        bytes_uploaded: BIG,
        files_uploaded: 3,
        error: null,
      });
      assert.deepEqual(
        csOut(ix.getChangeset(csId(1))),
        changeset(csId(1), {
          status: "complete",
          info: "{}",
          completed: T2,
          chain: "cd".repeat(32),
          bytes_uploaded: BIG,
          files_uploaded: 3,
        }),
      );
      ix.updateChangeset(csId(1), {});
      ix.updateChangeset(csId(1), { name: "renamed", info: null, host: "h2" });
      const r = csOut(ix.getChangeset(csId(1)))!;
      assert.equal(r.name, "renamed");
      assert.equal(r.host, "h2");
      assert.equal(r.info, null);
      assert.equal(r.completed, T2);
      // An unknown id changes nothing.
      ix.updateChangeset(csId(9), { status: "failed" });
      assert.equal(ix.getChangeset(csId(9)), undefined);
      assert.equal(ix.listChangesets().length, 1);
    });
  });

  await t.step("resolveChangeset: unique, ambiguous and unknown prefixes", async () => {
    await withIndex((ix) => {
      const a = "01AAAAAAAAAAAAAAAAAAAAAAA1";
      const b = "01AAAAAAAAAAAAAAAAAAAAAAB2";
      const c = "01BBBBBBBBBBBBBBBBBBBBBBB3";
      for (const id of [a, b, c]) ix.insertChangeset(changeset(id));
      assert.equal(ix.resolveChangeset("01aaaaaaaaaaaaaaaaaaaaaab").id, b);
      assert.equal(ix.resolveChangeset("01AAAAAAAAAAAAAAAAAAAAAAA").id, a);
      assert.equal(ix.resolveChangeset(a).id, a);
      assert.equal(ix.resolveChangeset(a.toLowerCase()).id, a);
      assert.equal(ix.resolveChangeset("01b").id, c);
      assert.deepEqual(csOut(ix.resolveChangeset("01B")), changeset(c));
      assert.throws(() => ix.resolveChangeset("01A"), /"01A" matches several changesets/);
      assert.throws(() => ix.resolveChangeset("01"), /matches several/);
      assert.throws(() => ix.resolveChangeset(""), /matches several/);
      assert.throws(() => ix.resolveChangeset("01C"), /no changeset matches "01C"/);
      assert.throws(() => ix.resolveChangeset(a + "0"), /no changeset matches/);
      assert.throws(() => ix.resolveChangeset("\u{1F600}"), /no changeset matches/);
    });
  });

  await t.step("listChangesets, lastComplete and incomplete, in insertion order", async () => {
    await withIndex((ix) => {
      // Inserted out of id order: the answers follow insertion (seq), not ids.
      const rows = [
        changeset(csId(5), { source: "s1", status: "complete" }),
        changeset(csId(3), { source: "s2", status: "pending" }),
        changeset(csId(4), { source: "s1", status: "uploading" }),
        changeset(csId(2), { source: "s1", status: "complete" }),
        changeset(csId(1), { source: "s1", status: "failed" }),
        changeset(csId(6), { source: "s2", status: "uploading" }),
      ];
      for (const r of rows) ix.insertChangeset(r);
      assert.deepEqual(ix.listChangesets().map(csOut), rows);
      const seqs = ix.listChangesets().map((r) => (r as unknown as { seq: number }).seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
      assert.equal(new Set(seqs).size, seqs.length);
      assert.deepEqual(
        ix.listChangesets("s1").map(csOut),
        rows.filter((r) => r.source === "s1"),
      );
      assert.deepEqual(ix.listChangesets("s3"), []);
      assert.deepEqual(csOut(ix.lastComplete("s1")), rows[3]);
      assert.equal(ix.lastComplete("s2"), undefined);
      assert.equal(ix.lastComplete("s3"), undefined);
      assert.deepEqual(ix.incomplete().map(csOut), [rows[1], rows[2], rows[5]]);
      assert.deepEqual(ix.incomplete("s2").map(csOut), [rows[1], rows[5]]);
      assert.deepEqual(ix.incomplete("s1").map(csOut), [rows[2]]);
      assert.deepEqual(ix.incomplete("s3"), []);
    });
  });

  await t.step("chain follows parents; chainOf reports holes and goes on past them", async () => {
    await withIndex((ix) => {
      const c1 = changeset(csId(1));
      const c2 = changeset(csId(2), { parent: csId(1) });
      const c3 = changeset(csId(3), { parent: csId(2) });
      // csId(4) is missing: c5's parent is a hole, and the chain goes on from c3.
      const c5 = changeset(csId(5), { parent: csId(4) });
      // A failed parent is a hole too.
      const c6 = changeset(csId(6), { parent: csId(5), status: "failed" });
      const c7 = changeset(csId(7), { parent: csId(6) });
      const other = changeset(csId(8), { source: "other", parent: null });
      for (const r of [c1, c2, c3, c5, c6, c7, other]) ix.insertChangeset(r);
      const ids = (rows: ChangesetRow[]) => rows.map((r) => r.id);

      assert.deepEqual(ix.chain("src").map(csOut), [c1, c2, c3, c5, c7]);
      assert.deepEqual(ids(ix.chain("src", csId(3))), [csId(1), csId(2), csId(3)]);
      assert.deepEqual(ids(ix.chain("src", csId(1))), [csId(1)]);
      assert.deepEqual(ix.chain("src", csId(99)), []);
      assert.deepEqual(ix.chain("nothing"), []);
      assert.deepEqual(ids(ix.chain("other")), [csId(8)]);

      let r = ix.chainOf(ix.getChangeset(csId(5))!);
      assert.deepEqual(ids(r.rows), [csId(1), csId(2), csId(3), csId(5)]);
      assert.deepEqual(r.holes, [csId(4)]);
      r = ix.chainOf(ix.getChangeset(csId(7))!);
      assert.deepEqual(r.rows.map(csOut), [c1, c2, c3, c5, c7]);
      assert.deepEqual(r.holes, [csId(6), csId(4)]);
      r = ix.chainOf(ix.getChangeset(csId(3))!);
      assert.deepEqual(ids(r.rows), [csId(1), csId(2), csId(3)]);
      assert.deepEqual(r.holes, []);
      r = ix.chainOf(ix.getChangeset(csId(1))!);
      assert.deepEqual(r.rows.map(csOut), [c1]);
      assert.deepEqual(r.holes, []);
      // A parent of another source is a hole too; the chain goes on from the newest complete
      // changeset of its own source that is older.
      ix.insertChangeset(changeset(csId(0, "01JGY"), { source: "third" }));
      ix.insertChangeset(changeset(csId(9), { source: "third", parent: csId(8) }));
      r = ix.chainOf(ix.getChangeset(csId(9))!);
      assert.deepEqual(ids(r.rows), [csId(0, "01JGY"), csId(9)]);
      assert.deepEqual(r.holes, [csId(8)]);
    });
  });

  await t.step("insertFile and getFile round-trip every column, exactly", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      const full = entry(csId(1), "docs/report é.pdf", {
        action: "write",
        file_hash: "ff".repeat(32),
        blob_id: "ee".repeat(32),
        size: BIG,
        mtime: 1767323045678,
        mode: 0o100644,
        inode: Number.MAX_SAFE_INTEGER,
        target: null,
        status: "confirmed",
        started: T0,
        confirmed: T1,
        stored_size: BIG + 99,
        ref: "ref/1",
        pack: "pack-1",
        pack_offset: BIG2,
        pack_length: BIG3,
        meta: JSON.stringify({
          uid: 1000,
          gid: 1000,
          nsec: 123456789,
          xattrs: { "user.x": "AA==" },
        }),
        ctime: "1767323045678123456",
        error: null,
      });
      ix.insertFile(full);
      assert.deepEqual(fileOut(ix.getFile(csId(1), full.path)), full);
      const link = entry(csId(1), "link", {
        action: "link",
        target: "../somewhere/\u{1F600}",
        mtime: -1234567,
        mode: 0o120777,
        inode: 0,
        size: 0,
        status: "failed",
        error: "could not read",
      });
      ix.insertFile(link);
      assert.deepEqual(fileOut(ix.getFile(csId(1), "link")), link);
      const bare = entry(csId(1), "bare");
      ix.insertFile(bare);
      assert.deepEqual(fileOut(ix.getFile(csId(1), "bare")), bare);
      assert.equal(ix.getFile(csId(1), "absent"), undefined);
      assert.equal(ix.getFile(csId(2), "bare"), undefined);
      assert.deepEqual(filesOut(ix.filesOf(csId(1))), [bare, full, link]);
      assert.deepEqual(ix.filesOf(csId(2)), []);
    });
  });

  await t.step("times come back as UTC ISO-8601 strings with Z", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1), { created: T0, completed: T1 }));
      ix.insertFile(
        entry(csId(1), "a", { status: "confirmed", started: T1, confirmed: T2, blob_id: "b" }),
      );
      const c = ix.getChangeset(csId(1))!;
      assert.equal(c.created, T0);
      assert.equal(c.completed, T1);
      const f = ix.getFile(csId(1), "a")!;
      assert.equal(f.started, T1);
      assert.equal(f.confirmed, T2);
      assert.equal(ix.blobConfirmed("b")!.confirmed, T2);
      assert.equal([...ix.settledEntriesOf(csId(1))][0].confirmed, T2);
      ix.settleFile(csId(1), "a", { status: "confirmed", confirmed: "2026-03-04T05:06:07.890Z" });
      assert.equal(ix.getFile(csId(1), "a")!.confirmed, "2026-03-04T05:06:07.890Z");
      ix.markLost([{ blobId: "b", why: "missing" }]);
      const [lost] = ix.lostBlobs();
      assert.match(lost.found, ISO_Z);
      assert.ok(Math.abs(Date.parse(lost.found) - Date.now()) < 24 * 3600_000);
      for (const v of [c.created, c.completed, f.started, f.confirmed, lost.found]) {
        assert.equal(typeof v, "string");
        assert.match(v!, ISO_Z);
      }
    });
  });

  await t.step("insertFile replaces the entry of the same changeset and path", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertChangeset(changeset(csId(2)));
      const first = entry(csId(1), "a", {
        status: "confirmed",
        file_hash: "h1",
        blob_id: "b1",
        size: 10,
        confirmed: T1,
        stored_size: 12,
        pack: "p",
        pack_offset: 5,
        pack_length: 12,
        meta: '{"uid":1}',
        error: "old",
      });
      ix.insertFile(first);
      ix.insertFile(entry(csId(2), "a", { size: 1 }));
      const second = entry(csId(1), "a", { action: "dir", mode: 0o40755 });
      ix.insertFile(second);
      // Every column is the new row's: none is kept from the one it replaced.
      assert.deepEqual(fileOut(ix.getFile(csId(1), "a")), second);
      assert.deepEqual(filesOut(ix.filesOf(csId(1))), [second]);
      // The same path of another changeset is another entry.
      assert.deepEqual(fileOut(ix.getFile(csId(2), "a")), entry(csId(2), "a", { size: 1 }));
      assert.equal(ix.blobConfirmed("b1"), undefined);
      // An entry needs its changeset.
      assert.throws(() => ix.insertFile(entry(csId(3), "a")));
      assert.deepEqual(ix.filesOf(csId(3)), []);
    });
  });

  await t.step("settleFile: given values, coalesced ones, and cleared ones", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      const planned = entry(csId(1), "a", {
        file_hash: "h0",
        blob_id: "b0",
        size: 10,
        mtime: 1000,
        mode: 0o100600,
        inode: 77,
        started: T0,
        confirmed: T0,
        stored_size: 5,
        ref: "r0",
        pack: "p0",
        pack_offset: 1,
        pack_length: 2,
        meta: "{}",
        ctime: "99",
        error: "e0",
      });
      ix.insertFile(planned);
      // Unset or null: file_hash … started keep their value; confirmed … error are cleared.
      ix.settleFile(csId(1), "a", { status: "present", size: null });
      assert.deepEqual(
        fileOut(ix.getFile(csId(1), "a")),
        {
          ...planned,
          status: "present",
          confirmed: null,
          stored_size: null,
          ref: null,
          pack: null,
          pack_offset: null,
          pack_length: null,
          error: null,
        },
      );
      ix.settleFile(csId(1), "a", {
        status: "confirmed",
        file_hash: "h1",
        blob_id: "b1",
        size: BIG,
        mtime: 2000,
        mode: 0o100644,
        inode: BIG3,
        started: T1,
        confirmed: T2,
        stored_size: BIG + 64,
        ref: "r1",
        pack: "p1",
        pack_offset: BIG2,
        pack_length: BIG3,
      });
      const settled = {
        ...planned,
        status: "confirmed" as const,
        file_hash: "h1",
        blob_id: "b1",
        size: BIG,
        mtime: 2000,
        mode: 0o100644,
        inode: BIG3,
        started: T1,
        confirmed: T2,
        stored_size: BIG + 64,
        ref: "r1",
        pack: "p1",
        pack_offset: BIG2,
        pack_length: BIG3,
        error: null,
      };
      assert.deepEqual(fileOut(ix.getFile(csId(1), "a")), settled);
      ix.settleFile(csId(1), "a", { status: "failed", error: "read error" });
      assert.deepEqual(fileOut(ix.getFile(csId(1), "a")), {
        ...settled,
        status: "failed",
        confirmed: null,
        stored_size: null,
        ref: null,
        pack: null,
        pack_offset: null,
        pack_length: null,
        error: "read error",
      });
      // An unknown entry: nothing happens.
      ix.settleFile(csId(1), "absent", { status: "confirmed", blob_id: "x" });
      ix.settleFile(csId(2), "a", { status: "confirmed", blob_id: "x" });
      assert.deepEqual(paths(ix.filesOf(csId(1))), ["a"]);
      assert.equal(ix.getFile(csId(1), "a")!.status, "failed");
    });
  });

  await t.step(
    "lost blobs: markLost, restoreLost, isLost, lostBlobs; settleFile confirmed clears",
    async () => {
      await withIndex((ix) => {
        ix.insertChangeset(changeset(csId(1)));
        ix.insertFile(entry(csId(1), "a", { blob_id: "b1", size: 1 }));
        ix.insertFile(entry(csId(1), "b", { blob_id: "b2", size: 2 }));
        ix.insertFile(entry(csId(1), "c", { blob_id: "b3", size: 3, status: "confirmed" }));
        ix.settleFile(csId(1), "a", { status: "confirmed", confirmed: T1 });
        assert.equal(ix.blobConfirmed("b1")!.confirmed, T1);
        assert.equal(ix.isLost("b1"), false);
        ix.markLost([
          { blobId: "b2", why: "damaged" },
          { blobId: "b1", why: "missing" },
          { blobId: "zz", why: "missing" },
        ]);
        assert.equal(ix.isLost("b1"), true);
        assert.equal(ix.isLost("b2"), true);
        assert.equal(ix.isLost("b3"), false);
        assert.equal(ix.blobConfirmed("b1"), undefined);
        assert.equal(ix.blobConfirmed("b3")!.confirmed, null);
        const lost = ix.lostBlobs().map(plain);
        assert.deepEqual(lost.map((l) => [l.blob_id, l.why]), [
          ["b1", "missing"],
          ["b2", "damaged"],
          ["zz", "missing"],
        ]);
        for (const l of lost) assert.match(l.found, ISO_Z);
        // Marking again replaces the reason.
        ix.markLost([{ blobId: "zz", why: "damaged" }]);
        assert.deepEqual(ix.lostBlobs().map((l) => [l.blob_id, l.why]), [
          ["b1", "missing"],
          ["b2", "damaged"],
          ["zz", "damaged"],
        ]);
        ix.markLost([]);
        assert.equal(ix.lostBlobs().length, 3);
        // Present is not stored anew: the blob stays lost.
        ix.settleFile(csId(1), "b", { status: "present" });
        assert.equal(ix.isLost("b2"), true);
        // Stored anew: no longer lost.
        ix.settleFile(csId(1), "a", { status: "confirmed", confirmed: T2 });
        assert.equal(ix.isLost("b1"), false);
        assert.equal(ix.blobConfirmed("b1")!.confirmed, T2);
        ix.settleFile(csId(1), "b", { status: "confirmed", confirmed: T2 });
        assert.equal(ix.isLost("b2"), false);
        assert.deepEqual(ix.lostBlobs().map((l) => l.blob_id), ["zz"]);
        // restoreLost records a blob as found at the time given.
        ix.restoreLost({ blob_id: "b1", found: T0, why: null });
        ix.restoreLost({ blob_id: "zz", found: T1, why: "copied" });
        assert.deepEqual(ix.lostBlobs().map(plain), [
          { blob_id: "b1", found: T0, why: null },
          { blob_id: "zz", found: T1, why: "copied" },
        ]);
        assert.equal(ix.isLost("b1"), true);
        assert.equal(ix.blobConfirmed("b1"), undefined);
      });
    },
  );

  await t.step(
    "filesOf sorts paths byte by byte (UTF-8), as SQLite's binary collation",
    async () => {
      await withIndex((ix) => {
        ix.insertChangeset(changeset(csId(1)));
        // Byte order: "B" (42) < "a" (61) < "é" (C3 A9) < "\u{1F600}" (F0 9F 98 80), unlike
        // locale order (a, B, é) and UTF-16 order (which puts U+1F600 before U+FFFF). Paths
        // stored escaped (lone surrogates, a leading U+FFFF) sort by their stored form, which
        // starts with U+FFFF (EF BF BF): after every other path below U+10000.
        const expected = [
          "A",
          "B",
          "Z",
          "_",
          "a",
          "a b",
          "a-b",
          "a/b",
          "a/b/c",
          "a0",
          "ab",
          "z",
          "~",
          "\u00e0",
          "\u00e9",
          "\u00e9a",
          "\u0101",
          "\u4e2d",
          "\uff21",
          "caf\udce9",
          "\uffff",
          "\uffffmarker",
          "\u{1F600}",
          "\u{1F600}/x",
        ];
        const shuffled = [...expected].reverse();
        [shuffled[0], shuffled[5]] = [shuffled[5], shuffled[0]];
        for (const p of shuffled) ix.insertFile(entry(csId(1), p, { status: "confirmed" }));
        assert.deepEqual(paths(ix.filesOf(csId(1))), expected);
        assert.deepEqual(paths(ix.iterateFilesOf(csId(1))), expected);
        assert.deepEqual(paths(ix.settledEntriesOf(csId(1))), expected);
        assert.deepEqual(paths(ix.findPaths(() => true)), expected);
        for (const p of expected) ix.settleFile(csId(1), p, { status: "pending" });
        assert.deepEqual(paths(ix.pendingFiles(csId(1))), expected);
        const paged: string[] = [];
        for (let after: string | null = null;;) {
          const page = ix.pendingFilesAfter(csId(1), after, 5);
          if (page.length === 0) break;
          paged.push(...paths(page));
          after = page[page.length - 1].path;
        }
        assert.deepEqual(paged, expected);
      });
    },
  );

  await t.step("paths that are not valid UTF-8 or start with U+FFFF round-trip", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertChangeset(changeset(csId(2), { parent: csId(1) }));
      const odd = [
        "caf\udce9",
        "dir/\udcff\udc80.bin",
        "\udcc3\udca9",
        "\uffff",
        "\uffffstarts-with-marker",
        "\uffff\udce9",
        'quote"back\\slash\u0001\n',
        "ok/é",
      ];
      const rows = odd.map((p, i) =>
        entry(csId(1), p, {
          status: "confirmed",
          file_hash: `h${i}`,
          blob_id: `b${i}`,
          size: i,
          target: i % 2 ? odd[(i + 1) % odd.length] : null,
          action: i % 2 ? "link" : "write",
        })
      );
      for (const r of rows) ix.insertFile(r);
      const sorted = [...rows].sort((a, b) => byteOrder(storedForm(a.path), storedForm(b.path)));
      assert.deepEqual(filesOut(ix.filesOf(csId(1))), sorted);
      assert.deepEqual(filesOut([...ix.iterateFilesOf(csId(1))]), sorted);
      for (const r of rows) {
        assert.deepEqual(fileOut(ix.getFile(csId(1), r.path)), r);
        assert.deepEqual(plain(ix.storedOf(csId(1), r.path)!), {
          file_hash: r.file_hash,
          blob_id: r.blob_id,
          pack: null,
          pack_offset: null,
          pack_length: null,
        });
      }
      // A lone surrogate is not the character U+FFFD, nor the bytes its escape spells.
      assert.equal(ix.getFile(csId(1), "caf\ufffd"), undefined);
      assert.equal(ix.getFile(csId(1), "\u00e9"), undefined);
      const state = ix.stateAt([ix.getChangeset(csId(1))!]);
      assert.deepEqual([...state.keys()].sort(), [...odd].sort());
      for (const r of rows) {
        assert.equal(state.get(r.path)!.target, r.target);
        assert.equal(state.get(r.path)!.size, r.size);
      }
      const restored = ix.restoreStateAt([ix.getChangeset(csId(1))!], (r) => r.target);
      assert.deepEqual(
        new Map([...restored].sort()),
        new Map(rows.map((r) => [r.path, r.target] as const).sort()),
      );
      const found: string[] = [];
      for (const r of ix.findPaths((p) => !p.isWellFormed())) found.push(r.path);
      assert.deepEqual(found.sort(), odd.filter((p) => !p.isWellFormed()).sort());
      assert.deepEqual(
        paths(ix.settledEntriesOf(csId(1))).sort(),
        [...odd].sort(),
      );

      // Settling, paging and deleting by such paths.
      for (const p of odd) ix.insertFile(entry(csId(2), p, { size: 1 }));
      const paged: string[] = [];
      for (let after: string | null = null;;) {
        const page = ix.pendingFilesAfter(csId(2), after, 3);
        if (page.length === 0) break;
        paged.push(...paths(page));
        after = page[page.length - 1].path;
      }
      assert.deepEqual(paged, paths(sorted));
      ix.settleFile(csId(2), "caf\udce9", { status: "confirmed", blob_id: "new" });
      assert.equal(ix.getFile(csId(2), "caf\udce9")!.blob_id, "new");
      assert.equal(ix.getFile(csId(2), "caf\ufffd"), undefined);
      ix.insertFile(entry(csId(2), "\uffff", { action: "delete", status: "confirmed" }));
      const chainState = ix.stateAt([ix.getChangeset(csId(1))!, ix.getChangeset(csId(2))!]);
      assert.equal(chainState.has("\uffff"), false);
      assert.equal(chainState.get("caf\udce9")!.changeset, csId(2));
      assert.equal(chainState.get("\uffff\udce9")!.changeset, csId(1));
      // A hard link named so, resolved by its name.
      ix.insertFile(
        entry(csId(2), "\udcfflink", {
          action: "hardlink",
          target: "caf\udce9",
          status: "confirmed",
        }),
      );
      assert.deepEqual(paths(ix.unresolvedHardlinks(csId(2))), ["\udcfflink"]);
      ix.resolveHardlink(csId(2), "\udcfflink", ix.getFile(csId(2), "caf\udce9")!);
      assert.deepEqual(ix.unresolvedHardlinks(csId(2)), []);
      assert.equal(ix.getFile(csId(2), "\udcfflink")!.target, "caf\udce9");
      assert.equal(ix.getFile(csId(2), "\udcfflink")!.blob_id, "new");
    });
  });

  await t.step("pendingFilesAfter pages through pending entries only", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1), { status: "uploading" }));
      ix.insertChangeset(changeset(csId(2), { status: "uploading" }));
      const all = manyEntries(csId(1), 60);
      all.forEach((r, i) => {
        if (i % 4 === 1) r.status = "confirmed";
        if (i % 4 === 2) r.status = "present";
        if (i % 8 === 3) r.status = "failed";
      });
      ix.tx(() => all.forEach((r) => ix.insertFile(r)));
      ix.insertFile(entry(csId(2), "f/000001"));
      const pending = all.filter((r) => r.status === "pending").map((r) => r.path).sort();
      const got: string[] = [];
      let pages = 0;
      for (let after: string | null = null;; pages++) {
        const page = ix.pendingFilesAfter(csId(1), after, 7);
        assert.ok(page.length <= 7);
        if (page.length === 0) break;
        for (const r of page) assert.equal(r.status, "pending");
        assert.ok(page.every((r) => r.changeset === csId(1)));
        got.push(...paths(page));
        after = page[page.length - 1].path;
      }
      assert.deepEqual(got, pending);
      assert.equal(pages, Math.ceil(pending.length / 7));
      assert.deepEqual(paths(ix.pendingFilesAfter(csId(1), "f/000030", 3)), [
        ...pending.filter((p) => p > "f/000030").slice(0, 3),
      ]);
      assert.deepEqual(ix.pendingFilesAfter(csId(1), "g", 10), []);
      assert.deepEqual(paths(ix.pendingFilesAfter(csId(1), "", 2)), pending.slice(0, 2));
      assert.deepEqual(ix.pendingFilesAfter(csId(3), null, 10), []);
      assert.deepEqual(
        filesOut(ix.pendingFiles(csId(1))),
        filesOut(ix.pendingFilesAfter(csId(1), null, 1000)),
      );
    });
  });

  await t.step("pendingFiles and pendingTotals", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertChangeset(changeset(csId(2)));
      const rows = [
        entry(csId(1), "d", { size: BIG }),
        entry(csId(1), "a", { size: BIG2 }),
        entry(csId(1), "c", { size: null, action: "dir" }),
        entry(csId(1), "b", { size: 5, status: "confirmed" }),
        entry(csId(1), "e", { size: 7, status: "failed" }),
        entry(csId(2), "a", { size: 1 }),
      ];
      for (const r of rows) ix.insertFile(r);
      assert.deepEqual(filesOut(ix.pendingFiles(csId(1))), [rows[1], rows[2], rows[0]]);
      assert.deepEqual(ix.pendingTotals(csId(1)), { files: 3, bytes: BIG + BIG2 });
      assert.deepEqual(ix.pendingTotals(csId(2)), { files: 1, bytes: 1 });
      assert.deepEqual(ix.pendingTotals(csId(3)), { files: 0, bytes: 0 });
      assert.deepEqual(ix.pendingFiles(csId(3)), []);
      ix.insertChangeset(changeset(csId(4)));
      ix.insertFile(entry(csId(4), "x", { size: null }));
      assert.deepEqual(ix.pendingTotals(csId(4)), { files: 1, bytes: 0 });
    });
  });

  await t.step("settledEntriesOf: settled entries, in path order, with their columns", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      const rows = [
        entry(csId(1), "c", {
          status: "confirmed",
          file_hash: "h",
          blob_id: "b",
          size: BIG,
          mtime: 5,
          mode: 0o644,
          confirmed: T1,
          pack: "p",
          pack_offset: BIG2,
          pack_length: BIG3,
          meta: '{"gid":5}',
          inode: 9,
          ctime: "1",
          started: T0,
          stored_size: 4,
          ref: "r",
        }),
        entry(csId(1), "a", { status: "present", action: "link", target: "c" }),
        entry(csId(1), "b", { status: "pending" }),
        entry(csId(1), "d", { status: "failed" }),
        entry(csId(1), "e", { status: "confirmed", action: "delete" }),
      ];
      for (const r of rows) ix.insertFile(r);
      const cols = [
        "path",
        "action",
        "file_hash",
        "blob_id",
        "size",
        "mtime",
        "mode",
        "target",
        "confirmed",
        "pack",
        "pack_offset",
        "pack_length",
        "meta",
      ] as const;
      const pick = (r: FileRow) => Object.fromEntries(cols.map((c) => [c, r[c]]));
      assert.deepEqual([...ix.settledEntriesOf(csId(1))].map(plain), [
        pick(rows[1]),
        pick(rows[0]),
        pick(rows[4]),
      ]);
      assert.deepEqual([...ix.settledEntriesOf(csId(2))], []);
    });
  });

  await t.step("unresolvedHardlinks and resolveHardlink", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      const lead = entry(csId(1), "lead", {
        status: "confirmed",
        file_hash: "hh",
        blob_id: "bb",
        size: BIG,
        pack: "pk",
        pack_offset: BIG2,
        pack_length: BIG3,
        mode: 0o644,
      });
      const h1 = entry(csId(1), "h1", { action: "hardlink", target: "lead", status: "confirmed" });
      const h0 = entry(csId(1), "h0", { action: "hardlink", target: "lead", status: "confirmed" });
      const pending = entry(csId(1), "h2", { action: "hardlink", target: "lead" });
      const done = entry(csId(1), "h3", {
        action: "hardlink",
        target: "lead",
        status: "confirmed",
        blob_id: "bb",
      });
      for (const r of [lead, h1, h0, pending, done]) ix.insertFile(r);
      const unresolved = filesOut(ix.unresolvedHardlinks(csId(1)));
      assert.deepEqual(
        unresolved.sort((a, b) => byteOrder(a.path, b.path)),
        [h0, h1],
      );
      ix.resolveHardlink(csId(1), "h1", ix.getFile(csId(1), "lead")!);
      assert.deepEqual(fileOut(ix.getFile(csId(1), "h1")), {
        ...h1,
        file_hash: "hh",
        blob_id: "bb",
        size: BIG,
        pack: "pk",
        pack_offset: BIG2,
        pack_length: BIG3,
      });
      assert.deepEqual(filesOut(ix.unresolvedHardlinks(csId(1))), [h0]);
      ix.resolveHardlink(csId(1), "h0", lead);
      assert.deepEqual(ix.unresolvedHardlinks(csId(1)), []);
      assert.deepEqual(ix.unresolvedHardlinks(csId(2)), []);
      // Resolving an unknown entry changes nothing.
      ix.resolveHardlink(csId(1), "absent", lead);
      assert.equal(ix.filesOf(csId(1)).length, 5);
    });
  });

  await t.step("blobConfirmed: where and when a confirmed blob is stored", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertFile(
        entry(csId(1), "a", {
          status: "confirmed",
          blob_id: "b1",
          confirmed: T1,
          stored_size: BIG,
          ref: "objects/b1",
          pack: "pk1",
          pack_offset: BIG2,
          pack_length: BIG3,
          size: 1,
        }),
      );
      ix.insertFile(entry(csId(1), "b", { status: "present", blob_id: "b2", confirmed: T1 }));
      ix.insertFile(entry(csId(1), "c", { status: "pending", blob_id: "b3" }));
      ix.insertFile(entry(csId(1), "d", { status: "failed", blob_id: "b4" }));
      assert.deepEqual(plain(ix.blobConfirmed("b1")!), {
        confirmed: T1,
        stored_size: BIG,
        ref: "objects/b1",
        pack: "pk1",
        pack_offset: BIG2,
        pack_length: BIG3,
      });
      for (const b of ["b2", "b3", "b4", "b5", ""]) assert.equal(ix.blobConfirmed(b), undefined);
      ix.markLost([{ blobId: "b1", why: "missing" }]);
      assert.equal(ix.blobConfirmed("b1"), undefined);
    });
  });

  await t.step("stateAt: the newest settled entry of each path along a chain", async () => {
    await withIndex((ix) => {
      const c1 = changeset(csId(1));
      const c2 = changeset(csId(2), { parent: csId(1) });
      ix.insertChangeset(c1);
      ix.insertChangeset(c2);
      const settled = { status: "confirmed" as const };
      const rows1 = [
        entry(csId(1), "a", {
          ...settled,
          blob_id: "a1",
          size: BIG,
          mtime: 1767323045678,
          inode: BIG2,
          mode: 0o100644,
          ctime: "1767323045678000001",
        }),
        entry(csId(1), "b", { status: "present", blob_id: "b1", size: 2, mtime: -5 }),
        entry(csId(1), "d", { ...settled, action: "dir", mode: 0o40755 }),
        entry(csId(1), "l", { ...settled, action: "link", target: "a" }),
        entry(csId(1), "p", { status: "pending", blob_id: "p1", size: 1 }),
        entry(csId(1), "s", { ...settled, action: "special", mode: 0o10644 }),
      ];
      const rows2 = [
        entry(csId(2), "a", { ...settled, blob_id: "a2", size: 3, mtime: 9 }),
        entry(csId(2), "b", { ...settled, action: "delete" }),
        entry(csId(2), "l", { status: "failed", action: "link", target: "zzz" }),
        entry(csId(2), "h", { ...settled, action: "hardlink", target: "a", blob_id: "a2" }),
        entry(csId(2), "p", { status: "pending", blob_id: "p2" }),
        entry(csId(2), "n", { ...settled, blob_id: "n2", size: 0 }),
      ];
      for (const r of [...rows1, ...rows2]) ix.insertFile(r);
      const stateOf = (r: FileRow): PathState & { path: string } => ({
        path: r.path,
        action: r.action,
        size: r.size,
        mtime: r.mtime,
        inode: r.inode,
        mode: r.mode,
        target: r.target,
        changeset: r.changeset,
        ctime: r.ctime,
      });
      const asObject = (m: Map<string, PathState>) =>
        Object.fromEntries([...m].map(([k, v]) => [k, plain(v)]));
      assert.deepEqual(asObject(ix.stateAt([c1])), {
        a: stateOf(rows1[0]),
        b: stateOf(rows1[1]),
        d: stateOf(rows1[2]),
        l: stateOf(rows1[3]),
        s: stateOf(rows1[5]),
      });
      const both = {
        a: stateOf(rows2[0]),
        d: stateOf(rows1[2]),
        l: stateOf(rows1[3]),
        s: stateOf(rows1[5]),
        h: stateOf(rows2[3]),
        n: stateOf(rows2[5]),
      };
      assert.deepEqual(asObject(ix.stateAt([c1, c2])), both);
      assert.deepEqual(asObject(ix.stateAt([])), {});
      // A lost blob's entries are left out: its path falls back to the older entry.
      ix.markLost([{ blobId: "a2", why: "missing" }]);
      const { h: _h, ...withoutH } = both;
      assert.deepEqual(asObject(ix.stateAt([c1, c2])), { ...withoutH, a: stateOf(rows1[0]) });
    });
  });

  await t.step("storedOf: an entry's content and location", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertFile(
        entry(csId(1), "a", {
          file_hash: "fh",
          blob_id: "bl",
          pack: "pk",
          pack_offset: BIG2,
          pack_length: BIG3,
          status: "pending",
        }),
      );
      ix.insertFile(entry(csId(1), "e"));
      assert.deepEqual(plain(ix.storedOf(csId(1), "a")!), {
        file_hash: "fh",
        blob_id: "bl",
        pack: "pk",
        pack_offset: BIG2,
        pack_length: BIG3,
      });
      assert.deepEqual(plain(ix.storedOf(csId(1), "e")!), {
        file_hash: null,
        blob_id: null,
        pack: null,
        pack_offset: null,
        pack_length: null,
      });
      assert.equal(ix.storedOf(csId(1), "absent"), undefined);
      assert.equal(ix.storedOf(csId(2), "a"), undefined);
    });
  });

  await t.step("restoreStateAt: what a restore needs, made as it is read", async () => {
    await withIndex((ix) => {
      const c1 = changeset(csId(1));
      const c2 = changeset(csId(2), { parent: csId(1) });
      ix.insertChangeset(c1);
      ix.insertChangeset(c2);
      const a1 = entry(csId(1), "a", {
        status: "confirmed",
        file_hash: "h",
        blob_id: "b",
        size: BIG,
        mtime: 7,
        mode: 0o644,
        pack: "p",
        pack_offset: BIG2,
        pack_length: BIG3,
        meta: '{"uid":0}',
        inode: 3,
        ctime: "4",
        confirmed: T1,
      });
      const b1 = entry(csId(1), "b", { status: "present", action: "link", target: "a" });
      const c1e = entry(csId(1), "c", { status: "confirmed", action: "dir", mode: 0o755 });
      const p1 = entry(csId(1), "p", { status: "pending" });
      const b2 = entry(csId(2), "b", { status: "confirmed", action: "delete" });
      const c2e = entry(csId(2), "c", { status: "failed", action: "dir", mode: 0o700 });
      const d2 = entry(csId(2), "d", { status: "present", blob_id: "b", size: BIG });
      for (const r of [a1, b1, c1e, p1, b2, c2e, d2]) ix.insertFile(r);
      const cols = [
        "path",
        "action",
        "file_hash",
        "blob_id",
        "size",
        "mtime",
        "mode",
        "target",
        "pack",
        "pack_offset",
        "pack_length",
        "meta",
      ] as const;
      const pick = (r: FileRow) => Object.fromEntries(cols.map((c) => [c, r[c]]));
      const seen: string[] = [];
      const state = ix.restoreStateAt([c1, c2], (r) => {
        seen.push(r.path);
        return plain(r);
      });
      assert.deepEqual(Object.fromEntries(state), { a: pick(a1), c: pick(c1e), d: pick(d2) });
      assert.deepEqual(seen.sort(), ["a", "b", "c", "d"]);
      assert.deepEqual(
        Object.fromEntries(ix.restoreStateAt([c1], (r) => r.size)),
        { a: BIG, b: null, c: null },
      );
      assert.equal(ix.restoreStateAt([], (r) => r).size, 0);
    });
  });

  await t.step("counts and setStatus", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1), { status: "uploading", files_planned: 9 }));
      ix.insertChangeset(changeset(csId(2), { status: "pending" }));
      const rows = [
        entry(csId(1), "w1", { status: "confirmed", size: 100 }),
        entry(csId(1), "w2", { status: "confirmed", size: BIG }),
        entry(csId(1), "w3", { status: "present", size: 7 }),
        entry(csId(1), "w4", { status: "failed", size: 3 }),
        entry(csId(1), "w5", { status: "pending", size: 5 }),
        entry(csId(1), "d", { status: "confirmed", action: "dir" }),
        entry(csId(1), "l", { status: "confirmed", action: "link", target: "w1" }),
        entry(csId(1), "h", { status: "confirmed", action: "hardlink", size: 100 }),
        entry(csId(1), "x", { status: "confirmed", action: "delete" }),
      ];
      for (const r of rows) ix.insertFile(r);
      assert.deepEqual(ix.counts(csId(1)), {
        files: 9,
        bytes: BIG + 115,
        uploaded: 2,
        present: 1,
        failed: 1,
        pending: 1,
        uploadedBytes: BIG + 100,
      });
      const empty = {
        files: 0,
        bytes: 0,
        uploaded: 0,
        present: 0,
        failed: 0,
        pending: 0,
        uploadedBytes: 0,
      };
      assert.deepEqual(ix.counts(csId(2)), empty);
      assert.deepEqual(ix.counts(csId(3)), empty);
      ix.setStatus(csId(1), "complete", { completed: T2, chain: "00".repeat(32) });
      assert.deepEqual(
        csOut(ix.getChangeset(csId(1))),
        changeset(csId(1), {
          status: "complete",
          files_planned: 9,
          files_uploaded: 2,
          bytes_uploaded: BIG + 100,
          completed: T2,
          chain: "00".repeat(32),
          counts: JSON.stringify(ix.counts(csId(1))),
        }),
      );
      // A finished changeset keeps its counts: listing it reads them, not its entries.
      assert.deepEqual(ix.summaryCounts(ix.getChangeset(csId(1))!), ix.counts(csId(1)));
      ix.setStatus(csId(2), "failed", { error: "stopped" });
      assert.deepEqual(
        csOut(ix.getChangeset(csId(2))),
        changeset(csId(2), {
          status: "failed",
          error: "stopped",
          counts: JSON.stringify(ix.counts(csId(2))),
        }),
      );
      // Extra fields win over the counts; an unfinished changeset keeps none (they change).
      ix.setStatus(csId(1), "uploading", { files_uploaded: 1 });
      assert.equal(ix.getChangeset(csId(1))!.files_uploaded, 1);
      assert.equal(ix.getChangeset(csId(1))!.bytes_uploaded, BIG + 100);
      assert.equal(ix.getChangeset(csId(1))!.counts, null);
    });
  });

  await t.step("findPaths: settled entries, oldest changeset first, then by path", async () => {
    await withIndex((ix) => {
      // Inserted in the order 2, 1: changeset 2 is older (lower seq).
      ix.insertChangeset(changeset(csId(2)));
      ix.insertChangeset(changeset(csId(1)));
      ix.insertFile(entry(csId(1), "docs/b", { status: "confirmed", size: BIG }));
      ix.insertFile(entry(csId(1), "docs/a", { status: "present" }));
      ix.insertFile(entry(csId(1), "docs/p", { status: "pending" }));
      ix.insertFile(entry(csId(2), "docs/z", { status: "confirmed" }));
      ix.insertFile(entry(csId(2), "docs/f", { status: "failed" }));
      ix.insertFile(entry(csId(2), "src/x", { status: "confirmed" }));
      const seen: string[] = [];
      const found = [...ix.findPaths((p) => {
        seen.push(p);
        return p.startsWith("docs/");
      })];
      assert.deepEqual(found.map((r) => [r.changeset, r.path]), [
        [csId(2), "docs/z"],
        [csId(1), "docs/a"],
        [csId(1), "docs/b"],
      ]);
      assert.deepEqual(seen, ["docs/z", "src/x", "docs/a", "docs/b"]);
      const seqs = found.map((r) => r.seq);
      assert.equal(typeof seqs[0], "number");
      assert.ok(seqs[0] < seqs[1] && seqs[1] === seqs[2]);
      const { seq: _, ...row } = found[2];
      assert.deepEqual(fileOut(row), entry(csId(1), "docs/b", { status: "confirmed", size: BIG }));
      assert.deepEqual([...ix.findPaths(() => false)], []);
      // Text the paths must hold is looked for by the database, case and all; `match` sees
      // only what holds it.
      seen.length = 0;
      const narrowed = [...ix.findPaths((p) => (seen.push(p), true), "cs/")];
      assert.deepEqual(narrowed.map((r) => r.path), ["docs/z", "docs/a", "docs/b"]);
      assert.deepEqual(seen, ["docs/z", "docs/a", "docs/b"]);
      assert.deepEqual([...ix.findPaths(() => true, "DOCS")], []);
      assert.deepEqual([...ix.findPaths(() => true, "src/x")].map((r) => r.path), ["src/x"]);
    });
  });

  await t.step("confirmedBlobs: each confirmed blob and pack once", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertChangeset(changeset(csId(2)));
      const ok = { status: "confirmed" as const };
      ix.insertFile(entry(csId(2), "a", { ...ok, blob_id: "b1", stored_size: 10 }));
      ix.insertFile(entry(csId(1), "a", { ...ok, blob_id: "b1", stored_size: 8 }));
      ix.insertFile(entry(csId(2), "b", { ...ok, blob_id: "b2", pack: "p1", stored_size: BIG }));
      ix.insertFile(entry(csId(1), "b", { ...ok, blob_id: "b2", pack: "p2", stored_size: 30 }));
      ix.insertFile(entry(csId(1), "c", { status: "present", blob_id: "b3" }));
      ix.insertFile(entry(csId(1), "d", { status: "pending", blob_id: "b4" }));
      ix.insertFile(entry(csId(1), "e", { ...ok, action: "dir" }));
      ix.insertFile(entry(csId(2), "f", { ...ok, blob_id: "b5" }));
      const got = [...ix.confirmedBlobs()].map(plain).sort((x, y) =>
        byteOrder(x.blob_id + "/" + x.pack, y.blob_id + "/" + y.pack)
      );
      assert.deepEqual(got, [
        { blob_id: "b1", stored_size: 8, pack: null, changeset: csId(1) },
        { blob_id: "b2", stored_size: BIG, pack: "p1", changeset: csId(2) },
        { blob_id: "b2", stored_size: 30, pack: "p2", changeset: csId(1) },
        { blob_id: "b5", stored_size: null, pack: null, changeset: csId(2) },
      ]);
    });
  });

  await t.step("tx commits, gives back the result, and rolls back on a throw", async () => {
    await withIndex((ix) => {
      assert.equal(
        ix.tx(() => {
          ix.insertChangeset(changeset(csId(1)));
          ix.insertFile(entry(csId(1), "a"));
          return 42;
        }),
        42,
      );
      assert.equal(ix.filesOf(csId(1)).length, 1);
      const stop = new Error("stop here");
      assert.throws(
        () =>
          ix.tx(() => {
            ix.insertChangeset(changeset(csId(2)));
            ix.insertFile(entry(csId(2), "x"));
            ix.insertFile(entry(csId(1), "b"));
            ix.settleFile(csId(1), "a", { status: "confirmed", blob_id: "b" });
            ix.setMeta("k", "v");
            throw stop;
          }),
        (e) => e === stop,
      );
      assert.equal(ix.getChangeset(csId(2)), undefined);
      assert.deepEqual(ix.filesOf(csId(2)), []);
      assert.deepEqual(paths(ix.filesOf(csId(1))), ["a"]);
      assert.equal(ix.getFile(csId(1), "a")!.status, "pending");
      assert.equal(ix.getMeta("k"), undefined);
      // A statement that fails rolls the whole transaction back too.
      assert.throws(() =>
        ix.tx(() => {
          ix.insertChangeset(changeset(csId(3)));
          ix.insertChangeset(changeset(csId(1)));
        })
      );
      assert.equal(ix.getChangeset(csId(3)), undefined);
      // Transactions do not nest: the inner one throws, and the outer one rolls back whole
      // (PostgreSQL alone would commit the outer work at the inner COMMIT).
      assert.throws(
        () =>
          ix.tx(() => {
            ix.insertChangeset(changeset(csId(4)));
            ix.markLost([{ blobId: "lost", why: "test" }]);
          }),
        /cannot start a transaction within a transaction/,
      );
      assert.equal(ix.getChangeset(csId(4)), undefined);
      assert.deepEqual(ix.lostBlobs(), []);
      // The index goes on working.
      ix.tx(() => ix.insertChangeset(changeset(csId(3))));
      assert.deepEqual(ix.listChangesets().map((r) => r.id), [csId(1), csId(3)]);
      assert.deepEqual(ix.integrityCheck(), ["ok"]);
    });
  });

  for (const count of [1_500, 4_000, 4_500]) {
    await t.step(`iterateFilesOf gives ${count} entries whole and in order`, async () => {
      await withIndex((ix) => {
        ix.insertChangeset(changeset(csId(1)));
        ix.insertChangeset(changeset(csId(2)));
        const rows = manyEntries(csId(1), count, { status: "confirmed", mtime: BIG });
        ix.tx(() => {
          for (const r of rows) ix.insertFile(r);
          ix.insertFile(entry(csId(2), "f/000000"));
        });
        const expected = paths(rows).sort();
        let i = 0;
        for (const r of ix.iterateFilesOf(csId(1))) {
          assert.equal(r.path, expected[i]);
          assert.equal(r.size, Number(r.path.slice(2)));
          assert.equal(r.mtime, BIG);
          i++;
        }
        assert.equal(i, count);
        assert.deepEqual(paths(ix.settledEntriesOf(csId(1))), expected);
        const state = ix.stateAt([ix.getChangeset(csId(1))!]);
        assert.equal(state.size, count);
        assert.equal(ix.restoreStateAt([ix.getChangeset(csId(1))!], (r) => r.size).size, count);
        assert.equal([...ix.findPaths(() => true)].length, count);
        assert.equal([...ix.confirmedBlobs()].length, 0);
      });
    });
  }

  await t.step("iterations stopped early, interleaved, or writing as they go", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.insertChangeset(changeset(csId(2)));
      const rows1 = manyEntries(csId(1), 4_100);
      const rows2 = manyEntries(csId(2), 2_100);
      ix.tx(() => [...rows1, ...rows2].forEach((r) => ix.insertFile(r)));
      // Stopped after a few rows, many times over: every stop leaves the index usable.
      for (let k = 0; k < 20; k++) {
        let seen = 0;
        for (const _ of ix.iterateFilesOf(csId(1))) if (++seen === 3) break;
        assert.equal(seen, 3);
      }
      let seen = 0;
      for (const _ of ix.iterateFilesOf(csId(1))) if (++seen === 2_500) break;
      assert.equal(ix.filesOf(csId(2)).length, 2_100);
      // Two at once.
      const a = ix.iterateFilesOf(csId(1));
      const b = ix.iterateFilesOf(csId(2));
      const gotA: string[] = [];
      const gotB: string[] = [];
      for (;;) {
        const x = a.next();
        const y = b.next();
        if (!x.done) gotA.push(x.value.path);
        if (!y.done) gotB.push(y.value.path);
        if (x.done && y.done) break;
      }
      assert.deepEqual(gotA, paths(rows1).sort());
      assert.deepEqual(gotB, paths(rows2).sort());
      // Writing each entry as it is read.
      let settled = 0;
      for (const r of ix.iterateFilesOf(csId(1))) {
        ix.settleFile(csId(1), r.path, { status: "confirmed", blob_id: `b${r.path}` });
        settled++;
      }
      assert.equal(settled, rows1.length);
      assert.deepEqual(ix.pendingTotals(csId(1)), { files: 0, bytes: 0 });
      assert.equal(ix.counts(csId(1)).uploaded, rows1.length);
      assert.deepEqual(ix.integrityCheck(), ["ok"]);
    });
  });

  await t.step(
    "a large answer (5,000 entries with 1 KiB of meta each) comes back whole",
    async () => {
      await withIndex((ix) => {
        ix.insertChangeset(changeset(csId(1)));
        // Meta of 1 KiB with characters of 2, 3 and 4 bytes, so that an answer cut into pieces
        // is cut inside characters too.
        const metaOf = (i: number) => {
          const head = JSON.stringify({ i, user: "é中\u{1F600}".repeat((i % 7) + 1) });
          return head + " ".repeat(1024 - head.length);
        };
        const rows = manyEntries(csId(1), 5_000).map((r, i) => ({
          ...r,
          meta: metaOf(i),
          size: BIG + i,
        }));
        ix.tx(() => rows.forEach((r) => ix.insertFile(r)));
        const sorted = [...rows].sort((x, y) => byteOrder(x.path, y.path));
        const got = filesOut(ix.filesOf(csId(1)));
        assert.equal(got.length, 5_000);
        assert.deepEqual(got, sorted);
        assert.deepEqual(filesOut(ix.pendingFiles(csId(1))), sorted);
        assert.deepEqual(
          filesOut(ix.pendingFilesAfter(csId(1), null, 4_999)),
          sorted.slice(0, 4_999),
        );
        assert.deepEqual(filesOut([...ix.iterateFilesOf(csId(1))]), sorted);
      });
    },
  );

  await t.step("integrityCheck is ok after all kinds of writes", async () => {
    await withIndex((ix) => {
      ix.insertChangeset(changeset(csId(1)));
      ix.tx(() => manyEntries(csId(1), 300).forEach((r) => ix.insertFile(r)));
      ix.markLost([{ blobId: "x", why: "missing" }]);
      ix.setMeta("a", "b");
      ix.updateChangeset(csId(1), { status: "complete" });
      assert.deepEqual(ix.integrityCheck(), ["ok"]);
      ix.shrinkMemory();
      assert.equal(ix.filesOf(csId(1)).length, 300);
    });
  });
}

/** The form a path is stored in (the index's toDb): escaped behind U+FFFF, or as it is. */
function storedForm(s: string): string {
  if (s.isWellFormed() && s.charCodeAt(0) !== 0xffff) return s;
  return "\uffff" + JSON.stringify(s).slice(1, -1);
}
