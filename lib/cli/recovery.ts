// The recovery commands: rebuild the index, restore blob and pack files with a key file, manage
// keys, and print the offline recovery page.

import { displayPath } from "../format/names.ts";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { openBackend } from "../backends/open.ts";
import { denoSuite } from "../crypto_deno.ts";
import { parseKeyFile, unwrapMasterKey } from "../format/keyfile.ts";
import { addKey, changePassphrase, findKey, keyFileBytes, removeKey } from "../keys.ts";
import { defaultIndexPath } from "../paths.ts";
import { decryptBlobFiles, inspectBlobFiles, rebuildIndexAt } from "../recover.ts";
import { parseIndexLocation } from "../index/sqlite.ts";
import {
  listKeyFiles,
  openRepository,
  readConfig,
  type Repository,
} from "../repository/repository.ts";
import { RECOVERY_PAGE_HTML } from "../recovery_page/page.ts";
import {
  type Command,
  indexLocation,
  kdfLogN,
  note,
  out,
  parse,
  printJson,
  REPO_OPTIONS,
  repositoryLocation,
  table,
} from "./common.ts";
import { formatBytes } from "./progress.ts";
import { getPassphrase, promptHidden, UsageError } from "./prompt.ts";
import type { OptionTable } from "./spec.ts";

const label = () => `${Deno.env.get("USER") ?? "user"}@${hostname()}`;

/** Opens the repository named by the global options with its master key (no index). */
async function openRepo(
  values: { repo?: string; "passphrase-file"?: string },
): Promise<Repository> {
  const { location } = repositoryLocation(values.repo);
  const backend = await openBackend(location);
  const suite = await denoSuite();
  await readConfig(backend);
  const passphrase = await getPassphrase(values["passphrase-file"], false);
  return await openRepository(backend, suite, passphrase);
}

/** A new passphrase: --new-passphrase-file, N2S_NEW_PASSPHRASE, or asked twice. */
async function getNewPassphrase(file: string | undefined): Promise<string> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new UsageError(`cannot read ${file}: ${e instanceof Error ? e.message : e}`);
    }
    const p = text.replace(/\r?\n$/, "");
    if (p === "") throw new UsageError(`new passphrase file ${file} is empty`);
    return p;
  }
  const env = Deno.env.get("N2S_NEW_PASSPHRASE");
  if (env !== undefined && env !== "") return env;
  const p = await promptHidden("New passphrase: ");
  if (p === "") throw new UsageError("an empty passphrase is not allowed");
  if (await promptHidden("New passphrase again: ") !== p) {
    throw new UsageError("the two passphrases differ; nothing was changed");
  }
  return p;
}

const RECOVER_OPTIONS = {
  force: {
    type: "boolean",
    help: "replace an index that already holds changesets (it is kept beside the new one)",
    byDefault: "off: an index with changesets is refused",
    example: "n2s recover index --force",
  },
} as const satisfies OptionTable;

const recover: Command = {
  summary: "rebuild the index from the repository and a key (recover index)",
  usage: "n2s recover index [--repo LOCATION] [--index FILE|URL] [--force] [--json]",
  options: RECOVER_OPTIONS,
  subcommands: ["index"],
  examples: [
    "n2s recover index --repo /mnt/usb/n2s",
    "n2s recover index --repo s3://bucket/n2s --index ~/new-index.sqlite",
  ],
  async run(args) {
    const { values, positionals } = parse(
      args,
      { ...REPO_OPTIONS, ...RECOVER_OPTIONS },
      this.usage,
    );
    if (positionals.length !== 1 || positionals[0] !== "index") {
      throw new UsageError(`what to recover is needed\nusage: ${this.usage}`);
    }
    const repo = await openRepo(values);
    try {
      const given = indexLocation(values.index) ?? defaultIndexPath(repo.id);
      const where = parseIndexLocation(given);
      const location = where.kind === "sqlite" ? resolve(where.path) : where.url;
      if (where.kind === "sqlite") {
        await Deno.mkdir(resolve(location, ".."), { recursive: true, mode: 0o700 });
      }
      const r = await rebuildIndexAt(repo, location, { force: values.force });
      for (const p of r.problems) note(`n2s: ${p.object}: ${p.message}`);
      if (values.json) printJson(r);
      else {
        if (r.previous) out(`the previous index was kept as ${r.previous}`);
        out(
          `rebuilt ${r.index}: ${r.changesets} changesets, ${r.files} entries from manifests` +
            (r.incomplete.length
              ? `; ${r.orphanBlobs} blobs of ${r.incomplete.length} unfinished pushes ` +
                `(${r.incomplete.join(", ")}) from blob headers`
              : "") +
            (r.problems.length ? `; ${r.problems.length} objects could not be read` : ""),
        );
      }
      return r.problems.length ? 1 : 0;
    } finally {
      await repo.close();
    }
  },
};

