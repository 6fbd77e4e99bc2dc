// The S3 backend: objects in a bucket of any S3-compatible store, under an optional key prefix,
// reached over HTTP(S) with requests signed by AWS Signature Version 4.
//
// Location: s3://bucket/prefix?endpoint=URL&region=R&style=path|virtual&partsize=16MiB
//   &threshold=64MiB&connect=HOST:PORT
// - region: the parameter, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
// - endpoint: the parameter, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else
//   https://s3.<region>.amazonaws.com. Only scheme, host and port; no path.
// - style: "virtual" puts the bucket in the host name (bucket.s3.<region>.amazonaws.com),
//   "path" in the path (host/bucket/key). Default: virtual for AWS endpoints (host name ending
//   in amazonaws.com or amazonaws.com.cn) when the bucket name has no dot, since a dotted bucket
//   name does not match AWS's wildcard certificate; path for everything else, such as a custom
//   endpoint given by IP address or with a port (MinIO, s3rver, Ceph, ...).
// - partsize (default 16 MiB, 5 MiB to 5 GiB) and threshold (default 64 MiB): an object of known
//   size goes up in one PUT below `threshold` bytes and as a multipart upload in parts of
//   `partsize` from there on. An object of unknown size goes up in one PUT when it ends within
//   min(partsize, threshold) bytes, and as a multipart upload when it is longer. Sizes take K/M/G
//   suffixes (powers of 1024) or plain bytes.
// - connect: send every request to this address instead of resolving the endpoint's host, the
//   way curl's --connect-to does (for a store reachable only by address, and for testing
//   virtual-host requests without DNS).
// Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials), profile AWS_PROFILE or
// "default". No message ever contains a secret. AWS_CA_BUNDLE names the certificates an https
// endpoint is checked against instead of the built-in roots.
//
// A PUT is sent only once its body has been read whole into memory, so a body that fails midway
// never reaches the store (some S3-compatible servers write a PUT in place and would leave a
// partial object); in n2s such bodies are in memory already. Larger objects, and every object
// of unknown size beyond one part, stream as a multipart upload with two part buffers (one part
// uploads while the next is read); a failed upload is aborted, and S3 shows nothing of an
// upload before it completes. A put thus holds at most a known-size body below `threshold`, or
// about two parts.

import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { join } from "node:path";
import {
  type Backend,
  BackendError,
  type Body,
  BodyError,
  type ByteRange,
  checkKey,
  checkRange,
  judgeRangeAnswer,
  noBytes,
  NotFoundError,
  type ObjectInfo,
  rangeHeader,
} from "./backend.ts";
import { concat } from "../format/bytes.ts";
import {
  canonicalQuery,
  type Credentials,
  EMPTY_SHA256,
  encodePath,
  sha256Hex,
  signV4,
} from "./sigv4.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Default size of a multipart upload's parts. */
export const DEFAULT_PART_SIZE = 16 * MiB;
/** Default size from which objects go up as a multipart upload. */
export const DEFAULT_THRESHOLD = 64 * MiB;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_SIZE = 5 * GiB;
const MAX_PARTS = 10000;
/** How long a first connection may take before the endpoint counts as unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long a connected request may go without any traffic before it counts as stalled. */
const IDLE_TIMEOUT_MS = 60_000;
/** Content type of every object (S3's default, and what some stores need on an empty PUT). */
const OCTET_STREAM = "application/octet-stream";
/** Largest error body read to find the error code. */
const MAX_ERROR_BODY = 64 * KiB;
/** Error codes S3 uses for conditions that pass by themselves. */
const TRANSIENT_CODES = new Set([
  "SlowDown",
  "RequestTimeout",
  "InternalError",
  "ServiceUnavailable",
  "Throttling",
  "ThrottlingException",
  "RequestLimitExceeded",
  "OperationAborted",
  "NoSuchUpload",
]);

/** Everything the backend needs, parsed from a location and the environment. */
export interface S3Config {
  bucket: string;
  /** Key prefix inside the bucket: "" or ending in "/". */
  prefix: string;
  /** scheme://host[:port], no trailing slash. */
  endpoint: string;
  region: string;
  style: "path" | "virtual";
  partSize: number;
  threshold: number;
  /** Address every connection goes to instead of the endpoint's host. */
  connect?: { hostname: string; port: number };
  credentials: Credentials;
  /** Where the credentials came from, for messages: "env" or "file PATH [profile]". */
  credentialSource: string;
  /** PEM certificates to trust instead of the built-in roots, for an https endpoint. */
  caCerts?: string;
}

const LOCATION_HELP = "s3://bucket/prefix?endpoint=…&region=…&style=path|virtual";
const PARAMS = ["endpoint", "region", "style", "partsize", "threshold", "connect"];

function badLocation(location: string, why: string): BackendError {
  return new BackendError("permanent", "s3", `invalid location "${location}": ${why}`);
}

