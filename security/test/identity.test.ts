/**
 * Issue 10's identity findings against a real node process with
 * MERIDIAN_AUTH=true and a real nats-server:
 *
 * - finding 1 (the view's side): an attacker who can publish to the
 *   region's stream (a stolen NATS credential; here a plain connection to
 *   the test nats-server) appends identity events. Without a valid proof by
 *   the mesh key, or with one but an actor lacking the right, the node's
 *   view refuses them, logs and counts the refusal;
 * - finding 8: a project admin cannot create a robot over another project's;
 * - finding 11: a re-created user does not inherit the old one's roles;
 * - finding 12 (part): failed logins on the admin API are audited.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { TokenKeys } from "../../mesh-client/tokens.js";
import { hashPassword } from "../../node/auth/passwords.js";
import {
  type EventBody,
  encodeEvent,
  makeEvent,
  type RegistryEvent,
  subjectFor,
} from "../../protocol/events.js";
import { HybridClock } from "../../protocol/hlc.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { OciClient } from "../../testing/oci-client.js";
import {
  type AuthNode,
  adminBasic,
  basic,
  expectStatus,
  REGION,
  startAuthNode,
  tokenFrom,
} from "../identity-node.js";

const cleanup = cleanupStack({ after });
const clock = new HybridClock();
const MALLORY_PASSWORD = "mallory-password";
let node: AuthNode;
let malloryHash: string;

/** An event as the attacker writes it: any actor, any body, an optional proof. */
function forged(body: EventBody, actor: string, proof?: string): RegistryEvent {
  return makeEvent(body, { id: randomUUID(), origin: REGION, hlc: clock.now(), actor, proof });
}

/** Publish `event` straight into the region's stream, as a holder of a NATS credential can. */
async function publish(event: RegistryEvent): Promise<void> {
  const nc = await connect({ servers: node.nats });
  try {
    await jetstream(nc).publish(subjectFor(REGION, event), encodeEvent(event), { msgID: event.id });
  } finally {
    await nc.close();
  }
}

/** Refusals counted by the node so far, of `type`. */
async function refused(type: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith("meridian_view_events_refused_total{") && line.includes(`type="${type}"`))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

/** Publish `event` and wait until the node has refused it. */
async function publishRefused(event: RegistryEvent): Promise<void> {
  const before = await refused(event.type);
  await publish(event);
  await eventually(async () => (await refused(event.type)) > before, 10_000);
}

async function whoami(authorization: string) {
  return node.admin("GET", "/whoami", undefined, authorization);
}

async function userNames(): Promise<string[]> {
  const body = expectStatus(await node.admin("GET", "/users"), 200, "users");
  return (body.users as Array<{ name: string }>).map((u) => u.name);
}

before(async () => {
  node = await startAuthNode(cleanup);
  malloryHash = await hashPassword(MALLORY_PASSWORD);
  expectStatus(await node.admin("PUT", "/projects/priv", { public: false }), 200, "priv");
  expectStatus(await node.admin("PUT", "/projects/team", { public: false }), 200, "team");
  expectStatus(await node.admin("PUT", "/projects/ops", { public: false }), 200, "ops");
  expectStatus(await node.admin("PUT", "/users/carol", { password: "carol-password" }), 200, "carol");
  expectStatus(await node.admin("PUT", "/users/padmin", { password: "padmin-password" }), 200, "padmin");
  expectStatus(
    await node.admin("PUT", "/projects/team/members/padmin", { role: "projectAdmin" }),
    200,
    "padmin's role",
  );
  await new OciClient(node.url, adminBasic).pushRandomImage("priv/app", "v1", 1, 64);
});

