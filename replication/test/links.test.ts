/**
 * The link monitor's decisions (replication/links.ts) with a fake clock: a
 * link the source is ahead of never reads 0 pending or 0 age, however the
 * worker learnt it; a caught-up link reads 0; the recent lag forgets what
 * is older than its window.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { behindBy, LinkMonitor, oldestPendingSince, windowQuantile } from "../links.js";

function monitor(windowMs = 60_000) {
  let now = 1_000_000;
  const metrics = new Registry();
  const links = new LinkMonitor({ region: "a", sources: ["b"], metrics, windowMs, now: () => now });
  return {
    links,
    metrics,
    advance: (ms: number) => {
      now += ms;
    },
    at: () => now,
    link: () => links.snapshot().find((s) => s.src === "b")!,
  };
}

test("pure parts: behind, oldest pending, window quantile", () => {
  assert.equal(behindBy(undefined, 3), undefined);
  assert.equal(behindBy(10, 3), 7);
  assert.equal(behindBy(3, 10), 0);
  assert.equal(oldestPendingSince(0, [], undefined), undefined);
  assert.equal(oldestPendingSince(2, [], 500), 500);
  assert.equal(oldestPendingSince(2, [700, 300], 500), 300);
  assert.equal(
    oldestPendingSince(0, [700], undefined),
    700,
    "an event in flight waits, whatever the count says",
  );
  assert.equal(windowQuantile([], 0.5), undefined);
  assert.equal(windowQuantile([5, 1, 3], 0.5), 3);
  assert.equal(windowQuantile([1, 2, 3, 4, 100], 0.99), 100);
});

test("a source ahead of the link reads pending > 0 and a growing age until the link catches up", async () => {
  const m = monitor();
  // Nothing known yet: no pending figure, age 0.
  assert.equal(m.link().pending, undefined);
  m.links.sourceAnswered("b", { deliveredSeq: 4, ackFloorSeq: 4, numPending: 0 });
  assert.equal(m.link().pending, 0);
  assert.equal(m.link().oldestPendingAgeSeconds, 0);
  // The source gets 2 events the worker is not given (a stalled pull).
  m.advance(1_000);
  m.links.sourceAnswered("b", { deliveredSeq: 4, ackFloorSeq: 4, numPending: 2 });
  m.advance(30_000);
  assert.equal(m.link().pending, 2);
  assert.equal(m.link().oldestPendingAgeSeconds, 30);
  // The source stops answering: the figures stay, the age keeps growing.
  m.advance(60_000);
  assert.equal(m.link().pending, 2);
  assert.equal(m.link().oldestPendingAgeSeconds, 90);
  assert.equal(m.link().sourceCheckedUnix, Math.floor((m.at() - 90_000) / 1000));
  const text = await m.metrics.metrics();
  assert.match(text, /meridian_replication_pending_events\{src="b",dst="a"\} 2/);
  assert.match(text, /meridian_replication_oldest_pending_age_seconds\{src="b",dst="a"\} 90/);
  assert.match(text, /meridian_replication_source_last_seq\{src="b",dst="a"\} 6/);
  assert.match(text, /meridian_replication_applied_seq\{src="b",dst="a"\} 4/);
  // Delivered: the exact stream time of the event counts when it is older.
  m.links.delivered("b", 5, m.at() - 120_000, 1);
  assert.equal(m.link().oldestPendingAgeSeconds, 120);
  m.links.committed("b", 5, 120);
  m.advance(500);
  m.links.delivered("b", 6, m.at() - 100, 0);
  assert.equal(m.link().pending, 1);
  assert.ok(m.link().oldestPendingAgeSeconds <= 0.6, "after a commit the wait counts from it");
  m.links.committed("b", 6, 0.1);
  assert.equal(m.link().pending, 0);
  assert.equal(m.link().oldestPendingAgeSeconds, 0);
  assert.equal(m.link().lastSuccessUnix, Math.floor(m.at() / 1000));
});

test("the recent lag is over the window only", () => {
  const m = monitor(60_000);
  m.links.delivered("b", 1, m.at());
  m.links.committed("b", 1, 180); // an outage's event
  m.advance(61_000);
  for (let seq = 2; seq <= 11; seq++) {
    m.links.delivered("b", seq, m.at());
    m.links.committed("b", seq, 0.05);
  }
  const link = m.link();
  assert.equal(link.recentCount, 10);
  assert.equal(link.recentLagP50Ms, 50);
  assert.equal(link.recentLagP99Ms, 50, "the 180 s event left the window");
  m.advance(61_000);
  assert.equal(m.link().recentLagP99Ms, undefined);
});

test("a restarted worker takes the durable's ack floor as applied", () => {
  const m = monitor();
  m.links.sourceAnswered("b", { deliveredSeq: 40, ackFloorSeq: 38, numPending: 5 });
  assert.equal(m.link().appliedSeq, 38);
  assert.equal(m.link().sourceLastSeq, 45);
  assert.equal(m.link().pending, 7);
});

test("a source that stops answering is not called caught up: the age counts from its last answer", () => {
  const m = monitor();
  m.links.sourceAnswered("b", { deliveredSeq: 9, ackFloorSeq: 9, numPending: 0 });
  m.advance(8_000);
  assert.equal(m.link().oldestPendingAgeSeconds, 0, "within the silence bound: caught up");
  m.advance(12_000);
  assert.equal(m.link().pending, 0, "nothing is known to wait");
  assert.equal(m.link().oldestPendingAgeSeconds, 20, "but nothing is known caught up for 20 s");
  m.links.sourceAnswered("b", { deliveredSeq: 9, ackFloorSeq: 9, numPending: 0 });
  assert.equal(m.link().oldestPendingAgeSeconds, 0);
});
