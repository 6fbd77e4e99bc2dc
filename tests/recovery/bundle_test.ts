// One-file build: the CLI bundled into a single JavaScript file runs with a bare `deno`, an
// empty HOME and an empty DENO_DIR, outside any checkout, and restores a repository with no
// index. (Where Deno's runtime can be downloaded, `deno task compile` makes an executable.)

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { n2sOk } from "../helpers/cli.ts";
import { assertSameTree, seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PASS = { N2S_PASSPHRASE: "bundle passphrase" };

Deno.test("the bundled n2s.js restores a repository with no index, from an empty HOME and DENO_DIR", async () => {
  using t = tempDir();
  const repo = `${t.path}/repo`;
  const at = ["--repo", repo, "--index", `${t.path}/index.sqlite`];
  await n2sOk(["init", ...at], PASS);
  writeTree(`${t.path}/src`, {
    "a/b.txt": "bundled\n",
    "big.bin": seededBytes(1_500_000, 9),
    "text.csv": "x,y\n".repeat(50_000),
  });
  const push = JSON.parse(
    await n2sOk(["push", `${t.path}/src`, "--source", "s", "--json", ...at], PASS),
  );

  const bin = `${t.path}/bin`;
  Deno.mkdirSync(bin);
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "-o", `${bin}/n2s.js`, "cli.ts"],
    cwd: ROOT,
    stderr: "piped",
  }).output();
  assert.ok(built.success, new TextDecoder().decode(built.stderr));

  // A stranger's machine: nothing but deno and the file.
  const home = `${t.path}/home`;
  const denoDir = `${t.path}/deno-dir`;
  const work = `${t.path}/work`;
  for (const d of [home, denoDir, work]) Deno.mkdirSync(d);
  const run = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-config",
      "--no-lock",
      "--cached-only",
      `${bin}/n2s.js`,
      "pull",
      "--repo",
      repo,
      "--changeset-id",
      push.changeset,
      "--target-path",
      `${work}/restored`,
    ],
    cwd: work,
    clearEnv: true,
    env: {
      PATH: "/usr/bin:/bin",
      HOME: home,
      DENO_DIR: denoDir,
      DENO_NO_PACKAGE_JSON: "1",
      DENO_NO_UPDATE_CHECK: "1",
      NO_COLOR: "1",
      ...PASS,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(run.code, 0, dec.decode(run.stderr) + dec.decode(run.stdout));
  assert.match(dec.decode(run.stdout), /restored 3 files/);
  assertSameTree(`${work}/restored`, `${t.path}/src`);
});
