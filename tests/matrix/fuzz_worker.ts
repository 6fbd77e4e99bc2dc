// The in-process fuzzer, in a Worker so that the test can stop it if a parser hangs: mutants of
// a real repository's objects go straight to the parsers that read them (the container and blob
// openers, sync and streamed; readManifest; findPackEntries and the recovery's entry check;
// parseKeyFile and the key's unwrapping; readConfig). Each must fail with an error of its own
// (not the engine's: no TypeError, RangeError, SyntaxError), on one line naming the object, or
// give exactly what the intact object holds. A damaged pack loses only the entries the damage
// touches, and never silently.

import { createHash } from "node:crypto";
import { LocalBackend } from "../../lib/backends/local/backend.ts";
import { denoSuite } from "../../lib/crypto_deno.ts";
import { blobPartsSync, openBlob } from "../../lib/format/blob.ts";
import { toHex } from "../../lib/format/bytes.ts";
import { parseKeyFile, unwrapMasterKey } from "../../lib/format/keyfile.ts";
import { findPackEntries } from "../../lib/format/pack.ts";
import type { Suite } from "../../lib/format/suite.ts";
import { intactEntries, type RecoveryProblem } from "../../lib/recover.ts";
import { readManifest } from "../../lib/repository/manifest.ts";
import { openRepository, readConfig, Repository } from "../../lib/repository/repository.ts";
import { seeded } from "../../lib/backends/wrappers.ts";
import {
  applyMutation,
  describeMutation,
  drawMutation,
  drawObject,
  isEngineError,
  type Mutation,
  readObjects,
  type StoredObject,
} from "./fuzz.ts";

/** What the test sends. */
export interface FuzzJob {
  repo: string;
  passphrase: string;
  seed: number;
  cases: number;
  /** Run only this case (a replay). */
  only?: number;
  /** A scratch directory for the objects that parsers read through a backend. */
  scratch: string;
}

/** What the Worker reports. */
export type FuzzReport =
  | { t: "case"; i: number; desc: string }
  | { t: "violation"; i: number; desc: string; problem: string }
  | { t: "done"; outcomes: Record<string, number> }
  | { t: "error"; message: string };

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** What a parser's failure must be: its own error, on one line, naming the object. */
function badError(e: unknown, names: string[]): string | null {
  if (isEngineError(e)) {
    return `an engine error escaped: ${e instanceof Error ? e.name : typeof e}: ${message(e)}`;
  }
  const m = message(e);
  if (m === "" || m.includes("\n")) return `the message is not one line: ${JSON.stringify(m)}`;
  if (!names.some((n) => m.includes(n))) {
    return `the message does not name ${names[0]}: ${JSON.stringify(m)}`;
  }
  return null;
}

