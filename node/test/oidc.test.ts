/**
 * OIDC sign-in and CLI secrets end to end (issue 18 item 2), against a real
 * `oidc-provider` (testing/oidc.ts: a registered confidential client, PKCE
 * required, a groups claim, RP-initiated logout) and two real nodes sharing a
 * real nats-server (one region, two nodes, each with its own view). The code
 * flow is driven by a real HTTP client following every redirect and
 * submitting the provider's login form.
 *
 * What it proves: a sign-in yields a session cookie (HttpOnly, SameSite=Lax)
 * the admin API and the dashboard accept, never /v2/ or /auth/token; groups
 * map to roles, checked request by request (a matrix of users × actions);
 * the sign-in is recorded without any token; a CLI secret, shown once, works
 * for Basic, /auth/token, podman and skopeo with the user's roles; rotation
 * and revocation end the old secret (and tokens issued for it) at once on
 * this node and within a second on the other; a group taken away removes the
 * role at the next sign-in; a tampered state or nonce, a replayed code, no
 * flow cookie, a local user's name and a provider of another issuer are 4xx
 * with nothing signed in; logout ends the session and sends the browser to
 * the provider's end_session_endpoint; with the provider down, a sign-in
 * fails 503 while CLI secrets keep working.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { screenshot, startBrowser } from "../../testing/browser.js";
import {
  cleanupStack,
  eventually,
  freePort,
  runCli,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { errorCode, OCI_CONFIG, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";
import { CookieJar, follow, hop, startTestProvider, type TestProvider } from "../../testing/oidc.js";
import type { RunningNode } from "../server.js";

// The page's globals, inside the functions puppeteer runs in the page (the project's lib has no DOM).
// biome-ignore lint/suspicious/noExplicitAny: the page's objects, typed by the browser, not here
declare const document: any, sessionStorage: any, localStorage: any;

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "admin-secret-pw";
let node: RunningNode;
let other: RunningNode;
let provider: TestProvider;
let natsUrl: string;
/** The session cookie of each signed-in user. */
const sessions = new Map<string, string>();
/** Each user's current CLI secret. */
const secrets = new Map<string, string>();

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const admin = () => new OciClient(node.url, basic("admin", ADMIN_PASSWORD));
const withCookie = (user: string) => ({ cookie: `meridian_session=${sessions.get(user)}` });

