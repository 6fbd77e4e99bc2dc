// The S3 backend against a real s3rver, every request through a proxy that checks its SigV4
// signature with the AWS SDK's signer (tests/servers/sigv4_check.ts) and refuses a wrong one:
// the conformance suite in path style, in virtual-host style with 5 MiB multipart parts and with
// one large PUT, and once more against fauxqs, an independent S3 implementation; tampered
// requests and a wrong secret refused; a session token; a custom region; https with a private
// CA; keys that need escaping (on both servers); multipart uploads watched through the proxy;
// error classification with injected answers and dropped connections; credentials from the
// shared file; location parsing; the CLI round trip and the fast failures of bad credentials, a
// missing bucket and a closed port.

import assert from "node:assert/strict";
import {
  BackendError,
  type Body,
  BodyError,
  bytesBody,
  errorKind,
  NotFoundError,
  type ObjectInfo,
  readAll,
} from "../../lib/backends/backend.ts";
import {
  openS3Location,
  parseS3Location,
  parseSize,
  type S3Backend,
} from "../../lib/backends/s3/backend.ts";
import { fromBody } from "../../lib/backends/wrappers.ts";
import { tempDir } from "../helpers/fs.ts";
import {
  type S3Proxy,
  startFauxqs,
  startS3,
  startS3Proxy,
  testCertificates,
} from "../servers/s3.ts";
import type { SignatureRules } from "../servers/sigv4_check.ts";
import { expectFastFailure, runCliRoundTrip, runConformance, type Trouble } from "./harness.ts";

const MiB = 1 << 20;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** A body of `size` bytes in 1 MiB pieces; byte i is (i * 7 + seed) & 0xff. */
function patterned(size: number, seed: number, opts: { known?: boolean } = {}): Body & {
  yielded: number;
} {
  const body = {
    size: opts.known === false ? undefined : size,
    yielded: 0,
    async *open() {
      body.yielded = 0;
      for (let o = 0; o < size; o += MiB) {
        const n = Math.min(MiB, size - o);
        const p = new Uint8Array(n);
        for (let i = 0; i < n; i++) p[i] = ((o + i) * 7 + seed) & 0xff;
        body.yielded += n;
        yield p;
      }
    },
  };
  return body;
}

async function sameBytes(b: S3Backend, key: string, expected: Body): Promise<void> {
  const got = await readAll(await b.get(key));
  const want: Uint8Array[] = [];
  for await (const p of expected.open()) want.push(...(Array.isArray(p) ? p : [p]));
  const w = await readAll((async function* () {
    yield* want;
  })());
  assert.equal(got.length, w.length, `${key}: length`);
  assert.ok(got.every((x, i) => x === w[i]), `${key}: same bytes`);
}

/** Runs `f` and returns the BackendError it throws. */
async function failure(f: () => Promise<unknown>): Promise<BackendError> {
  try {
    const r = await f();
    if (r && typeof r === "object" && Symbol.asyncIterator in r) {
      for await (const _ of r as AsyncIterable<unknown>) {
        // drain
      }
    }
  } catch (e) {
    assert.ok(e instanceof BackendError, `a BackendError, not ${e}`);
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
    return e;
  }
  throw new Error("expected a failure");
}

function xmlError(status: number, code: string, message: string, headers = {}): Response {
  return new Response(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
      `<Message>${message}</Message><RequestId>1</RequestId></Error>`,
    { status, headers: { "content-type": "application/xml", ...headers } },
  );
}

/** The store behind `proxy` answers every request with 503 SlowDown until the trouble ends. */
function slowDown(proxy: S3Proxy): Trouble {
  return {
    what: "the store answering 503 SlowDown",
    // deno-lint-ignore require-await
    strike: async () => {
      proxy.fault = () => xmlError(503, "SlowDown", "Please reduce your request rate.");
      return () => {
        proxy.fault = () => undefined;
      };
    },
  };
}

/** A TCP server that answers every request with `reply` (or nothing) and closes. */
function rawServer(reply: string | null): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          await conn.read(new Uint8Array(64 * 1024));
          if (reply !== null) await conn.write(enc.encode(reply));
        } catch {
          // the client went away first
        } finally {
          conn.close();
        }
      })();
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Keys that need escaping in URLs and XML round trip through put, list, stat and get. */
async function oddKeys(open: () => Promise<S3Backend>): Promise<void> {
  const b = await open();
  try {
    const names = [`a&b<c>"d'e`, "ünï cødé", "plus+sign=eq;semi", "percent%41%", "~tilde*()!$@,"];
    for (const [i, n] of names.entries()) {
      await b.put(`keys/${n}`, bytesBody(enc.encode(n.repeat(i + 1))));
    }
    const listed: ObjectInfo[] = [];
    for await (const o of b.list("keys/")) listed.push(o);
    assert.deepEqual(listed.map((o) => o.key).sort(), names.map((n) => `keys/${n}`).sort());
    for (const [i, n] of names.entries()) {
      const info = listed.find((o) => o.key === `keys/${n}`)!;
      assert.equal(info.size, enc.encode(n).length * (i + 1));
      assert.match(info.ref ?? "", /^[0-9a-f]{32}/, "ref is the unquoted ETag");
      assert.equal(dec.decode(await readAll(await b.get(`keys/${n}`))), n.repeat(i + 1));
      assert.equal((await b.stat(`keys/${n}`))?.ref, info.ref);
    }
  } finally {
    await b.close();
  }
}

