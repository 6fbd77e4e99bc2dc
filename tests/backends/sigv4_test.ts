// The SigV4 signer against the four worked examples AWS publishes in the S3 API reference
// ("Signature Calculations for the Authorization Header: Transferring Payload in a Single
// Chunk"), checking the canonical request, the string to sign and the signature.

import assert from "node:assert/strict";
import {
  canonicalQuery,
  EMPTY_SHA256,
  encodePath,
  sha256Hex,
  signV4,
  uriEncode,
} from "../../lib/backends/sigv4.ts";

const credentials = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
const date = new Date("2013-05-24T00:00:00Z");
const host = "examplebucket.s3.amazonaws.com";
const scope = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

Deno.test("sigv4: AWS's published S3 examples", async (t) => {
  await t.step("GET object with a range", () => {
    const s = signV4({
      method: "GET",
      host,
      path: encodePath("/test.txt"),
      headers: { Range: "bytes=0-9" },
      payloadHash: EMPTY_SHA256,
      region: "us-east-1",
      credentials,
      date,
    });
    assert.equal(
      s.canonicalRequest,
      "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n" +
        `x-amz-content-sha256:${EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\n` +
        `host;range;x-amz-content-sha256;x-amz-date\n${EMPTY_SHA256}`,
    );
    assert.equal(
      s.stringToSign,
      "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n" +
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    );
    assert.equal(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert.equal(
      s.headers.authorization,
      `AWS4-HMAC-SHA256 Credential=${scope},` +
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    assert.equal(s.headers.host, host);
    assert.equal(s.headers["x-amz-date"], "20130524T000000Z");
  });

  await t.step("PUT object with a signed payload and a $ in the key", () => {
    const payloadHash = sha256Hex("Welcome to Amazon S3.");
    assert.equal(
      payloadHash,
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
    );
    const s = signV4({
      method: "PUT",
      host,
      path: encodePath("/test$file.text"),
      headers: {
        Date: "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
      },
      payloadHash,
      region: "us-east-1",
      credentials,
      date,
    });
    assert.equal(s.canonicalRequest.split("\n")[1], "/test%24file.text");
    assert.equal(
      s.stringToSign.split("\n")[3],
      "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
    );
    assert.equal(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    assert.equal(
      s.headers.authorization.split(",")[1],
      "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
    );
  });

  await t.step("GET bucket lifecycle (a query parameter without a value)", () => {
    const s = signV4({
      method: "GET",
      host,
      path: "/",
      query: [["lifecycle", ""]],
      payloadHash: EMPTY_SHA256,
      region: "us-east-1",
      credentials,
      date,
    });
    assert.equal(s.canonicalRequest.split("\n")[2], "lifecycle=");
    assert.equal(
      s.stringToSign.split("\n")[3],
      "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
    );
    assert.equal(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  });

  await t.step("list objects (query parameters sorted)", () => {
    const s = signV4({
      method: "GET",
      host,
      path: "/",
      query: [["prefix", "J"], ["max-keys", "2"]],
      payloadHash: EMPTY_SHA256,
      region: "us-east-1",
      credentials,
      date,
    });
    assert.equal(s.canonicalRequest.split("\n")[2], "max-keys=2&prefix=J");
    assert.equal(
      s.stringToSign.split("\n")[3],
      "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
    );
    assert.equal(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  });

  await t.step("a session token is sent and signed", () => {
    const s = signV4({
      method: "GET",
      host,
      path: "/",
      payloadHash: EMPTY_SHA256,
      region: "us-east-1",
      credentials: { ...credentials, sessionToken: "TOKEN" },
      date,
    });
    assert.equal(s.headers["x-amz-security-token"], "TOKEN");
    assert.equal(
      s.headers.authorization.split(",")[1],
      "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
    );
  });

  await t.step("encoding: reserved characters, UTF-8, slashes", () => {
    assert.equal(uriEncode("a b+c/d~e_f.g-h*!'()"), "a%20b%2Bc%2Fd~e_f.g-h%2A%21%27%28%29");
    assert.equal(encodePath("/bucket/blobs/ab/é x"), "/bucket/blobs/ab/%C3%A9%20x");
    assert.equal(
      canonicalQuery([["prefix", "a/b c"], ["continuation-token", "x=y+z"], ["list-type", "2"]]),
      "continuation-token=x%3Dy%2Bz&list-type=2&prefix=a%2Fb%20c",
    );
  });
});
