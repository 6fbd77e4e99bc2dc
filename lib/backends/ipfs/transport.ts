// The IPFS backend's transport: calls of the Kubo HTTP RPC API (POST /api/v0/<command>) over
// fetch, each with a server-side `timeout=` and a client-side one a little longer.

import { BackendError } from "../backend.ts";
import { oneLine } from "../shared.ts";
import { httpError, networkError } from "./errors.ts";
import type { IpfsOptions } from "./location.ts";

/** Server-side timeout of calls that answer at once (metadata, moves, pins of small DAGs). */
export const CALL_TIMEOUT_S = 30;
/** Slowest transfer rate a streaming call is given time for, in bytes per second. */
const MIN_RATE = 4 << 20;

/** Seconds a call streaming `size` bytes may take. */
export function streamTimeout(size: number): number {
  return CALL_TIMEOUT_S + Math.ceil(size / MIN_RATE);
}

/** Options of one call. */
export interface CallOptions {
  timeoutS?: number;
  body?: ReadableStream<Uint8Array>;
  contentType?: string;
  signal?: AbortSignal;
}

/** One node's RPC API, as the backend `name` calls it. */
export class IpfsRpc {
  readonly #api: string;
  readonly #headers: Record<string, string>;
  /** True once the node has answered once: later connection failures are transient. */
  #worked = false;

  constructor(readonly name: string, opts: IpfsOptions) {
    this.#api = opts.api.replace(/\/+$/, "");
    this.#headers = opts.authorization ? { authorization: opts.authorization } : {};
  }

  /** The API's base URL, without credentials. */
  get api(): string {
    return this.#api;
  }

  /**
   * Calls `cmd` and returns the response once its status is known (body unread). Failures
   * become BackendErrors: "notfound" for a missing MFS path, otherwise classified.
   */
  async call(
    cmd: string,
    params: [string, string][],
    what: string,
    opts: CallOptions = {},
  ): Promise<Response> {
    const query = new URLSearchParams(params);
    if (opts.timeoutS !== undefined) query.set("timeout", `${opts.timeoutS}s`);
    const headers: Record<string, string> = { ...this.#headers };
    if (opts.contentType) headers["content-type"] = opts.contentType;
    // A node that accepts the connection but never answers: give up a little after the
    // node's own timeout would have.
    const ctl = new AbortController();
    const timer = opts.timeoutS === undefined
      ? undefined
      : setTimeout(() => ctl.abort(), (opts.timeoutS + 15) * 1000);
    let res: Response;
    try {
      res = await fetch(`${this.#api}/api/v0/${cmd}?${query}`, {
        method: "POST",
        headers,
        body: opts.body,
        signal: opts.signal ? AbortSignal.any([ctl.signal, opts.signal]) : ctl.signal,
      });
    } catch (e) {
      throw this.networkError(e, what, ctl.signal.aborted ? opts.timeoutS! + 15 : undefined);
    } finally {
      clearTimeout(timer);
    }
    this.#worked = true;
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let message = text;
    try {
      const j = JSON.parse(text);
      if (typeof j?.Message === "string") message = j.Message;
    } catch {
      // Not JSON: keep the text.
    }
    throw httpError(this.name, res.status, message, what);
  }

  /** Calls `cmd` and parses its JSON answer (an empty answer is `{}`). */
  async json<T>(
    cmd: string,
    params: [string, string][],
    what: string,
    timeoutS = CALL_TIMEOUT_S,
  ): Promise<T> {
    const res = await this.call(cmd, params, what, { timeoutS });
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.networkError(e, what);
    }
    if (text.trim() === "") return {} as T;
    try {
      // Streaming commands answer with one JSON value per line; the last one is the result.
      const lines = text.trim().split("\n");
      return JSON.parse(lines[lines.length - 1]) as T;
    } catch {
      throw new BackendError(
        "permanent",
        this.name,
        `${what}: the node answered ${cmd} with something that is not JSON (${
          oneLine(text, 80)
        }); is the api address the IPFS RPC API (usually port 5001)?`,
      );
    }
  }

  /** The error for a request the node did not answer (see errors.ts). */
  networkError(e: unknown, what: string, abortedAfterS?: number): BackendError {
    return networkError(this.name, this.#worked, e, what, abortedAfterS);
  }
}
