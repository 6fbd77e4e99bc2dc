// The index at scale: a repository made with `n2s init`, an index of millions of entries written
// straight into SQLite (the sqlite3 shell) and into PostgreSQL (psql), each with the schema
// Index.open makes, then the commands that only read the index timed on each engine: wall
// clock of the whole process (first run, then the best of the next runs), peak RSS of the n2s
// process (/usr/bin/time; PostgreSQL's own memory is not in it) and the rows of the answer. The
// target is every command under one second.
//
//   deno run -A scripts/bench_index.ts                      10,000,000 entries, 1,000 changesets
//   deno run -A scripts/bench_index.ts --rows 1000000 --engines sqlite
//   deno run -A scripts/bench_index.ts --keep /tmp/ix       keep (and next time reuse) the data
//
// The data: --sources sources, each a chain of complete changesets linked by parent; the first
// changeset of each source holds --base of all entries (directories p0, p0/data, … and files
// pN/data/file-NNNNNN.csv, 1,000 a project), each later one a push of changes: 90% files
// rewritten (a run of consecutive files from somewhere in the tree), 8% new files, 2% deleted.
// Entries are `write` (or `dir`, `delete`), confirmed or present, with hashes, sizes, packs,
// times and metadata as a push records them, and each changeset's are written in path order, as
// a push's walk inserts them (the order decides which pages a read of a changeset touches).
// Every changeset is then settled with Index.setStatus, as a completed push leaves it. Changeset
// ids are ULIDs (they sort by time), one changeset about every day over three years. PostgreSQL
// is vacuumed and analyzed afterwards, as autovacuum would have done; SQLite is left as n2s
// leaves it (no ANALYZE: n2s never runs one) unless --sqlite-analyze is given. The CLI timed is
// a copy of cli.ts and lib/ taken when the script starts (others may edit the working tree).

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { Index } from "../lib/index/sqlite.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "10000000" },
    changesets: { type: "string", default: "1000" },
    sources: { type: "string", default: "4" },
    base: { type: "string", default: "0.5" },
    engines: { type: "string", default: "sqlite,postgres" },
    keep: { type: "string" },
    out: { type: "string" },
    runs: { type: "string", default: "3" },
    slow: { type: "string", default: "60" },
    cold: { type: "boolean", default: false },
    "sqlite-analyze": { type: "boolean", default: false },
    regenerate: { type: "boolean", default: false },
  },
});

const ROWS = positiveInt("rows", values.rows!);
const CHANGESETS = positiveInt("changesets", values.changesets!);
const SOURCES = positiveInt("sources", values.sources!);
const BASE = Number(values.base);
const RUNS = positiveInt("runs", values.runs!);
/** A command whose first run takes longer than this (seconds) is run once more, not RUNS times. */
const SLOW_S = Number(values.slow);
const ENGINES = values.engines!.split(",").map((e) => e.trim()).filter(Boolean);
for (const e of ENGINES) {
  if (e !== "sqlite" && e !== "postgres") fail(`--engines: sqlite and/or postgres, not "${e}"`);
}
if (!(BASE > 0 && BASE < 1)) fail("--base: a fraction between 0 and 1");
if (CHANGESETS < SOURCES) fail("--changesets: at least one a source");

const SOURCE_NAMES = ["projects", "lab", "shared", "archive", "scratch", "media", "home", "mail"];
const sourceName = (i: number) => SOURCE_NAMES[i] ?? `source${i}`;
/** Entries of a project in a first changeset: its directory, its data directory, 1,000 files. */
const PROJECT_ROWS = 1002;
const FILES_PER_PROJECT = 1000;
const DAY_MS = 86_400_000;
const START_MS = Date.UTC(2023, 0, 2, 2, 0, 0);

const repoRoot = resolve(new URL("..", import.meta.url).pathname);
const outFile = resolve(values.out ?? join(repoRoot, ".bench", "index-scale.md"));
const PG_BIN = "/usr/lib/postgresql/15/bin";
/** Version of the data this script writes: kept data written by another version is made again. */
const GENERATOR = 2;

function fail(message: string): never {
  console.error(`bench_index: ${message}`);
  Deno.exit(2);
}

function positiveInt(name: string, text: string): number {
  const n = Number(text.replaceAll("_", ""));
  if (!Number.isSafeInteger(n) || n < 1) fail(`--${name}: a positive integer, not "${text}"`);
  return n;
}

