// Help, completion and the man page come from one table of commands and options: each option a
// command accepts is listed by its help with a description, a default and an example; bash, zsh
// and fish complete from the same table (each shell run for real); the man page renders cleanly.

import assert from "node:assert/strict";
import { n2s } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fs.ts";

const dec = new TextDecoder();

/** Every command name, from the overview. */
async function commandNames(): Promise<string[]> {
  const r = await n2s(["help"]);
  const section = r.stdout.split("\nCommands:\n")[1].split("\n\n")[0];
  return section.split("\n").map((l) => l.trim().split(/\s+/)[0]);
}

Deno.test("every command's help lists each option with a description, a default and an example", async () => {
  const names = await commandNames();
  assert.ok(names.length >= 20, names.join(" "));
  for (const name of names) {
    const r = await n2s([name, "--help"]);
    assert.equal(r.code, 0, name);
    assert.equal((await n2s(["help", name])).stdout, r.stdout, `help ${name} = ${name} --help`);
    const text = r.stdout;
    assert.match(text, new RegExp(`^n2s ${name}: .+\\n\\nUsage:\\n {2}n2s ${name}`), name);
    for (const g of ["--repo", "--index", "--json", "--verbose"]) {
      assert.match(text, new RegExp(`^ {2}${g}\\b`, "m"), `${name} shows ${g}`);
    }
    // Each listed option: its line, then "default:" and "example:" lines.
    const lines = text.split("\n");
    const starts = lines.flatMap((l, i) => /^ {2}(-\w, )?--[a-z]/.test(l) ? [i] : []);
    for (const i of starts) {
      const block = lines.slice(i, i + 4).join("\n");
      assert.match(block, /\n\s+default: \S/, `${name}: ${lines[i]}`);
      assert.match(block, /\n\s+example: \S/, `${name}: ${lines[i]}`);
    }
    // Every option of the synopsis is described.
    const usage = lines[3];
    for (const m of usage.matchAll(/--([a-z-]+)/g)) {
      assert.ok(starts.some((i) => lines[i].includes(`--${m[1]}`)), `${name}: --${m[1]}`);
    }
  }
});

Deno.test("an option that help lists is one the command accepts", async () => {
  using t = tempDir();
  // A usage error for an unknown option comes before anything else runs; a listed option never
  // gets it.
  const runs: string[][] = [];
  for (const name of await commandNames()) {
    const text = (await n2s([name, "--help"])).stdout;
    for (const m of text.matchAll(/^ {2}(?:-\w, )?--([a-z-]+)( [A-Z%|/]+)?/gm)) {
      runs.push([name, `--${m[1]}`, ...(m[2] ? ["x"] : []), "--repo", `${t.path}/none`]);
    }
  }
  assert.ok(runs.length > 60, `${runs.length} options`);
  // Six processes at a time.
  for (let i = 0; i < runs.length; i += 6) {
    await Promise.all(
      runs.slice(i, i + 6).map(async (args) => {
        // In the temporary directory: values such as --output x write there, if anywhere.
        const r = await n2s(args, { N2S_PASSPHRASE: "pw" }, { cwd: t.path });
        assert.doesNotMatch(r.stderr, /unknown option/, args.join(" "));
      }),
    );
  }
});

async function shell(cmd: string, args: string[], script: string): Promise<string> {
  const o = await new Deno.Command(cmd, {
    args: [...args, script],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assert.equal(o.code, 0, `${cmd}: ${dec.decode(o.stderr)}`);
  return dec.decode(o.stdout);
}

Deno.test("bash, zsh and fish complete commands, subcommands and options from the table", async () => {
  using t = tempDir();
  for (const sh of ["bash", "zsh", "fish"]) {
    const r = await n2s(["completion", sh]);
    assert.equal(r.code, 0, r.stderr);
    Deno.writeTextFileSync(`${t.path}/n2s.${sh}`, r.stdout);
  }
  const bashAsk = (words: string[]) =>
    shell(
      "bash",
      ["-c"],
      [
        `source ${t.path}/n2s.bash`,
        `COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}`,
        `_n2s; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ].join("\n"),
    );
  assert.deepEqual((await bashAsk(["n2s", "pu"])).trim().split("\n"), ["push", "pull"]);
  assert.deepEqual((await bashAsk(["n2s", "check", "--re"])).trim().split("\n").sort(), [
    "--read-data",
    "--read-data-subset",
    "--repair",
    "--repo",
  ]);
  assert.deepEqual((await bashAsk(["n2s", "key", "pa"])).trim().split("\n"), ["passwd"]);
  assert.deepEqual((await bashAsk(["n2s", "completion", "f"])).trim().split("\n"), ["fish"]);

  const fishAsk = (line: string) =>
    shell("fish", ["--no-config", "-c"], `source ${t.path}/n2s.fish; complete -C '${line}'`);
  const fishCheck = (await fishAsk("n2s check --re")).trim().split("\n").map((l) =>
    l.split("\t")[0]
  );
  assert.deepEqual(fishCheck.sort(), ["--read-data", "--read-data-subset", "--repair", "--repo"]);
  assert.match(await fishAsk("n2s pu"), /^pull\trestore a changeset/m);

  // zsh: the script parses, defines a function per command, and completes through compsys.
  await shell("zsh", ["-n"], `${t.path}/n2s.zsh`);
  const zshFns = await shell(
    "zsh",
    ["-f", "-c"],
    [
      "autoload -U compinit; compinit -u -D",
      `source ${t.path}/n2s.zsh`,
      "print -l ${(k)functions[(I)_n2s*]}",
    ].join("\n"),
  );
  for (const f of ["_n2s", "_n2s_check", "_n2s_decrypt_blob", "_n2s_pull"]) {
    assert.match(zshFns, new RegExp(`^${f}$`, "m"), f);
  }
});

Deno.test("the man page renders without a warning and describes every command", async () => {
  const r = await n2s(["man"]);
  assert.equal(r.code, 0, r.stderr);
  using t = tempDir();
  Deno.writeTextFileSync(`${t.path}/n2s.1`, r.stdout);
  const warn = await new Deno.Command("groff", {
    args: ["-man", "-Tutf8", "-ww", "-z", `${t.path}/n2s.1`],
    stderr: "piped",
  }).output();
  assert.equal(dec.decode(warn.stderr), "");
  const page = await new Deno.Command("man", {
    args: ["-l", `${t.path}/n2s.1`],
    env: { MANPAGER: "cat", MANWIDTH: "100", LANG: "C.UTF-8" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  // man overstrikes bold text (a character, backspace, the character); keep the plain text.
  const text = dec.decode(page.stdout).replace(new RegExp(".\b", "g"), "");
  assert.match(text, /^NAME\n\s+n2s - encrypted, path-aware storage of changing files/m);
  for (const name of await commandNames()) {
    assert.match(text, new RegExp(`^ {3}${name}\\n`, "m"), name);
  }
  assert.match(text, /--read-data-subset N%\|K\/M/);
});
