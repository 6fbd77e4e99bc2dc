// connect= for https endpoints. Deno's HTTP client can send plain HTTP to another address than
// the URL's host (a "tcp" proxy) but not TLS; through an HTTP proxy, though, it sends CONNECT
// and then speaks TLS to the URL's host name, SNI and certificate check included. So for an https
// endpoint with connect=, a backend runs this loopback CONNECT proxy, which opens every tunnel to
// the connect= address whatever host was asked for.

const MAX_HEAD = 8192;

/** A CONNECT proxy on 127.0.0.1 whose tunnels all lead to one address. */
export class ConnectTunnel {
  readonly #listener: Deno.TcpListener;
  readonly #open = new Set<Deno.Conn>();
  /** "http://127.0.0.1:PORT", the proxy URL for Deno.createHttpClient. */
  readonly url: string;

  constructor(readonly target: { hostname: string; port: number }) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.url = `http://127.0.0.1:${this.#listener.addr.port}`;
    this.#accept().catch(() => {});
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      this.#open.add(conn);
      this.#tunnel(conn).catch(() => {}).finally(() => {
        this.#open.delete(conn);
        try {
          conn.close();
        } catch { /* closed already */ }
      });
    }
  }

  async #tunnel(conn: Deno.Conn): Promise<void> {
    const head = await readHead(conn);
    if (head === null || !/^CONNECT \S+ HTTP\/1\.[01]\r\n/.test(head)) {
      await conn.write(new TextEncoder().encode("HTTP/1.1 405 Method Not Allowed\r\n\r\n"));
      return;
    }
    let up: Deno.TcpConn;
    try {
      up = await Deno.connect(this.target);
    } catch {
      await conn.write(new TextEncoder().encode("HTTP/1.1 502 Bad Gateway\r\n\r\n"));
      return;
    }
    this.#open.add(up);
    try {
      await conn.write(new TextEncoder().encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
      // Each direction ends the other when it ends.
      await Promise.race([
        conn.readable.pipeTo(up.writable, { preventClose: true }).catch(() => {}),
        up.readable.pipeTo(conn.writable, { preventClose: true }).catch(() => {}),
      ]);
    } finally {
      this.#open.delete(up);
      try {
        up.close();
      } catch { /* closed already */ }
    }
  }

  close(): void {
    try {
      this.#listener.close();
    } catch { /* closed already */ }
    for (const c of this.#open) {
      try {
        c.close();
      } catch { /* closed already */ }
    }
    this.#open.clear();
  }
}

/** Reads a request head (up to the blank line), byte by byte so that nothing after it is taken. */
async function readHead(conn: Deno.Conn): Promise<string | null> {
  const buf = new Uint8Array(MAX_HEAD);
  const one = new Uint8Array(1);
  let n = 0;
  while (n < MAX_HEAD) {
    const r = await conn.read(one);
    if (r === null) return null;
    buf[n++] = one[0];
    if (
      n >= 4 && buf[n - 4] === 13 && buf[n - 3] === 10 && buf[n - 2] === 13 && buf[n - 1] === 10
    ) {
      return new TextDecoder().decode(buf.subarray(0, n));
    }
  }
  return null;
}
