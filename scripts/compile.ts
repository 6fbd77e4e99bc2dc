// Builds dist/n2s with `deno compile` and checks what it built: the executable must answer
// --version as n2s. DENORT_BIN, when set, must name a denort (Deno's runtime without its command
// line): a full `deno` there builds an executable of Deno's own that ignores n2s.
//
//   deno task compile
//   DENORT_BIN=/path/to/denort deno task compile
//   deno task compile --dry-run     print the deno compile command line and stop

import { VERSION } from "../lib/version.ts";
import { NAPI_BLAKE3_SPECIFIER } from "../lib/format/blake3_napi.ts";
import { PERMISSIONS } from "./permissions.ts";

const root = new URL("..", import.meta.url).pathname;
const output = `${root}dist/n2s`;

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

// The native hash is imported by a computed name that the module graph does not follow: the
// executable must be told to embed it, at the version the import map pins.
const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`));
const args = [
  "compile",
  ...PERMISSIONS,
  "--include",
  config.imports[NAPI_BLAKE3_SPECIFIER],
  "-o",
  output,
  `${root}cli.ts`,
];
if (Deno.args.includes("--dry-run")) {
  console.log(["deno", ...args].join(" "));
  Deno.exit(0);
}
const { code } = await new Deno.Command(Deno.execPath(), { args, cwd: root }).output();
if (code !== 0) fail("deno compile failed (see above)");
const said = await answer(output, ["--version"]);
if (said !== `n2s ${VERSION}`) {
  Deno.removeSync(output);
  fail(`${output} answered --version with "${said}", not "n2s ${VERSION}"; removed it`);
}
console.log(`compiled ${output} (${said})`);
