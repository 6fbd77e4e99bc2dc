// The thread that talks to PostgreSQL for the index. The index is synchronous (its SQLite
// engine is), and PostgreSQL's driver is not: the index's thread posts each statement here and
// waits on a shared buffer (Atomics.wait) until this thread has written the answer into it.
//
// Answers larger than the buffer travel in pieces: the waiting thread asks for the next one.
// This module is imported by the index's own module, so that a one-file bundle holds it; in a
// bundle the Worker runs the bundle itself, and only this module answers the init message.

/** This module's URL: what a Worker is started on (the bundle's URL in a one-file bundle). */
export const PG_WORKER_MODULE: string = import.meta.url;
/** Tag of the protocol's messages, so that other Workers' messages are left alone. */
export const PG_PROTOCOL = "n2s-pg-1";

/** Bytes of the shared buffer's header: state, length of the piece, whether more follow. */
export const HEADER_BYTES = 12;
/** State word values. */
export const WAITING = 0;
export const ANSWERED = 1;

/** A message to this thread. */
export type ToPg =
  | { proto: typeof PG_PROTOCOL; op: "open"; url: string; shared: SharedArrayBuffer }
  | { proto: typeof PG_PROTOCOL; op: "query"; sql: string; params: unknown[] }
  | { proto: typeof PG_PROTOCOL; op: "next" }
  | { proto: typeof PG_PROTOCOL; op: "close" };

/** An answer, as JSON in the shared buffer. */
export type FromPg =
  | { rows: Record<string, unknown>[]; rowCount: number | null }
  | { error: { message: string; code?: string; detail?: string; hint?: string } };

interface PgClient {
  connect(): Promise<void>;
  query(q: { text: string; values: unknown[] } | string): Promise<{
    rows: Record<string, unknown>[];
    rowCount: number | null;
  }>;
  end(): Promise<void>;
  on(event: "error", f: (e: Error) => void): void;
}

/** Serves the protocol on this Worker's scope. */
function serve(scope: Scope): void {
  let shared: SharedArrayBuffer | null = null;
  let client: PgClient | null = null;
  let broken: Error | null = null;
  let pending: Uint8Array | null = null;
  const enc = new TextEncoder();

  const answer = (a: FromPg | null) => {
    if (shared === null) return;
    const head = new Int32Array(shared, 0, 3);
    const room = shared.byteLength - HEADER_BYTES;
    if (a !== null) pending = enc.encode(JSON.stringify(a));
    const all = pending ?? new Uint8Array(0);
    const piece = all.subarray(0, room);
    new Uint8Array(shared, HEADER_BYTES, piece.length).set(piece);
    pending = all.length > room ? all.subarray(room) : null;
    head[1] = piece.length;
    head[2] = pending === null ? 0 : 1;
    Atomics.store(head, 0, ANSWERED);
    Atomics.notify(head, 0);
  };
  const failure = (e: unknown): FromPg => {
    const err = e as { message?: string; code?: string; detail?: string; hint?: string };
    return {
      error: {
        message: String(err?.message ?? e),
        code: err?.code,
        detail: err?.detail,
        hint: err?.hint,
      },
    };
  };

  // One message at a time, in order: the waiting thread sends the next only after an answer.
  let queue = Promise.resolve();
  scope.addEventListener("message", (ev: MessageEvent) => {
    const m = ev.data as ToPg;
    if (m?.proto !== PG_PROTOCOL) return;
    queue = queue.then(async () => {
      if (m.op === "open") {
        shared = m.shared;
        try {
          const { default: pg } = await import("pg");
          // Counts and sizes as numbers (8-byte integers and sums arrive as text otherwise);
          // times as the Date the driver makes, which JSON writes as UTC ISO-8601.
          pg.types.setTypeParser(20, (v: string) => Number(v));
          pg.types.setTypeParser(1700, (v: string) => Number(v));
          const c = new pg.Client({ connectionString: m.url }) as unknown as PgClient;
          c.on("error", (e) => broken = e);
          await c.connect();
          client = c;
          answer({ rows: [], rowCount: 0 });
        } catch (e) {
          answer(failure(e));
        }
      } else if (m.op === "query") {
        if (client === null || broken !== null) {
          answer(failure(broken ?? new Error("the index's connection is closed")));
          return;
        }
        try {
          // Without parameters, the simple protocol: it takes several statements at once.
          const r = m.params.length === 0
            ? await client.query(m.sql)
            : await client.query({ text: m.sql, values: m.params });
          answer({ rows: r.rows ?? [], rowCount: r.rowCount });
        } catch (e) {
          answer(failure(e));
        }
      } else if (m.op === "next") {
        answer(null);
      } else if (m.op === "close") {
        const c = client;
        client = null;
        try {
          await c?.end();
        } catch {
          // closing anyway
        }
        answer({ rows: [], rowCount: 0 });
      }
    });
  });
}

type Scope = {
  addEventListener(type: "message", f: (e: MessageEvent) => void): void;
};

const WorkerScope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
if (WorkerScope && globalThis instanceof WorkerScope) {
  serve(globalThis as unknown as Scope);
}
