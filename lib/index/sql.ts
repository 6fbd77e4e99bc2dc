// What the index asks of its database engine: SQLite's synchronous statement interface
// (node:sqlite's DatabaseSync fits it as it is), which the PostgreSQL client gives too.

/** A value bound to a statement's `?`. */
export type SqlValue = string | number | bigint | null | Uint8Array;

/** A prepared statement. */
export interface SqlStatement {
  /** Runs the statement; `changes` is the number of rows it changed. */
  run(...params: SqlValue[]): { changes: number | bigint };
  /** The first row of the answer, or undefined. */
  get(...params: SqlValue[]): unknown;
  /** Every row of the answer. */
  all(...params: SqlValue[]): unknown[];
  /** The rows of the answer one at a time, in bounded memory. */
  iterate(...params: SqlValue[]): IterableIterator<unknown>;
}

/** A database connection. */
export interface SqlDatabase {
  /** Runs statements that take no parameters and return nothing. */
  exec(sql: string): void;
  /** Prepares one statement. */
  prepare(sql: string): SqlStatement;
  /** Closes the connection. */
  close(): void;
}

/** The engines the index runs on. */
export type Dialect = "sqlite" | "postgres";
