import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { digestOf } from "../digest.js";
import {
  type CausalWrite,
  compareWrites,
  conflictBetween,
  counts,
  foldWrites,
  type HomeTable,
  homeAt,
  mergeTag,
  registerAt,
  type TagMergeRule,
  type TagWrite,
} from "../tag-merge.js";
import { forAll, type Rng } from "./prng.js";

const RULES: readonly TagMergeRule[] = ["lww", "first-write", "home-region"];
/** Home of the repository per epoch, for the home-region rule: eu until a failover to us at epoch 1. */
const HOMES: HomeTable = { 0: "eu-west-1", 1: "us-east-1" };
const DA = digestOf("a");
const DB = digestOf("b");

/** A write; digest null makes a tombstone (undefined would take the default). */
const w = (wall: number, logical: number, origin: string, eventId: string, digest: string | null = DA) =>
  ({ digest: digest ?? undefined, hlc: { wall, logical }, origin, eventId }) satisfies TagWrite;

const fold = (rule: TagMergeRule, writes: readonly TagWrite[]) =>
  writes.reduce<TagWrite | undefined>((cur, x) => mergeTag(rule, cur, x, HOMES), undefined);
/** mergeTag over possibly-absent registers (a fold of nothing is undefined). */
const merge = (rule: TagMergeRule, a: TagWrite | undefined, b: TagWrite | undefined) => {
  if (b !== undefined) return mergeTag(rule, a, b, HOMES);
  return a === undefined ? undefined : mergeTag(rule, undefined, a, HOMES);
};

describe("mergeTag tables", () => {
  const early = w(100, 0, "eu", "e1", DA);
  const late = w(200, 0, "eu", "e2", DB);
  const lateLogical = w(100, 1, "eu", "e3", DB);
  const originA = w(100, 0, "ap", "e4", DB);
  const originZ = w(100, 0, "us", "e5", DB);
  const idLow = w(100, 0, "eu", "a0", DB);
  const tombstoneLate = w(300, 0, "us", "t1", null);
  const tombstoneEarly = w(50, 0, "us", "t2", null);

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

  for (const rule of ["lww", "first-write"] as const) {
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
    epoch: rng.int(0, 2),
  }));
}

