/**
 * Retention rules as pure decisions (protocol/retention.ts): the parser's
 * refusals, and a table of plans (keep last N, tag globs and regexes, semver
 * ranges, untagged expiry, recent pulls, several rules, children and
 * referrers), each deterministic whatever order the manifests come in.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PolicyInvalidError } from "../errors.js";
import {
  type PlanManifest,
  parseRetentionRule,
  planRepository,
  type RetentionRule,
  rulesFor,
} from "../retention.js";

const DAY = 86_400_000;
const NOW = Date.parse("2026-06-01T00:00:00Z");

/** A manifest pushed `ageDays` ago (the push order follows the age), with tags. */
function m(
  name: string,
  ageDays: number,
  tags: string[] = [],
  extra: Partial<PlanManifest> = {},
): PlanManifest {
  const at = NOW - ageDays * DAY;
  return {
    digest: `sha256:${name.padEnd(64, "0")}`,
    pushedAtMs: at,
    pushOrder: { wall: at, logical: 0, id: name },
    tags,
    manifests: [],
    ...extra,
  };
}
const d = (name: string) => `sha256:${name.padEnd(64, "0")}`;

function rule(fields: Record<string, unknown>): RetentionRule {
  return parseRetentionRule({ name: "r", repositories: ["**"], region: "a", ...fields });
}

interface Case {
  name: string;
  rules: RetentionRule[];
  manifests: PlanManifest[];
  deleted: string[];
}

const CASES: Case[] = [
  {
    name: "keep last 2 of 4 tagged images",
    rules: [rule({ keepLast: 2 })],
    manifests: [m("a", 4, ["1"]), m("b", 3, ["2"]), m("c", 2, ["3"]), m("d", 1, ["4"])],
    deleted: ["a", "b"],
  },
  {
    name: "keep last 0: every tagged image goes",
    rules: [rule({ keepLast: 0 })],
    manifests: [m("a", 4, ["1"]), m("b", 3, ["2"])],
    deleted: ["a", "b"],
  },
  {
    name: "keep last N leaves untagged images to untaggedDays (none here: kept)",
    rules: [rule({ keepLast: 1 })],
    manifests: [m("a", 40), m("b", 3, ["x"]), m("c", 1, ["y"])],
    deleted: ["b"],
  },
  {
    name: "a tag glob keeps release-*, the rest go",
    rules: [rule({ keepTags: ["release-*"] })],
    manifests: [m("a", 9, ["release-1"]), m("b", 8, ["dev"]), m("c", 7, ["dev-2", "release-2"])],
    deleted: ["b"],
  },
  {
    name: "a regex matcher",
    rules: [rule({ keepTags: ["regex:^prod-[0-9]+$"] })],
    manifests: [m("a", 9, ["prod-1"]), m("b", 8, ["prod-x"])],
    deleted: ["b"],
  },
  {
    name: "a semver range keeps 1.x (with or without v), not 2.0, not a pre-release, not a non-semver tag",
    rules: [rule({ keepTags: ["semver:>=1.0.0 <2.0.0"] })],
    manifests: [
      m("a", 9, ["v1.2.0"]),
      m("b", 8, ["1.9.9"]),
      m("c", 7, ["v2.0.0"]),
      m("d", 6, ["1.5.0-rc.1"]),
      m("e", 5, ["1.2"]),
    ],
    deleted: ["c", "d", "e"],
  },
  {
    name: "untagged images expire after D days; tagged ones are left alone by an untagged-only rule",
    rules: [rule({ untaggedDays: 7 })],
    manifests: [m("a", 8), m("b", 6), m("c", 30, ["latest"])],
    deleted: ["a"],
  },
  {
    name: "fractions of a day",
    rules: [rule({ untaggedDays: 0.5 })],
    manifests: [m("a", 0.6), m("b", 0.4)],
    deleted: ["a"],
  },
  {
    name: "pulled within D days is kept, whatever else",
    rules: [rule({ keepLast: 0, untaggedDays: 1, pulledDays: 3 })],
    manifests: [
      m("a", 50, ["old"], { pulledAtMs: NOW - 2 * DAY }),
      m("b", 50, ["older"], { pulledAtMs: NOW - 4 * DAY }),
      m("c", 50, [], { pulledAtMs: NOW - 1 * DAY }),
      m("d", 50, []),
    ],
    deleted: ["b", "d"],
  },
  {
    name: "two rules: their keeps add up",
    rules: [rule({ name: "a", keepLast: 1 }), rule({ name: "b", keepTags: ["stable"] })],
    manifests: [m("a", 3, ["stable"]), m("b", 2, ["x"]), m("c", 1, ["y"])],
    deleted: ["b"],
  },
  {
    name: "an index's children and a referrer follow it; a child another live index holds stays",
    rules: [rule({ keepLast: 1 })],
    manifests: [
      m("idx1", 5, ["old"], { manifests: [d("c1"), d("shared")] }),
      m("c1", 5),
      m("shared", 5),
      m("sig", 5, [], { subject: d("idx1") }),
      m("idx2", 1, ["new"], { manifests: [d("shared")] }),
    ],
    deleted: ["idx1", "c1", "sig"],
  },
  {
    name: "a child carrying its own tag stays",
    rules: [rule({ keepLast: 0 })],
    manifests: [m("idx", 5, ["x"], { manifests: [d("c1")] }), m("c1", 5, ["pinned"])],
    deleted: ["idx"],
  },
];

