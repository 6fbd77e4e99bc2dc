// Throwaway S3-compatible servers for the S3 backend tests (installed by scripts/setup/s3.sh),
// each on a free loopback port with one bucket: s3rver, which checks access keys but not SigV4
// signatures, and fauxqs, an independent implementation that checks neither; plus a proxy to put
// in front of either, which checks every request's signature (sigv4_check.ts), records requests,
// injects faults and may serve https.

import { fileURLToPath } from "node:url";
import {
  type ArrivedRequest,
  checkSignature,
  refusalAnswer,
  type SignatureRules,
} from "./sigv4_check.ts";

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
 * Makes a private certificate authority and a server certificate it signed for 127.0.0.1,
 * localhost and *.s3.localhost, in `dir`; a client trusts `caFile`.
 */
export async function testCertificates(
  dir: string,
): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const caFile = `${dir}/ca.pem`;
  const certFile = `${dir}/cert.pem`;
  const keyFile = `${dir}/key.pem`;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
  const steps = [
    ["req", "-x509", ...ec, "-subj", "/CN=n2s test CA", "-keyout", `${dir}/ca.key`, "-out", caFile],
    [
      "req",
      "-x509",
      "-CA",
      caFile,
      "-CAkey",
      `${dir}/ca.key`,
      ...ec,
      "-subj",
      "/CN=n2s test s3",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.s3.localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "extendedKeyUsage=serverAuth",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
  ];
  for (const args of steps) {
    const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) {
      throw new Error(
        `openssl could not make a certificate: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
  }
  return { caFile, certFile, keyFile };
}

/**
 * Starts s3rver; throws when it is not installed or does not come up within 30 s. With `tls`, it
 * serves https with a new certificate for 127.0.0.1 and localhost from a new private certificate
 * authority, whose PEM file is `caFile`.
 */
export async function startS3(
  opts: { tls?: boolean } = {},
): Promise<S3Server & { caFile?: string }> {
  await assertInstalled("s3rver", S3RVER);
  const dir = await Deno.makeTempDir({ prefix: "n2s-s3rver-" });
  const tlsArgs: string[] = [];
  let caFile: string | undefined;
  if (opts.tls) {
    try {
      const certs = await testCertificates(dir);
      caFile = certs.caFile;
      tlsArgs.push("--key", certs.keyFile, "--cert", certs.certFile);
    } catch (e) {
      await Deno.remove(dir, { recursive: true });
      throw e;
    }
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

/** A proxy in front of an S3 server: it checks signatures, records, and may answer with faults. */
export interface S3Proxy {
  /** "http://127.0.0.1:PORT" (https with `tls`) */
  endpoint: string;
  port: number;
  /** "METHOD /path?query" of every request, in order of arrival. */
  log: string[];
  /** Decides per request whether to answer with a fault instead of forwarding. */
  fault: (method: string, url: URL) => Response | undefined;
  /**
   * Changes a request on its way in, before its signature is checked, as a hop that tampers with
   * requests would.
   */
  tamper: (request: { method: string; url: URL; headers: Headers }) => void;
  /** How many requests had their signature checked and found right. */
  verified: number;
  /** "METHOD /path: Code" of every request refused for its signature. */
  refused: string[];
  stop(): Promise<void>;
}

/** Options of `startS3Proxy`. */
export interface S3ProxyOptions {
  /**
   * Check each request's SigV4 signature (and payload hash) with these keys and region, and
   * refuse a wrong one with S3's error answer (403 SignatureDoesNotMatch and the like).
   */
  verify?: SignatureRules;
  /** Serve https with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
}

/**
 * Starts a proxy that forwards every request to `target` (an S3 endpoint) with its Host header
 * unchanged, so that virtual-host requests keep their bucket, and logs it.
 */
export function startS3Proxy(target: string, opts: S3ProxyOptions = {}): S3Proxy {
  const hop = ["connection", "content-length", "transfer-encoding", "keep-alive"];
  // Forwarding the Host header needs a client that allows it.
  const client = Deno.createHttpClient({ allowHost: true });
  const proxy: S3Proxy = {
    endpoint: "",
    port: 0,
    log: [],
    fault: () => undefined,
    tamper: () => {},
    verified: 0,
    refused: [],
    stop: async () => {
      await server.shutdown();
      client.close();
    },
  };
  const tls = opts.tls
    ? {
      cert: Deno.readTextFileSync(opts.tls.certFile),
      key: Deno.readTextFileSync(opts.tls.keyFile),
    }
    : {};
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, ...tls },
    async (req) => {
      const url = new URL(req.url);
      const headers = new Headers(req.headers);
      // Over HTTP/2 (https) the host travels as :authority, which Deno gives as the URL's host.
      if (!headers.has("host")) headers.set("host", url.host);
      proxy.tamper({ method: req.method, url, headers });
      proxy.log.push(`${req.method} ${url.pathname}${url.search}`);
      const body = req.body ? new Uint8Array(await req.arrayBuffer()) : new Uint8Array(0);
      if (opts.verify) {
        const arrived: ArrivedRequest = {
          method: req.method,
          path: url.pathname,
          query: url.search.slice(1),
          headers,
          body,
        };
        const refusal = await checkSignature(arrived, opts.verify);
        if (refusal) {
          proxy.refused.push(`${req.method} ${url.pathname}: ${refusal.code}`);
          return refusalAnswer(refusal, req.method);
        }
        proxy.verified++;
      }
      const fault = proxy.fault(req.method, url);
      if (fault) return fault;
      const forward = new Headers();
      for (const [k, v] of headers) if (!hop.includes(k)) forward.set(k, v);
      const res = await fetch(`${target}${url.pathname}${url.search}`, {
        method: req.method,
        headers: forward,
        body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
        client,
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
  proxy.endpoint = `${opts.tls ? "https" : "http"}://127.0.0.1:${proxy.port}`;
  return proxy;
}