const DECRYPT_OPTIONS = {
  "key-file": {
    type: "string",
    value: "KEY",
    help: "an exported key file (or one from the repository's keys/)",
    byDefault: "none: required",
    example: "--key-file n2s-key.json",
    complete: "file",
  },
  "target-path": {
    type: "string",
    value: "DIR",
    help: "where to restore the files, each at its stored path",
    byDefault: "the current directory",
    example: "--target-path restored",
    complete: "dir",
  },
  path: {
    type: "string",
    multiple: true,
    value: "GLOB",
    help: "restore only paths that match",
    byDefault: "every path",
    example: "--path 'photos/2024/**'",
  },
  list: {
    type: "boolean",
    help: "list the path, size and source each file holds instead of restoring",
    byDefault: "off",
    example: "n2s decrypt-blob packs/*/* --key-file k.json --list",
  },
} as const satisfies OptionTable;

const decryptBlob: Command = {
  summary: "restore blob and pack files with a key file alone (no repository, no index)",
  usage: "n2s decrypt-blob FILE... --key-file KEY [--target-path DIR] [--path GLOB]... " +
    "[--list] [--passphrase-file FILE] [--json]",
  options: DECRYPT_OPTIONS,
  examples: [
    "n2s decrypt-blob packs/*/* blobs/*/* --key-file n2s-key.json --target-path restored",
    "n2s decrypt-blob packs/3f/3f9a* --key-file n2s-key.json --list",
    "n2s decrypt-blob packs/*/* --key-file n2s-key.json --path 'reports/**' --target-path out",
  ],
  async run(args) {
    const { values, positionals } = parse(
      args,
      { ...REPO_OPTIONS, ...DECRYPT_OPTIONS },
      this.usage,
    );
    if (!values["key-file"] || positionals.length === 0) {
      throw new UsageError(`blob files and --key-file are needed\nusage: ${this.usage}`);
    }
    let text: Uint8Array;
    try {
      text = await Deno.readFile(values["key-file"]);
    } catch (e) {
      throw new UsageError(
        `cannot read ${values["key-file"]}: ${e instanceof Error ? e.message : e}`,
      );
    }
    const keyFile = parseKeyFile(text, values["key-file"]);
    const suite = await denoSuite();
    const passphrase = await getPassphrase(values["passphrase-file"], false);
    const master = await unwrapMasterKey(suite, keyFile, passphrase);
    if (values.list) {
      const infos = await inspectBlobFiles(suite, master, positionals, { patterns: values.path });
      if (values.json) printJson(infos);
      else {
        for (const i of infos) {
          if ("error" in i) note(`n2s: ${i.file}: ${i.error}`);
          else {out(
              `${i.file}  ${displayPath(i.header.path)}  ${
                formatBytes(i.header.size)
              }  ${i.header.source}`,
            );}
        }
      }
      return infos.some((i) => "error" in i) ? 1 : 0;
    }
    const target = resolve(values["target-path"] ?? ".");
    const r = await decryptBlobFiles(suite, master, keyFile, positionals, target, {
      patterns: values.path,
    });
    for (const p of r.problems) note(`n2s: ${displayPath(p.path)}: ${p.message}`);
    for (const s of r.skipped) {
      note(`n2s: ${s.file}: an older version of ${displayPath(s.path)}; not restored`);
    }
    if (values.json) printJson(r);
    else {
      out(
        `restored ${r.files} files (${formatBytes(r.bytes)}) into ${target}` +
          (r.problems.length ? `; ${r.problems.length} could not be restored` : ""),
      );
    }
    return r.problems.length ? 1 : 0;
  },
};

const KEY_USAGE = "n2s key add [--label TEXT] [--new-passphrase-file FILE] | key list | " +
  "key remove ID | key passwd [--new-passphrase-file FILE] | key export [ID] [--output FILE]";

const KEY_OPTIONS = {
  "new-passphrase-file": {
    type: "string",
    value: "FILE",
    help: "read the new passphrase (key add, key passwd) from FILE",
    byDefault: "$N2S_NEW_PASSPHRASE, else a prompt",
    example: "--new-passphrase-file ~/new-pass",
    complete: "file",
  },
  label: {
    type: "string",
    value: "TEXT",
    help: "a label for the new key (key add)",
    byDefault: "user@host",
    example: "--label 'offsite copy'",
  },
  output: {
    type: "string",
    value: "FILE",
    help: "write the exported key file here (key export); never overwrites",
    byDefault: "stdout",
    example: "--output n2s-key.json",
    complete: "file",
  },
} as const satisfies OptionTable;

