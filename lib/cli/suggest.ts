// The closest valid name to a mistyped command or option, for one-line usage errors.

/** Edit distance with adjacent transpositions (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate closest to `name`, or undefined when none is close: a unique candidate that
 * `name` starts (or that starts `name`), else the nearest within a third of the name's length.
 */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  const all = [...candidates];
  const prefixed = all.filter((c) => c.startsWith(name) || name.startsWith(c));
  if (prefixed.length === 1 && name.length >= 2) return prefixed[0];
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(name.length / 3));
  for (const c of all) {
    const dist = editDistance(name, c);
    if (dist <= bestD && (best === undefined || dist < editDistance(name, best))) {
      best = c;
      bestD = dist;
    }
  }
  return best;
}

/** "; did you mean X?" when a candidate is close, else "". */
export function didYouMean(name: string, candidates: Iterable<string>, prefix = ""): string {
  const c = closest(name, candidates);
  return c === undefined ? "" : `; did you mean "${prefix}${c}"?`;
}
