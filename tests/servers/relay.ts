// A TCP relay on loopback in front of a test server, whose connections a test can cut: while it
// is cut, open connections are closed and new ones are closed as soon as they arrive, as when a
// server restarts or a network path fails.

/** A relay started by `startRelay`. */
export interface Relay {
  port: number;
  /** Closes every open connection and every new one until `mend`. */
  cut(): void;
  /** Lets connections through again. */
  mend(): void;
  /**
   * Lets the next `count` connections carry `bytes` bytes from the client, then closes them,
   * as a peer that resets a connection mid-request does.
   */
  dropAfter(count: number, bytes: number): void;
  /** How many connections `dropAfter` has closed. */
  readonly dropped: number;
  stop(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 that forwards every connection to `target`. */
export function startRelay(target: { hostname: string; port: number }): Relay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let cut = false;
  let drops: { count: number; bytes: number } = { count: 0, bytes: 0 };
  let dropped = 0;
  const close = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch {
      // already closed
    }
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable, { preventClose: true });
    } catch {
      // one side went away
    }
    close(from);
    close(to);
  };
  // Forwards at most `limit` bytes from `from`, then closes both sides.
  const pipeUpTo = async (from: Deno.Conn, to: Deno.Conn, limit: number) => {
    const buf = new Uint8Array(16 << 10);
    try {
      let left = limit;
      while (left > 0) {
        const n = await from.read(buf.subarray(0, Math.min(buf.length, left)));
        if (n === null) break;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
        left -= n;
      }
    } catch {
      // one side went away
    }
    dropped++;
    close(from);
    close(to);
  };
  const serving = (async () => {
    for await (const conn of listener) {
      if (cut) {
        conn.close();
        continue;
      }
      const limit = drops.count > 0 ? drops.bytes : undefined;
      if (limit !== undefined) drops = { count: drops.count - 1, bytes: drops.bytes };
      Deno.connect({ ...target, transport: "tcp" }).then((up) => {
        open.add(conn);
        open.add(up);
        if (limit === undefined) pipe(conn, up);
        else pipeUpTo(conn, up, limit);
        pipe(up, conn);
      }, () => conn.close());
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut() {
      cut = true;
      for (const c of [...open]) close(c);
    },
    mend() {
      cut = false;
    },
    dropAfter(count: number, bytes: number) {
      drops = { count, bytes };
    },
    get dropped() {
      return dropped;
    },
    async stop() {
      this.cut();
      listener.close();
      await serving;
    },
  };
}
