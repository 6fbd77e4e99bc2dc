// Starts a throwaway s3rver (installed by scripts/setup/s3.sh) on a free loopback port with one
// bucket, for the S3 backend tests. s3rver checks access keys but not SigV4 signatures.

import { fileURLToPath } from "node:url";

/** A running S3-compatible server and what a client needs to reach it. */
export interface S3Server {
  /** "http://127.0.0.1:PORT" */
  endpoint: string;
  port: number;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /**
   * The service endpoint for virtual-host style requests: a request whose Host header is
   * `<bucket>.s3.<serviceEndpoint>` addresses that bucket.
   */
  serviceEndpoint: string;
  /** Stops the server and removes its data. */
  stop(): Promise<void>;
}

const BIN = fileURLToPath(new URL("../../.cache/s3rver/node_modules/.bin/s3rver", import.meta.url));
const BUCKET = "n2s-test";
const SERVICE_ENDPOINT = "localhost";

/** Starts s3rver; throws when it is not installed or does not come up within 30 s. */
export async function startS3(): Promise<S3Server> {
  try {
    await Deno.stat(BIN);
  } catch {
    throw new Error(`s3rver is not installed (${BIN} is missing): run \`bash scripts/setup.sh\``);
  }
  const dir = await Deno.makeTempDir({ prefix: "n2s-s3rver-" });
  const child = new Deno.Command(BIN, {
    args: [
      "-d",
      dir,
      "-a",
      "127.0.0.1",
      "-p",
      "0",
      "--silent",
      "--service-endpoint",
      SERVICE_ENDPOINT,
      "--configure-bucket",
      BUCKET,
    ],
    // s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its
    // legacy provider: without it every listing longer than one page fails with InternalError.
    env: { NODE_OPTIONS: "--openssl-legacy-provider" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    await drained;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  // Both pipes are read until the process ends, so a chatty server never blocks on them.
  let portFound: (port: number) => void;
  const portP = new Promise<number>((r) => portFound = r);
  const dec = new TextDecoder();
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) {
      output += dec.decode(chunk, { stream: true });
      const m = output.match(/listening on [^\s:]+:(\d+)/);
      if (m) portFound(Number(m[1]));
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  try {
    const port = await Promise.race([
      portP,
      child.status.then((s) => {
        throw new Error(`s3rver exited with code ${s.code} before listening:\n${output}`);
      }),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`s3rver did not listen within 30 s:\n${output}`)), 30000)
      ),
    ]);
    const endpoint = `http://127.0.0.1:${port}`;
    // Listening is not yet answering: wait for one HTTP reply.
    const deadline = Date.now() + 10000;
    while (true) {
      try {
        const r = await fetch(`${endpoint}/`);
        await r.body?.cancel();
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`s3rver at ${endpoint} does not answer: ${e}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    return {
      endpoint,
      port,
      bucket: BUCKET,
      accessKeyId: "S3RVER",
      secretAccessKey: "S3RVER",
      region: "us-east-1",
      serviceEndpoint: SERVICE_ENDPOINT,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A recording HTTP proxy in front of an S3 server that can answer with faults instead. */
export interface S3Proxy {
  /** "http://127.0.0.1:PORT" */
  endpoint: string;
  port: number;
  /** "METHOD /path?query" of every request, in order of arrival. */
  log: string[];
  /** Decides per request whether to answer with a fault instead of forwarding. */
  fault: (method: string, url: URL) => Response | undefined;
  stop(): Promise<void>;
}

/** Starts a proxy that forwards every request to `target` (an S3 endpoint) and logs it. */
export function startS3Proxy(target: string): S3Proxy {
  const hop = ["host", "connection", "content-length", "transfer-encoding", "keep-alive"];
  const proxy: S3Proxy = {
    endpoint: "",
    port: 0,
    log: [],
    fault: () => undefined,
    stop: async () => {
      await server.shutdown();
    },
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const url = new URL(req.url);
      proxy.log.push(`${req.method} ${url.pathname}${url.search}`);
      const fault = proxy.fault(req.method, url);
      if (fault) {
        await req.body?.cancel();
        return fault;
      }
      const headers = new Headers();
      for (const [k, v] of req.headers) if (!hop.includes(k)) headers.set(k, v);
      const body = req.body ? new Uint8Array(await req.arrayBuffer()) : undefined;
      const res = await fetch(`${target}${url.pathname}${url.search}`, {
        method: req.method,
        headers,
        body,
      });
      const out = new Headers();
      for (const [k, v] of res.headers) {
        if (!hop.includes(k) || k === "content-length") out.set(k, v);
      }
      return new Response(req.method === "HEAD" ? null : res.body, {
        status: res.status,
        headers: out,
      });
    },
  );
  proxy.port = server.addr.port;
  proxy.endpoint = `http://127.0.0.1:${proxy.port}`;
  return proxy;
}
