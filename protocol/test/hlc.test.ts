import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compareHlc, HLC_ZERO, type Hlc, HybridClock, isHlc, observe, tick } from "../hlc.js";
import { forAll, type Rng } from "./prng.js";

const h = (wall: number, logical: number): Hlc => ({ wall, logical });

describe("compareHlc", () => {
  const cases: [Hlc, Hlc, -1 | 0 | 1][] = [
    [h(1, 0), h(2, 0), -1],
    [h(2, 0), h(1, 0), 1],
    [h(1, 5), h(2, 0), -1],
    [h(1, 1), h(1, 2), -1],
    [h(1, 2), h(1, 1), 1],
    [h(1, 2), h(1, 2), 0],
    [HLC_ZERO, h(0, 1), -1],
  ];
  for (const [a, b, sign] of cases) {
    test(`${JSON.stringify(a)} vs ${JSON.stringify(b)} is ${sign}`, () => {
      assert.equal(Math.sign(compareHlc(a, b)), sign);
      assert.equal(Math.sign(compareHlc(b, a)), sign === 0 ? 0 : -sign);
    });
  }
});

describe("tick", () => {
  const cases: [string, Hlc, number, Hlc][] = [
    ["clock moves forward", h(100, 7), 200, h(200, 0)],
    ["same millisecond", h(100, 7), 100, h(100, 8)],
    ["clock went backwards", h(100, 7), 50, h(100, 8)],
    ["clock reset to zero", h(100, 0), 0, h(100, 1)],
    ["first tick", HLC_ZERO, 1, h(1, 0)],
    ["first tick at zero", HLC_ZERO, 0, h(0, 1)],
  ];
  for (const [name, last, now, expected] of cases) {
    test(name, () => {
      const next = tick(last, now);
      assert.deepEqual(next, expected);
      assert.ok(compareHlc(next, last) > 0);
    });
  }

  test("does not mutate its input", () => {
    const last = h(5, 5);
    tick(last, 1);
    tick(last, 10);
    assert.deepEqual(last, h(5, 5));
  });

  test("monotonic under a clock running backwards for 1000 ticks", () => {
    let last = tick(HLC_ZERO, 10_000);
    for (let now = 9_999; now > 8_999; now--) {
      const next = tick(last, now);
      assert.ok(compareHlc(next, last) > 0, `${JSON.stringify(next)} after ${JSON.stringify(last)}`);
      assert.equal(next.wall, 10_000, "wall never follows a backwards clock");
      last = next;
    }
    assert.deepEqual(last, h(10_000, 1000));
  });
});

describe("observe", () => {
  const cases: [string, Hlc, Hlc, number, Hlc][] = [
    ["physical clock ahead of both", h(10, 3), h(20, 4), 30, h(30, 0)],
    ["remote ahead", h(10, 3), h(20, 4), 15, h(20, 5)],
    ["local ahead", h(30, 3), h(20, 4), 15, h(30, 4)],
    ["same wall on both, now behind", h(20, 3), h(20, 9), 5, h(20, 10)],
    ["same wall on both, local logical larger", h(20, 11), h(20, 9), 20, h(20, 12)],
    ["all three equal", h(20, 1), h(20, 1), 20, h(20, 2)],
    ["remote equals now, local behind", h(10, 0), h(20, 6), 20, h(20, 7)],
    ["local equals now, remote behind", h(20, 6), h(10, 9), 20, h(20, 7)],
  ];
  for (const [name, last, remote, now, expected] of cases) {
    test(name, () => {
      const next = observe(last, remote, now);
      assert.deepEqual(next, expected);
      assert.ok(compareHlc(next, last) > 0, "exceeds local");
      assert.ok(compareHlc(next, remote) > 0, "exceeds remote");
    });
  }
});

/** A random timestamp near a small set of walls, so collisions are common. */
function randomHlc(rng: Rng): Hlc {
  return h(rng.pick([0, 1, 2, 1000, 1001, rng.int(0, 2 ** 40)]), rng.int(0, rng.pick([0, 3, 1000])));
}

