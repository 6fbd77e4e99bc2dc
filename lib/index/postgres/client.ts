// A synchronous PostgreSQL connection for the index: each statement is posted to a Worker that
// runs the `pg` driver, and this thread waits on a shared buffer for the answer. Statements are
// written as the index writes them for SQLite (`?` parameters, INSERT OR REPLACE, `IS ?`) and
// rewritten here for PostgreSQL.

import { IndexError, type IndexProblem } from "../errors.ts";
import type { SqlDatabase, SqlStatement, SqlValue } from "../sql.ts";
import {
  type FromPg,
  HEADER_BYTES,
  PG_PROTOCOL,
  PG_WORKER_MODULE,
  type ToPg,
  WAITING,
} from "./worker.ts";

/** Bytes of the buffer answers travel through (larger ones come in pieces). */
const SHARED_BYTES = 4 << 20;
/** Rows a cursor fetches at a time when a statement's answer is iterated. */
const FETCH_ROWS = 2000;
/** How long one statement may take before the index gives up on the connection. */
const ANSWER_TIMEOUT_MS = 30 * 60_000;

/** The columns that identify a row of each table, for INSERT OR REPLACE. */
const CONFLICT_KEYS: Record<string, string[]> = {
  meta: ["key"],
  files: ["changeset", "path"],
  lost_blobs: ["blob_id"],
  claims: ["changeset", "path"],
};

/** A PostgreSQL address with its password hidden, for messages. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ":***@");
  }
}

/** Rewrites a statement written for SQLite into PostgreSQL's form. */
export function toPostgres(sql: string): string {
  let s = sql.trim();
  if (/^BEGIN IMMEDIATE$/i.test(s)) return "BEGIN";
  const replace = /^INSERT OR REPLACE INTO (\w+)\s*\(([^)]*)\)/i.exec(s);
  if (replace) {
    const [, table, cols] = replace;
    const key = CONFLICT_KEYS[table];
    if (!key) throw new Error(`no conflict key known for table ${table}`);
    const names = cols.split(",").map((c) => c.trim());
    const rest = names.filter((c) => !key.includes(c));
    s = s.replace(/^INSERT OR REPLACE INTO/i, "INSERT INTO") +
      ` ON CONFLICT (${key.join(", ")}) DO ` +
      (rest.length === 0
        ? "NOTHING"
        : `UPDATE SET ${rest.map((c) => `${c} = EXCLUDED.${c}`).join(", ")}`);
  }
  // `x IS ?` compares with NULL as equal in SQLite.
  s = s.replace(/\bIS \?/g, "IS NOT DISTINCT FROM ?");
  // `?` → `$n`, outside quoted strings.
  let n = 0;
  let out = "";
  let quoted = false;
  for (const ch of s) {
    if (ch === "'") quoted = !quoted;
    out += ch === "?" && !quoted ? `$${++n}` : ch;
  }
  return out;
}

/** What the user can do about a PostgreSQL error (SQLSTATE classes). */
function problemOf(code: string | undefined, message: string): IndexProblem {
  if (code === "53100") return "full";
  if (code?.startsWith("53") || code === "40001" || code === "40P01") return "busy";
  if (code?.startsWith("28") || code === "42501") return "access";
  if (code?.startsWith("08") || /ECONNREFUSED|ENOTFOUND|connect|terminat/i.test(message)) {
    return "io";
  }
  if (code === "XX001" || code === "XX002") return "damaged";
  return "other";
}

/** The error the user sees for a failed statement on the index at `where`. */
function pgError(where: string, e: FromPg & { error: unknown }): IndexError {
  const { message, code, detail, hint } = e.error as {
    message: string;
    code?: string;
    detail?: string;
    hint?: string;
  };
  const problem = problemOf(code, message);
  const what = {
    full: "free space on the database server",
    busy: "try again when the database is less busy",
    access: "check the role, its password and its grants (docs/OPERATIONS.md)",
    io: "check that PostgreSQL is running and that the index address is right",
    damaged: 'restore the database from its backup, or rebuild it with "n2s recover index"',
    other: "",
  }[problem];
  const extra = [detail, hint].filter(Boolean).join("; ");
  return new IndexError(
    where,
    problem,
    `index ${where}: ${message}${extra ? ` (${extra})` : ""}${what ? `; ${what}` : ""}`,
    { cause: Object.assign(new Error(message), { code }) },
  );
}