describe("retention plan table", () => {
  for (const c of CASES) {
    test(c.name, () => {
      const plan = planRepository("team/app", c.rules, "a", c.manifests, NOW);
      assert.deepEqual(plan.delete.map((x) => x.digest).sort(), c.deleted.map(d).sort());
      assert.equal(plan.keep.length + plan.delete.length, c.manifests.length, "every manifest decided once");
      for (const x of [...plan.keep, ...plan.delete]) assert.ok(x.reasons.length > 0, "a reason for each");
      // The same plan whatever order the view lists the manifests in.
      const reversed = planRepository("team/app", c.rules, "a", [...c.manifests].reverse(), NOW);
      assert.deepEqual(reversed, plan);
    });
  }
  test("images are deleted before what follows them", () => {
    const c = CASES.find((x) => x.name.startsWith("an index"))!;
    const order = planRepository("r", c.rules, "a", c.manifests, NOW).delete.map((x) => x.digest);
    assert.equal(order[0], d("idx1"));
  });
});

describe("which region decides", () => {
  test("the first matching rule by name; none: undefined", () => {
    const rules = [
      parseRetentionRule({ name: "z", repositories: ["**"], region: "c" }),
      parseRetentionRule({ name: "b", repositories: ["team/**"], region: "b" }),
    ];
    assert.equal(rulesFor(rules, "team/app").region, "b");
    assert.deepEqual(
      rulesFor(rules, "team/app").rules.map((r) => r.name),
      ["b", "z"],
    );
    assert.equal(rulesFor(rules, "other/app").region, "c");
    assert.equal(rulesFor([rules[1]!], "other/app").region, undefined);
  });
});

describe("parseRetentionRule", () => {
  test("normalizes a single glob and a single matcher", () => {
    assert.deepEqual(
      parseRetentionRule({ name: "ci", repositories: "ci/**", region: "eu", keepTags: "semver:^1" }),
      { name: "ci", repositories: ["ci/**"], region: "eu", keepTags: [{ kind: "semver", range: "^1" }] },
    );
  });
  const BAD: Array<[string, unknown, RegExp]> = [
    ["not a mapping", [], /want a mapping/],
    ["bad name", { name: "Bad", repositories: ["**"], region: "a" }, /name/],
    ["no repositories", { name: "x", repositories: [], region: "a" }, /repositories/],
    ["bad glob", { name: "x", repositories: ["a{"], region: "a" }, /invalid glob/],
    ["no region", { name: "x", repositories: ["**"] }, /region/],
    ["bad region", { name: "x", repositories: ["**"], region: "EU" }, /region/],
    ["negative keepLast", { name: "x", repositories: ["**"], region: "a", keepLast: -1 }, /keepLast/],
    ["fractional keepLast", { name: "x", repositories: ["**"], region: "a", keepLast: 1.5 }, /keepLast/],
    ["bad semver", { name: "x", repositories: ["**"], region: "a", keepTags: ["semver:>>1"] }, /semver/],
    ["bad regex", { name: "x", repositories: ["**"], region: "a", keepTags: ["regex:("] }, /regex/],
    ["zero days", { name: "x", repositories: ["**"], region: "a", untaggedDays: 0 }, /untaggedDays/],
    ["days as text", { name: "x", repositories: ["**"], region: "a", pulledDays: "3" }, /pulledDays/],
    ["unknown key", { name: "x", repositories: ["**"], region: "a", keep: 3 }, /keep: unknown key/],
  ];
  for (const [name, value, message] of BAD) {
    test(`refuses ${name}`, () => {
      assert.throws(
        () => parseRetentionRule(value),
        (err: unknown) => err instanceof PolicyInvalidError && message.test(err.message),
      );
    });
  }
  test("lists every problem at once", () => {
    try {
      parseRetentionRule({ name: "B", repositories: [], region: "EU", keepLast: -1 });
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof PolicyInvalidError);
      assert.equal((err.detail as { errors: string[] }).errors.length, 4);
    }
  });
});