function log(line: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

// --- the plan: every changeset, how many entries it holds and where its changes fall ----------

/** A small seeded generator (mulberry32), so that every run plans the same data. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID: 10 characters of milliseconds, 16 of randomness (Crockford base32). */
function ulid(ms: number, rnd: () => number): string {
  let t = "";
  for (let i = 0, x = ms; i < 10; i++, x = Math.floor(x / 32)) t = CROCKFORD[x % 32] + t;
  let r = "";
  for (let i = 0; i < 16; i++) r += CROCKFORD[Math.floor(rnd() * 32)];
  return t + r;
}

interface Planned {
  seq: number;
  id: string;
  source: string;
  parent: string | null;
  host: string;
  /** 0 for the first changeset of its source, then 1, 2, … */
  m: number;
  /** Entries it holds. */
  n: number;
  /** Of a later changeset: entries [0, nr) rewrite files, [nr, nr + nw) add files, the rest delete. */
  nr: number;
  nw: number;
  /** Where its run of rewritten files starts among the files of the first changeset. */
  off: number;
  /** Files its source added before it (new files are numbered on from there). */
  nb: number;
  created: number;
  completed: number;
}

interface Plan {
  changesets: Planned[];
  /** Whole projects in each first changeset, and their files. */
  projects: number;
  files: number;
}

function makePlan(): Plan {
  const rnd = random(20260101);
  const base = Math.round((ROWS * BASE) / SOURCES);
  const projects = Math.floor(base / PROJECT_ROWS);
  if (projects < 1) fail(`--rows ${ROWS} is too few for ${SOURCES} sources`);
  const files = projects * FILES_PER_PROJECT;
  const later = CHANGESETS - SOURCES;
  const rest = ROWS - base * SOURCES;
  // Pushes differ in size: weights from 0.2 to 1.8, scaled to the entries left.
  const weights = Array.from({ length: later }, () => 0.2 + 1.6 * rnd());
  const sum = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((rest * w) / sum));
  for (let i = 0, left = rest - sizes.reduce((a, b) => a + b, 0); left > 0; i++, left--) {
    sizes[i % later]++;
  }
  if (later === 0 && rest > 0) fail("--changesets: more than --sources, or --base 1");
  const step = (3 * 365 * DAY_MS) / CHANGESETS;
  const last = new Map<number, string>();
  const added = new Map<number, number>();
  const count = new Map<number, number>();
  const changesets: Planned[] = [];
  for (let j = 0; j < CHANGESETS; j++) {
    const src = j % SOURCES;
    const m = count.get(src) ?? 0;
    count.set(src, m + 1);
    const n = m === 0 ? base : sizes[j - SOURCES];
    if (m > 0 && n > files) {
      fail(`a changeset of ${n} entries is more than the ${files} files to change`);
    }
    const created = Math.round(START_MS + j * step + rnd() * 3_600_000);
    const nr = m === 0 ? 0 : Math.floor(n * 0.9);
    const nw = m === 0 ? 0 : Math.floor(n * 0.08);
    const nb = added.get(src) ?? 0;
    added.set(src, nb + nw);
    const id = ulid(created, rnd);
    changesets.push({
      seq: j + 1,
      id,
      source: sourceName(src),
      parent: last.get(src) ?? null,
      host: src % 2 === 0 ? "nas1" : "nas2",
      m,
      n,
      nr,
      nw,
      off: Math.floor(rnd() * files),
      nb,
      created,
      completed: created + 5_000 + n * 2,
    });
    last.set(src, id);
  }
  return { changesets, projects, files };
}