describe("finding 1: identity events from the log are checked when applied", () => {
  test("a forged user.set {systemAdmin: true} by actor=admin without a proof is refused", async () => {
    const event = forged(
      { type: "user.set", name: "mallory", passwordHash: malloryHash, systemAdmin: true },
      "admin",
    );
    await publishRefused(event);
    assert.equal((await whoami(basic("mallory", MALLORY_PASSWORD))).status, 401, "no such user");
    assert.ok(!(await userNames()).includes("mallory"));
    assert.match(node.process.log(), /event refused/);
    assert.ok(node.process.log().includes(event.id), "the refusal names the event");
  });

  test("a forged proof (garbage, or another key's) is refused", async () => {
    const garbage = forged(
      { type: "user.set", name: "mallory", passwordHash: malloryHash, systemAdmin: true },
      "admin",
      "eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl",
    );
    await publishRefused(garbage);
    const foreignKeys = (await TokenKeys.generate()).keys;
    const foreign = forged(
      { type: "user.set", name: "mallory", passwordHash: malloryHash, systemAdmin: true },
      "admin",
    );
    foreign.proof = await foreignKeys.signEvent(foreign);
    await publishRefused(foreign);
    assert.equal((await whoami(basic("mallory", MALLORY_PASSWORD))).status, 401);
  });

  test("the admin's password cannot be overwritten by a forged event", async () => {
    await publishRefused(
      forged({ type: "user.set", name: "admin", passwordHash: malloryHash, systemAdmin: true }, "admin"),
    );
    assert.equal((await whoami(adminBasic)).status, 200, "the admin's password still works");
    assert.equal((await whoami(basic("admin", MALLORY_PASSWORD))).status, 401);
  });

  test("forged memberships and robots are refused", async () => {
    await publishRefused(
      forged({ type: "member.set", project: "priv", user: "carol", role: "projectAdmin" }, "admin"),
    );
    const roles = expectStatus(await whoami(basic("carol", "carol-password")), 200, "carol").roles;
    assert.deepEqual(roles, {});
    await publishRefused(
      forged(
        {
          type: "robot.set",
          name: "robot$backdoor",
          secretHash: malloryHash,
          expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
          grants: [{ project: "priv", repositories: "**", actions: ["pull", "push", "delete"] }],
        },
        "admin",
      ),
    );
    assert.equal((await whoami(basic("robot$backdoor", MALLORY_PASSWORD))).status, 401);
  });

  test("a valid proof does not help an actor without the right", async () => {
    const keys = await node.keys();
    const byCarol = forged(
      { type: "user.set", name: "mallory", passwordHash: malloryHash, systemAdmin: true },
      "carol",
    );
    byCarol.proof = await keys.signEvent(byCarol);
    await publishRefused(byCarol);
    const carolPromotesHerself = forged(
      { type: "member.set", project: "priv", user: "carol", role: "projectAdmin" },
      "carol",
    );
    carolPromotesHerself.proof = await keys.signEvent(carolPromotesHerself);
    await publishRefused(carolPromotesHerself);
    // A project admin of `team` replacing a robot of `ops` (finding 8, as the view sees it).
    expectStatus(
      await node.admin("POST", "/robots", {
        name: "opsbot",
        grants: [{ project: "ops", repositories: "**", actions: ["pull"] }],
      }),
      201,
      "opsbot",
    );
    const takeover = forged(
      {
        type: "robot.set",
        name: "robot$opsbot",
        secretHash: malloryHash,
        expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
        grants: [{ project: "team", repositories: "**", actions: ["pull"] }],
      },
      "padmin",
    );
    takeover.proof = await keys.signEvent(takeover);
    await publishRefused(takeover);
    assert.equal((await whoami(basic("robot$opsbot", MALLORY_PASSWORD))).status, 401);
    assert.ok(!(await userNames()).includes("mallory"));
    assert.deepEqual(expectStatus(await whoami(basic("carol", "carol-password")), 200, "carol").roles, {});
  });

  test("a proof by the mesh key with an actor holding the right is applied (the control)", async () => {
    const keys = await node.keys();
    const event = forged(
      { type: "user.set", name: "trent", passwordHash: malloryHash, systemAdmin: false },
      "admin",
    );
    event.proof = await keys.signEvent(event);
    await publish(event);
    await eventually(async () => (await userNames()).includes("trent"), 10_000);
    assert.equal((await whoami(basic("trent", MALLORY_PASSWORD))).status, 200);
  });
});

