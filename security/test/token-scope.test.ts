/**
 * Finding 2 of issue 10: a bearer token's scope was ignored by the admin API
 * and by /auth/token. Against a real node process with MERIDIAN_AUTH=true:
 * a pull token must not change its owner's password or create a system
 * admin, must not be exchanged for a wider token, and must die when the
 * password changes or the robot's secret is rotated; a password change needs
 * the old password; a fetch-on-miss redirect's `_token` reads its one path
 * and nothing else; only a token asked for as `registry:admin:*` with a
 * password reaches the admin API.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { cleanupStack } from "../../testing/harness.js";
import { OciClient } from "../../testing/oci-client.js";
import {
  type AuthNode,
  adminBasic,
  basic,
  expectStatus,
  startAuthNode,
  tokenFrom,
} from "../identity-node.js";

const cleanup = cleanupStack({ after });
const ALICE_PASSWORD = "alice-password-1";
let node: AuthNode;
let layerDigest: string;
let otherLayerDigest: string;

/** alice's token from /auth/token with her password. */
async function aliceToken(scopes: string[], password = ALICE_PASSWORD): Promise<string> {
  const got = await tokenFrom(node.url, scopes, basic("alice", password));
  assert.equal(got.status, 200, "alice logs in");
  return got.token!;
}

const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;

before(async () => {
  node = await startAuthNode(cleanup);
  expectStatus(await node.admin("PUT", "/projects/secret", { public: false }), 200, "project");
  // alice is a system admin: her stolen pull token must still not act as one.
  expectStatus(
    await node.admin("PUT", "/users/alice", { password: ALICE_PASSWORD, systemAdmin: true }),
    200,
    "alice",
  );
  const image = await new OciClient(node.url, adminBasic).pushRandomImage("secret/app", "v1", 2, 64);
  layerDigest = image.layers[0]!.digest;
  otherLayerDigest = image.layers[1]!.digest;
});

