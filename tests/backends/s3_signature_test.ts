// The signature check that the S3 tests' proxy applies (tests/servers/sigv4_check.ts), against
// the worked examples AWS publishes for S3 ("Signature Calculations for the Authorization Header:
// Transferring Payload in a Single Chunk"): it accepts AWS's own signatures and refuses each one
// once a signed part of the request is changed. So a signer and the check cannot agree on a
// mistake that S3 would refuse.

import assert from "node:assert/strict";
import { type ArrivedRequest, checkSignature } from "../servers/sigv4_check.ts";

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const rules = {
  keys: [{
    accessKeyId: "AKIAIOSFODNN7EXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  }],
  region: "us-east-1",
  now: () => new Date("2013-05-24T00:05:00Z"),
};
const credential = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

/** A request of AWS's examples, to examplebucket.s3.amazonaws.com on 2013-05-24 at 00:00. */
function example(
  path: string,
  query: string,
  signedHeaders: string,
  signature: string,
  extra: Record<string, string> = {},
): ArrivedRequest {
  return {
    method: "GET",
    path,
    query,
    headers: new Headers({
      host: "examplebucket.s3.amazonaws.com",
      "x-amz-date": "20130524T000000Z",
      "x-amz-content-sha256": EMPTY_SHA256,
      authorization: `AWS4-HMAC-SHA256 Credential=${credential},SignedHeaders=${signedHeaders},` +
        `Signature=${signature}`,
      ...extra,
    }),
    body: new Uint8Array(0),
  };
}

const examples: [string, ArrivedRequest][] = [
  [
    "GET object with a range",
    example(
      "/test.txt",
      "",
      "host;range;x-amz-content-sha256;x-amz-date",
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
      { range: "bytes=0-9" },
    ),
  ],
  [
    "GET bucket lifecycle",
    example(
      "/",
      "lifecycle",
      "host;x-amz-content-sha256;x-amz-date",
      "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    ),
  ],
  [
    "list objects",
    example(
      "/",
      "max-keys=2&prefix=J",
      "host;x-amz-content-sha256;x-amz-date",
      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    ),
  ],
];

Deno.test("sigv4 check: AWS's published S3 examples pass", async () => {
  for (const [what, req] of examples) {
    assert.equal(await checkSignature(req, rules), null, what);
  }
});

Deno.test("sigv4 check: any change to a signed part is refused with 403", async () => {
  const changes: [string, (r: ArrivedRequest) => void][] = [
    ["the method", (r) => r.method = "HEAD"],
    ["the path", (r) => r.path = r.path === "/" ? "/x" : "/test.txT"],
    ["the query", (r) => r.query = r.query ? `${r.query}&a=1` : "a=1"],
    ["the host", (r) => r.headers.set("host", "otherbucket.s3.amazonaws.com")],
    ["the date within the same day", (r) => r.headers.set("x-amz-date", "20130524T000001Z")],
    ["a signed header", (r) => r.headers.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
    ["the signature", (r) => {
      const a = r.headers.get("authorization")!;
      r.headers.set("authorization", a.slice(0, -1) + (a.endsWith("0") ? "1" : "0"));
    }],
  ];
  for (const [what, req] of examples) {
    for (const [change, apply] of changes) {
      const r = { ...req, headers: new Headers(req.headers) };
      apply(r);
      const refusal = await checkSignature(r, rules);
      assert.ok(refusal, `${what}: changing ${change} is refused`);
      assert.equal(refusal.status, 403, `${what}, ${change}: ${refusal.code}`);
      assert.equal(refusal.code, "SignatureDoesNotMatch", `${what}, ${change}`);
    }
  }
});

Deno.test("sigv4 check: a wrong secret, key, region, token or clock is refused", async () => {
  const [, req] = examples[0];
  const cases: [string, Parameters<typeof checkSignature>[1], number, string][] = [
    [
      "a wrong secret",
      { ...rules, keys: [{ ...rules.keys[0], secretAccessKey: "wrong" }] },
      403,
      "SignatureDoesNotMatch",
    ],
    [
      "an unknown key",
      { ...rules, keys: [{ ...rules.keys[0], accessKeyId: "OTHER" }] },
      403,
      "InvalidAccessKeyId",
    ],
    ["another region", { ...rules, region: "eu-west-1" }, 400, "AuthorizationHeaderMalformed"],
    [
      "a missing session token",
      { ...rules, keys: [{ ...rules.keys[0], sessionToken: "T" }] },
      403,
      "InvalidToken",
    ],
    [
      "a clock an hour off",
      { ...rules, now: () => new Date("2013-05-24T01:00:01Z") },
      403,
      "RequestTimeTooSkewed",
    ],
  ];
  for (const [what, r, status, code] of cases) {
    const refusal = await checkSignature(req, r);
    assert.ok(refusal, what);
    assert.equal(refusal.status, status, what);
    assert.equal(refusal.code, code, what);
  }
  const unsigned = { ...req, headers: new Headers(req.headers) };
  unsigned.headers.set("x-amz-meta-extra", "1");
  assert.equal((await checkSignature(unsigned, rules))?.code, "AccessDenied", "unsigned x-amz-*");
  const body = { ...req, body: new TextEncoder().encode("not empty") };
  assert.equal((await checkSignature(body, rules))?.code, "XAmzContentSHA256Mismatch");
});
