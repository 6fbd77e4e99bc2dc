// The one counting semaphore: slots, the order waiters get them in, and widening.

import assert from "node:assert/strict";
import { Semaphore, turn } from "../../lib/scheduler.ts";

/** Lets every promise callback that is already due run. */
const settle = turn;

Deno.test("a semaphore lets n holders in and hands a released slot to the longest waiter", async () => {
  const sem = new Semaphore(2);
  const got: string[] = [];
  await sem.acquire();
  await sem.acquire();
  const waiters = ["a", "b", "c"].map((w) => sem.acquire().then(() => got.push(w)));
  await settle();
  assert.deepEqual(got, [], "no slot is free");
  sem.release();
  await settle();
  assert.deepEqual(got, ["a"]);
  sem.release();
  sem.release();
  await Promise.all(waiters);
  assert.deepEqual(got, ["a", "b", "c"]);
});

Deno.test("run frees its slot when the task fails", async () => {
  const sem = new Semaphore(1);
  await assert.rejects(() => sem.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await sem.run(() => Promise.resolve(7)), 7);
});

Deno.test("widen lets waiters in at once and never lowers the limit", async () => {
  const sem = new Semaphore(1);
  await sem.acquire();
  let admitted = 0;
  const waiters = Array.from({ length: 4 }, () => sem.acquire().then(() => admitted++));
  await settle();
  assert.equal(admitted, 0);
  sem.widen(3);
  await settle();
  assert.equal(admitted, 2, "two new slots, two waiters in");
  sem.widen(2);
  await settle();
  assert.equal(admitted, 2, "a smaller limit changes nothing");
  sem.release();
  sem.release();
  await Promise.all(waiters);
  assert.equal(admitted, 4);
});
