// The index: the changesets and files tables, on SQLite (node:sqlite, built into Deno, in WAL
// mode, every time in UTC ISO-8601) or on PostgreSQL (through lib/index/postgres/, every time a
// timestamptz). Statements are written once, in SQLite's form; the PostgreSQL client rewrites
// the few places where the two differ. The schema version lives in the meta table of both.

import { DatabaseSync } from "node:sqlite";
import { openGuarded } from "./errors.ts";
import { preparePrivateFile, warnOnStderr } from "./files.ts";
import { displayUrl, PgDatabase } from "./postgres/client.ts";
import type { Dialect, SqlDatabase, SqlStatement } from "./sql.ts";
import type {
  ChangesetRow,
  ChangesetStatus,
  FileRow,
  PathState,
  StoredBlob,
  UploadStatus,
} from "./types.ts";

/** Version of the schema below; bumped with every change, which `migrate` then makes. */
export const SCHEMA_VERSION = 3;

/** The tables as SQLite holds them. */
const SQLITE_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changesets (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  name TEXT,
  source TEXT NOT NULL,
  client TEXT NOT NULL,
  root TEXT,
  parent TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending','uploading','complete','failed')),
  files_planned INTEGER NOT NULL DEFAULT 0,
  bytes_planned INTEGER NOT NULL DEFAULT 0,
  files_uploaded INTEGER NOT NULL DEFAULT 0,
  bytes_uploaded INTEGER NOT NULL DEFAULT 0,
  created TEXT NOT NULL,
  completed TEXT,
  error TEXT,
  chain TEXT,
  info TEXT,
  host TEXT,
  counts TEXT
);
CREATE INDEX IF NOT EXISTS changesets_source ON changesets(source, seq);
CREATE TABLE IF NOT EXISTS files (
  changeset TEXT NOT NULL REFERENCES changesets(id),
  path TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('write','link','dir','special','hardlink','delete')),
  file_hash TEXT,
  blob_id TEXT,
  size INTEGER,
  mtime INTEGER,
  mode INTEGER,
  inode INTEGER,
  target TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending','confirmed','present','failed')),
  started TEXT,
  confirmed TEXT,
  stored_size INTEGER,
  ref TEXT,
  pack TEXT,
  pack_offset INTEGER,
  pack_length INTEGER,
  meta TEXT,
  ctime TEXT,
  error TEXT,
  claim TEXT,
  lease TEXT,
  UNIQUE (changeset, path)
);
CREATE INDEX IF NOT EXISTS files_blob ON files(blob_id);
CREATE TABLE IF NOT EXISTS lost_blobs (blob_id TEXT PRIMARY KEY, found TEXT NOT NULL, why TEXT);
`;

/**
 * The same tables on PostgreSQL: times are timestamptz (the database's clock writes `created`
 * when none is given), counts bigint, and ids and paths compare byte by byte (COLLATE "C"), as
 * SQLite compares them, whatever the database's locale.
 */
const POSTGRES_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changesets (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT COLLATE "C" NOT NULL UNIQUE,
  name TEXT,
  source TEXT COLLATE "C" NOT NULL,
  client TEXT NOT NULL,
  root TEXT,
  parent TEXT COLLATE "C",
  status TEXT NOT NULL CHECK (status IN ('pending','uploading','complete','failed')),
  files_planned BIGINT NOT NULL DEFAULT 0,
  bytes_planned BIGINT NOT NULL DEFAULT 0,
  files_uploaded BIGINT NOT NULL DEFAULT 0,
  bytes_uploaded BIGINT NOT NULL DEFAULT 0,
  created TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed TIMESTAMPTZ,
  error TEXT,
  chain TEXT,
  info TEXT,
  host TEXT,
  counts TEXT
);
CREATE INDEX IF NOT EXISTS changesets_source ON changesets(source, seq);
CREATE TABLE IF NOT EXISTS files (
  changeset TEXT COLLATE "C" NOT NULL REFERENCES changesets(id),
  path TEXT COLLATE "C" NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('write','link','dir','special','hardlink','delete')),
  file_hash TEXT,
  blob_id TEXT COLLATE "C",
  size BIGINT,
  mtime BIGINT,
  mode BIGINT,
  inode BIGINT,
  target TEXT COLLATE "C",
  status TEXT NOT NULL CHECK (status IN ('pending','confirmed','present','failed')),
  started TIMESTAMPTZ,
  confirmed TIMESTAMPTZ,
  stored_size BIGINT,
  ref TEXT,
  pack TEXT COLLATE "C",
  pack_offset BIGINT,
  pack_length BIGINT,
  meta TEXT,
  ctime TEXT,
  error TEXT,
  claim TEXT,
  lease TIMESTAMPTZ,
  UNIQUE (changeset, path)
);
CREATE INDEX IF NOT EXISTS files_blob ON files(blob_id);
CREATE TABLE IF NOT EXISTS lost_blobs (
  blob_id TEXT COLLATE "C" PRIMARY KEY, found TIMESTAMPTZ NOT NULL, why TEXT
);
`;

