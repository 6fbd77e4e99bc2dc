// File names as JS strings without loss: bytes that are not valid UTF-8 travel as lone surrogates
// U+DC80..U+DCFF (byte b ↦ U+DC00 + b), Python's "surrogateescape" (PEP 383).

const encoder = new TextEncoder();
const lossyDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The bytes a path string stands for: UTF-8, with each lone surrogate U+DC80..U+DCFF turned back
 * into its byte. Any other lone surrogate cannot come from bytes and is an error.
 *
 * Strings made by pathText round-trip exactly. A hand-made string whose escapes spell valid UTF-8
 * (such as "\uDCC3\uDCA9") encodes to bytes that pathText decodes to the plain character instead.
 */
export function pathBytes(s: string): Uint8Array {
  if (s.isWellFormed()) return encoder.encode(s);
  const out = new Uint8Array(s.length * 3);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[o++] = c;
    } else if (c < 0x800) {
      out[o++] = 0xc0 | (c >> 6);
      out[o++] = 0x80 | (c & 0x3f);
    } else if (c < 0xd800 || c > 0xdfff) {
      out[o++] = 0xe0 | (c >> 12);
      out[o++] = 0x80 | ((c >> 6) & 0x3f);
      out[o++] = 0x80 | (c & 0x3f);
    } else {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        out[o++] = 0xf0 | (c >> 18);
        out[o++] = 0x80 | ((c >> 12) & 0x3f);
        out[o++] = 0x80 | ((c >> 6) & 0x3f);
        out[o++] = 0x80 | (c & 0x3f);
      } else if (c >= 0xdc80 && c <= 0xdcff) {
        out[o++] = c - 0xdc00;
      } else {
        throw new RangeError(
          `pathBytes: lone surrogate U+${
            c.toString(16).toUpperCase()
          } at index ${i} stands for no byte (only U+DC80..U+DCFF do)`,
        );
      }
    }
  }
  return out.slice(0, o);
}

/**
 * The string for a path's bytes: UTF-8 where the bytes are valid UTF-8, and U+DC00 + b for every
 * byte b that is not part of a valid sequence (overlong forms, encoded surrogates, code points
 * above U+10FFFF, stray continuation bytes, truncated sequences).
 */
export function pathText(b: Uint8Array): string {
  // Without U+FFFD in the lenient result the bytes were valid UTF-8. This beats a fatal decoder
  // in try/catch: its exception costs about 25 µs, for every raw name in a tree.
  const s = lossyDecoder.decode(b);
  return s.includes("\ufffd") ? decodeEscaping(b) : s;
}

/** The slow path of pathText: a strict UTF-8 decoder that escapes instead of failing. */
let scratch = new Uint16Array(1024);

function decodeEscaping(b: Uint8Array): string {
  if (scratch.length < b.length) scratch = new Uint16Array(b.length * 2);
  const units = scratch;
  let u = 0;
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) {
      units[u++] = c;
      i++;
      continue;
    }
    let need = 0;
    let lo = 0x80;
    let hi = 0xbf;
    let cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      cp = c & 0x0f;
      if (c === 0xe0) lo = 0xa0; // overlong below U+0800
      else if (c === 0xed) hi = 0x9f; // U+D800..U+DFFF
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      cp = c & 0x07;
      if (c === 0xf0) lo = 0x90; // overlong below U+10000
      else if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    }
    let ok = need > 0;
    if (ok) {
      for (let k = 1; k <= need; k++) {
        const d = b[i + k];
        // Only the first continuation byte has the narrowed range.
        if (i + k >= n || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) {
          ok = false;
          break;
        }
        cp = (cp << 6) | (d & 0x3f);
      }
    }
    if (!ok) {
      // Escape this byte only: whatever follows is decoded afresh. Continuation bytes are never
      // valid lead bytes, so this escapes the same bytes as Python's surrogateescape.
      units[u++] = 0xdc00 + c;
      i++;
      continue;
    }
    if (cp >= 0x10000) {
      units[u++] = 0xd800 + ((cp - 0x10000) >> 10);
      units[u++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
    } else {
      units[u++] = cp;
    }
    i += need + 1;
  }
  let s = "";
  if (u <= 64) {
    for (let k = 0; k < u; k++) s += String.fromCharCode(units[k]);
    return s;
  }
  for (let k = 0; k < u; k += 8192) {
    s += String.fromCharCode.apply(null, units.subarray(k, Math.min(u, k + 8192)) as never);
  }
  return s;
}

