// The library's entry points answer a null or mistyped argument with a TypeError that names the
// function and the argument, before they open or read anything.

import assert from "node:assert/strict";
import {
  btrfsClient,
  bytesBody,
  dsgClient,
  N2S,
  openBackend,
  openLocalFile,
  scanClient,
  type SourceEntry,
  zfsClient,
} from "../../mod.ts";
import { tempDir } from "../helpers/fs.ts";

/** A value of any type, passed where the types would not allow it. */
const bad = (v: unknown) => v as never;

function throwsType(f: () => unknown, message: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof TypeError && message.test(e.message));
}

async function rejectsType(f: () => Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(f, (e: unknown) => {
    assert.ok(e instanceof TypeError, `a TypeError, not ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("N2S.open and N2S.init name the option that is missing or of the wrong type", async () => {
  using tmp = tempDir();
  await rejectsType(() => N2S.open(bad(null)), /^N2S\.open: options must be an object, not null$/);
  await rejectsType(() => N2S.open(bad(undefined)), /N2S\.open: options must be an object/);
  await rejectsType(
    () => N2S.open(bad({})),
    /^N2S\.open: options\.repository must be a non-empty string, not undefined$/,
  );
  await rejectsType(
    () => N2S.open(bad({ repository: 42 })),
    /options\.repository .* the number 42/,
  );
  await rejectsType(
    () => N2S.open({ repository: tmp.path, index: bad(7) }),
    /N2S\.open: options\.index must be a string/,
  );
  await rejectsType(
    () => N2S.open({ repository: tmp.path, passphrase: bad(["pw"]) }),
    /options\.passphrase must be a string, not an array/,
  );
  await rejectsType(
    () => N2S.open({ repository: "", backend: bad({ put: 1 }) }),
    /options\.backend must be a Backend, with a put\(\) method/,
  );
  await rejectsType(() => N2S.init(bad(null)), /^N2S\.init: options must be an object, not null$/);
  await rejectsType(
    () => N2S.init(bad({ repository: `${tmp.path}/repo` })),
    /N2S\.init: options\.passphrase must be a non-empty string, not undefined/,
  );
  await rejectsType(
    () => N2S.init({ repository: `${tmp.path}/repo`, passphrase: "pw", logN: bad("10") }),
    /options\.logN must be an integer of at least 1, not the string "10"/,
  );
  // Nothing was created on the way.
  assert.deepEqual([...Deno.readDirSync(tmp.path)], []);
});

Deno.test("a store's methods name the argument that is null or of the wrong type", async () => {
  using tmp = tempDir();
  const store = await N2S.init({
    repository: `${tmp.path}/repo`,
    index: `${tmp.path}/i.sqlite`,
    passphrase: "pw",
    logN: 10,
  });
  try {
    const client = scanClient({ dir: tmp.path });
    await rejectsType(() => store.push(bad(null)), /^N2S\.push: options must be an object/);
    await rejectsType(
      () => store.push(bad({ source: "s" })),
      /^N2S\.push: options\.client must be an object, not undefined$/,
    );
    await rejectsType(
      () => store.push({ client: bad({ kind: "x" }), source: "s" }),
      /options\.client must be a Client, with a entries\(\) method/,
    );
    const noRoot = {
      kind: "mine",
      completeWithin: [],
      async *entries(): AsyncIterable<SourceEntry> {},
    };
    await rejectsType(
      () => store.push({ client: bad(noRoot), source: "s" }),
      /options\.client\.root must be a non-empty string, not undefined/,
    );
    await rejectsType(
      () => store.push({ client, source: bad(null) }),
      /^N2S\.push: options\.source must be a non-empty string, not null$/,
    );
    await rejectsType(
      () => store.push({ client, source: "s", concurrency: 0 }),
      /options\.concurrency must be an integer of at least 1, not the number 0/,
    );
    await rejectsType(() => store.resume(bad(null)), /^N2S\.resume: options must be an object/);

    await rejectsType(() => store.pull(bad(null), tmp.path), /^N2S\.pull: changeset must be/);
    await rejectsType(
      () => store.pull("latest", bad(undefined)),
      /^N2S\.pull: target must be a non-empty string, not undefined$/,
    );
    await rejectsType(() => store.pull("latest", tmp.path, bad(null)), /N2S\.pull: options must/);
    await rejectsType(
      () => store.pull("latest", tmp.path, { overwrite: bad("sometimes") }),
      /options\.overwrite must be one of "always", "if-changed", "never"/,
    );
    await rejectsType(
      () => store.pull("latest", tmp.path, { patterns: bad("*.txt") }),
      /options\.patterns must be an array of strings, not the string/,
    );

    await rejectsType(() => store.resolve(bad(null)), /^N2S\.resolve: ref must be/);
    await rejectsType(() => store.tree(bad(undefined)), /^N2S\.tree: ref must be/);
    await rejectsType(() => store.tree("latest", bad(null)), /^N2S\.tree: patterns must be/);
    await rejectsType(() => store.diff("latest", bad(null)), /^N2S\.diff: to must be/);
    await rejectsType(() => store.stats(bad(1)), /^N2S\.stats: ref must be/);
    await rejectsType(
      () => store.dump("latest", "a.txt", bad(null)),
      /^N2S\.dump: sink must be a function, not null$/,
    );
    await rejectsType(() => store.check(bad(null)), /^N2S\.check: options must be an object/);
    await rejectsType(() => store.forget(bad({})), /^N2S\.forget: options\.policy must be/);
    await rejectsType(
      () => store.prune({ maxUnused: 5 }),
      /^N2S\.prune: options\.maxUnused must be a number from 0 to 1, not the number 5$/,
    );
    await rejectsType(() => store.unlock(bad(null)), /^N2S\.unlock: options must be an object/);
    await rejectsType(() => store.lock(bad({ kind: "mine" })), /options\.kind must be one of/);

    throwsType(() => store.status(bad(5)), /^N2S\.status: id must be a string, not the number 5$/);
    throwsType(() => store.log(bad(null)), /^N2S\.log: source must be a string, not null$/);
    throwsType(() => store.ls(bad(undefined)), /^N2S\.ls: id must be a non-empty string/);
    throwsType(() => store.find(bad(null)), /^N2S\.find: pattern must be a non-empty string/);
  } finally {
    await store.close();
  }
});

Deno.test("clients, openLocalFile, bytesBody and openBackend name the argument that is wrong", async () => {
  throwsType(() => scanClient(bad(null)), /^scanClient: options must be an object, not null$/);
  throwsType(() => scanClient({ paths: bad("data") }), /options\.paths must be an array of str/);
  throwsType(() => scanClient({ dir: ".", since: bad({}) }), /options\.since must be a string/);
  throwsType(() => btrfsClient(bad(undefined)), /^btrfsClient: options must be an object/);
  throwsType(
    () => btrfsClient(bad({ snapshot: 5 })),
    /^btrfsClient: options\.snapshot must be a non-empty string, not the number 5$/,
  );
  throwsType(
    () => btrfsClient({ snapshot: "/snap", runner: bad({}) }),
    /options\.runner must be a Runner, with a run\(\) method/,
  );
  await rejectsType(() => zfsClient(bad(null)), /^zfsClient: options must be an object/);
  await rejectsType(() => zfsClient(bad({})), /^zfsClient: options\.snapshot must be/);
  await rejectsType(() => dsgClient(bad(null)), /^dsgClient: options must be an object/);
  await rejectsType(() => dsgClient(bad({ repoDir: null })), /options\.repoDir must be .* null/);
  await rejectsType(
    () => openLocalFile(bad(null), "a"),
    /^openLocalFile: root must be a non-empty/,
  );
  await rejectsType(
    () => openLocalFile("/tmp", bad(3)),
    /^openLocalFile: path must be a non-empty/,
  );
  throwsType(() => bytesBody(bad("text")), /^bytesBody: data must be a Uint8Array, not string$/);
  await rejectsType(() => openBackend(bad(null)), /^openBackend: location must be a non-empty/);
  await rejectsType(() => openBackend("/tmp/x", bad(null)), /^openBackend: options must be/);
});