/** Parses "16MiB", "5M", "64mb", "1G", "1048576" into bytes. */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) return null;
  const unit = { "": 1, k: KiB, m: MiB, g: GiB }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : null;
}

function isAwsHost(host: string): boolean {
  return /(^|\.)amazonaws\.com(\.cn)?$/i.test(host);
}

/** Parses an s3:// location; throws a permanent BackendError saying what is wrong. */
export function parseS3Location(
  location: string,
  env: Record<string, string | undefined>,
): Omit<S3Config, "credentials" | "credentialSource"> {
  const m = /^s3:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/i.exec(location);
  if (!m) throw badLocation(location, `expected ${LOCATION_HELP}`);
  const bucket = decodeURIComponent(m[1]);
  if (bucket === "") throw badLocation(location, `no bucket name; expected ${LOCATION_HELP}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket)) {
    throw badLocation(location, `"${bucket}" is not a valid bucket name`);
  }
  const segments = decodeURIComponent(m[2]).split("/").filter((s) => s !== "");
  if (segments.some((s) => s === "." || s === "..")) {
    throw badLocation(location, "the prefix may not contain . or .. segments");
  }
  const prefix = segments.length === 0 ? "" : segments.join("/") + "/";
  const params = new URLSearchParams(m[3] ?? "");
  for (const name of params.keys()) {
    if (!PARAMS.includes(name)) {
      throw badLocation(location, `unknown parameter "${name}" (known: ${PARAMS.join(", ")})`);
    }
  }
  const region = params.get("region") || env.AWS_REGION || env.AWS_DEFAULT_REGION ||
    "us-east-1";
  if (!/^[a-z0-9-]+$/i.test(region)) throw badLocation(location, `bad region "${region}"`);
  const endpointText = params.get("endpoint") || env.AWS_ENDPOINT_URL_S3 ||
    env.AWS_ENDPOINT_URL || `https://s3.${region}.amazonaws.com`;
  let url: URL;
  try {
    url = new URL(endpointText);
  } catch {
    throw badLocation(location, `endpoint "${endpointText}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw badLocation(location, `endpoint "${endpointText}" must start with http:// or https://`);
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.username) {
    throw badLocation(
      location,
      `endpoint "${endpointText}" must be scheme://host[:port] only, without path or user`,
    );
  }
  const endpoint = url.origin;
  const styleText = params.get("style");
  let style: "path" | "virtual";
  if (styleText === "path" || styleText === "virtual") {
    style = styleText;
  } else if (styleText !== null) {
    throw badLocation(location, `style must be "path" or "virtual", not "${styleText}"`);
  } else {
    style = isAwsHost(url.hostname) && /^[a-z0-9-]+$/.test(bucket) ? "virtual" : "path";
  }
  const size = (name: string, def: number, min: number, max: number) => {
    const text = params.get(name);
    if (text === null) return def;
    const n = parseSize(text);
    if (n === null || n < min || n > max) {
      throw badLocation(
        location,
        `${name} must be a size from ${min / MiB} MiB to ${max / GiB} GiB, like 16MiB`,
      );
    }
    return n;
  };
  const partSize = size("partsize", DEFAULT_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE);
  const threshold = size("threshold", DEFAULT_THRESHOLD, 1, MAX_PART_SIZE);
  let connect: S3Config["connect"];
  const connectText = params.get("connect");
  if (connectText !== null) {
    const c = /^(\[[0-9a-f:.]+\]|[^:\s]+):(\d{1,5})$/i.exec(connectText);
    if (!c || Number(c[2]) < 1 || Number(c[2]) > 65535) {
      throw badLocation(location, `connect must be host:port, not "${connectText}"`);
    }
    connect = { hostname: c[1].replace(/^\[|\]$/g, ""), port: Number(c[2]) };
  }
  return { bucket, prefix, endpoint, region, style, partSize, threshold, connect };
}

/** Reads one profile of an AWS credentials (INI) file. */
function readProfile(text: string, profile: string): Record<string, string> | null {
  let current: string | null = null;
  let found: Record<string, string> | null = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      current = section[1];
      if (current === profile) found ??= {};
      continue;
    }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (kv && current === profile && found) found[kv[1].toLowerCase()] = kv[2];
  }
  return found;
}