/**
 * A multipart upload's requests as logged, with the parts (sent two at a time, so they may arrive
 * out of order) in part order and upload ids as U.
 */
function uploadCalls(log: string[]): string[] {
  const part = (l: string) => Number(/partNumber=(\d+)/.exec(l)?.[1] ?? 0);
  const lines = log.map((l) => l.replace(/uploadId=[^&]+/, "uploadId=U"));
  const parts = lines.filter((l) => part(l) > 0).sort((a, b) => part(a) - part(b));
  return lines.map((l) => part(l) > 0 ? parts.shift()! : l);
}

/** Asserts that a signature-checking proxy checked requests and refused none. */
function allSigned(proxy: S3Proxy, what: string): void {
  assert.ok(proxy.verified > 0, `${what}: the proxy checked signatures`);
  assert.deepEqual(proxy.refused, [], `${what}: no request was refused`);
}

Deno.test("s3 backend: conformance, multipart, errors, credentials, CLI", async (t) => {
  const s3 = await startS3();
  const fq = await startFauxqs().catch(async (e) => {
    await s3.stop();
    throw e;
  });
  const rules: SignatureRules = {
    keys: [{ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }],
    region: s3.region,
  };
  // Every request to s3rver goes through a proxy that checks its signature.
  const checked = (opts: { rules?: SignatureRules } = {}) =>
    startS3Proxy(s3.endpoint, { verify: opts.rules ?? rules });
  const sig = checked();
  try {
    const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    const at = (prefix: string, params = "", endpoint = sig.endpoint) =>
      `s3://${s3.bucket}/${prefix}?endpoint=${endpoint}${params}`;
    // Virtual-host style without DNS: the Host header is n2s-test.s3.localhost:PORT, and every
    // connection goes to the proxy's address; the proxy checks the signature over that Host and
    // passes it on, and s3rver takes the bucket from it.
    const vhost = (prefix: string, bucket = s3.bucket, params = "") =>
      `s3://${bucket}/${prefix}?endpoint=http://s3.${s3.serviceEndpoint}:${sig.port}` +
      `&style=virtual&connect=127.0.0.1:${sig.port}${params}`;
    const open = (loc: string, e: Record<string, string> = env) => openS3Location(loc, e);

    // Path style, default part size: the 64 MiB object is a 4-part multipart upload.
    await runConformance(t, () => open(at("conf")), { listPageHint: 1000, trouble: slowDown(sig) });
    // Virtual-host style with 5 MiB parts: the 64 MiB object goes up in 13 parts.
    await runConformance(t, () => open(vhost("conf-vhost", s3.bucket, "&partsize=5MiB")), {
      listPageHint: 1000,
      trouble: slowDown(sig),
    });
    // One PUT for everything, the 64 MiB object included.
    await runConformance(t, () => open(at("conf-single", "&threshold=1GiB")), {
      listPageHint: 1000,
      trouble: slowDown(sig),
    });

    await t.step("every request so far was signed right", () => allSigned(sig, "s3rver"));

    // A second implementation; it takes at most 11 MiB per request.
    const fqEnv = { AWS_ACCESS_KEY_ID: fq.accessKeyId, AWS_SECRET_ACCESS_KEY: fq.secretAccessKey };
    const fqSig = startS3Proxy(fq.endpoint, {
      verify: {
        keys: [{ accessKeyId: fq.accessKeyId, secretAccessKey: fq.secretAccessKey }],
        region: fq.region,
      },
    });
    const fqAt = (prefix: string) =>
      `s3://${fq.bucket}/${prefix}?endpoint=${fqSig.endpoint}&partsize=5MiB&threshold=10MiB`;
    try {
      await runConformance(t, () => open(fqAt("conf"), fqEnv), {
        listPageHint: 1000,
        trouble: slowDown(fqSig),
      });
      await t.step(
        "fauxqs: keys that need escaping",
        () => oddKeys(() => open(fqAt("odd"), fqEnv)),
      );
      await t.step("fauxqs: every request was signed right", () => allSigned(fqSig, "fauxqs"));
    } finally {
      await fqSig.stop();
    }

    await t.step("virtual-host style takes the bucket from the Host header", async () => {
      const v = await open(vhost("vh"));
      const p = await open(at("vh"));
      try {
        await v.put("blobs/ab/x", bytesBody(enc.encode("through the host name")));
        assert.equal(dec.decode(await readAll(await p.get("blobs/ab/x"))), "through the host name");
        const other = await open(vhost("vh", "not-this-bucket"));
        const e = await failure(() => other.stat("blobs/ab/x"));
        await other.close();
        assert.equal(e.kind, "permanent");
        assert.match(e.message, /bucket not-this-bucket does not exist/);
      } finally {
        await v.close();
        await p.close();
      }
    });

    await t.step("https: AWS_CA_BUNDLE, virtual-host SNI, untrusted certificates", async () => {
      using tmp = tempDir();
      const cert = await testCertificates(tmp.path);
      // The https endpoint is the signature-checking proxy, in front of s3rver.
      const tls = startS3Proxy(s3.endpoint, { verify: rules, tls: cert });
      try {
        const trust = { ...env, AWS_CA_BUNDLE: cert.caFile };
        const b = await open(`s3://${s3.bucket}/tls?endpoint=${tls.endpoint}`, trust);
        await b.put("x", bytesBody(enc.encode("over TLS")));
        await b.close();
        // The certificate names *.s3.localhost: the virtual host name is checked, not the address
        // the connection goes to.
        const v = await open(
          `s3://${s3.bucket}/tls?endpoint=https://s3.localhost:${tls.port}&style=virtual` +
            `&connect=127.0.0.1:${tls.port}`,
          trust,
        );
        assert.equal(dec.decode(await readAll(await v.get("x"))), "over TLS");
        await v.close();
        allSigned(tls, "https");
        const untrusted = await open(`s3://${s3.bucket}/tls?endpoint=${tls.endpoint}`, env);
        const e = await failure(() => untrusted.stat("x"));
        await untrusted.close();
        assert.equal(e.kind, "permanent");
        assert.match(e.message, /TLS failure with 127\.0\.0\.1:\d+: .*set AWS_CA_BUNDLE/);
        const missing = await failure(() =>
          open(`s3://${s3.bucket}/tls?endpoint=${tls.endpoint}`, {
            ...env,
            AWS_CA_BUNDLE: "/nonexistent/ca.pem",
          })
        );
        assert.match(missing.message, /cannot read AWS_CA_BUNDLE \/nonexistent\/ca\.pem/);
      } finally {
        await tls.stop();
      }
    });

    await t.step(
      "keys with XML-special, reserved and non-ASCII characters",
      () => oddKeys(() => open(at(`odd-${crypto.randomUUID().slice(0, 8)}`))),
    );

    await t.step("multipart uploads: parts, bounded read-ahead, abort on failure", async () => {
      const proxy = checked();
      const b = await open(at("mp", "&partsize=5MiB&threshold=5MiB", proxy.endpoint));
      try {
        const body = patterned(17 * MiB + 3, 1);
        // At the arrival of part n, the body was read at most one part (plus one piece) ahead.
        const ahead: string[] = [];
        proxy.fault = (method, url) => {
          const n = Number(url.searchParams.get("partNumber") ?? 0);
          if (method === "PUT" && n > 0 && body.yielded > (n + 1) * 5 * MiB + MiB) {
            ahead.push(`part ${n} arrived with ${body.yielded} bytes read`);
          }
          return undefined;
        };
        const info = await b.put("big", body);
        assert.equal(info.size, 17 * MiB + 3);
        assert.deepEqual(ahead, [], "read-ahead stays within two part buffers");
        assert.deepEqual(uploadCalls(proxy.log), [
          "POST /n2s-test/mp/big?uploads",
          "PUT /n2s-test/mp/big?partNumber=1&uploadId=U",
          "PUT /n2s-test/mp/big?partNumber=2&uploadId=U",
          "PUT /n2s-test/mp/big?partNumber=3&uploadId=U",
          "PUT /n2s-test/mp/big?partNumber=4&uploadId=U",
          "POST /n2s-test/mp/big?uploadId=U",
        ]);
        await sameBytes(b, "big", body);
        assert.equal((await b.stat("big"))?.size, 17 * MiB + 3);

        // The body fails after two parts: the upload is aborted and nothing shows.
        proxy.log.length = 0;
        proxy.fault = () => undefined;
        const failing: Body = {
          size: 20 * MiB,
          async *open() {
            yield* patterned(11 * MiB, 2).open();
            throw new BodyError("source changed while it was read");
          },
        };
        const e = await failure(() => b.put("failed", failing));
        assert.ok(fromBody(e), "the BodyError is in the cause chain");
        assert.equal(errorKind(e), "permanent");
        assert.ok(proxy.log.some((l) => /^DELETE \/n2s-test\/mp\/failed\?uploadId=/.test(l)));
        assert.equal(await b.stat("failed"), null);

        // A part that fails on the server: a transient error, the upload aborted, and a
        // second put of the same body works.
        proxy.log.length = 0;
        proxy.fault = (method, url) =>
          method === "PUT" && url.searchParams.get("partNumber") === "2"
            ? xmlError(503, "SlowDown", "Please reduce your request rate.")
            : undefined;
        const e2 = await failure(() => b.put("retried", patterned(12 * MiB, 3)));
        assert.equal(e2.kind, "transient");
        assert.match(e2.message, /SlowDown/);
        assert.ok(proxy.log.some((l) => /^DELETE \/n2s-test\/mp\/retried\?uploadId=/.test(l)));
        assert.equal(await b.stat("retried"), null);
        proxy.fault = () => undefined;
        await b.put("retried", patterned(12 * MiB, 3));
        await sameBytes(b, "retried", patterned(12 * MiB, 3));

        // A completion answered with 200 and an error document is a failure, too.
        proxy.log.length = 0;
        proxy.fault = (method, url) =>
          method === "POST" && url.searchParams.has("uploadId")
            ? new Response("<Error><Code>InternalError</Code><Message>oops</Message></Error>")
            : undefined;
        const e3 = await failure(() => b.put("completion", patterned(6 * MiB, 4)));
        assert.equal(e3.kind, "transient");
        assert.match(e3.message, /InternalError/);
        assert.ok(proxy.log.some((l) => l.startsWith("DELETE /n2s-test/mp/completion?uploadId=")));
      } finally {
        await b.close();
        await proxy.stop();
      }
    });

    await t.step(
      "which bodies go up in one PUT, and bodies that lie about their size",
      async () => {
        const proxy = checked();
        const b = await open(at("sizes", "&partsize=5MiB&threshold=8MiB", proxy.endpoint));
        const puts = () => {
          const out = uploadCalls(proxy.log);
          proxy.log.length = 0;
          return out;
        };
        try {
          // Unknown size within one part: one PUT.
          const small = patterned(5 * MiB, 5, { known: false });
          assert.equal((await b.put("small", small)).size, 5 * MiB);
          assert.deepEqual(puts(), ["PUT /n2s-test/sizes/small"]);
          await sameBytes(b, "small", small);
          // Unknown size beyond one part: multipart, the piece read ahead included.
          puts();
          const large = patterned(5 * MiB + 1, 6, { known: false });
          assert.equal((await b.put("large", large)).size, 5 * MiB + 1);
          assert.deepEqual(puts(), [
            "POST /n2s-test/sizes/large?uploads",
            "PUT /n2s-test/sizes/large?partNumber=1&uploadId=U",
            "PUT /n2s-test/sizes/large?partNumber=2&uploadId=U",
            "POST /n2s-test/sizes/large?uploadId=U",
          ]);
          await sameBytes(b, "large", large);
          // Known size below the threshold: one PUT, even beyond one part.
          puts();
          const known = patterned(8 * MiB - 1, 7);
          await b.put("known", known);
          assert.deepEqual(puts(), ["PUT /n2s-test/sizes/known"]);
          // Known size at the threshold: multipart.
          puts();
          await b.put("at", patterned(8 * MiB, 8));
          assert.equal(puts().filter((l) => l.includes("partNumber=")).length, 2);
          await sameBytes(b, "at", patterned(8 * MiB, 8));
          // Declared sizes that do not match: refused as the body's fault, nothing stored.
          for (
            const [declared, actual, pattern] of [
              [3 * MiB, 2 * MiB, /gave 2097152 bytes, not the 3145728 it declared/],
              [MiB, 2 * MiB, /gave more than the 1048576 bytes it declared/],
              [20 * MiB, 11 * MiB, /gave 11534336 bytes, not the 20971520 it declared/],
              [9 * MiB, 11 * MiB, /gave more than the 9437184 bytes it declared/],
            ] as const
          ) {
            const liar: Body = { size: declared, open: () => patterned(actual, 7).open() };
            const e = await failure(() => b.put(`liar-${declared}`, liar));
            assert.equal(e.kind, "permanent");
            assert.ok(fromBody(e), "a size mismatch is the body's fault");
            assert.match(e.message, pattern);
            assert.equal(await b.stat(`liar-${declared}`), null);
          }
        } finally {
          await b.close();
          await proxy.stop();
        }
      },
    );

    await t.step("ranged gets: a Range request answered 206; wrong answers refused", async () => {
      const proxy = checked();
      const b = await open(at("ranges", "", proxy.endpoint));
      try {
        const data = patterned(300_000, 3);
        await b.put("r", data);
        const whole = await readAll(await b.get("r"));
        const range = { offset: 100_001, length: 7_000 };
        proxy.log.length = 0;
        const got = await readAll(await b.get("r", range));
        assert.deepEqual(got, whole.subarray(100_001, 107_001));
        assert.deepEqual(proxy.log, ["GET /n2s-test/ranges/r"], "one GET");
        // A server that ignores Range: its whole object is refused unless the range starts at 0
        // (then its first bytes are the range's).
        proxy.fault = (method) =>
          method === "GET" ? new Response(whole.slice(), { status: 200 }) : undefined;
        const ignored = await failure(() => b.get("r", range));
        assert.equal(ignored.kind, "permanent");
        assert.match(ignored.message, /ignored the Range header/);
        assert.deepEqual(
          await readAll(await b.get("r", { offset: 0, length: 10 })),
          whole.subarray(0, 10),
        );
        // A 206 of other bytes than those asked for.
        proxy.fault = (method) =>
          method === "GET"
            ? new Response(whole.slice(100_002, 107_002), {
              status: 206,
              headers: { "content-range": "bytes 100002-107001/300000" },
            })
            : undefined;
        const shifted = await failure(() => b.get("r", range));
        assert.equal(shifted.kind, "permanent");
        assert.match(
          shifted.message,
          /asked for bytes=100001-107000, the server sent bytes 100002/,
        );
        // 416 for an offset past the end is an empty range, as long as the object is that short.
        proxy.fault = (method) =>
          method === "GET"
            ? xmlError(416, "InvalidRange", "The requested range is not satisfiable", {
              "content-range": "bytes */300000",
            })
            : undefined;
        assert.equal((await readAll(await b.get("r", { offset: 300_000, length: 5 }))).length, 0);
        const refused = await failure(() => b.get("r", range));
        assert.equal(refused.kind, "permanent");
      } finally {
        await b.close();
        await proxy.stop();
      }
    });

    await t.step("error answers: throttling and 5xx transient, 4xx permanent", async () => {
      const proxy = checked();
      const b = await open(at("errs", "", proxy.endpoint));
      try {
        await b.put("k", bytesBody(enc.encode("v")));
        const cases: [Response | (() => Response), "transient" | "permanent", RegExp][] = [
          [() => xmlError(503, "SlowDown", "Reduce your request rate"), "transient", /SlowDown/],
          [() => xmlError(500, "InternalError", "We hit a snag"), "transient", /InternalError/],
          [() => new Response(null, { status: 502 }), "transient", /HTTP 502/],
          [() => new Response(null, { status: 429 }), "transient", /HTTP 429/],
          [() => xmlError(400, "RequestTimeout", "Idle too long"), "transient", /RequestTimeout/],
          [
            () => xmlError(403, "AccessDenied", "Access Denied"),
            "permanent",
            /access denied \(AccessDenied\); check the credentials and that they may use bucket n2s-test/,
          ],
          [
            () => xmlError(403, "SignatureDoesNotMatch", "x"),
            "permanent",
            /access denied \(SignatureDoesNotMatch\); check AWS_SECRET_ACCESS_KEY/,
          ],
          [
            () => xmlError(400, "ExpiredToken", "x"),
            "permanent",
            /renew the temporary credentials \(AWS_SESSION_TOKEN\)/,
          ],
          [
            () =>
              xmlError(301, "PermanentRedirect", "Use the right endpoint", {
                "x-amz-bucket-region": "eu-west-1",
              }),
            "permanent",
            /bucket n2s-test is in region eu-west-1, not us-east-1; add region=eu-west-1/,
          ],
          [
            () => xmlError(400, "InvalidArgument", "Bad thing"),
            "permanent",
            /InvalidArgument: Bad thing/,
          ],
        ];
        for (const [answer, kind, pattern] of cases) {
          proxy.fault = () => typeof answer === "function" ? answer() : answer;
          for (
            const [op, f] of [
              ["stat", () => b.stat("k")],
              ["get", () => b.get("k")],
              ["put", () => b.put("k", bytesBody(enc.encode("w")))],
              ["list", () => b.list("")[Symbol.asyncIterator]().next()],
              ["delete", () => b.delete("k")],
            ] as const
          ) {
            const e = await failure(f);
            assert.equal(e.kind, kind, `${op} with ${pattern}: ${e.message}`);
            assert.match(e.message, pattern, op);
            assert.ok(e.message.startsWith(`s3 n2s-test/errs at ${proxy.endpoint}: `), e.message);
          }
        }
        proxy.fault = () => undefined;
        assert.equal(dec.decode(await readAll(await b.get("k"))), "v");
      } finally {
        await b.close();
        await proxy.stop();
      }
    });

    await t.step("connection failures: refused at first permanent, later transient", async () => {
      const port = closedPort();
      const never = await open(at("x", "", `http://127.0.0.1:${port}`));
      const e = await failure(() => never.stat("config"));
      assert.equal(e.kind, "permanent");
      assert.equal(
        e.message,
        `s3 n2s-test/x at http://127.0.0.1:${port}: cannot reach 127.0.0.1:${port} ` +
          "(connection refused); is the S3 server running and the endpoint right?",
      );
      await never.close();

      const unknown = await open(at("x", "", "http://no-such-host.invalid:9000"));
      const e2 = await failure(() => unknown.stat("config"));
      assert.equal(e2.kind, "permanent");
      assert.match(e2.message, /cannot reach no-such-host\.invalid:9000 \(unknown host\)/);
      await unknown.close();

      // The endpoint worked, then went away: retrying may help.
      const proxy = checked();
      const b = await open(at("gone", "", proxy.endpoint));
      await b.put("k", bytesBody(enc.encode("v")));
      await proxy.stop();
      const e3 = await failure(() => b.stat("k"));
      assert.equal(e3.kind, "transient", e3.message);
      await b.close();

      // A connection dropped without an answer, and a body cut short.
      const drop = rawServer(null);
      const d = await open(at("x", "", `http://127.0.0.1:${drop.port}`));
      assert.equal((await failure(() => d.stat("k"))).kind, "transient");
      await d.close();
      drop.close();
      const cut = rawServer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
      const c = await open(at("x", "", `http://127.0.0.1:${cut.port}`));
      const e4 = await failure(() => c.get("k"));
      assert.equal(e4.kind, "transient");
      assert.match(e4.message, /get k: (connection lost after 3 bytes|got 3 of 100 bytes)/);
      await c.close();
      cut.close();
    });

    await t.step("missing bucket and unknown access key are permanent on every call", async () => {
      const missing = await open(`s3://no-such-bucket/p?endpoint=${sig.endpoint}`);
      const bad = await open(at("p"), {
        AWS_ACCESS_KEY_ID: "NOSUCHKEY",
        AWS_SECRET_ACCESS_KEY: "the-secret-value",
      });
      try {
        for (
          const [b, pattern] of [
            [
              missing,
              /^s3 no-such-bucket\/p at .*: bucket no-such-bucket does not exist; create it or fix the location$/,
            ],
            [
              bad,
              /^s3 n2s-test\/p at .*: access denied \(InvalidAccessKeyId\); check AWS_ACCESS_KEY_ID$/,
            ],
          ] as const
        ) {
          for (
            const f of [
              () => b.stat("config"),
              () => b.get("config"),
              () => b.put("config", bytesBody(enc.encode("c"))),
              () => b.list("")[Symbol.asyncIterator]().next(),
              () => b.delete("config"),
            ]
          ) {
            const e = await failure(f);
            assert.ok(!(e instanceof NotFoundError));
            assert.equal(e.kind, "permanent");
            assert.match(e.message, pattern);
            assert.ok(!e.message.includes("the-secret-value"));
          }
        }
      } finally {
        await missing.close();
        await bad.close();
      }
    });

    await t.step("credentials from the shared credentials file and AWS_PROFILE", async () => {
      using tmp = tempDir();
      const file = `${tmp.path}/credentials`;
      Deno.writeTextFileSync(
        file,
        "# test\n[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n\n" +
          "[profile other]\naws_access_key_id=NOSUCHKEY\naws_secret_access_key=hidden-secret\n",
      );
      const loc = at("creds");
      const viaFile = await open(loc, { AWS_SHARED_CREDENTIALS_FILE: file });
      await viaFile.put("a", bytesBody(enc.encode("file")));
      await viaFile.close();
      Deno.mkdirSync(`${tmp.path}/home/.aws`, { recursive: true });
      Deno.copyFileSync(file, `${tmp.path}/home/.aws/credentials`);
      const viaHome = await open(loc, { HOME: `${tmp.path}/home` });
      assert.equal(dec.decode(await readAll(await viaHome.get("a"))), "file");
      await viaHome.close();

      const other = await open(loc, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: "other" });
      const e = await failure(() => other.stat("a"));
      await other.close();
      assert.match(
        e.message,
        new RegExp(
          `access denied \\(InvalidAccessKeyId\\); check aws_access_key_id in ${file} \\[other\\]`,
        ),
      );
      assert.ok(!e.message.includes("hidden-secret"));

      const none = await failure(() => open(loc, { HOME: `${tmp.path}/empty` }));
      assert.match(none.message, /no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
      const noProfile = await failure(() =>
        open(loc, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: "nope" })
      );
      assert.match(noProfile.message, /profile \[nope\] is not in .*; check AWS_PROFILE/);
      const half = await failure(() => open(loc, { AWS_ACCESS_KEY_ID: "S3RVER" }));
      assert.match(half.message, /AWS_SECRET_ACCESS_KEY is not; set both/);
    });

    await t.step("signatures: tampered requests and a wrong secret are refused (403)", async () => {
      const proxy = checked();
      const b = await open(at("tamper", "", proxy.endpoint));
      try {
        await b.put("a", bytesBody(enc.encode("the first object")));
        await b.put("b", bytesBody(enc.encode("the second object")));
        assert.equal(
          dec.decode(await readAll(await b.get("a", { offset: 4, length: 5 }))),
          "first",
        );
        allSigned(proxy, "before tampering");

        // A request whose path is changed after signing (a for b) is refused, not served.
        proxy.tamper = (r) => {
          r.url.pathname = r.url.pathname.replace(/\/a$/, "/b");
        };
        const path = await failure(() => b.get("a"));
        assert.equal(path.kind, "permanent");
        assert.equal(
          path.message,
          `s3 n2s-test/tamper at ${proxy.endpoint}: access denied (SignatureDoesNotMatch); ` +
            "check AWS_SECRET_ACCESS_KEY",
        );
        assert.deepEqual(proxy.refused, ["GET /n2s-test/tamper/b: SignatureDoesNotMatch"]);

        // So is one whose signed Range header is changed.
        proxy.refused.length = 0;
        proxy.tamper = (r) => {
          if (r.headers.has("range")) r.headers.set("range", "bytes=0-3");
        };
        const range = await failure(() => b.get("a", { offset: 4, length: 5 }));
        assert.equal(range.kind, "permanent");
        assert.match(range.message, /access denied \(SignatureDoesNotMatch\)/);
        assert.deepEqual(proxy.refused, ["GET /n2s-test/tamper/a: SignatureDoesNotMatch"]);

        // And one whose body no longer matches its signed hash.
        proxy.refused.length = 0;
        proxy.tamper = (r) => {
          if (r.method === "PUT") r.headers.set("x-amz-content-sha256", "0".repeat(64));
        };
        const body = await failure(() => b.put("c", bytesBody(enc.encode("body"))));
        assert.equal(body.kind, "permanent");
        assert.equal(proxy.refused.length, 1);
        proxy.tamper = () => {};
        assert.equal(await b.stat("c"), null, "nothing was stored");

        // The refusal itself: 403 with S3's XML error document.
        const signedHead = new Headers();
        proxy.tamper = (r) => {
          for (const [k, v] of r.headers) signedHead.set(k, v);
        };
        await b.stat("a");
        proxy.tamper = () => {};
        signedHead.delete("host");
        const raw = await fetch(`${proxy.endpoint}/n2s-test/tamper/b`, { headers: signedHead });
        assert.equal(raw.status, 403);
        assert.match(raw.headers.get("content-type") ?? "", /xml/);
        assert.match(await raw.text(), /<Error><Code>SignatureDoesNotMatch<\/Code><Message>/);

        // A wrong secret: every call fails at once, one line naming the variable to check.
        proxy.refused.length = 0;
        const wrong = await open(at("tamper", "", proxy.endpoint), {
          ...env,
          AWS_SECRET_ACCESS_KEY: "not-the-secret",
        });
        for (
          const f of [
            () => wrong.stat("a"),
            () => wrong.get("a"),
            () => wrong.put("d", bytesBody(enc.encode("d"))),
            () => wrong.list("")[Symbol.asyncIterator]().next(),
            () => wrong.delete("a"),
          ]
        ) {
          const e = await failure(f);
          assert.equal(e.kind, "permanent");
          assert.match(
            e.message,
            /: access denied \(SignatureDoesNotMatch\); check AWS_SECRET_ACCESS_KEY$/,
          );
          assert.ok(!e.message.includes("not-the-secret"));
        }
        await wrong.close();
        assert.ok(proxy.refused.length >= 5);
        assert.ok(proxy.refused.every((r) => r.endsWith(": SignatureDoesNotMatch")));
        assert.equal(dec.decode(await readAll(await b.get("a"))), "the first object");
      } finally {
        await b.close();
        await proxy.stop();
      }
    });

    await t.step("a session token (AWS_SESSION_TOKEN) is sent and signed", async (t) => {
      const token = "FwoGZXIvYXdzEJr//////////wEaDM+token/with=odd+chars";
      const proxy = checked({
        rules: { ...rules, keys: [{ ...rules.keys[0], sessionToken: token }] },
      });
      const withToken = { ...env, AWS_SESSION_TOKEN: token };
      try {
        await runConformance(t, () => open(at("token", "", proxy.endpoint), withToken), {
          listPageHint: 1000,
          trouble: slowDown(proxy),
        });
        allSigned(proxy, "with a session token");
        const none = await open(at("token", "", proxy.endpoint));
        const e = await failure(() => none.stat("x"));
        await none.close();
        assert.equal(e.kind, "permanent");
        assert.match(
          e.message,
          /access denied \(InvalidToken\); renew the temporary credentials \(AWS_SESSION_TOKEN\)$/,
        );
        // The token from the shared credentials file.
        using tmp = tempDir();
        const file = `${tmp.path}/credentials`;
        Deno.writeTextFileSync(
          file,
          `[default]\naws_access_key_id = ${s3.accessKeyId}\n` +
            `aws_secret_access_key = ${s3.secretAccessKey}\naws_session_token = ${token}\n`,
        );
        proxy.refused.length = 0;
        const viaFile = await open(at("token", "", proxy.endpoint), {
          AWS_SHARED_CREDENTIALS_FILE: file,
        });
        await viaFile.put("f", bytesBody(enc.encode("token from the file")));
        assert.equal(dec.decode(await readAll(await viaFile.get("f"))), "token from the file");
        await viaFile.close();
        assert.deepEqual(proxy.refused, []);
      } finally {
        await proxy.stop();
      }
    });

    await t.step("a custom region: signed for it, and a wrong one named", async (t) => {
      const region = "eu-central-1";
      const proxy = checked({ rules: { ...rules, region } });
      try {
        await runConformance(
          t,
          () => open(at("region", `&region=${region}`, proxy.endpoint)),
          { listPageHint: 1000, trouble: slowDown(proxy) },
        );
        // The region from the environment, in virtual-host style.
        const v = await open(
          `s3://${s3.bucket}/region?endpoint=http://s3.localhost:${proxy.port}&style=virtual` +
            `&connect=127.0.0.1:${proxy.port}`,
          { ...env, AWS_REGION: region },
        );
        await v.put("v", bytesBody(enc.encode("virtual, eu-central-1")));
        assert.equal(dec.decode(await readAll(await v.get("v"))), "virtual, eu-central-1");
        await v.close();
        allSigned(proxy, region);
        const wrong = await open(at("region", "", proxy.endpoint));
        for (const f of [() => wrong.stat("v"), () => wrong.get("v")]) {
          const e = await failure(f);
          assert.equal(e.kind, "permanent");
          assert.match(
            e.message,
            /bucket n2s-test is in region eu-central-1, not us-east-1; add region=eu-central-1 to the location$/,
          );
        }
        await wrong.close();
      } finally {
        await proxy.stop();
      }
    });

    await t.step("locations: defaults, styles and clear errors", () => {
      const aws = parseS3Location("s3://my-bucket/a/b/", { AWS_REGION: "eu-west-2" });
      assert.deepEqual(aws, {
        bucket: "my-bucket",
        prefix: "a/b/",
        endpoint: "https://s3.eu-west-2.amazonaws.com",
        region: "eu-west-2",
        style: "virtual",
        partSize: 16 * MiB,
        threshold: 64 * MiB,
        connect: undefined,
      });
      assert.equal(parseS3Location("s3://b.with.dots", {}).style, "path");
      assert.equal(parseS3Location("s3://bkt", {}).region, "us-east-1");
      assert.equal(
        parseS3Location("s3://bkt", { AWS_DEFAULT_REGION: "ap-south-1" }).region,
        "ap-south-1",
      );
      assert.equal(parseS3Location("s3://bkt", {}).prefix, "");
      const custom = parseS3Location(
        "s3://bkt/p?endpoint=http://10.0.0.5:9000/&region=x-1&partsize=5MiB&threshold=1G",
        {},
      );
      assert.equal(custom.endpoint, "http://10.0.0.5:9000");
      assert.equal(custom.style, "path");
      assert.equal(custom.partSize, 5 * MiB);
      assert.equal(custom.threshold, 1024 * MiB);
      assert.equal(
        parseS3Location("s3://bkt", { AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000" }).endpoint,
        "http://127.0.0.1:9000",
      );
      assert.deepEqual(parseS3Location("s3://bkt?connect=[::1]:9000", {}).connect, {
        hostname: "::1",
        port: 9000,
      });
      assert.equal(parseSize("16MiB"), 16 * MiB);
      assert.equal(parseSize("5M"), 5 * MiB);
      assert.equal(parseSize("1048576"), MiB);
      assert.equal(parseSize("lots"), null);
      for (
        const [loc, pattern] of [
          ["s3://", /no bucket name/],
          ["s3:/bucket", /expected s3:\/\/bucket\/prefix/],
          ["s3://bkt/p?bogus=1", /unknown parameter "bogus"/],
          ["s3://bkt/p?endpoint=ftp://x", /must start with http:\/\/ or https:\/\//],
          ["s3://bkt/p?endpoint=http://h:1/path", /without path/],
          ["s3://bkt/p?endpoint=::", /is not a URL/],
          ["s3://bkt/p?partsize=1MiB", /partsize must be a size from 5 MiB to 5 GiB/],
          ["s3://bkt/p?style=sideways", /style must be "path" or "virtual"/],
          ["s3://bkt/../p", /\. or \.\. segments/],
          ["s3://bad_bucket!/p", /not a valid bucket name/],
          ["s3://bkt/p?connect=nowhere", /connect must be host:port/],
        ] as const
      ) {
        assert.throws(
          () => parseS3Location(loc, {}),
          (e) => e instanceof BackendError && e.kind === "permanent" && pattern.test(e.message),
          loc,
        );
      }
    });

    await runCliRoundTrip(t, at("cli"), env);
    await expectFastFailure(
      t,
      at("badkey"),
      { AWS_ACCESS_KEY_ID: "NOSUCHKEY", AWS_SECRET_ACCESS_KEY: "secret" },
      /s3 n2s-test\/badkey at http:\/\/127\.0\.0\.1:\d+: access denied \(InvalidAccessKeyId\); check AWS_ACCESS_KEY_ID/,
    );
    await expectFastFailure(
      t,
      `s3://no-such-bucket/repo?endpoint=${sig.endpoint}`,
      env,
      /bucket no-such-bucket does not exist; create it or fix the location/,
    );
    await expectFastFailure(
      t,
      at("closed", "", `http://127.0.0.1:${closedPort()}`),
      env,
      /cannot reach 127\.0\.0\.1:\d+ \(connection refused\); is the S3 server running/,
    );
  } finally {
    await sig.stop();
    await s3.stop();
    await fq.stop();
  }
});
