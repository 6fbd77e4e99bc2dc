// Key files: the repository's master key wrapped under a passphrase-derived key (scrypt), so that
// several passphrases can open one repository and the master key never rests in the clear.

import { fromBase64, fromUtf8, toBase64, utf8 } from "./bytes.ts";
import type { Suite } from "./suite.ts";

/** scrypt parameters stored in a key file. */
export interface ScryptParams {
  name: "scrypt";
  N: number;
  r: number;
  p: number;
  /** base64 of 16 random bytes. */
  salt: string;
}

/** The JSON stored at keys/<id> and in exported key files. */
export interface KeyFile {
  n2s_key: 1;
  /** Key file id (hex). */
  id: string;
  /** Repository id this key opens. */
  repository: string;
  /** A label for people ("alice@laptop"). */
  label: string;
  /** When the key file was made, UTC ISO-8601. */
  created: string;
  kdf: ScryptParams;
  cipher: "chacha20-poly1305";
  /** base64 of the 12-byte nonce. */
  nonce: string;
  /** base64 of the sealed 32-byte master key and its 16-byte tag. */
  sealed: string;
}

/** A wrong passphrase, or a key file that was altered. */
export class WrongPassphraseError extends Error {
  /** The error's name. */
  override name = "WrongPassphraseError";
}

/** Default scrypt cost: N = 2^17, r = 8, p = 1 (about 128 MiB and a fraction of a second). */
export const DEFAULT_SCRYPT_LOG_N = 17;
const KEY_AAD = utf8("n2s key file v1");

/** Wraps `master` under `passphrase` into a new key file. */
export async function wrapMasterKey(
  suite: Suite,
  master: Uint8Array,
  passphrase: string,
  meta: { id: string; repository: string; label: string; created: string; logN?: number },
): Promise<KeyFile> {
  const logN = meta.logN ?? DEFAULT_SCRYPT_LOG_N;
  const salt = suite.randomBytes(16);
  const kdf: ScryptParams = { name: "scrypt", N: 2 ** logN, r: 8, p: 1, salt: toBase64(salt) };
  const wrapping = await suite.scrypt(utf8(passphrase), salt, { ...kdf, dkLen: 32 });
  const nonce = suite.randomBytes(12);
  const [ct, tag] = suite.aead.seal(wrapping, nonce, KEY_AAD, master);
  const sealed = new Uint8Array(ct.length + tag.length);
  sealed.set(ct);
  sealed.set(tag, ct.length);
  return {
    n2s_key: 1,
    id: meta.id,
    repository: meta.repository,
    label: meta.label,
    created: meta.created,
    kdf,
    cipher: "chacha20-poly1305",
    nonce: toBase64(nonce),
    sealed: toBase64(sealed),
  };
}

/** Parses and checks the shape of a key file's JSON text. `what` names it in errors. */
export function parseKeyFile(text: string | Uint8Array, what: string): KeyFile {
  let k: KeyFile;
  try {
    k = JSON.parse(typeof text === "string" ? text : fromUtf8(text));
  } catch {
    throw new Error(`${what} is not a key file (not JSON)`);
  }
  if (
    k?.n2s_key !== 1 || k.kdf?.name !== "scrypt" || typeof k.sealed !== "string" ||
    typeof k.nonce !== "string" || typeof k.kdf.salt !== "string"
  ) {
    throw new Error(`${what} is not an n2s key file`);
  }
  if (
    typeof k.id !== "string" || typeof k.repository !== "string" || typeof k.created !== "string"
  ) {
    throw new Error(`${what} is not an n2s key file (id, repository or created is missing)`);
  }
  const { N, r, p } = k.kdf;
  if (
    !Number.isSafeInteger(N) || !Number.isSafeInteger(r) || !Number.isInteger(Math.log2(N)) ||
    N < 2 ** 10 || N > 2 ** 22 || r < 1 || r > 32 || p !== 1
  ) {
    throw new Error(`${what} has unsupported scrypt parameters`);
  }
  // Lengths as wrapMasterKey writes them: what unwrapping takes, so that it fails on nothing else.
  for (
    const [field, value, size] of [
      ["kdf.salt", k.kdf.salt, 16],
      ["nonce", k.nonce, 12],
      ["sealed", k.sealed, 48],
    ] as const
  ) {
    let bytes: Uint8Array | null = null;
    try {
      bytes = fromBase64(value);
    } catch {
      // reported below
    }
    if (bytes?.length !== size) {
      throw new Error(`${what} is damaged: ${field} is not the base64 of ${size} bytes`);
    }
  }
  return k;
}

/** Unwraps the master key; throws WrongPassphraseError when the passphrase does not open it. */
export async function unwrapMasterKey(
  suite: Suite,
  key: KeyFile,
  passphrase: string,
): Promise<Uint8Array> {
  const wrapping = await suite.scrypt(utf8(passphrase), fromBase64(key.kdf.salt), {
    N: key.kdf.N,
    r: key.kdf.r,
    p: key.kdf.p,
    dkLen: 32,
  });
  const sealed = fromBase64(key.sealed);
  try {
    return suite.aead.open(
      wrapping,
      fromBase64(key.nonce),
      KEY_AAD,
      sealed.subarray(0, sealed.length - 16),
      sealed.subarray(sealed.length - 16),
    );
  } catch {
    throw new WrongPassphraseError(`wrong passphrase for key ${key.id} (${key.label})`);
  }
}
