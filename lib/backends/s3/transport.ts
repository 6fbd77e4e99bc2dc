// How the S3 client library's requests reach the store. The library (s3-lite-client) builds,
// signs and sends every request with the global fetch and takes no options for it, while n2s
// needs its own HTTP client (a private CA, connect=), timeouts, a first connection that tells
// an unreachable endpoint from a failing one, the answers the library drops (error bodies,
// Content-Range, x-amz-bucket-region), and a hand on each multipart upload (its id, which
// parts are stored, a way to stop its requests). So the client below runs each of its requests
// in a route (AsyncLocalStorage), and a fetch installed once in front of the global one sends a
// routed request to the endpoint through its transport; every other fetch passes unchanged.

import { AsyncLocalStorage } from "node:async_hooks";
import { S3Client, type S3ClientOptions, S3Errors } from "@bradenmacdonald/s3-lite-client";
import { errorText } from "../shared.ts";
import { ConnectTunnel } from "./tunnel.ts";

const MiB = 1024 * 1024;
/** How long the first connection to the endpoint may take. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long an answer may take to begin, plus one second per MiB of the request's body. */
const ANSWER_TIMEOUT_MS = 60_000;
/** How long an answer's body may pause. */
const IDLE_TIMEOUT_MS = 60_000;
/** Largest error body kept. */
const MAX_ERROR_BODY = 64 * 1024;

/** An answer that was not 2xx, as the server sent it (its body cut at 64 KiB). */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The library's reading of the error document. */
  error: S3Errors.ServerError;
}

/** A request that got no HTTP answer; `permanent` when the endpoint cannot be reached at all. */
export class TransportError extends Error {
  override name = "TransportError";
  constructor(message: string, readonly permanent: boolean, options?: ErrorOptions) {
    super(message, options);
  }
}

/** What the requests of one operation share with the transport. */
export class RequestScope {
  /** Stops every request of the scope. */
  readonly controller = new AbortController();
  /** The last answer that was not 2xx. */
  answer?: Answer;
  /** The last response handed to the library (its body unread when the library refused it). */
  response?: Response;
  readonly #inflight = new Set<Promise<unknown>>();

  /** Notes a request as it goes out. */
  sent(_url: URL): void {}
  /** Notes a request's outcome: a 2xx answer, or the failure (an Answer or a TransportError). */
  answered(_url: URL, _failure?: Answer | TransportError): void {}

  track(p: Promise<unknown>): void {
    this.#inflight.add(p);
    p.catch(() => {}).finally(() => this.#inflight.delete(p));
  }

  /** Resolves when no request of the scope is in flight. */
  async settled(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }
}

/** Thrown into a multipart upload's body when one of its requests failed. */
export class UploadStopped extends Error {
  override name = "UploadStopped";
}

/** The requests of one multipart upload: its id, which parts are stored, its first failure. */
export class UploadScope extends RequestScope {
  uploadId?: string;
  failure?: Answer | TransportError;
  /** Parts 1 to `#stored` are all stored. */
  #stored = 0;
  readonly #done = new Set<number>();
  #waiters: (() => void)[] = [];

  override sent(url: URL): void {
    this.uploadId ??= url.searchParams.get("uploadId") ?? undefined;
  }

