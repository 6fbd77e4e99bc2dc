// SQLite's errors as the user meets them: every one names the index file and says what to do.
// The index wraps its database once (guardDatabase), so no query needs its own handling.

import type { DatabaseSync, StatementSync } from "node:sqlite";

/** What went wrong with an index file, as far as the user can act on it. */
export type IndexProblem = "damaged" | "full" | "busy" | "access" | "io" | "other";

/** An error of the index database, naming its file. */
export class IndexError extends Error {
  /** The error's name. */
  override name = "IndexError";
  /** Makes the error for index `file`; `problem` says what the user can do. */
  constructor(
    readonly file: string,
    readonly problem: IndexProblem,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

// SQLite's primary result codes that call for something of the user.
const SQLITE_PERM = 3;
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;

/** A path as a shell word (quoted when it needs to be). */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** SQLite's result code of an error from node:sqlite, when it carries one. */
function resultCode(e: Error): number | undefined {
  const code = (e as { errcode?: unknown }).errcode;
  return typeof code === "number" ? code & 0xff : undefined;
}

/** Whether `e` came from SQLite (rather than from a caller's mistake, such as a bad binding). */
function fromSqlite(e: unknown): e is Error {
  return e instanceof Error &&
    (resultCode(e) !== undefined || (e as { code?: unknown }).code === "ERR_SQLITE_ERROR");
}

/** Which problem an SQLite error is. */
function problemOf(e: Error): IndexProblem {
  const code = resultCode(e);
  const msg = e.message;
  if (
    code === SQLITE_CORRUPT || code === SQLITE_NOTADB ||
    /malformed|file is not a database|file is encrypted/i.test(msg)
  ) return "damaged";
  if (code === SQLITE_FULL || /database or disk is full|no space/i.test(msg)) return "full";
  if (code === SQLITE_BUSY || code === SQLITE_LOCKED || /database (table )?is locked/i.test(msg)) {
    return "busy";
  }
  if (
    code === SQLITE_READONLY || code === SQLITE_CANTOPEN || code === SQLITE_PERM ||
    /readonly database|unable to open database/i.test(msg)
  ) return "access";
  if (code === SQLITE_IOERR || /disk I\/O error/i.test(msg)) return "io";
  return "other";
}

/** The error the user sees for an SQLite error on index `file`; other errors pass unchanged. */
export function indexError(file: string, e: unknown): unknown {
  if (e instanceof IndexError || !fromSqlite(e)) return e;
  const why = e.message.split("\n")[0];
  const f = shellWord(file);
  const problem = problemOf(e);
  const message = {
    damaged: `index ${file} is damaged (${why}); move it aside (mv ${f} ${f}.damaged) and ` +
      `rebuild it from the repository with "n2s recover index"`,
    full: `index ${file} could not be written: no space left on its disk (${why}); free space ` +
      `on the file system that holds it and run the command again`,
    busy: `index ${file} is in use by another n2s process (${why}); wait for it to finish, ` +
      `or give another index with --index`,
    access: `cannot write index ${file} (${why}); check that it and its directory are ` +
      `writable by this user`,
    io: `index ${file} could not be read or written (${why}); check the disk that holds it`,
    other: `index ${file}: ${why}`,
  }[problem];
  return new IndexError(file, problem, message, { cause: e });
}

/** Calls `f`, turning what it throws into an IndexError. */
function call<T>(file: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw indexError(file, e);
  }
}

/** An iterator of rows whose every step turns SQLite errors into IndexErrors. */
function guardIterator<T>(file: string, it: IterableIterator<T>): IterableIterator<T> {
  return {
    next() {
      // No closure per row: a restore reads millions of them.
      try {
        return it.next();
      } catch (e) {
        throw indexError(file, e);
      }
    },
    return: (v?: unknown) => call(file, () => it.return?.(v) ?? { done: true, value: v as T }),
    [Symbol.iterator]() {
      return this;
    },
  };
}

/** Wraps every method of `target` so that what it throws goes through indexError. */
function guard<T extends object>(
  file: string,
  target: T,
  wrapResult: (method: PropertyKey, result: unknown) => unknown,
): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t);
      if (typeof v !== "function") return v;
      let w = wrapped.get(prop);
      if (w === undefined) {
        w = (...args: unknown[]) => wrapResult(prop, call(file, () => v.apply(t, args)));
        wrapped.set(prop, w);
      }
      return w;
    },
  });
}

function guardStatement(file: string, stmt: StatementSync): StatementSync {
  return guard(
    file,
    stmt,
    (method, r) => method === "iterate" ? guardIterator(file, r as IterableIterator<unknown>) : r,
  );
}

/**
 * The database with every call (and every statement it prepares, and every row iterator) turning
 * SQLite's errors into IndexErrors that name `file`.
 */
export function guardDatabase(file: string, db: DatabaseSync): DatabaseSync {
  return guard(
    file,
    db,
    (method, r) => method === "prepare" ? guardStatement(file, r as StatementSync) : r,
  );
}

/** Opens a database the same way: an error of the open names the file too. */
export function openGuarded(file: string, open: () => DatabaseSync): DatabaseSync {
  return guardDatabase(file, call(file, open));
}
