// How file-system failures become the local backend's errors: a missing file is "not found";
// denied access, a full disk, a read-only file system and a path below a file are permanent;
// anything else may pass, so it is transient.

import { BackendError, BodyError } from "../backend.ts";

/** The BackendError for a failure of `what` (e.g. "put blobs/ab/…") on the backend `name`. */
export function classify(name: string, e: unknown, what: string): BackendError {
  if (e instanceof BackendError) return e;
  if (e instanceof BodyError) {
    return new BackendError("permanent", name, `${what}: ${e.message}`, { cause: e });
  }
  if (e instanceof Deno.errors.NotFound) {
    return new BackendError("notfound", name, `${what}: not found`, { cause: e });
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return new BackendError("permanent", name, `${what}: permission denied`, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  // A full disk or a read-only file system will not heal by retrying.
  const permanent =
    /ENOSPC|EROFS|ENOTDIR|EACCES|No space left|Read-only file system|Not a directory/i.test(msg) ||
    e instanceof Deno.errors.NotADirectory;
  return new BackendError(permanent ? "permanent" : "transient", name, `${what}: ${msg}`, {
    cause: e,
  });
}