const key: Command = {
  summary: "add, list, remove, change or export the repository's keys",
  usage: KEY_USAGE,
  options: KEY_OPTIONS,
  subcommands: ["add", "list", "remove", "passwd", "export"],
  examples: [
    "n2s key export --output n2s-key.json",
    "n2s key add --label laptop",
    "n2s key list",
    "n2s key remove 3f9a1c2e4b5d6f70",
  ],
  async run(args) {
    const { values, positionals } = parse(args, { ...REPO_OPTIONS, ...KEY_OPTIONS }, this.usage);
    const [sub, ...rest] = positionals;
    if (sub === "list") {
      const { location } = repositoryLocation(values.repo);
      const backend = await openBackend(location);
      try {
        await readConfig(backend);
        const keys = await listKeyFiles(backend);
        if (values.json) {
          printJson(
            keys.map((k) => ({ id: k.id, label: k.label, created: k.created, N: k.kdf.N })),
          );
        } else {
          out(table(
            ["ID", "LABEL", "CREATED", "SCRYPT N"],
            keys.map((k) => [k.id, k.label || "-", k.created, `2^${Math.log2(k.kdf.N)}`]),
          ));
        }
      } finally {
        await backend.close();
      }
      return 0;
    }
    if (!["add", "remove", "passwd", "export"].includes(sub ?? "")) {
      throw new UsageError(`a key subcommand is needed\nusage: ${this.usage}`);
    }
    if (sub === "remove" && rest.length !== 1) {
      throw new UsageError(`key remove needs one key id\nusage: ${this.usage}`);
    }
    const repo = await openRepo(values);
    try {
      if (sub === "add") {
        const k = await addKey(repo, await getNewPassphrase(values["new-passphrase-file"]), {
          label: values.label ?? label(),
          logN: kdfLogN(),
        });
        if (values.json) printJson({ added: k.id, label: k.label });
        else out(`added key ${k.id} (${k.label})`);
      } else if (sub === "remove") {
        const k = await removeKey(repo, rest[0]);
        if (values.json) printJson({ removed: k.id, label: k.label });
        else out(`removed key ${k.id} (${k.label})`);
      } else if (sub === "passwd") {
        const r = await changePassphrase(
          repo,
          await getNewPassphrase(values["new-passphrase-file"]),
          {
            logN: kdfLogN(),
          },
        );
        if (values.json) printJson({ added: r.added.id, removed: r.removed });
        else out(`changed the passphrase: key ${r.removed} is replaced by key ${r.added.id}`);
      } else {
        const k = await findKey(repo, rest[0] ?? repo.keyId);
        const bytes = keyFileBytes(k);
        if (values.output) {
          await Deno.writeFile(values.output, bytes, { mode: 0o600, createNew: true }).catch(
            (e) => {
              if (e instanceof Deno.errors.AlreadyExists) {
                throw new Error(`${values.output} exists; not overwriting it`);
              }
              throw e;
            },
          );
          note(
            `exported key ${k.id} to ${values.output}; keep it apart from the repository. ` +
              `It opens with that key's passphrase and nothing else.`,
          );
        } else {
          Deno.stdout.writeSync(bytes);
        }
      }
    } finally {
      await repo.close();
    }
    return 0;
  },
};

const PAGE_OPTIONS = {
  output: {
    type: "string",
    value: "FILE",
    help: "write the page to FILE",
    byDefault: "stdout",
    example: "--output recovery.html",
    complete: "file",
  },
} as const satisfies OptionTable;

const recoveryPage: Command = {
  summary: "the offline recovery page (HTML): decrypt blob and pack files in a browser",
  usage: "n2s recovery-page [--output FILE]",
  options: PAGE_OPTIONS,
  examples: ["n2s recovery-page --output recovery.html"],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...PAGE_OPTIONS }, this.usage);
    if (values.output) {
      await Deno.writeTextFile(values.output, RECOVERY_PAGE_HTML);
      note(`wrote ${values.output}; open it in any browser, no network needed`);
    } else {
      Deno.stdout.writeSync(new TextEncoder().encode(RECOVERY_PAGE_HTML));
    }
    return 0;
  },
};

/** The recovery commands by name. */
export const RECOVERY_COMMANDS: Record<string, Command> = {
  recover,
  "decrypt-blob": decryptBlob,
  key,
  "recovery-page": recoveryPage,
};
