import assert from "node:assert/strict";
import { test } from "node:test";
import { nearestFirst } from "../routing.js";

test("nearestFirst: healthy by RTT, then unmeasured, then down; ties by name", () => {
  const cases: Array<[string, string[], Parameters<typeof nearestFirst>[1], string[]]> = [
    [
      "by rtt",
      ["a", "b", "c"],
      [
        { region: "a", up: true, rttMs: 30 },
        { region: "b", up: true, rttMs: 5 },
        { region: "c", up: true, rttMs: 12 },
      ],
      ["b", "c", "a"],
    ],
    [
      "down last",
      ["a", "b"],
      [
        { region: "a", up: false, rttMs: 1 },
        { region: "b", up: true, rttMs: 50 },
      ],
      ["b", "a"],
    ],
    [
      "unmeasured between",
      ["a", "b", "c"],
      [
        { region: "a", up: false },
        { region: "c", up: true, rttMs: 9 },
      ],
      ["c", "b", "a"],
    ],
    [
      "up with rtt 0 is unmeasured",
      ["a", "b"],
      [
        { region: "a", up: true, rttMs: 0 },
        { region: "b", up: true, rttMs: 3 },
      ],
      ["b", "a"],
    ],
    ["ties by name", ["c", "a", "b"], [], ["a", "b", "c"]],
    ["empty", [], [], []],
  ];
  for (const [name, regions, health, want] of cases)
    assert.deepEqual(nearestFirst(regions, health), want, name);
});

test("nearestFirst is deterministic whatever the input order", () => {
  const health = [
    { region: "x", up: true, rttMs: 4 },
    { region: "y", up: false },
    { region: "z", up: true, rttMs: 4 },
  ];
  const want = nearestFirst(["x", "y", "z", "w"], health);
  for (const order of [
    ["w", "z", "y", "x"],
    ["y", "w", "x", "z"],
  ]) {
    assert.deepEqual(nearestFirst(order, [...health].reverse()), want);
  }
  assert.deepEqual(want, ["x", "z", "w", "y"]);
});
