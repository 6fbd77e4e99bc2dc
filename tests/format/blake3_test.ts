// BLAKE3: the official test vectors (hash, derive_key and keyed_hash) on every implementation n2s
// has (the native addon, hash-wasm, @noble/hashes and the suites built on them), and hash-wasm
// against @noble/hashes. The native addon against @noble/hashes on random inputs, and in a
// Worker: tests/perf/blake3_napi_test.ts.

import assert from "node:assert/strict";
import { blake3 } from "@noble/hashes/blake3.js";
import { toHex, utf8 } from "../../lib/format/bytes.ts";
import { wasmBlake3, wasmKeyedHash } from "../../lib/format/blake3_wasm.ts";
import { loadNapiBlake3 } from "../../lib/format/blake3_napi.ts";
import {
  nobleDeriveKey,
  nobleHasher,
  nobleKeyedHash,
  portableSuite,
} from "../../lib/format/suite_js.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import type { Hasher, Suite } from "../../lib/format/suite.ts";
import { seededBytes } from "../helpers/fs.ts";

// First 32 bytes of the official vectors (BLAKE3 repository, test_vectors/test_vectors.json):
// input = bytes 0,1,…,250 repeating; then hash, derive_key (context below) and keyed_hash (key
// below).
const CONTEXT = "BLAKE3 2019-12-27 16:29:52 test vectors context";
const KEY = utf8("whats the Elvish word for friend");
const VECTORS: [number, string, string, string][] = [
  [
    0,
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d",
    "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26",
  ],
  [
    1,
    "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c",
    "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b",
  ],
  [
    1023,
    "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    "74a16c1c3d44368a86e1ca6df64be6a2f64cce8f09220787450722d85725dea5",
    "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e",
  ],
  [
    1024,
    "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    "7356cd7720d5b66b6d0697eb3177d9f8d73a4a5c5e968896eb6a689684302706",
    "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4",
  ],
  [
    1025,
    "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    "effaa245f065fbf82ac186839a249707c3bddf6d3fdda22d1b95a3c970379bcb",
    "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69",
  ],
  [
    2048,
    "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a",
    "7b2945cb4fef70885cc5d78a87bf6f6207dd901ff239201351ffac04e1088a23",
    "879cf1fa2ea0e79126cb1063617a05b6ad9d0b696d0d757cf053439f60a99dd1",
  ],
  [
    2049,
    "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
    "2ea477c5515cc3dd606512ee72bb3e0e758cfae7232826f35fb98ca1bcbdf273",
    "9f29700902f7c86e514ddc4df1e3049f258b2472b6dd5267f61bf13983b78dd5",
  ],
  [
    3073,
    "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
    "72613c9ec9ff7e40f8f5c173784c532ad852e827dba2bf85b2ab4b76f7079081",
    "68dede9bef00ba89e43f31a6825f4cf433389fedae75c04ee9f0cf16a427c95a",
  ],
  [
    4097,
    "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995",
    "aca51029626b55fda7117b42a7c211f8c6e9ba4fe5b7a8ca922f34299500ead8",
    "00df940cd36bb9fa7cbbc3556744e0dbc8191401afe70520ba292ee3ca80abbc",
  ],
  [
    6145,
    "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f",
    "379bcc61d0051dd489f686c13de00d5b14c505245103dc040d9e4dd1facab8e5",
    "9ac301e9e39e45e3250a7e3b3df701aa0fb6889fbd80eeecf28dbc6300fbc539",
  ],
  [
    7169,
    "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817",
    "554b0a5efea9ef183f2f9b931b7497995d9eb26f5c5c6dad2b97d62fc5ac31d9",
    "ed9b1a922c046fdb3d423ae34e143b05ca1bf28b710432857bf738bcedbfa511",
  ],
];

/** keyed_hash straight from @noble/hashes, the reference. */
const blake3Keyed = (key: Uint8Array, data: Uint8Array) => blake3(data, { key });

function vectorInput(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i % 251);
}

