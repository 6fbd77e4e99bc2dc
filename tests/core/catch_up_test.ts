// An index catches up with the repository before a push: complete changesets pushed with another
// index are recorded (parents first), each manifest is read once, and a changeset the index holds
// as failed but that was completed elsewhere is recorded as complete.

import assert from "node:assert/strict";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { scanClient } from "../../lib/clients/scan.ts";
import { N2S } from "../../lib/n2s.ts";
import { catchUpIndex } from "../../lib/repository/catch_up.ts";
import { recordingGets } from "../helpers/backends.ts";
import { tempDir, writeTree } from "../helpers/fs.ts";

const PASS = "catch up";

Deno.test("an index catches up with changesets pushed with another index, reading each once", async () => {
  using tmp = tempDir();
  const repo = `${tmp.path}/repo`;
  const first = await N2S.init({
    repository: repo,
    index: `${tmp.path}/one.sqlite`,
    passphrase: PASS,
    logN: 10,
  });
  writeTree(`${tmp.path}/src`, { "a.txt": "a", "b.txt": "b" });
  const r1 = await first.push({ client: scanClient({ dir: `${tmp.path}/src` }), source: "s" });
  writeTree(`${tmp.path}/src`, { "a.txt": "a, changed" });
  const r2 = await first.push({ client: scanClient({ dir: `${tmp.path}/src` }), source: "s" });
  writeTree(`${tmp.path}/other`, { "o.txt": "o" });
  const r3 = await first.push({ client: scanClient({ dir: `${tmp.path}/other` }), source: "t" });
  await first.close();

  const gets = recordingGets(new LocalBackend(repo));
  const second = await N2S.open({
    repository: repo,
    index: `${tmp.path}/two.sqlite`,
    passphrase: PASS,
    backend: gets,
  });
  try {
    const caught = await catchUpIndex(await second.repository(), second.index);
    assert.deepEqual(caught.problems, []);
    assert.deepEqual(caught.imported, [r1.changeset, r2.changeset, r3.changeset]);
    const s = second.log("s");
    assert.deepEqual(s.map((c) => [c.id, c.parent, c.status]), [
      [r1.changeset, null, "complete"],
      [r2.changeset, r1.changeset, "complete"],
    ]);
    assert.equal(second.index.lastComplete("s")?.id, r2.changeset);
    const manifestReads = () => gets.gets.filter((g) => g.key.startsWith("changesets/")).length;
    assert.equal(manifestReads(), 3);
    assert.deepEqual((await catchUpIndex(await second.repository(), second.index)).imported, []);
    assert.equal(manifestReads(), 3, "a known manifest is not read again");

    // A push of the second index builds on the first's changesets and uploads nothing known.
    writeTree(`${tmp.path}/src`, { "c.txt": "c" });
    const r4 = await second.push({ client: scanClient({ dir: `${tmp.path}/src` }), source: "s" });
    assert.equal(second.index.getChangeset(r4.changeset!)?.parent, r2.changeset);
    assert.equal(r4.uploaded, 1);
    assert.equal(r4.unchanged, 2);

    // A changeset this index holds as failed that the repository holds complete is recorded.
    second.index.setStatus(r3.changeset!, "failed", { error: "rebuilt from blob headers" });
    const again = await catchUpIndex(await second.repository(), second.index);
    assert.deepEqual(again.imported, [r3.changeset]);
    assert.equal(second.index.getChangeset(r3.changeset!)?.status, "complete");
    assert.equal(second.ls(r3.changeset!).length, 1);
  } finally {
    await second.close();
  }
});
