/**
 * The rate of quota refusal records (node/data/quota-refusals.ts): one per
 * (project, repository) per window per node, again once the window has
 * passed, never waiting on the log nor throwing when the append fails.
 * The clock is injected; node/test/webhook-records.test.ts runs the real
 * path (a node refusing pushes, the records in the log, announced).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { EventBody } from "../../protocol/events.js";
import { silentLogger } from "../../testing/harness.js";
import { QuotaRefusals } from "../data/quota-refusals.js";

const refusal = { limitBytes: 100, usedBytes: 90, requestedBytes: 20 };

test("one record per repository per window, again after it; the append never awaited", async () => {
  const bodies: EventBody[] = [];
  let now = 1_000_000;
  const refusals = new QuotaRefusals({
    // Never resolves: `refused` must return without waiting for the log.
    commit: (body) => {
      bodies.push(body);
      return new Promise(() => undefined);
    },
    region: "a",
    logger: silentLogger,
    windowMs: 60_000,
    now: () => now,
  });
  for (let i = 0; i < 50; i++) refusals.refused("team/app", refusal);
  refusals.refused("team/other", refusal);
  refusals.refused("zeta/app", refusal);
  assert.deepEqual(
    bodies.map((b) => (b as { repo: string }).repo),
    ["team/app", "team/other", "zeta/app"],
  );
  assert.deepEqual(bodies[0], {
    type: "quota.exceeded",
    project: "team",
    repo: "team/app",
    region: "a",
    limitBytes: 100,
    usedBytes: 90,
    requestedBytes: 20,
  });
  now += 59_999;
  refusals.refused("team/app", refusal);
  assert.equal(bodies.length, 3, "still within the window");
  now += 1;
  refusals.refused("team/app", refusal);
  refusals.refused("team/app", refusal);
  assert.equal(bodies.length, 4, "one more once the window has passed");
});

test("a failing append is logged, never thrown", async () => {
  let calls = 0;
  const refusals = new QuotaRefusals({
    commit: async () => {
      calls++;
      throw new Error("log unavailable");
    },
    region: "a",
    logger: silentLogger,
  });
  assert.doesNotThrow(() => refusals.refused("team/app", refusal));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(calls, 1);
});
