// The text tables of status, ls and find: aligned columns, and no limit on the number of rows
// (a listing of a million entries once overflowed the stack while measuring the columns).

import assert from "node:assert/strict";
import { table } from "../../lib/cli/common.ts";

Deno.test("table aligns its columns, for a million rows too", () => {
  assert.equal(
    table(["PATH", "SIZE"], [["a.txt", "1"], ["longer/name.txt", "12345"]]),
    "PATH             SIZE\na.txt            1\nlonger/name.txt  12345",
  );
  const rows = Array.from({ length: 1_000_000 }, (_, i) => [`f${i}`, String(i)]);
  const lines = table(["PATH", "SIZE"], rows).split("\n");
  assert.equal(lines.length, 1_000_001);
  assert.equal(lines[1], "f0       0");
  assert.equal(lines[1_000_000], "f999999  999999");
});
