// Turns a repository location (a path, file://, and the remote forms) into a backend stack.

import type { Backend } from "./backend.ts";
import { LocalBackend } from "./local.ts";
import { resolve } from "node:path";

/** Opens the backend named by a repository location. */
export function openBackend(location: string): Promise<Backend> {
  if (location.startsWith("file://")) {
    return Promise.resolve(new LocalBackend(decodeURIComponent(new URL(location).pathname)));
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(location) && !location.startsWith("/")) {
    throw new Error(
      `unsupported repository location "${location}": use a local path or a file:// URL`,
    );
  }
  return Promise.resolve(new LocalBackend(resolve(location)));
}
