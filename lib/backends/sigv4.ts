// AWS Signature Version 4 for S3 requests sent with an Authorization header: the canonical
// request, the string to sign, the derived signing key and the headers to send.

import { createHash, createHmac } from "node:crypto";

/** AWS credentials; the session token is present for temporary credentials only. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** SHA-256 of an empty payload, the payload hash of bodiless requests. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** The payload hash of a body sent without hashing it first (allowed by S3). */
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";

/** One request to sign. */
export interface SignInput {
  method: string;
  /** Host header value, with ":port" when the port is not the scheme's default. */
  host: string;
  /** Path already encoded with `encodePath`, e.g. "/bucket/a%24b". */
  path: string;
  /** Query parameters, neither encoded nor sorted. */
  query?: [string, string][];
  /** Further headers to send and sign (any case; values are trimmed for signing). */
  headers?: Record<string, string>;
  /** Hex SHA-256 of the body, EMPTY_SHA256, or UNSIGNED_PAYLOAD. */
  payloadHash: string;
  region: string;
  service?: string;
  credentials: Credentials;
  date: Date;
}

/** The signature and everything needed to send (and, in tests, to inspect) it. */
export interface Signed {
  /** Headers to send, with lower-case names: the input headers, host, x-amz-*, authorization. */
  headers: Record<string, string>;
  canonicalRequest: string;
  stringToSign: string;
  signature: string;
}

/** URI-encodes a string the way SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~ as %XX. */
export function uriEncode(s: string, encodeSlash = true): string {
  const e = encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
  );
  return encodeSlash ? e : e.replaceAll("%2F", "/");
}

/** Encodes an S3 path ("/bucket/key" or "/key"): each segment once, slashes kept. */
export function encodePath(path: string): string {
  return uriEncode(path, false);
}

/** The canonical query string: encoded names and values, sorted by name then value. */
export function canonicalQuery(query: [string, string][]): string {
  return query
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

/** "20130524T000000Z" for a date. */
export function amzDate(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

function hmac(key: string | Uint8Array, data: string): Uint8Array {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

/** Hex SHA-256 of a string or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

const keyCache = new Map<string, Uint8Array>();

/** The signing key for one day, region and service (cached: it changes once a day). */
export function signingKey(
  secret: string,
  day: string,
  region: string,
  service: string,
): Uint8Array {
  const id = `${sha256Hex(secret)}/${day}/${region}/${service}`;
  let key = keyCache.get(id);
  if (!key) {
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), "aws4_request");
    if (keyCache.size > 16) keyCache.clear();
    keyCache.set(id, key);
  }
  return key;
}

/** Signs a request; returns the headers to send with it. */
export function signV4(input: SignInput): Signed {
  const service = input.service ?? "s3";
  const stamp = amzDate(input.date);
  const day = stamp.slice(0, 8);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  headers["host"] = input.host;
  headers["x-amz-date"] = stamp;
  headers["x-amz-content-sha256"] = input.payloadHash;
  if (input.credentials.sessionToken) {
    headers["x-amz-security-token"] = input.credentials.sessionToken;
  }
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names
    .map((n) => `${n}:${headers[n].trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const signedHeaders = names.join(";");
  const canonicalRequest = [
    input.method,
    input.path,
    canonicalQuery(input.query ?? []),
    canonicalHeaders,
    signedHeaders,
    input.payloadHash,
  ].join("\n");
  const scope = `${day}/${input.region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", stamp, scope, sha256Hex(canonicalRequest)].join("\n");
  const key = signingKey(input.credentials.secretAccessKey, day, input.region, service);
  const signature = Array.from(hmac(key, stringToSign), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  headers["authorization"] = `AWS4-HMAC-SHA256 Credential=${input.credentials.accessKeyId}/` +
    `${scope},SignedHeaders=${signedHeaders},Signature=${signature}`;
  return { headers, canonicalRequest, stringToSign, signature };
}
