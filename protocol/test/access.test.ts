/**
 * The access decision (protocol/access.ts): every role × action × project
 * visibility with its expected answer, written out by hand (not derived from
 * the code's own table), then robots, scopes and globs.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type Action,
  allowedActions,
  decide,
  globMatches,
  parseScope,
  projectOf,
  type Role,
  type Subject,
} from "../access.js";

const NOW = Date.parse("2026-11-23T12:00:00Z");
const user = (roles: Record<string, Role>, systemAdmin = false): Subject => ({
  kind: "user",
  name: "u",
  systemAdmin,
  roles,
});

type Who = Role | "systemAdmin" | "otherProjectMember" | "anonymous";
const subjectOf = (who: Who): Subject =>
  who === "anonymous"
    ? { kind: "anonymous" }
    : who === "systemAdmin"
      ? user({}, true)
      : who === "otherProjectMember"
        ? user({ other: "projectAdmin" })
        : user({ team: who });

// who → [pull, push, delete, manage] in a private project, then in a public one.
const EXPECTED: Record<Who, { private: string; public: string }> = {
  systemAdmin: { private: "YYYY", public: "YYYY" },
  projectAdmin: { private: "YYYY", public: "YYYY" },
  maintainer: { private: "YYYN", public: "YYYN" },
  developer: { private: "YYNN", public: "YYNN" },
  guest: { private: "YNNN", public: "YNNN" },
  limitedGuest: { private: "YNNN", public: "YNNN" },
  otherProjectMember: { private: "NNNN", public: "YNNN" },
  anonymous: { private: "NNNN", public: "YNNN" },
};
const ORDER: Action[] = ["pull", "push", "delete", "manage"];

describe("every role × action × visibility", () => {
  for (const [who, want] of Object.entries(EXPECTED) as Array<[Who, { private: string; public: string }]>) {
    for (const visibility of ["private", "public"] as const) {
      ORDER.forEach((action, i) => {
        const expected = want[visibility][i] === "Y";
        test(`${who} ${expected ? "may" : "may not"} ${action} in a ${visibility} project`, () => {
          const d = decide(subjectOf(who), action, "team/app", { public: visibility === "public" }, NOW);
          assert.equal(d.allowed, expected, d.reason);
          assert.ok(d.reason.length > 0);
        });
      });
    }
  }
  test("an unknown project is private", () => {
    assert.equal(decide({ kind: "anonymous" }, "pull", "nobody/app", undefined, NOW).allowed, false);
  });
});

describe("robot accounts", () => {
  const robot = (
    grants: Array<{ project: string; repositories: string; actions: Action[] }>,
    expiresAt = NOW + 1,
  ): Subject => ({
    kind: "robot",
    name: "robot$ci",
    expiresAt,
    grants,
  });
  const pullOnly = robot([{ project: "team", repositories: "**", actions: ["pull"] }]);

  test("a pull-only robot may pull and may not push or delete", () => {
    assert.equal(decide(pullOnly, "pull", "team/app", undefined, NOW).allowed, true);
    assert.equal(decide(pullOnly, "push", "team/app", undefined, NOW).allowed, false);
    assert.equal(decide(pullOnly, "delete", "team/app", undefined, NOW).allowed, false);
    assert.deepEqual(allowedActions(pullOnly, "team/app", undefined, NOW), ["pull"]);
  });
  test("nothing outside its project, and nothing once expired", () => {
    assert.equal(decide(pullOnly, "pull", "other/app", undefined, NOW).allowed, false);
    const expired = robot([{ project: "team", repositories: "**", actions: ["pull", "push"] }], NOW);
    const d = decide(expired, "pull", "team/app", undefined, NOW);
    assert.equal(d.allowed, false);
    assert.match(d.reason, /expired/);
  });
  test("a repository glob narrows the grant", () => {
    const apps = robot([{ project: "team", repositories: "apps/*", actions: ["pull", "push"] }]);
    assert.equal(decide(apps, "push", "team/apps/api", undefined, NOW).allowed, true);
    assert.equal(decide(apps, "push", "team/apps/api/v2", undefined, NOW).allowed, false);
    assert.equal(decide(apps, "push", "team/libs/x", undefined, NOW).allowed, false);
  });
  test("expired credentials are refused outright, not downgraded to anonymous (even for a public pull)", () => {
    const expired = robot([], NOW - 1);
    assert.equal(decide(expired, "pull", "team/app", { public: true }, NOW).allowed, false);
  });
});

describe("scopes, projects and globs", () => {
  const cases: Array<[string, ReturnType<typeof parseScope>]> = [
    ["repository:team/app:pull", { repo: "team/app", actions: ["pull"] }],
    ["repository:team/app:pull,push", { repo: "team/app", actions: ["pull", "push"] }],
    ["repository:team/app:push,pull,delete", { repo: "team/app", actions: ["pull", "push", "delete"] }],
    ["repository:team/app:*", { repo: "team/app", actions: ["pull", "push", "delete"] }],
    ["repository:team/app:manage", { repo: "team/app", actions: [] }],
    ["repository:team/app:fly", { repo: "team/app", actions: [] }],
    ["repository:localhost:5000/x:pull", { repo: "localhost:5000/x", actions: ["pull"] }],
    ["registry:catalog:*", undefined],
    ["repository::pull", undefined],
    ["repository:team/app", undefined],
    ["nonsense", undefined],
  ];
  for (const [scope, want] of cases)
    test(`parseScope(${scope})`, () => assert.deepEqual(parseScope(scope), want));

  test("projectOf", () => {
    assert.equal(projectOf("team/app/api"), "team");
    assert.equal(projectOf("alone"), "alone");
  });
  for (const [glob, path, want] of [
    ["**", "a/b/c", true],
    ["**", "", true],
    ["*", "a", true],
    ["*", "a/b", false],
    ["a/*", "a/b", true],
    ["a/**", "a/b/c", true],
    ["a.b", "axb", false],
    ["a.b", "a.b", true],
  ] as const)
    test(`globMatches(${glob}, ${path}) is ${want}`, () => assert.equal(globMatches(glob, path), want));
});
