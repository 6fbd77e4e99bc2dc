/// <reference lib="dom" />
// The recovery page's script, bundled into one offline HTML file: it opens a key file with its
// passphrase and decrypts chosen blob files in the browser, verifying each one in full.

import { scryptAsync } from "@noble/hashes/scrypt.js";
import { openBlob } from "../format/blob.ts";
import { isHex256 } from "../format/ids.ts";
import { parseKeyFile, unwrapMasterKey, WrongPassphraseError } from "../format/keyfile.ts";
import { portableSuite } from "../format/suite_js.ts";
import type { Suite } from "../format/suite.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function say(text: string): void {
  $("status").textContent = text;
}

/** Reads a File as a stream of chunks (without holding it whole). */
async function* chunksOf(file: File): AsyncGenerator<Uint8Array> {
  const reader = file.stream().getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) return;
    yield value;
  }
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

async function decryptOne(suite: Suite, master: Uint8Array, file: File): Promise<void> {
  const blobId = file.name.toLowerCase();
  if (!isHex256(blobId)) {
    throw new Error(
      "the file name is not a blob id (64 hex digits); a blob's id is checked with its content, " +
        "so it must keep the name it had under blobs/",
    );
  }
  const parts: Uint8Array[] = [];
  let path = "";
  let mtime = Date.now();
  for await (const part of openBlob(suite, master, blobId, chunksOf(file))) {
    if ("header" in part) {
      path = part.header.path;
      mtime = part.header.mtime;
    } else parts.push(part.data.slice());
  }
  // Only now, with every check passed, does the content become a download.
  const base = path.split("/").pop() || blobId;
  // A neutral type, so that browsers keep the name as it is (no guessed extension).
  const content = new File(parts as BlobPart[], base, {
    lastModified: mtime,
    type: "application/octet-stream",
  });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(content);
  a.download = base;
  a.textContent = `Save ${base}`;
  a.dataset.path = path;
  const li = row("ok", span("path", path), span("size", ` (${content.size} bytes) `), a);
  li.dataset.path = path;
}

async function run(): Promise<void> {
  $("results").replaceChildren();
  const keyInput = $<HTMLInputElement>("keyfile").files?.[0];
  const blobs = [...($<HTMLInputElement>("blobs").files ?? [])];
  const passphrase = $<HTMLInputElement>("passphrase").value;
  if (!keyInput) return say("Choose your key file first.");
  if (blobs.length === 0) return say("Choose one or more blob files.");
  if (passphrase === "") return say("Type the passphrase of the key file.");
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
        : `Cannot use the key file: ${e instanceof Error ? e.message : e}`,
    );
    return;
  }
  let ok = 0;
  for (let i = 0; i < blobs.length; i++) {
    say(`Decrypting and verifying ${i + 1} of ${blobs.length}: ${blobs[i].name}`);
    try {
      await decryptOne(base, master, blobs[i]);
      ok++;
    } catch (e) {
      row("error", span("file", blobs[i].name), `: ${e instanceof Error ? e.message : e}`);
    }
  }
  const failed = blobs.length - ok;
  say(
    `Done: ${ok} of ${blobs.length} files restored and verified` +
      (failed ? `; ${failed} failed (see below)` : "") + ". Save each file under its path.",
  );
  document.body.dataset.state = "done";
}

$("decrypt").addEventListener("click", () => {
  document.body.dataset.state = "busy";
  run().catch((e) => {
    say(`Unexpected error: ${e instanceof Error ? e.message : e}`);
    document.body.dataset.state = "done";
  });
});
document.body.dataset.state = "ready";