async function json(res: Response, status = 200): Promise<Record<string, unknown>> {
  const text = await res.text();
  assert.equal(res.status, status, `${res.url}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Sign `account` in through the provider, from /auth/oidc/login to /auth/oidc/me; its session cookie. */
async function signIn(
  account: string,
): Promise<{ cookie: string; me: Record<string, unknown>; setCookie: string }> {
  const jar = new CookieJar();
  let setCookie = "";
  const done = await follow(jar, `${node.url}/auth/oidc/login?next=/auth/oidc/me`, account, (url) => {
    if (url.pathname === "/auth/oidc/me") return true;
    return false;
  });
  if (!done.stopped) assert.fail(`ended at ${done.url} ${done.res.status}: ${await done.res.text()}`);
  setCookie = done.res.headers.getSetCookie().find((c) => c.startsWith("meridian_session=")) ?? "";
  const cookie = jar.get(node.url, "meridian_session");
  assert.ok(cookie !== undefined, "a session cookie was set");
  const me = await json(
    await fetch(`${node.url}/auth/oidc/me`, { headers: { cookie: `meridian_session=${cookie}` } }),
  );
  sessions.set(account, cookie);
  return { cookie, me, setCookie };
}

/** Start a sign-in and run the provider's part, stopping before the callback is requested. */
async function toCallback(account: string): Promise<{ jar: CookieJar; callback: URL; authorize: URL }> {
  const jar = new CookieJar();
  const start = await hop(jar, `${node.url}/auth/oidc/login`);
  assert.equal(start.status, 302);
  const authorize = new URL(start.headers.get("location")!);
  const done = await follow(jar, authorize.href, account, (url) => url.pathname === "/auth/oidc/callback");
  assert.ok(done.stopped);
  return { jar, callback: new URL(done.url), authorize };
}

/** A token for `scope` from /auth/token with Basic credentials: its granted actions, or the status. */
async function granted(
  url: string,
  user: string,
  password: string,
  repo: string,
): Promise<string[] | number> {
  const q = new URLSearchParams({ service: "meridian", scope: `repository:${repo}:pull,push,delete` });
  const res = await fetch(`${url}/auth/token?${q}`, { headers: { authorization: basic(user, password) } });
  if (res.status !== 200) return res.status;
  const { token } = (await res.json()) as { token: string };
  const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as {
    access: Array<{ actions: string[] }>;
  };
  return [...(claims.access[0]?.actions ?? [])].sort();
}

before(async () => {
  const nats = await startTestNats(cleanup);
  natsUrl = nats.url;
  const dataDir = tempDir(cleanup);
  writeFileSync(join(dataDir, "admin-password"), `${ADMIN_PASSWORD}\n`);
  provider = await startTestProvider(cleanup);
  // A second provider whose issuer is not the URL it is reached at: node `other` is pointed at it.
  const foreign = await startTestProvider(cleanup, { issuerHost: "localhost" });
  await foreign.register({
    redirectUri: "http://127.0.0.1:9/auth/oidc/callback",
    postLogoutRedirectUri: "http://127.0.0.1:9/",
  });
  writeFileSync(join(dataDir, "client-secret"), `${provider.clientSecret}\n`);
  const port = await freePort();
  const nodeUrl = `http://127.0.0.1:${port}`;
  await provider.register({
    redirectUri: `${nodeUrl}/auth/oidc/callback`,
    postLogoutRedirectUri: `${nodeUrl}/ui/`,
  });
  for (const [id, groups] of Object.entries({
    olivia: ["registry-admins"],
    dave: ["team-dev", "unmapped"],
    gina: ["team-readers"],
    nora: ["unmapped"],
    tess: ["team-dev"],
    rita: [],
    admin: ["registry-admins"],
  }))
    provider.accounts.set(id, { groups });
  provider.accounts.set("badname", { groups: [], username: "Not A Name" });
  const oidc = {
    issuer: provider.issuer,
    clientId: provider.clientId,
    clientSecretFile: join(dataDir, "client-secret"),
    redirectUrl: `${nodeUrl}/auth/oidc/callback`,
    postLogoutRedirectUrl: `${nodeUrl}/ui/`,
    groupRoles: {
      "registry-admins": "systemAdmin",
      "team-dev": "team:developer",
      "team-readers": "team:guest",
    },
  };
  node = await startTestNode(cleanup, {
    nats: nats.url,
    dataDir,
    listen: { host: "127.0.0.1", port },
    auth: { enabled: true, adminPasswordFile: join(dataDir, "admin-password"), loginFailures: 1000 },
    oidc,
  });
  other = await startTestNode(cleanup, {
    nats: nats.url,
    view: { dir: join(tempDir(cleanup), "view") },
    auth: { enabled: true, tokenKeyFile: join(dataDir, "token-key.pem"), loginFailures: 1000 },
    oidc: { ...oidc, issuer: foreign.issuer.replace("localhost", "127.0.0.1") },
  });
  await json(await admin().fetch("/admin/v1/projects/team", { method: "PUT", body: '{"public":false}' }));
  const c = admin();
  const config = await c.pushBlob("team/app", Buffer.from('{"seed":1}'), OCI_CONFIG);
  const layer = await c.pushBlob("team/app", Buffer.from("seed layer"));
  const put = await c.pushManifest("team/app", "v1", {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
  });
  assert.equal(put.response.status, 201);
});

