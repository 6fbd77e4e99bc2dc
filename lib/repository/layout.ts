// Where each kind of object lives in a repository's backend: the one place that knows the key
// layout (config, rewrites, keys/, blobs/, packs/, changesets/, locks/).

import { isHex128, isHex256, isUlid } from "../format/ids.ts";

/** Key of the repository's plaintext configuration. */
export const CONFIG_KEY = "config";
/** Key of the offline recovery page that travels with the data (plaintext; no secret). */
export const RECOVERY_PAGE_KEY = "recovery.html";

/** Key of the mark that forget and prune replace whenever they rewrite manifests. */
export const REWRITES_KEY = "rewrites";

/** Key of a loose blob: blobs/<first two hex digits>/<blob id>. */
export function blobKey(blobId: string): string {
  return `blobs/${blobId.slice(0, 2)}/${blobId}`;
}

/** Key of a pack: packs/<first two hex digits>/<pack id>. */
export function packKey(packId: string): string {
  return `packs/${packId.slice(0, 2)}/${packId}`;
}

/** Key of a changeset manifest. */
export function changesetKey(id: string): string {
  return `changesets/${id}`;
}

/** Key of a key file. */
export function keyFileKey(id: string): string {
  return `keys/${id}`;
}

/** Key of a repository lock. */
export function lockKey(id: string): string {
  return `locks/${id}`;
}

/** What an object key names. */
export type ObjectKind =
  | "config"
  | "rewrites"
  | "key"
  | "blob"
  | "pack"
  | "changeset"
  | "lock"
  | "other";

/** The kind and id of an object from its key ("other" for anything n2s did not write there). */
export function parseKey(key: string): { kind: ObjectKind; id: string } {
  if (key === CONFIG_KEY) return { kind: "config", id: "" };
  if (key === REWRITES_KEY) return { kind: "rewrites", id: "" };
  const parts = key.split("/");
  const last = parts[parts.length - 1];
  if (
    parts.length === 3 && parts[0] === "blobs" && isHex256(last) && parts[1] === last.slice(0, 2)
  ) {
    return { kind: "blob", id: last };
  }
  if (
    parts.length === 3 && parts[0] === "packs" && isHex128(last) && parts[1] === last.slice(0, 2)
  ) {
    return { kind: "pack", id: last };
  }
  if (parts.length === 2 && parts[0] === "changesets" && isUlid(last)) {
    return { kind: "changeset", id: last };
  }
  if (parts.length === 2 && parts[0] === "keys") return { kind: "key", id: last };
  if (parts.length === 2 && parts[0] === "locks") return { kind: "lock", id: last };
  return { kind: "other", id: key };
}
