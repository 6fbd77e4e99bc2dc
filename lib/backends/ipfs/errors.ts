// How failures of RPC calls become the IPFS backend's errors: a missing MFS path is "not found";
// a connection that fails before the node ever answered is permanent (the address is wrong or
// the daemon is not running), later ones, and connections lost once made, are transient; 408,
// 429 and 5xx are transient, other HTTP errors permanent, with a hint at what to check.

import { BackendError } from "../backend.ts";
import { oneLine } from "../shared.ts";

/**
 * The error for a request that got no answer from the node `name`. `worked` says whether the
 * node has answered before; `abortedAfterS`, that the request was given up after that long.
 */
export function networkError(
  name: string,
  worked: boolean,
  e: unknown,
  what: string,
  abortedAfterS?: number,
): BackendError {
  if (abortedAfterS !== undefined) {
    return new BackendError("transient", name, `${what}: no answer within ${abortedAfterS} s`, {
      cause: e,
    });
  }
  const text = [e, (e as Error)?.cause].filter((x) => x !== undefined)
    .map((x) => x instanceof Error ? x.message : String(x)).join(": ");
  let cause: string;
  if (/refused/i.test(text)) cause = "connection refused; is the IPFS daemon running?";
  else if (/dns|lookup|resolve|name or service not known/i.test(text)) {
    cause = "cannot resolve the host name; check the api address";
  } else if (/unreachable|no route/i.test(text)) cause = "host unreachable";
  else if (/reset|broken pipe|closed|eof|incomplete/i.test(text)) cause = "connection lost";
  else cause = `request failed (${oneLine(text, 120)})`;
  // Before the node has ever answered, an address that does not work will not start working
  // by retrying; after it has, a failure is a restart or an overload. A connection lost once
  // made is transient either way: something answered at that address.
  const kind = worked || cause === "connection lost" ? "transient" : "permanent";
  return new BackendError(kind, name, `${what}: ${cause}`, { cause: e });
}

/** The error for an error answer (HTTP `status`, the node's `message`). */
export function httpError(
  name: string,
  status: number,
  message: string,
  what: string,
): BackendError {
  const msg = oneLine(message, 200) || "(no message)";
  if (/does not exist|not found|no link named/i.test(message) && status === 500) {
    return new BackendError("notfound", name, `${what}: not found`);
  }
  if (status === 408 || status === 429 || status >= 500) {
    return new BackendError("transient", name, `${what}: HTTP ${status}: ${msg}`);
  }
  let hint = "";
  if (status === 401 || status === 403) hint = "; check the credentials in the api address";
  else if (status === 404 || status === 405) {
    hint = "; is the api address the IPFS RPC API (usually port 5001), not a gateway?";
  }
  return new BackendError("permanent", name, `${what}: HTTP ${status}: ${msg}${hint}`);
}