/** Consecutive changesets of about `target` entries together, for progress and parallel loads. */
function chunks(plan: Plan, target: number): Planned[][] {
  const out: Planned[][] = [];
  let cur: Planned[] = [];
  let rows = 0;
  for (const c of plan.changesets) {
    cur.push(c);
    rows += c.n;
    if (rows >= target) {
      out.push(cur);
      cur = [];
      rows = 0;
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

const str = (s: string | null) => (s === null ? "NULL" : `'${s.replaceAll("'", "''")}'`);

function planValues(plan: Plan, extra: (c: Planned) => string = () => ""): string {
  return plan.changesets.map((c) =>
    `(${c.seq}, ${str(c.id)}, ${str(c.source)}, ${str(c.parent)}, ${str(c.host)}, ${c.m}, ` +
    `${c.n}, ${c.nr}, ${c.nw}, ${c.off}, ${c.nb}, ${c.created}, ${c.completed}${extra(c)})`
  ).join(",\n");
}

const FILE_COLUMNS = `changeset, path, action, file_hash, blob_id, size, mtime, mode, inode, target,
  status, started, confirmed, stored_size, ref, pack, pack_offset, pack_length, meta, ctime, error`;

/**
 * The entries, one row per (changeset, k), as SQL both engines run with their own functions: the
 * path and action from the plan; sizes, times and numbers from h, a hash of (seq, k).
 */
function entrySql(
  plan: Plan,
  f: {
    /** `p<a>/data/file-<b, six digits>.csv` */
    file(a: string, b: string): string;
    /** `p<a>` */
    project(a: string): string;
    hex64(seed: string): string;
    hex32(a: string, b: string): string;
    iso(ms: string): string;
    text(x: string): string;
    pad6(x: string): string;
  },
  /** The entries' k (0, 1, … within a changeset) and their FROM clause over __PLAN__ p. */
  k: string,
  from: string,
): string {
  const P = plan.projects;
  const F = plan.files;
  const FP = FILES_PER_PROJECT;
  const R = PROJECT_ROWS;
  const path = `CASE
      WHEN m = 0 AND k % ${R} = 0 THEN ${f.project(`k / ${R}`)}
      WHEN m = 0 AND k % ${R} = 1 THEN ${f.project(`k / ${R}`)} || '/data'
      WHEN m = 0 THEN ${f.file(`k / ${R}`, `k % ${R} - 2`)}
      WHEN k >= nr AND k < nr + nw THEN ${
    f.file(`(nb + k - nr) % ${P}`, `${FP} + (nb + k - nr) / ${P}`)
  }
      ELSE ${f.file(`((off + k) % ${F}) / ${FP}`, `(off + k) % ${FP}`)} END`;
  const action = `CASE WHEN m = 0 AND k % ${R} < 2 THEN 'dir'
      WHEN m > 0 AND k >= nr + nw THEN 'delete' ELSE 'write' END`;
  const size = `((h % 1500) * ((h / 1500) % 1500) + 1)`;
  const mtime = `(created - 60000 - (h % 400000) * 60000)`;
  const nsec = `((${mtime}) % 1000 * 1000000 + h % 1000000)`;
  const stored = `(${size} + 300 + ${size} / 200)`;
  const packed = `(action = 'write' AND ${size} < 1048576)`;
  const meta = `'{"nsec":' || ${f.text(nsec)} || ',"uid":1000,"gid":1000,"user":"alice",` +
    `"group":"staff"}'`;
  return `
SELECT id, path, action,
  CASE WHEN action = 'write' THEN ${f.hex64("'f' || path")} END,
  CASE WHEN action = 'write' THEN ${f.hex64("'b' || path")} END,
  CASE WHEN action = 'write' THEN ${size} END,
  CASE WHEN action <> 'delete' THEN ${mtime} END,
  CASE WHEN action = 'write' THEN 420 WHEN action = 'dir' THEN 493 END,
  CASE WHEN action = 'write' THEN 2000000 + h % 100000000 END,
  NULL,
  CASE WHEN action = 'write' AND h % 7 = 0 THEN 'present' ELSE 'confirmed' END,
  CASE WHEN action = 'write' THEN ${f.iso(`created + 1000 + k * 2`)} END,
  ${f.iso(`created + 3000 + k * 2`)},
  CASE WHEN action = 'write' THEN ${stored} END,
  NULL,
  CASE WHEN ${packed} THEN ${f.hex32(`seq * 104729 + k / 50`, `(seq * 1000003 + k / 50)`)} END,
  CASE WHEN ${packed} THEN 48 + (k % 50) * 331000 END,
  CASE WHEN ${packed} THEN ${stored} END,
  CASE WHEN action <> 'delete' THEN ${meta} END,
  CASE WHEN action <> 'delete' THEN ${f.text(mtime)} || ${f.pad6(`h % 1000000`)} END,
  NULL
FROM (
  SELECT seq, id, created, k, m, h, ${path} AS path, ${action} AS action
  FROM (
    SELECT p.*, ${k} AS k, ((p.seq * 1000003 + ${k}) * 2654435761) % 4294967296 AS h FROM ${from}
  ) s
) e
ORDER BY seq, path`;
}

// --- SQLite ----------------------------------------------------------------------------------

async function generateSqlite(plan: Plan, path: string, repoId: string): Promise<void> {
  for (const suffix of ["", "-wal", "-shm"]) await Deno.remove(path + suffix).catch(() => {});
  Index.open(path, repoId).close();
  const iso = (ms: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', (${ms}) / 1000.0, 'unixepoch')`;
  const sql = entrySql(
    plan,
    {
      file: (a, b) => `printf('p%d/data/file-%06d.csv', ${a}, ${b})`,
      project: (a) => `('p' || (${a}))`,
      hex64: () => "lower(hex(randomblob(32)))",
      hex32: (a, b) => `printf('%016x%016x', ${a}, ${b} * 2654435761)`,
      iso,
      text: (x) => `CAST(${x} AS TEXT)`,
      pad6: (x) => `printf('%06d', ${x})`,
    },
    "g.value",
    "__PLAN__ p, generate_series(0, p.n - 1) g",
  );
  const parts = chunks(plan, 1_000_000);
  const script = [
    ".bail on",
    // No rollback journal while loading (one transaction, thrown away on failure), then WAL
    // again, as n2s keeps it.
    ".output /dev/null",
    "PRAGMA journal_mode=OFF;",
    ".output stdout",
    "PRAGMA synchronous=OFF;",
    "PRAGMA cache_size=-1048576;",
    "PRAGMA temp_store=MEMORY;",
    // The index on blob ids is made again after the load: much faster than row by row.
    "DROP INDEX files_blob;",
    "BEGIN;",
    `CREATE TEMP TABLE bench_plan (seq INTEGER PRIMARY KEY, id TEXT, source TEXT, parent TEXT,
      host TEXT, m INTEGER, n INTEGER, nr INTEGER, nw INTEGER, off INTEGER, nb INTEGER,
      created INTEGER, completed INTEGER);`,
    `INSERT INTO bench_plan VALUES ${planValues(plan)};`,
    `INSERT INTO changesets (id, name, source, client, root, parent, status, files_planned,
      bytes_planned, files_uploaded, bytes_uploaded, created, completed, error, chain, info, host)
     SELECT id, NULL, source, 'scan', '/srv/' || source, parent, 'complete', n, 0, 0, 0,
      ${iso("created")}, ${iso("completed")}, NULL, lower(hex(randomblob(32))),
      '{"full":true}', host FROM bench_plan ORDER BY seq;`,
    ...parts.flatMap((part, i) => [
      `INSERT INTO files (${FILE_COLUMNS}) ${
        sql.replace(
          "__PLAN__",
          `(SELECT * FROM bench_plan WHERE seq BETWEEN ${part[0].seq} AND ${
            part[part.length - 1].seq
          })`,
        )
      };`,
      `SELECT strftime('%H:%M:%S', 'now') || ' sqlite: entries of changesets ${part[0].seq}-${
        part[part.length - 1].seq
      } written (${i + 1}/${parts.length})';`,
    ]),
    countsSql("sqlite"),
    "COMMIT;",
    "SELECT strftime('%H:%M:%S', 'now') || ' sqlite: indexing blob ids';",
    "CREATE INDEX IF NOT EXISTS files_blob ON files(blob_id);",
    ...(values["sqlite-analyze"] ? ["ANALYZE;"] : []),
    ".output /dev/null",
    "PRAGMA journal_mode=WAL;",
  ].join("\n");
  await runTool("sqlite3", [path], script);
  settle(path, repoId, plan);
}

/**
 * Settles every changeset as a push does when it completes (Index.setStatus), so that the
 * changesets hold whatever counts this version of n2s keeps in them.
 */
function settle(location: string, repoId: string, plan: Plan): void {
  const ix = Index.open(location, repoId);
  try {
    for (const c of plan.changesets) ix.setStatus(c.id, "complete");
  } finally {
    ix.close();
  }
}

/** Sets the counts a push stores in its changeset (Index.setStatus) from the entries. */
function countsSql(dialect: "sqlite" | "postgres"): string {
  const flag = (cond: string) =>
    dialect === "sqlite" ? `sum(${cond})` : `count(*) FILTER (WHERE ${cond})`;
  return `UPDATE changesets SET files_uploaded = a.up, bytes_uploaded = a.upb, bytes_planned = a.b
    FROM (SELECT changeset, ${flag("status = 'confirmed' AND action = 'write'")} AS up,
        coalesce(sum(CASE WHEN status = 'confirmed' AND action = 'write' THEN size END), 0) AS upb,
        coalesce(sum(size), 0) AS b
      FROM files GROUP BY changeset) a
    WHERE a.changeset = changesets.id;`;
}

// --- PostgreSQL ------------------------------------------------------------------------------

interface PgServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const pgTool = (name: string) => join(PG_BIN, name);

/** Runs a server tool as the postgres user when this is root (initdb and pg_ctl refuse root). */
function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return Deno.uid() === 0 ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

/** Starts the cluster in `dir` (made when absent) and makes sure database n2s exists. */
async function startPostgres(dir: string): Promise<PgServer> {
  const data = join(dir, "data");
  const logFile = join(dir, "server.log");
  if (!(await exists(join(data, "PG_VERSION")))) {
    await Deno.mkdir(dir, { recursive: true });
    if (Deno.uid() === 0) await runTool("chown", ["postgres:postgres", dir]);
    const [c, a] = asPostgres(pgTool("initdb"), [
      "-D",
      data,
      "-A",
      "trust",
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--locale=C.UTF-8",
      "--no-sync",
    ]);
    await runTool(c, a, undefined, true);
  }
  const port = freePort();
  // No fsync: it changes how fast data is written, not how fast it is read.
  const [c, a] = asPostgres(pgTool("pg_ctl"), [
    "-D",
    data,
    "-l",
    logFile,
    "-w",
    "-t",
    "120",
    "-o",
    `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=off ` +
    "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB",
    "start",
  ]);
  await runTool(c, a, undefined, true);
  const stop = async () => {
    const [c, a] = asPostgres(pgTool("pg_ctl"), ["-D", data, "-m", "fast", "-w", "stop"]);
    await runTool(c, a, undefined, true).catch((e) => log(`stopping PostgreSQL: ${e}`));
  };
  const server = { url: `postgres://postgres@127.0.0.1:${port}/n2s`, port, stop };
  const have = await psql(server, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'n2s'");
  if (have.trim() === "") await psql(server, "postgres", "CREATE DATABASE n2s");
  return server;
}

/** Runs psql with `sql` on its stdin; returns its output (unaligned, tuples only). */
async function psql(server: PgServer, db: string, sql: string, echo = false): Promise<string> {
  return await runTool(
    pgTool("psql"),
    [
      "-X",
      "-q",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-h",
      "127.0.0.1",
      "-p",
      String(server.port),
      "-U",
      "postgres",
      "-d",
      db,
      "-f",
      "-",
    ],
    sql,
    !echo,
  );
}

async function generatePostgres(plan: Plan, server: PgServer, repoId: string): Promise<void> {
  await psql(server, "postgres", "DROP DATABASE IF EXISTS n2s WITH (FORCE)");
  await psql(server, "postgres", "CREATE DATABASE n2s");
  Index.open(server.url, repoId).close();
  const parts = chunks(plan, 500_000);
  const worker = new Map<number, number>();
  // Two sessions load at once (the work is mostly hashing): alternate chunks, largest first.
  const load = [0, 0];
  for (const [i, part] of [...parts.entries()].sort((a, b) => rowsOf(b[1]) - rowsOf(a[1]))) {
    const w = load[0] <= load[1] ? 0 : 1;
    load[w] += rowsOf(part);
    worker.set(i, w);
  }
  const iso = (ms: string) => `to_timestamp((${ms}) / 1000.0)`;
  const sql = entrySql(
    plan,
    {
      file: (a, b) => `format('p%s/data/file-%s.csv', ${a}, lpad((${b})::text, 6, '0'))`,
      project: (a) => `('p' || (${a}))`,
      hex64: (seed) => `md5(${seed} || id) || md5(id || ${seed})`,
      hex32: (a, b) =>
        `lpad(to_hex(${a}), 16, '0') || lpad(to_hex((${b}) * 2654435761 % 4294967296), 16, '0')`,
      iso,
      text: (x) => `(${x})::text`,
      pad6: (x) => `lpad((${x})::text, 6, '0')`,
    },
    "k",
    "__PLAN__ p CROSS JOIN LATERAL generate_series(0, p.n - 1) AS k",
  );
  await psql(
    server,
    "n2s",
    [
      // The constraints and the blob index are made again after the load (with the same names
      // and definitions as the schema's): building them at the end is much faster.
      "ALTER TABLE files DROP CONSTRAINT files_changeset_fkey;",
      "ALTER TABLE files DROP CONSTRAINT files_changeset_path_key;",
      "DROP INDEX files_blob;",
      `CREATE TABLE bench_plan (seq BIGINT PRIMARY KEY, id TEXT COLLATE "C", source TEXT,
        parent TEXT, host TEXT, m BIGINT, n BIGINT, nr BIGINT, nw BIGINT, off BIGINT, nb BIGINT,
        created BIGINT, completed BIGINT, chunk INT);`,
      `INSERT INTO bench_plan VALUES ${
        planValues(plan, (c) => `, ${parts.findIndex((p) => p.includes(c))}`)
      };`,
      `INSERT INTO changesets (id, name, source, client, root, parent, status, files_planned,
        bytes_planned, files_uploaded, bytes_uploaded, created, completed, error, chain, info,
        host)
       SELECT id, NULL, source, 'scan', '/srv/' || source, parent, 'complete', n, 0, 0, 0,
        ${iso("created")}, ${iso("completed")}, NULL, md5(id) || md5(source || id),
        '{"full":true}', host FROM bench_plan ORDER BY seq;`,
    ].join("\n"),
  );
  await Promise.all([0, 1].map(async (w) => {
    const mine = [...parts.keys()].filter((i) => worker.get(i) === w);
    const script = mine.flatMap((i) => [
      `INSERT INTO files (${FILE_COLUMNS}) ${
        sql.replace("__PLAN__", `(SELECT * FROM bench_plan WHERE chunk = ${i})`)
      };`,
      `SELECT to_char(now(), 'HH24:MI:SS') || ' postgres: entries of changesets ${
        parts[i][0].seq
      }-${parts[i][parts[i].length - 1].seq} written';`,
    ]).join("\n");
    await psql(server, "n2s", script, true);
  }));
  log("postgres: constraints, indexes, counts, VACUUM ANALYZE");
  await psql(
    server,
    "n2s",
    [
      "SET maintenance_work_mem = '1GB';",
      "DROP TABLE bench_plan;",
      "ALTER TABLE files ADD CONSTRAINT files_changeset_path_key UNIQUE (changeset, path);",
      "CREATE INDEX files_blob ON files(blob_id);",
      `ALTER TABLE files ADD CONSTRAINT files_changeset_fkey FOREIGN KEY (changeset)
        REFERENCES changesets(id);`,
      countsSql("postgres"),
      "VACUUM (ANALYZE) changesets;",
      "VACUUM (ANALYZE) files;",
    ].join("\n"),
  );
  settle(server.url, repoId, plan);
  await psql(server, "n2s", "VACUUM (ANALYZE) changesets; CHECKPOINT;");
}

const rowsOf = (cs: Planned[]) => cs.reduce((a, c) => a + c.n, 0);

// --- processes ---------------------------------------------------------------------------------

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs a tool with `input` on its stdin; its output goes to this process's (`quiet`: is returned
 * instead). Throws when it fails.
 */
async function runTool(
  cmd: string,
  args: string[],
  input?: string,
  quiet = false,
): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: input === undefined ? "null" : "piped",
    stdout: quiet ? "piped" : "inherit",
    stderr: quiet ? "piped" : "inherit",
    env: { LC_ALL: "C.UTF-8" },
  }).spawn();
  if (input !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(input));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  if (!out.success) {
    const text = quiet ? (dec.decode(out.stderr) + dec.decode(out.stdout)).trim() : "";
    throw new Error(`${cmd} ${args.slice(0, 6).join(" ")}… failed (exit ${out.code}) ${text}`);
  }
  return quiet ? dec.decode(out.stdout) : "";
}

// --- timing the commands -------------------------------------------------------------------------

interface Measure {
  engine: string;
  command: string;
  first: number;
  best: number | null;
  rssMiB: number | null;
  /** User and system CPU seconds of the best run (less disturbed by other load than wall clock). */
  cpu: number | null;
  rows: number | null;
  error: string | null;
}

const TIME = "/usr/bin/time";
const haveTime = await exists(TIME);

/** Counts the elements of a JSON array printed with two-space indentation (printJson). */
async function countRows(path: string): Promise<number> {
  const f = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  // Matching "\n  {" or "\n  \"" across chunk borders: the state is how much of "\n  " matched.
  let state = 0;
  let n = 0;
  let first = true;
  try {
    for (;;) {
      const got = await f.read(buf);
      if (got === null) break;
      for (let i = 0; i < got; i++) {
        const b = buf[i];
        if (first) {
          // "[]" is empty; "[\n  …" starts with an element.
          first = false;
          if (b !== 0x5b) return 0;
          continue;
        }
        if (state === 3) {
          if (b === 0x7b || b === 0x22 || b === 0x5b || (b >= 0x30 && b <= 0x39)) n++;
          state = b === 0x0a ? 1 : 0;
        } else if (b === 0x0a) state = 1;
        else if (b === 0x20 && state > 0) state++;
        else state = 0;
      }
    }
  } finally {
    f.close();
  }
  return n;
}

/** Peak RSS by polling /proc when /usr/bin/time is not there (misses short peaks). */
async function pollRss(pid: number, done: Promise<unknown>): Promise<number> {
  let peak = 0;
  let over = false;
  done.then(() => over = true);
  while (!over) {
    try {
      const s = await Deno.readTextFile(`/proc/${pid}/status`);
      const m = /VmHWM:\s+(\d+) kB/.exec(s);
      if (m) peak = Math.max(peak, Number(m[1]));
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return peak;
}

/** Runs the CLI once: seconds, peak RSS (KiB), exit code, stdout in `outPath`, stderr text. */
async function runCli(
  args: string[],
  outPath: string,
  work: string,
): Promise<{ seconds: number; rssKiB: number; cpu: number | null; code: number; stderr: string }> {
  const errPath = `${outPath}.err`;
  const timePath = `${outPath}.time`;
  const deno = [Deno.execPath(), "run", "-A", "--quiet", join(work, "code", "cli.ts"), ...args];
  const argv = haveTime ? [TIME, "-f", "%M %U %S", "-o", timePath, ...deno] : deno;
  const env: Record<string, string> = {
    ...Deno.env.toObject(),
    XDG_CONFIG_HOME: join(work, "xdg"),
  };
  for (const k of ["N2S_PASSPHRASE", "N2S_REPOSITORY", "N2S_INDEX", "N2S_CONFIG"]) delete env[k];
  const t0 = performance.now();
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'out=$1 err=$2; shift 2; exec "$@" > "$out" 2> "$err"',
      "sh",
      outPath,
      errPath,
      ...argv,
    ],
    cwd: repoRoot,
    env,
    clearEnv: true,
    stdin: "null",
  }).spawn();
  const status = child.status;
  const polled = haveTime ? Promise.resolve(0) : pollRss(child.pid, status);
  const { code } = await status;
  const seconds = (performance.now() - t0) / 1000;
  let rssKiB = await polled;
  let cpu: number | null = null;
  if (haveTime) {
    const t = (await Deno.readTextFile(timePath).catch(() => "")).trim().split("\n");
    const [rss, user, sys] = t[t.length - 1].split(" ").map(Number);
    rssKiB = rss || 0;
    cpu = user + sys;
  }
  const stderr = await Deno.readTextFile(errPath).catch(() => "");
  return { seconds, rssKiB, cpu, code, stderr };
}