describe("finding 8: creating over a name needs the rights to delete it", () => {
  test("a project admin cannot overwrite another project's robot", async () => {
    const grants = [{ project: "ops", repositories: "**", actions: ["pull", "push"] }];
    const deploy = expectStatus(
      await node.admin("POST", "/robots", { name: "deploy", grants }),
      201,
      "deploy",
    );
    const padmin = basic("padmin", "padmin-password");
    const overwrite = await node.admin(
      "POST",
      "/robots",
      { name: "robot$deploy", grants: [{ project: "team", repositories: "**", actions: ["pull"] }] },
      padmin,
    );
    assert.equal(overwrite.status, 403, JSON.stringify(overwrite.body));
    assert.equal((await node.admin("DELETE", "/robots/robot$deploy", undefined, padmin)).status, 403);
    const robots = expectStatus(await node.admin("GET", "/robots"), 200, "robots").robots as Array<{
      name: string;
      grants: unknown;
    }>;
    assert.deepEqual(robots.find((r) => r.name === "robot$deploy")?.grants, grants, "grants unchanged");
    assert.equal(
      (await tokenFrom(node.url, [], basic("robot$deploy", deploy.secret as string))).status,
      200,
      "its secret still works",
    );
    // Within their own project a project admin still creates and replaces robots.
    const own = { name: "teambot", grants: [{ project: "team", repositories: "**", actions: ["pull"] }] };
    expectStatus(await node.admin("POST", "/robots", own, padmin), 201, "own robot");
    expectStatus(await node.admin("POST", "/robots", own, padmin), 201, "own robot rotated");
  });
});

describe("finding 11: memberships die with their user", () => {
  test("a re-created user does not inherit the old one's roles", async () => {
    expectStatus(await node.admin("PUT", "/users/dave", { password: "dave-password" }), 200, "dave");
    expectStatus(await node.admin("PUT", "/projects/priv/members/dave", { role: "guest" }), 200, "role");
    const dave = new OciClient(node.url, basic("dave", "dave-password"));
    assert.equal((await dave.fetch("/v2/priv/app/manifests/v1")).status, 200, "the old dave may pull");
    expectStatus(await node.admin("DELETE", "/users/dave"), 200, "deleted");
    expectStatus(await node.admin("PUT", "/users/dave", { password: "new-dave-password" }), 200, "again");
    const again = basic("dave", "new-dave-password");
    assert.deepEqual(expectStatus(await whoami(again), 200, "whoami").roles, {});
    assert.equal((await new OciClient(node.url, again).fetch("/v2/priv/app/manifests/v1")).status, 403);
    const projects = expectStatus(await node.admin("GET", "/projects"), 200, "projects").projects as Array<{
      name: string;
      members: Array<{ user: string }>;
    }>;
    assert.ok(!projects.find((p) => p.name === "priv")!.members.some((m) => m.user === "dave"));
  });
});

describe("finding 12: failed logins on the admin API are audited", () => {
  test("a wrong password on the admin API is recorded as login.failed", async () => {
    const res = await node.admin("GET", "/users", undefined, basic("carol", "a wrong password"));
    assert.equal(res.status, 401);
    const wrongOld = await node.admin(
      "PUT",
      "/users/carol",
      { password: "carol-new-password", oldPassword: "not carol's" },
      basic("carol", "carol-password"),
    );
    assert.equal(wrongOld.status, 403);
    let records: Array<{ actor: string; action: string; detail?: string }> = [];
    await eventually(async () => {
      const body = expectStatus(
        await node.admin("GET", "/audit?action=login.failed&actor=carol"),
        200,
        "audit",
      );
      records = body.records as typeof records;
      return records.length >= 2;
    }, 10_000);
    assert.ok(records.every((r) => r.actor === "carol" && r.action === "login.failed"));
    assert.ok(
      records.some((r) => r.detail?.startsWith("admin")),
      JSON.stringify(records),
    );
  });
});