describe("the code flow", () => {
  test("login sends the browser to the provider with PKCE (S256), state and nonce", async () => {
    const res = await hop(new CookieJar(), `${node.url}/auth/oidc/login`);
    assert.equal(res.status, 302);
    const url = new URL(res.headers.get("location")!);
    assert.equal(url.origin, provider.issuer);
    assert.equal(url.searchParams.get("code_challenge_method"), "S256");
    assert.match(url.searchParams.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
    assert.ok((url.searchParams.get("state") ?? "").length >= 20);
    assert.ok((url.searchParams.get("nonce") ?? "").length >= 20);
    assert.equal(url.searchParams.get("redirect_uri"), `${node.url}/auth/oidc/callback`);
    const flow = res.headers.getSetCookie().find((c) => c.startsWith("meridian_oidc_flow="))!;
    assert.match(flow, /HttpOnly/);
    assert.match(flow, /SameSite=Lax/);
    assert.ok(!flow.includes(url.searchParams.get("state")!), "the state is sealed, not in clear");
  });

  test("a sign-in yields a session cookie, groups mapped to roles, recorded without tokens", async () => {
    const { cookie, me, setCookie } = await signIn("dave");
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Lax/);
    assert.match(setCookie, /Path=\//);
    assert.ok(!/Secure/.test(setCookie), "no Secure flag over http");
    assert.equal(me.name, "dave");
    assert.deepEqual(me.groups, ["team-dev", "unmapped"]);
    assert.deepEqual(me.roles, { team: "developer" });
    assert.equal(me.systemAdmin, false);
    const { me: olivia } = await signIn("olivia");
    assert.equal(olivia.systemAdmin, true);
    await signIn("gina");
    await signIn("nora");
    const listed = await json(await admin().fetch("/admin/v1/oidc/users"));
    const text = JSON.stringify(listed);
    const dave = (listed.users as Array<Record<string, unknown>>).find((u) => u.name === "dave")!;
    assert.deepEqual(dave.roles, { team: "developer" });
    assert.equal(dave.signedIn, true);
    assert.equal(dave.issuer, provider.issuer);
    assert.ok(!text.includes(cookie), "no session token in what is recorded");
    assert.ok(!text.includes("eyJ"), "no JWT at all in what is recorded");
  });

  test("the session opens the admin API and the dashboard by role, never /v2/ or /auth/token", async () => {
    const rules = (user: string) => fetch(`${node.url}/admin/v1/rules`, { headers: withCookie(user) });
    assert.equal((await rules("olivia")).status, 200);
    assert.equal(await errorCode(await rules("dave")), "DENIED");
    const whoami = await json(await fetch(`${node.url}/admin/v1/whoami`, { headers: withCookie("dave") }));
    assert.deepEqual(whoami.roles, { team: "developer" });
    const dashboard = (user: string) =>
      fetch(`${node.url}/ui/api/session`, { method: "POST", headers: withCookie(user) });
    assert.equal((await json(await dashboard("olivia"))).auth, true);
    assert.equal((await dashboard("dave")).status, 403);
    assert.equal(
      (await fetch(`${node.url}/v2/team/app/tags/list`, { headers: withCookie("olivia") })).status,
      401,
    );
    assert.equal(
      (await fetch(`${node.url}/auth/token?service=meridian`, { headers: withCookie("olivia") })).status,
      200,
    );
    const anonymous = await json(
      await fetch(`${node.url}/auth/token?service=meridian&scope=repository:team/app:pull`, {
        headers: withCookie("olivia"),
      }),
    );
    const claims = JSON.parse(
      Buffer.from((anonymous.token as string).split(".")[1]!, "base64url").toString(),
    );
    assert.equal(claims.sub, "anonymous", "the cookie is not a credential at /auth/token");
    // An OIDC system admin's change is applied by the view (its authority check knows OIDC users).
    const made = await fetch(`${node.url}/admin/v1/projects/oidc-made`, {
      method: "PUT",
      headers: { ...withCookie("olivia"), origin: node.url },
      body: '{"public":true}',
    });
    assert.equal(made.status, 200, await made.text());
    const projects = await json(await admin().fetch("/admin/v1/projects"));
    assert.ok((projects.projects as Array<{ name: string }>).some((p) => p.name === "oidc-made"));
    // A write from another site with the cookie: refused before anything runs.
    const csrf = await fetch(`${node.url}/admin/v1/oidc/users/olivia/secret`, {
      method: "POST",
      headers: { ...withCookie("olivia"), origin: "http://evil.example" },
    });
    assert.equal(csrf.status, 403);
  });

  test("`next` is a path on this server only: no open redirect", async () => {
    for (const next of ["https://evil.example/x", "//evil.example/x", "/\\evil.example"]) {
      const jar = new CookieJar();
      const login = `${node.url}/auth/oidc/login?next=${encodeURIComponent(next)}`;
      const done = await follow(
        jar,
        login,
        "rita",
        (u) => u.pathname === "/auth/oidc/me" || u.host === "evil.example",
      );
      assert.equal(done.url, `${node.url}/auth/oidc/me`, next);
    }
    const jar = new CookieJar();
    const ui = await follow(
      jar,
      `${node.url}/auth/oidc/login?next=/ui/`,
      "rita",
      (u) => u.pathname === "/ui/",
    );
    assert.equal(ui.url, `${node.url}/ui/`);
  });

  test("a local user's name cannot sign in through the provider; an invalid user name is 400", async () => {
    const jar = new CookieJar();
    const local = await follow(
      jar,
      `${node.url}/auth/oidc/login`,
      "admin",
      (u) => u.pathname === "/auth/oidc/me",
    );
    assert.equal(local.res.status, 403);
    assert.equal(jar.get(node.url, "meridian_session"), undefined);
    const bad = await follow(new CookieJar(), `${node.url}/auth/oidc/login`, "badname");
    assert.equal(bad.res.status, 400);
    assert.match(await bad.res.text(), /not a Meridian user name/);
  });
});

describe("refused sign-ins sign nobody in", () => {
  const nobody = async () => {
    const users = (await json(await admin().fetch("/admin/v1/oidc/users"))).users as Array<{ name: string }>;
    assert.ok(!users.some((u) => u.name === "tess"), "tess never signed in");
  };

  test("a tampered state", async () => {
    const { jar, callback } = await toCallback("tess");
    callback.searchParams.set("state", "tampered-state-value-000000");
    const res = await hop(jar, callback.href);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /state/i);
    assert.equal(jar.get(node.url, "meridian_session"), undefined);
    await nobody();
  });

  test("a tampered nonce (the provider asked with another one)", async () => {
    const jar = new CookieJar();
    const start = await hop(jar, `${node.url}/auth/oidc/login`);
    const authorize = new URL(start.headers.get("location")!);
    authorize.searchParams.set("nonce", "tampered-nonce-value-000000");
    const done = await follow(jar, authorize.href, "tess", (u) => u.pathname === "/auth/oidc/callback");
    const res = await hop(jar, done.url);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /nonce/i);
    await nobody();
  });

  test("no flow cookie, a tampered flow cookie, a replayed code", async () => {
    const { jar, callback } = await toCallback("tess");
    const flow = jar.get(node.url, "meridian_oidc_flow")!;
    assert.equal((await fetch(callback)).status, 400);
    const tampered = `${flow.slice(0, -4)}AAAA`;
    assert.equal(
      (await fetch(callback, { headers: { cookie: `meridian_oidc_flow=${tampered}` } })).status,
      400,
    );
    // The real one works once; the same code again is refused by the provider.
    const first = await fetch(callback, {
      headers: { cookie: `meridian_oidc_flow=${flow}` },
      redirect: "manual",
    });
    assert.equal(first.status, 302);
    const replay = await fetch(callback, {
      headers: { cookie: `meridian_oidc_flow=${flow}` },
      redirect: "manual",
    });
    assert.equal(replay.status, 400);
    assert.match(await replay.text(), /invalid_grant|grant/i);
  });

  test("a provider whose issuer is not the configured one", async () => {
    const res = await fetch(`${other.url}/auth/oidc/login`, { redirect: "manual" });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /issuer/i);
  });
});

