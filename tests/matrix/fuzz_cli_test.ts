// CLI-level fuzzing: a real repository with one object replaced by a seeded mutant (a blob, a
// pack, a manifest, a key file or the config), then every command that reads it, each in its own
// process: the pull of the changeset it affects, `check --read-data`, `recover index` into a
// fresh index, and `decrypt-blob` of the file with the key file. Each exits 0 with exactly the
// right result, or 1 with one-line messages that name the object; never a stack trace, another
// exit code, a run of more than a minute (a hang), more than 300 MiB of memory, a file written
// outside the target, or a restored file whose bytes differ from the source. A failing case keeps
// its directory and prints its seed and mutation. CI runs a few dozen cases, scripts/matrix.ts a
// few hundred.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { tempDir } from "../helpers/fs.ts";
import { blobKey, packKey } from "../../lib/repository/layout.ts";
import { FULL, matrixSeed, type Run, runDeno, seeded, WATCHDOG_S } from "./common.ts";
import {
  applyMutation,
  describeMutation,
  drawMutation,
  drawObject,
  readObjects,
  type StoredObject,
} from "./fuzz.ts";
import { buildFuzzRepository, type FuzzRepository } from "./fuzz_repo.ts";

const CASES = FULL ? 300 : 20;
const RSS_LIMIT_KIB = 300 * 1024;

/** Who uses each stored object: the changesets whose state needs it, and the paths it holds. */
function objectUsers(
  built: FuzzRepository,
): Map<string, { changesets: string[]; paths: Set<string> }> {
  const db = new DatabaseSync(built.index, { readOnly: true });
  const users = new Map<string, { changesets: string[]; paths: Set<string> }>();
  try {
    const state = new Map<string, string | null>();
    for (const { id } of built.changesets) {
      const rows = db.prepare(
        "SELECT path, action, blob_id, pack FROM files WHERE changeset = ?",
      ).all(id) as { path: string; action: string; blob_id: string | null; pack: string | null }[];
      for (const r of rows) {
        if (r.action === "delete") state.delete(r.path);
        else if (r.blob_id === null) state.set(r.path, null);
        else state.set(r.path, r.pack === null ? blobKey(r.blob_id) : packKey(r.pack));
      }
      for (const [path, key] of state) {
        if (key === null) continue;
        const u = users.get(key) ?? { changesets: [], paths: new Set<string>() };
        if (!u.changesets.includes(id)) u.changesets.push(id);
        u.paths.add(path);
        users.set(key, u);
      }
    }
  } finally {
    db.close();
  }
  return users;
}

/** Every file under `root` with the fingerprint of its content (size and SHA-256). */
function restoredFiles(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(rel === "" ? root : `${root}/${rel}`)];
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const e of entries) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) walk(r);
      else if (e.isSymlink) out.set(r, `link -> ${Deno.readLinkSync(`${root}/${r}`)}`);
      else out.set(r, contentOf(`${root}/${r}`));
    }
  };
  walk("");
  return out;
}

function contentOf(file: string): string {
  const data = Deno.readFileSync(file);
  return `${data.length} ${createHash("sha256").update(data).digest("hex")}`;
}

/** The size and hash part of a fingerprint line ("file 644 SIZE SHA" → "SIZE SHA"). */
function contentPart(line: string): string {
  return line.startsWith("file ") ? line.split(" ").slice(2).join(" ") : line;
}

/** The problems of one run: its exit, its messages, its memory. */
function runProblems(what: string, r: Run, names: string[], alsoStdout = false): string[] {
  const problems: string[] = [];
  if (r.hung) return [`${what}: ran for more than ${WATCHDOG_S} s`];
  if (r.code !== 0 && r.code !== 1) problems.push(`${what}: exit code ${r.code}`);
  if (/^\s+at |Uncaught|panicked|RUST_BACKTRACE/m.test(r.stderr)) {
    problems.push(`${what}: a stack trace or crash on stderr`);
  }
  if (r.rssKiB !== null && r.rssKiB > RSS_LIMIT_KIB) {
    problems.push(`${what}: peak memory ${Math.round(r.rssKiB / 1024)} MiB`);
  }
  if (r.code === 1) {
    const text = r.stderr + (alsoStdout ? r.stdout : "");
    if (!names.some((n) => text.includes(n))) {
      problems.push(`${what}: exit 1 without naming the object (${names.slice(0, 3).join(", ")})`);
    }
  }
  return problems;
}

/** Entries of a directory other than `allowed`. */
function strangers(dir: string, allowed: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== allowed);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