describe("finding 2: a token is good only for what it names", () => {
  test("a pull token cannot change its owner's password", async () => {
    const pull = await aliceToken(["repository:secret/app:pull"]);
    const res = await node.admin("PUT", "/users/alice", { password: "stolen-password" }, `Bearer ${pull}`);
    assert.equal(res.status, 401, JSON.stringify(res.body));
    assert.equal((await tokenFrom(node.url, [], basic("alice", ALICE_PASSWORD))).status, 200, "unchanged");
  });

  test("a system admin's pull token cannot create a system admin", async () => {
    const pull = await aliceToken(["repository:secret/app:pull"]);
    const res = await node.admin(
      "PUT",
      "/users/mallory",
      { password: "mallory-password", systemAdmin: true },
      `Bearer ${pull}`,
    );
    assert.equal(res.status, 401, JSON.stringify(res.body));
    const users = expectStatus(await node.admin("GET", "/users"), 200, "users").users as Array<{
      name: string;
    }>;
    assert.ok(!users.some((u) => u.name === "mallory"), "no mallory");
    assert.equal((await node.admin("GET", "/whoami", undefined, `Bearer ${pull}`)).status, 401);
  });

  test("/auth/token never exchanges a bearer token for a wider (or any) token", async () => {
    const pull = await aliceToken(["repository:secret/app:pull"]);
    const wider = await tokenFrom(node.url, ["repository:secret/app:pull,push,delete"], `Bearer ${pull}`);
    assert.equal(wider.status, 401);
    assert.equal(wider.token, undefined);
    const admin = await tokenFrom(node.url, ["registry:admin:*"], `Bearer ${pull}`);
    assert.equal(admin.status, 401);
  });

  test("only a token asked for as registry:admin:* with a password reaches the admin API", async () => {
    const scoped = await aliceToken(["registry:admin:*"]);
    expectStatus(await node.admin("GET", "/whoami", undefined, `Bearer ${scoped}`), 200, "admin token");
    const anonymous = await tokenFrom(node.url, ["registry:admin:*"]);
    assert.equal(anonymous.status, 200);
    assert.equal((await node.admin("GET", "/whoami", undefined, `Bearer ${anonymous.token}`)).status, 401);
  });

  test("tokens issued before a password change stop working", async () => {
    expectStatus(await node.admin("PUT", "/users/bob", { password: "bob-password-1" }), 200, "bob");
    expectStatus(
      await node.admin("PUT", "/projects/secret/members/bob", { role: "developer" }),
      200,
      "bob's role",
    );
    const got = await tokenFrom(node.url, ["repository:secret/app:pull"], basic("bob", "bob-password-1"));
    const bob = new OciClient(node.url, `Bearer ${got.token}`);
    assert.equal((await bob.fetch("/v2/secret/app/manifests/v1")).status, 200, "works before");
    expectStatus(await node.admin("PUT", "/users/bob", { password: "bob-password-2" }), 200, "reset");
    assert.equal((await bob.fetch("/v2/secret/app/manifests/v1")).status, 401, "dead after");
  });

  test("tokens issued before a robot's secret is rotated stop working", async () => {
    const grants = [{ project: "secret", repositories: "**", actions: ["pull"] }];
    const first = expectStatus(await node.admin("POST", "/robots", { name: "ci", grants }), 201, "robot");
    const got = await tokenFrom(
      node.url,
      ["repository:secret/app:pull"],
      basic("robot$ci", first.secret as string),
    );
    const robot = new OciClient(node.url, `Bearer ${got.token}`);
    assert.equal((await robot.fetch("/v2/secret/app/manifests/v1")).status, 200, "works before");
    expectStatus(await node.admin("POST", "/robots", { name: "ci", grants }), 201, "rotated");
    assert.equal((await robot.fetch("/v2/secret/app/manifests/v1")).status, 401, "dead after");
  });

  test("changing one's own password needs the old one", async () => {
    expectStatus(await node.admin("PUT", "/users/carl", { password: "carl-password-1" }), 200, "carl");
    const carl = basic("carl", "carl-password-1");
    const none = await node.admin("PUT", "/users/carl", { password: "carl-password-2" }, carl);
    assert.equal(none.status, 403, JSON.stringify(none.body));
    const wrong = await node.admin(
      "PUT",
      "/users/carl",
      { password: "carl-password-2", oldPassword: "not-it-at-all" },
      carl,
    );
    assert.equal(wrong.status, 403, JSON.stringify(wrong.body));
    expectStatus(
      await node.admin(
        "PUT",
        "/users/carl",
        { password: "carl-password-2", oldPassword: "carl-password-1" },
        carl,
      ),
      200,
      "with the old password",
    );
    // Even a system admin changing their own password gives the old one.
    const self = await node.admin(
      "PUT",
      "/users/alice",
      { password: "alice-password-2" },
      basic("alice", ALICE_PASSWORD),
    );
    assert.equal(self.status, 403, JSON.stringify(self.body));
  });

  test("a fetch-on-miss redirect's _token reads its one blob and reaches nothing else", async () => {
    // What node/http/app.ts `presigned` mints for a 307 to another region: a
    // pull token for the repository, good only for the redirect's path.
    const pull = claimsOf(await aliceToken(["repository:secret/app:pull"]));
    const keys = await node.keys();
    const path = `/v2/secret/app/blobs/${layerDigest}`;
    const { token } = await keys.issue({
      issuer: "meridian",
      service: "meridian",
      subject: "alice",
      kind: "user",
      access: [{ type: "repository", name: "secret/app", actions: ["pull"] }],
      ttlSeconds: 60,
      ...(typeof pull.cred === "string" ? { cred: pull.cred } : {}),
      only: path,
    });
    const anon = new OciClient(node.url);
    assert.equal((await anon.fetch(`${path}?_token=${token}`)).status, 200, "its blob");
    assert.equal(
      (await anon.fetch(`/v2/secret/app/blobs/${otherLayerDigest}?_token=${token}`)).status,
      403,
      "another blob of the same repository",
    );
    assert.equal((await anon.fetch(`/v2/secret/app/manifests/v1?_token=${token}`)).status, 403, "a manifest");
    assert.equal(
      (await new OciClient(node.url, `Bearer ${token}`).fetch("/v2/secret/app/tags/list")).status,
      403,
      "as a header, elsewhere",
    );
    const reset = await node.admin(
      "PUT",
      "/users/alice",
      { password: "reset-by-redirect" },
      `Bearer ${token}`,
    );
    assert.equal(reset.status, 401, "the admin API");
    assert.equal((await tokenFrom(node.url, ["repository:secret/app:push"], `Bearer ${token}`)).status, 401);
    assert.equal((await tokenFrom(node.url, [], basic("alice", ALICE_PASSWORD))).status, 200, "unchanged");
  });
});
