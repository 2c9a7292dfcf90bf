/**
 * protocol/oidc.ts (issue 18): the group → grants table (every problem
 * listed, the highest role of a project kept), what a user's groups grant
 * together, and who may make the two OIDC events (protocol/event-authority.ts).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { authorizeEvent } from "../event-authority.js";
import { makeEvent } from "../events.js";
import { grantsOf, parseGroupRoles } from "../oidc.js";

const envelope = (actor: string) => ({
  id: "e1",
  origin: "eu",
  hlc: { wall: 1, logical: 0 },
  actor,
  at: "2026-01-01T00:00:00.000Z",
});

describe("parseGroupRoles", () => {
  test("systemAdmin, operator and project roles; the highest role of a project wins", () => {
    const { mapping, problems } = parseGroupRoles({
      admins: "systemAdmin",
      ops: "operator, team:guest",
      dev: "team:developer,team:guest,web:maintainer",
    });
    assert.deepEqual(problems, []);
    assert.deepEqual(mapping.get("admins"), { systemAdmin: true, operator: false, roles: {} });
    assert.deepEqual(mapping.get("ops"), { systemAdmin: false, operator: true, roles: { team: "guest" } });
    assert.deepEqual(mapping.get("dev")?.roles, { team: "developer", web: "maintainer" });
  });

  test("every bad entry is listed, each naming its group", () => {
    const { problems } = parseGroupRoles({
      a: "owner",
      b: "Team:developer",
      c: "team:boss",
      d: " , ",
      e: ":guest",
    });
    assert.equal(problems.length, 5, problems.join("\n"));
    for (const group of ["a", "b", "c", "d", "e"])
      assert.ok(
        problems.some((p) => p.startsWith(`oidc.groupRoles.${group}:`)),
        group,
      );
  });
});

describe("grantsOf", () => {
  const { mapping } = parseGroupRoles({
    admins: "systemAdmin",
    readers: "team:guest",
    dev: "team:developer",
    ops: "operator",
  });
  const cases: Array<[string[], ReturnType<typeof grantsOf>]> = [
    [[], { systemAdmin: false, operator: false, roles: {} }],
    [["unknown"], { systemAdmin: false, operator: false, roles: {} }],
    [["readers"], { systemAdmin: false, operator: false, roles: { team: "guest" } }],
    [["readers", "dev"], { systemAdmin: false, operator: false, roles: { team: "developer" } }],
    [["dev", "readers"], { systemAdmin: false, operator: false, roles: { team: "developer" } }],
    [["admins", "ops"], { systemAdmin: true, operator: true, roles: {} }],
  ];
  for (const [groups, expected] of cases)
    test(`${JSON.stringify(groups)}`, () => assert.deepEqual(grantsOf(groups, mapping), expected));
});

describe("who may make the OIDC events", () => {
  const signIn = (actor: string) =>
    makeEvent(
      {
        type: "oidc.user.set",
        name: "olivia",
        issuer: "https://idp.example",
        sub: "1",
        groups: [],
        systemAdmin: true,
        operator: false,
        roles: {},
        session: "c2Vzc2lvbi1pZC0wMDAx",
      },
      envelope(actor),
    );
  const secret = (actor: string, hash: string | null) =>
    makeEvent({ type: "oidc.secret.set", name: "olivia", hash }, envelope(actor));
  const admin = { actorUser: { systemAdmin: true, roles: {} } };
  const user = { actorUser: { systemAdmin: false, roles: {} } };

  test("a sign-in: the user themself only (not even a system admin: roles come from the provider)", () => {
    assert.equal(authorizeEvent(signIn("olivia"), {}).allowed, true);
    assert.equal(authorizeEvent(signIn("root"), admin).allowed, false);
    assert.equal(authorizeEvent(signIn("mallory"), user).allowed, false);
    assert.equal(authorizeEvent(signIn("system"), {}).allowed, false);
  });

  test("a secret: the user sets or revokes it; a system admin only revokes", () => {
    assert.equal(authorizeEvent(secret("olivia", "scrypt$10$8$1$c2FsdA$a2V5"), {}).allowed, true);
    assert.equal(authorizeEvent(secret("olivia", null), {}).allowed, true);
    assert.equal(authorizeEvent(secret("root", null), admin).allowed, true);
    assert.equal(authorizeEvent(secret("root", "scrypt$10$8$1$c2FsdA$a2V5"), admin).allowed, false);
    assert.equal(authorizeEvent(secret("mallory", null), user).allowed, false);
  });
});
