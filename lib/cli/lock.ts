// Repository locks on the command line: `n2s unlock` removes stale locks (or all of them), and
// the messages every locking command prints when it waits or meets a stale lock.

import { openBackend } from "../backends/open.ts";
import { denoSuite } from "../crypto_deno.ts";
import { describeHolder, type LockWaitOptions, unlockRepository } from "../repository/lock.ts";
import { openRepository, readConfig } from "../repository/repository.ts";
import {
  type Command,
  note,
  out,
  parse,
  printJson,
  REPO_OPTIONS,
  repositoryLocation,
} from "./common.ts";
import { getPassphrase } from "./prompt.ts";
import type { OptionTable } from "./spec.ts";

/** What a command prints about locks: one line on stderr when it waits, and per stale lock. */
export function lockMessages(command: string, wait = true): LockWaitOptions {
  return {
    wait,
    onWait: (line) => note(`n2s ${command}: ${line}`),
    onNote: (line) => note(`n2s ${command}: ${line}`),
  };
}

const UNLOCK_OPTIONS = {
  "remove-all": {
    type: "boolean",
    help: "remove every lock, also those that may be held: only when no n2s command runs",
    byDefault: "off: only stale locks are removed",
    example: "n2s unlock --remove-all",
  },
} as const satisfies OptionTable;

const unlock: Command = {
  summary: "remove stale locks (--remove-all: every lock, when no n2s command runs)",
  usage: "n2s unlock [--remove-all] [--repo LOCATION] [--json]",
  options: UNLOCK_OPTIONS,
  examples: ["n2s unlock", "n2s unlock --repo sftp://nas/n2s --remove-all"],
  async run(args) {
    const { values } = parse(args, { ...REPO_OPTIONS, ...UNLOCK_OPTIONS }, this.usage);
    const { location } = repositoryLocation(values.repo);
    const backend = await openBackend(location);
    try {
      await readConfig(backend);
      const passphrase = await getPassphrase(values["passphrase-file"], false);
      const repo = await openRepository(backend, await denoSuite(), passphrase);
      const r = await unlockRepository(repo, { all: values["remove-all"] });
      if (values.json) {
        printJson(r);
        return 0;
      }
      for (const l of r.removed) {
        out(
          "stale" in l
            ? `removed the lock of ${describeHolder(l)}${l.stale ? `: ${l.stale}` : ""}`
            : `removed locks/${l.id}, which is not a lock n2s can read`,
        );
      }
      for (const l of r.kept) out(`kept the lock of ${describeHolder(l)}: it may still run`);
      if (r.removed.length === 0 && r.kept.length === 0) out("no locks");
      if (r.kept.length > 0) {
        out('if you know that no n2s command runs on the repository, "--remove-all" removes them');
      }
      return 0;
    } finally {
      await backend.close();
    }
  },
};

/** The lock commands by name. */
export const LOCK_COMMANDS: Record<string, Command> = { unlock };