/**
 * A value as the driver takes it. PostgreSQL's text cannot hold NUL (SQLite cuts the string
 * there): it becomes U+FFFD, as in a message that carried one.
 */
function param(v: SqlValue): unknown {
  if (typeof v === "string") return v.includes("\0") ? v.replaceAll("\0", "\uFFFD") : v;
  return typeof v === "bigint" ? v.toString() : v;
}

/** One connection to PostgreSQL, used synchronously. */
export class PgDatabase implements SqlDatabase {
  readonly #worker: Worker;
  readonly #shared = new SharedArrayBuffer(SHARED_BYTES);
  readonly #head = new Int32Array(this.#shared, 0, 3);
  readonly #dec = new TextDecoder();
  #cursors = 0;
  #closed = false;

  /** Connects to `url`; `where` is how messages name the index. */
  constructor(url: string, readonly where: string = displayUrl(url)) {
    this.#worker = new Worker(PG_WORKER_MODULE, { type: "module" });
    try {
      this.#call({ proto: PG_PROTOCOL, op: "open", url, shared: this.#shared });
    } catch (e) {
      this.#worker.terminate();
      this.#closed = true;
      throw e;
    }
  }

  #call(m: ToPg): { rows: Record<string, unknown>[]; rowCount: number | null } {
    if (this.#closed && m.op !== "open") {
      throw new IndexError(this.where, "other", `index ${this.where}: the connection is closed`);
    }
    Atomics.store(this.#head, 0, WAITING);
    this.#worker.postMessage(m);
    const parts: Uint8Array[] = [];
    for (;;) {
      const r = Atomics.wait(this.#head, 0, WAITING, ANSWER_TIMEOUT_MS);
      if (r === "timed-out") {
        throw new IndexError(
          this.where,
          "io",
          `index ${this.where}: no answer within ${ANSWER_TIMEOUT_MS / 60_000} minutes; ` +
            `check that PostgreSQL is running`,
        );
      }
      const len = this.#head[1];
      parts.push(new Uint8Array(this.#shared, HEADER_BYTES, len).slice());
      if (this.#head[2] === 0) break;
      Atomics.store(this.#head, 0, WAITING);
      this.#worker.postMessage({ proto: PG_PROTOCOL, op: "next" } satisfies ToPg);
    }
    const text = parts.length === 1
      ? this.#dec.decode(parts[0])
      : parts.map((p, i) => this.#dec.decode(p, { stream: i < parts.length - 1 })).join("");
    const a = JSON.parse(text) as FromPg;
    if ("error" in a) throw pgError(this.where, a);
    return a;
  }

  /** Runs one statement (already in PostgreSQL's form) and returns its answer. */
  query(sql: string, params: SqlValue[] = []): {
    rows: Record<string, unknown>[];
    rowCount: number | null;
  } {
    return this.#call({ proto: PG_PROTOCOL, op: "query", sql, params: params.map(param) });
  }

  exec(sql: string): void {
    // Statements without parameters may come several to a string (the schema).
    this.query(sql.trim() === "" ? "SELECT 1" : toPostgres(sql));
  }

  prepare(sql: string): SqlStatement {
    const text = toPostgres(sql);
    // deno-lint-ignore no-this-alias
    const db = this;
    return {
      run: (...params) => ({ changes: db.query(text, params).rowCount ?? 0 }),
      get: (...params) => db.query(text, params).rows[0],
      all: (...params) => db.query(text, params).rows,
      iterate: (...params) => db.#iterate(text, params),
    };
  }

  /** The rows of a query, fetched through a cursor a page at a time. */
  *#iterate(text: string, params: SqlValue[]): IterableIterator<unknown> {
    const name = `n2s_cursor_${++this.#cursors}`;
    // WITH HOLD: the cursor outlives the statement's own transaction (there may be none).
    this.query(`DECLARE ${name} NO SCROLL CURSOR WITH HOLD FOR ${text}`, params);
    try {
      for (;;) {
        const { rows } = this.query(`FETCH ${FETCH_ROWS} FROM ${name}`);
        yield* rows;
        if (rows.length < FETCH_ROWS) break;
      }
    } finally {
      // A cursor declared in a transaction that rolled back is gone already.
      if (!this.#closed) {
        try {
          this.query(`CLOSE ${name}`);
        } catch {
          // nothing left to close
        }
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    try {
      this.#call({ proto: PG_PROTOCOL, op: "close" });
    } catch {
      // closing anyway
    }
    this.#closed = true;
    this.#worker.terminate();
  }
}
