/**
 * The failed-login throttle of the audit log (node/audit-throttle.ts): what
 * is recorded one by one, what is summed up, and when a flood is reported.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ALERT_AFTER,
  ALERT_EVERY_MS,
  LoginFailureThrottle,
  MAX_ADDRESSES,
  OVERALL,
  PER_ADDRESS,
  WINDOW_MS,
} from "../audit-throttle.js";

describe("LoginFailureThrottle", () => {
  test("the first PER_ADDRESS failures of an address are recorded, the rest summed up when the window ends", () => {
    const t = new LoginFailureThrottle();
    const recorded = Array.from({ length: PER_ADDRESS + 5 }, (_, i) =>
      t.admit("10.0.0.1", `u${i}`, false, 1000 + i),
    );
    assert.equal(recorded.filter((r) => r.record).length, PER_ADDRESS);
    assert.ok(recorded.slice(PER_ADDRESS).every((r) => !r.record));
    // Another address has its own allowance.
    assert.equal(t.admit("10.0.0.2", "x", false, 1100).record, true);
    assert.deepEqual(t.roll(1000 + WINDOW_MS - 1), [], "the window is not over yet");
    assert.deepEqual(t.roll(1000 + WINDOW_MS), [
      { address: "10.0.0.1", count: 5, since: 1000, lastActor: `u${PER_ADDRESS + 4}` },
    ]);
    assert.equal(t.pending, false);
    // The next window starts with the next failure, with a fresh allowance.
    assert.equal(t.admit("10.0.0.1", "again", false, 999_999).record, true);
    assert.deepEqual(t.roll(999_999 + WINDOW_MS), []);
  });

  test("logins refused by the limiter (429) are only counted", () => {
    const t = new LoginFailureThrottle();
    assert.equal(t.admit("10.0.0.1", "a", true, 0).record, false);
    assert.deepEqual(t.roll(WINDOW_MS), [{ address: "10.0.0.1", count: 1, since: 0, lastActor: "a" }]);
  });

  test("at most OVERALL are recorded one by one over all addresses; past MAX_ADDRESSES they share '*'", () => {
    const t = new LoginFailureThrottle();
    let recorded = 0;
    for (let i = 0; i < MAX_ADDRESSES + 50; i++) if (t.admit(`a${i}`, "n", false, 5).record) recorded++;
    assert.equal(recorded, OVERALL);
    const out = t.roll(5 + WINDOW_MS);
    assert.equal(out.length, MAX_ADDRESSES - OVERALL + 1);
    assert.equal(out.find((s) => s.address === "*")?.count, 50);
    assert.equal(
      out.reduce((n, s) => n + s.count, 0),
      MAX_ADDRESSES + 50 - OVERALL,
    );
  });

  test("a flood is reported once ALERT_AFTER are suppressed, then at most every ALERT_EVERY_MS", () => {
    const t = new LoginFailureThrottle();
    const floods = [];
    for (let i = 0; i < PER_ADDRESS + ALERT_AFTER * 3; i++) {
      const { flood } = t.admit("10.0.0.9", "n", false, 10);
      if (flood !== undefined) floods.push(flood);
    }
    assert.deepEqual(floods, [{ suppressed: ALERT_AFTER, addresses: 1, top: "10.0.0.9" }]);
    t.roll(10 + WINDOW_MS);
    for (let i = 0; i < ALERT_AFTER + PER_ADDRESS; i++) t.admit("10.0.0.9", "n", true, 20 + WINDOW_MS);
    assert.equal(floods.length, 1, "not again within ALERT_EVERY_MS");
    assert.ok(t.admit("10.0.0.9", "n", true, 10 + ALERT_EVERY_MS).flood !== undefined);
  });
});
