// A small LZ4 frame decoder (the format `lz4 -c` writes), for dsg's archived manifests:
// linked or independent blocks, optional block and content checksums (xxHash32), skippable
// frames and concatenated frames.

const P1 = 2654435761 | 0;
const P2 = 2246822519 | 0;
const P3 = 3266489917 | 0;
const P4 = 668265263;
const P5 = 374761393;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function u32(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

function round(acc: number, input: number): number {
  acc = (acc + Math.imul(input, P2)) | 0;
  return Math.imul(rotl(acc, 13), P1);
}

/** xxHash32 of `data` (the checksum LZ4 frames use). */
export function xxh32(data: Uint8Array, seed = 0): number {
  const len = data.length;
  let i = 0;
  let h: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    while (i <= len - 16) {
      v1 = round(v1, u32(data, i));
      v2 = round(v2, u32(data, i + 4));
      v3 = round(v3, u32(data, i + 8));
      v4 = round(v4, u32(data, i + 12));
      i += 16;
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + len) | 0;
  while (i + 4 <= len) {
    h = (h + Math.imul(u32(data, i), P3)) | 0;
    h = Math.imul(rotl(h, 17), P4);
    i += 4;
  }
  while (i < len) {
    h = (h + Math.imul(data[i], P5)) | 0;
    h = Math.imul(rotl(h, 11), P1);
    i++;
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Malformed or corrupted LZ4 data. */
export class Lz4Error extends Error {
  constructor(message: string) {
    super(`lz4: ${message}`);
    this.name = "Lz4Error";
  }
}

/** A growable output buffer; matches may reach back into earlier blocks. */
class Output {
  buf = new Uint8Array(1 << 16);
  len = 0;
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
}

function decodeBlock(src: Uint8Array, out: Output, frameStart: number): void {
  let i = 0;
  while (i < src.length) {
    const token = src[i++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (i >= src.length) throw new Error("truncated literal length");
        b = src[i++];
        lit += b;
      } while (b === 255);
    }
    if (i + lit > src.length) throw new Lz4Error("literals run past the block");
    out.ensure(lit);
    out.buf.set(src.subarray(i, i + lit), out.len);
    out.len += lit;
    i += lit;
    if (i === src.length) return; // the last sequence has literals only
    if (i + 2 > src.length) throw new Lz4Error("truncated match offset");
    const offset = src[i] | (src[i + 1] << 8);
    i += 2;
    if (offset === 0 || offset > out.len - frameStart) throw new Lz4Error("bad match offset");
    let ml = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (i >= src.length) throw new Lz4Error("truncated match length");
        b = src[i++];
        ml += b;
      } while (b === 255);
    }
    out.ensure(ml);
    const buf = out.buf;
    let from = out.len - offset;
    let to = out.len;
    if (offset >= ml) buf.copyWithin(to, from, from + ml);
    else for (let k = 0; k < ml; k++) buf[to++] = buf[from++];
    out.len += ml;
  }
}

/** Decodes one or more LZ4 frames (skippable frames are ignored) into the original bytes. */
export function decodeLz4Frames(data: Uint8Array): Uint8Array {
  const out = new Output();
  let p = 0;
  let frames = 0;
  while (p < data.length) {
    if (p + 4 > data.length) throw new Lz4Error("truncated frame magic");
    const magic = u32(data, p);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      if (p + 8 > data.length) throw new Lz4Error("truncated skippable frame");
      p += 8 + u32(data, p + 4);
      continue;
    }
    if (magic !== 0x184d2204) {
      throw new Lz4Error(frames === 0 ? "not an LZ4 frame" : "garbage after the last frame");
    }
    p += 4;
    const descStart = p;
    const flg = data[p++];
    p++; // BD: block maximum size, not needed to decode
    if (flg >>> 6 !== 1) throw new Lz4Error(`unsupported frame version ${flg >>> 6}`);
    if (flg & 1) throw new Lz4Error("frames that need a dictionary are not supported");
    const blockChecksum = (flg & 0x10) !== 0;
    const contentChecksum = (flg & 0x04) !== 0;
    let contentSize: number | undefined;
    if (flg & 0x08) {
      contentSize = u32(data, p) + u32(data, p + 4) * 2 ** 32;
      p += 8;
    }
    if (p >= data.length) throw new Lz4Error("truncated frame header");
    const hc = (xxh32(data.subarray(descStart, p)) >>> 8) & 0xff;
    if (data[p++] !== hc) throw new Lz4Error("frame header checksum mismatch");
    const frameStart = out.len;
    for (;;) {
      if (p + 4 > data.length) throw new Lz4Error("truncated block size");
      const word = u32(data, p);
      p += 4;
      if (word === 0) break;
      const size = word & 0x7fffffff;
      if (p + size > data.length) throw new Lz4Error("truncated block");
      const block = data.subarray(p, p + size);
      p += size;
      if (blockChecksum) {
        if (xxh32(block) !== u32(data, p)) throw new Lz4Error("block checksum mismatch");
        p += 4;
      }
      if (word & 0x80000000) {
        out.ensure(size);
        out.buf.set(block, out.len);
        out.len += size;
      } else {
        try {
          decodeBlock(block, out, frameStart);
        } catch (e) {
          throw e instanceof Lz4Error ? e : new Lz4Error((e as Error).message);
        }
      }
    }
    const content = out.buf.subarray(frameStart, out.len);
    if (contentChecksum) {
      if (p + 4 > data.length) throw new Lz4Error("truncated content checksum");
      if (xxh32(content) !== u32(data, p)) throw new Lz4Error("content checksum mismatch");
      p += 4;
    }
    if (contentSize !== undefined && contentSize !== content.length) {
      throw new Lz4Error(`content size ${content.length}, frame says ${contentSize}`);
    }
    frames++;
  }
  if (frames === 0) throw new Lz4Error("no frame");
  return out.buf.slice(0, out.len);
}