describe("CLI secrets", () => {
  const createSecret = async (user: string, headers: Record<string, string> = withCookie(user)) => {
    const res = await fetch(`${node.url}/admin/v1/oidc/users/${user}/secret`, { method: "POST", headers });
    // The change ended the session that made it; a renewed one comes back (none for Basic).
    const renewed = res.headers.getSetCookie().find((c) => c.startsWith("meridian_session="));
    assert.equal(renewed !== undefined, headers.cookie !== undefined);
    if (renewed !== undefined)
      sessions.set(user, renewed.slice("meridian_session=".length, renewed.indexOf(";")));
    const body = await json(res);
    assert.equal(body.name, user);
    assert.match(body.secret as string, /^[A-Za-z0-9_-]{43}$/);
    secrets.set(user, body.secret as string);
    return body.secret as string;
  };

  test("created from the session, shown once, never by someone else", async () => {
    for (const user of ["dave", "gina", "nora", "olivia"]) await createSecret(user);
    // A system admin cannot make (and so see) someone else's secret.
    const res = await fetch(`${node.url}/admin/v1/oidc/users/dave/secret`, {
      method: "POST",
      headers: withCookie("olivia"),
    });
    assert.equal(res.status, 403);
    const me = await json(await fetch(`${node.url}/auth/oidc/me`, { headers: withCookie("dave") }));
    assert.equal((me.cliSecret as { set: boolean }).set, true);
    assert.ok(!JSON.stringify(me).includes(secrets.get("dave")!), "the secret is not shown again");
    // Never signed in: no secret to revoke (a system admin asking).
    const unknown = await fetch(`${node.url}/admin/v1/oidc/users/nobody/secret`, {
      method: "DELETE",
      headers: withCookie("olivia"),
    });
    assert.equal(unknown.status, 400);
  });

  test("groups decide what the secret may do: the authorization matrix", async () => {
    const expected: Record<string, string[]> = {
      olivia: ["delete", "pull", "push"],
      dave: ["pull", "push"],
      gina: ["pull"],
      nora: [],
    };
    for (const [user, actions] of Object.entries(expected)) {
      assert.deepEqual(await granted(node.url, user, secrets.get(user)!, "team/app"), actions, user);
      const c = new OciClient(node.url, basic(user, secrets.get(user)!));
      const pull = await c.fetch("/v2/team/app/manifests/v1", { method: "HEAD" });
      assert.equal(pull.status, actions.includes("pull") ? 200 : 403, `${user} pull`);
      const push = await c.fetch("/v2/team/app/blobs/uploads/", { method: "POST" });
      assert.equal(push.status, actions.includes("push") ? 202 : 403, `${user} push`);
      const del = await c.fetch(
        "/v2/team/app/manifests/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        { method: "DELETE" },
      );
      assert.equal(del.status, actions.includes("delete") ? 404 : 403, `${user} delete`);
      // Basic with the secret also reaches the admin API by role.
      assert.equal((await c.fetch("/admin/v1/rules")).status, user === "olivia" ? 200 : 403, `${user} admin`);
    }
    assert.equal(await granted(node.url, "dave", "not-the-secret", "team/app"), 401);
    // The other node has the same users and secrets (one log).
    await eventually(
      async () =>
        JSON.stringify(await granted(other.url, "gina", secrets.get("gina")!, "team/app")) === '["pull"]',
    );
  });

  test("podman logs in with the secret and pushes; skopeo copies; a guest pulls and cannot push", async () => {
    const work = tempDir(cleanup);
    const host = node.url.replace(/^http:\/\//, "");
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(work, "auth.json") };
    const podman = (args: string[]) =>
      run(
        "podman",
        ["--storage-driver", "vfs", "--root", join(work, "root"), "--runroot", join(work, "run"), ...args],
        {
          env,
          timeout: 120_000,
        },
      );
    mkdirSync(join(work, "rootfs"));
    writeFileSync(join(work, "rootfs", "hello.txt"), "hello from an OIDC user");
    await run("tar", ["-C", join(work, "rootfs"), "-cf", join(work, "rootfs.tar"), "."]);
    await podman(["import", join(work, "rootfs.tar"), "localhost/hello:v1"]);
    await assert.rejects(
      podman(["login", "--tls-verify=false", "-u", "dave", "-p", "wrong secret", host]),
      /invalid username\/password|unauthorized/i,
    );
    await podman(["login", "--tls-verify=false", "-u", "dave", "-p", secrets.get("dave")!, host]);
    await podman(["push", "--tls-verify=false", "localhost/hello:v1", `${host}/team/podman:v1`]);
    assert.equal((await admin().fetch("/v2/team/podman/manifests/v1", { method: "HEAD" })).status, 200);
    await podman(["logout", host]);
    const layout = join(work, "layout");
    writeImageLayout(layout, "v1", [20_000]);
    await run(
      "skopeo",
      [
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        `dave:${secrets.get("dave")}`,
        `oci:${layout}:v1`,
        `docker://${host}/team/sk:v1`,
      ],
      { timeout: 60_000 },
    );
    await run(
      "skopeo",
      [
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        `gina:${secrets.get("gina")}`,
        `docker://${host}/team/sk:v1`,
        `dir:${join(work, "out")}`,
      ],
      { timeout: 60_000 },
    );
    await assert.rejects(
      run(
        "skopeo",
        [
          "copy",
          "--dest-tls-verify=false",
          "--dest-creds",
          `gina:${secrets.get("gina")}`,
          `oci:${layout}:v1`,
          `docker://${host}/team/sk:v2`,
        ],
        { timeout: 60_000 },
      ),
      /denied|unauthorized|403/i,
    );
  });

  test("rotation: the old secret and its tokens stop at once here, within a second on the other node", async () => {
    const old = secrets.get("dave")!;
    const q = new URLSearchParams({ service: "meridian", scope: "repository:team/app:pull" });
    const issued = await json(
      await fetch(`${node.url}/auth/token?${q}`, { headers: { authorization: basic("dave", old) } }),
    );
    const bearer = new OciClient(node.url, `Bearer ${issued.token}`);
    assert.equal((await bearer.fetch("/v2/team/app/manifests/v1", { method: "HEAD" })).status, 200);
    assert.deepEqual(await granted(other.url, "dave", old, "team/app"), ["pull", "push"]);
    // Rotated with the current secret (what `meridian oidc secret rotate` does).
    const fresh = await createSecret("dave", { authorization: basic("dave", old) });
    assert.notEqual(fresh, old);
    // A secret change ends the user's tokens, the browser session's too (renewed only when it made the change).
    const session = await fetch(`${node.url}/admin/v1/whoami`, { headers: withCookie("dave") });
    assert.equal(session.status, 401);
    assert.equal(await granted(node.url, "dave", old, "team/app"), 401);
    assert.equal((await bearer.fetch("/v2/team/app/manifests/v1", { method: "HEAD" })).status, 401);
    assert.deepEqual(await granted(node.url, "dave", fresh, "team/app"), ["pull", "push"]);
    await eventually(async () => (await granted(other.url, "dave", old, "team/app")) === 401, 3_000);
    assert.deepEqual(await granted(other.url, "dave", fresh, "team/app"), ["pull", "push"]);
  });

  test("revocation by a system admin ends the secret everywhere; others cannot revoke it", async () => {
    const gina = secrets.get("gina")!;
    const denied = await fetch(`${node.url}/admin/v1/oidc/users/gina/secret`, {
      method: "DELETE",
      headers: withCookie("nora"),
    });
    assert.equal(denied.status, 403);
    await json(await admin().fetch("/admin/v1/oidc/users/gina/secret", { method: "DELETE" }));
    assert.equal(await granted(node.url, "gina", gina, "team/app"), 401);
    await eventually(async () => (await granted(other.url, "gina", gina, "team/app")) === 401, 3_000);
    const listed = (await json(await admin().fetch("/admin/v1/oidc/users"))).users as Array<
      Record<string, unknown>
    >;
    assert.equal(listed.find((u) => u.name === "gina")!.cliSecret, false);
  });

  test("the CLI: `meridian oidc secret rotate` with the current secret, `oidc users`, `oidc secret revoke`", async () => {
    const dir = tempDir(cleanup);
    const meshFile = join(dir, "mesh.json");
    writeFileSync(
      meshFile,
      JSON.stringify({
        regions: [{ name: "test", registry: node.url, nats: natsUrl, grpc: "127.0.0.1:9" }],
        insecure: true,
      }),
    );
    const secretFile = join(dir, "secret");
    writeFileSync(secretFile, `${secrets.get("nora")}\n`);
    const env = { MERIDIAN_USER: "nora", MERIDIAN_PASSWORD_FILE: secretFile };
    const cli = (args: string[]) => runCli([...args, "--mesh", meshFile, "--region", "test"], 30_000, env);
    const rotated = await cli(["oidc", "secret", "rotate"]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const fresh = /\n([A-Za-z0-9_-]{43})\n/.exec(rotated.stdout)?.[1];
    assert.ok(fresh !== undefined, rotated.stdout);
    assert.equal(await granted(node.url, "nora", secrets.get("nora")!, "team/app"), 401);
    assert.deepEqual(await granted(node.url, "nora", fresh, "team/app"), []);
    secrets.set("nora", fresh);
    writeFileSync(secretFile, `${fresh}\n`);
    // nora is no system admin: the listing is refused; the admin's lists her.
    assert.notEqual((await cli(["oidc", "users"])).code, 0);
    const adminFile = join(dir, "admin");
    writeFileSync(adminFile, `${ADMIN_PASSWORD}\n`);
    const listed = await runCli(["oidc", "users", "--mesh", meshFile, "--region", "test"], 30_000, {
      MERIDIAN_USER: "admin",
      MERIDIAN_PASSWORD_FILE: adminFile,
    });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^nora\s+unmapped\s+no\s+-\s+\S+\s+\S+\s+yes$/m);
    assert.equal((await cli(["oidc", "secret", "fly"])).code === 0, false);
    const revoked = await cli(["oidc", "secret", "revoke"]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /CLI secret of nora revoked/);
    assert.equal(await granted(node.url, "nora", fresh, "team/app"), 401);
  });

  test("an admin's token revocation (tokens.revoked) ends an OIDC user's session too", async () => {
    const { cookie } = await signIn("rita");
    const whoami = () =>
      fetch(`${node.url}/admin/v1/whoami`, { headers: { cookie: `meridian_session=${cookie}` } });
    assert.equal((await whoami()).status, 200);
    await json(await admin().fetch("/admin/v1/users/rita/revoke-tokens", { method: "POST" }));
    assert.equal((await whoami()).status, 401);
  });

  test("a group taken away removes the role at the next sign-in (and ends the older session)", async () => {
    const before = sessions.get("dave")!;
    provider.accounts.set("dave", { groups: ["unmapped"] });
    const { me } = await signIn("dave");
    assert.deepEqual(me.roles, {});
    assert.deepEqual(await granted(node.url, "dave", secrets.get("dave")!, "team/app"), []);
    const stale = await fetch(`${node.url}/admin/v1/whoami`, {
      headers: { cookie: `meridian_session=${before}` },
    });
    assert.equal(stale.status, 401);
    provider.accounts.set("dave", { groups: ["team-dev"] });
    assert.deepEqual((await signIn("dave")).me.roles, { team: "developer" });
  });
});

