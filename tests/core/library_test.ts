// The library API from mod.ts: a Deno program pushes entries from its own discovery code,
// pulls them back, and reads status, listings and search results.

import assert from "node:assert/strict";
import { type Client, N2S, openLocalFile, type SourceEntry } from "../../mod.ts";
import { tempDir, writeTree } from "../helpers/fs.ts";

Deno.test("a custom client pushes through the library and its files pull back", async () => {
  using tmp = tempDir();
  const src = `${tmp.path}/src`;
  writeTree(src, { "keep/a.csv": "1,2\n", "keep/b.csv": "3,4\n", "skip/c.tmp": "x" });
  const store = await N2S.init({
    repository: `${tmp.path}/repo`,
    index: `${tmp.path}/i.sqlite`,
    passphrase: "pw",
    logN: 10,
  });
  try {
    const opened: string[] = [];
    // A client that only reports CSV files, found by its own rules.
    const csvClient: Client = {
      kind: "csv-finder",
      root: src,
      completeWithin: ["keep"],
      async *entries(): AsyncIterable<SourceEntry> {
        for (const name of ["a.csv", "b.csv"]) {
          const st = await Deno.stat(`${src}/keep/${name}`);
          yield {
            path: `keep/${name}`,
            action: "write",
            size: st.size,
            mtime: st.mtime!.getTime(),
            mode: 0o644,
          };
        }
      },
      open(path) {
        opened.push(path);
        return openLocalFile(src, path);
      },
    };
    const r = await store.push({ client: csvClient, source: "csv", name: "first" });
    assert.equal(r.uploaded, 2);
    assert.deepEqual(opened.sort(), ["keep/a.csv", "keep/b.csv"]);
    const [cs] = store.status(r.changeset!);
    assert.equal(cs.client, "csv-finder");
    assert.equal(cs.name, "first");
    // A pattern without "/" matches names at any depth; with "/" it matches whole paths.
    assert.deepEqual(store.find("*.csv").map((h) => h.path), ["keep/a.csv", "keep/b.csv"]);
    assert.deepEqual(store.find("keep/*.csv").length, 2);
    assert.deepEqual(store.find("*/a.csv").length, 1);
    assert.deepEqual(store.find("other/*.csv").length, 0);

    // Unchanged entries are skipped without reading.
    opened.length = 0;
    const again = await store.push({ client: csvClient, source: "csv" });
    assert.equal(again.changeset, null);
    assert.deepEqual(opened, []);

    const pulled = await store.pull(r.changeset!, `${tmp.path}/out`);
    assert.equal(pulled.files, 2);
    assert.equal(Deno.readTextFileSync(`${tmp.path}/out/keep/b.csv`), "3,4\n");
    assert.equal(store.log("csv").length, 1);
  } finally {
    await store.close();
  }
});

Deno.test("find matches NFC and NFD spellings of the same name", async () => {
  using tmp = tempDir();
  const src = `${tmp.path}/src`;
  const nfd = "cafe\u0301.txt";
  writeTree(src, { [nfd]: "x" });
  const store = await N2S.init({
    repository: `${tmp.path}/repo`,
    index: `${tmp.path}/i.sqlite`,
    passphrase: "pw",
    logN: 10,
  });
  try {
    const { scanClient } = await import("../../mod.ts");
    await store.push({ client: scanClient({ paths: [src] }), source: "s" });
    assert.equal(store.find("caf\u00e9.txt").length, 1);
    assert.equal(store.find("caf\u00e9*").length, 1);
    assert.equal(store.find(nfd)[0].path, nfd, "the stored path keeps its bytes");
  } finally {
    await store.close();
  }
});
