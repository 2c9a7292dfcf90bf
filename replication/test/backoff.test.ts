import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffMs, durableName } from "../worker.js";

test("backoff doubles from the minimum and stops at the maximum", () => {
  const table: Array<[number, number]> = [
    [0, 250],
    [1, 500],
    [2, 1000],
    [4, 4000],
    [5, 5000],
    [50, 5000],
    [10_000, 5000],
  ];
  for (const [n, want] of table) assert.equal(backoffMs(n, 250, 5000), want, `attempt ${n}`);
});

test("each destination region has its own durable consumer name", () => {
  assert.equal(durableName("b"), "replicate-to-b");
  assert.notEqual(durableName("b"), durableName("c"));
});
