// Repositories altered where nothing authenticates the bytes. A pack whose first bytes were
// damaged (its preamble) loses none of its entries: decrypt-blob restores every file in it and
// names the damage, and check --read-data reports the pack instead of calling the repository
// clean. A config whose repository id was altered is named as such, not taken for a wrong
// passphrase.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { readTree, tempDir, writeTree } from "../helpers/fs.ts";
import { packFiles } from "../helpers/repo.ts";

const ENV = { N2S_PASSPHRASE: "pw" };

for (const at of [0, 4]) {
  Deno.test(`a pack with byte ${at} of its preamble flipped still gives every file, and check names it`, async () => {
    using t = tempDir();
    const files: Record<string, string> = {};
    for (let i = 0; i < 12; i++) files[`d/f${i}.txt`] = `file ${i}\n`.repeat(100 + i);
    writeTree(`${t.path}/src`, files);
    const args = ["--repo", `${t.path}/repo`, "--index", `${t.path}/index.sqlite`];
    await n2sOk(["init", ...args], ENV);
    await n2sOk(["push", `${t.path}/src`, ...args], ENV);
    await n2sOk(["key", "export", "--output", `${t.path}/key.json`, ...args], ENV);
    const packs = packFiles(`${t.path}/repo`);
    assert.equal(packs.length, 1, "the small files share one pack");
    const bytes = Deno.readFileSync(packs[0]);
    bytes[at] ^= 0x01;
    Deno.writeFileSync(packs[0], bytes);
    const packId = packs[0].slice(packs[0].lastIndexOf("/") + 1);

    const check = await n2s(["check", "--read-data", "--json", ...args], ENV);
    assert.equal(check.code, 1, check.stderr);
    const damage = JSON.parse(check.stdout).findings.filter((f: { severity: string }) =>
      f.severity === "damage"
    );
    assert.deepEqual(damage.map((f: { object: string }) => f.object), [
      `packs/${packId.slice(0, 2)}/${packId}`,
    ]);

    const out = `${t.path}/out`;
    const r = await n2s(
      ["decrypt-blob", packs[0], "--key-file", `${t.path}/key.json`, "--target-path", out],
      ENV,
    );
    assert.equal(r.code, 1, "the damage is reported");
    assert.match(r.stderr, new RegExp(`${packId}: its first 8 bytes are not a pack's`));
    assert.deepEqual(readTree(out), readTree(`${t.path}/src`), "every file of the pack");
  });
}

Deno.test("a config whose repository id was altered is named, not taken for a wrong passphrase", async () => {
  using t = tempDir();
  const args = ["--repo", `${t.path}/repo`, "--index", `${t.path}/fresh.sqlite`];
  await n2sOk(["init", "--repo", `${t.path}/repo`, "--index", `${t.path}/index.sqlite`], ENV);
  const config = JSON.parse(Deno.readTextFileSync(`${t.path}/repo/config`));
  const real = config.id;
  Deno.writeTextFileSync(
    `${t.path}/repo/config`,
    JSON.stringify({ ...config, id: "0".repeat(32) }),
  );
  const r = await n2s(["recover", "index", ...args], ENV);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, /wrong passphrase/);
  assert.match(
    r.stderr,
    new RegExp(
      `no key file belongs to repository 0{32}, the id in its config \\(the key files name ${real}\\)`,
    ),
  );
});
