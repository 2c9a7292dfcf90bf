import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { digestOf } from "../digest.js";
import { AUTHORITY_TYPES, authorizeEvent, type EventFacts } from "../event-authority.js";
import type { RegistryEvent } from "../events.js";
import {
  foldTag,
  type ImmutabilityRule,
  immutableConflict,
  protectingRule,
  protectingRuleNow,
  type RuleWrite,
  ruleInForce,
  ruleMatches,
  ruleProblems,
  ruleProject,
} from "../immutable-tags.js";
import { foldWrites, type TagMergeRule, type TagWrite } from "../tag-merge.js";
import { forAll, type Rng } from "./prng.js";

const DA = digestOf("a");
const DB = digestOf("b");
const DC = digestOf("c");
const REPO = "prod/api";
const TAG = "v1";
const RULE: ImmutabilityRule = { name: "prod-v", repositories: "prod/*", tags: "v*" };

const w = (wall: number, origin: string, id: string, digest: string | null = DA): TagWrite => ({
  digest: digest ?? undefined,
  hlc: { wall, logical: 0 },
  origin,
  eventId: id,
});
const set = (wall: number, id: string, rule: ImmutabilityRule = RULE): RuleWrite => ({
  rule,
  hlc: { wall, logical: 0 },
  origin: "eu",
  eventId: id,
});
const del = (wall: number, id: string): RuleWrite => ({
  rule: null,
  hlc: { wall, logical: 0 },
  origin: "eu",
  eventId: id,
});

/** The fold of `writes` for prod/api:v1 under the rule events given (one rule name). */
const fold = (writes: TagWrite[], events: RuleWrite[], merge: TagMergeRule = "lww") =>
  foldTag(merge, writes, (x) => protectingRule([events], REPO, TAG, x));

describe("rule matching", () => {
  const cases: [string, string, boolean][] = [
    ["prod/api", "v1", true],
    ["prod/api", "v1.2.3", true],
    ["prod/api", "latest", false],
    ["prod/a/b", "v1", false],
    ["prodx/api", "v1", false],
    ["staging/api", "v1", false],
  ];
  for (const [repo, tag, want] of cases)
    test(`${RULE.repositories} ${RULE.tags} vs ${repo}:${tag} → ${want}`, () =>
      assert.equal(ruleMatches(RULE, repo, tag), want));

  test("** spans segments", () =>
    assert.ok(ruleMatches({ name: "x", repositories: "prod/**", tags: "*" }, "prod/a/b", "latest")));

  test("a backtracking-hostile glob against a long name finishes (linear-time matching)", () => {
    const evil = { name: "x", repositories: "**", tags: "*a*a*a*a*a*a*a*a*a*a*b" };
    const started = Date.now();
    assert.equal(ruleMatches(evil, "prod/api", "a".repeat(120)), false);
    assert.ok(Date.now() - started < 2_000);
  });

  test("ruleProject names the project only when the glob cannot leave it", () => {
    assert.equal(ruleProject("prod/*"), "prod");
    assert.equal(ruleProject("prod/**"), "prod");
    assert.equal(ruleProject("prod"), undefined);
    assert.equal(ruleProject("*/app"), undefined);
    assert.equal(ruleProject("pro*/app"), undefined);
    assert.equal(ruleProject("**"), undefined);
  });

  test("ruleProblems lists every bad field", () => {
    assert.deepEqual(ruleProblems(RULE), []);
    const problems = ruleProblems({ name: "Bad Name", repositories: "", tags: "a{" });
    assert.equal(problems.length, 3, problems.join("; "));
    assert.equal(ruleProblems({ ...RULE, tags: "x".repeat(300) }).length, 1);
  });
});

describe("the rule in force", () => {
  test("is each name's latest event strictly before the write", () => {
    const events = [set(10, "r1"), del(20, "r2"), set(30, "r3", { ...RULE, tags: "x*" })];
    assert.equal(ruleInForce(events, w(5, "eu", "a")), undefined);
    assert.deepEqual(ruleInForce(events, w(15, "eu", "a")), RULE);
    assert.equal(ruleInForce(events, w(25, "eu", "a")), undefined);
    assert.equal(ruleInForce(events, w(35, "eu", "a"))?.tags, "x*");
  });

  test("the least name wins among several; now = each name's latest event", () => {
    const a = [set(10, "r1", { ...RULE, name: "b-rule" })];
    const b = [set(10, "r2", { ...RULE, name: "a-rule" })];
    assert.equal(protectingRule([a, b], REPO, TAG, w(11, "eu", "x")), "a-rule");
    assert.equal(protectingRuleNow([a, b], REPO, TAG), "a-rule");
    assert.equal(protectingRuleNow([[set(10, "r1"), del(11, "r2")]], REPO, TAG), undefined);
  });
});

