/**
 * How pulls are recorded for retention (node/data/pull-record.ts): many
 * pulls cost one event per flush, a manifest pulled again within the
 * resolution is not recorded again, and pulls a flush could not commit (the
 * log unavailable) are kept for the next. The commit function here stands
 * for the registry's commit step, whose behaviour is not what is tested
 * (the end-to-end path, a pull in one region reaching another's plan, is in
 * retention.test.ts against real processes).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { EventBody, PullsRecorded } from "../../protocol/events.js";
import { silentLogger } from "../../testing/harness.js";
import { PullRecord } from "../data/pull-record.js";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;

function recorder(options: { failing?: () => boolean; now: () => number }) {
  const committed: EventBody<PullsRecorded>[] = [];
  const recorded = new Map<string, number>();
  const record = new PullRecord({
    commit: async (body) => {
      if (options.failing?.()) throw new Error("log unavailable");
      committed.push(body);
      for (const p of body.pulls) recorded.set(`${p.repo}@${p.digest}`, Date.parse(p.at));
    },
    lastRecorded: async (repo, digest) => recorded.get(`${repo}@${digest}`),
    flushMs: 60_000,
    resolutionMs: 3_600_000,
    logger: silentLogger,
    now: options.now,
  });
  return { record, committed };
}

test("a thousand pulls of two manifests are one event of two entries, at the minute of the last pull", async () => {
  let now = Date.parse("2026-06-01T10:00:30Z");
  const { record, committed } = recorder({ now: () => now });
  for (let i = 0; i < 1000; i++) {
    record.pulled("team/app", i % 2 === 0 ? D1 : D2);
    now += 100;
  }
  await record.flush();
  assert.equal(committed.length, 1);
  assert.deepEqual(committed[0]!.pulls.map((p) => [p.repo, p.digest, p.at]).sort(), [
    ["team/app", D1, "2026-06-01T10:02:00.000Z"],
    ["team/app", D2, "2026-06-01T10:02:00.000Z"],
  ]);
  await record.flush();
  assert.equal(committed.length, 1, "nothing pulled since: nothing written");
});

test("pulled again within the resolution: not recorded again; after it: recorded", async () => {
  let now = Date.parse("2026-06-01T10:00:00Z");
  const { record, committed } = recorder({ now: () => now });
  record.pulled("team/app", D1);
  await record.flush();
  now += 30 * 60_000;
  record.pulled("team/app", D1);
  await record.flush();
  assert.equal(committed.length, 1);
  now += 31 * 60_000;
  record.pulled("team/app", D1);
  await record.flush();
  assert.equal(committed.length, 2);
  assert.equal(committed[1]!.pulls[0]!.at, "2026-06-01T11:01:00.000Z");
});

test("a flush the log refuses keeps its pulls for the next", async () => {
  let failing = true;
  const { record, committed } = recorder({
    failing: () => failing,
    now: () => Date.parse("2026-06-01T10:00:00Z"),
  });
  record.pulled("team/app", D1);
  record.pulled("other/app", D2);
  await record.flush();
  assert.equal(committed.length, 0);
  failing = false;
  await record.flush();
  assert.equal(committed.length, 1);
  assert.equal(committed[0]!.pulls.length, 2);
});