  override answered(url: URL, failure?: Answer | TransportError): void {
    if (failure) {
      if (this.failure === undefined) {
        this.failure = failure;
        this.controller.abort(new UploadStopped("a request of the upload failed"));
      }
    } else {
      const n = Number(url.searchParams.get("partNumber") ?? 0);
      if (url.searchParams.has("uploadId") && n > 0) {
        this.#done.add(n);
        while (this.#done.delete(this.#stored + 1)) this.#stored++;
      }
    }
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Waits until parts 1 to `n` are stored; throws UploadStopped once a request failed. */
  async storedUpTo(n: number): Promise<void> {
    while (true) {
      if (this.failure !== undefined) throw new UploadStopped("a request of the upload failed");
      if (this.#stored >= n) return;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

/** Where one backend's requests go and how: its HTTP client, timeouts and first connection. */
export interface TransportOptions {
  /** The host (and port) of the client's URLs; the virtual host in virtual-host style. */
  host: string;
  /** Where connections go: the endpoint's host and port, or `connect`. */
  target: { hostname: string; port: number };
  /** How `target` is named in messages. */
  label: string;
  /** PEM certificates to trust besides the built-in roots. */
  caCerts?: string;
  /** Send every connection here instead of resolving the host (curl's --connect-to). */
  connect?: { hostname: string; port: number };
  /** Whether the endpoint is https. */
  https: boolean;
}

/** Sends one backend's requests. */
export class S3Transport {
  readonly #o: TransportOptions;
  readonly #client: Deno.HttpClient;
  readonly #tunnel?: ConnectTunnel;
  #reached: Promise<void> | null = null;
  /** Set once the endpoint has answered: later failures to connect are transient. */
  #worked = false;

  constructor(options: TransportOptions) {
    this.#o = options;
    const c = options.connect;
    // connect=: plain HTTP goes straight to the address; TLS needs a tunnel (see tunnel.ts).
    if (c && options.https) this.#tunnel = new ConnectTunnel(c);
    this.#client = Deno.createHttpClient({
      ...(options.caCerts ? { caCerts: [options.caCerts] } : {}),
      ...(this.#tunnel
        ? { proxy: { url: this.#tunnel.url } }
        : c
        ? { proxy: { transport: "tcp", hostname: c.hostname, port: c.port } }
        : {}),
    });
  }

  /** Whether a URL is one of this transport's. */
  handles(url: URL): boolean {
    return url.host === this.#o.host;
  }

  /**
   * Makes sure the endpoint accepts connections, once: a refused, unresolvable or silent endpoint
   * is a permanent failure, so that a wrong location fails at once instead of being retried.
   */
  #reach(): Promise<void> {
    if (this.#worked) return Promise.resolve();
    this.#reached ??= this.#probe().catch((e) => {
      this.#reached = null;
      throw e;
    });
    return this.#reached;
  }

  async #probe(): Promise<void> {
    const signal = AbortSignal.timeout(CONNECT_TIMEOUT_MS);
    try {
      const conn = await Deno.connect({ ...this.#o.target, signal });
      conn.close();
    } catch (e) {
      const text = errorText(e);
      const why = signal.aborted
        ? `no connection within ${CONNECT_TIMEOUT_MS / 1000} s`
        : e instanceof Deno.errors.ConnectionRefused
        ? "connection refused"
        : /lookup|resolve|name or service|nodename|no address/i.test(text)
        ? "unknown host"
        : /unreachable/i.test(text)
        ? "host unreachable"
        : text;
      throw new TransportError(
        `cannot reach ${this.#o.label} (${why}); is the S3 server running and the endpoint right?`,
        true,
        { cause: e },
      );
    }
  }

  /** The failure of a request that got no answer. */
  #failure(e: unknown): TransportError {
    if (e instanceof TransportError) return e;
    // Deno's fetch says "fetch failed" and tells the cause beneath.
    let text = errorText(e);
    for (let c = (e as Error)?.cause, d = 0; c instanceof Error && d < 4; c = c.cause, d++) {
      text = errorText(c);
    }
    text = text.replace(/^error sending request for url \([^)]*\): /, "");
    if (!this.#worked && /certificate|TLS|SSL|handshake/i.test(text)) {
      return new TransportError(
        `TLS failure with ${this.#o.label}: ${text}; for a private certificate authority, ` +
          "set AWS_CA_BUNDLE to its certificate file",
        true,
        { cause: e },
      );
    }
    return new TransportError(text, false, { cause: e });
  }

  /** Sends one request of `scope` with `send` (the original fetch). */
  async fetch(
    scope: RequestScope,
    send: typeof fetch,
    url: URL,
    init: RequestInit,
  ): Promise<Response> {
    scope.sent(url);
    try {
      await this.#reach();
    } catch (e) {
      scope.answered(url, e as TransportError);
      throw e;
    }
    const timeout = new AbortController();
    const signal = AbortSignal.any([timeout.signal, scope.controller.signal]);
    const size = init.body instanceof Uint8Array ? init.body.length : 0;
    const limit = ANSWER_TIMEOUT_MS + Math.ceil(size / MiB) * 1000;
    const timer = setTimeout(
      () => timeout.abort(new TransportError(`no answer within ${limit / 1000} s`, false)),
      limit,
    );
    let res: Response;
    try {
      const pending = send(url, { ...init, signal, redirect: "manual", client: this.#client });
      scope.track(pending);
      res = await pending;
    } catch (e) {
      const failure = this.#failure(signal.aborted ? signal.reason : e);
      // A scope that was stopped on purpose has its reason already.
      if (!scope.controller.signal.aborted) scope.answered(url, failure);
      throw failure;
    } finally {
      clearTimeout(timer);
    }
    this.#worked = true;
    if (res.status < 200 || res.status >= 300) {
      const text = await readText(res, MAX_ERROR_BODY).catch(() => "");
      const init = { status: res.status, statusText: res.statusText };
      const answer: Answer = {
        ...init,
        headers: res.headers,
        text,
        error: await S3Errors.parseServerError(new Response(text, init)),
      };
      scope.answer = answer;
      scope.answered(url, answer);
      // The library reads the same answer again.
      const again = new Response([204, 205, 304].includes(res.status) ? null : text, {
        ...init,
        headers: res.headers,
      });
      scope.response = again;
      return again;
    }
    const guarded = guardBody(res, timeout);
    scope.response = guarded;
    scope.answered(url);
    return guarded;
  }

  close(): void {
    this.#client.close();
    this.#tunnel?.close();
  }
}

/** The answer with a body that fails once it pauses for longer than IDLE_TIMEOUT_MS. */
function guardBody(res: Response, timeout: AbortController): Response {
  if (!res.body) return res;
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const timer = setTimeout(
        () => timeout.abort(new TransportError(`no data for ${IDLE_TIMEOUT_MS / 1000} s`, false)),
        IDLE_TIMEOUT_MS,
      );
      try {
        const r = await reader.read();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/** Reads a body as text, at most `limit` bytes (the rest is dropped with its connection). */
async function readText(res: Response, limit: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  while (n < limit) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
    n += r.value.length;
  }
  if (n >= limit) await reader.cancel().catch(() => {});
  const all = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return new TextDecoder().decode(all.subarray(0, Math.min(n, limit)));
}

/** A request of the library on its way: to which transport, in which scope. */
interface Route {
  transport: S3Transport;
  scope: RequestScope;
}

const routes = new AsyncLocalStorage<Route>();
let routing = false;

/** Puts the routing fetch in front of the global one, once per process. */
function routeFetches(): void {
  if (routing) return;
  routing = true;
  const original = globalThis.fetch;
  globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const route = routes.getStore();
    if (route && !(input instanceof Request)) {
      const url = new URL(String(input));
      if (route.transport.handles(url)) {
        return route.transport.fetch(route.scope, original, url, init ?? {});
      }
    }
    return original(input, init);
  };
}

type RequestOptions = Parameters<S3Client["makeRequest"]>[0];

/** The library's client for one backend, every request of which goes through its transport. */
export class S3Connection extends S3Client {
  readonly transport: S3Transport;
  /** The multipart upload in progress per object name (puts of one name run one at a time). */
  readonly #uploads = new Map<string, UploadScope>();

  constructor(options: S3ClientOptions, transport: S3Transport) {
    super(options);
    this.transport = transport;
    routeFetches();
  }

  /** Runs `f`, which calls this client, with every request it makes in `scope`. */
  within<T>(scope: RequestScope, f: () => Promise<T>): Promise<T> {
    return routes.run({ transport: this.transport, scope }, f);
  }

  /**
   * Runs an upload of `objectName` in `scope`. The library sends a multipart upload's parts from
   * stream callbacks, where the route may be lost; those land in `scope` by their object name.
   */
  async uploading<T>(objectName: string, scope: UploadScope, f: () => Promise<T>): Promise<T> {
    this.#uploads.set(objectName, scope);
    try {
      return await this.within(scope, f);
    } finally {
      if (this.#uploads.get(objectName) === scope) this.#uploads.delete(objectName);
    }
  }

  override makeRequest(options: RequestOptions): Promise<Response> {
    const route = routes.getStore();
    const scope = route?.transport === this.transport
      ? route.scope
      : this.#uploads.get(options.objectName) ?? new RequestScope();
    return routes.run({ transport: this.transport, scope }, () => super.makeRequest(options));
  }
}
