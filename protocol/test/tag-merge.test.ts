import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { digestOf } from "../digest.js";
import { compareWrites, mergeTag, type TagMergeRule, type TagWrite } from "../tag-merge.js";
import { forAll, type Rng } from "./prng.js";

const RULES: readonly TagMergeRule[] = ["lww", "first-write"];
const DA = digestOf("a");
const DB = digestOf("b");

const w = (wall: number, logical: number, origin: string, eventId: string, digest: string | undefined = DA) =>
  ({ digest, hlc: { wall, logical }, origin, eventId }) satisfies TagWrite;

const fold = (rule: TagMergeRule, writes: readonly TagWrite[]) =>
  writes.reduce<TagWrite | undefined>((cur, x) => mergeTag(rule, cur, x), undefined);

describe("mergeTag tables", () => {
  const early = w(100, 0, "eu", "e1", DA);
  const late = w(200, 0, "eu", "e2", DB);
  const lateLogical = w(100, 1, "eu", "e3", DB);
  const originA = w(100, 0, "ap", "e4", DB);
  const originZ = w(100, 0, "us", "e5", DB);
  const idLow = w(100, 0, "eu", "a0", DB);
  const tombstoneLate = w(300, 0, "us", "t1", undefined);
  const tombstoneEarly = w(50, 0, "us", "t2", undefined);

  const cases: [string, TagWrite, TagWrite, TagWrite, TagWrite][] = [
    // name, x, y, lww winner, first-write winner
    ["later wall clock", early, late, late, early],
    ["same wall, higher logical", early, lateLogical, lateLogical, early],
    ["same hlc, origin breaks the tie", originA, originZ, originZ, originA],
    ["same hlc, origin breaks the tie against eu", early, originZ, originZ, early],
    ["same hlc and origin, event id breaks the tie", early, idLow, early, idLow],
    ["a later delete beats a set", late, tombstoneLate, tombstoneLate, late],
    ["an earlier delete loses to a set", late, tombstoneEarly, late, tombstoneEarly],
    [
      "logical beats origin",
      w(100, 1, "aa", "x"),
      w(100, 0, "zz", "y"),
      w(100, 1, "aa", "x"),
      w(100, 0, "zz", "y"),
    ],
    [
      "wall beats logical",
      w(101, 0, "a", "x"),
      w(100, 99, "a", "y"),
      w(101, 0, "a", "x"),
      w(100, 99, "a", "y"),
    ],
  ];
  for (const [name, x, y, lwwWinner, firstWinner] of cases) {
    test(`${name}: lww`, () => {
      assert.deepEqual(mergeTag("lww", x, y), lwwWinner);
      assert.deepEqual(mergeTag("lww", y, x), lwwWinner);
    });
    test(`${name}: first-write`, () => {
      assert.deepEqual(mergeTag("first-write", x, y), firstWinner);
      assert.deepEqual(mergeTag("first-write", y, x), firstWinner);
    });
  }

  for (const rule of RULES) {
    test(`${rule}: the first write seen stands when there is none`, () => {
      assert.equal(mergeTag(rule, undefined, late), late);
      assert.equal(mergeTag(rule, undefined, tombstoneEarly), tombstoneEarly);
    });
    test(`${rule}: merging a write with itself returns it`, () => {
      assert.equal(mergeTag(rule, late, late), late);
      assert.deepEqual(mergeTag(rule, late, { ...late }), late);
    });
  }

  test("origin and event id compare by code unit, not locale", () => {
    assert.ok(compareWrites(w(1, 0, "Z", "x"), w(1, 0, "a", "x")) < 0, "'Z' < 'a' in code units");
    assert.ok(compareWrites(w(1, 0, "a", "B"), w(1, 0, "a", "b")) < 0);
    assert.equal(compareWrites(w(1, 0, "a", "b"), w(1, 0, "a", "b")), 0);
  });
});

/** A set of distinct writes (distinct event ids), with many hlc and origin ties. */
function randomWrites(rng: Rng, count: number): TagWrite[] {
  const origins = ["eu-west-1", "us-east-1", "ap-south-1"];
  return Array.from({ length: count }, (_, i) => ({
    digest: rng.next() < 0.2 ? undefined : digestOf(String(rng.int(0, 3))),
    hlc: { wall: rng.int(0, 3), logical: rng.int(0, 2) },
    origin: rng.pick(origins),
    eventId: `ev-${rng.int(0, 1_000_000)}-${i}`,
  }));
}