/** Finds credentials in the environment, else in the shared credentials file. */
export function loadCredentials(
  env: Record<string, string | undefined>,
): { credentials: Credentials; source: string } {
  const id = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (id || secret) {
    if (!id) {
      throw new BackendError(
        "permanent",
        "s3",
        "AWS_SECRET_ACCESS_KEY is set, AWS_ACCESS_KEY_ID is not; set both",
      );
    }
    if (!secret) {
      throw new BackendError(
        "permanent",
        "s3",
        "AWS_ACCESS_KEY_ID is set, AWS_SECRET_ACCESS_KEY is not; set both",
      );
    }
    return {
      credentials: {
        accessKeyId: id,
        secretAccessKey: secret,
        sessionToken: env.AWS_SESSION_TOKEN || undefined,
      },
      source: "env",
    };
  }
  const file = env.AWS_SHARED_CREDENTIALS_FILE ||
    (env.HOME ? join(env.HOME, ".aws", "credentials") : undefined);
  const profile = env.AWS_PROFILE || "default";
  const missing = () =>
    new BackendError(
      "permanent",
      "s3",
      "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add them to " +
        `${file ?? "~/.aws/credentials"} under [${profile}]`,
    );
  if (!file) throw missing();
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw missing();
    throw new BackendError("permanent", "s3", `cannot read ${file}: ${(e as Error).message}`);
  }
  const p = readProfile(text, profile);
  if (!p) {
    if (env.AWS_PROFILE) {
      throw new BackendError(
        "permanent",
        "s3",
        `profile [${profile}] is not in ${file}; check AWS_PROFILE`,
      );
    }
    throw missing();
  }
  if (!p.aws_access_key_id || !p.aws_secret_access_key) {
    throw new BackendError(
      "permanent",
      "s3",
      `profile [${profile}] in ${file} lacks aws_access_key_id or aws_secret_access_key`,
    );
  }
  return {
    credentials: {
      accessKeyId: p.aws_access_key_id,
      secretAccessKey: p.aws_secret_access_key,
      sessionToken: p.aws_session_token || undefined,
    },
    source: `file ${file} [${profile}]`,
  };
}

