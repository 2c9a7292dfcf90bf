/**
 * Issue 10 finding 2, redirect mode: "the `_token` of a fetch-on-miss 307
 * was enough to reset a password". Two regions as real processes with
 * authentication on, b fetching on miss by redirect (MERIDIAN_FETCH_ON_MISS
 * =redirect) and cut off from a's stream, so a blob pushed to a is a miss
 * in b: b answers 307 to a with a `_token`, which must read that one blob
 * and reach nothing else (another blob, a manifest, the admin API, the token
 * endpoint).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { writeTokenKey } from "../../mesh-client/token-key-file.js";
import { cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import { ADMIN_PASSWORD, adminBasic, adminCall, basic, tokenFrom } from "../identity-node.js";

const cleanup = cleanupStack({ after });
const ALICE_PASSWORD = "alice-password-1";
let mesh: ProxiedMesh;

const registry = (region: string) => mesh.regions.get(region)!.registry;

const admin = (region: string, method: string, path: string, json?: unknown, authorization = adminBasic) =>
  adminCall(registry(region), method, path, authorization, json);

before(async () => {
  const secrets = tempDir(cleanup, "meridian-secrets-");
  const keyFile = join(secrets, "token-key.pem");
  await writeTokenKey(keyFile);
  const passwordFile = join(secrets, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  const auth = { MERIDIAN_TOKEN_KEY_FILE: keyFile };
  mesh = await startProxiedMesh(cleanup, ["a", "b"], {
    node: {
      ...auth,
      MERIDIAN_AUTH: "true",
      MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
      MERIDIAN_FETCH_ON_MISS: "redirect",
    },
    peer: auth,
    worker: auth,
  });
  await eventually(async () => (await admin("a", "GET", "/whoami")).status === 200, 20_000, 100);
  await eventually(async () => (await admin("b", "GET", "/whoami")).status === 200, 20_000, 100);
  assert.equal((await admin("a", "PUT", "/projects/secret", { public: false })).status, 200);
  assert.equal(
    (await admin("a", "PUT", "/users/alice", { password: ALICE_PASSWORD, systemAdmin: true })).status,
    200,
  );
  // alice must be the same user in both regions before b is cut off.
  await eventually(
    async () =>
      (await admin("b", "GET", "/whoami", undefined, basic("alice", ALICE_PASSWORD))).status === 200,
    30_000,
    200,
  );
  mesh.partition("b");
});

describe("finding 2: a fetch-on-miss redirect's _token", () => {
  test("reads its one blob and reaches nothing else", async () => {
    const image = await new OciClient(registry("a"), adminBasic).pushRandomImage("secret/app", "v1", 2, 64);
    const [mine, other] = [image.layers[0]!.digest, image.layers[1]!.digest];
    const miss = await fetch(`${registry("b")}/v2/secret/app/blobs/${mine}`, {
      headers: { authorization: basic("alice", ALICE_PASSWORD) },
      redirect: "manual",
    });
    assert.equal(miss.status, 307, await miss.text());
    const location = new URL(miss.headers.get("location")!);
    assert.equal(location.origin, new URL(registry("a")).origin, "redirected to a");
    const token = location.searchParams.get("_token")!;
    assert.ok(token, "the redirect carries a token");
    assert.equal((await fetch(location)).status, 200, "the redirect reads its blob");

    const anon = new OciClient(registry("a"));
    assert.equal(
      (await anon.fetch(`/v2/secret/app/blobs/${other}?_token=${token}`)).status,
      403,
      "another blob",
    );
    assert.equal((await anon.fetch(`/v2/secret/app/manifests/v1?_token=${token}`)).status, 403, "a manifest");
    for (const region of ["a", "b"]) {
      const reset = await admin(
        region,
        "PUT",
        "/users/alice",
        { password: "reset-by-redirect" },
        `Bearer ${token}`,
      );
      assert.equal(reset.status, 401, `the admin API of ${region}: ${JSON.stringify(reset.body)}`);
      const escalate = await admin(
        region,
        "PUT",
        "/users/mallory",
        { password: "mallory-password", systemAdmin: true },
        `Bearer ${token}`,
      );
      assert.equal(escalate.status, 401, `no new admin in ${region}`);
      assert.equal(
        (await tokenFrom(registry(region), ["repository:secret/app:pull,push,delete"], `Bearer ${token}`))
          .status,
        401,
        `no wider token from ${region}`,
      );
    }
    assert.equal((await admin("a", "GET", "/whoami", undefined, basic("alice", ALICE_PASSWORD))).status, 200);
  });
});
