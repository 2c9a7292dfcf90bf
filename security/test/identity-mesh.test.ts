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
