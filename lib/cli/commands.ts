// The core commands: init, push, pull, status, ls, find, log.

import { displayPath } from "../format/names.ts";
import { hostname } from "node:os";
import { N2S } from "../n2s.ts";
import { scanClient } from "../clients/scan.ts";
import { btrfsClient } from "../clients/btrfs.ts";
import { zfsClient } from "../clients/zfs.ts";
import { dsgClient } from "../clients/dsg.ts";
import type { Client } from "../clients/client.ts";
import { defaultIndexPath } from "../paths.ts";
import { thisHost } from "../repository/lock.ts";
import { getPassphrase, UsageError } from "./prompt.ts";
import { formatBytes, ProgressBar } from "./progress.ts";
import { lockMessages } from "./lock.ts";
import {
  type Command,
  indexLocation,
  kdfLogN,
  note,
  openStore,
  out,
  parse,
  printJson,
  REPO_OPTIONS,
  repositoryLocation,
  table,
} from "./common.ts";
import { resolve } from "node:path";
import type { OptionTable } from "./spec.ts";
import { testClock } from "../testing/clock.ts";
import { isLatest } from "../inspect/resolve.ts";
import { noMatchError, pathMatcher, unmatchedPatterns } from "../glob.ts";
import { type Overwrite, OVERWRITE_RULES } from "../pull/overwrite.ts";
import type { PullResult } from "../pull/restore.ts";

const label = () => `${Deno.env.get("USER") ?? "user"}@${hostname()}`;

/** A byte count given on the command line (plain bytes, or with a KiB/MiB/GiB suffix). */
function byteCount(text: string | undefined, flag: string, min: number, max: number) {
  if (text === undefined) return undefined;
  const m = /^(\d+)\s*(|k|kib|m|mib|g|gib)$/i.exec(text.trim());
  const unit = { "": 1, k: 1024, kib: 1024, m: 1 << 20, mib: 1 << 20, g: 1 << 30, gib: 1 << 30 };
  const n = m ? Number(m[1]) * unit[m[2].toLowerCase() as keyof typeof unit] : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `${flag} takes a size from ${min} bytes to 1 GiB (e.g. 16MiB), not "${text}"`,
    );
  }
  return n;
}

const INIT_OPTIONS = {
  "pack-size": {
    type: "string",
    value: "BYTES",
    help: "the size packs of small blobs are filled to (KiB, MiB or GiB suffix)",
    byDefault: "16MiB",
    example: "--pack-size 32MiB",
  },
  "pack-threshold": {
    type: "string",
    value: "BYTES",
    help: "blobs smaller than this (sealed) travel in packs; larger ones are objects of their own",
    byDefault: "1MiB",
    example: "--pack-threshold 256KiB",
  },
} as const satisfies OptionTable;

