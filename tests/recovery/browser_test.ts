// The recovery page in a real headless Chromium, offline: a key file, its passphrase and blob
// files made by the CLI give back byte-identical files, and a damaged blob is named.

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
  "data/big.bin": seededBytes(2_600_000, 5),
  "data/table.csv": "id,name,value\n" +
    Array.from({ length: 20000 }, (_, i) => `${i},n${i},${i * 7}`)
      .join("\n"),
  "ünï/naïve café.txt": "accents\n",
  "empty": "",
};

Deno.test({
  name: "the recovery page decrypts CLI blobs in Chromium, offline, byte for byte",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using t = tempDir();
    const repo = `${t.path}/repo`;
    const at = ["--repo", repo, "--index", `${t.path}/index.sqlite`];
    await n2sOk(["init", ...at], PASS);
    writeTree(`${t.path}/src`, FILES);
    await n2sOk(["push", `${t.path}/src`, "--source", "s", ...at], PASS);
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
    await n2sOk(["key", "export", strong.id, "--output", `${t.path}/strong.key`, ...at], PASS);
    const blobs = [...Deno.readDirSync(`${repo}/blobs`)].flatMap((d) =>
      [...Deno.readDirSync(`${repo}/blobs/${d.name}`)].map((f) =>
        `${repo}/blobs/${d.name}/${f.name}`
      )
    );
    assert.equal(blobs.length, Object.keys(FILES).length);
    // One damaged copy, under its own name in another folder.
    Deno.mkdirSync(`${t.path}/damaged`);
    const damagedName = blobs[0].slice(blobs[0].lastIndexOf("/") + 1);
    const damaged = `${t.path}/damaged/${damagedName}`;
    const bytes = Deno.readFileSync(blobs[0]);
    bytes[40] ^= 0x80;
    Deno.writeFileSync(damaged, bytes);

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
      await page.setInputFiles("#keyfile", `${t.path}/strong.key`);
      await page.fill("#passphrase", "strong passphrase");
      await page.setInputFiles("#blobs", [...blobs, damaged]);
      await page.click("#decrypt");
      await page.waitForSelector("body[data-state=done]", { timeout: 120_000 });
      assert.ok(statuses.some((s) => /Unlocking the key file.*\d+%/.test(s)), statuses.join("|"));

      const ok = await page.$$eval(
        "#results li.ok",
        (els: Any[]) => els.map((e) => e.dataset.path),
      );
      assert.deepEqual([...ok].sort(), Object.keys(FILES).sort());
      const errors = await page.$$eval(
        "#results li.error",
        (els: Any[]) => els.map((e) => e.textContent),
      );
      assert.equal(errors.length, 1);
      assert.match(errors[0], new RegExp(`${damagedName}.*blob ${damagedName}`));

      for (const path of Object.keys(FILES)) {
        const link = await page.$(`#results li.ok[data-path="${path}"] a`);
        const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
        assert.equal(download.suggestedFilename(), path.split("/").pop());
        const got = Deno.readFileSync(await download.path());
        const want = typeof FILES[path] === "string"
          ? new TextEncoder().encode(FILES[path] as string)
          : FILES[path] as Uint8Array;
        assert.equal(got.length, want.length, path);
        assert.ok(got.every((b, i) => b === want[i]), `${path} differs`);
      }

      // A wrong passphrase: said plainly, nothing offered.
      await page.fill("#passphrase", "not the passphrase");
      await page.setInputFiles("#keyfile", `${repo}/keys/${keys.find((k) => k !== strong)!.id}`);
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
