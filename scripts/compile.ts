// Builds dist/n2s with `deno compile` and checks what it built: the executable must answer
// --version as n2s. DENORT_BIN, when set, must name a denort (Deno's runtime without its command
// line): a full `deno` there builds an executable of Deno's own that ignores n2s.
//
//   deno task compile
//   DENORT_BIN=/path/to/denort deno task compile

import { VERSION } from "../lib/version.ts";

const root = new URL("..", import.meta.url).pathname;
const output = `${root}dist/n2s`;
const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-net",
  "--allow-sys",
  "--allow-ffi",
];

function fail(message: string): never {
  console.error(`compile: ${message}`);
  Deno.exit(1);
}

async function answer(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    return new TextDecoder().decode(r.stdout).trim();
  } catch (e) {
    return `(${e instanceof Error ? e.message : e})`;
  }
}

const denort = Deno.env.get("DENORT_BIN");
if (denort) {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(denort);
  } catch {
    fail(`DENORT_BIN=${denort} does not exist`);
  }
  if (!info.isFile) fail(`DENORT_BIN=${denort} is not a file`);
  const said = await answer(denort, ["--version"]);
  if (/^deno \d/.test(said)) {
    fail(
      `DENORT_BIN=${denort} is a full deno ("${said.split("\n")[0]}"), not denort: ` +
        `get denort for Deno ${Deno.version.deno} (denort-<target>.zip from Deno's releases)`,
    );
  }
}

const { code } = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    ...PERMISSIONS,
    "--include",
    "npm:@napi-rs/blake-hash@1.3.4",
    "-o",
    output,
    `${root}cli.ts`,
  ],
  cwd: root,
}).output();
if (code !== 0) fail("deno compile failed (see above)");
const said = await answer(output, ["--version"]);
if (said !== `n2s ${VERSION}`) {
  Deno.removeSync(output);
  fail(`${output} answered --version with "${said}", not "n2s ${VERSION}"; removed it`);
}
console.log(`compiled ${output} (${said})`);
