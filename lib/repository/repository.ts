// A repository: one location in one backend, its plaintext config, its key files and the master
// key they wrap, and the one layer that reads and writes its objects. Push, pull, recovery and
// key management ask it to save or load blobs (loose or in packs), packs and manifests; nothing
// else builds object keys or calls the backend stack.

import {
  type Backend,
  type Body,
  type ByteRange,
  bytesBody,
  NotFoundError,
  type ObjectFiles,
  type ObjectInfo,
  readAll,
} from "../backends/backend.ts";
import { fromUtf8, toHex, utf8 } from "../format/bytes.ts";
import { type BlobHeader, openBlob } from "../format/blob.ts";
import { blobIdFor, isHex128, type RepoKeys, repoKeys } from "../format/ids.ts";
import {
  type KeyFile,
  parseKeyFile,
  unwrapMasterKey,
  wrapMasterKey,
  WrongPassphraseError,
} from "../format/keyfile.ts";
import { type LockRecord, openLock, sealLock } from "../format/lock.ts";
import type { Suite } from "../format/suite.ts";
import {
  blobKey,
  CONFIG_KEY,
  keyFileKey,
  lockKey,
  packKey,
  parseKey,
  RECOVERY_PAGE_KEY,
} from "./layout.ts";

/** The repository format this n2s reads and writes. */
export const REPOSITORY_FORMAT = 2;
/** Default target size of a pack object. */
export const DEFAULT_PACK_SIZE = 16 << 20;
/** Default bound under which a sealed blob goes into a pack instead of an object of its own. */
export const DEFAULT_PACK_THRESHOLD = 1 << 20;

/** The repository's plaintext `config` object. */
export interface RepositoryConfig {
  /** Marks the object as an n2s repository configuration. */
  n2s_repository: 1;
  /** Random id, 32 hex digits. */
  id: string;
  /** Repository format version. */
  format: 2;
  /** When the repository was created, UTC ISO-8601. */
  created: string;
  /** Target size of a pack object in bytes. */
  pack_size: number;
  /** A sealed blob shorter than this many bytes is written into a pack; others are loose. */
  pack_threshold: number;
}

/** Where a blob is stored: an object of its own, or a range of a pack. */
export type BlobLocation =
  | { pack: null }
  | { pack: string; offset: number; length: number };

/** An open repository: backend, configuration and keys. */
export class Repository {
  /** The master key and the key of blob ids. */
  readonly keys: RepoKeys;

  constructor(
    readonly backend: Backend,
    readonly config: RepositoryConfig,
    master: Uint8Array,
    readonly suite: Suite,
    /** The key file that opened it. */
    readonly keyId: string,
  ) {
    this.keys = repoKeys(suite, master);
  }

  get id(): string {
    return this.config.id;
  }

  get master(): Uint8Array {
    return this.keys.master;
  }

  /** The keyed blob id of a path's content. */
  blobId(path: string | Uint8Array, fileHash: string): string {
    return blobIdFor(this.suite, this.keys.idKey, path, fileHash);
  }

  /** Operations in flight that suit the backend (push and pull keep that many). */
  get parallelism(): number | undefined {
    return this.backend.parallelism;
  }

  /** A short description of where the repository is, for messages. */
  get where(): string {
    return this.backend.name;
  }

  /** A new random pack id (32 hex digits). */
  newPackId(): string {
    return toHex(this.suite.randomBytes(16));
  }

  /**
   * The backend's objects as files, when it offers that (a local directory) and `purpose` is
   * allowed; null otherwise. Wrappers that must see every call (fault injection) withhold it.
   */
  objectFiles(purpose: "read" | "write"): ObjectFiles | null {
    return this.backend.objectFiles?.(purpose) ?? null;
  }

  /**
   * Where a Worker may write a large blob's object file itself (a local repository), with the
   * threshold under which the blob belongs in a pack instead; null for other backends.
   */
  directTarget(blobId: string): { objects: string; key: string; threshold: number } | null {
    const files = this.objectFiles("write");
    if (files === null) return null;
    return { objects: files.root, key: blobKey(blobId), threshold: this.config.pack_threshold };
  }

  /** The file of a pack, when a Worker may read it itself (a local repository). */
  packFile(packId: string): string | null {
    const files = this.objectFiles("read");
    return files === null ? null : `${files.root}/${packKey(packId)}`;
  }

  /** The file of a loose blob, when a Worker may read it itself (a local repository). */
  objectFile(blobId: string): string | null {
    const files = this.objectFiles("read");
    return files === null ? null : `${files.root}/${blobKey(blobId)}`;
  }

  // --- writing ---------------------------------------------------------------------------

  /** Stores a loose blob object (a sealed container at or above the pack threshold). */
  putBlob(blobId: string, body: Body): Promise<ObjectInfo> {
    return this.backend.put(blobKey(blobId), body);
  }

