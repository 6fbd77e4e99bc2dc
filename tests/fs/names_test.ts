// The surrogateescape convention of lib/format/names.ts, on all single bytes and seeded random byte
// strings: exact round trips through strings, JSON and displayPath/parseDisplayPath.

import assert from "node:assert/strict";
import {
  displayPath,
  isRawName,
  parseDisplayPath,
  pathBytes,
  pathText,
} from "../../lib/format/names.ts";

/** mulberry32: small, seeded, good enough to spread test cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const b = (...x: number[]) => Uint8Array.from(x);
const utf8 = (s: string) => new TextEncoder().encode(s);

/** Pieces that make up the random inputs: valid, invalid and borderline UTF-8. */
const PIECES: Uint8Array[] = [
  utf8("a"),
  utf8("/"),
  utf8("\\"),
  utf8("\n"),
  utf8("é"), // C3 A9
  utf8("€"), // E2 82 AC
  utf8("😀"), // F0 9F 98 80
  utf8("\u{10FFFF}"), // F4 8F BF BF, the last code point
  utf8("\uFEFF"), // a byte order mark, which must not be dropped
  utf8("\u0085"), // C1 control NEL
  b(0xed, 0xa0, 0x80), // CESU-8 / encoded high surrogate U+D800
  b(0xed, 0xb0, 0x80), // encoded low surrogate U+DC00
  b(0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80), // CESU-8 pair for U+1F600
  b(0xed, 0xb2, 0x80), // encoded U+DC80, which looks like an escape
  b(0xc0, 0x80), // overlong NUL (Java's "modified UTF-8")
  b(0xc1, 0xbf), // overlong U+007F
  b(0xe0, 0x80, 0xaf), // overlong "/"
  b(0xe0, 0x9f, 0xbf), // overlong U+07FF
  b(0xf0, 0x80, 0x80, 0xaf), // overlong "/"
  b(0xf0, 0x8f, 0xbf, 0xbf), // overlong U+FFFF
  b(0xf4, 0x90, 0x80, 0x80), // U+110000
  b(0xf5, 0x80, 0x80, 0x80), // lead byte beyond Unicode
  b(0xf8, 0x88, 0x80, 0x80, 0x80), // five-byte form
  b(0xfc, 0x84, 0x80, 0x80, 0x80, 0x80), // six-byte form
  b(0xc3), // truncated two-byte sequence
  b(0xe2, 0x82), // truncated three-byte sequence
  b(0xf0, 0x9f, 0x98), // truncated four-byte sequence
  b(0x80), // stray continuation bytes
  b(0xbf),
  b(0xfe),
  b(0xff),
];

function randomBytes(rand: () => number): Uint8Array {
  const parts: number[] = [];
  const n = 1 + Math.floor(rand() * 16);
  for (let k = 0; k < n; k++) {
    const r = rand();
    if (r < 0.5) parts.push(...PIECES[Math.floor(rand() * PIECES.length)]);
    else if (r < 0.8) parts.push(1 + Math.floor(rand() * 255)); // any byte but NUL
    else parts.push(0x80 + Math.floor(rand() * 0x80)); // a high byte
  }
  return Uint8Array.from(parts);
}

/** Every input the property tests use: all single bytes, all pieces and 50,000 random strings. */
function inputs(): Uint8Array[] {
  const out: Uint8Array[] = [new Uint8Array(0)];
  for (let c = 1; c <= 0xff; c++) out.push(b(c));
  for (let c = 0x80; c <= 0xff; c++) for (const d of [0x41, 0x80, 0xbf, 0xc0]) out.push(b(c, d));
  out.push(...PIECES);
  const rand = prng(0x5eed);
  for (let i = 0; i < 50_000; i++) out.push(randomBytes(rand));
  return out;
}

const INPUTS = inputs();

Deno.test("pathText: known answers", () => {
  assert.equal(pathText(utf8("café")), "café");
  assert.equal(pathText(b(0x63, 0x61, 0x66, 0xe9)), "caf\udce9");
  assert.equal(pathText(b(0x64, 0xff)), "d\udcff");
  assert.equal(pathText(utf8("😀")), "😀");
  assert.equal(pathText(b(0xef, 0xbb, 0xbf, 0x61)), "\ufeffa");
  assert.equal(pathText(b(0xc0, 0x80)), "\udcc0\udc80");
  assert.equal(pathText(b(0xe0, 0x80, 0xaf)), "\udce0\udc80\udcaf");
  assert.equal(pathText(b(0xed, 0xa0, 0x80)), "\udced\udca0\udc80");
  assert.equal(pathText(b(0xf4, 0x90, 0x80, 0x80)), "\udcf4\udc90\udc80\udc80");
  assert.equal(pathText(b(0xe2, 0x82)), "\udce2\udc82");
  // A truncated sequence before valid text escapes only its own bytes.
  assert.equal(pathText(b(0xe2, 0x82, 0x61, 0xc3, 0xa9)), "\udce2\udc82aé");
  assert.equal(pathText(b(0xf0, 0x9f, 0x98, 0xf0, 0x9f, 0x98, 0x80)), "\udcf0\udc9f\udc98😀");
});

Deno.test("pathText: each single byte is itself below 0x80 and U+DC00 + byte above", () => {
  for (let c = 1; c <= 0xff; c++) {
    assert.equal(pathText(b(c)), String.fromCharCode(c < 0x80 ? c : 0xdc00 + c), `byte ${c}`);
  }
});

const strict = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder("utf-8", { ignoreBOM: true });