describe("foldTag tables", () => {
  const rule = [set(10, "r")];
  const cases: [string, TagWrite[], RuleWrite[], string | null | undefined, string[]][] = [
    // name, writes, rule events, winning digest (null = deleted, undefined = none), rejected ids
    ["first push stands", [w(20, "eu", "a")], rule, DA, []],
    ["moving an immutable tag is rejected", [w(20, "eu", "a"), w(30, "eu", "b", DB)], rule, DA, ["b"]],
    ["deleting it is rejected", [w(20, "eu", "a"), w(30, "eu", "b", null)], rule, DA, ["b"]],
    ["re-pushing the same digest is accepted", [w(20, "eu", "a"), w(30, "eu", "b", DA)], rule, DA, []],
    [
      "concurrent first writes: the first by (hlc, origin) stands",
      [w(20, "us", "b", DB), w(20, "eu", "a", DA)],
      rule,
      DA,
      ["b"],
    ],
    [
      "a deleted tag may be set again",
      [w(5, "eu", "a"), w(6, "eu", "d", null), w(20, "eu", "b", DB)],
      rule,
      DB,
      [],
    ],
    [
      "writes before the rule merge as usual; the value at the rule is frozen",
      [w(1, "eu", "a", DA), w(2, "eu", "b", DB), w(20, "eu", "c", DC)],
      rule,
      DB,
      ["c"],
    ],
    [
      "after deletion the tag moves again; the rejected write stays rejected",
      [w(20, "eu", "a", DA), w(30, "eu", "b", DB), w(50, "eu", "c", DC)],
      [set(10, "r"), del(40, "d")],
      DC,
      ["b"],
    ],
    [
      "after deletion and before a new write the tag keeps its frozen value",
      [w(20, "eu", "a", DA), w(30, "us", "b", DB)],
      [set(10, "r"), del(40, "d")],
      DA,
      ["b"],
    ],
    ["no rule: last writer wins", [w(20, "eu", "a"), w(30, "eu", "b", DB)], [], DB, []],
  ];
  for (const [name, writes, events, want, rejected] of cases)
    test(name, () => {
      const out = fold(writes, events);
      assert.equal(out.winner === undefined ? undefined : (out.winner.digest ?? null), want);
      assert.deepEqual(
        out.rejected.map((r) => r.write.eventId),
        rejected,
      );
      for (const r of out.rejected) assert.equal(r.rule, "prod-v");
    });

  test("first-write repositories: the rule changes nothing", () => {
    const writes = [w(20, "eu", "a"), w(30, "eu", "b", DB), w(5, "us", "c", DC)];
    assert.deepEqual(fold(writes, rule, "first-write").winner, foldWrites("first-write", writes));
  });
});

describe("immutableConflict", () => {
  const rule = [set(10, "r")];
  const protect = (x: TagWrite) => protectingRule([rule], REPO, TAG, x);

  test("both regions name the same pair: the later write loses", () => {
    const eu = w(20, "eu", "a", DA);
    const us = w(21, "us", "b", DB);
    const inEu = immutableConflict("lww", [eu], us, protect);
    const inUs = immutableConflict("lww", [us], eu, protect);
    assert.deepEqual(inEu, { winner: eu, loser: us, rule: "prod-v" });
    assert.deepEqual(inUs, { winner: eu, loser: us, rule: "prod-v" });
  });

  test("a re-push of the same digest, or an unprotected tag, is no conflict", () => {
    assert.equal(immutableConflict("lww", [w(20, "eu", "a")], w(21, "us", "b"), protect), undefined);
    assert.equal(
      immutableConflict("lww", [w(20, "eu", "a")], w(21, "us", "b", DB), () => undefined),
      undefined,
    );
  });
});

function randomWrites(rng: Rng, n: number): TagWrite[] {
  return Array.from({ length: n }, (_, i) =>
    w(rng.int(0, 40), rng.pick(["eu", "us", "ap"]), `w${i}`, rng.pick([DA, DB, DC, null])),
  );
}
function randomRules(rng: Rng): RuleWrite[] {
  return Array.from({ length: rng.int(0, 3) }, (_, i) =>
    rng.next() < 0.6 ? set(rng.int(0, 40), `r${i}`) : del(rng.int(0, 40), `r${i}`),
  );
}

