// Key management: several key files may wrap one master key (one per passphrase). Adding,
// listing, removing, changing a passphrase and exporting a key file for safekeeping.

import { toHex } from "./format/bytes.ts";
import { type KeyFile, wrapMasterKey } from "./format/keyfile.ts";
import { keyFileBytes, type Repository } from "./repository/repository.ts";

export { keyFileBytes };

/** Options for a new key file. */
export interface NewKeyOptions {
  /** A label for people ("alice@laptop"). */
  label?: string;
  /** scrypt cost as log2(N); default 17. Lower only in tests. */
  logN?: number;
  now?: () => number;
}

/** Wraps the open repository's master key under another passphrase and stores the key file. */
export async function addKey(
  repo: Repository,
  passphrase: string,
  opts: NewKeyOptions = {},
): Promise<KeyFile> {
  const keyFile = await wrapMasterKey(repo.suite, repo.master, passphrase, {
    id: toHex(repo.suite.randomBytes(8)),
    repository: repo.id,
    label: opts.label ?? "",
    created: new Date((opts.now ?? Date.now)()).toISOString(),
    logN: opts.logN,
  });
  await repo.putKeyFile(keyFile);
  return keyFile;
}

/** Finds one key file of the repository by id or unique id prefix. */
export async function findKey(repo: Repository, idPrefix: string): Promise<KeyFile> {
  const p = idPrefix.toLowerCase();
  const hits = (await repo.listKeyFiles()).filter((k) => k.id.startsWith(p));
  if (hits.length === 0) throw new Error(`no key file matches "${idPrefix}"; see "n2s key list"`);
  if (hits.length > 1) {
    throw new Error(`"${idPrefix}" matches several key files; give more characters of the id`);
  }
  return hits[0];
}

/**
 * Removes a key file. Refused for the last key (the repository could never be opened again) and
 * for the key that opened this session (open with another passphrase to remove it, so that the
 * person removing a key has just proven they still hold another).
 */
export async function removeKey(repo: Repository, idPrefix: string): Promise<KeyFile> {
  const key = await findKey(repo, idPrefix);
  const all = await repo.listKeyFiles();
  if (all.length <= 1) {
    throw new Error(`key ${key.id} is the repository's last key; removing it is refused`);
  }
  if (key.id === repo.keyId) {
    throw new Error(
      `key ${key.id} is the one this passphrase opened; open with another key's passphrase to ` +
        `remove it, or change its passphrase with "n2s key passwd"`,
    );
  }
  await repo.deleteKeyFile(key.id);
  return key;
}

/**
 * Changes the passphrase of the key that opened the repository: a new key file (same label) is
 * stored first, then the old one is removed, so there is never a moment without a key.
 */
export async function changePassphrase(
  repo: Repository,
  newPassphrase: string,
  opts: NewKeyOptions = {},
): Promise<{ added: KeyFile; removed: string }> {
  const old = await readKey(repo, repo.keyId);
  const added = await addKey(repo, newPassphrase, { label: old.label, ...opts });
  await repo.deleteKeyFile(old.id);
  return { added, removed: old.id };
}

/** Reads one key file by its full id. */
export function readKey(repo: Repository, id: string): Promise<KeyFile> {
  return repo.readKeyFile(id);
}
