// Test wrappers over real backends: watch or delay puts, or fail them on purpose.

import type { Backend } from "../../lib/backends/backend.ts";

/** A backend that runs `before(key)` ahead of every put (it may throw to fail the put). */
export function interceptPuts(
  inner: Backend,
  before: (key: string) => void | Promise<void>,
): Backend {
  return {
    name: inner.name,
    async put(key, body) {
      await before(key);
      return inner.put(key, body);
    },
    get: (k, range) => inner.get(k, range),
    stat: (k) => inner.stat(k),
    list: (p) => inner.list(p),
    delete: (k) => inner.delete(k),
    flush: () => inner.flush(),
    close: () => inner.close(),
  };
}

/** A backend that records the key of every put. */
export function countingBackend(inner: Backend): Backend & { puts: string[] } {
  const puts: string[] = [];
  return Object.assign(interceptPuts(inner, (k) => void puts.push(k)), { puts });
}

/** A backend that records every get: its key and the range asked for (if any). */
export function recordingGets(
  inner: Backend,
): Backend & { gets: { key: string; offset?: number; length?: number }[] } {
  const gets: { key: string; offset?: number; length?: number }[] = [];
  return {
    name: inner.name,
    put: (k, b) => inner.put(k, b),
    get(k, range) {
      gets.push({ key: k, ...range });
      return inner.get(k, range);
    },
    stat: (k) => inner.stat(k),
    list: (p) => inner.list(p),
    delete: (k) => inner.delete(k),
    flush: () => inner.flush(),
    close: () => inner.close(),
    gets,
  };
}
