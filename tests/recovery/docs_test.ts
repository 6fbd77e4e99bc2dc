// Every command block of docs/RECOVERY.md runs here, exactly as written, with bash, against a
// situation made for its case; the test then checks that the case was recovered.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CLI_PATH, n2sOk } from "../helpers/cli.ts";
import { assertSameTree, readTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOC = Deno.readTextFileSync(`${ROOT}docs/RECOVERY.md`);

/** The sh block after `<!-- test: NAME -->`. */
function block(name: string): string {
  const m = DOC.match(new RegExp(`<!-- test: ${name} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\``));
  assert.ok(m, `docs/RECOVERY.md has no block "${name}"`);
  return m[1];
}

/** Writes an `n2s` command into `bin` that runs the CLI (or a bundled n2s.js). */
function n2sCommand(bin: string, target = CLI_PATH, extra = ""): void {
  Deno.mkdirSync(bin, { recursive: true });
  Deno.writeTextFileSync(
    `${bin}/n2s`,
    `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet ${extra} "${target}" "$@"\n`,
    { mode: 0o755 },
  );
}

/** Runs a doc block with bash -eu; throws with its output unless it succeeds. */
async function runBlock(
  name: string,
  env: Record<string, string>,
): Promise<{ stdout: string; stderr: string }> {
  const out = await new Deno.Command("bash", {
    args: ["-euo", "pipefail", "-c", block(name)],
    env: { N2S_KDF_LOG_N: "10", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const r = { stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  assert.equal(out.code, 0, `block ${name} failed:\n${r.stderr}${r.stdout}`);
  return r;
}

/** A repository at `root/repo` with the default index under `root/home`, and one push. */
async function setUp(root: string, pass = "doc passphrase") {
  const home = `${root}/home`;
  const bin = `${root}/bin`;
  Deno.mkdirSync(home, { recursive: true });
  n2sCommand(bin);
  const env = {
    HOME: home,
    PATH: `${bin}:${Deno.env.get("PATH")}`,
    N2S_PASSPHRASE: pass,
    REPO: `${root}/repo`,
    TARGET: `${root}/restored`,
  };
  await n2sOk(["init", "--repo", env.REPO], env);
  writeTree(`${root}/src`, {
    "report.txt": "version one\n",
    "data/big.bin": seededBytes(1_200_000, 21),
    "notes/todo.md": "- restore\n",
  });
  const first = JSON.parse(
    await n2sOk(["push", `${root}/src`, "--source", "s", "--json", "--repo", env.REPO], env),
  ).changeset as string;
  // The pack and loose blob files the first push stored.
  const firstFiles = objectFiles(env.REPO);
  writeTree(`${root}/src`, { "report.txt": "version two\n", "new.txt": "new\n" });
  const second = JSON.parse(
    await n2sOk(["push", `${root}/src`, "--source", "s", "--json", "--repo", env.REPO], env),
  ).changeset as string;
  return { env, first, second, firstFiles };
}

/** Every pack file and loose blob file of a local repository. */
function objectFiles(repo: string): string[] {
  const out: string[] = [];
  for (const kind of ["packs", "blobs"]) {
    try {
      for (const d of Deno.readDirSync(`${repo}/${kind}`)) {
        for (const f of Deno.readDirSync(`${repo}/${kind}/${d.name}`)) {
          out.push(`${repo}/${kind}/${d.name}/${f.name}`);
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return out.sort();
}

/** Where each file of the repository's packs lies: pack file, offset, length, blob id. */
async function packEntries(env: Record<string, string>, key: string) {
  const packs = objectFiles(env.REPO).filter((f) => f.startsWith(`${env.REPO}/packs/`));
  return JSON.parse(
    await n2sOk(["decrypt-blob", "--list", "--json", ...packs, "--key-file", key], env),
  ) as { file: string; blobId: string; header: { path: string }; offset: number; length: number }[];
}

Deno.test("RECOVERY.md case 1: a lost index is rebuilt and answers as before", async () => {
  using t = tempDir();
  const { env } = await setUp(t.path);
  const before = await n2sOk(["status", "--json", "--repo", env.REPO], env);
  Deno.removeSync(`${env.HOME}/.local/share/n2s/index`, { recursive: true });
  const r = await runBlock("lost-index", env);
  assert.match(r.stdout, /rebuilt .*: 2 changesets/);
  assert.equal(await n2sOk(["status", "--json", "--repo", env.REPO], env), before);
});

Deno.test("RECOVERY.md case 2: a new machine restores with the one-file n2s.js alone", async () => {
  using t = tempDir();
  const { env, second } = await setUp(t.path);
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "-o", `${t.path}/dist/n2s.js`, "cli.ts"],
    cwd: ROOT,
  }).output();
  assert.ok(built.success);
  const newBin = `${t.path}/new-machine/bin`;
  n2sCommand(newBin, `${t.path}/dist/n2s.js`, "--no-config --no-lock --cached-only");
  const home = `${t.path}/new-machine/home`;
  const denoDir = `${t.path}/new-machine/deno`;
  Deno.mkdirSync(home);
  Deno.mkdirSync(denoDir);
  await runBlock("lost-machine", {
    ...env,
    HOME: home,
    DENO_DIR: denoDir,
    DENO_NO_PACKAGE_JSON: "1",
    PATH: `${newBin}:/usr/bin:/bin`,
    CHANGESET: second.slice(0, 12),
  });
  assertSameTree(env.TARGET, `${t.path}/src`);
});

Deno.test("RECOVERY.md case 3: pack and blob files and a key file alone give the files back", async () => {
  using t = tempDir();
  const { env, firstFiles } = await setUp(t.path);
  // Only the packs and loose blobs of the first push, copied off the storage into one folder.
  assert.ok(firstFiles.some((f) => f.includes("/packs/")), "the first push stored a pack");
  assert.ok(firstFiles.some((f) => f.includes("/blobs/")), "the first push stored a loose blob");
  const files = `${t.path}/copied`;
  Deno.mkdirSync(files);
  for (const f of firstFiles) Deno.copyFileSync(f, `${files}/${f.slice(f.lastIndexOf("/") + 1)}`);
  await n2sOk(["key", "export", "--output", `${t.path}/key.json`, "--repo", env.REPO], env);
  Deno.removeSync(env.REPO, { recursive: true });
  const caseEnv = { ...env, FILES: files, KEY_FILE: `${t.path}/key.json` };
  const r = await runBlock("blob-files", caseEnv);
  assert.match(r.stdout, /report\.txt/);
  assert.match(r.stdout, /notes\/todo\.md/);
  const tree = readTree(env.TARGET);
  assert.deepEqual(Object.keys(tree).sort(), ["data/big.bin", "notes/todo.md", "report.txt"]);
  assert.equal(Deno.readTextFileSync(`${env.TARGET}/report.txt`), "version one\n");
  assert.equal(tree["data/big.bin"], readTree(`${t.path}/src`)["data/big.bin"]);

  await runBlock("blob-files-path", caseEnv);
  assert.deepEqual(Object.keys(readTree(`${env.TARGET}/some`)).sort(), [
    "notes/todo.md",
    "report.txt",
  ]);
});

Deno.test("RECOVERY.md case 3: with every manifest lost, the repository's packs and blobs give the newest version of each path", async () => {
  using t = tempDir();
  const { env } = await setUp(t.path);
  Deno.removeSync(`${env.REPO}/changesets`, { recursive: true });
  const key = `${env.REPO}/keys/${[...Deno.readDirSync(`${env.REPO}/keys`)][0].name}`;
  const r = await runBlock("repository-files", { ...env, KEY_FILE: key });
  assert.match(r.stderr, /an older version of report\.txt/);
  assertSameTree(env.TARGET, `${t.path}/src`);
});

Deno.test("RECOVERY.md case 4: a damaged pack entry; the rest is restored, then the file from a mirror or an older version", async () => {
  using t = tempDir();
  const { env, first, second } = await setUp(t.path);
  const mirror = `${t.path}/mirror`;
  await new Deno.Command("cp", { args: ["-a", env.REPO, mirror] }).output();
  const key = `${env.REPO}/keys/${[...Deno.readDirSync(`${env.REPO}/keys`)][0].name}`;
  const hit = (JSON.parse(await n2sOk(["ls", second, "--json", "--repo", env.REPO], env)) as {
    path: string;
    blobId: string;
  }[]).find((f) => f.path === "report.txt")!;
  // report.txt is small: its blob is an entry of a pack. Zeros over the middle of it.
  const entry = (await packEntries(env, key)).find((e) => e.blobId === hit.blobId)!;
  assert.ok(entry, "report.txt's blob is in a pack");
  const pack = entry.file;
  const damagedFile = pack.slice(env.REPO.length + 1);
  const mode = Deno.statSync(pack).mode! & 0o777;
  const bytes = Deno.readFileSync(pack);
  const mid = entry.offset + (entry.length >> 1);
  bytes.fill(0, mid - 16, mid + 16);
  Deno.chmodSync(pack, 0o644);
  Deno.writeFileSync(pack, bytes);
  Deno.chmodSync(pack, mode);
  const caseEnv = {
    ...env,
    CHANGESET: second,
    MIRROR: mirror,
    KEY_FILE: key,
    DAMAGED_FILE: damagedFile,
    DAMAGED_PATH: "report.txt",
    OLDER_CHANGESET: first,
  };
  const r = await runBlock("damaged-blob", caseEnv);
  assert.match(r.stderr, new RegExp(`report\\.txt: blob ${hit.blobId}`));
  assert.match(r.stdout, /some files were not restored/);
  assert.throws(() => Deno.statSync(`${env.TARGET}/report.txt`));
  // The other file of that pack, and every other file, were restored.
  assert.equal(Deno.readTextFileSync(`${env.TARGET}/new.txt`), "new\n");
  assert.equal(Deno.readTextFileSync(`${env.TARGET}/notes/todo.md`), "- restore\n");

  const found = await runBlock("damaged-blob-find", caseEnv);
  assert.equal(found.stdout, `damaged: ${damagedFile}\n`);
  const listed = await runBlock("damaged-blob-list", caseEnv);
  assert.match(listed.stdout, /damaged entries are named above/);
  assert.match(
    listed.stderr,
    new RegExp(`${damagedFile}: entry at offset ${entry.offset}: blob ${hit.blobId}`),
  );

  await runBlock("damaged-blob-mirror", caseEnv);
  assertSameTree(env.TARGET, `${t.path}/src`);
  await runBlock("damaged-blob-older", caseEnv);
  assert.equal(Deno.readTextFileSync(`${env.TARGET}/older/report.txt`), "version one\n");
});

Deno.test("RECOVERY.md case 5: a forgotten passphrase's key is replaced using another key", async () => {
  using t = tempDir();
  const { env } = await setUp(t.path, "forgotten passphrase");
  const [forgotten] = JSON.parse(await n2sOk(["key", "list", "--json", "--repo", env.REPO], env));
  await n2sOk(["key", "add", "--label", "known", "--repo", env.REPO], {
    ...env,
    N2S_NEW_PASSPHRASE: "known passphrase",
  });
  await runBlock("forgotten-passphrase", {
    ...env,
    N2S_PASSPHRASE: "known passphrase",
    N2S_NEW_PASSPHRASE: "fresh passphrase",
    FORGOTTEN_KEY_ID: forgotten.id,
  });
  const keys = JSON.parse(await n2sOk(["key", "list", "--json", "--repo", env.REPO], env)) as {
    id: string;
    label: string;
  }[];
  assert.deepEqual(keys.map((k) => k.label).sort(), ["known", "new passphrase"]);
  assert.ok(!keys.some((k) => k.id === forgotten.id));
  const target = `${t.path}/with-fresh`;
  await n2sOk([
    "decrypt-blob",
    ...objectFiles(env.REPO),
    "--key-file",
    `${env.HOME}/n2s-key.json`,
    "--target-path",
    target,
  ], { ...env, N2S_PASSPHRASE: "known passphrase" });
  assert.equal(Deno.readTextFileSync(`${target}/report.txt`), "version two\n");
  const fresh = await n2sOk(["key", "export", "--repo", env.REPO], {
    ...env,
    N2S_PASSPHRASE: "fresh passphrase",
  });
  assert.match(fresh, /"n2s_key": 1/);
});
