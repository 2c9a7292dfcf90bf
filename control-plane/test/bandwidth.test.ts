import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Bucket, charge, LinkBudgets } from "../bandwidth.js";

const KiB = 1024;

describe("charge", () => {
  const rate = 100 * KiB;
  const cases: Array<[string, Bucket | undefined, number, number, number, number]> = [
    // name, bucket, bytes, now, expected balance, expected wait ms
    ["a fresh link may send one second's worth at once", undefined, 100 * KiB, 0, 0, 0],
    ["beyond that, the sender waits for the debt", undefined, 150 * KiB, 0, -50 * KiB, 500],
    ["the balance refills at the rate", { balance: 0, at: 0 }, 50 * KiB, 500, 0, 0],
    ["but never beyond one second's worth", { balance: 0, at: 0 }, 100 * KiB, 60_000, 0, 0],
    [
      "a debt is paid back by the refill first",
      { balance: -100 * KiB, at: 0 },
      10 * KiB,
      500,
      -60 * KiB,
      600,
    ],
  ];
  for (const [name, bucket, bytes, now, balance, waitMs] of cases) {
    test(name, () => {
      const out = charge(bucket, bytes, now, rate);
      assert.equal(out.bucket.balance, balance);
      assert.equal(out.bucket.at, now);
      assert.ok(Math.abs(out.waitMs - waitMs) < 1e-6, `${out.waitMs} ≈ ${waitMs}`);
    });
  }
  test("n charges at once wait in total what the bytes take at the rate, minus the burst", () => {
    let bucket: Bucket | undefined;
    let longest = 0;
    for (let i = 0; i < 10; i++) {
      const out = charge(bucket, 50 * KiB, 0, rate);
      bucket = out.bucket;
      longest = Math.max(longest, out.waitMs);
    }
    // 500 KiB at 100 KiB/s is 5 s; the first 100 KiB go at once.
    assert.equal(longest, 4_000);
  });
});

describe("LinkBudgets", () => {
  test("callers to one destination share its budget; other destinations and links without one are free", async () => {
    const budgets = new LinkBudgets((to) => (to === "b" ? 100 * KiB : undefined));
    const started = performance.now();
    await Promise.all([
      budgets.take("b", 50 * KiB),
      budgets.take("b", 50 * KiB),
      budgets.take("b", 50 * KiB),
    ]);
    const shared = performance.now() - started;
    assert.ok(shared >= 450, `the third 50 KiB waited for the debt (${shared.toFixed(0)} ms)`);
    const free = performance.now();
    await budgets.take("c", 10 << 20);
    await budgets.take("", 10 << 20);
    assert.ok(performance.now() - free < shared, "no budget, no wait");
  });
  test("an aborted wait returns at once", async () => {
    const budgets = new LinkBudgets(() => 1 * KiB);
    await budgets.take("b", KiB);
    const abort = new AbortController();
    const waiting = budgets.take("b", 100 * KiB, abort.signal);
    abort.abort();
    const started = performance.now();
    await waiting;
    assert.ok(performance.now() - started < 1_000);
  });
});
