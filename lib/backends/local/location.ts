// Local locations: a path (relative to the working directory) or a file:// URL.

import { resolve } from "node:path";

/** The absolute root directory a local location names. */
export function parseLocalLocation(location: string): string {
  if (/^file:/i.test(location)) return decodeURIComponent(new URL(location).pathname);
  return resolve(location);
}
