// Installs an `n2s` command from this checkout: a small shell script that runs cli.ts with the
// Deno that runs this script, with the permissions n2s needs. Everything n2s loads, the native
// BLAKE3 package it imports on first use included, is cached first, so that the command then
// works without a network.
//
//   deno task install                 into /usr/local/bin as root, else ~/.local/bin
//   deno task install --bin DIR       into DIR

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { NAPI_BLAKE3_SPECIFIER } from "../lib/format/blake3_napi.ts";
import { PERMISSIONS } from "./permissions.ts";

const { values } = parseArgs({ options: { bin: { type: "string" } } });
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const home = Deno.env.get("HOME") ?? "/root";
// Under `deno task`, a relative --bin means the directory the task was started from.
const bin = values.bin !== undefined
  ? resolve(Deno.env.get("INIT_CWD") || Deno.cwd(), values.bin)
  : Deno.uid() === 0
  ? "/usr/local/bin"
  : join(home, ".local", "bin");
const deno = Deno.execPath();
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

async function run(args: string[]): Promise<void> {
  const r = await new Deno.Command(deno, { args, cwd: root, stdout: "inherit" }).output();
  if (!r.success) throw new Error(`deno ${args.join(" ")} failed`);
}

// The module graph, and the native package that is imported by a name the graph does not follow.
await run(["cache", "--config", join(root, "deno.json"), join(root, "cli.ts")]);
const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
await run(["cache", "--config", join(root, "deno.json"), config.imports[NAPI_BLAKE3_SPECIFIER]]);

Deno.mkdirSync(bin, { recursive: true });
const target = join(bin, "n2s");
const script = [
  "#!/bin/sh",
  `# n2s from ${root}, installed by \`deno task install\`; run it again after moving either.`,
  `exec ${quote(deno)} run --quiet ${PERMISSIONS.join(" ")} --config ${
    quote(join(root, "deno.json"))
  } ${quote(join(root, "cli.ts"))} "$@"`,
  "",
].join("\n");
Deno.writeTextFileSync(target, script, { mode: 0o755 });
Deno.chmodSync(target, 0o755);

const check = await new Deno.Command(target, { args: ["--version"], stdout: "piped" }).output();
const said = new TextDecoder().decode(check.stdout).trim();
if (!check.success || !/^n2s \d/.test(said)) {
  throw new Error(`${target} does not answer --version (it said "${said}")`);
}
console.log(`installed ${target} (${said}), running ${root}/cli.ts with ${deno}`);
if (deno.includes("/_npx/")) {
  console.log(
    "that Deno lives in npx's cache; `npm install -g deno@2.9.6` and this command again " +
      "make it permanent",
  );
}
const onPath = (Deno.env.get("PATH") ?? "").split(":").includes(bin);
if (!onPath) console.log(`${bin} is not on PATH: add it, e.g. export PATH="${bin}:$PATH"`);
