// Key files: several passphrases wrap one master key; a wrong passphrase is an error.

import assert from "node:assert/strict";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { portableSuite } from "../../lib/format/suite_js.ts";
import {
  parseKeyFile,
  unwrapMasterKey,
  wrapMasterKey,
  WrongPassphraseError,
} from "../../lib/format/keyfile.ts";

const suite = await denoSuite();
const meta = { repository: "r1", label: "test", created: "2026-11-25T00:00:00.000Z", logN: 10 };

Deno.test("two key files with different passphrases open the same master key", async () => {
  const master = suite.randomBytes(32);
  const a = await wrapMasterKey(suite, master, "first", { ...meta, id: "a" });
  const b = await wrapMasterKey(suite, master, "second", { ...meta, id: "b" });
  assert.notEqual(a.sealed, b.sealed);
  assert.deepEqual(new Uint8Array(await unwrapMasterKey(suite, a, "first")), master);
  assert.deepEqual(new Uint8Array(await unwrapMasterKey(suite, b, "second")), master);
});

Deno.test("a key file made by the fast suite opens with the portable one", async () => {
  const master = suite.randomBytes(32);
  const k = await wrapMasterKey(suite, master, "pässwörd", { ...meta, id: "c" });
  const parsed = parseKeyFile(JSON.stringify(k), "key");
  assert.deepEqual(
    new Uint8Array(await unwrapMasterKey(await portableSuite(), parsed, "pässwörd")),
    master,
  );
});

Deno.test("a wrong passphrase or an altered key file is WrongPassphraseError", async () => {
  const k = await wrapMasterKey(suite, suite.randomBytes(32), "right", { ...meta, id: "d" });
  await assert.rejects(() => unwrapMasterKey(suite, k, "wrong"), WrongPassphraseError);
  const altered = {
    ...k,
    sealed: k.sealed.slice(0, -4) + (k.sealed.endsWith("AAA=") ? "BBB=" : "AAA="),
  };
  await assert.rejects(() => unwrapMasterKey(suite, altered, "right"), WrongPassphraseError);
});

Deno.test("the default key cost is scrypt N=2^17, r=8, p=1 with a 16-byte salt", async () => {
  const k = await wrapMasterKey(suite, suite.randomBytes(32), "x", {
    ...meta,
    id: "e",
    logN: undefined,
  });
  assert.deepEqual([k.kdf.name, k.kdf.N, k.kdf.r, k.kdf.p], ["scrypt", 131072, 8, 1]);
  assert.equal(atob(k.kdf.salt).length, 16);
});

Deno.test("malformed key files are rejected with the file named", () => {
  assert.throws(() => parseKeyFile("not json", "backup.key"), /backup\.key is not a key file/);
  assert.throws(() => parseKeyFile("{}", "backup.key"), /backup\.key is not an n2s key file/);
});

Deno.test("a key file altered in its scrypt parameters or base64 fields is rejected with the file named", async () => {
  const k = await wrapMasterKey(suite, suite.randomBytes(32), "x", { ...meta, id: "f" });
  const altered: [string, Record<string, unknown>, RegExp][] = [
    ["N as text", { kdf: { ...k.kdf, N: "1024" } }, /unsupported scrypt parameters/],
    ["r as text", { kdf: { ...k.kdf, r: "8" } }, /unsupported scrypt parameters/],
    ["r missing", { kdf: { ...k.kdf, r: undefined } }, /unsupported scrypt parameters/],
    ["r true", { kdf: { ...k.kdf, r: true } }, /unsupported scrypt parameters/],
    ["salt not base64", { kdf: { ...k.kdf, salt: "=" } }, /kdf\.salt is not the base64 of 16/],
    ["nonce too short", { nonce: "AAAA" }, /nonce is not the base64 of 12 bytes/],
    ["sealed not base64", { sealed: "!!!!" }, /sealed is not the base64 of 48 bytes/],
    ["created a number", { created: 5 }, /is not an n2s key file/],
  ];
  for (const [what, change, message] of altered) {
    assert.throws(
      () => parseKeyFile(JSON.stringify({ ...k, ...change }), "keys/f"),
      (e: Error) =>
        !(e instanceof TypeError) && /^keys\/f /.test(e.message) && message.test(e.message),
      what,
    );
  }
});
