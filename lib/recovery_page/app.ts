/// <reference lib="dom" />
// The recovery page's script, bundled into one offline HTML file: it opens a key file with its
// passphrase and decrypts chosen blob files and pack files in the browser, verifying each blob
// in full. A pack file is split into its entries by their frames; every entry that opens becomes
// a download, and a damaged entry (or damaged bytes between entries) is reported without hiding
// the others.

import { scryptAsync } from "@noble/hashes/scrypt.js";
import { type BlobHeader, openBlob } from "../format/blob.ts";
import { bytesEqual } from "../format/bytes.ts";
import { FORMAT_VERSION } from "../format/container.ts";
import { isHex256, type RepoKeys, repoKeys } from "../format/ids.ts";
import { parseKeyFile, unwrapMasterKey, WrongPassphraseError } from "../format/keyfile.ts";
import { ENTRY_FRAME_BYTES, findPackEntries, isPack, PACK_PREAMBLE } from "../format/pack.ts";
import { portableSuite } from "../format/suite_js.ts";
import type { Suite } from "../format/suite.ts";
import { isGlob, pathMatcher } from "../glob.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function say(text: string): void {
  $("status").textContent = text;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Reads a File as a stream of chunks (without holding it whole). */
async function* chunksOf(file: Blob): AsyncGenerator<Uint8Array> {
  const reader = file.stream().getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) return;
    yield value;
  }
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

function row(cls: string, ...children: (Node | string)[]): HTMLLIElement {
  const li = document.createElement("li");
  li.className = cls;
  li.append(...children);
  $("results").append(li);
  return li;
}

