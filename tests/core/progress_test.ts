// Progress: a bar on stderr when it is a terminal, nothing but the summary when it is not.

import assert from "node:assert/strict";
import { CLI_PATH, n2s, n2sOk } from "../helpers/cli.ts";
import { seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

Deno.test("without a terminal, push prints only its summary", async () => {
  using tmp = tempDir();
  const args = ["--repo", `${tmp.path}/repo`, "--index", `${tmp.path}/i.sqlite`];
  writeTree(`${tmp.path}/src`, { "a": "1", "b": "2" });
  await n2sOk(["init", ...args], { N2S_PASSPHRASE: "pw" });
  const r = await n2s(["push", `${tmp.path}/src`, ...args], { N2S_PASSPHRASE: "pw" });
  assert.equal(r.code, 0);
  assert.equal(r.stderr, "");
  assert.equal(r.stdout.trim().split("\n").length, 1);
  assert.match(r.stdout, /^changeset \w+ of .*: 2 entries, 2 files uploaded/);
});

Deno.test("on a terminal, push draws a progress bar with files, bytes, rate and ETA", async () => {
  using tmp = tempDir();
  const args = ["--repo", `${tmp.path}/repo`, "--index", `${tmp.path}/i.sqlite`];
  const files: Record<string, Uint8Array> = {};
  for (let i = 0; i < 40; i++) files[`f${i}`] = seededBytes(100_000, i + 1);
  writeTree(`${tmp.path}/src`, files);
  await n2sOk(["init", ...args], { N2S_PASSPHRASE: "pw" });
  // util-linux `script` runs the command on a pseudo-terminal.
  const cmd = [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    CLI_PATH,
    "push",
    `${tmp.path}/src`,
    ...args,
  ]
    .map((a) => `'${a}'`).join(" ");
  const out = await new Deno.Command("script", {
    args: ["-qec", `${cmd} 2>&1 >/dev/null`, "/dev/null"],
    env: { N2S_PASSPHRASE: "pw", N2S_KDF_LOG_N: "10", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text);
  assert.match(text, /push \[[#-]+\] \d+\/40 files .* \d+(\.\d)? [kMG]?B\/s +ETA \d+:\d\d/);
});
