// Helpers that several backends need, written once: random and temporary names, one-line error
// texts, and a move into place that tries again when a concurrent put of the same key got in
// between (the counting semaphore is lib/scheduler.ts's). Nothing here does I/O, so Workers may
// import it too.

/** Part of the name of every temporary object written beside its key; listings skip such names. */
export const TEMP_MARK = ".n2s-tmp-";

/** `bytes` random bytes as lowercase hex. */
export function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A temporary name beside `path` (same directory, so that a rename moves it into place). */
export function tempName(path: string): string {
  return `${path}${TEMP_MARK}${randomHex(4)}`;
}

/** Text for a one-line message: whitespace collapsed, cut after `max` characters. */
export function oneLine(s: string, max = 300): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** The message of any thrown value, on one line. */
export function errorText(e: unknown, max = 300): string {
  return oneLine(e instanceof Error ? e.message : String(e), max);
}

/** How many times a move into place is tried by default. */
export const MOVE_ATTEMPTS = 5;

/**
 * Moves an object into place with `move`, trying again (after a few random milliseconds, so
 * that racing puts of one key fall out of step) while `retry` says that another try may help,
 * as when a concurrent put of the same key replaced or removed the target in between. Errors
 * for which `retry` is false, and the last one, are thrown.
 */
export async function moveWithRetry<T>(
  move: (attempt: number) => Promise<T>,
  retry: (e: unknown, attempt: number) => boolean | Promise<boolean>,
  attempts = MOVE_ATTEMPTS,
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await move(attempt);
    } catch (e) {
      if (attempt >= attempts || !(await retry(e, attempt))) throw e;
      await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
    }
  }
}