describe("foldTag properties", () => {
  for (const merge of ["lww", "home-region"] as const) {
    test(`${merge}: any order and any duplicates give the same register (1000 cases)`, () => {
      forAll(`foldTag ${merge} order`, 1000, (rng) => {
        const writes = randomWrites(rng, rng.int(1, 8)).map((x) => ({ ...x, epoch: rng.int(0, 1) }));
        const events = randomRules(rng);
        const homes = { 0: "eu", 1: "us" };
        const run = (ws: TagWrite[]) =>
          foldTag(merge, ws, (x) => protectingRule([rng.shuffle(events)], REPO, TAG, x), homes).winner;
        const once = run(writes);
        const seen = [...writes, ...writes.filter(() => rng.next() < 0.3)];
        assert.deepEqual(run(rng.shuffle(seen)), once);
        // Folding a prefix, then everything again (a region that saw some writes first), agrees.
        const cut = rng.int(0, writes.length);
        const partial = run(writes.slice(0, cut));
        assert.deepEqual(run([...(partial === undefined ? [] : [partial]), ...writes]), once);
      });
    });
  }

  test("while a rule is in force from before every write, the tag never moves off its first value (500 cases)", () => {
    forAll("frozen", 500, (rng) => {
      const writes = randomWrites(rng, rng.int(1, 8)).map((x) => ({
        ...x,
        hlc: { wall: x.hlc.wall + 50, logical: 0 },
      }));
      const out = fold(writes, [set(1, "r")]);
      const sorted = [...writes].sort(
        (a, b) =>
          a.hlc.wall - b.hlc.wall ||
          (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : a.eventId < b.eventId ? -1 : 1),
      );
      const firstSet = sorted.find((x) => x.digest !== undefined);
      if (firstSet !== undefined) assert.equal(out.winner?.digest, firstSet.digest);
      for (const r of out.rejected) assert.notEqual(r.write.digest, firstSet?.digest);
    });
  });
});

describe("who may make immutability events (authorizeEvent, as every view applies them)", () => {
  const event = (actor: string, body: Record<string, unknown>) =>
    ({
      id: "e",
      v: 1,
      origin: "eu",
      hlc: { wall: 1, logical: 0 },
      actor,
      at: "1970-01-01T00:00:00.001Z",
      ...body,
    }) as RegistryEvent;
  const setRule = (repositories: string) => ({
    type: "immutability.set",
    name: "r",
    repositories,
    tags: "v*",
  });
  const deleteRule = { type: "immutability.deleted", name: "r" };
  const prodAdmin = { actorUser: { systemAdmin: false, roles: { prod: "projectAdmin" as const } } };
  const prodDev = { actorUser: { systemAdmin: false, roles: { prod: "developer" as const } } };
  const cases: [string, RegistryEvent, EventFacts, boolean][] = [
    [
      "a system admin, any glob",
      event("root", setRule("**")),
      { actorUser: { systemAdmin: true, roles: {} } },
      true,
    ],
    ["a service", event("service:peer-a", setRule("**")), {}, true],
    ["a project admin within the project", event("pa", setRule("prod/*")), prodAdmin, true],
    ["a project admin, glob reaching other projects", event("pa", setRule("*/api")), prodAdmin, false],
    ["a project admin of another project", event("pa", setRule("dev/*")), prodAdmin, false],
    [
      "a project admin replacing another project's rule",
      event("pa", setRule("prod/*")),
      { ...prodAdmin, targetRule: { repositories: "dev/*" } },
      false,
    ],
    ["a developer", event("dev", setRule("prod/*")), prodDev, false],
    [
      "a project admin deleting their rule",
      event("pa", deleteRule),
      { ...prodAdmin, targetRule: { repositories: "prod/**" } },
      true,
    ],
    [
      "a project admin deleting a mesh-wide rule",
      event("pa", deleteRule),
      { ...prodAdmin, targetRule: { repositories: "**" } },
      false,
    ],
    ["a project admin deleting a rule this view does not know", event("pa", deleteRule), prodAdmin, false],
    ["config", event("config", setRule("prod/*")), {}, false],
    ["an unknown actor", event("ghost", setRule("prod/*")), {}, false],
  ];
  for (const [name, e, facts, allowed] of cases)
    test(name, () => assert.equal(authorizeEvent(e, facts).allowed, allowed));

  test("both event types need a proof", () => {
    assert.ok(AUTHORITY_TYPES.has("immutability.set"));
    assert.ok(AUTHORITY_TYPES.has("immutability.deleted"));
  });
});