/** Every BLAKE3 operation of one implementation; `hash` (one-shot) may be missing. */
interface Impl {
  name: string;
  newHasher: () => Hasher;
  hash?: (data: Uint8Array) => Uint8Array;
  keyedHash: (key: Uint8Array, data: Uint8Array) => Uint8Array;
  deriveKey: (context: string, material: Uint8Array) => Uint8Array;
}

/** The suite of the CLI with N2S_NO_NATIVE=1: hash-wasm (and noble's derive_key). */
async function wasmDenoSuite(): Promise<Suite & { info: { blake3: string } }> {
  const before = Deno.env.get("N2S_NO_NATIVE");
  Deno.env.set("N2S_NO_NATIVE", "1");
  try {
    return await denoSuite();
  } finally {
    if (before === undefined) Deno.env.delete("N2S_NO_NATIVE");
    else Deno.env.set("N2S_NO_NATIVE", before);
  }
}

async function allImpls(): Promise<Impl[]> {
  const napi = await loadNapiBlake3();
  const fast = await denoSuite();
  assert.equal(fast.info.blake3, "napi", "denoSuite() does not use the native BLAKE3");
  const fallback = await wasmDenoSuite();
  assert.equal(fallback.info.blake3, "hash-wasm", "N2S_NO_NATIVE=1 does not turn napi off");
  return [
    { name: "napi", ...napi },
    { name: "denoSuite", ...fast },
    { name: "denoSuite, N2S_NO_NATIVE=1", ...fallback },
    { name: "portableSuite", ...await portableSuite() },
    {
      name: "hash-wasm",
      newHasher: await wasmBlake3(),
      keyedHash: await wasmKeyedHash(),
      deriveKey: nobleDeriveKey,
    },
    {
      name: "@noble/hashes",
      newHasher: nobleHasher,
      keyedHash: nobleKeyedHash,
      deriveKey: nobleDeriveKey,
    },
  ];
}

Deno.test("every BLAKE3 implementation matches the official hash, keyed_hash and derive_key vectors", async () => {
  const impls = await allImpls();
  for (const [len, hash, derived, keyed] of VECTORS) {
    const input = vectorInput(len);
    for (const impl of impls) {
      const h = impl.newHasher();
      h.update(input);
      assert.equal(toHex(h.digest()), hash, `${impl.name}: hash of ${len} bytes`);
      if (impl.hash) {
        assert.equal(toHex(impl.hash(input)), hash, `${impl.name}: one-shot hash of ${len} bytes`);
      }
      assert.equal(toHex(impl.keyedHash(KEY, input)), keyed, `${impl.name}: keyed_hash ${len}`);
      assert.equal(
        toHex(impl.deriveKey(CONTEXT, input)),
        derived,
        `${impl.name}: derive_key ${len}`,
      );
    }
  }
});

Deno.test("keyedHash of every suite equals @noble/hashes, with several keys in turn", async () => {
  const impls = await allImpls();
  const keys = [1, 2, 3, 4, 5, 6].map((k) => seededBytes(32, 1000 + k));
  let seed = 50;
  // Blob ids hash short inputs; the larger sizes cross BLAKE3's chunk and block boundaries.
  for (const size of [0, 1, 63, 64, 65, 100, 1023, 1024, 1025, 70_000]) {
    for (const key of keys) {
      const data = seededBytes(size, seed++);
      const want = toHex(blake3Keyed(key, data));
      for (const impl of impls) {
        assert.equal(toHex(impl.keyedHash(key, data)), want, `${impl.name}: size ${size}`);
      }
    }
  }
  // Keys alternating call by call, beyond the native path's cache of keyed hashers.
  const data = utf8("some/dir/file.txt:" + "ab".repeat(32));
  for (let round = 0; round < 3; round++) {
    for (const key of keys) {
      const want = toHex(blake3Keyed(key, data));
      for (const impl of impls) {
        assert.equal(toHex(impl.keyedHash(key, data)), want, `${impl.name}: alternating keys`);
      }
    }
  }
  for (const impl of impls) {
    assert.throws(() => impl.keyedHash(new Uint8Array(31), data), `${impl.name}: 31-byte key`);
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
