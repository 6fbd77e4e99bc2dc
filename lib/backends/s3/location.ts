// What an s3:// location and the environment say: bucket, prefix, endpoint, region, style, part
// sizes, where to connect, and the credentials (from the environment or the shared credentials
// file). Nothing here touches the network.
//
// Location: s3://bucket/prefix?endpoint=URL&region=R&style=path|virtual&partsize=16MiB
//   &threshold=64MiB&connect=HOST:PORT
// - region: the parameter, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
// - endpoint: the parameter, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else
//   https://s3.<region>.amazonaws.com. Only scheme, host and port; no path.
// - style: "virtual" puts the bucket in the host name, "path" in the path. Default: virtual for
//   AWS endpoints when the bucket name has no dot (a dotted name does not match AWS's wildcard
//   certificate), path for everything else (MinIO, s3rver, Ceph, an address with a port).
// - partsize (5 MiB to 5 GiB) and threshold: see upload.ts.
// - connect: send every connection to this address instead of resolving the endpoint's host,
//   the way curl's --connect-to does.

import { join } from "node:path";
import { BackendError } from "../backend.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Default size of a multipart upload's parts. */
export const DEFAULT_PART_SIZE = 16 * MiB;
/** Default size from which objects of known size go up as a multipart upload. */
export const DEFAULT_THRESHOLD = 64 * MiB;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_SIZE = 5 * GiB;

/** AWS credentials; the session token is present for temporary credentials only. */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

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
  credentials: S3Credentials;
  /** Where the credentials came from, for messages: "env" or "file PATH [profile]". */
  credentialSource: string;
  /** PEM certificates to trust besides the built-in roots, for an https endpoint. */
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
  // The rule the S3 client library applies: letters, digits, dots and dashes, 3 to 255 long.
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]{1,253}[A-Za-z0-9]$/.test(bucket) || bucket.includes("..")) {
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

function credentialError(message: string): BackendError {
  return new BackendError("permanent", "s3", message);
}

/** Finds credentials in the environment, else in the shared credentials file. */
export function loadCredentials(
  env: Record<string, string | undefined>,
): { credentials: S3Credentials; source: string } {
  const id = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (id || secret) {
    if (!id) {
      throw credentialError("AWS_SECRET_ACCESS_KEY is set, AWS_ACCESS_KEY_ID is not; set both");
    }
    if (!secret) {
      throw credentialError("AWS_ACCESS_KEY_ID is set, AWS_SECRET_ACCESS_KEY is not; set both");
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
    credentialError(
      "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add them to " +
        `${file ?? "~/.aws/credentials"} under [${profile}]`,
    );
  if (!file) throw missing();
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw missing();
    throw credentialError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const p = readProfile(text, profile);
  if (!p) {
    if (env.AWS_PROFILE) {
      throw credentialError(`profile [${profile}] is not in ${file}; check AWS_PROFILE`);
    }
    throw missing();
  }
  if (!p.aws_access_key_id || !p.aws_secret_access_key) {
    throw credentialError(
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

/** The whole configuration: location, credentials and, for https, AWS_CA_BUNDLE's certificates. */
export function loadS3Config(location: string, env: Record<string, string | undefined>): S3Config {
  const parsed = parseS3Location(location, env);
  const { credentials, source } = loadCredentials(env);
  let caCerts: string | undefined;
  if (parsed.endpoint.startsWith("https:") && env.AWS_CA_BUNDLE) {
    try {
      caCerts = Deno.readTextFileSync(env.AWS_CA_BUNDLE);
    } catch (e) {
      throw credentialError(
        `cannot read AWS_CA_BUNDLE ${env.AWS_CA_BUNDLE}: ${(e as Error).message}`,
      );
    }
  }
  return { ...parsed, credentials, credentialSource: source, caCerts };
}
