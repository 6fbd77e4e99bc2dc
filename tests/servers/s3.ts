// Throwaway S3-compatible servers for the S3 backend tests (installed by scripts/setup/s3.sh),
// each on a free loopback port with one bucket: s3rver, which checks access keys but not SigV4
// signatures, and fauxqs, an independent implementation that checks neither; plus a recording,
// fault-injecting proxy to put in front of either.

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

const CACHE = fileURLToPath(new URL("../../.cache/", import.meta.url));
const S3RVER = `${CACHE}s3rver/node_modules/.bin/s3rver`;
const FAUXQS = `${CACHE}fauxqs`;
const BUCKET = "n2s-test";
const SERVICE_ENDPOINT = "localhost";

/** A started server process whose output named its port. */
interface Spawned {
  port: number;
  stop(): Promise<void>;
}

/**
 * Spawns a server, reads both of its pipes until it exits (so that a chatty server never
 * blocks), and resolves with the port of the first "listening on HOST:PORT" it prints, once the
 * port answers HTTP.
 */
async function spawnServer(
  what: string,
  command: string,
  options: Deno.CommandOptions,
  cleanup: () => Promise<void>,
): Promise<Spawned> {
  const child = new Deno.Command(command, {
    ...options,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
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
    await cleanup();
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const port = await Promise.race([
      portP,
      child.status.then((s) => {
        throw new Error(`${what} exited with code ${s.code} before listening:\n${output}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} did not listen within 30 s:\n${output}`)),
          30000,
        );
      }),
    ]);
    // Listening is not yet accepting: wait for one connection.
    const deadline = Date.now() + 10000;
    while (true) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`${what} on port ${port} does not answer: ${e}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    return { port, stop };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

async function assertInstalled(what: string, path: string): Promise<void> {
  try {
    await Deno.stat(path);
  } catch {
    throw new Error(`${what} is not installed (${path} is missing): run \`bash scripts/setup.sh\``);
  }
}

/**
 * Starts s3rver; throws when it is not installed or does not come up within 30 s. With `tls`, it
 * serves https with a new self-signed certificate for 127.0.0.1 and localhost, whose PEM file is
 * `caFile`.
 */
export async function startS3(
  opts: { tls?: boolean } = {},
): Promise<S3Server & { caFile?: string }> {
  await assertInstalled("s3rver", S3RVER);
  const dir = await Deno.makeTempDir({ prefix: "n2s-s3rver-" });
  const tlsArgs: string[] = [];
  let caFile: string | undefined;
  if (opts.tls) {
    caFile = `${dir}/cert.pem`;
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=n2s test s3",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.s3.localhost",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        caFile,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      await Deno.remove(dir, { recursive: true });
      throw new Error(
        `openssl could not make a certificate: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    tlsArgs.push("--key", `${dir}/key.pem`, "--cert", caFile);
  }
  const data = `${dir}/data`;
  const { port, stop } = await spawnServer("s3rver", S3RVER, {
    args: [
      ...tlsArgs,
      "-d",
      data,
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
  }, () => Deno.remove(dir, { recursive: true }).catch(() => {}));
  return {
    endpoint: `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    caFile,
    bucket: BUCKET,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    region: "us-east-1",
    serviceEndpoint: SERVICE_ENDPOINT,
    stop,
  };
}

/**
 * Starts fauxqs's S3 emulator, a second implementation written apart from s3rver, in memory.
 * It accepts any credentials and takes at most 11 MiB per request, so clients must use parts
 * of 5 to 10 MiB and a multipart threshold of at most 10 MiB.
 */
export async function startFauxqs(): Promise<Omit<S3Server, "serviceEndpoint">> {
  await assertInstalled("fauxqs", `${FAUXQS}/node_modules/fauxqs/package.json`);
  // It needs node:sqlite, which Deno has and the machine's node 20 has not; run from its folder,
  // Deno resolves its packages from that folder's node_modules.
  const launcher = `import { startFauxqs } from "fauxqs";
const s = await startFauxqs({ port: 0, logger: false, host: "127.0.0.1",
  init: { buckets: [${JSON.stringify(BUCKET)}] } });
console.log("fauxqs listening on 127.0.0.1:" + s.port);`;
  const { port, stop } = await spawnServer("fauxqs", Deno.execPath(), {
    args: ["eval", "--ext=js", launcher],
    cwd: FAUXQS,
  }, () => Promise.resolve());
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket: BUCKET,
    accessKeyId: "FAUXQS",
    secretAccessKey: "FAUXQS",
    region: "us-east-1",
    stop,
  };
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
