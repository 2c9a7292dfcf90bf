/**
 * The write fence as a table: what the heartbeats saw (when each other
 * region last answered, the epoch it reported), this region's epoch and the
 * lease, and the reason (or "") that must follow. Then the epoch of a view's
 * home tables.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  FENCE_CAUSES,
  type FenceInput,
  type FencePeer,
  fenceCause,
  fenceReason,
  highestEpoch,
} from "../fence.js";

const NOW = 1_000_000;
const LEASE = 3_000;
const seen = (region: string, agoMs: number | undefined, epoch = 0): FencePeer => ({
  region,
  lastSeenAt: agoMs === undefined ? undefined : NOW - agoMs,
  epoch,
});

const cases: Array<{ name: string; input: Omit<FenceInput, "now" | "leaseMs">; fence: string | RegExp }> = [
  { name: "a mesh of one region is never fenced", input: { epoch: 0, others: [] }, fence: "" },
  {
    name: "a mesh of one region is never fenced, whatever its epoch",
    input: { epoch: 7, others: [] },
    fence: "",
  },
  {
    name: "no other region has answered yet",
    input: { epoch: 0, others: [seen("b", undefined), seen("c", undefined)] },
    fence: "starting: no other region has answered yet",
  },
  {
    name: "one region answered within the lease: open",
    input: { epoch: 0, others: [seen("b", 100), seen("c", undefined)] },
    fence: "",
  },
  {
    name: "answered exactly a lease ago: still open",
    input: { epoch: 0, others: [seen("b", LEASE)] },
    fence: "",
  },
  {
    name: "every region silent past the lease: cut off, with the time and the lease",
    input: { epoch: 0, others: [seen("b", 4_200), seen("c", 9_000)] },
    fence: "cut off from every other region for 4.2 s (lease 3 s)",
  },
  {
    name: "one region silent, another answering: open",
    input: { epoch: 0, others: [seen("b", 60_000), seen("c", 500)] },
    fence: "",
  },
  {
    name: "a region within the lease reports a higher epoch: behind",
    input: { epoch: 1, others: [seen("b", 200, 2), seen("c", 100, 1)] },
    fence: "behind failover epoch 2 (this region has 1); catching up",
  },
  {
    name: "the highest epoch reported is the one named",
    input: { epoch: 0, others: [seen("b", 200, 2), seen("c", 100, 5)] },
    fence: "behind failover epoch 5 (this region has 0); catching up",
  },
  {
    name: "an epoch from a region silent past the lease does not count",
    input: { epoch: 1, others: [seen("b", 10_000, 9), seen("c", 100, 1)] },
    fence: "",
  },
  {
    name: "equal or lower epochs elsewhere: open",
    input: { epoch: 3, others: [seen("b", 10, 3), seen("c", 10, 2)] },
    fence: "",
  },
  {
    name: "cut off wins over behind (nothing within the lease to be behind)",
    input: { epoch: 0, others: [seen("b", 5_000, 4)] },
    fence: /^cut off from every other region for 5 s/,
  },
];

for (const c of cases) {
  test(`fence: ${c.name}`, () => {
    const got = fenceReason({ now: NOW, leaseMs: LEASE, ...c.input });
    if (typeof c.fence === "string") assert.equal(got, c.fence);
    else assert.match(got, c.fence);
  });
}

test("fence: the lease boundary moves with now, deterministically", () => {
  const input = { leaseMs: LEASE, epoch: 0, others: [{ region: "b", lastSeenAt: 10_000, epoch: 0 }] };
  for (let now = 10_000; now <= 10_000 + 2 * LEASE; now += 250) {
    const a = fenceReason({ ...input, now });
    assert.equal(a, fenceReason({ ...input, now }), "equal inputs, equal answers");
    assert.equal(a === "", now - 10_000 <= LEASE, `${now - 10_000} ms after the last answer`);
  }
});

test("highestEpoch: the largest epoch key over every scope's home table; 0 when none", () => {
  assert.equal(highestEpoch([]), 0);
  assert.equal(highestEpoch([{ homes: {} }]), 0);
  assert.equal(highestEpoch([{ homes: { 0: "a" } }]), 0);
  assert.equal(highestEpoch([{ homes: { 0: "a", 3: "b" } }, { homes: { 1: "c" } }, { homes: {} }]), 3);
  assert.equal(highestEpoch([{ homes: { 2: "a" } }, { homes: { 11: "b", 4: "a" } }]), 11);
});

test("fenceCause: every reason fenceReason gives has its bounded metric label; none when open", () => {
  const at = (others: FencePeer[], epoch = 0) => fenceReason({ now: NOW, leaseMs: LEASE, epoch, others });
  assert.equal(fenceCause(at([])), undefined);
  assert.equal(fenceCause(at([seen("b", undefined)])), "starting");
  assert.equal(fenceCause(at([seen("b", LEASE + 1)])), "cut_off");
  assert.equal(fenceCause(at([seen("b", 10, 3)], 1)), "behind_epoch");
  assert.deepEqual([...FENCE_CAUSES].sort(), ["behind_epoch", "cut_off", "starting"]);
});