async function fuzzCase(
  built: FuzzRepository,
  dir: string,
  o: StoredObject,
  mutant: Uint8Array,
  users: ReturnType<typeof objectUsers>,
): Promise<string[]> {
  const repo = `${dir}/repo`;
  await new Deno.Command("cp", { args: ["-a", built.repo, repo] }).output();
  for (const f of Deno.readDirSync(dirname(built.index))) {
    if (f.name.startsWith("index.sqlite")) {
      Deno.copyFileSync(`${dirname(built.index)}/${f.name}`, `${dir}/${f.name}`);
    }
  }
  const index = `${dir}/index.sqlite`;
  Deno.writeFileSync(`${repo}/${o.key}`, mutant);
  const keyFile = `${dir}/key.json`;
  Deno.writeFileSync(keyFile, o.kind === "key" ? mutant : Deno.readFileSync(built.keyFile));
  const id = o.key.slice(o.key.lastIndexOf("/") + 1);
  const used = users.get(o.key);
  const last = built.changesets[built.changesets.length - 1].id;
  const changeset = o.kind === "manifest" ? id : used?.changesets.at(-1) ?? last;
  const names = [id, ...(used?.paths ?? [])];
  if (o.kind === "key") names.push(keyFile, "passphrase");
  if (o.kind === "config") names.push("config", repo);
  if (o.kind === "manifest") names.push(`changesets/${id}`);
  const problems: string[] = [];
  const run = async (what: string, args: string[], alsoStdout = false) => {
    const r = await runDeno(args, {}, { measure: true });
    problems.push(...runProblems(what, r, names, alsoStdout));
    return r;
  };

  // The commands run side by side, each on what it alone writes: the pull of the changeset the
  // object affects (a manifest through a fresh index, which reads it), check, recover index,
  // and decrypt-blob of the file (of a pack, with a mutated key file).
  const out = `${dir}/out`;
  const dec = `${dir}/dec`;
  Deno.mkdirSync(out);
  Deno.mkdirSync(dec);
  const pullIndex = o.kind === "manifest" ? `${dir}/fresh.sqlite` : index;
  const decrypted = o.kind === "blob" || o.kind === "pack" || o.kind === "key";
  const file = o.kind === "key"
    ? readObjects(built.repo).find((x) => x.kind === "pack")!.key
    : o.key;
  const repoArgs = ["--repo", repo, "--index"];
  const [pull, check] = await Promise.all([
    run("pull", [
      "pull",
      "--changeset-id",
      changeset,
      "--target-path",
      `${out}/target`,
      ...repoArgs,
      pullIndex,
    ]),
    run("check", ["check", "--read-data", "--json", ...repoArgs, index], true),
    run("recover index", ["recover", "index", ...repoArgs, `${dir}/recovered.sqlite`]),
    decrypted
      ? run("decrypt-blob", [
        "decrypt-blob",
        `${repo}/${file}`,
        "--key-file",
        keyFile,
        "--target-path",
        `${dec}/target`,
      ])
      : null,
  ]);

  // A restore writes only into its target, and each file it leaves is the source's.
  const expected = built.changesets.find((c) => c.id === changeset)!.expected;
  const extra = strangers(out, "target");
  if (extra.length) problems.push(`pull: wrote outside its target: ${extra.join(", ")}`);
  const got = restoredFiles(`${out}/target`);
  for (const [p, v] of got) {
    const want = expected.get(p);
    if (want === undefined) problems.push(`pull: restored ${p}, which the changeset does not hold`);
    else if (contentPart(want) !== v) problems.push(`pull: restored ${p} with other bytes`);
  }
  if (pull.code === 0) {
    const missing = [...expected].filter(([p, v]) => !v.startsWith("dir") && !got.has(p));
    if (missing.length) problems.push(`pull: exit 0 without ${missing.map(([p]) => p).join(", ")}`);
  }
  if (check.code === 0 && pull.code !== 0) problems.push("check found nothing, the pull failed");
  if (decrypted) {
    const extraDec = strangers(dec, "target");
    if (extraDec.length) problems.push(`decrypt-blob: wrote outside its target: ${extraDec}`);
    const versions = new Set(
      built.changesets.flatMap((c) => [...c.expected.values()].map(contentPart)),
    );
    for (const [p, v] of restoredFiles(`${dec}/target`)) {
      if (!versions.has(v)) problems.push(`decrypt-blob: restored ${p} with bytes never stored`);
    }
  }
  return problems;
}

Deno.test("commands reading a mutated object exit 0 with the right result or 1 naming it, within a minute and 300 MiB, writing only into their target", async () => {
  using tmp = tempDir("n2s-fuzz-cli-");
  const built = await buildFuzzRepository(`${tmp.path}/base`);
  const objects = readObjects(built.repo);
  const byKey = new Map(objects.map((o) => [o.key, o]));
  const users = objectUsers(built);
  const seed = matrixSeed(1);
  const only = Deno.env.get("N2S_FUZZ_CASE");
  const failures: string[] = [];
  const kinds: Record<string, number> = {};
  for (let i = 0; i < CASES; i++) {
    if (only !== undefined && i !== Number(only)) continue;
    const random = seeded(seed * 1_000_003 + i);
    const o = drawObject(objects, random);
    const m = drawMutation(o, objects.filter((x) => x !== o), random);
    const desc = `seed ${seed} case ${i}: ${describeMutation(o, m)}`;
    kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
    const dir = `${tmp.path}/case-${i}`;
    Deno.mkdirSync(dir);
    const problems = await fuzzCase(built, dir, o, applyMutation(o, m, byKey), users);
    if (problems.length) {
      // Kept for a replay: the repository with its mutant, and what each command left.
      const kept = Deno.makeTempDirSync({ prefix: `n2s-fuzz-failure-${seed}-${i}-` });
      await new Deno.Command("cp", { args: ["-a", `${dir}/.`, kept] }).output();
      failures.push(`${desc}\n    kept in ${kept}\n    ${problems.join("\n    ")}`);
    }
    Deno.removeSync(dir, { recursive: true });
  }
  console.log(`CLI fuzz: seed ${seed} (N2S_MATRIX_SEED), ${JSON.stringify(kinds)}`);
  assert.deepEqual(failures, [], `${failures.length} cases failed:\n${failures.join("\n")}`);
});