describe("hlc properties", () => {
  test("tick exceeds its input and never lowers the wall (5000 cases)", () => {
    forAll("tick monotonic", 5000, (rng) => {
      const last = randomHlc(rng);
      const now = rng.pick([last.wall - 1, last.wall, last.wall + 1, rng.int(0, 2 ** 40)]);
      const next = tick(last, Math.max(0, now));
      assert.ok(isHlc(next));
      assert.ok(compareHlc(next, last) > 0);
      assert.ok(next.wall >= Math.max(0, now), "wall keeps up with physical time");
      assert.ok(next.wall >= last.wall);
    });
  });

  test("observe exceeds both inputs and physical time (5000 cases)", () => {
    forAll("observe exceeds", 5000, (rng) => {
      const last = randomHlc(rng);
      const remote = randomHlc(rng);
      const now = rng.pick([last.wall, remote.wall, rng.int(0, 2 ** 40), 0]);
      const next = observe(last, remote, now);
      assert.ok(isHlc(next));
      assert.ok(compareHlc(next, last) > 0, "exceeds local");
      assert.ok(compareHlc(next, remote) > 0, "exceeds remote");
      assert.equal(next.wall, Math.max(last.wall, remote.wall, now), "wall is the max");
      assert.deepEqual(observe(last, remote, now), next, "deterministic");
    });
  });

  test("observe is symmetric in local and remote (5000 cases)", () => {
    forAll("observe symmetric", 5000, (rng) => {
      const a = randomHlc(rng);
      const b = randomHlc(rng);
      const now = rng.int(0, 1002);
      assert.deepEqual(observe(a, b, now), observe(b, a, now));
    });
  });

  test("a chain of ticks and observes is strictly increasing (200 runs of 200 steps)", () => {
    forAll("clock run", 200, (rng) => {
      let last = HLC_ZERO;
      let physical = rng.int(0, 1000);
      for (let step = 0; step < 200; step++) {
        physical += rng.int(-5, 5); // a clock that jitters both ways
        physical = Math.max(0, physical);
        const next = rng.next() < 0.5 ? tick(last, physical) : observe(last, randomHlc(rng), physical);
        assert.ok(compareHlc(next, last) > 0, `step ${step}`);
        last = next;
      }
    });
  });
});

describe("isHlc", () => {
  const good: unknown[] = [HLC_ZERO, h(1, 0), h(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)];
  const bad: unknown[] = [
    null,
    undefined,
    1,
    "1.0",
    [],
    {},
    { wall: 1 },
    { logical: 1 },
    h(-1, 0),
    h(0, -1),
    h(1.5, 0),
    h(0, 0.5),
    h(Number.NaN, 0),
    h(Number.POSITIVE_INFINITY, 0),
    h(2 ** 53, 0),
    { wall: "1", logical: 0 },
  ];
  for (const value of good) test(`accepts ${JSON.stringify(value)}`, () => assert.equal(isHlc(value), true));
  for (const value of bad)
    test(`rejects ${String(JSON.stringify(value))}`, () => assert.equal(isHlc(value), false));
});

describe("HybridClock", () => {
  test("reads the injected physical clock and stays monotonic when it goes backwards", () => {
    const readings = [100, 100, 90, 200, 150];
    const clock = new HybridClock(() => readings.shift()!);
    const seen = [clock.now(), clock.now(), clock.now(), clock.now(), clock.now()];
    assert.deepEqual(seen, [h(100, 0), h(100, 1), h(100, 2), h(200, 0), h(200, 1)]);
  });

  test("after observing a remote timestamp, the next one exceeds it", () => {
    let physical = 10;
    const clock = new HybridClock(() => physical);
    clock.now();
    clock.observe(h(5000, 42));
    physical = 11;
    const next = clock.now();
    assert.ok(compareHlc(next, h(5000, 42)) > 0);
    assert.deepEqual(next, h(5000, 44));
  });

  test("HLC_ZERO is frozen", () => {
    assert.ok(Object.isFrozen(HLC_ZERO));
  });
});
