// The recovery page in a real headless Chromium, offline: a key file, its passphrase, and the
// pack files and loose blob files a CLI push made give back byte-identical files; the damaged
// entries of a pack are named, each by its place in the pack, and hide none of the others.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { n2sOk } from "../helpers/cli.ts";
import { seededBytes, tempDir, writeTree } from "../helpers/fs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const PASS = { N2S_PASSPHRASE: "page passphrase" };

// deno-lint-ignore no-explicit-any
type Any = any;

function launchBrowser(): Promise<Any> {
  const missing = "run scripts/setup/recovery.sh (apt-get install chromium; " +
    "npm install --prefix .cache/playwright playwright-core@1.65.1)";
  try {
    Deno.statSync(CHROMIUM);
  } catch {
    throw new Error(`${CHROMIUM} is missing: ${missing}`);
  }
  let chromium: Any;
  try {
    chromium = createRequire(`${ROOT}.cache/playwright/node_modules/`)("playwright-core").chromium;
  } catch (e) {
    throw new Error(`playwright-core is missing (${e}): ${missing}`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

const FILES: Record<string, string | Uint8Array> = {
  "docs/report.txt": "quarterly numbers\n",
  // Incompressible and over 1 MiB: a loose blob of its own under blobs/.
  "data/big.bin": seededBytes(2_600_000, 5),
  "data/table.csv": "id,name,value\n" +
    Array.from({ length: 20000 }, (_, i) => `${i},n${i},${i * 7}`)
      .join("\n"),
  "ünï/naïve café.txt": "accents\n",
  "empty": "",
};

/** A second push, whose pack is given to the page damaged (two of its four entries). */
const OTHER: Record<string, string | Uint8Array> = {
  "other/one.txt": "one\n",
  "other/two.txt": "two, whose entry loses its frame\n",
  "other/three.txt": "three, whose container is damaged\n",
  "other/four.txt": seededBytes(5000, 8),
};

const bytesOf = (v: string | Uint8Array) => typeof v === "string" ? new TextEncoder().encode(v) : v;

/** The files under a folder of the repository (blobs/ or packs/), two levels down. */
function objectFiles(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].flatMap((d) =>
      [...Deno.readDirSync(`${dir}/${d.name}`)].map((f) => `${dir}/${d.name}/${f.name}`)
    ).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

type Entry = { blobId: string; header: { path: string }; offset: number; length: number };

Deno.test({
  name: "the recovery page decrypts CLI pack and blob files in Chromium, offline, byte for byte",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using t = tempDir();
    const repo = `${t.path}/repo`;
    const at = ["--repo", repo, "--index", `${t.path}/index.sqlite`];
    await n2sOk(["init", ...at], PASS);
    writeTree(`${t.path}/src`, FILES);
    await n2sOk(["push", `${t.path}/src`, "--source", "s", ...at], PASS);
    const packs = objectFiles(`${repo}/packs`);
    const loose = objectFiles(`${repo}/blobs`);
    assert.ok(packs.length >= 1, "the small files are in a pack");
    assert.equal(loose.length, 1, "data/big.bin is a loose blob");
    writeTree(`${t.path}/other`, OTHER);
    await n2sOk(["push", `${t.path}/other`, "--source", "t", ...at], PASS);
    const otherPacks = objectFiles(`${repo}/packs`).filter((p) => !packs.includes(p));
    assert.equal(otherPacks.length, 1);
    assert.deepEqual(objectFiles(`${repo}/blobs`), loose);
    // A key at the default cost (scrypt N = 2^17), as a person would have.
    await n2sOk(["key", "add", "--label", "default cost", ...at], {
      ...PASS,
      N2S_KDF_LOG_N: "",
      N2S_NEW_PASSPHRASE: "strong passphrase",
    });
    const keys = JSON.parse(await n2sOk(["key", "list", "--json", ...at])) as {
      id: string;
      label: string;
    }[];
    const strong = keys.find((k) => k.label === "default cost")!;
    const cheap = `${repo}/keys/${keys.find((k) => k !== strong)!.id}`;
    await n2sOk(["key", "export", strong.id, "--output", `${t.path}/strong.key`, ...at], PASS);

    // The second push's pack, copied under another name with two entries destroyed: one loses
    // its frame and the middle of its container (so it cannot even be found), the other the
    // middle of its container.
    const entries = JSON.parse(
      await n2sOk(["decrypt-blob", "--list", "--json", otherPacks[0], "--key-file", cheap], PASS),
    ) as Entry[];
    assert.equal(entries.length, 4);
    const two = entries.find((e) => e.header.path === "other/two.txt")!;
    const three = entries.find((e) => e.header.path === "other/three.txt")!;
    Deno.mkdirSync(`${t.path}/damaged`);
    const damaged = `${t.path}/damaged/any name.pack`;
    const bytes = Deno.readFileSync(otherPacks[0]);
    bytes.fill(0, two.offset - 40, two.offset);
    bytes.fill(0, two.offset + (two.length >> 1) - 16, two.offset + (two.length >> 1) + 16);
    bytes.fill(0, three.offset + (three.length >> 1) - 16, three.offset + (three.length >> 1) + 16);
    Deno.writeFileSync(damaged, bytes);
    const given = [...packs, ...loose, damaged];
    const expected: Record<string, Uint8Array> = {};
    for (const [path, v] of Object.entries(FILES)) expected[path] = bytesOf(v);
    for (const path of ["other/one.txt", "other/four.txt"]) expected[path] = bytesOf(OTHER[path]);

    const browser = await launchBrowser();
    try {
      const context = await browser.newContext({ offline: true, acceptDownloads: true });
      const page = await context.newPage();
      const requests: string[] = [];
      page.on("request", (r: Any) => requests.push(r.url()));
      const statuses: string[] = [];
      await page.exposeFunction("reportStatus", (s: string) => statuses.push(s));
      await page.goto(`file://${repo}/recovery.html`);
      await page.waitForSelector("body[data-state=ready]");
      await page.evaluate(() => {
        const g = globalThis as Any;
        const el = g.document.getElementById("status");
        new g.MutationObserver(() => g.reportStatus(el.textContent ?? "")).observe(el, {
          childList: true,
          characterData: true,
          subtree: true,
        });
      });
      const decrypt = async (keyFile: string, passphrase: string, filter: string) => {
        await page.setInputFiles("#keyfile", keyFile);
        await page.fill("#passphrase", passphrase);
        await page.fill("#filter", filter);
        await page.setInputFiles("#blobs", given);
        await page.evaluate(() => delete (globalThis as Any).document.body.dataset.state);
        await page.click("#decrypt");
        await page.waitForSelector("body[data-state=done]", { timeout: 120_000 });
        return {
          ok: await page.$$eval("#results li.ok", (els: Any[]) => els.map((e) => e.dataset.path)),
          errors: await page.$$eval(
            "#results li.error",
            (els: Any[]) => els.map((e) => e.textContent),
          ),
        };
      };

      const all = await decrypt(`${t.path}/strong.key`, "strong passphrase", "");
      assert.ok(statuses.some((s) => /Unlocking the key file.*\d+%/.test(s)), statuses.join("|"));
      assert.deepEqual([...all.ok].sort(), Object.keys(expected).sort());
      // Both damaged entries are reported, each by where it lies in the pack, and hide nothing.
      assert.equal(all.errors.length, 2, all.errors.join("\n"));
      const frameless = all.errors.find((e: string) => /hold no entry/.test(e));
      assert.ok(frameless, all.errors.join("\n"));
      assert.match(
        frameless,
        new RegExp(`^any name\\.pack: bytes ${two.offset - 40} to ${two.offset + two.length - 1} `),
      );
      const broken = all.errors.find((e: string) => /entry at offset/.test(e));
      assert.ok(broken, all.errors.join("\n"));
      assert.match(
        broken,
        new RegExp(`^any name\\.pack: entry at offset ${three.offset}: blob ${three.blobId}`),
      );
      assert.match(
        await page.textContent("#status"),
        new RegExp(`Done: ${Object.keys(expected).length} files restored.*2 problems`),
      );

      for (const [path, want] of Object.entries(expected)) {
        const link = await page.$(`#results li.ok[data-path="${path}"] a`);
        const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
        assert.equal(download.suggestedFilename(), path.split("/").pop());
        const got = Deno.readFileSync(await download.path());
        assert.equal(got.length, want.length, path);
        assert.ok(got.every((b, i) => b === want[i]), `${path} differs`);
      }

      // A path filter: a glob (as decrypt-blob --path), or else part of a path.
      assert.deepEqual((await decrypt(cheap, PASS.N2S_PASSPHRASE, "*.csv")).ok, [
        "data/table.csv",
      ]);
      assert.deepEqual(
        [...(await decrypt(cheap, PASS.N2S_PASSPHRASE, "other/")).ok].sort(),
        ["other/four.txt", "other/one.txt"],
      );

      // A loose blob file needs its blob-id name; a pack file may have any name.
      const renamed = `${t.path}/damaged/renamed.bin`;
      Deno.copyFileSync(loose[0], renamed);
      await page.setInputFiles("#keyfile", cheap);
      await page.fill("#filter", "");
      await page.setInputFiles("#blobs", [renamed]);
      await page.evaluate(() => delete (globalThis as Any).document.body.dataset.state);
      await page.click("#decrypt");
      await page.waitForSelector("body[data-state=done]", { timeout: 120_000 });
      const refused = await page.$$eval(
        "#results li.error",
        (els: Any[]) => els.map((e) => e.textContent),
      );
      assert.equal(refused.length, 1);
      assert.match(refused[0], /^renamed\.bin: the file name is not a blob id/);

      // A wrong passphrase: said plainly, nothing offered.
      await page.fill("#passphrase", "not the passphrase");
      await page.setInputFiles("#blobs", given);
      await page.click("#decrypt");
      await page.waitForFunction(() =>
        /Wrong passphrase/.test((globalThis as Any).document.getElementById("status").textContent)
      );
      assert.equal(await page.$$eval("#results li", (els: Any[]) => els.length), 0);

      const remote = requests.filter((u) => !/^(file|blob|data):/.test(u));
      assert.deepEqual(remote, []);
    } finally {
      await browser.close();
    }
  },
});
