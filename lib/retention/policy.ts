// Which changesets a retention policy keeps, with restic's semantics: changesets are walked
// newest first, and each rule keeps the newest changeset of each of its last N calendar buckets
// (hours, days, ISO weeks, months, years; in UTC), or the last N changesets, or every changeset
// within a duration of the newest one. A changeset kept by any rule is kept.

/** A retention policy; a count of -1 means unlimited. */
export interface RetentionPolicy {
  /** Keep the newest N changesets. */
  last?: number;
  /** Keep the newest changeset of each of the last N hours that have one. */
  hourly?: number;
  /** Keep the newest changeset of each of the last N days (UTC) that have one. */
  daily?: number;
  /** Keep the newest changeset of each of the last N ISO weeks that have one. */
  weekly?: number;
  /** Keep the newest changeset of each of the last N months that have one. */
  monthly?: number;
  /** Keep the newest changeset of each of the last N years that have one. */
  yearly?: number;
  /** Keep every changeset created within this span before the newest one. */
  within?: Duration;
}

/** A span of calendar time, as `--keep-within` takes it ("1y2m3d4h"). */
export interface Duration {
  /** Calendar years. */
  years: number;
  /** Calendar months. */
  months: number;
  /** Days. */
  days: number;
  /** Hours. */
  hours: number;
}

/** What the policy decided for one changeset, and why it is kept. */
export interface RetentionDecision<T> {
  item: T;
  keep: boolean;
  /** The rules that keep it ("last", "daily", "within", "newest", …). */
  reasons: string[];
}

const RULES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"] as const;

/** True when the policy keeps nothing by any rule (forget refuses it). */
export function isEmptyPolicy(p: RetentionPolicy): boolean {
  return RULES.every((r) => p[r] === undefined || p[r] === 0) && p.within === undefined;
}

/** Parses "1y2m3d4h" (any of the parts, in this order). */
export function parseDuration(text: string): Duration {
  const m = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)d)?(?:(\d+)h)?$/.exec(text.trim());
  if (!m || text.trim() === "") {
    throw new Error(
      `a duration is years, months, days and hours such as 1y6m, 14d or 36h, not "${text}"`,
    );
  }
  return {
    years: Number(m[1] ?? 0),
    months: Number(m[2] ?? 0),
    days: Number(m[3] ?? 0),
    hours: Number(m[4] ?? 0),
  };
}

/** The ISO 8601 week of a UTC time, as year * 100 + week. */
function isoWeek(d: Date): number {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7; // Monday 1 … Sunday 7
  t.setUTCDate(t.getUTCDate() + 4 - day); // the Thursday of the same week names its year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return year * 100 + week;
}

/** The bucket of a time under a rule (`n` is its position, for "last"). */
function bucket(rule: typeof RULES[number], d: Date, n: number): number {
  const y = d.getUTCFullYear(), mo = d.getUTCMonth() + 1, day = d.getUTCDate();
  switch (rule) {
    case "last":
      return n;
    case "hourly":
      return ((y * 100 + mo) * 100 + day) * 100 + d.getUTCHours();
    case "daily":
      return (y * 100 + mo) * 100 + day;
    case "weekly":
      return isoWeek(d);
    case "monthly":
      return y * 100 + mo;
    case "yearly":
      return y;
  }
}

/** The time `span` before `t` (calendar arithmetic in UTC). */
export function before(t: Date, span: Duration): Date {
  const d = new Date(t.getTime());
  d.setUTCFullYear(d.getUTCFullYear() - span.years, d.getUTCMonth() - span.months);
  d.setUTCDate(d.getUTCDate() - span.days);
  d.setUTCHours(d.getUTCHours() - span.hours);
  return d;
}

/**
 * Applies a policy to the changesets of one source. `time` gives each one's creation time; the
 * result is newest first. The newest changeset is always kept.
 */
export function applyPolicy<T>(
  items: T[],
  time: (item: T) => Date,
  policy: RetentionPolicy,
): RetentionDecision<T>[] {
  const sorted = [...items].sort((a, b) => time(b).getTime() - time(a).getTime());
  const left = new Map(RULES.map((r) => [r, policy[r] ?? 0]));
  const last = new Map<string, number | null>(RULES.map((r) => [r, null]));
  const since = sorted.length > 0 && policy.within
    ? before(time(sorted[0]), policy.within).getTime()
    : null;
  return sorted.map((item, n) => {
    const t = time(item);
    const reasons: string[] = [];
    if (n === 0) reasons.push("newest");
    for (const rule of RULES) {
      const count = left.get(rule)!;
      if (count === 0) continue;
      const b = bucket(rule, t, n);
      if (b === last.get(rule)) continue;
      last.set(rule, b);
      if (count > 0) left.set(rule, count - 1);
      reasons.push(rule);
    }
    if (since !== null && t.getTime() > since) reasons.push("within");
    return { item, keep: reasons.length > 0, reasons };
  });
}