/**
 * Steps from each older schema version to the next, per engine. Version 3 added the host a
 * changeset was pushed from, the counts of a finished changeset (so that listing a thousand
 * changesets reads a thousand rows, not every entry), and the claims of pushes shared by
 * several workers.
 */
const MIGRATIONS: Record<number, Record<Dialect, string>> = {
  2: {
    sqlite: `ALTER TABLE changesets ADD COLUMN host TEXT;
      ALTER TABLE changesets ADD COLUMN counts TEXT;
      ALTER TABLE files ADD COLUMN claim TEXT; ALTER TABLE files ADD COLUMN lease TEXT;`,
    postgres: `ALTER TABLE changesets ADD COLUMN host TEXT;
      ALTER TABLE changesets ADD COLUMN counts TEXT;
      ALTER TABLE files ADD COLUMN claim TEXT; ALTER TABLE files ADD COLUMN lease TIMESTAMPTZ;`,
  },
};

/** Where an index lives: a SQLite file, or a PostgreSQL database. */
export type IndexLocation =
  | { kind: "sqlite"; path: string }
  | { kind: "postgres"; url: string };

/**
 * What an index location names: `postgres://…` or `postgresql://…` is a PostgreSQL database;
 * anything else with a scheme (`name:` or `name://`) is refused, so that a mistyped address
 * never becomes a file; the rest is a SQLite file (`./name:with:colons` for such a file).
 */
export function parseIndexLocation(location: string): IndexLocation {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    let u: URL;
    try {
      u = new URL(location);
    } catch {
      throw new Error(`index ${displayUrl(location)}: not a valid PostgreSQL address`);
    }
    if (u.pathname.replace(/^\//, "") === "") {
      throw new Error(
        `index ${displayUrl(location)}: no database named; ` +
          `write postgres://USER@HOST/DATABASE (one database per repository)`,
      );
    }
    return { kind: "postgres", url: location };
  }
  const scheme = /^([A-Za-z][\w+.-]*):/.exec(location);
  if (scheme) {
    throw new Error(
      `index ${location}: n2s does not know "${scheme[1]}:" addresses; give a SQLite file ` +
        `(write ./${location} for a file whose name has a colon) or postgres://USER@HOST/DATABASE`,
    );
  }
  if (location === "") throw new Error("index: an empty location; give a file or postgres://…");
  return { kind: "sqlite", path: location };
}

/** Marks a path or link target stored escaped (see toDb). U+FFFF is a noncharacter. */
const ESCAPED = 0xffff;

/**
 * A path or link target as the index stores it. SQLite's text would turn the lone surrogates
 * that carry bytes which are not UTF-8 (lib/format/names.ts) into U+FFFD: such a string, or one
 * that starts with the marker, is stored as the marker and the string's JSON escape, which
 * round-trips every string. Every other string is stored as it is.
 */
export function toDb(s: string): string {
  if (s.isWellFormed() && s.charCodeAt(0) !== ESCAPED) return s;
  return String.fromCharCode(ESCAPED) + JSON.stringify(s).slice(1, -1);
}

/** The path or link target a stored string stands for (see toDb). */
export function fromDb(t: string): string {
  return t.charCodeAt(0) === ESCAPED ? JSON.parse(`"${t.slice(1)}"`) : t;
}

/** A row read from the index with its path and target as they stand for (see toDb). */
export function decodeRow<T extends { path: string; target?: string | null }>(r: T): T {
  if (r.path.charCodeAt(0) === ESCAPED) r.path = fromDb(r.path);
  if (r.target && r.target.charCodeAt(0) === ESCAPED) r.target = fromDb(r.target);
  return r;
}

/** UTC ISO-8601 with milliseconds and Z. */
export function isoNow(now: number = Date.now()): string {
  return new Date(now).toISOString();
}

/** The index database of one repository. */
export class Index {
  readonly #stmts = new Map<string, SqlStatement>();

  private constructor(
    /** The connection. */
    readonly db: SqlDatabase,
    /** How messages name the index: its file, or its address without the password. */
    readonly path: string,
    /** The engine it runs on. */
    readonly dialect: Dialect,
  ) {}

