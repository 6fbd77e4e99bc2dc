// A check of AWS Signature Version 4 for the S3 test servers, written apart from any client:
// it recomputes the signature of a request as it arrived, the way S3 does (the path decoded
// and encoded again, the query and the signed headers as received), with the AWS SDK's signer
// (@smithy/signature-v4, SHA-256 from @aws-crypto/sha256-js), and says why a request is refused,
// with the status and error code S3 would answer.

import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "@aws-crypto/sha256-js";
import { createHash } from "node:crypto";

/** An access key the check knows, with its secret and, for temporary credentials, its token. */
export interface SigningKey {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** What a request must be signed with. */
export interface SignatureRules {
  keys: SigningKey[];
  /** The region of the bucket: a signature for another region is refused. */
  region: string;
  /** The clock requests are compared with (default: now). */
  now?: () => Date;
}

/** A request as it arrived. */
export interface ArrivedRequest {
  method: string;
  /** The path as sent, percent-encoded. */
  path: string;
  /** The query as sent, without "?". */
  query: string;
  headers: Headers;
  body: Uint8Array;
}

/** Why a request was refused: the answer S3 gives. */
export interface Refusal {
  status: number;
  code: string;
  message: string;
  /** The expected region, for a signature made for another. */
  region?: string;
}

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MAX_SKEW_MS = 15 * 60 * 1000;
const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

/** Percent-encodes every byte but A-Z a-z 0-9 - . _ ~, as SigV4 wants. */
function awsEncode(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** The query as the signer wants it: decoded names and values, repeated names as lists. */
function queryOf(raw: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const part of raw.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1));
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return out;
}

/** "20130524T000000Z" as a Date, or null. */
function amzDate(s: string | null): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s ?? "");
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

/** Checks a request's signature; null when it is right, else what S3 would answer. */
export async function checkSignature(
  req: ArrivedRequest,
  rules: SignatureRules,
): Promise<Refusal | null> {
  const denied = (code: string, message: string, status = 403): Refusal => ({
    status,
    code,
    message,
  });
  const auth = req.headers.get("authorization");
  if (auth === null) {
    return denied("AccessDenied", "Anonymous requests are refused: sign every request");
  }
  const m = AUTH.exec(auth.trim());
  if (!m) {
    return denied("AuthorizationHeaderMalformed", "The authorization header is malformed", 400);
  }
  const [, accessKeyId, day, region, service, signedList, signature] = m;
  const key = rules.keys.find((k) => k.accessKeyId === accessKeyId);
  if (!key) {
    return denied(
      "InvalidAccessKeyId",
      "The AWS Access Key Id you provided does not exist in our records.",
    );
  }
  if (region !== rules.region) {
    return {
      ...denied(
        "AuthorizationHeaderMalformed",
        `The authorization header is malformed; the region '${region}' is wrong; expecting '${rules.region}'`,
        400,
      ),
      region: rules.region,
    };
  }
  if (service !== "s3") {
    return denied("AuthorizationHeaderMalformed", `The service '${service}' is wrong`, 400);
  }
  const date = amzDate(req.headers.get("x-amz-date"));
  if (!date) return denied("AccessDenied", "x-amz-date is missing or malformed");
  if (date.toISOString().slice(0, 10).replaceAll("-", "") !== day) {
    return denied("SignatureDoesNotMatch", "The credential date differs from x-amz-date");
  }
  const now = (rules.now ?? (() => new Date()))();
  if (Math.abs(now.getTime() - date.getTime()) > MAX_SKEW_MS) {
    return denied(
      "RequestTimeTooSkewed",
      "The difference between the request time and the current time is too large.",
    );
  }
  const payloadHash = req.headers.get("x-amz-content-sha256");
  if (payloadHash === null) {
    return denied(
      "InvalidRequest",
      "Missing required header for this request: x-amz-content-sha256",
      400,
    );
  }
  if (payloadHash.startsWith("STREAMING-")) {
    return denied("NotImplemented", "Chunked (streaming) payload signing is not checked", 501);
  }
  if (payloadHash !== "UNSIGNED-PAYLOAD") {
    const actual = req.body.length === 0
      ? EMPTY_SHA256
      : createHash("sha256").update(req.body).digest("hex");
    if (actual !== payloadHash) {
      return denied(
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
        400,
      );
    }
  }
  const signed = signedList.split(";");
  for (const must of ["host", "x-amz-date", "x-amz-content-sha256"]) {
    if (!signed.includes(must)) {
      return denied("SignatureDoesNotMatch", `The header ${must} must be signed`);
    }
  }
  for (const [name] of req.headers) {
    if (name.startsWith("x-amz-") && !signed.includes(name)) {
      return denied("AccessDenied", `There were headers present that were not signed: ${name}`);
    }
  }
  const token = req.headers.get("x-amz-security-token");
  if (token !== (key.sessionToken ?? null)) {
    return denied(
      "InvalidToken",
      key.sessionToken
        ? "The provided token is malformed or otherwise invalid."
        : "A security token was sent for credentials that have none.",
    );
  }
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const value = req.headers.get(name);
    if (value === null) {
      return denied("SignatureDoesNotMatch", `The signed header ${name} is missing`);
    }
    headers[name] = value;
  }
  let path: string;
  let query: Record<string, string | string[]>;
  try {
    // S3 signs the path as decoded from the request and encoded again, each segment once.
    path = req.path.split("/").map((s) => awsEncode(decodeURIComponent(s))).join("/");
    query = queryOf(req.query);
  } catch {
    return denied("InvalidURI", "Couldn't parse the specified URI.", 400);
  }
  const signer = new SignatureV4({
    credentials: key,
    region: rules.region,
    service: "s3",
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
  const expected = await signer.sign({
    method: req.method,
    protocol: "http:",
    hostname: headers.host.replace(/:\d+$/, ""),
    path,
    query,
    headers,
  }, { signingDate: date, signableHeaders: new Set(signed) });
  const e = AUTH.exec(String(expected.headers.authorization));
  if (!e || e[5] !== signedList || e[6] !== signature) {
    return denied(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. " +
        "Check your key and signing method.",
    );
  }
  return null;
}

/** The XML error document S3 answers with. */
export function refusalAnswer(r: Refusal, method: string): Response {
  const region = r.region ? `<Region>${r.region}</Region>` : "";
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${r.code}</Code>` +
    `<Message>${r.message.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</Message>${region}` +
    `<RequestId>sigv4-check</RequestId></Error>`;
  const headers: Record<string, string> = { "content-type": "application/xml" };
  if (r.region) headers["x-amz-bucket-region"] = r.region;
  return new Response(method === "HEAD" ? null : xml, { status: r.status, headers });
}