describe("logout and a provider that is down", () => {
  test("in Chromium: the dashboard's identity-provider sign-in, the live page, and sign-out", async () => {
    const browser = await startBrowser(cleanup);
    const page = await browser.page(1280, 800);
    await page.goto(`${node.url}/ui/`, { waitUntil: "load" });
    await page.waitForSelector("#sso-box:not([hidden])", { timeout: 10_000 });
    await Promise.all([page.waitForNavigation({ timeout: 10_000 }), page.click("#sso")]);
    assert.ok(page.url().startsWith(provider.issuer), `at the provider: ${page.url()}`);
    await page.type('input[name="login"]', "olivia");
    await page.type('input[name="password"]', "any password");
    await Promise.all([page.waitForNavigation({ timeout: 15_000 }), page.click('button[type="submit"]')]);
    await page.waitForFunction(() => document.getElementById("link")?.textContent === "live", {
      timeout: 15_000,
    });
    assert.equal(await page.$eval("#main", (m) => m.hasAttribute("hidden")), false);
    // Nothing of the session is where scripts can read it.
    assert.equal(await page.evaluate(() => document.cookie.includes("meridian_session")), false);
    assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);
    const cookies = await page.cookies(node.url);
    const session = cookies.find((c) => c.name === "meridian_session");
    assert.ok(session?.httpOnly === true && session.sameSite === "Lax");
    sessions.set("olivia", session.value);
    if (process.env.MERIDIAN_SCREENSHOTS === "1") await screenshot(page, "dashboard-oidc-1280x800");
    // Problems of Meridian's pages only (the provider's development form loads a web font it cannot reach).
    const ours = browser.problems.filter((p) => p.includes(node.url) && !p.includes(provider.issuer));
    assert.deepEqual(ours, []);
    await Promise.all([page.waitForNavigation({ timeout: 10_000 }), page.click("#sign-out")]);
    assert.ok(
      page.url().startsWith(`${provider.issuer}/session/end`),
      `at the provider's logout: ${page.url()}`,
    );
    const stale = await fetch(`${node.url}/admin/v1/whoami`, {
      headers: { cookie: `meridian_session=${session.value}` },
    });
    assert.equal(stale.status, 401, "signed out: the session is gone");
  });

  test("logout ends the session everywhere and sends the browser to the provider's end_session_endpoint", async () => {
    const session = (await signIn("olivia")).cookie;
    const res = await fetch(`${node.url}/auth/oidc/logout`, {
      method: "POST",
      headers: withCookie("olivia"),
      redirect: "manual",
    });
    assert.equal(res.status, 303);
    const to = new URL(res.headers.get("location")!);
    assert.equal(to.origin, provider.issuer);
    assert.equal(to.searchParams.get("client_id"), provider.clientId);
    assert.equal(to.searchParams.get("post_logout_redirect_uri"), `${node.url}/ui/`);
    assert.match(res.headers.getSetCookie().join("\n"), /meridian_session=;.*Max-Age=0/);
    const page = await fetch(to);
    assert.equal(page.status, 200, "the provider knows the end_session request");
    assert.equal(
      (await fetch(`${node.url}/admin/v1/rules`, { headers: { cookie: `meridian_session=${session}` } }))
        .status,
      401,
    );
    await eventually(async () => {
      const bearer = await fetch(`${other.url}/admin/v1/rules`, {
        headers: { authorization: `Bearer ${session}` },
      });
      return bearer.status === 401;
    }, 3_000);
    // The CLI secret outlives the browser session.
    assert.deepEqual(await granted(node.url, "olivia", secrets.get("olivia")!, "team/app"), [
      "delete",
      "pull",
      "push",
    ]);
  });

  test("provider down: a sign-in fails 503, existing CLI secrets keep working", async () => {
    const { jar, callback } = await toCallback("nora");
    await provider.stop();
    const res = await hop(jar, callback.href);
    assert.equal(res.status, 503);
    assert.equal(await errorCode(res), "UNAVAILABLE");
    assert.equal(jar.get(node.url, "meridian_session"), undefined);
    assert.deepEqual(await granted(node.url, "dave", secrets.get("dave")!, "team/app"), ["pull", "push"]);
    const c = new OciClient(node.url, basic("dave", secrets.get("dave")!));
    assert.equal((await c.fetch("/v2/team/app/manifests/v1", { method: "HEAD" })).status, 200);
    // Every outcome counted (the earlier tests made each at least once).
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    for (const outcome of ["ok", "refused", "unavailable"]) {
      const n = Number(
        new RegExp(`^meridian_oidc_sign_ins_total\\{outcome="${outcome}"[^}]*\\} (\\d+)$`, "m").exec(
          metrics,
        )?.[1],
      );
      assert.ok(n >= 1, `${outcome}: ${n}`);
    }
  });
});