describe("mergeTag properties", () => {
  for (const rule of RULES) {
    test(`${rule}: commutative — any permutation gives the same winner (1000 cases)`, () => {
      forAll(`${rule} commutative`, 1000, (rng) => {
        const writes = randomWrites(rng, rng.int(1, 8));
        const expected = fold(rule, writes);
        const eligible = writes.filter((x) => counts(rule, x, HOMES));
        const sorted = [...eligible].sort(
          (a, b) => (rule === "home-region" ? (a.epoch ?? 0) - (b.epoch ?? 0) : 0) || compareWrites(a, b),
        );
        assert.equal(
          expected,
          rule === "first-write" ? sorted[0] : sorted.at(-1),
          "winner is the extreme write",
        );
        for (let p = 0; p < 5; p++) assert.equal(fold(rule, rng.shuffle(writes)), expected);
      });
    });

    test(`${rule}: pairwise commutative (1000 cases)`, () => {
      forAll(`${rule} pairwise commutative`, 1000, (rng) => {
        const [a, b] = randomWrites(rng, 2) as [TagWrite, TagWrite];
        assert.equal(mergeTag(rule, a, b, HOMES), mergeTag(rule, b, a, HOMES));
      });
    });

    test(`${rule}: associative (1000 cases)`, () => {
      forAll(`${rule} associative`, 1000, (rng) => {
        const [a, b, c] = randomWrites(rng, 3) as [TagWrite, TagWrite, TagWrite];
        const left = merge(rule, merge(rule, a, b), c);
        const right = merge(rule, a, merge(rule, b, c));
        assert.equal(left, right);
      });
    });

    test(`${rule}: associative over splits of a sequence (500 cases)`, () => {
      forAll(`${rule} split associative`, 500, (rng) => {
        const writes = randomWrites(rng, rng.int(2, 10));
        const cut = rng.int(1, writes.length - 1);
        const left = fold(rule, writes.slice(0, cut));
        const right = fold(rule, writes.slice(cut));
        assert.equal(merge(rule, left, right), fold(rule, writes));
      });
    });

    test(`${rule}: idempotent — seeing writes again changes nothing (1000 cases)`, () => {
      forAll(`${rule} idempotent`, 1000, (rng) => {
        const writes = randomWrites(rng, rng.int(1, 6));
        const once = fold(rule, writes);
        assert.equal(merge(rule, once, once), once);
        const replayed = [...writes, ...rng.shuffle(writes).slice(0, rng.int(0, writes.length))];
        assert.equal(fold(rule, rng.shuffle(replayed)), once);
        for (const x of writes) assert.equal(merge(rule, once, x), once);
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
      const fold = (rule: TagMergeRule, ws: TagWrite[]) => foldWrites(rule, ws);
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

describe("home-region", () => {
  const eu = (wall: number, epoch: number, id: string, digest: string | undefined = DA): TagWrite => ({
    digest,
    hlc: { wall, logical: 0 },
    origin: "eu-west-1",
    eventId: id,
    epoch,
  });
  const us = (wall: number, epoch: number, id: string, digest: string | undefined = DB): TagWrite => ({
    ...eu(wall, epoch, id, digest),
    origin: "us-east-1",
  });

  test("homeAt takes the entry of the greatest epoch not above the write's", () => {
    assert.equal(homeAt(HOMES, 0), "eu-west-1");
    assert.equal(homeAt(HOMES, 1), "us-east-1");
    assert.equal(homeAt(HOMES, 7), "us-east-1");
    assert.equal(homeAt({ 2: "x" }, 1), undefined);
    assert.equal(homeAt({}, 0), undefined);
  });

  const tombstone: TagWrite = { ...eu(200, 0, "e2"), digest: undefined };
  const cases: [string, TagWrite, TagWrite, TagWrite | undefined][] = [
    ["a non-home write is ignored even when later", eu(100, 0, "e1"), us(200, 0, "u1"), eu(100, 0, "e1")],
    ["after failover, the new home's write wins", eu(100, 0, "e1"), us(50, 1, "u1"), us(50, 1, "u1")],
    [
      "the fenced old home's write at the old epoch loses",
      us(50, 1, "u1"),
      eu(300, 0, "e2"),
      us(50, 1, "u1"),
    ],
    [
      "the old home writing at the new epoch does not count",
      us(50, 1, "u1"),
      eu(300, 1, "e2"),
      us(50, 1, "u1"),
    ],
    ["within an epoch, lww", eu(100, 0, "e1"), tombstone, tombstone],
    ["no write counts", us(100, 0, "u1"), us(200, 0, "u2"), undefined],
  ];
  for (const [name, x, y, winner] of cases) {
    test(name, () => {
      assert.deepEqual(foldWrites("home-region", [x, y], HOMES), winner);
      assert.deepEqual(foldWrites("home-region", [y, x], HOMES), winner);
    });
  }

  test("counts only discards under home-region", () => {
    assert.equal(counts("lww", us(1, 0, "u")), true);
    assert.equal(counts("first-write", us(1, 0, "u")), true);
    assert.equal(counts("home-region", us(1, 0, "u"), HOMES), false);
    assert.equal(counts("home-region", eu(1, 0, "e"), HOMES), true);
  });
});

describe("registerAt", () => {
  const writes = [
    w(100, 0, "eu", "e1", DA),
    w(200, 0, "us", "u1", DB),
    w(300, 0, "eu", "e2", null),
    w(250, 0, "ap", "a1", DA),
  ];
  const table: [number, TagMergeRule, string | undefined | null][] = [
    // time, rule, expected digest (null: no write yet; undefined: deleted)
    [50, "lww", null],
    [100, "lww", DA],
    [199, "lww", DA],
    [200, "lww", DB],
    [260, "lww", DA],
    [300, "lww", undefined],
    [10_000, "lww", undefined],
    [99, "first-write", null],
    [10_000, "first-write", DA],
  ];
  for (const [at, rule, expected] of table) {
    test(`${rule} at ${at}`, () => {
      const r = registerAt(rule, writes, at);
      if (expected === null) assert.equal(r, undefined);
      else assert.equal(r?.digest, expected);
    });
  }

  test("is independent of the order the writes are listed in (300 cases)", () => {
    forAll("registerAt order", 300, (rng) => {
      const ws = randomWrites(rng, rng.int(1, 10));
      const at = rng.int(0, 4);
      for (const rule of RULES) {
        assert.equal(registerAt(rule, ws, at, HOMES), registerAt(rule, rng.shuffle(ws), at, HOMES));
      }
    });
  });
});

describe("conflictBetween", () => {
  const mine: CausalWrite = { ...w(100, 0, "eu", "m1", DA) };
  const theirs: CausalWrite = { ...w(200, 0, "us", "t1", DB) };
  test("concurrent writes to different digests conflict; the merge names the winner", () => {
    assert.deepEqual(conflictBetween("lww", mine, theirs), { winner: theirs, loser: mine });
    assert.deepEqual(conflictBetween("lww", theirs, mine), { winner: theirs, loser: mine });
    assert.deepEqual(conflictBetween("first-write", mine, theirs), { winner: mine, loser: theirs });
  });
  test("a write made knowing the other (its prev) is an update, not a conflict", () => {
    assert.equal(conflictBetween("lww", mine, { ...theirs, prev: "m1" }), undefined);
    assert.equal(conflictBetween("lww", { ...mine, prev: "t1" }, theirs), undefined);
  });
  test("the same digest, or the same write, is no conflict", () => {
    assert.equal(conflictBetween("lww", mine, { ...theirs, digest: DA }), undefined);
    assert.equal(conflictBetween("lww", mine, mine), undefined);
  });
  test("a deletion racing a set conflicts like two sets", () => {
    assert.deepEqual(conflictBetween("lww", mine, { ...theirs, digest: undefined }), {
      winner: { ...theirs, digest: undefined },
      loser: mine,
    });
  });
  test("under home-region a write that does not count is no conflict", () => {
    const homes = { 0: "eu" };
    assert.equal(conflictBetween("home-region", mine, theirs, homes), undefined);
  });
  test("both sides name the same pair (300 cases)", () => {
    forAll("conflict symmetry", 300, (rng) => {
      const [a, b] = randomWrites(rng, 2) as [TagWrite, TagWrite];
      for (const rule of RULES) {
        const x = conflictBetween(rule, a, b, HOMES);
        const y = conflictBetween(rule, b, a, HOMES);
        assert.deepEqual(x, y);
      }
    });
  });
});