const PUSH_OPTIONS = {
  scan: {
    type: "string",
    value: "DIR",
    help: "push what changed in a directory tree since the source's last changeset",
    byDefault: "none (PATH... pushes the paths given)",
    example: "n2s push --scan ~/data --source data",
    complete: "dir",
  },
  since: {
    type: "string",
    value: "24h|ISO",
    help: "with --scan or PATH: only files modified since then (a duration or a date)",
    byDefault: "every file",
    example: "--since 2026-11-01",
  },
  exclude: {
    type: "string",
    multiple: true,
    value: "GLOB",
    help: "leave out paths that match (relative to the scanned directory)",
    byDefault: "nothing left out",
    example: "--exclude '**/node_modules/**'",
  },
  include: {
    type: "string",
    multiple: true,
    value: "GLOB",
    help: "push only paths that match",
    byDefault: "every path",
    example: "--include '**/*.csv'",
  },
  btrfs: {
    type: "string",
    value: "SNAPSHOT",
    help: "push a btrfs snapshot (the changes since --parent, else all of it)",
    byDefault: "none",
    example: "--btrfs /snap/home.2026-12-02 --parent /snap/home.2026-12-01",
    complete: "dir",
  },
  zfs: {
    type: "string",
    value: "DATASET@SNAP",
    help: "push a ZFS snapshot (the changes since --parent, else all of it)",
    byDefault: "none",
    example: "--zfs tank/home@today --parent @yesterday",
  },
  dsg: {
    type: "string",
    value: "REPO_DIR",
    help: "push the data files of a dsg repository",
    byDefault: "none",
    example: "--dsg ~/projects/survey",
    complete: "dir",
  },
  parent: {
    type: "string",
    value: "SNAPSHOT",
    help: "with --btrfs or --zfs: the earlier snapshot to compare with",
    byDefault: "none: the whole snapshot",
    example: "--parent @yesterday",
  },
  source: {
    type: "string",
    value: "NAME",
    help: "the source the changeset belongs to (a chain of changesets)",
    byDefault: "host:path for a path or --scan, the client's name otherwise",
    example: "--source laptop-home",
  },
  "changeset-name": {
    type: "string",
    value: "NAME",
    help: "a name for the new changeset",
    byDefault: "none",
    example: '--changeset-name "daily-backup"',
  },
  resume: {
    type: "boolean",
    help: "complete interrupted pushes (of --source, or of every source)",
    byDefault: "off",
    example: "n2s push --resume",
  },
  concurrency: {
    type: "string",
    value: "N",
    help: "how many uploads run at once",
    byDefault: "the backend's (8)",
    example: "--concurrency 16",
  },
  "no-wait": {
    type: "boolean",
    help: "fail at once when another push of the source holds its lock",
    byDefault: "off: wait for the lock",
    example: "n2s push --scan ~/data --no-wait",
  },
  shared: {
    type: "boolean",
    help: "share one push of a --scan source with other processes running the same command " +
      "(on machines sharing the index, the repository and the directory at the same path)",
    byDefault: "off: one process pushes",
    example: "n2s push --scan /srv/archive --source archive --shared",
  },
  lease: {
    type: "string",
    value: "SECONDS",
    help: "with --shared: how long a worker's claim on files holds when the worker stops",
    byDefault: "120",
    example: "--lease 300",
  },
} as const satisfies OptionTable;

const PULL_OPTIONS = {
  "changeset-id": {
    type: "string",
    value: "ID",
    help: "the changeset to restore: an id, a unique prefix, latest or latest:SOURCE",
    byDefault: "none: required",
    example: "--changeset-id latest:data",
  },
  "target-path": {
    type: "string",
    value: "DIR",
    help: "the directory to restore into (created when missing)",
    byDefault: "none: required",
    example: "--target-path /tmp/restore",
    complete: "dir",
  },
  overwrite: {
    type: "string",
    value: "if-changed|always|never",
    help: "what to do with a file already in the target",
    byDefault: "if-changed: replace it when its content or metadata differ",
    example: "--overwrite never",
    complete: ["if-changed", "always", "never"],
  },
  "dry-run": {
    type: "boolean",
    help: "say what would be written, replaced and removed; write nothing",
    byDefault: "off",
    example: "n2s pull --changeset-id latest --target-path . --dry-run",
  },
  "no-owner": {
    type: "boolean",
    help: "do not restore owner and group (only root restores them anyway)",
    byDefault: "off",
    example: "--no-owner",
  },
  concurrency: {
    type: "string",
    value: "N",
    help: "how many downloads run at once",
    byDefault: "the backend's (8)",
    example: "--concurrency 4",
  },
} as const satisfies OptionTable;

const LS_OPTIONS = {
  changed: {
    type: "boolean",
    help: "only the entries the changeset itself records (its changes), not the full tree",
    byDefault: "off: the full tree a pull would restore",
    example: "n2s ls latest --changed",
  },
} as const satisfies OptionTable;

const LOG_OPTIONS = {
  source: {
    type: "string",
    value: "NAME",
    help: "only the chain of this source",
    byDefault: "every source",
    example: "--source laptop-home",
  },
  host: {
    type: "string",
    value: "NAME",
    help: "only changesets pushed from this machine (an index many machines share)",
    byDefault: "every machine",
    example: "--host nas1",
  },
} as const satisfies OptionTable;

const FILTER_OPTIONS = {
  source: {
    type: "string",
    value: "NAME",
    help: "only changesets of this source",
    byDefault: "every source",
    example: "--source laptop-home",
  },
  host: LOG_OPTIONS.host,
} as const satisfies OptionTable;