function sameBytes(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

Deno.test("pathBytes(pathText(b)) is b, and pathText(pathBytes(s)) is s, for every input", () => {
  for (const bytes of INPUTS) {
    const s = pathText(bytes);
    if (!sameBytes(pathBytes(s), bytes)) assert.fail(`bytes ${bytes.join(",")} do not round-trip`);
    if (pathText(pathBytes(s)) !== s) assert.fail(`${JSON.stringify(s)} does not round-trip`);
    // The escapes appear exactly when the bytes are not valid UTF-8 (when the replacement
    // decoding does not give them back).
    const valid = sameBytes(utf8(lenient.decode(bytes)), bytes);
    if (isRawName(s) === valid) assert.fail(`isRawName is ${!valid} for ${bytes.join(",")}`);
  }
});

Deno.test("pathBytes: valid strings are plain UTF-8", () => {
  for (const s of ["", "a/b", "café", "😀/€", "\ufeff", "\u{10FFFF}", "a\nb"]) {
    assert.deepEqual(pathBytes(s), utf8(s));
  }
});

Deno.test("pathBytes: a lone surrogate that stands for no byte is an error", () => {
  for (const s of ["\ud800", "a\udbffb", "\udc00", "\udc7f", "x\ud83d"]) {
    assert.throws(() => pathBytes(s), /pathBytes: lone surrogate U\+D[89A-F][0-9A-F]{2} at index/);
  }
});

Deno.test("JSON keeps raw names exactly, also through UTF-8 bytes", () => {
  const names = INPUTS.map(pathText);
  const json = JSON.stringify(names);
  // Lone surrogates are written as \udcXX escapes, so the JSON text is valid Unicode.
  assert.ok(json.isWellFormed());
  const back: string[] = JSON.parse(strict.decode(utf8(json)));
  assert.equal(back.length, names.length);
  for (let i = 0; i < names.length; i++) {
    if (back[i] !== names[i]) assert.fail(`${JSON.stringify(names[i])} changed through JSON`);
    if (JSON.parse(JSON.stringify(names[i])) !== names[i]) assert.fail(JSON.stringify(names[i]));
  }
});

Deno.test("displayPath: known answers", () => {
  assert.equal(displayPath("plain/café 😀"), "plain/café 😀");
  assert.equal(displayPath("caf\udce9"), "caf\\xe9");
  assert.equal(displayPath("a\\b"), "a\\\\b");
  assert.equal(displayPath("l\nt\tr\r"), "l\\nt\\tr\\r");
  assert.equal(displayPath("\x00\x01\x1b[31m\x7f"), "\\x00\\x01\\x1b[31m\\x7f");
  assert.equal(displayPath("\u0085\u009b"), "\\u0085\\u009b");
  assert.equal(displayPath("\ud800x\udc00"), "\\ud800x\\udc00");
  // A literal "\xe9" typed as four characters is not the byte 0xE9.
  assert.equal(displayPath("caf\\xe9"), "caf\\\\xe9");
});

// deno-lint-ignore no-control-regex
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/;

Deno.test("displayPath/parseDisplayPath round-trip every input and random UTF-16", () => {
  const rand = prng(42);
  const strings = INPUTS.map(pathText);
  for (let i = 0; i < 20_000; i++) {
    const units: number[] = [];
    const n = Math.floor(rand() * 12);
    for (let k = 0; k < n; k++) {
      const r = rand();
      units.push(
        r < 0.3
          ? Math.floor(rand() * 0xa0) // ASCII, controls, C1
          : r < 0.4
          ? 0x5c // backslash
          : r < 0.6
          ? 0xd800 + Math.floor(rand() * 0x800) // any surrogate, paired or not
          : Math.floor(rand() * 0x10000),
      );
    }
    strings.push(String.fromCharCode(...units));
  }
  for (const s of strings) {
    const d = displayPath(s);
    if (parseDisplayPath(d) !== s) assert.fail(`${d} does not parse back`);
    // Nothing a terminal would act on, and nothing it would have to replace.
    if (!d.isWellFormed() || CONTROLS.test(d)) assert.fail(`${JSON.stringify(d)} is not safe`);
  }
});

Deno.test("parseDisplayPath: typed escapes", () => {
  assert.equal(parseDisplayPath("caf\\xe9"), "caf\udce9");
  assert.equal(parseDisplayPath("caf\\xE9"), "caf\udce9");
  assert.equal(parseDisplayPath("\\x41\\x7f\\x80"), "A\x7f\udc80");
  assert.equal(parseDisplayPath("a\\\\b\\n\\t\\r"), "a\\b\n\t\r");
  assert.equal(parseDisplayPath("\\u00e9\\u20ac"), "é€");
  assert.equal(parseDisplayPath("no escapes"), "no escapes");
  assert.deepEqual(pathBytes(parseDisplayPath("caf\\xe9")), b(0x63, 0x61, 0x66, 0xe9));
});

Deno.test("parseDisplayPath: a malformed escape says which and where", () => {
  assert.throws(() => parseDisplayPath("ab\\q"), {
    name: "SyntaxError",
    message: /"\\q" at offset 2 of "ab\\\\q" is not an escape/,
  });
  assert.throws(() => parseDisplayPath("ab\\"), /ends with a lone backslash/);
  assert.throws(() => parseDisplayPath("\\x4"), /"\\x" at offset 0 .* needs exactly 2 hex digits/);
  assert.throws(() => parseDisplayPath("a\\xzz"), /"\\x" at offset 1 .* needs exactly 2 hex/);
  assert.throws(() => parseDisplayPath("\\u12"), /"\\u" at offset 0 .* needs exactly 4 hex/);
  assert.throws(() => parseDisplayPath("\\u12g4"), /needs exactly 4 hex digits/);
});