/** Splits bytes into chunks at seeded places, as a network stream would deliver them. */
async function* chunked(bytes: Uint8Array, random: () => number): AsyncGenerator<Uint8Array> {
  let at = 0;
  while (at < bytes.length) {
    const n = 1 + Math.floor(random() * Math.min(bytes.length - at, 70_000));
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

interface Context {
  suite: Suite;
  repo: Repository;
  /** Content hash of every blob by id (from the intact repository). */
  content: Map<string, string>;
  /** The intact manifests, as JSON. */
  manifests: Map<string, string>;
  /** The intact pack entries by pack key. */
  packEntries: Map<string, string[]>;
  scratch: Repository;
  scratchDir: string;
}

/** Opens a blob container both ways; returns its content hash, or the error. */
async function openBoth(
  c: Context,
  blobId: string,
  bytes: Uint8Array,
  random: () => number,
): Promise<{ sync: string | Error; stream: string | Error }> {
  let sync: string | Error;
  try {
    const h = createHash("sha256");
    for (const p of blobPartsSync(c.suite, c.repo.keys, blobId, bytes)) {
      if ("data" in p) h.update(p.data);
    }
    sync = h.digest("hex");
  } catch (e) {
    sync = e as Error;
  }
  let stream: string | Error;
  try {
    const h = createHash("sha256");
    for await (const p of openBlob(c.suite, c.repo.keys, blobId, chunked(bytes, random))) {
      if ("data" in p) h.update(p.data);
    }
    stream = h.digest("hex");
  } catch (e) {
    stream = e as Error;
  }
  return { sync, stream };
}

/** The problems of one blob container's mutant; `names` are what an error may name it by. */
async function checkBlob(
  c: Context,
  blobId: string,
  bytes: Uint8Array,
  random: () => number,
  names: string[],
): Promise<{ problems: string[]; accepted: boolean }> {
  const { sync, stream } = await openBoth(c, blobId, bytes, random);
  const problems: string[] = [];
  for (const [how, r] of [["in memory", sync], ["streamed", stream]] as const) {
    if (typeof r === "string") {
      if (r !== c.content.get(blobId)) problems.push(`${how}: opened with other content`);
    } else {
      const bad = badError(r, names);
      if (bad) problems.push(`${how}: ${bad}`);
    }
  }
  if ((typeof sync === "string") !== (typeof stream === "string")) {
    problems.push(
      `opened in memory ${typeof sync === "string" ? "fine" : "with an error"}, streamed ` +
        (typeof stream === "string" ? "fine" : "with an error"),
    );
  }
  return { problems, accepted: typeof sync === "string" };
}

async function fuzzCase(
  c: Context,
  o: StoredObject,
  m: Mutation,
  mutant: Uint8Array,
  random: () => number,
): Promise<{ problems: string[]; accepted: boolean }> {
  const id = o.key.slice(o.key.lastIndexOf("/") + 1);
  switch (o.kind) {
    case "blob":
      return await checkBlob(c, id, mutant, random, [id]);
    case "manifest": {
      await Deno.writeFile(`${c.scratchDir}/changesets/${id}`, mutant);
      try {
        const got = await readManifest(c.scratch, id);
        const same = JSON.stringify(got) === c.manifests.get(id);
        return { problems: same ? [] : ["read with other entries or header"], accepted: true };
      } catch (e) {
        const bad = badError(e, [`changeset ${id}`]);
        return { problems: bad ? [bad] : [], accepted: false };
      }
    }
    case "pack": {
      const problems: string[] = [];
      let found;
      try {
        found = findPackEntries(mutant);
      } catch (e) {
        return { problems: [`findPackEntries threw: ${message(e)}`], accepted: false };
      }
      for (const e of found) {
        if (e.offset < 40 || e.offset + e.length > mutant.length) {
          problems.push(`an entry out of bounds: ${JSON.stringify(e)}`);
        }
      }
      const reported: RecoveryProblem[] = [];
      let intact;
      try {
        intact = await intactEntries(c.suite, c.repo.keys, mutant, o.key, reported);
      } catch (e) {
        return { problems: [...problems, `intactEntries threw: ${message(e)}`], accepted: false };
      }
      for (const { entry } of intact) {
        const bytes = mutant.subarray(entry.offset, entry.offset + entry.length);
        const r = await checkBlob(c, entry.blobId, bytes, random, [entry.blobId]);
        if (!r.accepted) problems.push(`entry ${entry.blobId} called intact does not open`);
        problems.push(...r.problems);
      }
      const original = c.packEntries.get(o.key)!;
      const kept = new Set(intact.map((x) => x.entry.blobId));
      const lost = original.filter((b) => !kept.has(b));
      if (lost.length > 0 && reported.length === 0) {
        problems.push(`${lost.length} entries lost without a word`);
      }
      for (const p of reported) {
        if (p.message.includes("\n")) problems.push(`a problem on two lines: ${p.message}`);
      }
      // One byte, or one length field, damages at most the one entry it lies in.
      if ((m.op === "flip" || m.op === "u32") && lost.length > 1) {
        problems.push(`one damaged field lost ${lost.length} entries`);
      }
      return { problems, accepted: reported.length === 0 };
    }
    case "key": {
      let k;
      try {
        k = parseKeyFile(mutant, o.key);
      } catch (e) {
        const bad = badError(e, [o.key]);
        return { problems: bad ? [bad] : [], accepted: false };
      }
      try {
        const master = await unwrapMasterKey(c.suite, k, "matrix pw");
        const same = toHex(master) === toHex(c.repo.master);
        return { problems: same ? [] : ["unwrapped another master key"], accepted: true };
      } catch (e) {
        const bad = badError(e, [o.key, "passphrase", "key"]);
        return { problems: bad ? [bad] : [], accepted: false };
      }
    }
    case "config": {
      await Deno.writeFile(`${c.scratchDir}/config`, mutant);
      try {
        const cfg = await readConfig(c.scratch.backend);
        const problems: string[] = [];
        if (!Number.isSafeInteger(cfg.pack_size) || cfg.pack_size < 1) problems.push("pack_size");
        return { problems, accepted: true };
      } catch (e) {
        const bad = badError(e, [c.scratch.backend.name]);
        return { problems: bad ? [bad] : [], accepted: false };
      }
    }
  }
}

async function setup(job: FuzzJob): Promise<{ c: Context; objects: StoredObject[] }> {
  const suite = await denoSuite();
  const repo = await openRepository(new LocalBackend(job.repo), suite, job.passphrase);
  const objects = readObjects(job.repo);
  const content = new Map<string, string>();
  const manifests = new Map<string, string>();
  const packEntries = new Map<string, string[]>();
  const collect = (blobId: string, bytes: Uint8Array) => {
    const h = createHash("sha256");
    for (const p of blobPartsSync(suite, repo.keys, blobId, bytes)) {
      if ("data" in p) h.update(p.data);
    }
    content.set(blobId, h.digest("hex"));
  };
  for (const o of objects) {
    const id = o.key.slice(o.key.lastIndexOf("/") + 1);
    if (o.kind === "blob") collect(id, o.bytes);
    if (o.kind === "pack") {
      const entries = findPackEntries(o.bytes);
      packEntries.set(o.key, entries.map((e) => e.blobId));
      for (const e of entries) collect(e.blobId, o.bytes.subarray(e.offset, e.offset + e.length));
    }
    if (o.kind === "manifest") {
      manifests.set(id, JSON.stringify(await readManifest(repo, id)));
    }
  }
  Deno.mkdirSync(`${job.scratch}/changesets`, { recursive: true });
  const scratch = new Repository(
    new LocalBackend(job.scratch),
    repo.config,
    repo.master,
    suite,
    "x",
  );
  return {
    c: { suite, repo, content, manifests, packEntries, scratch, scratchDir: job.scratch },
    objects,
  };
}

async function run(job: FuzzJob, post: (r: FuzzReport) => void): Promise<void> {
  const { c, objects } = await setup(job);
  const byKey = new Map(objects.map((o) => [o.key, o]));
  const outcomes: Record<string, number> = {};
  for (let i = 0; i < job.cases; i++) {
    if (job.only !== undefined && i !== job.only) continue;
    // Each case has its own generator, so that one case replays alone.
    const random = seeded(job.seed * 1_000_003 + i);
    const o = drawObject(objects, random);
    const m = drawMutation(o, objects.filter((x) => x !== o), random);
    const desc = describeMutation(o, m);
    post({ t: "case", i, desc });
    const mutant = applyMutation(o, m, byKey);
    const same = sha(mutant) === sha(o.bytes);
    const r = await fuzzCase(c, o, m, mutant, random);
    const outcome = `${o.kind} ${same ? "unchanged" : r.accepted ? "accepted" : "rejected"}`;
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    for (const problem of r.problems) post({ t: "violation", i, desc, problem });
  }
  post({ t: "done", outcomes });
}

type Scope = {
  addEventListener(type: "message", f: (e: MessageEvent) => void): void;
  postMessage(m: unknown): void;
};

const WorkerScope = (globalThis as { WorkerGlobalScope?: new () => unknown }).WorkerGlobalScope;
if (WorkerScope && globalThis instanceof WorkerScope) {
  const scope = globalThis as unknown as Scope;
  scope.addEventListener("message", (e: MessageEvent) => {
    run(e.data as FuzzJob, (r) => scope.postMessage(r)).catch((err) =>
      scope.postMessage({ t: "error", message: err?.stack ?? String(err) })
    );
  });
}