/** The 1-, 5- and 15-minute load averages. */
function loadAverage(): string {
  return Deno.loadavg().map((x) => x.toFixed(1)).join(" ");
}

async function dropCaches(): Promise<void> {
  try {
    await runTool("sync", [], undefined, true);
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "3");
  } catch (e) {
    log(`--cold: could not drop the page cache (${e instanceof Error ? e.message : e})`);
  }
}

async function measure(
  engine: string,
  label: string,
  args: string[],
  work: string,
): Promise<Measure> {
  const outPath = join(work, "answer.json");
  if (values.cold) await dropCaches();
  const first = await runCli(args, outPath, work);
  const result: Measure = {
    engine,
    command: label,
    first: first.seconds,
    best: null,
    rssMiB: first.rssKiB / 1024,
    cpu: first.cpu,
    rows: null,
    error: null,
  };
  if (first.code !== 0) {
    result.error = `exit ${first.code}: ${first.stderr.trim().split("\n")[0] ?? ""}`.slice(0, 120);
    log(`${engine} ${label}: ${result.error}`);
    return result;
  }
  result.rows = await countRows(outPath);
  const runs = first.seconds > SLOW_S ? 1 : RUNS;
  for (let i = 0; i < runs; i++) {
    const r = await runCli(args, outPath, work);
    if (r.seconds < (result.best ?? Infinity)) {
      result.best = r.seconds;
      result.cpu = r.cpu;
    }
    result.rssMiB = Math.max(result.rssMiB ?? 0, r.rssKiB / 1024);
  }
  for (const f of [outPath, `${outPath}.err`, `${outPath}.time`]) {
    await Deno.remove(f).catch(() => {});
  }
  log(
    `${engine} ${label}: first ${first.seconds.toFixed(2)} s, best ${result.best!.toFixed(2)} s, ${
      result.rssMiB!.toFixed(0)
    } MiB, CPU ${result.cpu?.toFixed(2)} s, ${result.rows} rows`,
  );
  return result;
}

