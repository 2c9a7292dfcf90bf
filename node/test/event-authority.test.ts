/**
 * Identity and policy events checked when applied (protocol/event-authority.ts,
 * issue 10 finding 1) and memberships that die with their user (finding 11):
 * the pure right table; proofs that survive replication verbatim, refuse any
 * change, and verify with a retired key after rotation; and the view
 * (a real `level` database) ending the same whatever order the events
 * arrive in.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { TokenKeys } from "../../mesh-client/tokens.js";
import { AUTHORITY_TYPES, authorizeEvent, type EventFacts } from "../../protocol/event-authority.js";
import { type EventBody, makeEvent, type RegistryEvent } from "../../protocol/events.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { MetadataView } from "../data/view.js";

const cleanup = cleanupStack({ after });
const HASH = "scrypt$10$8$1$c2FsdA$aGFzaA";
let counter = 0;

function ev(actor: string, wall: number, body: EventBody, origin = "a"): RegistryEvent {
  counter++;
  return makeEvent(body, {
    id: `ev-${origin}-${wall}-${counter}`,
    origin,
    hlc: { wall, logical: 0 },
    actor,
    at: new Date(wall).toISOString(),
  });
}

const userSet = (name: string, systemAdmin = false): EventBody => ({
  type: "user.set",
  name,
  passwordHash: HASH,
  systemAdmin,
});
const robotSet = (name: string, ...projects: string[]): EventBody => ({
  type: "robot.set",
  name,
  secretHash: HASH,
  expiresAt: "2099-01-01T00:00:00.000Z",
  grants: projects.map((project) => ({ project, repositories: "**", actions: ["pull"] })),
});
const member = (project: string, user: string, role: "projectAdmin" | "guest" | null): EventBody => ({
  type: "member.set",
  project,
  user,
  role,
});

describe("authorizeEvent: who may make which identity or policy event", () => {
  const sysadmin: EventFacts = { actorUser: { systemAdmin: true, roles: {} } };
  const padmin: EventFacts = { actorUser: { systemAdmin: false, roles: { team: "projectAdmin" } } };
  const plain: EventFacts = { actorUser: { systemAdmin: false, roles: { team: "guest" } } };
  const cases: Array<[string, RegistryEvent, EventFacts, boolean]> = [
    ["a system admin makes anyone an admin", ev("root", 1, userSet("x", true)), sysadmin, true],
    [
      "a user changes their own password",
      ev("u", 1, userSet("u")),
      { ...plain, targetUser: { systemAdmin: false } },
      true,
    ],
    [
      "a user cannot make themself admin",
      ev("u", 1, userSet("u", true)),
      { ...plain, targetUser: { systemAdmin: false } },
      false,
    ],
    [
      "a user cannot make themself a read-only operator",
      ev("u", 1, { ...userSet("u"), operator: true } as EventBody),
      { ...plain, targetUser: { systemAdmin: false } },
      false,
    ],
    [
      "an operator changes their own password, keeping the role",
      ev("o", 1, { ...userSet("o"), operator: true } as EventBody),
      { ...plain, targetUser: { systemAdmin: false, operator: true } },
      true,
    ],
    [
      "an operator cannot drop nor widen their own role",
      ev("o", 1, userSet("o", true)),
      { ...plain, targetUser: { systemAdmin: false, operator: true } },
      false,
    ],
    [
      "a system admin makes anyone an operator",
      ev("root", 1, { ...userSet("x"), operator: true } as EventBody),
      sysadmin,
      true,
    ],
    [
      "a user cannot change another user",
      ev("u", 1, userSet("v")),
      { ...plain, targetUser: { systemAdmin: false } },
      false,
    ],
    ["an unknown actor can do nothing", ev("ghost", 1, userSet("x")), {}, false],
    ["system bootstraps admin", ev("system", 1, userSet("admin", true)), {}, true],
    [
      "system re-bootstraps while only system wrote admin",
      ev("system", 1, userSet("admin", true)),
      { targetWrittenBy: "system" },
      true,
    ],
    [
      "system cannot overwrite an admin changed by a person",
      ev("system", 1, userSet("admin", true)),
      { targetWrittenBy: "admin" },
      false,
    ],
    ["system cannot make other users", ev("system", 1, userSet("mallory", true)), {}, false],
    ["config stores policies", ev("config", 1, { type: "policy.deleted", name: "p" }), {}, true],
    ["config cannot make users", ev("config", 1, userSet("x", true)), {}, false],
    [
      "a service acts as a system admin",
      ev("service:peer-a", 1, { type: "repository.configured", scope: "", tagMerge: "lww" }),
      {},
      true,
    ],
    ["a project admin sets members of their project", ev("p", 1, member("team", "x", "guest")), padmin, true],
    [
      "a project admin cannot set members elsewhere",
      ev("p", 1, member("ops", "x", "projectAdmin")),
      padmin,
      false,
    ],
    ["a project admin makes robots in their project", ev("p", 1, robotSet("robot$r", "team")), padmin, true],
    ["a project admin cannot grant elsewhere", ev("p", 1, robotSet("robot$r", "team", "ops")), padmin, false],
    [
      "a project admin cannot replace another project's robot",
      ev("p", 1, robotSet("robot$r", "team")),
      { ...padmin, targetRobot: { grants: [{ project: "ops", repositories: "**", actions: ["pull"] }] } },
      false,
    ],
    [
      "a project admin cannot delete another project's robot",
      ev("p", 1, { type: "robot.deleted", name: "robot$r" }),
      { ...padmin, targetRobot: { grants: [{ project: "ops", repositories: "**", actions: ["pull"] }] } },
      false,
    ],
    [
      "a user revokes their own tokens",
      ev("p", 1, { type: "tokens.revoked", name: "p", before: "2024-01-01T00:00:00.000Z" }),
      plain,
      true,
    ],
    [
      "a user cannot revoke another user's tokens",
      ev("p", 1, { type: "tokens.revoked", name: "x", before: "2024-01-01T00:00:00.000Z" }),
      padmin,
      false,
    ],
    [
      "a system admin revokes anyone's tokens",
      ev("root", 1, { type: "tokens.revoked", name: "x", before: "2024-01-01T00:00:00.000Z" }),
      sysadmin,
      true,
    ],
    [
      "a project admin revokes the tokens of their project's robot",
      ev("p", 1, { type: "tokens.revoked", name: "robot$r", before: "2024-01-01T00:00:00.000Z" }),
      { ...padmin, targetRobot: { grants: [{ project: "team", repositories: "**", actions: ["pull"] }] } },
      true,
    ],
    [
      "a project admin cannot revoke another project's robot's tokens",
      ev("p", 1, { type: "tokens.revoked", name: "robot$r", before: "2024-01-01T00:00:00.000Z" }),
      { ...padmin, targetRobot: { grants: [{ project: "ops", repositories: "**", actions: ["pull"] }] } },
      false,
    ],
    [
      "nobody but a system admin revokes an unknown robot's tokens",
      ev("p", 1, { type: "tokens.revoked", name: "robot$r", before: "2024-01-01T00:00:00.000Z" }),
      padmin,
      false,
    ],
    [
      "a project admin cannot make projects",
      ev("p", 1, { type: "project.set", name: "team", public: true }),
      padmin,
      false,
    ],
    ["a project admin cannot set policies", ev("p", 1, { type: "policy.deleted", name: "x" }), padmin, false],
    [
      "a project admin cannot set their project's quota",
      ev("p", 1, { type: "quota.set", project: "team", limitBytes: null }),
      padmin,
      false,
    ],
    [
      "a system admin sets a quota",
      ev("root", 1, { type: "quota.set", project: "team", limitBytes: 1 }),
      sysadmin,
      true,
    ],
    ["a robot can do nothing", ev("robot$r", 1, member("team", "x", "guest")), {}, false],
    [
      "a system admin sets retention rules",
      ev("root", 1, { type: "retention.deleted", name: "ci" }),
      sysadmin,
      true,
    ],
    [
      "a project admin cannot set retention rules",
      ev("p", 1, {
        type: "retention.set",
        name: "ci",
        rule: { name: "ci", repositories: ["team/**"], region: "a", keepLast: 0 },
      }),
      padmin,
      false,
    ],
    [
      "config cannot delete retention rules",
      ev("config", 1, { type: "retention.deleted", name: "ci" }),
      {},
      false,
    ],
  ];
  for (const [name, event, facts, allowed] of cases)
    test(name, () => assert.equal(authorizeEvent(event, facts).allowed, allowed));

  test("content and worker events need no right", () => {
    for (const type of ["tag.set", "policy.run.finished", "alert.raised", "tag.conflict", "pulls.recorded"])
      assert.ok(!AUTHORITY_TYPES.has(type as RegistryEvent["type"]), type);
  });
});

describe("proofs", () => {
  test("a replica (cause, srcSeq) keeps its origin's proof; any change breaks it", async () => {
    const { keys } = await TokenKeys.generate();
    const event = ev("admin", 5, userSet("x", true));
    event.proof = await keys.signEvent(event);
    assert.ok(await keys.verifyEvent(event));
    // As replication/worker.ts appends a replica: the same body, its own cause and srcSeq.
    assert.ok(await keys.verifyEvent(JSON.parse(JSON.stringify({ ...event, cause: event.id, srcSeq: 7 }))));
    for (const change of [
      { systemAdmin: false },
      { actor: "root" },
      { name: "y" },
      { origin: "b" },
      { cause: "other" },
    ])
      assert.equal(
        await keys.verifyEvent({ ...event, ...change } as RegistryEvent),
        false,
        JSON.stringify(change),
      );
    assert.equal(await keys.verifyEvent({ ...event, proof: undefined } as RegistryEvent), false);
  });

  test("after a key rotation, events signed by the retired key still verify", async () => {
    const old = await TokenKeys.generate();
    const next = await TokenKeys.generate();
    const event = ev("admin", 5, userSet("x"));
    event.proof = await old.keys.signEvent(event);
    const rotated = await TokenKeys.fromPem(next.privatePem, next.publicPem, [old.publicPem]);
    assert.ok(await rotated.verifyEvent(event));
    const forgotten = await TokenKeys.fromPem(next.privatePem, next.publicPem);
    assert.equal(await forgotten.verifyEvent(event), false);
  });
});

describe("the view", () => {
  async function viewOf(events: RegistryEvent[], keys?: TokenKeys) {
    const view = new MetadataView(
      join(tempDir(cleanup), "view"),
      keys === undefined ? {} : { authority: { verify: (e) => keys.verifyEvent(e) } },
    );
    const refused: string[] = [];
    view.onRefused = (e, _seq, reason) => refused.push(`${e.type}: ${reason}`);
    await view.open();
    await view.apply(events.map((event, i) => ({ seq: i + 1, event })));
    const state = {
      users: await view.identity.users(),
      carol: await view.identity.rolesOf("carol"),
      refused,
    };
    await view.close();
    return state;
  }

  test("a user's deletion removes their memberships in every arrival order", async () => {
    const events = [
      ev("admin", 1, userSet("carol")),
      ev("admin", 2, member("priv", "carol", "guest")),
      ev("admin", 3, member("team", "carol", "projectAdmin"), "b"),
      ev("admin", 4, { type: "user.deleted", name: "carol" }),
      ev("admin", 5, userSet("carol")),
      ev("admin", 6, member("ops", "carol", "guest"), "b"),
    ];
    const orders = [
      events,
      [...events].reverse(),
      [events[3]!, events[1]!, events[5]!, events[0]!, events[2]!, events[4]!],
    ];
    for (const order of orders) {
      const { carol } = await viewOf(order);
      assert.deepEqual(carol, { ops: "guest" }, "only the membership made after the re-creation");
    }
  });

  test("with an authority, events without a valid proof or right change nothing, and are reported", async () => {
    const { keys } = await TokenKeys.generate();
    const signed = async (e: RegistryEvent) => {
      e.proof = await keys.signEvent(e);
      return e;
    };
    const state = await viewOf(
      [
        await signed(ev("system", 1, userSet("admin", true))),
        ev("admin", 2, userSet("mallory", true)),
        await signed(ev("carol", 3, userSet("eve", true))),
        await signed(ev("admin", 4, userSet("carol"))),
        await signed(ev("carol", 5, member("priv", "carol", "projectAdmin"))),
      ],
      keys,
    );
    assert.deepEqual(
      state.users.map((u) => u.name),
      ["admin", "carol"],
    );
    assert.deepEqual(state.carol, {});
    assert.equal(state.refused.length, 3, state.refused.join("; "));
    assert.match(state.refused[0]!, /no proof/);
  });

  test("a refused forgery carrying a real event's id does not shadow the real one", async () => {
    const { keys } = await TokenKeys.generate();
    const sign = async (e: RegistryEvent) => {
      e.proof = await keys.signEvent(e);
      return e;
    };
    const real = await sign(ev("admin", 3, member("priv", "carol", "guest")));
    const forgery = { ...real, role: "projectAdmin" } as RegistryEvent;
    const state = await viewOf(
      [
        await sign(ev("system", 1, userSet("admin", true))),
        await sign(ev("admin", 2, userSet("carol"))),
        forgery,
        real,
      ],
      keys,
    );
    assert.equal(state.refused.length, 1, state.refused.join("; "));
    assert.match(state.refused[0]!, /invalid proof/);
    assert.deepEqual(state.carol, { priv: "guest" });
  });

  test("without an authority (auth off) nothing is checked", async () => {
    const state = await viewOf([ev("anonymous", 1, userSet("x", true))]);
    assert.deepEqual(
      state.users.map((u) => u.name),
      ["x"],
    );
  });
});
