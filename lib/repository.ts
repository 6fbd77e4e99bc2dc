// A repository: one location in one backend, its plaintext config, its key files, and the
// master key they wrap. Opening one needs the backend and a passphrase, nothing else.

import {
  type Backend,
  bytesBody,
  CONFIG_KEY,
  keyFileKey,
  NotFoundError,
  readAll,
} from "./backends/backend.ts";
import { fromUtf8, toHex, utf8 } from "./format/bytes.ts";
import {
  type KeyFile,
  parseKeyFile,
  unwrapMasterKey,
  wrapMasterKey,
  WrongPassphraseError,
} from "./format/keyfile.ts";
import type { Suite } from "./format/suite.ts";

/** The repository's plaintext `config` object. */
export interface RepositoryConfig {
  n2s_repository: 1;
  /** Random id, 32 hex digits. */
  id: string;
  /** Container format version. */
  format: 1;
  created: string;
}

/** An open repository: backend, configuration and master key. */
export class Repository {
  constructor(
    readonly backend: Backend,
    readonly config: RepositoryConfig,
    readonly master: Uint8Array,
    readonly suite: Suite,
    /** The key file that opened it. */
    readonly keyId: string,
  ) {}

  get id(): string {
    return this.config.id;
  }
}

/** Reads the config of the repository in `backend`, with a clear error when there is none. */
export async function readConfig(backend: Backend): Promise<RepositoryConfig> {
  let raw: Uint8Array;
  try {
    raw = await readAll(await backend.get(CONFIG_KEY));
  } catch (e) {
    if (e instanceof NotFoundError) {
      throw new Error(`no n2s repository at ${backend.name}; create one with "n2s init"`);
    }
    throw e;
  }
  let c: RepositoryConfig;
  try {
    c = JSON.parse(fromUtf8(raw));
  } catch {
    throw new Error(`${backend.name}: config is not valid JSON; is this an n2s repository?`);
  }
  if (c.n2s_repository !== 1 || typeof c.id !== "string") {
    throw new Error(`${backend.name}: config is not an n2s repository config`);
  }
  if (c.format !== 1) {
    throw new Error(`${backend.name}: repository format ${c.format} needs a newer n2s`);
  }
  return c;
}

/** Options for creating a repository. */
export interface InitOptions {
  /** Label of the first key ("user@host"). */
  label?: string;
  /** scrypt cost as log2(N); default 17. Lower only in tests. */
  logN?: number;
  now?: () => number;
}

/** Creates a repository and its first key file in an empty location. */
export async function initRepository(
  backend: Backend,
  suite: Suite,
  passphrase: string,
  opts: InitOptions = {},
): Promise<{ repo: Repository; keyFile: KeyFile }> {
  if (await backend.stat(CONFIG_KEY)) {
    throw new Error(`${backend.name} already holds an n2s repository`);
  }
  const now = new Date((opts.now ?? Date.now)()).toISOString();
  const config: RepositoryConfig = {
    n2s_repository: 1,
    id: toHex(suite.randomBytes(16)),
    format: 1,
    created: now,
  };
  const master = suite.randomBytes(32);
  const keyFile = await wrapMasterKey(suite, master, passphrase, {
    id: toHex(suite.randomBytes(8)),
    repository: config.id,
    label: opts.label ?? "",
    created: now,
    logN: opts.logN,
  });
  await backend.put(keyFileKey(keyFile.id), bytesBody(utf8(JSON.stringify(keyFile, null, 2))));
  // The config is written last: a location with a config always has a key to open it.
  await backend.put(CONFIG_KEY, bytesBody(utf8(JSON.stringify(config, null, 2) + "\n")));
  await backend.flush();
  return { repo: new Repository(backend, config, master, suite, keyFile.id), keyFile };
}

/** Every key file in the repository. */
export async function listKeyFiles(backend: Backend): Promise<KeyFile[]> {
  const out: KeyFile[] = [];
  for await (const o of backend.list("keys/")) {
    const raw = await readAll(await backend.get(o.key));
    out.push(parseKeyFile(raw, `${backend.name} ${o.key}`));
  }
  return out.sort((a, b) => a.created.localeCompare(b.created));
}

/** Opens a repository with a passphrase (tried against every key file) or a given key file. */
export async function openRepository(
  backend: Backend,
  suite: Suite,
  passphrase: string,
  opts: { keyFile?: KeyFile } = {},
): Promise<Repository> {
  const config = await readConfig(backend);
  const keys = opts.keyFile ? [opts.keyFile] : await listKeyFiles(backend);
  if (keys.length === 0) throw new Error(`${backend.name}: the repository has no key files`);
  for (const k of keys) {
    if (k.repository !== config.id) continue;
    try {
      const master = await unwrapMasterKey(suite, k, passphrase);
      return new Repository(backend, config, master, suite, k.id);
    } catch (e) {
      if (!(e instanceof WrongPassphraseError)) throw e;
    }
  }
  throw new WrongPassphraseError(
    `wrong passphrase: no key of the repository at ${backend.name} opens with it`,
  );
}