// --- the run -----------------------------------------------------------------------------------

interface State {
  params: {
    rows: number;
    changesets: number;
    sources: number;
    base: number;
    analyze: boolean;
    generator: number;
  };
  repositoryId?: string;
  generated: Record<string, { seconds: number; bytes: number; schema: string }>;
}

const work = values.keep
  ? resolve(values.keep)
  : await Deno.makeTempDir({ dir: "/tmp", prefix: "n2s-bench-index-" });
await Deno.mkdir(work, { recursive: true });
// PostgreSQL runs as its own user: it must reach its directory inside this one.
await Deno.chmod(work, 0o711);
const statePath = join(work, "bench.json");

/** The commit, the files of lib/ changed beside it, and a digest of the code the timings run. */
interface CodeVersion {
  commit: string;
  changed: number;
  digest: string;
}

const sha256 = async (data: Uint8Array | string) =>
  [
    ...new Uint8Array(
      await crypto.subtle.digest(
        "SHA-256",
        typeof data === "string" ? new TextEncoder().encode(data) : data as Uint8Array<ArrayBuffer>,
      ),
    ),
  ].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 12);

/**
 * A copy of the CLI and lib/ to time: the working tree may change while the timings run (and
 * the copy is the code the index was generated with: this script loaded lib/ a moment ago).
 */
