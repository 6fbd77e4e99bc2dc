// How failures of S3 requests become the backend's errors: throttling, 5xx, timeouts and dropped
// connections are transient; bad credentials, a missing bucket, a wrong region, an unreachable
// endpoint and other 4xx answers are permanent. Every message is one line that names the cause
// and what to do, and never contains a secret.

import { S3Errors } from "@bradenmacdonald/s3-lite-client";
import { BackendError } from "../backend.ts";
import { errorText, oneLine } from "../shared.ts";
import type { S3Config } from "./location.ts";
import { type Answer, TransportError } from "./transport.ts";

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

/** Codes the library gives answers it could not read. */
const UNREAD_CODES = new Set([
  "UnrecognizedError",
  "UnknownErrorCode",
  "UnexpectedRedirect",
  "UnexpectedStatusCode",
]);

/** What an answer says, whichever way it was read. */
interface Said {
  status: number;
  /** The S3 error code, "" when the answer had none. */
  code: string;
  message: string;
  /** The bucket's region, from x-amz-bucket-region or the error document. */
  region?: string;
}

/** What an Answer (the transport's copy of an error answer) says. */
function saidBy(answer: Answer): Said {
  const e = answer.error;
  const known = !UNREAD_CODES.has(e.code);
  return {
    status: answer.status,
    code: known ? e.code : "",
    message: oneLine(known ? e.message : answer.text, 200),
    region: answer.headers.get("x-amz-bucket-region") ?? e.region,
  };
}

/** Turns failures into BackendErrors for one backend. */
export class ErrorMapper {
  constructor(readonly name: string, readonly config: S3Config) {}

  error(kind: "permanent" | "transient", message: string, cause?: unknown): BackendError {
    return new BackendError(kind, this.name, message, cause === undefined ? undefined : { cause });
  }

  /**
   * The BackendError for anything a request or the library threw; `answer` is the transport's
   * copy of the answer that failed, when there was one.
   */
  map(e: unknown, what: string, answer?: Answer): BackendError {
    if (e instanceof BackendError) return e;
    if (e instanceof TransportError) {
      return e.permanent
        ? this.error("permanent", e.message, e)
        : this.error("transient", `${what}: ${e.message}`, e);
    }
    if (e instanceof S3Errors.ServerError) {
      if (answer && answer.status === e.statusCode) return this.said(saidBy(answer), what, e);
      if (e.statusCode >= 200 && e.statusCode < 300) {
        return this.error("transient", `${what}: unexpected HTTP ${e.statusCode}`, e);
      }
      const known = !UNREAD_CODES.has(e.code);
      return this.said(
        {
          status: e.statusCode,
          code: known ? e.code : "",
          message: known ? oneLine(e.message, 200) : "",
          region: e.region,
        },
        what,
        e,
      );
    }
    const text = e instanceof Error ? e.message : String(e);
    // A document the library did not expect where it wanted a result, such as an error document
    // with status 200 (S3 may answer a failed completion of a multipart upload so).
    const doc = /^Unexpected response: ([\s\S]*)$/.exec(text);
    if (doc) {
      const code = /<Code>([^<]*)<\/Code>/.exec(doc[1])?.[1] ?? "";
      const message = /<Message>([^<]*)<\/Message>/.exec(doc[1])?.[1] ?? "";
      if (code) return this.said({ status: 200, code, message: oneLine(message, 200) }, what, e);
      return this.error("transient", `${what}: unexpected answer: ${oneLine(doc[1], 200)}`, e);
    }
    if (/Cannot upload more than \d+ parts/.test(text)) {
      return this.error(
        "permanent",
        `${what}: more than 10000 parts; raise partsize= in the location`,
        e,
      );
    }
    if (e instanceof S3Errors.S3Error) {
      return this.error("permanent", `${what}: ${errorText(e)}`, e);
    }
    return this.error("transient", `${what}: ${errorText(e)}`, e);
  }

  /** The BackendError for an answer that was not 2xx. */
  said(s: Said, what: string, cause?: unknown): BackendError {
    const { status, code, message } = s;
    const label = code || `HTTP ${status}`;
    const c = this.config;
    const fromEnv = c.credentialSource === "env";
    const src = fromEnv ? "" : ` in ${c.credentialSource.replace(/^file /, "")}`;
    const permanent = (m: string) => this.error("permanent", m, cause);
    if (status >= 500 || status === 429 || status === 408 || TRANSIENT_CODES.has(code)) {
      return this.error("transient", `${what}: ${label}${message ? `: ${message}` : ""}`, cause);
    }
    switch (code) {
      case "InvalidAccessKeyId":
        return permanent(
          `access denied (InvalidAccessKeyId); check ${
            fromEnv ? "AWS_ACCESS_KEY_ID" : `aws_access_key_id${src}`
          }`,
        );
      case "SignatureDoesNotMatch":
        return permanent(
          `access denied (SignatureDoesNotMatch); check ${
            fromEnv ? "AWS_SECRET_ACCESS_KEY" : `aws_secret_access_key${src}`
          }`,
        );
      case "ExpiredToken":
      case "InvalidToken":
      case "TokenRefreshRequired":
        return permanent(
          `access denied (${code}); renew the temporary credentials (${
            fromEnv ? "AWS_SESSION_TOKEN" : `aws_session_token${src}`
          })`,
        );
      case "RequestTimeTooSkewed":
        return permanent(
          "request refused (RequestTimeTooSkewed): this machine's clock is off; set it right",
        );
      case "NoSuchBucket":
        return permanent(`bucket ${c.bucket} does not exist; create it or fix the location`);
      case "PermanentRedirect":
      case "AuthorizationHeaderMalformed":
      case "IllegalLocationConstraintException":
        return permanent(
          s.region && s.region !== c.region
            ? `bucket ${c.bucket} is in region ${s.region}, not ${c.region}; add region=${s.region} to the location`
            : `${label}: ${message || "wrong endpoint or region"}; check endpoint= and region=`,
        );
    }
    if (status === 403) {
      return permanent(
        `access denied (${
          code || "HTTP 403"
        }); check the credentials${src} and that they may use bucket ${c.bucket}`,
      );
    }
    if (status === 301 || status === 307) {
      return permanent(
        s.region
          ? `bucket ${c.bucket} is in region ${s.region}; add region=${s.region} to the location`
          : `the endpoint redirects (HTTP ${status}); check endpoint= and region=`,
      );
    }
    return this.error(
      status >= 400 && status < 500 ? "permanent" : "transient",
      `${what}: ${label}${message ? `: ${message}` : ""}`,
      cause,
    );
  }
}
