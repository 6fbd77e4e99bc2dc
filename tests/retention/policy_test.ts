// The retention policy alone: restic's buckets, newest first, in UTC.

import assert from "node:assert/strict";
import { applyPolicy, parseDuration, type RetentionPolicy } from "../../lib/retention/policy.ts";

function kept(times: string[], policy: RetentionPolicy): string[] {
  return applyPolicy(times, (t) => new Date(t), policy).filter((d) => d.keep).map((d) => d.item)
    .sort();
}

Deno.test("keep-last keeps the newest N", () => {
  const times = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"];
  assert.deepEqual(kept(times, { last: 2 }), times.slice(1));
});

Deno.test("keep-hourly keeps the newest changeset of each of the newest N hours", () => {
  const times = [
    "2026-01-01T10:05:00Z",
    "2026-01-01T10:55:00Z",
    "2026-01-01T11:10:00Z",
    "2026-01-01T11:20:00Z",
    "2026-01-01T13:00:00Z",
  ];
  assert.deepEqual(kept(times, { hourly: 3 }), [times[1], times[3], times[4]]);
});

Deno.test("keep-weekly uses ISO weeks: 31 December 2024 is in the first week of 2025", () => {
  const times = ["2024-12-29T12:00:00Z", "2024-12-31T12:00:00Z", "2025-01-02T12:00:00Z"];
  assert.deepEqual(kept(times, { weekly: 2 }), [times[0], times[2]]);
});

Deno.test("keep-monthly and keep-yearly count buckets that hold a changeset, across years", () => {
  const times = ["2025-11-15T00:00:00Z", "2025-12-20T00:00:00Z", "2026-02-01T00:00:00Z"];
  assert.deepEqual(kept(times, { monthly: 2 }), times.slice(1));
  assert.deepEqual(kept(times, { yearly: 2 }), [times[1], times[2]]);
});

Deno.test("keep-within is measured from the newest changeset, not from now", () => {
  const times = ["2020-01-01T00:00:00Z", "2020-01-05T00:00:00Z", "2020-01-06T12:00:00Z"];
  assert.deepEqual(kept(times, { within: parseDuration("2d") }), times.slice(1));
  assert.deepEqual(parseDuration("1y2m3d4h"), { years: 1, months: 2, days: 3, hours: 4 });
  assert.throws(() => parseDuration("3w"), /duration/);
});

Deno.test("the newest changeset is always kept, and rules add up", () => {
  const times = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-03-01T00:00:00Z"];
  assert.deepEqual(kept(times, { daily: 0 }), [times[2]]);
  const d = applyPolicy(times, (t) => new Date(t), { last: 1, monthly: 2 });
  assert.deepEqual(d.map((x) => x.reasons), [["newest", "last", "monthly"], ["monthly"], []]);
  assert.deepEqual(kept(times, { daily: -1 }), times);
});
