/**
 * The membership decision as a table: sequences of heartbeat outcomes and the
 * state, misses and smoothed RTT they must lead to; then the IO wrapper with
 * a scripted probe (no network: the peer tests cover the real one).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { eventually } from "../../testing/harness.js";
import {
  DEFAULT_RULES,
  Heartbeat,
  initialHealth,
  type Observation,
  observe,
  type PeerChange,
  type PeerHealth,
  type PeerState,
} from "../heartbeat.js";

const ok = (rttMs: number, at = 0): Observation => ({ ok: true, at, rttMs });
const miss = (at = 0): Observation => ({ ok: false, at, error: "timeout" });

function run(observations: Observation[], rules = DEFAULT_RULES): PeerHealth[] {
  const out: PeerHealth[] = [];
  let h = initialHealth("b");
  for (const o of observations) {
    h = observe(h, o, rules);
    out.push(h);
  }
  return out;
}

const cases: Array<{
  name: string;
  obs: Observation[];
  states: PeerState[];
  misses: number[];
  rules?: typeof DEFAULT_RULES;
}> = [
  { name: "first success: up", obs: [ok(10)], states: ["up"], misses: [0] },
  {
    name: "misses below the limit keep unknown",
    obs: [miss(), miss()],
    states: ["unknown", "unknown"],
    misses: [1, 2],
  },
  {
    name: "never answered: down after 3",
    obs: [miss(), miss(), miss()],
    states: ["unknown", "unknown", "down"],
    misses: [1, 2, 3],
  },
  {
    name: "up stays up through 2 misses",
    obs: [ok(10), miss(), miss(), ok(10)],
    states: ["up", "up", "up", "up"],
    misses: [0, 1, 2, 0],
  },
  {
    name: "up → down on the 3rd consecutive miss, up again on the next success",
    obs: [ok(10), miss(), miss(), miss(), miss(), ok(10)],
    states: ["up", "up", "up", "down", "down", "up"],
    misses: [0, 1, 2, 3, 4, 0],
  },
  {
    name: "a success in between resets the count",
    obs: [ok(1), miss(), miss(), ok(1), miss(), miss()],
    states: ["up", "up", "up", "up", "up", "up"],
    misses: [0, 1, 2, 0, 1, 2],
  },
  {
    name: "missesToDown 1: the first miss is enough",
    obs: [ok(1), miss(), ok(1)],
    states: ["up", "down", "up"],
    misses: [0, 1, 0],
    rules: { missesToDown: 1, alpha: 0.2 },
  },
];

for (const c of cases) {
  test(`observe: ${c.name}`, () => {
    const seq = run(c.obs, c.rules);
    assert.deepEqual(
      seq.map((h) => h.state),
      c.states,
    );
    assert.deepEqual(
      seq.map((h) => h.misses),
      c.misses,
    );
  });
}

test("observe: RTT is an EWMA with alpha 0.2 of successes only, seeded by the first sample", () => {
  const seq = run([ok(100), ok(200), miss(), ok(50), ok(50)]);
  const rtts = seq.map((h) => h.rttMs);
  const expected = [100, 120, 120, 106, 94.8];
  for (const [i, r] of rtts.entries()) {
    assert.ok(Math.abs(r! - expected[i]!) < 1e-9, `${i}: ${r} vs ${expected[i]}`);
  }
  assert.equal(initialHealth("b").rttMs, undefined);
});

test("observe: last seen, last error and applied follow the outcomes", () => {
  let h = observe(initialHealth("b"), { ok: true, at: 1000, rttMs: 5, applied: { b: 7 } });
  assert.equal(h.lastSeenAt, 1000);
  assert.deepEqual(h.applied, { b: 7 });
  h = observe(h, { ok: false, at: 2000, error: "refused" });
  assert.equal(h.lastSeenAt, 1000);
  assert.equal(h.lastError, "refused");
  assert.deepEqual(h.applied, { b: 7 });
  h = observe(h, { ok: true, at: 3000, rttMs: 5 });
  assert.equal(h.lastError, undefined);
  assert.deepEqual(h.applied, { b: 7 }, "a reply without applied keeps the last known");
});

test("observe: the reported epoch and peer views follow answers and survive misses", () => {
  const views = [{ region: "c", up: true, rttMs: 4, lastSeenAtMs: 900 }];
  const steps: Array<{ obs: Observation; epoch: number; peers: typeof views }> = [
    { obs: ok(5, 1000), epoch: 0, peers: [] },
    { obs: { ok: true, at: 2000, rttMs: 5, epoch: 3, peers: views }, epoch: 3, peers: views },
    { obs: miss(3000), epoch: 3, peers: views },
    { obs: ok(5, 4000), epoch: 3, peers: views },
    { obs: { ok: true, at: 5000, rttMs: 5, epoch: 4, peers: [] }, epoch: 4, peers: [] },
  ];
  let h = initialHealth("b");
  assert.equal(h.epoch, 0);
  assert.deepEqual(h.peers, []);
  for (const [i, step] of steps.entries()) {
    h = observe(h, step.obs);
    assert.equal(h.epoch, step.epoch, `step ${i}`);
    assert.deepEqual(h.peers, step.peers, `step ${i}`);
  }
});

test("observe is pure: the input is not changed and equal inputs give equal outputs", () => {
  const h = Object.freeze(initialHealth("b"));
  const a = observe(h, ok(10, 5));
  const b = observe(h, ok(10, 5));
  assert.deepEqual(a, b);
  assert.equal(h.state, "unknown");
  assert.notEqual(a, h);
});

test("Heartbeat: probes each peer every interval, reports changes by callback and iterable", async (t) => {
  let bAlive = true;
  const calls: Record<string, number> = { b: 0, c: 0 };
  const timeouts = new Set<number>();
  const hb = new Heartbeat({
    peers: ["b", "c"],
    intervalMs: 20,
    probe: async (peer, timeoutMs, signal) => {
      calls[peer]!++;
      timeouts.add(timeoutMs);
      if (signal.aborted) throw new Error("probed after abort");
      if (peer === "c" || !bAlive) throw new Error(`${peer} unreachable`);
      await new Promise((r) => setTimeout(r, 2));
      return {
        applied: { [peer]: 3 },
        epoch: 2,
        peers: [{ region: "c", up: false, rttMs: 0, lastSeenAtMs: 0 }],
      };
    },
  });
  const changes: PeerChange[] = [];
  hb.onChange((c) => changes.push(c));
  const abort = new AbortController();
  const iterated: string[] = [];
  const consumer = (async () => {
    for await (const c of hb.changes(abort.signal)) iterated.push(`${c.peer}:${c.from}>${c.to}`);
  })();
  hb.start();
  t.after(() => hb.stop());
  await eventually(() => hb.health("b")?.state === "up" && hb.health("c")?.state === "down");
  assert.ok(hb.health("b")!.rttMs! > 0);
  assert.deepEqual(hb.health("b")!.applied, { b: 3 });
  assert.equal(hb.health("b")!.epoch, 2, "the reported epoch is kept");
  assert.deepEqual(
    hb.health("b")!.peers.map((p) => p.region),
    ["c"],
  );
  bAlive = false;
  await eventually(() => hb.health("b")?.state === "down");
  bAlive = true;
  await eventually(() => hb.health("b")?.state === "up");
  await hb.stop();
  const frozen = { ...calls };
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(calls, frozen, "no probe after stop");
  abort.abort();
  await consumer;
  const seen = changes.map((c) => `${c.peer}:${c.from}>${c.to}`);
  assert.deepEqual(
    seen.filter((s) => s.startsWith("b:")),
    ["b:unknown>up", "b:up>down", "b:down>up"],
  );
  assert.deepEqual(
    seen.filter((s) => s.startsWith("c:")),
    ["c:unknown>down"],
  );
  assert.deepEqual(iterated, seen);
  assert.deepEqual([...timeouts], [100], "the deadline defaults to the interval, at least 100 ms");
  assert.deepEqual(
    hb.snapshot().map((h) => h.peer),
    ["b", "c"],
  );
});