const init: Command = {
  summary: "create a repository and its first key",
  usage: "n2s init [--repo LOCATION] [--passphrase-file FILE] [--pack-size BYTES] " +
    "[--pack-threshold BYTES]",
  options: INIT_OPTIONS,
  examples: ["n2s init --repo /srv/n2s", "n2s init --repo sftp://nas/backups/n2s"],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...INIT_OPTIONS }, this.usage);
    const { location } = repositoryLocation(values.repo);
    const packSize = byteCount(values["pack-size"], "--pack-size", 4096, 1 << 30);
    const packThreshold = byteCount(values["pack-threshold"], "--pack-threshold", 1, 1 << 30);
    const passphrase = await getPassphrase(values["passphrase-file"], true);
    const store = await N2S.init({
      repository: location,
      index: indexLocation(values.index),
      passphrase,
      label: label(),
      logN: kdfLogN(),
      packSize,
      packThreshold,
    });
    try {
      const repo = await store.repository();
      if (values.json) {
        printJson({
          repository: location,
          id: store.config.id,
          index: store.indexPath,
          key: repo.keyId,
        });
      } else {
        out(`created repository ${store.config.id} at ${location}`);
        out(`index: ${store.indexPath}`);
        out(`key file: keys/${repo.keyId} in the repository (export a copy with "n2s key export")`);
      }
    } finally {
      await store.close();
    }
    return 0;
  },
};

/** Opens the store for a push, creating the embedded default repository on first use. */
async function openForPush(
  values: { repo?: string; index?: string; "passphrase-file"?: string },
): Promise<N2S> {
  const { location, isDefault } = repositoryLocation(values.repo);
  if (isDefault) {
    try {
      await Deno.stat(`${location}/config`);
    } catch {
      const passphrase = await getPassphrase(values["passphrase-file"], true);
      const store = await N2S.init({
        repository: location,
        index: indexLocation(values.index),
        passphrase,
        label: label(),
        logN: kdfLogN(),
      });
      const repo = await store.repository();
      note(`created a new repository at ${location}`);
      note(`index: ${store.indexPath ?? defaultIndexPath(store.config.id)}`);
      note(`key file: ${location}/keys/${repo.keyId}`);
      note("keep your passphrase safe: without it (or another key) nothing can be restored");
      return store;
    }
  }
  return await openStore(values);
}

function printProblems(problems: { path: string; message: string }[]): void {
  for (const p of problems) {
    note(p.path === "" ? `n2s: ${p.message}` : `n2s: ${displayPath(p.path)}: ${p.message}`);
  }
}

