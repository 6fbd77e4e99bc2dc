// SQLite's errors reach the user as one line that names the index file and says what to do: a
// damaged index (truncated, or not a database at all), a full disk (a small tmpfs holding the
// index), and an index another process holds.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { tempDir, writeTree } from "../helpers/fs.ts";

const ENV = { N2S_PASSPHRASE: "correct horse battery staple" };

/** The lines of stderr that are not empty. */
function lines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "");
}

/** A repository and an index holding one push of `files` small files. */
async function pushed(dir: string, files = 300): Promise<{ args: string[]; index: string }> {
  const index = `${dir}/ix/index.sqlite`;
  const args = ["--repo", `${dir}/repo`, "--index", index];
  const tree: Record<string, string> = {};
  for (let i = 0; i < files; i++) tree[`d${i % 7}/file-${i}.txt`] = `content ${i}\n`;
  writeTree(`${dir}/src`, tree);
  await n2sOk(["init", ...args], ENV);
  await n2sOk(["push", `${dir}/src`, ...args], ENV);
  return { args, index };
}

Deno.test("a truncated index: the error names the file and says to move it aside and run recover index", async () => {
  using tmp = tempDir();
  const { args, index } = await pushed(tmp.path);
  const size = Deno.statSync(index).size;
  assert.ok(size > 16 * 4096, `the index holds enough pages to cut (${size} B)`);
  Deno.truncateSync(index, Math.floor(size / 2));

  const r = await n2s(["find", "**", ...args], ENV);
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(lines(r.stderr), [
    `n2s find: index ${index} is damaged (database disk image is malformed); move it aside ` +
    `(mv ${index} ${index}.damaged) and rebuild it from the repository with "n2s recover index"`,
  ]);

  // The advice works: moved aside, the index is rebuilt and lists the push again.
  Deno.renameSync(index, `${index}.damaged`);
  await n2sOk(["recover", "index", ...args], ENV);
  const status = JSON.parse(await n2sOk(["status", "--json", ...args], ENV));
  assert.equal(status.length, 1);
  assert.equal(status[0].files, 307, "300 files and their 7 directories");
});

Deno.test("a file that is not a database: the error names it and says to run recover index", async () => {
  using tmp = tempDir();
  const { args, index } = await pushed(tmp.path, 3);
  const bytes = Deno.readFileSync(index);
  bytes.set(new TextEncoder().encode("this is not SQLite at all"), 0);
  Deno.writeFileSync(index, bytes);
  for (const cmd of [["status"], ["push", `${tmp.path}/src`]]) {
    const r = await n2s([...cmd, ...args], ENV);
    assert.equal(r.code, 1, r.stderr);
    const [line, ...rest] = lines(r.stderr);
    assert.deepEqual(rest, [], r.stderr);
    assert.equal(
      line,
      `n2s ${cmd[0]}: index ${index} is damaged (file is not a database); move it aside ` +
        `(mv ${index} ${index}.damaged) and rebuild it from the repository with ` +
        `"n2s recover index"`,
    );
  }
});

Deno.test("an index another process holds: the error says another n2s process is using it", async () => {
  using tmp = tempDir();
  const { args, index } = await pushed(tmp.path, 3);
  writeTree(`${tmp.path}/src`, { "new.txt": "a change to push\n" });
  const holder = new DatabaseSync(index);
  try {
    holder.exec("BEGIN IMMEDIATE");
    holder.exec("INSERT INTO meta(key, value) VALUES ('held', 'by the test')");
    // The push waits for the lock (SQLite's busy timeout, 10 s), then gives up.
    const r = await n2s(["push", `${tmp.path}/src`, ...args], ENV);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(lines(r.stderr), [
      `n2s push: index ${index} is in use by another n2s process (database is locked); wait ` +
      `for it to finish, or give another index with --index`,
    ]);
  } finally {
    holder.exec("ROLLBACK");
    holder.close();
  }
});

Deno.test("a full disk under the index: the error names the file and says to free space", async () => {
  using tmp = tempDir();
  const mnt = `${tmp.path}/small`;
  Deno.mkdirSync(mnt);
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt],
    stderr: "piped",
  }).output();
  assert.ok(
    mount.success,
    `mount -t tmpfs failed (this test runs as root): ${new TextDecoder().decode(mount.stderr)}`,
  );
  try {
    const index = `${mnt}/index.sqlite`;
    const args = ["--repo", `${tmp.path}/repo`, "--index", index];
    await n2sOk(["init", ...args], ENV);
    // Rows with long paths: far more than 256 KiB of index.
    const tree: Record<string, string> = {};
    const long = "a-rather-long-directory-name-that-fills-the-index-".repeat(2);
    for (let i = 0; i < 3000; i++) tree[`${long}${i % 10}/file-${i}.txt`] = `${i}\n`;
    writeTree(`${tmp.path}/src`, tree);
    const r = await n2s(["push", `${tmp.path}/src`, ...args], ENV);
    assert.equal(r.code, 1, r.stderr);
    const all = lines(r.stderr);
    assert.equal(all.length, 1, r.stderr);
    assert.match(
      all[0],
      new RegExp(
        `^n2s push: index ${index} could not be written: no space left on its disk ` +
          `\\(database or disk is full\\); free space on the file system that holds it`,
      ),
    );
    assert.doesNotMatch(r.stderr, /cannot rollback/);
  } finally {
    const um = await new Deno.Command("umount", { args: [mnt], stderr: "piped" }).output();
    if (!um.success) {
      await new Deno.Command("umount", { args: ["-l", mnt] }).output();
    }
  }
});