async function snapshotCode(to: string): Promise<CodeVersion> {
  await Deno.remove(to, { recursive: true }).catch(() => {});
  await Deno.mkdir(to, { recursive: true });
  const files: string[] = [];
  for (const f of ["cli.ts", "mod.ts", "deno.json", "deno.lock"]) files.push(f);
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(join(repoRoot, dir))) {
      const rel = join(dir, e.name);
      if (e.isDirectory) await walk(rel);
      else if (e.isFile) files.push(rel);
    }
  };
  await walk("lib");
  files.sort();
  const parts: string[] = [];
  for (const f of files) {
    const data = await Deno.readFile(join(repoRoot, f)).catch(() => null);
    if (data === null) continue;
    await Deno.mkdir(dirname(join(to, f)), { recursive: true });
    await Deno.writeFile(join(to, f), data);
    parts.push(`${f} ${await sha256(data)}`);
  }
  const git = async (...args: string[]) =>
    (await runTool("git", ["-C", repoRoot, ...args], undefined, true).catch(() => "")).trim();
  return {
    commit: await git("rev-parse", "--short", "HEAD") || "unknown",
    changed: (await git("status", "--porcelain", "--", "lib", "cli.ts")).split("\n")
      .filter(Boolean).length,
    digest: await sha256(parts.join("\n")),
  };
}

