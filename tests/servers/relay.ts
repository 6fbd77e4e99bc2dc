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
  stop(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 that forwards every connection to `target`. */
export function startRelay(target: { hostname: string; port: number }): Relay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let cut = false;
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
  const serving = (async () => {
    for await (const conn of listener) {
      if (cut) {
        conn.close();
        continue;
      }
      Deno.connect({ ...target, transport: "tcp" }).then((up) => {
        open.add(conn);
        open.add(up);
        pipe(conn, up);
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
    async stop() {
      this.cut();
      listener.close();
      await serving;
    },
  };
}