describe("mergeTag properties", () => {
  for (const rule of RULES) {
    test(`${rule}: commutative — any permutation gives the same winner (1000 cases)`, () => {
      forAll(`${rule} commutative`, 1000, (rng) => {
        const writes = randomWrites(rng, rng.int(1, 8));
        const expected = fold(rule, writes);
        const sorted = [...writes].sort(compareWrites);
        assert.equal(expected, rule === "lww" ? sorted.at(-1) : sorted[0], "winner is the extreme write");
        for (let p = 0; p < 5; p++) assert.equal(fold(rule, rng.shuffle(writes)), expected);
      });
    });

    test(`${rule}: pairwise commutative (1000 cases)`, () => {
      forAll(`${rule} pairwise commutative`, 1000, (rng) => {
        const [a, b] = randomWrites(rng, 2) as [TagWrite, TagWrite];
        assert.equal(mergeTag(rule, a, b), mergeTag(rule, b, a));
      });
    });

    test(`${rule}: associative (1000 cases)`, () => {
      forAll(`${rule} associative`, 1000, (rng) => {
        const [a, b, c] = randomWrites(rng, 3) as [TagWrite, TagWrite, TagWrite];
        const left = mergeTag(rule, mergeTag(rule, a, b), c);
        const right = mergeTag(rule, a, mergeTag(rule, b, c));
        assert.equal(left, right);
      });
    });

    test(`${rule}: associative over splits of a sequence (500 cases)`, () => {
      forAll(`${rule} split associative`, 500, (rng) => {
        const writes = randomWrites(rng, rng.int(2, 10));
        const cut = rng.int(1, writes.length - 1);
        const left = fold(rule, writes.slice(0, cut))!;
        const right = fold(rule, writes.slice(cut))!;
        assert.equal(mergeTag(rule, left, right), fold(rule, writes));
      });
    });

    test(`${rule}: idempotent — seeing writes again changes nothing (1000 cases)`, () => {
      forAll(`${rule} idempotent`, 1000, (rng) => {
        const writes = randomWrites(rng, rng.int(1, 6));
        const once = fold(rule, writes)!;
        assert.equal(mergeTag(rule, once, once), once);
        const replayed = [...writes, ...rng.shuffle(writes).slice(0, rng.int(0, writes.length))];
        assert.equal(fold(rule, rng.shuffle(replayed)), once);
        for (const x of writes) assert.equal(mergeTag(rule, once, x), once);
      });
    });

    test(`${rule}: replicas that see the writes in different orders agree (500 cases)`, () => {
      forAll(`${rule} convergence`, 500, (rng) => {
        const writes = randomWrites(rng, rng.int(1, 12));
        const replicas = Array.from({ length: 3 }, () => {
          // each replica sees every write at least once, in its own order, with duplicates
          const seen = [...writes, ...writes.filter(() => rng.next() < 0.3)];
          return fold(rule, rng.shuffle(seen));
        });
        assert.equal(replicas[0], replicas[1]);
        assert.equal(replicas[1], replicas[2]);
      });
    });
  }

  test("lww and first-write pick opposite ends when writes differ (500 cases)", () => {
    forAll("rules differ", 500, (rng) => {
      const writes = randomWrites(rng, rng.int(2, 6));
      const lww = fold("lww", writes)!;
      const first = fold("first-write", writes)!;
      for (const x of writes) {
        assert.ok(compareWrites(lww, x) >= 0);
        assert.ok(compareWrites(first, x) <= 0);
      }
      assert.notEqual(lww, first);
    });
  });

  test("compareWrites is a total order (antisymmetric, transitive) (1000 cases)", () => {
    forAll("total order", 1000, (rng) => {
      const [a, b, c] = randomWrites(rng, 3) as [TagWrite, TagWrite, TagWrite];
      assert.equal(Math.sign(compareWrites(a, b)), -Math.sign(compareWrites(b, a)));
      assert.notEqual(compareWrites(a, b), 0, "distinct event ids never tie");
      if (compareWrites(a, b) < 0 && compareWrites(b, c) < 0) assert.ok(compareWrites(a, c) < 0);
    });
  });
});
