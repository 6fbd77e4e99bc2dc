// The repository the fuzzers mutate: built through the CLI on a local directory, two changesets
// of one source (small files in several packs, two loose blobs, a link, modes), and an exported
// key file; with the state of each changeset to compare restores with.

import { seededBytes, writeTree } from "../helpers/fs.ts";
import { cliOk, fingerprint } from "./common.ts";

/** A built repository and what each of its changesets holds. */
export interface FuzzRepository {
  repo: string;
  index: string;
  keyFile: string;
  src: string;
  /** Changeset ids, oldest first, and the fingerprint of the source at each. */
  changesets: { id: string; expected: Map<string, string> }[];
}

export const FUZZ_SOURCE = "fuzz";

/** Builds the repository under `dir` (repo, index.sqlite, key.json, src). */
export async function buildFuzzRepository(dir: string): Promise<FuzzRepository> {
  const repo = `${dir}/repo`;
  const index = `${dir}/index.sqlite`;
  const keyFile = `${dir}/key.json`;
  const src = `${dir}/src`;
  const args = ["--repo", repo, "--index", index];
  Deno.mkdirSync(dir, { recursive: true });
  const files: Record<string, Uint8Array | string> = {
    "large/one.bin": seededBytes(1_200_000, 7),
    "large/two.bin": seededBytes(1_300_000, 8),
    "text/zeros.txt": "0".repeat(2_000_000),
    "script.sh": "#!/bin/sh\nexit 0\n",
  };
  for (let i = 0; i < 30; i++) {
    files[`${["a", "b/c", "d"][i % 3]}/f${i}.${i % 2 ? "bin" : "txt"}`] = i % 2
      ? seededBytes(3_000 + i * 700, 100 + i)
      : `line ${i}\n`.repeat(50 + i * 20);
  }
  writeTree(src, files);
  Deno.chmodSync(`${src}/script.sh`, 0o755);
  Deno.chmodSync(`${src}/d`, 0o700);
  Deno.symlinkSync("a/f0.txt", `${src}/link`);
  await cliOk(["init", ...args, "--pack-size", "64KiB"], {});
  const push = ["push", "--scan", src, "--source", FUZZ_SOURCE, "--json", ...args];
  const changesets: FuzzRepository["changesets"] = [];
  changesets.push({ id: JSON.parse(await cliOk(push, {})).changeset, expected: fingerprint(src) });
  writeTree(src, {
    "a/f0.txt": "edited\n",
    "b/c/f1.bin": seededBytes(5_000, 999),
    "new/n.txt": "new\n".repeat(300),
  });
  Deno.removeSync(`${src}/d/f2.txt`);
  changesets.push({ id: JSON.parse(await cliOk(push, {})).changeset, expected: fingerprint(src) });
  await cliOk(["key", "export", "--output", keyFile, ...args], {});
  return { repo, index, keyFile, src, changesets };
}