/** True when the string holds a lone surrogate, that is, its path bytes are not valid UTF-8. */
export function isRawName(s: string): boolean {
  return !s.isWellFormed();
}

function hex2(c: number): string {
  return (c < 16 ? "0" : "") + c.toString(16);
}

/**
 * A path for a terminal or a log: an escaped byte shows as `\xHH`, a backslash as `\\`, control
 * characters (U+0000..U+001F, U+007F) as `\n`, `\t`, `\r` or `\xHH`, and C1 controls
 * (U+0080..U+009F, which some terminals obey) and lone surrogates that stand for no byte as
 * `\uHHHH`. Everything else is shown as is. Because every backslash in the output starts an
 * escape, the output is unambiguous: parseDisplayPath gives back exactly the original string.
 */
export function displayPath(s: string): string {
  // Nothing to escape: the common case costs one regular expression test.
  if (!NEEDS_ESCAPE.test(s)) return s;
  let out = "";
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string;
    if (c >= 0x20 && c < 0x7f) {
      if (c !== 0x5c) continue;
      esc = "\\\\";
    } else if (c < 0x20 || c === 0x7f) {
      esc = c === 0x0a ? "\\n" : c === 0x09 ? "\\t" : c === 0x0d ? "\\r" : "\\x" + hex2(c);
    } else if (c <= 0x9f) {
      esc = "\\u00" + hex2(c);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        i++; // a valid pair
        continue;
      }
      esc = c >= 0xdc80 && c <= 0xdcff ? "\\x" + hex2(c - 0xdc00) : "\\u" + c.toString(16);
    } else {
      continue;
    }
    out += s.slice(start, i) + esc;
    start = i + 1;
  }
  return out + s.slice(start);
}

// Backslash, C0 and C1 controls, DEL, any surrogate (pairs are let through in the loop).
// deno-lint-ignore no-control-regex
const NEEDS_ESCAPE = /[\\\x00-\x1f\x7f-\x9f\ud800-\udfff]/;

const HEX = /^[0-9a-fA-F]+$/;

/**
 * The inverse of displayPath, for paths typed by a user: `\xHH` is the byte HH (a lone surrogate
 * for HH ≥ 80, the ASCII character below), `\uHHHH` the UTF-16 code unit HHHH, `\\` a backslash,
 * and `\n`, `\t`, `\r` those controls. Any other backslash is an error that says where it is.
 */
export function parseDisplayPath(s: string): string {
  let i = s.indexOf("\\");
  if (i < 0) return s;
  let out = "";
  let start = 0;
  while (i >= 0) {
    out += s.slice(start, i);
    const e = s[i + 1];
    let len = 2;
    if (e === "\\") out += "\\";
    else if (e === "n") out += "\n";
    else if (e === "t") out += "\t";
    else if (e === "r") out += "\r";
    else if (e === "x" || e === "u") {
      const digits = e === "x" ? 2 : 4;
      const h = s.slice(i + 2, i + 2 + digits);
      if (h.length !== digits || !HEX.test(h)) {
        throw new SyntaxError(
          `parseDisplayPath: "\\${e}" at offset ${i} of ${
            JSON.stringify(s)
          } needs exactly ${digits} hex digits`,
        );
      }
      const v = parseInt(h, 16);
      out += String.fromCharCode(e === "x" && v >= 0x80 ? 0xdc00 + v : v);
      len = 2 + digits;
    } else {
      throw new SyntaxError(
        e === undefined
          ? `parseDisplayPath: ${JSON.stringify(s)} ends with a lone backslash (write \\\\)`
          : `parseDisplayPath: "\\${e}" at offset ${i} of ${
            JSON.stringify(s)
          } is not an escape (known: \\\\ \\n \\t \\r \\xHH \\uHHHH)`,
      );
    }
    start = i + len;
    i = s.indexOf("\\", start);
  }
  return out + s.slice(start);
}
