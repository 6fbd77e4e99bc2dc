// A test hook for the time of changesets: N2S_TEST_NOW (an ISO time) makes the command line push
// as if the clock said that time, so that a test can make a month of daily changesets in
// seconds. Unset (always, outside tests), the real clock is used.

const VARIABLE = "N2S_TEST_NOW";

/** The clock N2S_TEST_NOW asks for, or undefined for the real one. */
export function testClock(): (() => number) | undefined {
  let spec: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable: VARIABLE }).state !== "granted") {
      return undefined;
    }
    spec = Deno.env.get(VARIABLE);
  } catch {
    return undefined;
  }
  if (spec === undefined || spec === "") return undefined;
  const t = Date.parse(spec);
  if (!Number.isFinite(t)) {
    throw new Error(`${VARIABLE}="${spec}" is not an ISO time (a test hook: unset it)`);
  }
  return () => t;
}