/** Builds the client a push names: paths, --scan, --btrfs, --zfs or --dsg. */
async function chooseClient(
  values: {
    scan?: string;
    btrfs?: string;
    zfs?: string;
    dsg?: string;
    parent?: string;
    since?: string;
    exclude?: string[];
    include?: string[];
    source?: string;
  },
  positionals: string[],
): Promise<{ client: Client; source: string }> {
  const kinds = (["scan", "btrfs", "zfs", "dsg"] as const).filter((k) => values[k] !== undefined);
  if (kinds.length > 1) throw new UsageError(`choose one of --${kinds.join(", --")}`);
  const kind = kinds[0];
  if (kind && positionals.length > 0) {
    throw new UsageError(`--${kind} takes no other paths (got ${positionals.join(" ")})`);
  }
  const filtered = values.since !== undefined || (values.exclude?.length ?? 0) > 0 ||
    (values.include?.length ?? 0) > 0;
  if (kind !== "scan" && kind !== undefined && filtered) {
    throw new UsageError("--since, --exclude and --include go with --scan or PATH...");
  }
  if (kind !== "btrfs" && kind !== "zfs" && values.parent) {
    throw new UsageError("--parent goes with --btrfs or --zfs");
  }
  const filters = { since: values.since, exclude: values.exclude, include: values.include };
  if (kind === undefined || kind === "scan") {
    const paths = kind === "scan" ? [values.scan!] : positionals;
    for (const p of paths) {
      try {
        await Deno.lstat(p);
      } catch {
        throw new UsageError(`${p}: no such file or directory`);
      }
    }
    if (kind === "scan" && !(await Deno.stat(paths[0])).isDirectory) {
      throw new UsageError(`--scan ${paths[0]}: not a directory`);
    }
    let client: Client;
    try {
      client = kind === "scan"
        ? scanClient({ dir: values.scan!, ...filters })
        : scanClient({ paths, ...filters });
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
    return { client, source: values.source ?? `${thisHost()}:${client.root}` };
  }
  if (kind === "btrfs") {
    if (!values.source) {
      throw new UsageError(
        "--btrfs needs --source NAME (one name for every snapshot of a subvolume)",
      );
    }
    return {
      client: btrfsClient({ snapshot: values.btrfs!, parent: values.parent }),
      source: values.source,
    };
  }
  if (kind === "zfs") {
    const client = await zfsClient({ snapshot: values.zfs!, parent: values.parent });
    return { client, source: values.source ?? `zfs:${values.zfs!.split("@")[0]}` };
  }
  const client = await dsgClient({ repoDir: values.dsg! });
  return { client, source: values.source ?? client.defaultSource };
}

const push: Command = {
  summary: "store files and directories as a new changeset",
  usage:
    "n2s push PATH... | --scan DIR [--since 24h|ISO] [--exclude GLOB]... [--include GLOB]... " +
    "| --btrfs SNAPSHOT [--parent SNAPSHOT] | --zfs DATASET@SNAP [--parent @SNAP] " +
    "| --dsg REPO_DIR; [--source NAME] [--changeset-name NAME] [--no-wait] " +
    "[--shared [--lease SECONDS]]; " +
    "n2s push --resume [--source NAME] [--no-wait]",
  options: PUSH_OPTIONS,
  examples: [
    "n2s push ~/data --source data",
    "n2s push --scan ~/data --exclude '**/.cache/**' --source data",
    "n2s push --zfs tank/home@today --parent @yesterday",
    "n2s push --resume",
  ],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...PUSH_OPTIONS }, this.usage);
    const lock = lockMessages("push", !values["no-wait"]);
    const concurrency = values.concurrency ? Number(values.concurrency) : undefined;
    if (concurrency !== undefined && !(concurrency >= 1)) {
      throw new UsageError("--concurrency must be at least 1");
    }
    const fromClient = values.scan ?? values.btrfs ?? values.zfs ?? values.dsg;
    if (!values.resume && positionals.length === 0 && fromClient === undefined) {
      throw new UsageError(`nothing to push\nusage: ${this.usage}`);
    }
    const chosen = values.resume && positionals.length === 0 && fromClient === undefined
      ? undefined
      : await chooseClient(values, positionals);
    const store = await openForPush(values);
    const bar = new ProgressBar("push");
    try {
      if (chosen === undefined) {
        const r = await store.resume({
          source: values.source,
          lock,
          concurrency,
          onProgress: (p) => bar.update(p),
        });
        bar.done();
        printProblems(r.problems);
        if (values.json) printJson(r);
        else out(r.resumed.length ? `resumed ${r.resumed.join(", ")}` : "nothing to resume");
        return r.problems.length ? 1 : 0;
      }
      const { client } = chosen;
      const { source } = chosen;
      if (values.shared) {
        if (values.scan === undefined && positionals.length !== 1) {
          throw new UsageError("--shared pushes one directory: give --scan DIR or one PATH");
        }
        const lease = values.lease === undefined ? undefined : Number(values.lease);
        if (lease !== undefined && !(lease > 0)) {
          throw new UsageError("--lease must be a positive number of seconds");
        }
        const r = await store.pushShared({
          client,
          source,
          now: testClock(),
          name: values["changeset-name"],
          lock,
          concurrency,
          leaseMs: lease === undefined ? undefined : lease * 1000,
          onProgress: (p) => bar.update(p),
        });
        bar.done();
        printProblems(r.problems);
        if (values.json) printJson({ source, ...r });
        else if (r.changeset === null) out(`no changes in ${source}`);
        else {
          out(
            `changeset ${r.changeset} of ${source}: ${r.files} entries; this worker settled ` +
              `${r.claimed}` + (r.committed ? " and committed it" : ""),
          );
        }
        return r.problems.length ? 1 : 0;
      }
      if (values.lease !== undefined) throw new UsageError("--lease goes with --shared");
      const r = await store.push({
        client,
        source,
        now: testClock(),
        name: values["changeset-name"],
        lock,
        concurrency,
        onProgress: (p) => bar.update(p),
      });
      bar.done();
      for (const n of r.notes) note(`n2s: note: ${displayPath(n.path)}: ${n.message}`);
      printProblems(r.problems);
      if (values.json) printJson({ source, ...r });
      else {
        for (const id of r.resumed) out(`completed interrupted changeset ${id}`);
        if (r.changeset === null) out(`no changes in ${source} (${r.unchanged} files unchanged)`);
        else {
          out(
            `changeset ${r.changeset} of ${source}: ${r.files} entries, ` +
              `${r.uploaded} files uploaded (${
                formatBytes(r.uploadedBytes)
              }), ${r.present} already stored, ` +
              `${r.deleted} deleted, ${r.links} links, ${r.unchanged} unchanged` +
              (r.problems.length ? `, ${r.problems.length} problems` : ""),
          );
        }
      }
      return r.problems.length ? 1 : 0;
    } finally {
      bar.done();
      await store.close();
    }
  },
};

