// Shared by the client tests: a store in a temporary directory, byte-for-byte tree comparison,
// an interrupting backend, and a check that the tools a test needs are installed.

import { interceptPuts } from "../helpers/backends.ts";
import assert from "node:assert/strict";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import type { Backend } from "../../lib/backends/backend.ts";
import { N2S } from "../../lib/n2s.ts";
import {
  closeFd,
  lstatRaw,
  openRaw,
  readDirRaw,
  readFd,
  readlinkRaw,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from "../../lib/fs/posix.ts";

/** Fails (never skips) when a command is missing, saying what to install. */
export async function requireTool(cmd: string, pkg: string): Promise<void> {
  try {
    await new Deno.Command(cmd, { args: ["--help"], stdout: "null", stderr: "null" }).output();
  } catch {
    throw new Error(
      `${cmd} is not installed: apt-get install ${pkg} (or run scripts/setup/clients.sh)`,
    );
  }
}

/** Runs a command and returns stdout; throws with stderr on failure. */
export async function sh(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

/**
 * A backend that counts the puts of objects holding blobs (packs and loose blobs; makeStore's
 * repositories have one blob per pack) and can fail every such put after `failAfter`.
 */
export function testBackend(dir: string, failAfter = Infinity): Backend & { blobPuts: string[] } {
  const blobPuts: string[] = [];
  const backend = interceptPuts(new LocalBackend(dir), (key) => {
    if (!key.startsWith("blobs/") && !key.startsWith("packs/")) return;
    if (blobPuts.length >= failAfter) throw new Error("injected failure");
    blobPuts.push(key);
  });
  return Object.assign(backend, { blobPuts });
}

/** A fresh repository and index in `dir`; `open` reopens it with another backend. */
export async function makeStore(dir: string): Promise<{
  repo: string;
  index: string;
  open(backend?: Backend): Promise<N2S>;
}> {
  const repo = `${dir}/repo`;
  const index = `${dir}/index.db`;
  // Packs of one blob each: the tests count and interrupt uploads blob by blob.
  const s = await N2S.init({ repository: repo, index, passphrase: "pw", logN: 10, packSize: 1 });
  await s.close();
  return {
    repo,
    index,
    open: (backend) => N2S.open({ repository: repo, index, passphrase: "pw", backend }),
  };
}

/**
 * Every directory, file and symlink under root, read through the libc layer so that names that
 * are not UTF-8 are compared too: path → "dir <mode>", "file <mode> <hex bytes>" or
 * "link <target>".
 */
export function snapshotTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of readDirRaw(rel === "" ? root : `${root}/${rel}`)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const full = `${root}/${r}`;
      const st = lstatRaw(full);
      const type = st.mode & S_IFMT;
      const mode = (st.mode & 0o7777).toString(8);
      if (type === S_IFLNK) out.set(r, `link ${readlinkRaw(full)}`);
      else if (type === S_IFDIR) {
        out.set(r, `dir ${mode}`);
        walk(r);
      } else if (type === S_IFREG) {
        const bytes = new Uint8Array(st.size);
        const fd = openRaw(full, "read");
        try {
          let at = 0;
          while (at < bytes.length) {
            const n = readFd(fd, bytes.subarray(at));
            if (n === 0) break;
            at += n;
          }
        } finally {
          closeFd(fd);
        }
        const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
        out.set(r, `file ${mode} ${hex}`);
      }
    }
  };
  walk("");
  return Promise.resolve(out);
}

/** Asserts that two trees hold the same files, links, modes and bytes. */
export async function assertSameTree(actual: string, expected: string, what = ""): Promise<void> {
  const a = await snapshotTree(actual);
  const e = await snapshotTree(expected);
  assert.deepEqual(
    [...a.keys()].sort(),
    [...e.keys()].sort(),
    `${what}: paths differ between ${actual} and ${expected}`,
  );
  for (const [k, v] of e) assert.equal(a.get(k), v, `${what}: ${JSON.stringify(k)} differs`);
}

/** Collects a client's entries against an empty previous state. */
export function emptyPrevious() {
  return { get: () => undefined, paths: () => [] as string[] };
}
