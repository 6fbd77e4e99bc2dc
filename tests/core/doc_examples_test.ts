// The @example blocks of the public API are type-checked and run, as `deno test --doc` does, in a
// child process so that the suite keeps one summary line.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

/** The modules whose JSDoc holds the examples of what mod.ts exports. */
const DOC_MODULES = [
  "mod.ts",
  "lib/n2s.ts",
  "lib/clients/client.ts",
  "lib/clients/scan.ts",
  "lib/clients/btrfs.ts",
  "lib/clients/zfs.ts",
  "lib/clients/dsg.ts",
  "lib/clients/runner.ts",
  "lib/backends/backend.ts",
  "lib/backends/open.ts",
  "lib/crypto_deno.ts",
  "lib/format/suite_js.ts",
];

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("every example in the public API's documentation type-checks and runs", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", "--doc", ...DOC_MODULES],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 0, out);
  // One test per example block: none was silently skipped.
  let blocks = 0;
  for (const m of DOC_MODULES) {
    blocks += Deno.readTextFileSync(`${ROOT}${m}`).match(/^\s*\* ```ts$/gm)?.length ?? 0;
  }
  const passed = Number(/ok \| (\d+) passed/.exec(out)?.[1] ?? 0);
  assert.equal(passed, blocks, out);
});

/** What `deno doc --json` says of a symbol, as far as this test reads it. */
interface DocNode {
  name: string;
  kind?: string;
  jsDoc?: { tags?: { kind: string }[] };
  def?: { methods?: DocNode[] };
  declarations?: DocNode[];
}

const tagged = (d: DocNode, kind: string) => d.jsDoc?.tags?.some((t) => t.kind === kind) ?? false;

Deno.test("each function and method mod.ts exports has an @example", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", "mod.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  assert.equal(r.code, 0);
  const doc = JSON.parse(new TextDecoder().decode(r.stdout));
  const symbols: DocNode[] = doc.nodes[new URL("mod.ts", `file://${ROOT}`).href].symbols;
  const missing: string[] = [];
  let seen = 0;
  for (const s of symbols) {
    for (const d of s.declarations ?? []) {
      if (d.kind === "function") {
        seen++;
        if (!tagged(d, "example")) missing.push(s.name);
      }
      for (const m of d.kind === "class" ? d.def?.methods ?? [] : []) {
        if (tagged(m, "internal")) continue;
        seen++;
        if (!tagged(m, "example")) missing.push(`${s.name}.${m.name}`);
      }
    }
  }
  assert.ok(seen >= 30, `only ${seen} functions and methods found: is the format the same?`);
  assert.deepEqual(missing, []);
});