function span(cls: string, text: string): HTMLSpanElement {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

/** A problem with one input file (or one entry of a pack file). */
function problem(file: string, text: string): void {
  row("error", span("file", file), `: ${text}`);
}

/** Which paths to offer: a glob (as `n2s decrypt-blob --path`), or else a plain substring. */
function pathFilter(text: string): (path: string) => boolean {
  const t = text.trim();
  if (t === "") return () => true;
  if (isGlob(t)) return pathMatcher([t]);
  const n = t.normalize("NFC");
  return (path) => path.normalize("NFC").includes(n);
}

/** Why the page stops reading a blob early: its path is not one the user chose. */
class Filtered extends Error {}

/** One verified blob, ready to be offered. */
interface Restored {
  blobId: string;
  header: BlobHeader;
  content: File;
  from: string;
  li?: HTMLLIElement;
}

/**
 * Opens one blob container and returns its content once every check has passed (tags, content
 * hash, size, and the blob id against its path and content). Throws Filtered as soon as the
 * header names a path the filter leaves out (the rest is then not read).
 */
async function openOne(
  suite: Suite,
  keys: RepoKeys,
  blobId: string,
  source: AsyncIterable<Uint8Array>,
  wanted: (path: string) => boolean,
): Promise<{ header: BlobHeader; parts: Uint8Array[] }> {
  const parts: Uint8Array[] = [];
  let header: BlobHeader | undefined;
  for await (const part of openBlob(suite, keys, blobId, source)) {
    if ("header" in part) {
      header = part.header;
      if (!wanted(header.path)) throw new Filtered(header.path);
    } else parts.push(part.data.slice());
  }
  return { header: header!, parts };
}

/** The verified content as a download, named after the last component of its path. */
function asFile(header: BlobHeader, parts: Uint8Array[], blobId: string): File {
  const base = header.path.split("/").pop() || blobId;
  // A neutral type, so that browsers keep the name as it is (no guessed extension).
  return new File(parts as BlobPart[], base, {
    lastModified: header.mtime,
    type: "application/octet-stream",
  });
}

/** Reads the first bytes of a file. */
async function head(file: File, n: number): Promise<Uint8Array> {
  return new Uint8Array(await file.slice(0, n).arrayBuffer());
}

/**
 * Whether to read a file as a pack: it starts like one, or its name is not a blob id and pack
 * entries are found in it (a pack whose first bytes were damaged still gives its entries).
 */
async function readAsPack(file: File): Promise<boolean> {
  if (isPack(await head(file, PACK_PREAMBLE.length))) return true;
  if (isHex256(file.name.toLowerCase())) return false;
  return findPackEntries(new Uint8Array(await file.arrayBuffer())).length > 0;
}

/** What one input file gave: verified blobs, problems reported, blobs left out by the filter. */
interface FileResult {
  restored: Restored[];
  problems: number;
  filtered: number;
}

/** A loose blob file (from blobs/): its name must be its blob id. */
async function looseBlob(
  suite: Suite,
  keys: RepoKeys,
  file: File,
  wanted: (path: string) => boolean,
): Promise<FileResult> {
  const blobId = file.name.toLowerCase();
  if (!isHex256(blobId)) {
    throw new Error(
      "the file name is not a blob id (64 hex digits), and the file is not a pack. A loose " +
        "blob's id is checked with its content, so it must keep the name it had under blobs/; " +
        "rename it back (pack files, from packs/, may have any name)",
    );
  }
  try {
    const { header, parts } = await openOne(suite, keys, blobId, chunksOf(file), wanted);
    return {
      restored: [{ blobId, header, content: asFile(header, parts, blobId), from: file.name }],
      problems: 0,
      filtered: 0,
    };
  } catch (e) {
    if (e instanceof Filtered) return { restored: [], problems: 0, filtered: 1 };
    throw e;
  }
}

/**
 * A pack file (from packs/, any name): every entry found by its frame is opened on its own.
 * Entries that fail are reported with their offset; so are bytes that belong to no entry found
 * (a destroyed frame, or damage between entries), since the blob they held cannot be named.
 */
async function packFile(
  suite: Suite,
  keys: RepoKeys,
  file: File,
  wanted: (path: string) => boolean,
  progress: (text: string) => void,
): Promise<FileResult> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const out: FileResult = { restored: [], problems: 0, filtered: 0 };
  const entries = findPackEntries(bytes);
  if (!bytesEqual(bytes.subarray(0, PACK_PREAMBLE.length), PACK_PREAMBLE)) {
    if (entries.length === 0 && isPack(bytes) && bytes[4] !== FORMAT_VERSION) {
      throw new Error(
        `a pack of format version ${bytes[4]}; this page reads version ${FORMAT_VERSION}`,
      );
    }
    out.problems++;
    problem(file.name, "its first 8 bytes are not a pack's (damaged); the entries in it were read");
  }
  // Bytes accounted for: the preamble, and every entry found (frame and container).
  const covered: [number, number][] = [[0, PACK_PREAMBLE.length]];
  let shown = 0;
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k];
    if (Date.now() - shown > 100) {
      shown = Date.now();
      progress(`entry ${k + 1} of ${entries.length}`);
    }
    covered.push([e.offset - ENTRY_FRAME_BYTES, e.offset + e.length]);
    const container = bytes.subarray(e.offset, e.offset + e.length);
    try {
      const { header, parts } = await openOne(suite, keys, e.blobId, once(container), wanted);
      out.restored.push({
        blobId: e.blobId,
        header,
        content: asFile(header, parts, e.blobId),
        from: `${file.name} at offset ${e.offset}`,
      });
    } catch (err) {
      if (err instanceof Filtered) out.filtered++;
      else {
        out.problems++;
        problem(file.name, `entry at offset ${e.offset}: ${message(err)}`);
      }
    }
  }
  covered.sort((a, b) => a[0] - b[0]);
  let at = 0;
  const gap = (from: number, to: number) => {
    out.problems++;
    problem(
      file.name,
      `bytes ${from} to ${to - 1} (${to - from} bytes) hold no entry that can be found: a ` +
        `damaged entry (its frame too) or a cut-off pack; the file it held cannot be named here`,
    );
  };
  for (const [from, to] of covered) {
    if (from > at) gap(at, from);
    at = Math.max(at, to);
  }
  if (at < bytes.length) gap(at, bytes.length);
  return out;
}

