/**
 * OIDC across regions (issue 18 item 2): a real two-region mesh (`meridian
 * up --regions a,b --auth`, every node with the `oidc` settings) and a real
 * `oidc-provider` (testing/oidc.ts). A user signs in at region a and makes a
 * CLI secret there; region b knows the user, their roles and the secret
 * once the events replicate; a rotation at a ends the old secret at b, and
 * a revocation too (each is one replicated event).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { CookieJar, follow, startTestProvider, type TestProvider } from "../../testing/oidc.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let provider: TestProvider;
const url = (region: string) => mesh.regions.get(region)!.registry;
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** The actions a token from `region`'s /auth/token grants on team/app, or the refusal's status. */
async function granted(region: string, user: string, password: string): Promise<string> {
  const q = new URLSearchParams({ service: "meridian", scope: "repository:team/app:pull,push" });
  const res = await fetch(`${url(region)}/auth/token?${q}`, {
    headers: { authorization: basic(user, password) },
  });
  if (res.status !== 200) return String(res.status);
  const { token } = (await res.json()) as { token: string };
  const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
  return [...(claims.access[0]?.actions ?? [])].sort().join(",");
}

before(async () => {
  provider = await startTestProvider(cleanup);
  provider.accounts.set("dave", { groups: ["team-dev"] });
  const dir = tempDir(cleanup);
  writeFileSync(join(dir, "client-secret"), `${provider.clientSecret}\n`);
  let base = 0;
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"], (b) => {
    base = b;
    return {
      MERIDIAN_OIDC_ISSUER: provider.issuer,
      MERIDIAN_OIDC_CLIENT_ID: provider.clientId,
      MERIDIAN_OIDC_CLIENT_SECRET_FILE: join(dir, "client-secret"),
      MERIDIAN_OIDC_REDIRECT_URL: `http://127.0.0.1:${b}/auth/oidc/callback`,
      MERIDIAN_OIDC_GROUP_ROLES: JSON.stringify({ "team-dev": "team:developer" }),
    };
  });
  assert.equal(url("a"), `http://127.0.0.1:${base}`);
  await provider.register({
    redirectUri: `http://127.0.0.1:${base}/auth/oidc/callback`,
    postLogoutRedirectUri: `http://127.0.0.1:${base}/ui/`,
  });
});

test("a secret made in region a works in region b; rotated or revoked at a, the old one ends at b", async (t) => {
  const jar = new CookieJar();
  const done = await follow(
    jar,
    `${url("a")}/auth/oidc/login`,
    "dave",
    (u) => u.pathname === "/auth/oidc/me",
  );
  assert.ok(done.stopped, `ended at ${done.url}`);
  const cookie = `meridian_session=${jar.get(url("a"), "meridian_session")}`;
  const make = async (headers: Record<string, string>) => {
    const res = await fetch(`${url("a")}/admin/v1/oidc/users/dave/secret`, { method: "POST", headers });
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { secret: string }).secret;
  };
  const first = await make({ cookie });
  assert.equal(await granted("a", "dave", first), "pull,push");
  // Region b learns the user (roles from the sign-in event) and the secret by replication.
  await eventually(async () => (await granted("b", "dave", first)) === "pull,push", 30_000, 100);
  const second = await make({ authorization: basic("dave", first) });
  const rotatedAt = performance.now();
  assert.equal(await granted("a", "dave", first), "401");
  await eventually(async () => (await granted("b", "dave", first)) === "401", 30_000, 100);
  // A figure for the record, not a check (replication's pace is the mesh's).
  t.diagnostic(
    `old secret refused in region b ${Math.round(performance.now() - rotatedAt)} ms after the rotation at a`,
  );
  await eventually(async () => (await granted("b", "dave", second)) === "pull,push", 30_000, 100);
  const revoke = await fetch(`${url("a")}/admin/v1/oidc/users/dave/secret`, {
    method: "DELETE",
    headers: { authorization: basic("dave", second) },
  });
  assert.equal(revoke.status, 200);
  await eventually(async () => (await granted("b", "dave", second)) === "401", 30_000, 100);
});
