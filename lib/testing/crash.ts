// A test hook for crash tests: N2S_CRASH_AT="phase:count" makes the process kill itself with
// SIGKILL (as `kill -9` would) the count-th time a push, a forget or a prune reaches the named
// point, so that a test stops it at a chosen place instead of at a moment picked by a timer. Unset, nothing
// happens beyond counting.

/** The points of a push where a crash can be asked for. */
export const CRASH_PHASES = [
  /** Pass 1: one file's content read and hashed. */
  "hash",
  /** A pack or loose blob is about to be stored. */
  "put-start",
  /** A pack or loose blob was stored, not yet confirmed. */
  "put-end",
  /** Inside a confirmation's index transaction, before it commits. */
  "confirm",
  /** A confirmation's index transaction committed. */
  "confirmed",
  /** Every entry is settled; the manifest is about to be stored. */
  "manifest",
  /** The manifest is stored and durable; the changeset is not yet marked complete. */
  "status",
] as const;

/** The points of a forget and of a prune where a crash can be asked for. */
export const RETENTION_CRASH_PHASES = [
  /** A kept changeset's manifest was rewritten onto its nearest kept ancestor. */
  "forget-manifest",
  /** The index marks the forgotten changesets; their manifests are about to be deleted. */
  "forget-index",
  /** A forgotten changeset's manifest was deleted. */
  "forget-delete",
  /** A new pack holding live entries of packs being repacked was stored. */
  "prune-pack",
  /** A manifest was rewritten with the new locations of its repacked blobs. */
  "prune-manifest",
  /** The index holds the new locations; unused objects are about to be deleted. */
  "prune-index",
  /** An unused object (loose blob, pack, repacked pack) was deleted. */
  "prune-delete",
] as const;

export type CrashPhase = typeof CRASH_PHASES[number] | typeof RETENTION_CRASH_PHASES[number];

const PHASES: readonly string[] = [...CRASH_PHASES, ...RETENTION_CRASH_PHASES];

const VARIABLE = "N2S_CRASH_AT";

let target: { phase: CrashPhase; count: number } | null | undefined;
const tally = new Map<CrashPhase, number>();

/** The crash asked for in N2S_CRASH_AT, read once; null when none (or the variable is hidden). */
function readTarget(): { phase: CrashPhase; count: number } | null {
  let spec: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable: VARIABLE }).state !== "granted") {
      return null;
    }
    spec = Deno.env.get(VARIABLE);
  } catch {
    return null;
  }
  if (spec === undefined || spec === "") return null;
  const m = /^([a-z-]+):([1-9]\d*)$/.exec(spec.trim());
  if (!m || !PHASES.includes(m[1])) {
    throw new Error(
      `${VARIABLE}="${spec}" is not "phase:count" with a phase among ` +
        `${PHASES.join(", ")} (a test hook: unset it)`,
    );
  }
  return { phase: m[1] as CrashPhase, count: Number(m[2]) };
}

/** Counts one arrival at `phase`, and kills this process if N2S_CRASH_AT names this one. */
export function crashPoint(phase: CrashPhase): void {
  if (target === undefined) target = readTarget();
  const n = (tally.get(phase) ?? 0) + 1;
  tally.set(phase, n);
  if (target !== null && target.phase === phase && target.count === n) {
    Deno.kill(Deno.pid, "SIGKILL");
  }
}

/** How often each point was reached in this process (for tests that choose crash points). */
export function crashTally(): Record<CrashPhase, number> {
  const out = {} as Record<CrashPhase, number>;
  for (const p of PHASES as CrashPhase[]) out[p] = tally.get(p) ?? 0;
  return out;
}
