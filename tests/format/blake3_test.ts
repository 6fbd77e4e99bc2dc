// BLAKE3: the official test vectors, and the fast path against @noble/hashes.

import assert from "node:assert/strict";
import { toHex, utf8 } from "../../lib/format/bytes.ts";
import { wasmBlake3 } from "../../lib/format/blake3_wasm.ts";
import { nobleDeriveKey, nobleHasher } from "../../lib/format/suite_js.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { seededBytes } from "../helpers/fs.ts";

// First 32 bytes of the official vectors (BLAKE3 repository, test_vectors/test_vectors.json):
// input = bytes 0,1,…,250 repeating; derive_key context below.
const CONTEXT = "BLAKE3 2019-12-27 16:29:52 test vectors context";
const VECTORS: [number, string, string][] = [
  [
    0,
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d",
  ],
  [
    1,
    "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c",
  ],
  [
    1023,
    "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    "74a16c1c3d44368a86e1ca6df64be6a2f64cce8f09220787450722d85725dea5",
  ],
  [
    1024,
    "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    "7356cd7720d5b66b6d0697eb3177d9f8d73a4a5c5e968896eb6a689684302706",
  ],
  [
    1025,
    "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    "effaa245f065fbf82ac186839a249707c3bddf6d3fdda22d1b95a3c970379bcb",
  ],
  [
    2048,
    "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a",
    "7b2945cb4fef70885cc5d78a87bf6f6207dd901ff239201351ffac04e1088a23",
  ],
  [
    2049,
    "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
    "2ea477c5515cc3dd606512ee72bb3e0e758cfae7232826f35fb98ca1bcbdf273",
  ],
  [
    3073,
    "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
    "72613c9ec9ff7e40f8f5c173784c532ad852e827dba2bf85b2ab4b76f7079081",
  ],
  [
    4097,
    "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995",
    "aca51029626b55fda7117b42a7c211f8c6e9ba4fe5b7a8ca922f34299500ead8",
  ],
  [
    6145,
    "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f",
    "379bcc61d0051dd489f686c13de00d5b14c505245103dc040d9e4dd1facab8e5",
  ],
  [
    7169,
    "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817",
    "554b0a5efea9ef183f2f9b931b7497995d9eb26f5c5c6dad2b97d62fc5ac31d9",
  ],
];

function vectorInput(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i % 251);
}

Deno.test("BLAKE3 matches the official vectors on the fast and the portable hasher", async () => {
  const suite = await denoSuite();
  for (const [len, hash] of VECTORS) {
    const input = vectorInput(len);
    const fast = suite.newHasher();
    fast.update(input);
    const slow = nobleHasher();
    slow.update(input);
    assert.equal(toHex(fast.digest()), hash, `fast hash of ${len} bytes`);
    assert.equal(toHex(slow.digest()), hash, `noble hash of ${len} bytes`);
  }
});

Deno.test("BLAKE3 derive_key matches the official vectors", () => {
  for (const [len, , derived] of VECTORS) {
    assert.equal(toHex(nobleDeriveKey(CONTEXT, vectorInput(len))), derived, `derive_key ${len}`);
  }
});

Deno.test("fast BLAKE3 equals @noble/hashes on random inputs and random update splits", async () => {
  const newHasher = await wasmBlake3();
  let seed = 1;
  for (const size of [0, 1, 63, 64, 65, 1000, 1024, 4097, 65536, 1 << 20, (1 << 20) + 3]) {
    const data = seededBytes(size, seed++);
    const fast = newHasher();
    let o = 0;
    while (o < size) {
      const step = 1 + ((o * 7919 + size) % 70000);
      fast.update(data.subarray(o, o + step));
      o += step;
    }
    const slow = nobleHasher();
    slow.update(data);
    assert.equal(toHex(fast.digest()), toHex(slow.digest()), `size ${size}`);
  }
});

Deno.test("interleaved hashers sharing one WASM instance give independent digests", async () => {
  const newHasher = await wasmBlake3();
  const a = newHasher();
  const b = newHasher();
  const x = seededBytes(300_000, 5);
  const y = seededBytes(200_000, 6);
  for (let i = 0; i < 10; i++) {
    a.update(x.subarray(i * 30_000, (i + 1) * 30_000));
    b.update(y.subarray(i * 20_000, (i + 1) * 20_000));
  }
  const na = nobleHasher();
  na.update(x);
  const nb = nobleHasher();
  nb.update(y);
  assert.equal(toHex(b.digest()), toHex(nb.digest()));
  assert.equal(toHex(a.digest()), toHex(na.digest()));
  // A hasher is reusable after digest.
  a.update(utf8("abc"));
  const nc = nobleHasher();
  nc.update(utf8("abc"));
  assert.equal(toHex(a.digest()), toHex(nc.digest()));
});