const pull: Command = {
  summary: "restore a changeset (or some of its paths) into a directory",
  usage: "n2s pull --changeset-id ID|latest[:SOURCE] --target-path DIR [--no-owner] " +
    "[--overwrite if-changed|always|never] [--dry-run] [PATH|GLOB...]",
  options: PULL_OPTIONS,
  examples: [
    "n2s pull --changeset-id latest --target-path /tmp/restore",
    "n2s pull --changeset-id 01KB3 --target-path /tmp/restore 'reports/**'",
    "n2s pull --changeset-id latest:data --target-path ~/data --overwrite never --dry-run",
  ],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...PULL_OPTIONS }, this.usage);
    if (!values["changeset-id"] || !values["target-path"]) {
      throw new UsageError(`--changeset-id and --target-path are required\nusage: ${this.usage}`);
    }
    const overwrite = values.overwrite ?? "if-changed";
    if (!(OVERWRITE_RULES as readonly string[]).includes(overwrite)) {
      throw new UsageError(`--overwrite takes ${OVERWRITE_RULES.join(", ")}, not "${overwrite}"`);
    }
    const store = await openStore(values);
    const bar = new ProgressBar("pull");
    try {
      const r = await store.pull(values["changeset-id"], resolve(values["target-path"]), {
        patterns: positionals,
        concurrency: values.concurrency ? Number(values.concurrency) : undefined,
        onProgress: (p) => bar.update(p),
        owner: values["no-owner"] ? false : undefined,
        lock: lockMessages("pull"),
        overwrite: overwrite as Overwrite,
        dryRun: values["dry-run"],
      });
      bar.done();
      if (values["dry-run"]) {
        if (values.json) printJson(r);
        else printDryRun(r, values["target-path"]);
        return r.problems.length ? 1 : 0;
      }
      if (r.leftovers) {
        note(
          `n2s: removed ${r.leftovers} temporary file${r.leftovers === 1 ? "" : "s"} that an ` +
            `interrupted pull left in ${values["target-path"]}`,
        );
      }
      printProblems(r.problems);
      if (values.json) printJson(r);
      else {
        for (const p of r.replaced) out(`replaced ${displayPath(p)}`);
        for (const p of r.kept) out(`kept ${displayPath(p)} (it differs; --overwrite never)`);
        const other = [
          r.dirs ? `${r.dirs} directories` : "",
          r.specials ? `${r.specials} special files` : "",
        ].filter((x) => x !== "").join(", ");
        out(
          `restored ${r.files} files (${formatBytes(r.bytes)}), ${r.links} links` +
            (other ? `, ${other}` : "") + ` of changeset ${r.changeset} into ` +
            `${values["target-path"]}` +
            (r.problems.length ? `; ${r.problems.length} could not be restored` : ""),
        );
        const existing = [
          r.replaced.length ? `${r.replaced.length} replaced` : "",
          r.kept.length ? `${r.kept.length} kept` : "",
          r.unchanged.length ? `${r.unchanged.length} already up to date` : "",
        ].filter((x) => x !== "");
        if (existing.length) out(`files already in the target: ${existing.join(", ")}`);
      }
      return r.problems.length ? 1 : 0;
    } finally {
      bar.done();
      await store.close();
    }
  },
};

