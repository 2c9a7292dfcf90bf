/**
 * Issue 10 findings 1 and 2 across regions: `meridian up --auth` with two
 * regions as real processes. Tokens are mesh-wide, so a password change in
 * one region must end the user's tokens in the other; a forged identity
 * event appended to one region's stream (a stolen NATS credential) must be
 * refused there AND in the region its replica reaches, while a real admin
 * change (with its proof, copied verbatim by replication) applies in both.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { ServiceToken } from "../../mesh-client/service-token.js";
import { hashPassword } from "../../node/auth/passwords.js";
import { natsConnectOptions } from "../../node/data/nats-connect.js";
import { encodeEvent, makeEvent, subjectFor } from "../../protocol/events.js";
import { HybridClock } from "../../protocol/hlc.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { natsIdentity, type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import { adminCall, basic, tokenFrom } from "../identity-node.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let adminAuth: string;

const registry = (region: string) => mesh.regions.get(region)!.registry;

const admin = (region: string, method: string, path: string, json?: unknown, authorization = adminAuth) =>
  adminCall(registry(region), method, path, authorization, json);

async function refused(region: string): Promise<number> {
  const text = await (await fetch(`${registry(region)}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith("meridian_view_events_refused_total{"))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  adminAuth = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
});

describe("identities across regions", () => {
  test("an admin's change made in a applies in b (its proof survives replication)", async () => {
    assert.equal((await admin("a", "PUT", "/projects/priv", { public: false })).status, 200);
    assert.equal((await admin("a", "PUT", "/users/bob", { password: "bob-password-1" })).status, 200);
    assert.equal((await admin("a", "PUT", "/projects/priv/members/bob", { role: "developer" })).status, 200);
    await eventually(
      async () => {
        const who = await admin("b", "GET", "/whoami", undefined, basic("bob", "bob-password-1"));
        return JSON.stringify(who.body.roles) === JSON.stringify({ priv: "developer" });
      },
      30_000,
      200,
    );
  });

  test("a change a service makes (a peer, the front door: service tokens) applies in every region", async () => {
    const service = await ServiceToken.fromKeyFile(
      join(mesh.dataDir, "auth", "token-key.pem"),
      "peer-a",
      "meridian",
    );
    const put = await admin(
      "a",
      "PUT",
      "/rules",
      { scope: "svc/", tagMerge: "lww" },
      await service!.header(),
    );
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await eventually(
      async () => {
        const rules = (await admin("b", "GET", "/rules")).body.rules as Array<{ scope: string }>;
        return rules.some((r) => r.scope === "svc/");
      },
      30_000,
      200,
    );
  });

  test("a password change in region a ends the tokens region b issued before it", async () => {
    const got = await tokenFrom(
      registry("b"),
      ["repository:priv/app:pull,push"],
      basic("bob", "bob-password-1"),
    );
    assert.equal(got.status, 200);
    const inB = new OciClient(registry("b"), `Bearer ${got.token}`);
    assert.equal((await inB.fetch("/v2/")).status, 200, "works before");
    assert.equal((await admin("a", "PUT", "/users/bob", { password: "bob-password-2" })).status, 200);
    await eventually(async () => (await inB.fetch("/v2/")).status === 401, 30_000, 200);
    assert.equal((await new OciClient(registry("a"), `Bearer ${got.token}`).fetch("/v2/")).status, 401);
  });

  test("revoking bob's tokens in region a ends a token region b issued; the password still works", async () => {
    const got = await tokenFrom(
      registry("b"),
      ["repository:priv/app:pull,push"],
      basic("bob", "bob-password-2"),
    );
    assert.equal(got.status, 200);
    const inB = new OciClient(registry("b"), `Bearer ${got.token}`);
    assert.equal((await inB.fetch("/v2/")).status, 200, "works before");
    const revoke = await admin("a", "POST", "/users/bob/revoke-tokens");
    assert.equal(revoke.status, 200, JSON.stringify(revoke.body));
    assert.equal(revoke.body.name, "bob");
    await eventually(async () => (await inB.fetch("/v2/")).status === 401, 10_000, 100);
    const refusedInA = await new OciClient(registry("a"), `Bearer ${got.token}`).fetch("/v2/");
    assert.equal(refusedInA.status, 401);
    assert.match(await refusedInA.text(), /revoked/);
    // Tokens carry whole seconds: one issued after the revocation's second is good.
    const revokedAt = Date.parse(revoke.body.before as string);
    await new Promise((r) =>
      setTimeout(r, Math.max(0, Math.floor(revokedAt / 1000) * 1000 + 1100 - Date.now())),
    );
    const fresh = await tokenFrom(
      registry("b"),
      ["repository:priv/app:pull"],
      basic("bob", "bob-password-2"),
    );
    assert.equal(fresh.status, 200);
    assert.equal((await new OciClient(registry("b"), `Bearer ${fresh.token}`).fetch("/v2/")).status, 200);
  });

  test("a robot's tokens are revoked in every region; who may revoke is checked", async () => {
    const created = await admin("a", "POST", "/robots", {
      name: "ci",
      grants: [{ project: "priv", actions: ["pull"] }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const secret = created.body.secret as string;
    const robotAuth = basic("robot$ci", secret);
    // Wait for the robot in b through the admin API: a login before it arrives would count as a
    // failed login from this address (the limiter), and the next test's refusals need that budget.
    await eventually(
      async () =>
        ((await admin("b", "GET", "/robots")).body.robots as Array<{ name: string }>).some(
          (r) => r.name === "robot$ci",
        ),
      30_000,
      200,
    );
    const got = await tokenFrom(registry("b"), ["repository:priv/app:pull"], robotAuth);
    assert.equal(got.status, 200);
    const inB = new OciClient(registry("b"), `Bearer ${got.token}`);
    assert.equal((await inB.fetch("/v2/")).status, 200);
    // bob (a developer of priv, no admin) may revoke neither the robot's nor the admin's tokens.
    const bob = basic("bob", "bob-password-2");
    assert.equal((await admin("a", "POST", "/robots/robot$ci/revoke-tokens", undefined, bob)).status, 403);
    assert.equal((await admin("a", "POST", "/users/admin/revoke-tokens", undefined, bob)).status, 403);
    assert.equal((await admin("a", "POST", "/users/admin/revoke-tokens", undefined, "")).status, 401);
    // The robot cannot use the admin API to revoke (its secret is not an admin credential).
    assert.notEqual(
      (await admin("a", "POST", "/robots/robot$ci/revoke-tokens", undefined, robotAuth)).status,
      200,
    );
    assert.equal((await inB.fetch("/v2/")).status, 200, "the refused attempts changed nothing");
    const unknown = await admin("a", "POST", "/robots/robot$nobody/revoke-tokens");
    assert.equal(unknown.status, 400);
    assert.equal((await admin("a", "POST", "/users/Not..A-Name/revoke-tokens")).status, 400);
    assert.equal((await admin("b", "POST", "/robots/robot$ci/revoke-tokens")).status, 200);
    await eventually(async () => (await inB.fetch("/v2/")).status === 401, 10_000, 100);
    const inA = new OciClient(registry("a"), `Bearer ${got.token}`);
    await eventually(async () => (await inA.fetch("/v2/")).status === 401, 10_000, 100);
  });

  test("a forged user.set in region a's stream is refused in a and in b", async () => {
    const before = { a: await refused("a"), b: await refused("b") };
    const event = makeEvent(
      {
        type: "user.set",
        name: "mallory",
        passwordHash: await hashPassword("mallory-password"),
        systemAdmin: true,
      },
      { id: randomUUID(), origin: "a", hlc: new HybridClock().now(), actor: "admin" },
    );
    // What a holder of a stolen NATS credential (region a's node key) can do: append to the stream.
    const nc = await connect({
      servers: mesh.regions.get("a")!.nats,
      ...natsConnectOptions(natsIdentity(mesh, "a-node")),
    });
    try {
      await jetstream(nc).publish(subjectFor("a", event), encodeEvent(event), { msgID: event.id });
    } finally {
      await nc.close();
    }
    await eventually(
      async () => (await refused("a")) > before.a && (await refused("b")) > before.b,
      30_000,
      200,
    );
    for (const region of ["a", "b"]) {
      const who = await admin(region, "GET", "/whoami", undefined, basic("mallory", "mallory-password"));
      assert.equal(who.status, 401, region);
      const users = (await admin(region, "GET", "/users")).body.users as Array<{ name: string }>;
      assert.ok(!users.some((u) => u.name === "mallory"), region);
    }
  });
});
