// How rcd's error answers become the rclone backend's errors. rcd answers every rclone error
// with status 500, so the message tells: a remote missing from the config, an unknown backend
// type, refused logins, denied access and, before the remote ever answered, anything that is not
// passing trouble are permanent; timeouts, resets and 5xx after that are transient.

import { BackendError } from "../backend.ts";
import { oneLine } from "../shared.ts";
import { remoteName } from "./location.ts";

/** rclone messages of passing trouble: a retry may well succeed. */
const TRANSIENT =
  /timeout|timed out|deadline exceeded|reset|broken pipe|EOF|temporar|throttl|rate ?limit|too many|slow down|unavailable|try again|internal error|\b5\d\d\b|busy|closed/i;

/** One line of rclone's error text: prefixes rclone adds dropped, whitespace collapsed. */
export function rcloneLine(msg: string): string {
  return oneLine(msg, 500)
    .replace(/^(failed to make Fs: |NewFs: )+/g, "")
    .replace(/\{[A-Za-z0-9_-]{5}\}/g, "");
}

/** An error answer of rcd: its HTTP status and rclone's message. */
export class RcError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** What the classification needs to know of the backend. */
export interface RcloneContext {
  /** The backend's name, for messages. */
  name: string;
  /** The rclone path of the location. */
  fs: string;
  /** RCLONE_CONFIG, when set. */
  config: string | undefined;
  /** Whether the remote has answered before. */
  worked: boolean;
}

/** Turns an rcd error answer into a classified BackendError. */
export function classify(ctx: RcloneContext, what: string, e: RcError): BackendError {
  const msg = rcloneLine(e.message);
  let hint = "";
  let permanent = e.status === 400 || e.status === 401 || e.status === 403;
  if (/didn't find section in config file/i.test(msg)) {
    const remote = remoteName(ctx.fs) ?? ctx.fs;
    const cfg = ctx.config;
    return new BackendError(
      "permanent",
      ctx.name,
      `${what}: remote "${remote}" is not in the rclone config (${
        cfg ? `RCLONE_CONFIG=${cfg}` : "rclone's default config file"
      }); check its name or add it with "rclone config"`,
      { cause: e },
    );
  }
  if (/didn't find backend called/i.test(msg)) {
    permanent = true;
    hint = "; check the backend type (see rclone help backends)";
  } else if (
    /unable to authenticate|authentication failed|auth fail|401 Unauthorized/i.test(msg)
  ) {
    permanent = true;
    hint = "; check the remote's user and key or password";
  } else if (
    /couldn't connect to ssh-agent|private key|key_file|knownhosts|host key/i.test(msg)
  ) {
    permanent = true;
    hint = "; check key_file and known_hosts_file of the remote";
  } else if (
    /permission denied|access ?denied|forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|bucket.* not found|no space left|quota|read-only file system|not a directory/i
      .test(msg)
  ) {
    permanent = true;
  } else if (!ctx.worked && /connection refused/i.test(msg)) {
    permanent = true;
    hint = "; is the server running on that host and port?";
  } else if (!ctx.worked && /no such host|server misbehaving/i.test(msg)) {
    permanent = true;
    hint = "; check the host name";
  } else if (!ctx.worked && /network is unreachable|no route to host/i.test(msg)) {
    permanent = true;
    hint = "; is the host reachable from here?";
  } else if (!ctx.worked && !TRANSIENT.test(msg)) {
    // The remote has never answered and this is no passing trouble (rcd answers every
    // rclone error with status 500, so only the message tells): a remote that is set up
    // wrong, e.g. with a password that is not obscured or a bad option, fails at once.
    permanent = true;
  }
  return new BackendError(
    permanent ? "permanent" : "transient",
    ctx.name,
    `${what}: ${msg}${hint}`,
    {
      cause: e,
    },
  );
}