/** Opens the S3 backend a location names; nothing is contacted until the first operation. */
export function openS3Location(
  location: string,
  env: Record<string, string | undefined>,
): Promise<S3Backend> {
  try {
    const parsed = parseS3Location(location, env);
    const { credentials, source } = loadCredentials(env);
    let caCerts: string | undefined;
    if (parsed.endpoint.startsWith("https:") && env.AWS_CA_BUNDLE) {
      try {
        caCerts = Deno.readTextFileSync(env.AWS_CA_BUNDLE);
      } catch (e) {
        throw new BackendError(
          "permanent",
          "s3",
          `cannot read AWS_CA_BUNDLE ${env.AWS_CA_BUNDLE}: ${(e as Error).message}`,
        );
      }
    }
    return Promise.resolve(
      new S3Backend({ ...parsed, credentials, credentialSource: source, caCerts }),
    );
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Replaces the five predefined XML entities and numeric character references. */
export function xmlDecode(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (all, e: string) => {
    switch (e.toLowerCase()) {
      case "amp":
        return "&";
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
    }
    const n = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return Number.isFinite(n) && n <= 0x10ffff ? String.fromCodePoint(n) : all;
  });
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** The decoded text of the first <tag> element in `xml`, or undefined. */
function xmlField(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? xmlDecode(m[1]) : undefined;
}

/** The bodies of every <tag> element in `xml`. */
function xmlBlocks(xml: string, tag: string): string[] {
  return Array.from(xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g")), (m) => m[1]);
}

function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^(W\/)?"(.*)"$/, "$2");
}

/** A network failure (no HTTP response), with the node error code when there is one. */
class NetError extends Error {
  constructor(message: string, readonly code?: string, readonly connected = false) {
    super(message);
  }
}

/** One request to the bucket. */
interface Request {
  method: "GET" | "HEAD" | "PUT" | "POST" | "DELETE";
  /** Full object key (prefix included); absent for requests on the bucket. */
  key?: string;
  query?: [string, string][];
  headers?: Record<string, string>;
  /** The whole body, already in memory. */
  body?: Uint8Array;
  /** What the request is for, in messages: "put blobs/ab/…". */
  what: string;
}

/** An HTTP response whose status the caller has not judged yet. */
type Response = http.IncomingMessage & { statusCode: number };

/** A bucket (and key prefix) of an S3-compatible store. */
export class S3Backend implements Backend {
  readonly name: string;
  readonly parallelism = 8;
  readonly #c: S3Config;
  readonly #agent: http.Agent;
  readonly #https: boolean;
  readonly #host: string;
  readonly #connectHost: string;
  readonly #connectPort: number;
  /** Set once the endpoint has answered: later connection failures are transient. */
  #worked = false;
  /** Set once the bucket is known to exist: a 404 then means a missing object only. */
  #bucketSeen = false;
  /** The put in progress per key: puts of one key run one after the other. */
  readonly #putting = new Map<string, Promise<unknown>>();

  constructor(config: S3Config) {
    this.#c = config;
    const where = config.prefix ? `${config.bucket}/${config.prefix.slice(0, -1)}` : config.bucket;
    this.name = `s3 ${where} at ${config.endpoint}`;
    const url = new URL(config.endpoint);
    this.#https = url.protocol === "https:";
    this.#host = config.style === "virtual" ? `${config.bucket}.${url.host}` : url.host;
    this.#connectHost = config.connect?.hostname ??
      (config.style === "virtual" ? `${config.bucket}.${url.hostname}` : url.hostname);
    this.#connectPort = config.connect?.port ?? (Number(url.port) || (this.#https ? 443 : 80));
    const opts = { keepAlive: true, maxSockets: 32, maxFreeSockets: 16 };
    this.#agent = this.#https
      ? new https.Agent({ ...opts, ...(config.caCerts ? { ca: config.caCerts } : {}) })
      : new http.Agent(opts);
  }

  /** The request path for a full key (or the bucket), encoded for signing and sending. */
  #path(key?: string): string {
    const bucketPart = this.#c.style === "path" ? `/${this.#c.bucket}` : "";
    if (key === undefined) return encodePath(bucketPart + "/");
    return encodePath(`${bucketPart}/${key}`);
  }

  #fullKey(key: string): string {
    checkKey(this.name, key);
    return this.#c.prefix + key;
  }

  #error(kind: "permanent" | "transient", message: string, cause?: unknown): BackendError {
    return new BackendError(kind, this.name, message, cause === undefined ? undefined : { cause });
  }

  /** Sends a request and resolves with the response head, whatever its status. */
  #send(req: Request): Promise<Response> {
    const query = req.query ?? [];
    const path = this.#path(req.key);
    const signed = signV4({
      method: req.method,
      host: this.#host,
      path,
      query,
      headers: req.headers,
      payloadHash: req.body ? sha256Hex(req.body) : EMPTY_SHA256,
      region: this.#c.region,
      credentials: this.#c.credentials,
      date: new Date(),
    });
    const headers: Record<string, string> = { ...signed.headers };
    if (req.body) headers["content-length"] = String(req.body.length);
    else if (req.method === "PUT" || req.method === "POST") headers["content-length"] = "0";
    const qs = canonicalQuery(query);
    const options: https.RequestOptions = {
      hostname: this.#connectHost,
      port: this.#connectPort,
      method: req.method,
      path: qs ? `${path}?${qs}` : path,
      headers,
      agent: this.#agent,
    };
    // TLS checks the certificate against the endpoint's host, also when `connect` sends the
    // connection elsewhere (SNI carries names only, never addresses).
    const tlsName = this.#host.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
    if (this.#https && !isIP(tlsName)) options.servername = tlsName;
    return new Promise<Response>((resolve, reject) => {
      let connected = false;
      let settled = false;
      const r = (this.#https ? https : http).request(options, (res) => {
        settled = true;
        clearTimeout(connectTimer);
        resolve(res as Response);
      });
      const fail = (e: Error & { code?: string }) => {
        clearTimeout(connectTimer);
        if (settled) return;
        settled = true;
        reject(e instanceof NetError ? e : new NetError(e.message, e.code, connected));
      };
      r.on("error", fail);
      r.on("socket", (s) => {
        // A pooled socket is already connected; a new one says so when it is.
        if (!s.connecting) connected = true;
        else s.once(this.#https ? "secureConnect" : "connect", () => connected = true);
      });
      const connectTimer = setTimeout(() => {
        if (!connected && !settled) {
          r.destroy(new NetError("no connection within 10 s", "ETIMEDOUT", false));
        }
      }, CONNECT_TIMEOUT_MS);
      r.setTimeout(IDLE_TIMEOUT_MS, () => {
        r.destroy(new NetError(`no answer for ${IDLE_TIMEOUT_MS / 1000} s`, "ETIMEDOUT", true));
      });
      if (req.body) r.end(req.body);
      else r.end();
    });
  }

  /** Explains a failure to get any HTTP response. */
  #netError(e: unknown, what: string): BackendError {
    const err = e instanceof NetError ? e : new NetError(String(e));
    const code = err.code ?? "";
    const endpoint = this.#c.connect
      ? `${this.#c.connect.hostname}:${this.#c.connect.port}`
      : new URL(this.#c.endpoint).host;
    if (!this.#worked && !err.connected) {
      const why = code === "ECONNREFUSED"
        ? "connection refused"
        : code === "ENOTFOUND" || code === "EAI_AGAIN"
        ? "unknown host"
        : code === "ETIMEDOUT"
        ? "no connection within 10 s"
        : code === "EHOSTUNREACH" || code === "ENETUNREACH"
        ? "host unreachable"
        : err.message;
      if (
        ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"]
          .includes(code)
      ) {
        return this.#error(
          "permanent",
          `cannot reach ${endpoint} (${why}); is the S3 server running and the endpoint right?`,
          e,
        );
      }
    }
    if (/certificate|self[- ]signed|TLS|SSL/i.test(err.message) && !this.#worked) {
      return this.#error(
        "permanent",
        `TLS failure with ${endpoint}: ${err.message}; for a private certificate authority, ` +
          "set AWS_CA_BUNDLE to its certificate file",
        e,
      );
    }
    return this.#error("transient", `${what}: ${err.message}${code ? ` (${code})` : ""}`, e);
  }

  /** Explains an error response; `text` is its body (empty for HEAD). */
  #httpError(res: Response, text: string, what: string): BackendError {
    const status = res.statusCode;
    const code = xmlField(text, "Code") ?? "";
    // Not every store answers errors in XML: then the start of the body stands for the message.
    const message = (xmlField(text, "Message") ?? (code ? "" : text)).replace(/\s+/g, " ")
      .trim().slice(0, 200);
    const label = code ? `${code}` : `HTTP ${status}`;
    const c = this.#c;
    const fromEnv = c.credentialSource === "env";
    const src = fromEnv ? "" : ` in ${c.credentialSource.replace(/^file /, "")}`;
    if (status >= 500 || status === 429 || status === 408 || TRANSIENT_CODES.has(code)) {
      return this.#error("transient", `${what}: ${label}${message ? `: ${message}` : ""}`);
    }
    switch (code) {
      case "InvalidAccessKeyId":
        return this.#error(
          "permanent",
          `access denied (InvalidAccessKeyId); check ${
            fromEnv ? "AWS_ACCESS_KEY_ID" : `aws_access_key_id${src}`
          }`,
        );
      case "SignatureDoesNotMatch":
        return this.#error(
          "permanent",
          `access denied (SignatureDoesNotMatch); check ${
            fromEnv ? "AWS_SECRET_ACCESS_KEY" : `aws_secret_access_key${src}`
          }`,
        );
      case "ExpiredToken":
      case "InvalidToken":
      case "TokenRefreshRequired":
        return this.#error(
          "permanent",
          `access denied (${code}); renew the temporary credentials (${
            fromEnv ? "AWS_SESSION_TOKEN" : `aws_session_token${src}`
          })`,
        );
      case "RequestTimeTooSkewed":
        return this.#error(
          "permanent",
          "request refused (RequestTimeTooSkewed): this machine's clock is off; set it right",
        );
      case "NoSuchBucket":
        return this.#error(
          "permanent",
          `bucket ${c.bucket} does not exist; create it or fix the location`,
        );
      case "PermanentRedirect":
      case "AuthorizationHeaderMalformed":
      case "IllegalLocationConstraintException": {
        const region = res.headers["x-amz-bucket-region"] ?? xmlField(text, "Region");
        return this.#error(
          "permanent",
          region && region !== c.region
            ? `bucket ${c.bucket} is in region ${region}, not ${c.region}; add region=${region} to the location`
            : `${label}: ${message || "wrong endpoint or region"}; check endpoint= and region=`,
        );
      }
    }
    if (status === 403) {
      return this.#error(
        "permanent",
        `access denied (${
          code || "HTTP 403"
        }); check the credentials${src} and that they may use bucket ${c.bucket}`,
      );
    }
    if (status === 301 || status === 307) {
      const region = res.headers["x-amz-bucket-region"];
      return this.#error(
        "permanent",
        region
          ? `bucket ${c.bucket} is in region ${region}; add region=${region} to the location`
          : `the endpoint redirects (HTTP ${status}); check endpoint= and region=`,
      );
    }
    return this.#error(
      status >= 400 && status < 500 ? "permanent" : "transient",
      `${what}: ${label}${message ? `: ${message}` : ""}`,
    );
  }

  /**
   * Sends a request and returns the response when its status is 2xx or one of `accept`; any other
   * status becomes a BackendError (a HEAD error is asked again as a GET to learn its code).
   */
  async #call(req: Request, accept: number[] = []): Promise<Response> {
    let res: Response;
    try {
      res = await this.#send(req);
    } catch (e) {
      throw this.#netError(e, req.what);
    }
    this.#worked = true;
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      this.#bucketSeen = true;
      return res;
    }
    if (accept.includes(status)) return res;
    const text = await readText(res, MAX_ERROR_BODY).catch(() => "");
    if (req.method === "HEAD" && !text) {
      // HEAD errors carry no body; the same request as a GET says what the error is.
      const again = await this.#call({ ...req, method: "GET" }, [404]);
      again.destroy();
    }
    throw this.#httpError(res, text, req.what);
  }

  /** Throws for a 404 that names a missing bucket; returns normally for a missing object. */
  async #checkNotFound(res: Response, req: Request): Promise<void> {
    let text = await readText(res, MAX_ERROR_BODY).catch(() => "");
    if (req.method === "HEAD" && !this.#bucketSeen) {
      // A HEAD 404 does not say whether the key or the bucket is missing; a GET does.
      const again = await this.#call({ ...req, method: "GET" }, [404]);
      if (again.statusCode !== 404) {
        again.destroy();
        return;
      }
      text = await readText(again, MAX_ERROR_BODY).catch(() => "");
    }
    const code = xmlField(text, "Code");
    if (code === "NoSuchBucket") throw this.#httpError(res, text, req.what);
    if (code === "NoSuchKey") this.#bucketSeen = true;
  }

  /**
   * Stores an object. Puts of one key from this instance wait for each other: S3 itself keeps
   * racing PUTs apart, but some S3-compatible servers (s3rver) write a PUT in place, and two
   * at once would leave a mix of both; n2s may put one blob twice at once when two files
   * hold the same bytes.
   */
  async put(key: string, body: Body): Promise<ObjectInfo> {
    const full = this.#fullKey(key);
    const before = this.#putting.get(full);
    const mine = (before ?? Promise.resolve()).catch(() => {}).then(() =>
      this.#put(key, full, body)
    );
    this.#putting.set(full, mine);
    try {
      return await mine;
    } finally {
      if (this.#putting.get(full) === mine) this.#putting.delete(full);
    }
  }

  async #put(key: string, full: string, body: Body): Promise<ObjectInfo> {
    const what = `put ${key}`;
    const reader = new BodyReader(body, this.name, what);
    try {
      const size = body.size;
      if (size !== undefined && size >= this.#c.threshold) {
        return await this.#multipart(key, full, reader, [], size);
      }
      // A known size below the threshold is read whole; an unknown one up to one part (so that
      // memory stays within two parts), and it goes up in one PUT if it ends there.
      const limit = size ?? Math.min(this.#c.threshold, this.#c.partSize);
      const chunks: Uint8Array[] = [];
      let total = 0;
      while (size === undefined ? total <= limit : total < size) {
        const p = await reader.next();
        if (p === null) break;
        chunks.push(p.slice());
        total += p.length;
      }
      if (size !== undefined) {
        if (total !== size || (await reader.next()) !== null) {
          throw reader.sizeMismatch(size, total < size ? total : undefined);
        }
      } else if (total > limit) {
        return await this.#multipart(key, full, reader, chunks, undefined);
      }
      const data = chunks.length === 1 ? chunks[0] : concat(chunks);
      const res = await this.#call({
        method: "PUT",
        key: full,
        headers: { "content-type": OCTET_STREAM },
        body: data,
        what,
      });
      const etag = unquote(headerOf(res, "etag"));
      await drain(res);
      return etag ? { key, size: total, ref: etag } : { key, size: total };
    } finally {
      await reader.close();
    }
  }

  /** Uploads a large or unknown-size body as a multipart upload, aborting it on failure. */
  async #multipart(
    key: string,
    full: string,
    reader: BodyReader,
    first: Uint8Array[],
    size: number | undefined,
  ): Promise<ObjectInfo> {
    const what = `put ${key}`;
    let partSize = this.#c.partSize;
    if (size !== undefined && Math.ceil(size / partSize) > MAX_PARTS) {
      partSize = Math.ceil(size / MAX_PARTS / MiB) * MiB;
    }
    const created = await this.#call({
      method: "POST",
      key: full,
      query: [["uploads", ""]],
      headers: { "content-type": OCTET_STREAM },
      what: `${what} (create multipart upload)`,
    });
    const uploadId = xmlField(await readText(created, MAX_ERROR_BODY), "UploadId");
    if (!uploadId) {
      throw this.#error("transient", `${what}: no UploadId in the create multipart answer`);
    }
    const etags: string[] = [];
    // Two buffers: one part uploads while the next one is filled.
    const free: Uint8Array[] = [];
    let buffers = 0;
    let inflight: Promise<void> | null = null;
    let total = 0;
    const uploadPart = async (n: number, buf: Uint8Array, len: number) => {
      const res = await this.#call({
        method: "PUT",
        key: full,
        query: [["partNumber", String(n)], ["uploadId", uploadId]],
        headers: { "content-type": OCTET_STREAM },
        body: buf.subarray(0, len),
        what: `${what} (part ${n})`,
      });
      const etag = headerOf(res, "etag");
      await drain(res);
      if (!etag) throw this.#error("transient", `${what}: part ${n} answer has no ETag`);
      etags[n - 1] = etag;
      free.push(buf);
    };
    const takeBuffer = () => {
      const b = free.pop();
      if (b) return b;
      buffers++;
      return new Uint8Array(partSize);
    };
    try {
      let buf = takeBuffer();
      let fill = 0;
      let n = 0;
      const ship = async () => {
        n++;
        if (n > MAX_PARTS) {
          throw this.#error(
            "permanent",
            `${what}: more than ${MAX_PARTS} parts; raise partsize= in the location`,
          );
        }
        const prev = inflight;
        inflight = null;
        if (prev) await prev;
        inflight = uploadPart(n, buf, fill);
        // Keep a failed upload from counting as unhandled before it is awaited.
        inflight.catch(() => {});
        if (buffers >= 2 && free.length === 0) {
          const current = inflight;
          inflight = null;
          await current;
        }
        buf = takeBuffer();
        fill = 0;
      };
      const add = async (p: Uint8Array) => {
        let o = 0;
        while (o < p.length) {
          const k = Math.min(p.length - o, partSize - fill);
          buf.set(p.subarray(o, o + k), fill);
          fill += k;
          o += k;
          if (fill === partSize) await ship();
        }
        total += p.length;
        if (size !== undefined && total > size) throw reader.sizeMismatch(size, undefined);
      };
      // The pieces read before the upload began are released as they are copied into parts.
      while (first.length > 0) await add(first.shift()!);
      while (true) {
        const p = await reader.next();
        if (p === null) break;
        await add(p);
      }
      if (size !== undefined && total !== size) throw reader.sizeMismatch(size, total);
      if (fill > 0 || n === 0) await ship();
      if (inflight) await inflight;
      inflight = null;
      const xml = "<CompleteMultipartUpload>" +
        etags.map((e, i) =>
          `<Part><PartNumber>${i + 1}</PartNumber><ETag>${xmlEscape(e)}</ETag></Part>`
        ).join("") +
        "</CompleteMultipartUpload>";
      const done = await this.#call({
        method: "POST",
        key: full,
        query: [["uploadId", uploadId]],
        headers: { "content-type": "application/xml" },
        body: new TextEncoder().encode(xml),
        what: `${what} (complete multipart upload)`,
      });
      // S3 may report a failed completion with status 200 and an error document.
      const text = await readText(done, MAX_ERROR_BODY);
      if (/<Error>/.test(text)) throw this.#httpError(done, text, `${what} (complete)`);
      const etag = unquote(xmlField(text, "ETag") ?? headerOf(done, "etag"));
      return etag ? { key, size: total, ref: etag } : { key, size: total };
    } catch (e) {
      if (inflight) await (inflight as Promise<void>).catch(() => {});
      await this.#abort(full, uploadId, what);
      throw e;
    }
  }

  /** Aborts a multipart upload, so that its parts are dropped; failures are only logged away. */
  async #abort(full: string, uploadId: string, what: string): Promise<void> {
    try {
      const res = await this.#call({
        method: "DELETE",
        key: full,
        query: [["uploadId", uploadId]],
        what: `${what} (abort multipart upload)`,
      }, [404]);
      await drain(res);
    } catch {
      // The upload stays invisible; a bucket lifecycle rule may clean up its parts.
    }
  }

  /**
   * A GET of the object; a range is a GET with `Range: bytes=first-last`, answered 206 with
   * just those bytes (416 when the offset is at or past the end: nothing to read).
   */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const full = this.#fullKey(key);
    checkRange(this.name, range);
    const what = `get ${key}`;
    if (range && range.length === 0) {
      // HTTP cannot ask for no bytes; a HEAD tells whether the object exists.
      if ((await this.stat(key)) === null) throw new NotFoundError(this.name, key);
      return noBytes();
    }
    const req: Request = { method: "GET", key: full, what };
    if (range) req.headers = { range: rangeHeader(range) };
    const res = await this.#call(req, [404, 416]);
    if (res.statusCode === 404) {
      await this.#checkNotFound(res, req);
      throw new NotFoundError(this.name, key);
    }
    const length = Number(headerOf(res, "content-length") ?? NaN);
    // Bytes to deliver: the whole body, or the range's (a server may send more, see below).
    let take = length;
    if (range) {
      const answer = judgeRangeAnswer(
        res.statusCode,
        headerOf(res, "content-range"),
        length,
        range,
      );
      if ("empty" in answer) {
        // A 416's error document is read, so that the connection serves again; any other
        // answer may announce bytes it never sends (s3rver, for an empty object).
        if (res.statusCode === 416) await drain(res);
        else discard(res);
        return noBytes();
      }
      if ("wrong" in answer) {
        discard(res);
        throw this.#error("permanent", `${what}: ${answer.wrong}`);
      }
      take = answer.take;
    }
    // A body longer than the range (a server that ignored its end) is cut off once the range
    // is read, with its connection.
    const cut = Number.isFinite(take) && !(length <= take);
    const fail = (kind: "transient", msg: string, cause?: unknown) => this.#error(kind, msg, cause);
    return (async function* () {
      let n = 0;
      try {
        for await (let chunk of res as AsyncIterable<Uint8Array>) {
          if (cut && n + chunk.length > take) chunk = chunk.subarray(0, take - n);
          n += chunk.length;
          if (chunk.length > 0) yield chunk;
          if (cut && n >= take) break;
        }
      } catch (e) {
        throw fail(
          "transient",
          `get ${key}: connection lost after ${n} bytes: ${(e as Error).message}`,
          e,
        );
      } finally {
        // An abandoned, cut or broken body closes its connection; a finished one returns it to
        // the pool.
        if (!res.complete) discard(res);
      }
      if (Number.isFinite(take) && n !== take) {
        throw fail("transient", `get ${key}: got ${n} of ${take} bytes`);
      }
    })();
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const full = this.#fullKey(key);
    const req: Request = { method: "HEAD", key: full, what: `stat ${key}` };
    const res = await this.#call(req, [404]);
    if (res.statusCode === 404) {
      await this.#checkNotFound(res, req);
      return null;
    }
    await drain(res);
    const size = Number(headerOf(res, "content-length"));
    if (!Number.isSafeInteger(size)) {
      throw this.#error("transient", `stat ${key}: no Content-Length in the answer`);
    }
    const etag = unquote(headerOf(res, "etag"));
    return etag ? { key, size, ref: etag } : { key, size };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const strip = this.#c.prefix.length;
    let token: string | undefined;
    do {
      const query: [string, string][] = [["list-type", "2"], ["prefix", this.#c.prefix + prefix]];
      if (token !== undefined) query.push(["continuation-token", token]);
      const res = await this.#call({ method: "GET", query, what: `list ${prefix}` });
      const xml = await readText(res, Infinity);
      for (const block of xmlBlocks(xml, "Contents")) {
        const full = xmlField(block, "Key");
        if (full === undefined || !full.startsWith(this.#c.prefix + prefix)) continue;
        const size = Number(xmlField(block, "Size"));
        const etag = unquote(xmlField(block, "ETag"));
        const info: ObjectInfo = { key: full.slice(strip), size };
        if (etag) info.ref = etag;
        yield info;
      }
      const truncated = xmlField(xml, "IsTruncated") === "true";
      token = truncated ? xmlField(xml, "NextContinuationToken") : undefined;
      if (truncated && !token) {
        throw this.#error(
          "transient",
          `list ${prefix}: truncated page without a continuation token`,
        );
      }
    } while (token !== undefined);
  }

  async delete(key: string): Promise<void> {
    const full = this.#fullKey(key);
    const req: Request = { method: "DELETE", key: full, what: `delete ${key}` };
    const res = await this.#call(req, [404]);
    if (res.statusCode === 404) await this.#checkNotFound(res, req);
    else await drain(res);
  }

  /** S3 acknowledges a PUT only once it is durable; nothing to do. */
  async flush(): Promise<void> {}

  // deno-lint-ignore require-await
  async close(): Promise<void> {
    this.#agent.destroy();
  }
}

/** Reads a put's body piece by piece; its own failures become BodyError-caused errors. */
class BodyReader {
  #it: AsyncIterator<Uint8Array | Uint8Array[]> | null = null;
  #queue: Uint8Array[] = [];
  #done = false;

  constructor(
    private readonly body: Body,
    private readonly backend: string,
    private readonly what: string,
  ) {}

  /** The next non-empty piece, or null at the end. */
  async next(): Promise<Uint8Array | null> {
    while (this.#queue.length === 0) {
      if (this.#done) return null;
      let r: IteratorResult<Uint8Array | Uint8Array[]>;
      try {
        this.#it ??= this.body.open()[Symbol.asyncIterator]();
        r = await this.#it.next();
      } catch (e) {
        this.#done = true;
        const cause = hasBodyError(e)
          ? e
          : new BodyError(e instanceof Error ? e.message : String(e), { cause: e });
        throw new BackendError(
          "permanent",
          this.backend,
          `${this.what}: reading the source failed: ${(cause as Error).message}`,
          { cause },
        );
      }
      if (r.done) {
        this.#done = true;
        return null;
      }
      for (const p of Array.isArray(r.value) ? r.value : [r.value]) {
        if (p.length > 0) this.#queue.push(p);
      }
    }
    return this.#queue.shift()!;
  }

  /** The error for a body longer (`got` undefined) or shorter than the size it declared. */
  sizeMismatch(declared: number, got: number | undefined): BackendError {
    const cause = new BodyError(
      got === undefined
        ? `the source gave more than the ${declared} bytes it declared`
        : `the source gave ${got} bytes, not the ${declared} it declared`,
    );
    return new BackendError("permanent", this.backend, `${this.what}: ${cause.message}`, {
      cause,
    });
  }

  /** Ends the body's iterator early, if it is not finished, so that it can release resources. */
  async close(): Promise<void> {
    if (this.#it && !this.#done) {
      this.#done = true;
      await this.#it.return?.()?.catch?.(() => {});
    }
  }
}

function hasBodyError(e: unknown): boolean {
  for (let c = e, d = 0; c instanceof Error && d < 16; c = c.cause, d++) {
    if (c instanceof BodyError) return true;
  }
  return false;
}

function headerOf(res: Response, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Reads a response body as text, at most `limit` bytes (the rest is dropped). */
async function readText(res: Response, limit: number): Promise<string> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of res as AsyncIterable<Uint8Array>) {
    parts.push(chunk);
    n += chunk.length;
    if (n >= limit) {
      res.destroy();
      break;
    }
  }
  return new TextDecoder().decode(parts.length === 1 ? parts[0] : concat(parts));
}

/**
 * Drops a response body unread, with its connection. The socket's closing then reports the body
 * as aborted, which nobody needs to hear.
 */
function discard(res: Response): void {
  res.on("error", () => {});
  res.destroy();
}

/** Reads and drops a response body, so that its connection can serve the next request. */
async function drain(res: Response): Promise<void> {
  for await (const _ of res as AsyncIterable<Uint8Array>) {
    // dropped
  }
}
