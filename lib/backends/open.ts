// Turns a repository location into a backend stack: the backend its form names, wrapped in
// retries, a limit on operations in flight and, for tests, injected faults.

import type { Backend } from "./backend.ts";
import { openLocalLocation } from "./local/backend.ts";
import { openSftpLocation } from "./sftp/backend.ts";
import { openS3Location } from "./s3/backend.ts";
import { openIpfsLocation } from "./ipfs/backend.ts";
import { openRcloneLocation } from "./rclone/backend.ts";
import { buildStack, parseFaults, parseRetry, type StackOptions } from "./wrappers.ts";
import * as arg from "../args.ts";

/** The location forms, for error messages and help. */
export const LOCATION_FORMS = [
  "/path or file:///path",
  "sftp://[user@]host[:port]/path",
  "s3://bucket/prefix?endpoint=…&region=…&style=path|virtual",
  "ipfs://root?api=http://127.0.0.1:5001",
  "rclone:remote:path",
];

/** Options of `openBackend`. */
export interface OpenOptions extends StackOptions {
  /**
   * Environment the backend reads its settings and credentials from (default: the process
   * environment). N2S_FAULTS ("transient=0.2,seed=7") injects faults, for tests; N2S_RETRY
   * ("attempts=10,base=100,max=5000") tunes the retries.
   */
  env?: Record<string, string | undefined>;
}

/** Opens the backend a location names, without the wrappers. */
export function openBaseBackend(
  location: string,
  env: Record<string, string | undefined>,
): Promise<Backend> {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(location)?.[1].toLowerCase();
  if (scheme === "file") {
    return Promise.resolve(openLocalLocation(location));
  }
  if (scheme === "sftp" || scheme === "ssh") return openSftpLocation(location, env);
  if (scheme === "s3") return openS3Location(location, env);
  if (scheme === "ipfs") return openIpfsLocation(location, env);
  if (scheme === "rclone") return openRcloneLocation(location, env);
  if (scheme !== undefined) {
    throw new Error(
      `unsupported repository location "${location}": use one of ${LOCATION_FORMS.join(", ")}`,
    );
  }
  return Promise.resolve(openLocalLocation(location));
}

/**
 * Opens the backend stack named by a repository location.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { N2S, openBackend } from "@n2s/n2s";
 *
 * // A local directory; "sftp://host/path", "s3://bucket/prefix?…", "ipfs://…" and "rclone:…"
 * // open the other backends. Retries and a limit on operations in flight come with it.
 * const dir = await Deno.makeTempDir();
 * const backend = await openBackend(`file://${dir}/repo`, { retry: { attempts: 3 } });
 * const store = await N2S.init({
 *   repository: `${dir}/repo`,
 *   backend,
 *   index: `${dir}/index.sqlite`,
 *   passphrase: "correct horse",
 *   logN: 10,
 * });
 * assert.deepEqual(store.status(), []);
 * await store.close(); // closes the backend too
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openBackend(location: string, opts: OpenOptions = {}): Promise<Backend> {
  arg.string("openBackend", "location", location);
  const o = arg.object("openBackend", "options", opts);
  arg.optionalObject("openBackend", "options.env", o.env);
  arg.optionalObject("openBackend", "options.retry", o.retry);
  arg.optionalInteger("openBackend", "options.concurrency", o.concurrency, 1);
  const env = opts.env ?? Deno.env.toObject();
  const faults = opts.faults ?? (env.N2S_FAULTS ? parseFaults(env.N2S_FAULTS) : undefined);
  const retry = opts.retry ?? (env.N2S_RETRY ? parseRetry(env.N2S_RETRY) : {});
  if (faults && !retry.onRetry) {
    // Injected faults are for tests: show each retry, so a test can tell that faults happened.
    const enc = new TextEncoder();
    retry.onRetry = (op, key, attempt, e) => {
      const why = e instanceof Error ? e.message : String(e);
      Deno.stderr.writeSync(enc.encode(`retrying ${op} ${key} (try ${attempt + 1}): ${why}\n`));
    };
  }
  const base = await openBaseBackend(location, env);
  return buildStack(base, { ...opts, faults, retry });
}