const code = join(work, "code");
const codeVersion = await snapshotCode(code);
/** The schema the index is generated with: kept data made with another one is made again. */
const schemaOf = async (engine: string) => {
  const text = await Deno.readTextFile(join(code, "lib", "index", "sqlite.ts"));
  const name = engine === "sqlite" ? "SQLITE_SCHEMA" : "POSTGRES_SCHEMA";
  const m = new RegExp(`const ${name} = \`([^\`]*)\``).exec(text);
  const version = /SCHEMA_VERSION = (\d+)/.exec(text)?.[1];
  return await sha256(`${version}\n${m?.[1] ?? text}`);
};
const params = {
  rows: ROWS,
  changesets: CHANGESETS,
  sources: SOURCES,
  base: BASE,
  analyze: values["sqlite-analyze"]!,
  generator: GENERATOR,
};
let state: State = { params, generated: {} };
try {
  const old = JSON.parse(await Deno.readTextFile(statePath)) as State;
  if (JSON.stringify(old.params) === JSON.stringify(params) && !values.regenerate) state = old;
} catch {
  // A fresh directory.
}
const saveState = () => Deno.writeTextFile(statePath, JSON.stringify(state, null, 2) + "\n");

let server: PgServer | null = null;
const stopAll = async () => {
  if (server) await server.stop();
  server = null;
  if (!values.keep) await Deno.remove(work, { recursive: true }).catch(() => {});
};
Deno.addSignalListener("SIGINT", () => {
  stopAll().finally(() => Deno.exit(130));
});