async function run(): Promise<void> {
  $("results").replaceChildren();
  const keyInput = $<HTMLInputElement>("keyfile").files?.[0];
  const files = [...($<HTMLInputElement>("blobs").files ?? [])];
  const passphrase = $<HTMLInputElement>("passphrase").value;
  if (!keyInput) return say("Choose your key file first.");
  if (files.length === 0) return say("Choose one or more blob or pack files.");
  if (passphrase === "") return say("Type the passphrase of the key file.");
  const wanted = pathFilter($<HTMLInputElement>("filter")?.value ?? "");
  let master: Uint8Array;
  const base = await portableSuite();
  try {
    const key = parseKeyFile(new Uint8Array(await keyInput.arrayBuffer()), keyInput.name);
    say("Unlocking the key file (this takes a few seconds)… 0%");
    const suite: Suite = {
      ...base,
      scrypt: (pass, salt, { N, r, p, dkLen }) =>
        scryptAsync(pass, salt, {
          N,
          r,
          p,
          dkLen,
          maxmem: 2 ** 31,
          asyncTick: 50,
          onProgress: (f) =>
            say(`Unlocking the key file (this takes a few seconds)… ${Math.floor(f * 100)}%`),
        }),
    };
    master = await unwrapMasterKey(suite, key, passphrase);
  } catch (e) {
    say(
      e instanceof WrongPassphraseError
        ? "Wrong passphrase for this key file. Nothing was decrypted."
        : `Cannot use the key file: ${message(e)}`,
    );
    return;
  }
  const keys = repoKeys(base, master);
  const restored: Restored[] = [];
  const seen = new Set<string>();
  let problems = 0;
  let filtered = 0;
  for (let i = 0; i < files.length; i++) {
    const file = files[i];
    const step = `Decrypting and verifying ${i + 1} of ${files.length}: ${file.name}`;
    say(step);
    try {
      const r = await readAsPack(file)
        ? await packFile(base, keys, file, wanted, (t) => say(`${step}, ${t}`))
        : await looseBlob(base, keys, file, wanted);
      // The same blob given twice (a copy of a file, or of a pack) is offered once.
      for (const b of r.restored) {
        if (seen.has(b.blobId)) continue;
        seen.add(b.blobId);
        restored.push(b);
      }
      problems += r.problems;
      filtered += r.filtered;
    } catch (e) {
      problems++;
      problem(file.name, message(e));
    }
  }
  // Offer every verified blob, by path; of several versions of one path, the newest (by
  // modification time, then sealing time) comes first and the others are marked older.
  const order = (a: Restored, b: Restored) => {
    if (a.header.path !== b.header.path) return a.header.path < b.header.path ? -1 : 1;
    if (a.header.mtime !== b.header.mtime) return b.header.mtime - a.header.mtime;
    return a.header.created < b.header.created ? 1 : a.header.created > b.header.created ? -1 : 0;
  };
  restored.sort(order);
  let older = 0;
  for (let k = 0; k < restored.length; k++) {
    const { header, content, from } = restored[k];
    const isOlder = k > 0 && restored[k - 1].header.path === header.path;
    if (isOlder) older++;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(content);
    a.download = content.name;
    a.textContent = `Save ${content.name}`;
    a.dataset.path = header.path;
    const date = new Date(header.mtime);
    const when = Number.isNaN(date.getTime())
      ? "unknown"
      : `${date.toISOString().replace("T", " ").slice(0, 19)} UTC`;
    const li = row(
      isOlder ? "ok older" : "ok",
      span("path", header.path),
      span(
        "size",
        ` (${content.size} bytes, modified ${when}${isOlder ? ", an older version" : ""}) `,
      ),
      a,
      span("from", ` from ${from}`),
    );
    li.dataset.path = header.path;
  }
  say(
    `Done: ${restored.length} files restored and verified from ${files.length} chosen files` +
      (older ? ` (${older} of them older versions of another file)` : "") +
      (filtered ? `; ${filtered} left out by the path filter` : "") +
      (problems ? `; ${problems} problems (see below)` : "") +
      ". Save each file under its path.",
  );
  document.body.dataset.state = "done";
}

$("decrypt").addEventListener("click", () => {
  document.body.dataset.state = "busy";
  run().catch((e) => {
    say(`Unexpected error: ${message(e)}`);
    document.body.dataset.state = "done";
  });
});
document.body.dataset.state = "ready";
