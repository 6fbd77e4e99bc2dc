// Requests to the rclone backend's rcd: rc commands with JSON parameters, and reads through
// --rc-serve. One request at a time reaches rcd until the remote has answered once, then up to
// the backend's parallelism: each request in flight may hold one connection of rclone's to the
// remote (an SFTP remote opens one SSH connection per concurrent operation), and a burst of
// simultaneous new connections is what servers throttle (sshd's MaxStartups resets them).

import { BackendError } from "../backend.ts";
import { randomHex } from "../shared.ts";
import { Semaphore } from "../../scheduler.ts";
import { classify, RcError, rcloneLine } from "./errors.ts";
import type { RcloneOptions } from "./location.ts";
import { Rcd } from "./transport.ts";

/** One backend's rcd, started when needed, and the requests sent to it. */
export class RcClient {
  #rcd: Promise<Rcd> | null = null;
  /** True once the remote answered: connection errors after that are transient. */
  #worked = false;
  #closed = false;
  readonly #gate = new Semaphore(1);

  /**
   * The name rcd knows the location by: an alias remote defined in rcd's environment. The
   * location itself may contain "//" (an endpoint URL in a connection string), which Go's HTTP
   * server would fold into "/" in a --rc-serve URL; the alias name never does.
   */
  readonly alias: string;
  readonly #env: Record<string, string>;

  constructor(
    readonly name: string,
    readonly fs: string,
    private readonly opts: RcloneOptions,
    private readonly parallelism: number,
  ) {
    const alias = `n2s${randomHex(6)}`;
    const v = `RCLONE_CONFIG_${alias.toUpperCase()}`;
    this.alias = `${alias}:`;
    this.#env = { ...opts.env, [`${v}_TYPE`]: "alias", [`${v}_REMOTE`]: fs };
  }

  /** The remote has answered: later connection errors are transient, and requests go wide. */
  #answered(): void {
    this.#worked = true;
    this.#gate.widen(this.parallelism);
  }

  /** The running rcd; started (again, after it died) when needed. */
  async daemon(): Promise<Rcd> {
    if (this.#closed) throw new BackendError("permanent", this.name, "backend is closed");
    if (this.#rcd) {
      const rcd = await this.#rcd.catch(() => null);
      if (rcd && !rcd.exited) return rcd;
      if (rcd) await rcd.stop().catch(() => {});
    }
    const starting = Rcd.start(this.opts.program, this.#env);
    this.#rcd = starting;
    try {
      return await starting;
    } catch (e) {
      this.#rcd = null;
      throw new BackendError("permanent", this.name, (e as Error).message, { cause: e });
    }
  }

  /** The error for a request rcd did not answer. */
  lost(rcd: Rcd, what: string, e: unknown): BackendError {
    const why = rcd.exited
      ? `rclone rcd exited (${rcd.lastLine()})`
      : `rclone rcd did not answer: ${rcloneLine(e instanceof Error ? e.message : String(e))}`;
    // A fresh rcd is started by the next call.
    return new BackendError("transient", this.name, `${what}: ${why}`, { cause: e });
  }

  /** Turns an rcd error answer into a classified BackendError (see errors.ts). */
  classify(what: string, e: RcError): BackendError {
    return classify(
      { name: this.name, fs: this.fs, config: this.opts.env.RCLONE_CONFIG, worked: this.#worked },
      what,
      e,
    );
  }

  /** Reads rcd's answer; returns its JSON or throws RcError for an error answer. */
  async #answer(rcd: Rcd, res: Response, what: string): Promise<Record<string, unknown>> {
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.lost(rcd, what, e);
    }
    let obj: Record<string, unknown> = {};
    try {
      obj = JSON.parse(text);
    } catch {
      obj = { error: text.trim() || res.statusText };
    }
    if (res.ok) {
      this.#answered();
      return obj;
    }
    // A "not found" answer still proves that the remote was reached.
    if (res.status === 404) this.#answered();
    throw new RcError(res.status, typeof obj.error === "string" ? obj.error : text.trim());
  }

  /**
   * Sends one request to rcd, under the gate (see the top), and reads its answer (JSON; RcError
   * for an error answer), except the body of a successful `stream` request, which the caller
   * reads.
   */
  send(
    rcd: Rcd,
    what: string,
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: BodyInit },
    stream = false,
  ): Promise<{ res: Response; json?: Record<string, unknown> }> {
    return this.#gate.run(async () => {
      let res: Response;
      try {
        res = await fetch(rcd.url + path, {
          ...init,
          headers: { authorization: rcd.auth, ...init.headers },
          client: rcd.client,
        });
      } catch (e) {
        throw this.lost(rcd, what, e);
      }
      if (stream && res.ok && res.body !== null) {
        this.#answered();
        return { res };
      }
      return { res, json: await this.#answer(rcd, res, what) };
    });
  }

  /** Calls an rc command with JSON parameters. */
  async call(
    command: string,
    params: Record<string, unknown>,
    what: string,
  ): Promise<Record<string, unknown>> {
    const rcd = await this.daemon();
    const { json } = await this.send(rcd, what, command, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(params),
    });
    return json!;
  }

  /** #call with rcd's error answers classified. */
  async run(
    command: string,
    params: Record<string, unknown>,
    what: string,
  ): Promise<Record<string, unknown>> {
    try {
      return await this.call(command, params, what);
    } catch (e) {
      throw e instanceof RcError ? this.classify(what, e) : e;
    }
  }

  /** Stops rcd; later calls fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const rcd = await this.#rcd?.catch(() => null);
    this.#rcd = null;
    await rcd?.stop();
  }
}