try {
  const repo = join(work, "repo");
  if (!(await exists(join(repo, "config")))) {
    await Deno.remove(repo, { recursive: true }).catch(() => {});
    const init = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        join(code, "cli.ts"),
        "init",
        "--repo",
        repo,
        "--index",
        join(work, "init.sqlite"),
      ],
      env: { N2S_PASSPHRASE: "bench index scale", N2S_KDF_LOG_N: "10" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!init.success) throw new Error(`n2s init: ${new TextDecoder().decode(init.stderr)}`);
    state = { params, generated: {} };
  }
  // The repository's id, as readConfig reads it.
  const repoId = (JSON.parse(await Deno.readTextFile(join(repo, "config"))) as { id: string }).id;
  if (state.repositoryId !== repoId) state = { params, repositoryId: repoId, generated: {} };
  await saveState();

  const plan = makePlan();
  const newest = plan.changesets[plan.changesets.length - 1];
  log(
    `${ROWS.toLocaleString("en")} entries in ${CHANGESETS} changesets of ${SOURCES} sources; ` +
      `first changesets ${plan.changesets[0].n.toLocaleString("en")} entries each ` +
      `(${plan.projects} projects), later ones ${
        Math.min(...plan.changesets.slice(SOURCES).map((c) => c.n))
      }–${Math.max(...plan.changesets.slice(SOURCES).map((c) => c.n))}; work in ${work}`,
  );

  const locations: Record<string, string> = {};
  for (const engine of ENGINES) {
    let location: string;
    if (engine === "postgres") {
      server = await startPostgres(join(work, "pg"));
      location = server.url;
    } else location = join(work, "index.sqlite");
    locations[engine] = location;
    const schema = await schemaOf(engine);
    if (state.generated[engine]?.schema !== schema) {
      log(`${engine}: generating`);
      const t0 = performance.now();
      if (engine === "sqlite") await generateSqlite(plan, location, repoId);
      else await generatePostgres(plan, server!, repoId);
      const seconds = (performance.now() - t0) / 1000;
      const bytes = engine === "sqlite"
        ? (await Deno.stat(location)).size
        : Number((await psql(server!, "n2s", "SELECT pg_database_size('n2s')")).trim());
      state.generated[engine] = { seconds, bytes, schema };
      await saveState();
      log(`${engine}: generated in ${seconds.toFixed(0)} s, ${(bytes / 2 ** 30).toFixed(2)} GiB`);
    } else log(`${engine}: reusing the index generated before`);
  }

  const results: Measure[] = [];
  const loadStart = loadAverage();
  for (const engine of ENGINES) {
    const at = ["--repo", repo, "--index", locations[engine]];
    // p123 when there are that many projects (a run of 100 of its files), else the last one.
    const glob = `p${Math.min(123, plan.projects - 1)}/data/file-0001*`;
    const commands: [string, string[]][] = [
      ["startup: --version", ["--version"]],
      ["status --json", ["status", ...at, "--json"]],
      ["status ID --json", ["status", newest.id, ...at, "--json"]],
      [`find '${glob}' --json`, ["find", glob, ...at, "--json"]],
      ["find file-000123 --json", ["find", "file-000123", ...at, "--json"]],
      ["ls ID --json (full tree)", ["ls", newest.id, ...at, "--json"]],
      ["ls ID --changed --json", ["ls", newest.id, "--changed", ...at, "--json"]],
      ["log --json", ["log", ...at, "--json"]],
      [`log --source ${newest.source} --json`, ["log", "--source", newest.source, ...at, "--json"]],
    ];
    for (const [label, args] of commands) results.push(await measure(engine, label, args, work));
  }

  const s = (x: number | null) => (x === null ? "-" : x.toFixed(2));
  const lines = [
    `# n2s index at scale`,
    "",
    `${ROWS.toLocaleString("en")} entries, ${CHANGESETS.toLocaleString("en")} changesets of ` +
    `${SOURCES} sources (first changeset of each: ${
      plan.changesets[0].n.toLocaleString("en")
    } entries); ID = ${newest.id}, the newest changeset (source ${newest.source}, ` +
    `${Math.ceil(CHANGESETS / SOURCES) - 1} changesets after its first). ` +
    `Code: commit ${codeVersion.commit} with ${codeVersion.changed} changed files in lib/ and ` +
    `cli.ts (copy digest ${codeVersion.digest}). ` +
    `Run ${new Date().toISOString().slice(0, 16)}Z, deno ${Deno.version.deno}, ` +
    `${navigator.hardwareConcurrency} cores, load average ${loadStart} at the start of the timings, ` +
    `${loadAverage()} at the end (other work on the machine slows the wall clock; CPU s is the ` +
    `n2s process's own user + system time).`,
    "",
    ...ENGINES.map((e) => {
      const g = state.generated[e];
      return `- ${e}: generated in ${g.seconds.toFixed(0)} s, ${
        (g.bytes / 2 ** 30).toFixed(2)
      } GiB` +
        (e === "sqlite" && !params.analyze ? " (no ANALYZE, as n2s leaves the file)" : "") +
        (e === "postgres" ? " (VACUUM ANALYZE; server memory not in the RSS column)" : "");
    }),
    "",
    `Seconds of wall clock for the whole \`deno run -A cli.ts …\` process: the first run, then the ` +
    `best of ${RUNS} (of 1 when the first took over ${SLOW_S} s). Target: under 1 s.`,
    "",
    "| engine | command | first s | best s | CPU s | peak RSS MiB | rows | < 1 s |",
    "|---|---|---:|---:|---:|---:|---:|:---:|",
    ...results.map((r) =>
      `| ${r.engine} | \`${r.command}\` | ${s(r.first)} | ${s(r.best)} | ${s(r.cpu)} | ${
        r.rssMiB === null ? "-" : r.rssMiB.toFixed(0)
      } | ${r.error ?? r.rows ?? "-"} | ${
        r.error ? "error" : (r.best ?? r.first) < 1 ? "yes" : "**no**"
      } |`
    ),
    "",
  ];
  const md = lines.join("\n");
  console.log(md);
  await Deno.mkdir(dirname(outFile), { recursive: true });
  await Deno.writeTextFile(outFile, md);
  log(`written to ${outFile}`);
} finally {
  await stopAll();
}