  /** Opens a SQLite file with the settings the index needs. */
  static #sqlite(path: string): Index {
    // Every SQLite error of this database names the file and says what to do (errors.ts).
    const db = openGuarded(path, () => new DatabaseSync(path));
    try {
      // The busy timeout first: switching to WAL waits for a process that opens the file at the
      // same moment (and recovers its WAL) instead of failing at once.
      db.exec(
        "PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
      );
      // 16 MiB of page cache: the operating system caches the file too, and a larger cache only
      // grows the process (a push must stay within 200 MiB).
      db.exec("PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384;");
    } catch (e) {
      db.close();
      throw e;
    }
    return new Index(db as unknown as SqlDatabase, path, "sqlite");
  }

  /**
   * Opens (creating when absent, private) the index at `location` for repository
   * `repositoryId`: a SQLite file, or a PostgreSQL database (`postgres://…`), whose tables are
   * created or brought to this version's schema. An existing SQLite file that other users can
   * read is named to `onWarning` (default: stderr).
   */
  static open(
    location: string,
    repositoryId: string,
    opts: { onWarning?: (message: string) => void } = {},
  ): Index {
    const where = parseIndexLocation(location);
    let ix: Index;
    if (where.kind === "postgres") {
      const db = new PgDatabase(where.url);
      ix = new Index(db, db.where, "postgres");
    } else {
      preparePrivateFile(where.path, opts.onWarning ?? warnOnStderr);
      ix = Index.#sqlite(where.path);
    }
    try {
      ix.#prepareSchema(repositoryId);
      if (ix.dialect === "postgres") {
        ix.#clock = ix.#databaseClock();
      }
    } catch (e) {
      ix.close();
      throw e;
    }
    return ix;
  }

  /** Creates the tables, or brings older ones to this version; checks the repository. */
  #prepareSchema(repositoryId: string): void {
    const pg = this.dialect === "postgres";
    // A database at this version is used as it is: a role that may read and write the tables
    // but not create or alter them (docs/OPERATIONS.md) opens it.
    if (pg) {
      const there = this.db.prepare("SELECT to_regclass('meta') IS NOT NULL AS present").get() as {
        present: boolean;
      };
      if (there.present && Number(this.#meta("schema_version")) === SCHEMA_VERSION) {
        this.#checkRepository(repositoryId);
        return;
      }
    }
    // Machines sharing a PostgreSQL index may open it at the same moment: one prepares it.
    if (pg) this.db.exec("SELECT pg_advisory_lock(7352114)");
    try {
      this.db.exec(pg ? POSTGRES_SCHEMA : SQLITE_SCHEMA);
      let version = this.#meta("schema_version");
      if (version === undefined) {
        this.#setMeta("schema_version", String(SCHEMA_VERSION));
        this.#setMeta("repository", repositoryId);
        this.#setMeta("created", isoNow());
        version = String(SCHEMA_VERSION);
      }
      const v = Number(version);
      if (v > SCHEMA_VERSION) {
        throw new Error(
          `index ${this.path} has schema version ${version}, newer than this n2s reads ` +
            `(${SCHEMA_VERSION}); use a newer n2s, or rebuild the index with "n2s recover index"`,
        );
      }
      if (v < SCHEMA_VERSION) this.#migrate(v);
      this.#checkRepository(repositoryId);
    } finally {
      if (pg) this.db.exec("SELECT pg_advisory_unlock(7352114)");
    }
  }

  /** Throws unless the index belongs to repository `repositoryId`. */
  #checkRepository(repositoryId: string): void {
    const repo = this.#meta("repository");
    if (repo !== repositoryId) {
      throw new Error(
        `index ${this.path} belongs to repository ${repo}, not ${repositoryId}; ` +
          (this.dialect === "postgres"
            ? "give each repository a database of its own"
            : "use --index to choose another file"),
      );
    }
  }

  /** Brings the schema from `from` to this version, one step per version, in a transaction. */
  #migrate(from: number): void {
    for (let v = from; v < SCHEMA_VERSION; v++) {
      const step = MIGRATIONS[v];
      if (!step) {
        throw new Error(
          `index ${this.path} has schema version ${v}, which this n2s cannot migrate; ` +
            `rebuild it with "n2s recover index"`,
        );
      }
      this.tx(() => {
        this.db.exec(step[this.dialect]);
        this.#setMeta("schema_version", String(v + 1));
      });
    }
  }

  /**
   * The clock the times a push records come from, in milliseconds since 1970: this machine's
   * on SQLite; on PostgreSQL the database's (this machine's, corrected by the difference
   * measured when the index was opened), so that every machine sharing the index records times
   * on one clock.
   */
  get clock(): () => number {
    return this.#clock;
  }
  #clock: () => number = Date.now;

  /** Measures how far the database's clock is from this machine's (PostgreSQL). */
  #databaseClock(): () => number {
    const before = Date.now();
    const r = this.db.prepare(
      "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000) AS ms",
    ).get() as { ms: number };
    const after = Date.now();
    const offset = Number(r.ms) - (before + after) / 2;
    return () => Date.now() + offset;
  }

  /** The schema version the index is at. */
  get schemaVersion(): number {
    return Number(this.#meta("schema_version"));
  }

  #meta(key: string): string | undefined {
    const r = this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as
      | { value: string }
      | undefined;
    return r?.value;
  }

  #setMeta(key: string, value: string): void {
    this.db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)").run(key, value);
  }

  #stmt(sql: string): SqlStatement {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #inTx = false;

  /**
   * Runs `fn` in one transaction. Transactions do not nest, on either engine: PostgreSQL would
   * only warn and commit the outer work early, so a nested call throws before it starts.
   */
  tx<T>(fn: () => T): T {
    if (this.#inTx) {
      throw new Error(`index ${this.path}: cannot start a transaction within a transaction`);
    }
    this.db.exec("BEGIN IMMEDIATE");
    this.#inTx = true;
    try {
      const r = fn();
      this.db.exec("COMMIT");
      return r;
    } catch (e) {
      try {
        this.db.exec("ROLLBACK");
      } catch {
        // SQLite already rolled back (it does on a full disk): the first error is the one to tell.
      }
      throw e;
    } finally {
      this.#inTx = false;
    }
  }

  /** Gives SQLite's page cache back (after a large read such as the state of a source). */
  shrinkMemory(): void {
    if (this.dialect === "sqlite") this.db.exec("PRAGMA shrink_memory");
  }

  close(): void {
    this.#stmts.clear();
    this.db.close();
  }

  // --- changesets -------------------------------------------------------------------------

  insertChangeset(row: ChangesetRow): void {
    this.#stmt(
      `INSERT INTO changesets (id, name, source, client, root, parent, status, files_planned,
        bytes_planned, files_uploaded, bytes_uploaded, created, completed, error, chain, info,
        host)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      row.id,
      row.name,
      row.source,
      row.client,
      row.root,
      row.parent,
      row.status,
      row.files_planned,
      row.bytes_planned,
      row.files_uploaded,
      row.bytes_uploaded,
      row.created,
      row.completed,
      row.error,
      row.chain,
      row.info,
      row.host ?? null,
    );
  }

  updateChangeset(id: string, fields: Partial<ChangesetRow>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    const sql = `UPDATE changesets SET ${keys.map((k) => `${k} = ?`).join(", ")} WHERE id = ?`;
    // deno-lint-ignore no-explicit-any
    this.#stmt(sql).run(...(keys.map((k) => (fields as any)[k]) as never[]), id);
  }

  getChangeset(id: string): ChangesetRow | undefined {
    return this.#stmt("SELECT * FROM changesets WHERE id = ?").get(id) as ChangesetRow | undefined;
  }

  /** Resolves a unique id prefix (case-insensitive); throws on none or several. */
  resolveChangeset(prefix: string): ChangesetRow {
    const p = prefix.toUpperCase();
    const rows = this.#stmt("SELECT * FROM changesets WHERE id >= ? AND id < ? LIMIT 2").all(
      p,
      p + "\uffff",
    ) as unknown as ChangesetRow[];
    if (rows.length === 0) throw new Error(`no changeset matches "${prefix}"; see "n2s status"`);
    if (rows.length > 1) {
      throw new Error(`"${prefix}" matches several changesets; give more characters of the id`);
    }
    return rows[0];
  }

  listChangesets(source?: string): ChangesetRow[] {
    if (source !== undefined) {
      return this.#stmt("SELECT * FROM changesets WHERE source = ? ORDER BY seq").all(
        source,
      ) as unknown as ChangesetRow[];
    }
    return this.#stmt("SELECT * FROM changesets ORDER BY seq").all() as unknown as ChangesetRow[];
  }

  /** The newest complete changeset of a source. */
  lastComplete(source: string): ChangesetRow | undefined {
    return this.#stmt(
      "SELECT * FROM changesets WHERE source = ? AND status = 'complete' ORDER BY seq DESC LIMIT 1",
    ).get(source) as ChangesetRow | undefined;
  }

  /** Changesets of a source (or of all sources) that were started and never finished. */
  incomplete(source?: string): ChangesetRow[] {
    const sql = "SELECT * FROM changesets WHERE status IN ('pending','uploading')" +
      (source !== undefined ? " AND source = ?" : "") + " ORDER BY seq";
    const args = source !== undefined ? [source] : [];
    return this.#stmt(sql).all(...args) as unknown as ChangesetRow[];
  }

  /**
   * The chain of complete changesets of `source` that ends at `upToId` (default: the source's
   * newest complete one), oldest first, following parent links.
   */
  chain(source: string, upToId?: string): ChangesetRow[] {
    const end = upToId === undefined ? this.lastComplete(source) : this.getChangeset(upToId);
    return end ? this.chainOf(end).rows : [];
  }

  /**
   * The chain that ends at `end`, oldest first, following parent links, and its holes: parents
   * the index does not hold as complete (a lost manifest, a changeset never recovered). At a
   * hole the chain goes on from the newest complete changeset of the source older than the
   * missing one (ids are ULIDs, which sort by time), so that a restore gets all it can.
   */
  chainOf(end: ChangesetRow): { rows: ChangesetRow[]; holes: string[] } {
    const rows: ChangesetRow[] = [end];
    const holes: string[] = [];
    const seen = new Set([end.id]);
    const usable = (r: ChangesetRow | undefined): r is ChangesetRow =>
      r !== undefined && r.status === "complete" && r.source === end.source && !seen.has(r.id);
    for (let parent = end.parent; parent !== null;) {
      let row = this.getChangeset(parent);
      if (!usable(row)) {
        holes.push(parent);
        row = this.#stmt(
          `SELECT * FROM changesets WHERE source = ? AND status = 'complete' AND id < ?
            ORDER BY id DESC LIMIT 1`,
        ).get(end.source, parent) as ChangesetRow | undefined;
        if (!usable(row)) break;
      }
      seen.add(row.id);
      rows.push(row);
      parent = row.parent;
    }
    return { rows: rows.reverse(), holes };
  }

  // --- files ------------------------------------------------------------------------------

  insertFile(row: FileRow): void {
    this.#stmt(
      `INSERT OR REPLACE INTO files (changeset, path, action, file_hash, blob_id, size, mtime, mode,
        inode, target, status, started, confirmed, stored_size, ref, pack, pack_offset,
        pack_length, meta, ctime, error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      row.changeset,
      toDb(row.path),
      row.action,
      row.file_hash,
      row.blob_id,
      row.size,
      row.mtime,
      row.mode,
      row.inode,
      row.target === null ? null : toDb(row.target),
      row.status,
      row.started,
      row.confirmed,
      row.stored_size,
      row.ref,
      row.pack,
      row.pack_offset,
      row.pack_length,
      row.meta,
      row.ctime,
      row.error,
    );
  }

  /** Records the outcome of one entry. */
  settleFile(
    changeset: string,
    path: string,
    f: {
      status: UploadStatus;
      file_hash?: string | null;
      blob_id?: string | null;
      size?: number | null;
      mtime?: number | null;
      mode?: number | null;
      inode?: number | null;
      started?: string | null;
      confirmed?: string | null;
      stored_size?: number | null;
      ref?: string | null;
      pack?: string | null;
      pack_offset?: number | null;
      pack_length?: number | null;
      error?: string | null;
    },
  ): void {
    this.#stmt(
      `UPDATE files SET status = ?, file_hash = coalesce(?, file_hash), blob_id = coalesce(?, blob_id),
        size = coalesce(?, size), mtime = coalesce(?, mtime), mode = coalesce(?, mode),
        inode = coalesce(?, inode), started = coalesce(?, started), confirmed = ?,
        stored_size = ?, ref = ?, pack = ?, pack_offset = ?, pack_length = ?, error = ?
       WHERE changeset = ? AND path = ?`,
    ).run(
      f.status,
      f.file_hash ?? null,
      f.blob_id ?? null,
      f.size ?? null,
      f.mtime ?? null,
      f.mode ?? null,
      f.inode ?? null,
      f.started ?? null,
      f.confirmed ?? null,
      f.stored_size ?? null,
      f.ref ?? null,
      f.pack ?? null,
      f.pack_offset ?? null,
      f.pack_length ?? null,
      f.error ?? null,
      changeset,
      toDb(path),
    );
    if (f.status === "confirmed" && this.#hasLost()) {
      this.#stmt(
        `DELETE FROM lost_blobs WHERE blob_id =
           (SELECT blob_id FROM files WHERE changeset = ? AND path = ?)`,
      ).run(changeset, toDb(path));
      this.#lost = null;
    }
  }

  filesOf(changeset: string): FileRow[] {
    return (this.#stmt("SELECT * FROM files WHERE changeset = ? ORDER BY path").all(
      changeset,
    ) as unknown as FileRow[]).map(decodeRow);
  }

  /**
   * Up to `limit` entries of a changeset still waiting for upload whose path sorts after
   * `after` (all when null), in path order: a push pages through them in bounded memory.
   */
  pendingFilesAfter(changeset: string, after: string | null, limit: number): FileRow[] {
    return (this.#stmt(
      `SELECT * FROM files WHERE changeset = ? AND status = 'pending' AND path > ?
        ORDER BY path LIMIT ?`,
    ).all(changeset, after === null ? "" : toDb(after), limit) as unknown as FileRow[])
      .map(decodeRow);
  }

  /** How many entries of a changeset wait for upload, and their bytes. */
  pendingTotals(changeset: string): { files: number; bytes: number } {
    const r = this.#stmt(
      `SELECT count(*) AS files, coalesce(sum(size), 0) AS bytes FROM files
        WHERE changeset = ? AND status = 'pending'`,
    ).get(changeset) as { files: number; bytes: number };
    return { files: r.files, bytes: r.bytes };
  }

  /** Every entry of a changeset in path order, one row at a time (bounded memory). */
  *iterateFilesOf(changeset: string): Generator<FileRow> {
    const stmt = this.db.prepare("SELECT * FROM files WHERE changeset = ? ORDER BY path");
    for (const r of stmt.iterate(changeset) as Iterable<FileRow>) yield decodeRow(r);
  }

  /**
   * What a manifest records of each settled entry of a changeset, in path order, one row at a
   * time: only the columns it needs (a row object costs per column, and there are millions).
   */
  *settledEntriesOf(changeset: string): Generator<
    Pick<
      FileRow,
      | "path"
      | "action"
      | "file_hash"
      | "blob_id"
      | "size"
      | "mtime"
      | "mode"
      | "target"
      | "confirmed"
      | "pack"
      | "pack_offset"
      | "pack_length"
      | "meta"
    >
  > {
    const stmt = this.#stmt(
      `SELECT path, action, file_hash, blob_id, size, mtime, mode, target, confirmed, pack,
          pack_offset, pack_length, meta
        FROM files WHERE changeset = ? AND status IN ('confirmed', 'present') ORDER BY path`,
    );
    for (const r of stmt.iterate(changeset) as Iterable<never>) yield decodeRow(r);
  }

  /** One entry of a changeset. */
  getFile(changeset: string, path: string): FileRow | undefined {
    const r = this.#stmt("SELECT * FROM files WHERE changeset = ? AND path = ?").get(
      changeset,
      toDb(path),
    ) as FileRow | undefined;
    return r ? decodeRow(r) : undefined;
  }

  /** Hard links of a changeset planned before the content they share was stored. */
  unresolvedHardlinks(changeset: string): FileRow[] {
    return (this.#stmt(
      `SELECT * FROM files WHERE changeset = ? AND action = 'hardlink' AND blob_id IS NULL
        AND status = 'confirmed'`,
    ).all(changeset) as unknown as FileRow[]).map(decodeRow);
  }

  /** Gives a hard link the content of the file it links to. */
  resolveHardlink(changeset: string, path: string, lead: FileRow): void {
    this.#stmt(
      `UPDATE files SET file_hash = ?, blob_id = ?, size = ?, pack = ?, pack_offset = ?,
        pack_length = ? WHERE changeset = ? AND path = ?`,
    ).run(
      lead.file_hash,
      lead.blob_id,
      lead.size,
      lead.pack,
      lead.pack_offset,
      lead.pack_length,
      changeset,
      toDb(path),
    );
  }

  /** Entries of a changeset still waiting for upload. */
  pendingFiles(changeset: string): FileRow[] {
    return (this.#stmt(
      "SELECT * FROM files WHERE changeset = ? AND status = 'pending' ORDER BY path",
    ).all(changeset) as unknown as FileRow[]).map(decodeRow);
  }

  /** Where and when a blob's upload was confirmed, when some changeset confirmed it. */
  blobConfirmed(blobId: string): StoredBlob | undefined {
    // A blob `check --repair` found missing or damaged is stored nowhere, whatever the rows say.
    if (this.#hasLost() && this.isLost(blobId)) return undefined;
    return this.#stmt(
      `SELECT confirmed, stored_size, ref, pack, pack_offset, pack_length FROM files
        WHERE blob_id = ? AND status = 'confirmed' LIMIT 1`,
    ).get(blobId) as StoredBlob | undefined;
  }

  /**
   * The state of a source after the given chain, as a push compares a walk with it: for each
   * path, what its newest entry says of it (deleted paths are dropped). Only the columns that
   * tell whether a path changed are read (a push of millions of files holds all of them);
   * `storedOf` gives a path's content and location when they are needed. Only entries that
   * were settled (confirmed or present) count; failed entries leave the earlier state.
   */
  stateAt(chain: ChangesetRow[]): Map<string, PathState> {
    const state = new Map<string, PathState>();
    // A path whose content was found lost (check --repair) is left out, so that the next push
    // sees it as new and stores it again; the test costs nothing while no blob is lost.
    const stmt = this.#stmt(
      `SELECT path, action, size, mtime, inode, mode, target, changeset, ctime
         FROM files WHERE changeset = ? AND status IN ('confirmed', 'present')` +
        (this.#hasLost()
          ? " AND (blob_id IS NULL OR blob_id NOT IN (SELECT blob_id FROM lost_blobs))"
          : ""),
    );
    for (const cs of chain) {
      // The rows are kept as they come (with their path too): copying 50,000 of them into
      // objects without it cost as much as reading them.
      for (const r of stmt.iterate(cs.id) as Iterable<PathState & { path: string }>) {
        decodeRow(r);
        if (r.action === "delete") state.delete(r.path);
        else state.set(r.path, r);
      }
    }
    return state;
  }

  /** The content and location of a path's entry in one changeset. */
  storedOf(
    changeset: string,
    path: string,
  ): Pick<FileRow, "file_hash" | "blob_id" | "pack" | "pack_offset" | "pack_length"> | undefined {
    return this.#stmt(
      `SELECT file_hash, blob_id, pack, pack_offset, pack_length FROM files
        WHERE changeset = ? AND path = ?`,
    ).get(changeset, toDb(path)) as never;
  }

  /**
   * What a restore needs of the state after `chain`, each row made into what the caller wants
   * as it is read (the rows themselves are not kept: a restore of millions of files holds one
   * object per path). Deleted paths are dropped.
   */
  restoreStateAt<T>(
    chain: ChangesetRow[],
    make: (r: {
      path: string;
      action: string;
      file_hash: string | null;
      blob_id: string | null;
      size: number | null;
      mtime: number | null;
      mode: number | null;
      target: string | null;
      pack: string | null;
      pack_offset: number | null;
      pack_length: number | null;
      meta: string | null;
    }) => T,
  ): Map<string, T> {
    const state = new Map<string, T>();
    const stmt = this.#stmt(
      `SELECT path, action, file_hash, blob_id, size, mtime, mode, target, pack, pack_offset,
          pack_length, meta
         FROM files WHERE changeset = ? AND status IN ('confirmed', 'present')`,
    );
    for (const cs of chain) {
      for (const r of stmt.iterate(cs.id) as Iterable<Parameters<typeof make>[0]>) {
        decodeRow(r);
        if (r.action === "delete") state.delete(r.path);
        else state.set(r.path, make(r));
      }
    }
    return state;
  }

  /** Per-changeset counts of entries by upload status and bytes uploaded. */
  counts(
    changeset: string,
  ): {
    files: number;
    bytes: number;
    uploaded: number;
    present: number;
    failed: number;
    pending: number;
    uploadedBytes: number;
  } {
    const r = this.#stmt(
      `SELECT count(*) AS files, coalesce(sum(CASE WHEN action = 'write' THEN size END), 0) AS bytes,
        sum(CASE WHEN status = 'confirmed' AND action = 'write' THEN 1 ELSE 0 END) AS uploaded,
        sum(CASE WHEN status = 'present' THEN 1 ELSE 0 END) AS present,
        sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
        sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending,
        coalesce(sum(CASE WHEN status = 'confirmed' AND action = 'write' THEN size END), 0) AS "uploadedBytes"
       FROM files WHERE changeset = ?`,
    ).get(changeset) as Record<string, number | null>;
    return {
      files: r.files ?? 0,
      bytes: r.bytes ?? 0,
      uploaded: r.uploaded ?? 0,
      present: r.present ?? 0,
      failed: r.failed ?? 0,
      pending: r.pending ?? 0,
      uploadedBytes: r.uploadedBytes ?? 0,
    };
  }

  /**
   * Every settled entry whose path satisfies `match`, oldest changeset first. `contains`, when
   * given, is text every matching path holds as it is stored (printable ASCII without a
   * backslash or a quote, which the stored form of any path keeps as it is): the database
   * leaves out the rest before `match` sees them.
   */
  *findPaths(
    match: (path: string) => boolean,
    contains?: string,
  ): Generator<FileRow & { seq: number }> {
    // The paths are looked for in the (changeset, path) index, much smaller than the table; only
    // the rows that hold the text are read from the table.
    const filter = contains === undefined ? "" : ` AND (f.changeset, f.path) IN
      (SELECT changeset, path FROM files WHERE ${
      this.dialect === "postgres" ? "strpos(path, ?)" : "instr(path, ?)"
    } > 0)`;
    const stmt = this.#stmt(
      `SELECT f.*, c.seq FROM files f JOIN changesets c ON c.id = f.changeset
        WHERE f.status IN ('confirmed', 'present')${filter} ORDER BY c.seq, f.path`,
    );
    const args = contains === undefined ? [] : [contains];
    for (const r of stmt.iterate(...args) as Iterable<FileRow & { seq: number }>) {
      decodeRow(r);
      if (match(r.path)) yield r;
    }
  }

  // --- blobs found lost by check --repair ----------------------------------------------------

  #lost: number | null = null;

  #hasLost(): boolean {
    this.#lost ??= (this.#stmt("SELECT count(*) AS n FROM lost_blobs").get() as { n: number }).n;
    return this.#lost > 0;
  }

  /** True when `check --repair` found this blob missing or damaged and no push stored it since. */
  isLost(blobId: string): boolean {
    return this.#stmt("SELECT 1 FROM lost_blobs WHERE blob_id = ?").get(blobId) !== undefined;
  }

  /** Records blobs found missing or damaged: no push counts them as stored until one stores them. */
  markLost(blobs: { blobId: string; why: string }[]): void {
    const stmt = this.#stmt(
      "INSERT OR REPLACE INTO lost_blobs (blob_id, found, why) VALUES (?, ?, ?)",
    );
    const now = isoNow();
    this.tx(() => {
      for (const b of blobs) stmt.run(b.blobId, now, b.why);
    });
    this.#lost = null;
  }

  /** Records a lost blob as another index recorded it (index migrate). */
  restoreLost(b: { blob_id: string; found: string; why: string | null }): void {
    this.#stmt("INSERT OR REPLACE INTO lost_blobs (blob_id, found, why) VALUES (?, ?, ?)")
      .run(b.blob_id, b.found, b.why);
    this.#lost = null;
  }

  /** Blobs recorded as lost. */
  lostBlobs(): { blob_id: string; found: string; why: string | null }[] {
    return this.#stmt("SELECT blob_id, found, why FROM lost_blobs ORDER BY blob_id").all() as never;
  }

  /** The blob ids of every confirmed entry, with where they are stored. */
  *confirmedBlobs(): Generator<
    { blob_id: string; stored_size: number | null; pack: string | null; changeset: string }
  > {
    yield* this.#stmt(
      `SELECT blob_id, min(stored_size) AS stored_size, pack, min(changeset) AS changeset
         FROM files WHERE status = 'confirmed' AND blob_id IS NOT NULL
        GROUP BY blob_id, pack`,
    ).iterate() as Iterable<never>;
  }

  /**
   * The engine's own check of the index: SQLite's integrity_check ("ok", or what is wrong).
   * PostgreSQL keeps its own data consistent (and checks pages where checksums are on); here
   * the answer is that every table reads to its end and the schema is this version's.
   */
  integrityCheck(): string[] {
    if (this.dialect === "sqlite") {
      return (this.db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[])
        .map((r) => r.integrity_check);
    }
    const problems: string[] = [];
    for (const t of ["meta", "changesets", "files", "lost_blobs"]) {
      try {
        this.db.prepare(`SELECT count(*) AS n FROM ${t}`).get();
      } catch (e) {
        problems.push(`table ${t}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (this.schemaVersion !== SCHEMA_VERSION) {
      problems.push(`schema version ${this.schemaVersion}, not ${SCHEMA_VERSION}`);
    }
    return problems.length ? problems : ["ok"];
  }

  /** A value of the meta table (settings other indexes of the repository agree on). */
  getMeta(key: string): string | undefined {
    return this.#meta(key);
  }

  /** Sets a value of the meta table. */
  setMeta(key: string, value: string): void {
    this.#setMeta(key, value);
  }

  /**
   * Sets the status of a changeset, and its counts from the files table; a finished one
   * (complete, failed) keeps them in `counts`, which `summaryCounts` reads.
   */
  setStatus(id: string, status: ChangesetStatus, extra: Partial<ChangesetRow> = {}): void {
    const c = this.counts(id);
    this.updateChangeset(id, {
      status,
      files_uploaded: c.uploaded,
      bytes_uploaded: c.uploadedBytes,
      counts: status === "complete" || status === "failed" ? JSON.stringify(c) : null,
      ...extra,
    });
  }

  /** The counts of a changeset: those it keeps once finished, else counted from its entries. */
  summaryCounts(c: ChangesetRow): ReturnType<Index["counts"]> {
    if (c.counts && (c.status === "complete" || c.status === "failed")) {
      try {
        return JSON.parse(c.counts);
      } catch {
        // counted below
      }
    }
    return this.counts(c.id);
  }
}