/** What a dry run would do, one line per path, then the totals. */
function printDryRun(r: PullResult & { changeset: string }, target: string): void {
  const lines: [string, string][] = [
    ...(r.created ?? []).map((p): [string, string] => [p, "would write"]),
    ...r.replaced.map((p): [string, string] => [p, "would replace"]),
    ...r.kept.map((p): [string, string] => [p, "would keep (it differs; --overwrite never)"]),
    ...r.unchanged.map((p): [string, string] => [p, "unchanged"]),
  ].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  for (const [p, what] of lines) out(`${what} ${displayPath(p)}`);
  if (r.leftovers) out(`would remove ${r.leftovers} temporary files an interrupted pull left`);
  printProblems(r.problems);
  out(
    `dry run of changeset ${r.changeset} into ${target}: ${r.created?.length ?? 0} to write, ` +
      `${r.replaced.length} to replace, ${r.kept.length} to keep, ${r.unchanged.length} ` +
      `unchanged; nothing was written`,
  );
}

/** The id a reference names: `latest` and `latest:SOURCE` resolved, anything else as given. */
export async function changesetId<T extends string | undefined>(
  store: N2S,
  ref: T,
): Promise<T> {
  return ref !== undefined && isLatest(ref) ? (await store.resolve(ref)).id as T : ref;
}

/** Opens the store, runs `fn`, and always closes the store; returns exit code 0. */
export async function withStore(
  values: { repo?: string; index?: string; "passphrase-file"?: string },
  fn: (store: N2S) => void | Promise<void>,
): Promise<number> {
  const store = await openStore(values);
  try {
    await fn(store);
  } finally {
    await store.close();
  }
  return 0;
}

/**
 * Hints on stderr for what the index shows: unfinished pushes that `push --resume` completes,
 * and an empty index beside a repository that holds changesets (a new machine, a lost index).
 */
async function hints(
  store: N2S,
  rows: { id: string; source: string; status: string; host: string | null }[],
) {
  for (const c of rows) {
    if (c.status === "pending" || c.status === "uploading") {
      // On an index several machines share, the push may be running on another one.
      const where = c.host !== null && c.host !== thisHost() ? ` on ${c.host}` : "";
      note(
        `n2s: changeset ${c.id} of ${c.source} is unfinished; unless a push of it is running` +
          `${where}, "n2s push --resume" completes it`,
      );
    }
  }
  if (rows.length > 0 || store.status().length > 0) return;
  for await (const o of store.backend.list("changesets/")) {
    note(
      `n2s: the index ${store.indexPath} holds no changesets, but the repository does ` +
        `(${o.key}); "n2s recover index" reads them into it`,
    );
    break;
  }
}

const status: Command = {
  summary: "changesets with status, counts and times",
  usage: "n2s status [ID] [--source NAME] [--host NAME] [--json]",
  options: FILTER_OPTIONS,
  examples: ["n2s status", "n2s status 01KB3 --json", "n2s status --host nas1 --json"],
  async run(args) {
    const { values, positionals } = parse(
      args,
      { ...REPO_OPTIONS, ...FILTER_OPTIONS },
      this.usage,
    );
    return await withStore(values, async (store) => {
      const rows = store.status(await changesetId(store, positionals[0]), {
        source: values.source,
        host: values.host,
      });
      await hints(store, rows);
      if (values.json) printJson(rows);
      else if (rows.length === 0) out("no changesets yet");
      else {
        out(table(
          [
            "ID",
            "STATUS",
            "SOURCE",
            "HOST",
            "NAME",
            "FILES",
            "BYTES",
            "UPLOADED",
            "CREATED",
            "COMPLETED",
          ],
          rows.map((c) => [
            c.id,
            c.status,
            c.source,
            c.host ?? "-",
            c.name ?? "-",
            String(c.files),
            formatBytes(c.bytes),
            `${c.uploaded} (${formatBytes(c.uploadedBytes)})`,
            c.created,
            c.completed ?? "-",
          ]),
        ));
      }
    });
  },
};