  /** Stores a pack object from its parts (preamble, then framed entries), in order. */
  putPack(packId: string, parts: Uint8Array[]): Promise<ObjectInfo> {
    let size = 0;
    for (const p of parts) size += p.length;
    return this.backend.put(packKey(packId), {
      size,
      async *open() {
        yield parts;
      },
    });
  }

  /** Stores a key file (a new one, or a new passphrase's) and makes it durable. */
  async putKeyFile(keyFile: KeyFile): Promise<void> {
    await this.backend.put(keyFileKey(keyFile.id), bytesBody(keyFileBytes(keyFile)));
    await this.backend.flush();
  }

  /** Removes a key file and makes that durable. */
  async deleteKeyFile(id: string): Promise<void> {
    await this.backend.delete(keyFileKey(id));
    await this.backend.flush();
  }

  /** Reads one key file by its full id. */
  async readKeyFile(id: string): Promise<KeyFile> {
    try {
      const raw = await readAll(await this.backend.get(keyFileKey(id)));
      return parseKeyFile(raw, `${this.backend.name} keys/${id}`);
    } catch (e) {
      if (e instanceof NotFoundError) throw new Error(`the repository has no key ${id}`);
      throw e;
    }
  }

  /** Every key file of the repository, oldest first. */
  listKeyFiles(): Promise<KeyFile[]> {
    return listKeyFiles(this.backend);
  }

  /** Stores the offline recovery page beside the data. */
  async putRecoveryPage(html: string): Promise<void> {
    await this.backend.put(RECOVERY_PAGE_KEY, bytesBody(utf8(html)));
    await this.backend.flush();
  }

  /** Closes the backend. */
  close(): Promise<void> {
    return this.backend.close();
  }

  /** Makes every completed write durable (one file-system sync for a local repository). */
  flush(): Promise<void> {
    return this.backend.flush();
  }

  // --- reading ---------------------------------------------------------------------------

  /** The sealed bytes of a blob: its object, or its range of a pack. */
  readBlob(blobId: string, loc: BlobLocation): Promise<AsyncIterable<Uint8Array>> {
    if (loc.pack === null) return this.backend.get(blobKey(blobId));
    return this.backend.get(packKey(loc.pack), { offset: loc.offset, length: loc.length });
  }

  /** A loose blob object's size, or null when it is not stored. */
  statBlob(blobId: string): Promise<ObjectInfo | null> {
    return this.backend.stat(blobKey(blobId));
  }

