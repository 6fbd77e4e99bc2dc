// The command line as a shell user meets it: --version, help, mistyped names, a closed pipe,
// init into a directory that holds other files, and `deno task n2s` with relative paths.

import assert from "node:assert/strict";
import { CLI_PATH, n2s, n2sOk } from "../helpers/cli.ts";
import { tempDir, writeTree } from "../helpers/fs.ts";
import { VERSION } from "../../lib/version.ts";

const ENV = { N2S_PASSPHRASE: "pw" };
const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("--version names the version deno.json publishes; bare n2s and help print help, exit 0", async () => {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  assert.equal(VERSION, config.version);
  for (const args of [["--version"], ["-V"], ["version"]]) {
    const r = await n2s(args);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `n2s ${config.version}\n`);
  }
  for (const args of [[], ["help"], ["--help"]]) {
    const r = await n2s(args);
    assert.equal(r.code, 0, args.join(" "));
    assert.match(r.stdout, /^ {2}n2s COMMAND \[OPTIONS\]/m);
    assert.match(r.stdout, /^ {2}pull +/m);
  }
  const r = await n2s(["help", "pull"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^n2s pull: .*\n\nUsage:\n {2}n2s pull --changeset-id/);
});

Deno.test("a mistyped command or option gets one line naming the closest valid one", async () => {
  let r = await n2s(["pul"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `n2s: unknown command "pul"; did you mean "pull"?; run "n2s help" for the list\n`,
  );
  r = await n2s(["help", "stauts"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /did you mean "status"\?/);
  r = await n2s(["xyzzy"]);
  assert.equal(r.code, 2);
  assert.doesNotMatch(r.stderr, /did you mean/);
  r = await n2s(["push", "--sorce", "x", "--repo", "/nonexistent"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `n2s push: unknown option --sorce for n2s push; did you mean "--source"?; ` +
      `run "n2s help push" for its options\n`,
  );
  r = await n2s(["status", "--repo"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /--repo <value>' argument missing; run "n2s help status"/);
});

Deno.test("a reader that stops early (ls | head) ends the command quietly", async () => {
  using t = tempDir();
  const files: Record<string, string> = {};
  for (let i = 0; i < 3000; i++) files[`some/longer/directory/name/file-${i}.txt`] = `${i}`;
  writeTree(`${t.path}/src`, files);
  const args = ["--repo", `${t.path}/repo`, "--index", `${t.path}/index.sqlite`];
  await n2sOk(["init", ...args], ENV);
  await n2sOk(["push", `${t.path}/src`, "--source", "s", ...args], ENV);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI_PATH, "ls", "latest", ...args],
    env: { ...ENV, NO_COLOR: "1", INIT_CWD: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  assert.ok(first.value && first.value.length > 0);
  await reader.cancel();
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
  ]);
  assert.equal(stderr, "");
  assert.equal(status.code, 0);
});

Deno.test("init refuses a directory that holds other files, and names one of them", async () => {
  using t = tempDir();
  writeTree(`${t.path}/photos`, { "cat.jpg": "meow" });
  const r = await n2s(
    ["init", "--repo", `${t.path}/photos`, "--index", `${t.path}/index.sqlite`],
    ENV,
  );
  assert.equal(r.code, 1);
  assert.match(r.stderr, /photos is not empty and holds no n2s repository \(it has cat\.jpg\)/);
  assert.deepEqual([...Deno.readDirSync(`${t.path}/photos`)].map((e) => e.name), ["cat.jpg"]);
});

Deno.test("deno task n2s takes relative paths from the directory it was started in", async () => {
  using t = tempDir();
  writeTree(`${t.path}/work/data`, { "a.txt": "alpha", "sub/b.txt": "beta" });
  const outside = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => k !== "INIT_CWD"),
  );
  const task = async (args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", "--config", `${ROOT}deno.json`, "n2s", ...args],
      cwd: `${t.path}/work`,
      // Without INIT_CWD, as a shell starts it: `deno task` sets it only when it is not set.
      clearEnv: true,
      env: { ...outside, ...ENV, N2S_KDF_LOG_N: "10", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assert.equal(out.code, 0, dec.decode(out.stderr));
    return dec.decode(out.stdout);
  };
  const args = ["--repo", "./repo", "--index", "./index.sqlite"];
  await task(["init", ...args]);
  await task(["push", "./data", "--source", "d", ...args]);
  await task(["pull", "--changeset-id", "latest", "--target-path", "./restored", ...args]);
  assert.equal(Deno.readTextFileSync(`${t.path}/work/restored/sub/b.txt`), "beta");
  assert.ok(Deno.statSync(`${t.path}/work/repo/config`).isFile);
  assert.throws(
    () => Deno.statSync(`${ROOT}repo`),
    Deno.errors.NotFound,
    "nothing in the checkout",
  );
});

Deno.test("deno task install puts an n2s command in a directory that then runs offline, from anywhere", async () => {
  using t = tempDir();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--config", `${ROOT}deno.json`, "install", "--bin", `${t.path}/bin`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(r.code, 0, dec.decode(r.stderr));
  assert.match(
    dec.decode(r.stdout),
    new RegExp(`installed ${t.path}/bin/n2s \\(n2s ${VERSION}\\)`),
  );
  writeTree(`${t.path}/home/data`, { "x.txt": "x" });
  // No network (every request goes to a closed port): whatever the command needs is cached.
  const offline = {
    ...ENV,
    N2S_KDF_LOG_N: "10",
    HTTPS_PROXY: "http://127.0.0.1:9",
    HTTP_PROXY: "http://127.0.0.1:9",
  };
  const run = async (args: string[]) => {
    const o = await new Deno.Command(`${t.path}/bin/n2s`, {
      args,
      cwd: `${t.path}/home`,
      env: offline,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(o.code, 0, dec.decode(o.stderr));
    return dec.decode(o.stdout);
  };
  assert.equal(await run(["--version"]), `n2s ${VERSION}\n`);
  const args = ["--repo", "repo", "--index", "index.sqlite"];
  await run(["init", ...args]);
  await run(["push", "data", "--source", "d", ...args]);
  assert.match(await run(["ls", "latest", ...args]), /x\.txt/);
});

Deno.test("deno task compile refuses a DENORT_BIN that is a full deno, and builds nothing", async () => {
  using t = tempDir();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--config", `${ROOT}deno.json`, "compile"],
    env: { DENORT_BIN: Deno.execPath() },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 1);
  assert.match(
    new TextDecoder().decode(r.stderr),
    /is a full deno \("deno \d+\.\d+\.\d+.*not denort/,
  );
  assert.throws(() => Deno.statSync(`${ROOT}dist/n2s`), Deno.errors.NotFound);
  assert.ok(t.path);
});

Deno.test("status hints at recover index for an empty index, and at push --resume for an unfinished push", async () => {
  using t = tempDir();
  writeTree(`${t.path}/src`, { "a.txt": "a", "b.txt": "b" });
  const repo = ["--repo", `${t.path}/repo`];
  await n2sOk(["init", ...repo, "--index", `${t.path}/first.sqlite`], ENV);
  let r = await n2s(["status", ...repo, "--index", `${t.path}/first.sqlite`], ENV);
  assert.equal(r.stderr, "", "an empty repository needs no hint");
  await n2sOk([
    "push",
    `${t.path}/src`,
    "--source",
    "s",
    ...repo,
    "--index",
    `${t.path}/first.sqlite`,
  ], ENV);
  r = await n2s(["status", ...repo, "--index", `${t.path}/other.sqlite`], ENV);
  assert.equal(r.code, 0);
  assert.match(
    r.stderr,
    /the index .*other\.sqlite holds no changesets, but the repository does \(changesets\/\w+\); "n2s recover index" reads them into it/,
  );
  // A push killed after it recorded its plan leaves an unfinished changeset.
  writeTree(`${t.path}/src`, { "c.txt": "c" });
  const killed = await n2s(
    ["push", `${t.path}/src`, "--source", "s", ...repo, "--index", `${t.path}/first.sqlite`],
    { ...ENV, N2S_CRASH_AT: "manifest:1" },
  );
  assert.notEqual(killed.code, 0);
  r = await n2s(["status", ...repo, "--index", `${t.path}/first.sqlite`], ENV);
  assert.match(r.stderr, /changeset \w+ of s is unfinished; .*"n2s push --resume" completes it/);
  await n2sOk(["push", "--resume", ...repo, "--index", `${t.path}/first.sqlite`], ENV);
  r = await n2s(["status", ...repo, "--index", `${t.path}/first.sqlite`], ENV);
  assert.equal(r.stderr, "");
});