const ls: Command = {
  summary: "the full tree at a changeset (--changed: only that changeset's entries)",
  usage: "n2s ls ID|latest[:SOURCE] [PATH|GLOB...] [--changed] [--json]",
  options: LS_OPTIONS,
  examples: ["n2s ls latest", "n2s ls latest:data 'reports/**/*.csv'", "n2s ls 01KB3 --changed"],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...LS_OPTIONS }, this.usage);
    if (positionals.length < 1) {
      throw new UsageError(`one changeset id is needed\nusage: ${this.usage}`);
    }
    const [ref, ...patterns] = positionals;
    // A tree from a chain with a hole is incomplete: it is listed, and the command exits 1.
    let incomplete = false;
    const code = await withStore(values, async (store) => {
      if (values.changed) {
        const { id } = await store.resolve(ref);
        const all = store.ls(id);
        const unmatched = unmatchedPatterns(patterns, all.map((f) => f.path));
        if (unmatched.length > 0) throw noMatchError(unmatched, `changeset ${id}`);
        const match = pathMatcher(patterns);
        const rows = all.filter((f) => match(f.path));
        if (values.json) printJson(rows);
        else {
          out(table(
            ["PATH", "ACTION", "SIZE", "BLOB", "CONFIRMED"],
            rows.map((f) => [
              displayPath(f.path),
              f.action === "link" || f.action === "hardlink"
                ? `${f.action} -> ${displayPath(f.target ?? "")}`
                : f.action,
              f.size === null ? "-" : String(f.size),
              f.blobId?.slice(0, 16) ?? "-",
              f.confirmed ?? f.status,
            ]),
          ));
        }
        return;
      }
      const tree = await store.tree(ref, patterns);
      printProblems(tree.problems);
      incomplete = tree.problems.length > 0;
      if (values.json) printJson(tree.entries);
      else {
        out(table(
          ["PATH", "ACTION", "SIZE", "MODE", "MTIME", "BLOB"],
          tree.entries.map((f) => [
            displayPath(f.path),
            f.action === "link" || f.action === "hardlink"
              ? `${f.action} -> ${displayPath(f.target ?? "")}`
              : f.action,
            f.size === null ? "-" : String(f.size),
            f.mode === null ? "-" : f.mode.toString(8).padStart(4, "0"),
            f.mtime === null ? "-" : new Date(f.mtime).toISOString(),
            f.blobId?.slice(0, 16) ?? "-",
          ]),
        ));
      }
    });
    return incomplete ? 1 : code;
  },
};

const find: Command = {
  summary: "every stored version of matching paths",
  usage: "n2s find PATTERN [--source NAME] [--host NAME] [--json]",
  options: FILTER_OPTIONS,
  examples: ["n2s find '**/*.csv'", "n2s find 'reports/2024/**' --json", "n2s find x --host nas1"],
  async run(args) {
    const { values, positionals } = parse(
      args,
      { ...REPO_OPTIONS, ...FILTER_OPTIONS },
      this.usage,
    );
    if (positionals.length !== 1) {
      throw new UsageError(`one pattern is needed\nusage: ${this.usage}`);
    }
    return await withStore(values, (store) => {
      const rows = store.find(positionals[0], { source: values.source, host: values.host });
      if (rows.length === 0) throw noMatchError([positionals[0]], "any stored changeset");
      if (values.json) printJson(rows);
      else {
        out(table(
          ["PATH", "CHANGESET", "ACTION", "SIZE", "CONFIRMED"],
          rows.map((
            f,
          ) => [
            displayPath(f.path),
            f.changeset,
            f.action,
            f.size === null ? "-" : String(f.size),
            f.confirmed ?? "-",
          ]),
        ));
      }
    });
  },
};

const log: Command = {
  summary: "the changeset chain of a source",
  usage: "n2s log [--source NAME] [--host NAME] [--json]",
  options: LOG_OPTIONS,
  examples: ["n2s log", "n2s log --source data --json", "n2s log --host nas1"],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...LOG_OPTIONS }, this.usage);
    return await withStore(values, async (store) => {
      const rows = store.log(values.source, { host: values.host });
      await hints(store, rows);
      if (values.json) printJson(rows);
      else {
        for (const c of rows) {
          out(
            `${c.id}  ${c.status.padEnd(9)} ${c.source}  ${c.name ?? ""}` +
              (c.host ? `  (${c.host})` : ""),
          );
          out(
            `    parent ${c.parent ?? "-"}; ${c.files} entries, ${
              formatBytes(c.bytes)
            }; created ${c.created}, completed ${c.completed ?? "-"}`,
          );
        }
      }
    });
  },
};

/** The core commands by name. */
export const CORE_COMMANDS: Record<string, Command> = { init, push, pull, status, ls, find, log };