  /** A range of a pack, whole in memory; a range cut short by the object's end is an error. */
  async readPackRange(packId: string, range: ByteRange): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const p of await this.backend.get(packKey(packId), range)) {
      parts.push(p);
      n += p.length;
    }
    if (n !== range.length) {
      throw new Error(
        `pack ${packId} is ${n < range.length ? "shorter" : "longer"} than its index says ` +
          `(${range.length} bytes at ${range.offset}, got ${n}); run "n2s check"`,
      );
    }
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** A pack object's bytes as the backend yields them. */
  readPackStream(packId: string): Promise<AsyncIterable<Uint8Array>> {
    return this.backend.get(packKey(packId));
  }

  /** A whole pack object in memory (packs are a few MiB). */
  async readPack(packId: string): Promise<Uint8Array> {
    return readAll(await this.backend.get(packKey(packId)));
  }

  /** Opens a stored blob: its verified header, then its content (see openBlob). */
  async *openBlob(
    blobId: string,
    loc: BlobLocation,
  ): AsyncGenerator<{ header: BlobHeader } | { data: Uint8Array }> {
    yield* openBlob(this.suite, this.keys, blobId, await this.readBlob(blobId, loc));
  }

  /** Deletes a loose blob object (prune; deleting one that is gone is not an error). */
  deleteBlob(blobId: string): Promise<void> {
    return this.backend.delete(blobKey(blobId));
  }

  /** Deletes a pack object (prune, once no manifest names it). */
  deletePack(packId: string): Promise<void> {
    return this.backend.delete(packKey(packId));
  }

  /** Every loose blob object. */
  async *listBlobs(): AsyncGenerator<ObjectInfo & { id: string }> {
    for await (const o of this.backend.list("blobs/")) {
      const k = parseKey(o.key);
      if (k.kind === "blob") yield { ...o, id: k.id };
    }
  }

  /** Every pack object. */
  async *listPacks(): AsyncGenerator<ObjectInfo & { id: string }> {
    for await (const o of this.backend.list("packs/")) {
      const k = parseKey(o.key);
      if (k.kind === "pack") yield { ...o, id: k.id };
    }
  }

  // --- locks (see lock.ts) ---------------------------------------------------------------

  /** A new random lock id (32 hex digits): a lock's name says nothing about what it locks. */
  newLockId(): string {
    return toHex(this.suite.randomBytes(16));
  }

  /** Stores a lock, sealed with the master key (a new one, or a refresh of one held). */
  async putLock(id: string, record: LockRecord): Promise<void> {
    const parts = sealLock(this.suite, this.master, id, record);
    let size = 0;
    for (const p of parts) size += p.length;
    await this.backend.put(lockKey(id), {
      size,
      async *open() {
        yield parts;
      },
    });
  }

  /** Reads and opens a lock; NotFoundError when it is gone, ContainerError when it is not one. */
  async readLock(id: string): Promise<LockRecord> {
    const raw = await readAll(await this.backend.get(lockKey(id)));
    return openLock(this.suite, this.master, id, raw, `${this.backend.name} ${lockKey(id)}`);
  }

  /** True while the lock object is there. */
  async hasLock(id: string): Promise<boolean> {
    return (await this.backend.stat(lockKey(id))) !== null;
  }

  /** Removes a lock (removing one that is gone is not an error). */
  deleteLock(id: string): Promise<void> {
    return this.backend.delete(lockKey(id));
  }

  /** The ids of every lock object, in one listing. */
  async listLockIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const o of this.backend.list("locks/")) {
      const k = parseKey(o.key);
      if (k.kind === "lock" && isHex128(k.id)) ids.push(k.id);
    }
    return ids.sort();
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
  if (c === null || typeof c !== "object" || c.n2s_repository !== 1 || typeof c.id !== "string") {
    throw new Error(`${backend.name}: config is not an n2s repository config`);
  }
  if (c.format !== REPOSITORY_FORMAT) {
    const v = Number(c.format);
    throw new Error(
      v < REPOSITORY_FORMAT
        ? `${backend.name} is an n2s repository of format ${c.format}, which this n2s no longer ` +
          `reads (it reads format ${REPOSITORY_FORMAT}); restore it with the n2s that wrote it`
        : `${backend.name} is an n2s repository of format ${c.format}; this n2s reads format ` +
          `${REPOSITORY_FORMAT} only: use a newer n2s`,
    );
  }
  for (const f of ["pack_size", "pack_threshold"] as const) {
    if (!Number.isSafeInteger(c[f]) || c[f] < 1) {
      throw new Error(`${backend.name}: config field ${f} is missing or not a positive integer`);
    }
  }
  return c;
}

/** Options for creating a repository. */
export interface InitOptions {
  /** Label of the first key ("user@host"). */
  label?: string;
  /** scrypt cost as log2(N); default 17. Lower only in tests. */
  logN?: number;
  /** Pack target size and threshold (defaults 16 MiB and 1 MiB). */
  packSize?: number;
  packThreshold?: number;
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
  // A repository shares its location with nothing: deleting objects that no changeset needs
  // must never reach files someone else keeps there.
  for await (const o of backend.list("")) {
    throw new Error(
      `${backend.name} is not empty and holds no n2s repository (it has ${o.key}); ` +
        `choose an empty or new location`,
    );
  }
  const now = new Date((opts.now ?? Date.now)()).toISOString();
  const config: RepositoryConfig = {
    n2s_repository: 1,
    id: toHex(suite.randomBytes(16)),
    format: REPOSITORY_FORMAT,
    created: now,
    pack_size: opts.packSize ?? DEFAULT_PACK_SIZE,
    pack_threshold: opts.packThreshold ?? DEFAULT_PACK_THRESHOLD,
  };
  const master = suite.randomBytes(32);
  const keyFile = await wrapMasterKey(suite, master, passphrase, {
    id: toHex(suite.randomBytes(8)),
    repository: config.id,
    label: opts.label ?? "",
    created: now,
    logN: opts.logN,
  });
  await backend.put(keyFileKey(keyFile.id), bytesBody(keyFileBytes(keyFile)));
  // The config is written last: a location with a config always has a key to open it.
  await backend.put(CONFIG_KEY, bytesBody(utf8(JSON.stringify(config, null, 2) + "\n")));
  await backend.flush();
  return { repo: new Repository(backend, config, master, suite, keyFile.id), keyFile };
}

/** The JSON text of a key file, as stored in the repository and exported. */
export function keyFileBytes(keyFile: KeyFile): Uint8Array {
  return utf8(JSON.stringify(keyFile, null, 2) + "\n");
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
  if (!keys.some((k) => k.repository === config.id)) {
    // No passphrase can help: the config's id or the key files were altered, or mixed up.
    throw new Error(
      `${backend.name}: no key file belongs to repository ${config.id}, the id in its config ` +
        `(the key files name ${[...new Set(keys.map((k) => k.repository))].join(", ")}); ` +
        `the config or the key files were altered or come from another repository`,
    );
  }
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
