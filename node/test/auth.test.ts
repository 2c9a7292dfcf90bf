/**
 * Authentication and access end to end (issue 6) against a real node with
 * `auth` on and a real nats-server: the table of every role × action ×
 * project visibility, with Basic credentials and with tokens from
 * /auth/token; the challenge; robots; refused tokens (expired, tampered,
 * wrongly scoped, foreign key, deleted holder); identity administration;
 * failed-login limits; and skopeo logging in and copying with credentials.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { TokenKeys } from "../../mesh-client/tokens.js";
import type { Action } from "../../protocol/access.js";
import { sleep } from "../../testing/faults.js";
import { cleanupStack, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import { errorCode, OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";
import { credentialFingerprint } from "../auth/authenticator.js";
import type { RunningNode } from "../server.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "admin-secret-pw";
const PASSWORD = "correct horse battery";
let node: RunningNode;
let dataDir: string;
let natsUrl: string;

const basic = (user: string, password = PASSWORD) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const as = (user: string | undefined, password?: string) =>
  new OciClient(node.url, user === undefined ? undefined : basic(user, password));
const admin = () => as("admin", ADMIN_PASSWORD);

async function adminCall(method: string, path: string, json?: unknown, client = admin()): Promise<Response> {
  return client.fetch(`/admin/v1${path}`, {
    method,
    ...(json === undefined
      ? {}
      : { body: JSON.stringify(json), headers: { "content-type": "application/json" } }),
  });
}

async function ok(res: Response, status = 200): Promise<Record<string, unknown>> {
  const text = await res.text();
  assert.equal(res.status, status, `${res.url}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** A token from the node's token endpoint. */
async function token(scopes: string[], authorization?: string): Promise<string> {
  const q = new URLSearchParams({ service: "meridian" });
  for (const s of scopes) q.append("scope", s);
  const res = await fetch(`${node.url}/auth/token?${q}`, {
    headers: authorization === undefined ? {} : { authorization },
  });
  const body = await ok(res);
  assert.equal(body.token, body.access_token);
  assert.ok(typeof body.expires_in === "number" && body.expires_in > 0);
  return body.token as string;
}

/** Push a one-layer image as admin; its manifest digest. */
async function seed(repo: string, tag: string): Promise<string> {
  const c = admin();
  const config = await c.pushBlob(repo, Buffer.from(`{"seed":"${repo}:${tag}"}`), OCI_CONFIG);
  const layer = await c.pushBlob(repo, Buffer.from(`layer of ${repo}:${tag}`));
  const put = await c.pushManifest(repo, tag, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
  });
  assert.equal(put.response.status, 201);
  return put.digest;
}

before(async () => {
  const nats = await startTestNats(cleanup);
  natsUrl = nats.url;
  dataDir = tempDir(cleanup);
  const passwordFile = join(dataDir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
  node = await startTestNode(cleanup, {
    nats: nats.url,
    dataDir,
    auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures: 1000 },
  });
  const users: Array<[string, Record<string, string>]> = [
    ["padmin", { pub: "projectAdmin", priv: "projectAdmin" }],
    ["maint", { pub: "maintainer", priv: "maintainer" }],
    ["dev", { pub: "developer", priv: "developer" }],
    ["guest", { pub: "guest", priv: "guest" }],
    ["limited", { pub: "limitedGuest", priv: "limitedGuest" }],
    ["outsider", {}],
  ];
  await ok(await adminCall("PUT", "/projects/pub", { public: true }));
  await ok(await adminCall("PUT", "/projects/priv", { public: false }));
  for (const [name, roles] of users) {
    await ok(await adminCall("PUT", `/users/${name}`, { password: PASSWORD }));
    for (const [project, role] of Object.entries(roles))
      await ok(await adminCall("PUT", `/projects/${project}/members/${name}`, { role }));
  }
  await seed("pub/app", "v1");
  await seed("priv/app", "v1");
});

describe("the challenge", () => {
  test("GET /v2/ without credentials: 401 naming the token endpoint and service", async () => {
    const res = await as(undefined).fetch("/v2/");
    assert.equal(res.status, 401);
    assert.equal(await errorCode(res), "UNAUTHORIZED");
    assert.equal(
      res.headers.get("www-authenticate"),
      `Bearer realm="${node.url}/auth/token",service="meridian"`,
    );
  });

  test("GET /v2/ with a good password or a token: 200; with a bad password: 401", async () => {
    assert.equal((await as("dev").fetch("/v2/")).status, 200);
    assert.equal(
      (await new OciClient(node.url, `Bearer ${await token([], basic("dev"))}`).fetch("/v2/")).status,
      200,
    );
    const bad = await as("dev", "wrong password").fetch("/v2/");
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
  });

  test("anonymous push is refused with a challenge for pull,push", async () => {
    const res = await as(undefined).fetch("/v2/pub/app/blobs/uploads/", { method: "POST" });
    assert.equal(res.status, 401);
    assert.equal(await errorCode(res), "UNAUTHORIZED");
    assert.match(res.headers.get("www-authenticate") ?? "", /scope="repository:pub\/app:pull,push"/);
  });

  test("the realm ignores X-Forwarded-Host and -Proto from a client that is not a trusted proxy", async () => {
    const res = await as(undefined).fetch("/v2/", {
      headers: { "x-forwarded-host": "registry.example:443", "x-forwarded-proto": "https" },
    });
    assert.equal(
      res.headers.get("www-authenticate"),
      `Bearer realm="${node.url}/auth/token",service="meridian"`,
    );
  });

  test("a malformed Authorization header is 401, not a 500", async () => {
    for (const header of ["Basic !!!", "Basic ", "Bearer not.a.token", "Digest abc"]) {
      const res = await new OciClient(node.url, header).fetch("/v2/");
      assert.equal(res.status, 401, header);
      assert.equal(await errorCode(res), "UNAUTHORIZED");
    }
  });
});

describe("role × action × visibility", () => {
  type Who = "sysadmin" | "padmin" | "maint" | "dev" | "guest" | "limited" | "outsider" | "anonymous";
  const allowed: Record<Who, Record<"pub" | "priv", Action[]>> = {
    sysadmin: { pub: ["pull", "push", "delete"], priv: ["pull", "push", "delete"] },
    padmin: { pub: ["pull", "push", "delete"], priv: ["pull", "push", "delete"] },
    maint: { pub: ["pull", "push", "delete"], priv: ["pull", "push", "delete"] },
    dev: { pub: ["pull", "push"], priv: ["pull", "push"] },
    guest: { pub: ["pull"], priv: ["pull"] },
    limited: { pub: ["pull"], priv: ["pull"] },
    outsider: { pub: ["pull"], priv: [] },
    anonymous: { pub: ["pull"], priv: [] },
  };
  const credentials = (who: Who) =>
    who === "anonymous" ? undefined : who === "sysadmin" ? basic("admin", ADMIN_PASSWORD) : basic(who);

  /** Try the action; true when the node allowed it, false when it refused with 401/403. */
  async function attempt(client: OciClient, action: Action, project: string, tag: string): Promise<boolean> {
    const repo = `${project}/app`;
    let res: Response;
    if (action === "pull") res = await client.fetch(`/v2/${repo}/manifests/v1`);
    else if (action === "push") res = await client.fetch(`/v2/${repo}/blobs/uploads/`, { method: "POST" });
    else res = await client.fetch(`/v2/${repo}/manifests/${tag}`, { method: "DELETE" });
    await res.arrayBuffer();
    if ([200, 202].includes(res.status)) return true;
    assert.ok([401, 403].includes(res.status), `${action} ${repo}: unexpected ${res.status}`);
    return false;
  }

  for (const via of ["basic", "bearer"] as const)
    for (const who of Object.keys(allowed) as Who[])
      for (const project of ["pub", "priv"] as const)
        test(`${via}: ${who} in ${project === "pub" ? "a public" : "a private"} project may ${allowed[who][project].join(", ") || "nothing"}`, async () => {
          const tag = `del-${via}-${who}`;
          await seed(`${project}/app`, tag);
          let client: OciClient;
          if (via === "basic") client = new OciClient(node.url, credentials(who));
          else {
            const t = await token([`repository:${project}/app:pull,push,delete`], credentials(who));
            client = new OciClient(node.url, `Bearer ${t}`);
          }
          const got: Action[] = [];
          for (const action of ["pull", "push", "delete"] as const)
            if (await attempt(client, action, project, tag)) got.push(action);
          assert.deepEqual(got, allowed[who][project]);
        });

  test("denied with credentials is 403 DENIED; denied without is 401 UNAUTHORIZED", async () => {
    const res = await as("guest").fetch("/v2/priv/app/blobs/uploads/", { method: "POST" });
    assert.equal(res.status, 403);
    assert.equal(await errorCode(res), "DENIED");
    const anon = await as(undefined).fetch("/v2/priv/app/manifests/v1");
    assert.equal(anon.status, 401);
    assert.match(anon.headers.get("www-authenticate") ?? "", /scope="repository:priv\/app:pull"/);
  });

  test("the catalog lists only what the caller may pull", async () => {
    await seed("other/app", "v1");
    const list = async (client: OciClient) =>
      ((await ok(await client.fetch("/v2/_catalog"))).repositories as string[]).sort();
    assert.deepEqual(await list(admin()), ["other/app", "priv/app", "pub/app"]);
    assert.deepEqual(await list(as("dev")), ["priv/app", "pub/app"]);
    assert.deepEqual(await list(as("outsider")), ["pub/app"]);
    assert.equal((await as(undefined).fetch("/v2/_catalog")).status, 401);
  });

  test("a cross-repository mount needs pull on the source: without it the client uploads", async () => {
    const c = admin();
    const blob = await c.pushBlob("other/app", Buffer.from("mount me"));
    const res = await as("dev").fetch(`/v2/pub/app/blobs/uploads/?mount=${blob.digest}&from=other/app`, {
      method: "POST",
    });
    assert.equal(res.status, 202, "not mounted: an upload session instead");
    const mounted = await admin().fetch(`/v2/pub/app/blobs/uploads/?mount=${blob.digest}&from=other/app`, {
      method: "POST",
    });
    assert.equal(mounted.status, 201);
  });

  test("events record who did it", async () => {
    await seed("pub/app", "by-dev-base");
    const c = as("dev");
    const config = await c.pushBlob("pub/app", Buffer.from("{}"), OCI_CONFIG);
    await c.pushManifest("pub/app", "by-dev", {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [],
    });
    const history = await ok(await adminCall("GET", "/repositories/pub/app/tags/by-dev/history"));
    assert.equal((history.writes as Array<{ actor: string }>)[0]?.actor, "dev");
  });
});

describe("tokens", () => {
  test("a token grants only the asked actions the holder may do", async () => {
    const t = await token(["repository:priv/app:pull,push,delete"], basic("dev"));
    const claims = JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString());
    assert.deepEqual(claims.access, [{ type: "repository", name: "priv/app", actions: ["pull", "push"] }]);
    assert.equal(claims.sub, "dev");
    assert.equal(claims.aud, "meridian");
  });

  test("a wrongly scoped token is refused with insufficient_scope, though its holder could", async () => {
    const t = await token(["repository:pub/app:pull"], basic("dev"));
    const res = await new OciClient(node.url, `Bearer ${t}`).fetch("/v2/priv/app/manifests/v1");
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate") ?? "", /error="insufficient_scope"/);
    assert.match(res.headers.get("www-authenticate") ?? "", /scope="repository:priv\/app:pull"/);
  });

  test("expired, tampered, foreign-key and wrong-service tokens are refused", async () => {
    const privatePem = await readFile(join(dataDir, "token-key.pem"), "utf8");
    const publicPem = createPublicKey(createPrivateKey(privatePem)).export({
      type: "spki",
      format: "pem",
    }) as string;
    const keys = await TokenKeys.fromPem(privatePem, publicPem);
    const access = [{ type: "repository" as const, name: "priv/app", actions: ["pull" as const] }];
    const base = {
      issuer: "meridian",
      service: "meridian",
      subject: "dev",
      kind: "user" as const,
      access,
      ttlSeconds: 60,
      cred: credentialFingerprint((await node.registry.view.identity.user("dev"))!.passwordHash),
    };
    const good = (await keys.issue(base)).token;
    const expired = (await keys.issue({ ...base, now: Date.now() - 3_600_000 })).token;
    const [h, p, s] = good.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    claims.access[0].actions = ["pull", "push", "delete"];
    const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
    const foreign = (await (await TokenKeys.generate()).keys.issue(base)).token;
    const otherService = (await keys.issue({ ...base, service: "someone-else" })).token;
    assert.equal(
      (await new OciClient(node.url, `Bearer ${good}`).fetch("/v2/priv/app/manifests/v1")).status,
      200,
    );
    for (const [name, t] of Object.entries({ expired, tampered, foreign, otherService })) {
      const res = await new OciClient(node.url, `Bearer ${t}`).fetch("/v2/priv/app/manifests/v1");
      assert.equal(res.status, 401, name);
      assert.equal(await errorCode(res), "UNAUTHORIZED", name);
    }
  });

  test("a redirect's _token query parameter (fetch on miss) works for reads only", async () => {
    const t = await token(["repository:priv/app:pull,push"], basic("dev"));
    const anon = as(undefined);
    assert.equal((await anon.fetch(`/v2/priv/app/manifests/v1?_token=${t}`)).status, 200);
    assert.equal((await anon.fetch(`/v2/priv/app/manifests/v1?_token=garbage`)).status, 401);
    const post = await anon.fetch(`/v2/priv/app/blobs/uploads/?_token=${t}`, { method: "POST" });
    assert.equal(post.status, 401, "never for a write");
  });

  test("the token endpoint refuses bad credentials, another service and malformed scopes", async () => {
    const res = await fetch(`${node.url}/auth/token?service=meridian`, {
      headers: { authorization: basic("dev", "nope") },
    });
    assert.equal(res.status, 401);
    const other = await fetch(`${node.url}/auth/token?service=elsewhere`, {
      headers: { authorization: basic("dev") },
    });
    assert.equal(other.status, 400);
    const malformed = await fetch(`${node.url}/auth/token?service=meridian&scope=repository::pull`, {
      headers: { authorization: basic("dev") },
    });
    assert.equal(malformed.status, 400);
    const anon = JSON.parse(
      Buffer.from(
        (await token(["repository:priv/app:pull", "repository:pub/app:pull,push"])).split(".")[1]!,
        "base64url",
      ).toString(),
    );
    assert.equal(anon.kind, "anonymous");
    assert.deepEqual(anon.access, [
      { type: "repository", name: "priv/app", actions: [] },
      { type: "repository", name: "pub/app", actions: ["pull"] },
    ]);
  });

  test("the OAuth2 password grant (POST) works like GET", async () => {
    const res = await fetch(`${node.url}/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "password",
        username: "dev",
        password: PASSWORD,
        service: "meridian",
        scope: "repository:priv/app:pull",
      }).toString(),
    });
    const body = await ok(res);
    const pull = await new OciClient(node.url, `Bearer ${body.token}`).fetch("/v2/priv/app/manifests/v1");
    assert.equal(pull.status, 200);
    const refresh = await fetch(`${node.url}/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=refresh_token&refresh_token=x",
    });
    assert.equal(refresh.status, 400);
  });

  test("a deleted user's token dies with the user", async () => {
    await ok(await adminCall("PUT", "/users/leaver", { password: PASSWORD }));
    await ok(await adminCall("PUT", "/projects/priv/members/leaver", { role: "guest" }));
    const t = await token(["repository:priv/app:pull"], basic("leaver"));
    const c = new OciClient(node.url, `Bearer ${t}`);
    assert.equal((await c.fetch("/v2/priv/app/manifests/v1")).status, 200);
    await ok(await adminCall("DELETE", "/users/leaver"));
    await sleep(1_100); // lookups are cached for a second
    assert.equal((await c.fetch("/v2/priv/app/manifests/v1")).status, 401);
    assert.equal((await as("leaver").fetch("/v2/")).status, 401);
  });
});

describe("robots", () => {
  test("a pull-only robot pulls and cannot push, with its secret or its token", async () => {
    const created = await ok(
      await adminCall("POST", "/robots", {
        name: "ci-pull",
        grants: [{ project: "priv", repositories: "**", actions: ["pull"] }],
        expiresInDays: 1,
      }),
      201,
    );
    assert.equal(created.name, "robot$ci-pull");
    const secret = created.secret as string;
    const robot = new OciClient(node.url, basic("robot$ci-pull", secret));
    assert.equal((await robot.fetch("/v2/priv/app/manifests/v1")).status, 200);
    const push = await robot.fetch("/v2/priv/app/blobs/uploads/", { method: "POST" });
    assert.equal(push.status, 403);
    assert.equal(await errorCode(push), "DENIED");
    const t = await token(["repository:priv/app:pull,push"], basic("robot$ci-pull", secret));
    const claims = JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString());
    assert.deepEqual(claims.access[0].actions, ["pull"]);
    assert.equal(claims.kind, "robot");
    const bearer = new OciClient(node.url, `Bearer ${t}`);
    assert.equal((await bearer.fetch("/v2/priv/app/manifests/v1")).status, 200);
    assert.equal((await bearer.fetch("/v2/priv/app/blobs/uploads/", { method: "POST" })).status, 403);
    // Its grant covers priv only.
    assert.equal((await robot.fetch("/v2/other/app/manifests/v1")).status, 403);
    // The admin API is not for robots.
    assert.equal((await adminCall("GET", "/users", undefined, robot)).status, 403);
    // The list shows it, never its secret.
    const list = JSON.stringify(await ok(await adminCall("GET", "/robots")));
    assert.match(list, /robot\$ci-pull/);
    assert.ok(!list.includes(secret));
  });

  test("an expired robot is refused, secret and token alike", async () => {
    const created = await ok(
      await adminCall("POST", "/robots", {
        name: "short",
        grants: [{ project: "priv", actions: ["pull"] }],
        expiresAt: new Date(Date.now() + 2_500).toISOString(),
      }),
      201,
    );
    const auth = basic("robot$short", created.secret as string);
    const t = await token(["repository:priv/app:pull"], auth);
    assert.equal((await new OciClient(node.url, auth).fetch("/v2/priv/app/manifests/v1")).status, 200);
    await sleep(2_600);
    assert.equal((await new OciClient(node.url, auth).fetch("/v2/priv/app/manifests/v1")).status, 401);
    assert.equal(
      (await new OciClient(node.url, `Bearer ${t}`).fetch("/v2/priv/app/manifests/v1")).status,
      401,
    );
  });

  test("a project admin makes robots for their project only", async () => {
    const padmin = as("padmin");
    await ok(
      await adminCall(
        "POST",
        "/robots",
        { name: "pub-push", grants: [{ project: "pub", actions: ["pull", "push"] }] },
        padmin,
      ),
      201,
    );
    const res = await adminCall(
      "POST",
      "/robots",
      { name: "sneaky", grants: [{ project: "other", actions: ["pull"] }] },
      padmin,
    );
    assert.equal(res.status, 403);
    const bad = await adminCall("POST", "/robots", {
      name: "Bad Name",
      grants: [{ project: "pub", actions: ["pull"] }],
    });
    assert.equal(bad.status, 400);
    const noGrants = await adminCall("POST", "/robots", { name: "empty", grants: [] });
    assert.equal(noGrants.status, 400);
  });
});

describe("identity administration", () => {
  test("only system admins administer; anonymous gets 401, others 403", async () => {
    assert.equal((await adminCall("GET", "/users", undefined, as(undefined))).status, 401);
    assert.equal((await adminCall("GET", "/users", undefined, as("dev"))).status, 403);
    assert.equal((await adminCall("GET", "/policies", undefined, as("dev"))).status, 403);
    assert.equal((await adminCall("PUT", "/projects/pub", { public: false }, as("padmin"))).status, 403);
    const who = await ok(await adminCall("GET", "/whoami", undefined, as("dev")));
    assert.deepEqual(who.roles, { pub: "developer", priv: "developer" });
  });

  test("a project admin manages their project's members, not another's", async () => {
    await ok(await adminCall("PUT", "/users/newbie", { password: PASSWORD }));
    await ok(await adminCall("PUT", "/projects/pub/members/newbie", { role: "guest" }, as("padmin")));
    assert.equal(
      (await adminCall("PUT", "/projects/other/members/newbie", { role: "guest" }, as("padmin"))).status,
      403,
    );
    assert.equal((await adminCall("PUT", "/projects/pub/members/newbie", { role: "owner" })).status, 400);
    assert.equal((await adminCall("PUT", "/projects/pub/members/ghost", { role: "guest" })).status, 400);
  });

  test("users change their own password, not their rights; the last admin stays", async () => {
    await ok(await adminCall("PUT", "/users/selfie", { password: PASSWORD }));
    const selfie = as("selfie");
    const change = { password: "a brand new password" };
    assert.equal((await adminCall("PUT", "/users/selfie", change, selfie)).status, 403, "needs oldPassword");
    await ok(await adminCall("PUT", "/users/selfie", { ...change, oldPassword: PASSWORD }, selfie));
    assert.equal((await as("selfie").fetch("/v2/")).status, 401, "the old password no longer works");
    assert.equal((await as("selfie", "a brand new password").fetch("/v2/")).status, 200);
    const escalate = await adminCall(
      "PUT",
      "/users/selfie",
      { systemAdmin: true },
      as("selfie", "a brand new password"),
    );
    assert.equal(escalate.status, 403);
    assert.equal(
      (await adminCall("PUT", "/users/dev", { password: "hijacked!!" }, as("selfie", "a brand new password")))
        .status,
      403,
    );
    assert.equal((await adminCall("PUT", "/users/selfie", { password: "short" })).status, 400);
    assert.equal((await adminCall("DELETE", "/users/admin")).status, 403);
  });

  test("passwords are stored as scrypt hashes, never in clear", async () => {
    const users = JSON.stringify(await ok(await adminCall("GET", "/users")));
    assert.ok(!users.includes(PASSWORD) && !users.includes("passwordHash"));
    const hash = (await node.registry.view.identity.user("dev"))?.passwordHash ?? "";
    assert.match(hash, /^scrypt\$15\$8\$1\$/);
    assert.ok(!hash.includes(PASSWORD));
  });
});

describe("failed logins", () => {
  test("past the limit a user is refused (429, Retry-After) even with the right password", async () => {
    const limited = await startTestNode(cleanup, {
      nats: natsUrl,
      region: "limits",
      auth: { enabled: true, adminPasswordFile: join(dataDir, "admin-password"), loginFailures: 3 },
    });
    const c = (password: string) => new OciClient(limited.url, basic("admin", password));
    for (let i = 0; i < 3; i++) assert.equal((await c("guess-number-" + i).fetch("/v2/")).status, 401);
    const blocked = await c(ADMIN_PASSWORD).fetch("/v2/");
    assert.equal(blocked.status, 429);
    assert.equal(await errorCode(blocked), "TOOMANYREQUESTS");
    const wait = Number(blocked.headers.get("retry-after"));
    assert.ok(wait > 0 && wait <= 60, `retry-after ${wait}`);
    const viaToken = await fetch(`${limited.url}/auth/token?service=meridian`, {
      headers: { authorization: basic("admin", ADMIN_PASSWORD) },
    });
    assert.equal(viaToken.status, 429);
  });
});

describe("real clients with credentials", () => {
  test("podman logs in (and fails with a wrong password), pushes, and pulls with --creds", async () => {
    const work = tempDir(cleanup);
    const host = node.url.replace(/^http:\/\//, "");
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(work, "auth.json") };
    // Root, no engine: vfs storage in a directory of its own (DESIGN.md "Real components").
    const podman = (args: string[]) =>
      run(
        "podman",
        ["--storage-driver", "vfs", "--root", join(work, "root"), "--runroot", join(work, "run"), ...args],
        {
          env,
        },
      );
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(work, "rootfs"));
    writeFileSync(join(work, "rootfs", "hello.txt"), "hello from podman");
    await run("tar", ["-C", join(work, "rootfs"), "-cf", join(work, "rootfs.tar"), "."]);
    await podman(["import", join(work, "rootfs.tar"), "localhost/hello:v1"]);
    await assert.rejects(
      podman(["login", "--tls-verify=false", "-u", "dev", "-p", "wrong password", host]),
      /invalid username\/password|unauthorized/i,
    );
    await podman(["login", "--tls-verify=false", "-u", "dev", "-p", PASSWORD, host]);
    await podman(["push", "--tls-verify=false", "localhost/hello:v1", `${host}/priv/podman:v1`]);
    assert.equal((await admin().fetch("/v2/priv/podman/manifests/v1", { method: "HEAD" })).status, 200);
    await podman(["logout", host]);
    await podman(["rmi", "-a", "-f"]);
    await assert.rejects(
      podman(["pull", "--tls-verify=false", `${host}/priv/podman:v1`]),
      /unauthorized|authentication required/i,
    );
    await podman(["pull", "--tls-verify=false", "--creds", `guest:${PASSWORD}`, `${host}/priv/podman:v1`]);
    await assert.rejects(
      podman([
        "push",
        "--tls-verify=false",
        "--creds",
        `guest:${PASSWORD}`,
        `${host}/priv/podman:v1`,
        `${host}/priv/podman:v2`,
      ]),
      /denied|unauthorized|403/i,
    );
  });

  test("logs in, copies into a private project and back, and is refused without credentials", async () => {
    const work = tempDir(cleanup);
    const layout = join(work, "layout");
    const digest = writeImageLayout(layout, "v1", [30_000]);

    const host = node.url.replace(/^http:\/\//, "");
    const authFile = join(work, "auth.json");
    const env = { ...process.env, REGISTRY_AUTH_FILE: authFile };
    await assert.rejects(
      run("skopeo", ["login", "--tls-verify=false", "-u", "dev", "-p", "wrong password", host], { env }),
      /unauthorized|invalid username\/password|401/i,
    );
    await run("skopeo", ["login", "--tls-verify=false", "-u", "dev", "-p", PASSWORD, host], { env });
    await run(
      "skopeo",
      ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${host}/priv/sk:v1`],
      { env },
    );
    const inspect = await run(
      "skopeo",
      ["inspect", "--raw", "--tls-verify=false", `docker://${host}/priv/sk:v1`],
      { env },
    );
    assert.equal(sha256(Buffer.from(inspect.stdout)), digest);
    // --creds without a login, out to a directory.
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `guest:${PASSWORD}`,
      `docker://${host}/priv/sk:v1`,
      `dir:${join(work, "out")}`,
    ]);
    assert.equal(sha256(await readFile(join(work, "out", "manifest.json"))), digest);
    // No credentials: refused.
    await assert.rejects(
      run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${host}/priv/sk:v1`], {
        env: { ...process.env, REGISTRY_AUTH_FILE: join(work, "none.json") },
      }),
      /unauthorized|authentication required|401/i,
    );
    // A guest cannot push.
    await assert.rejects(
      run("skopeo", [
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        `guest:${PASSWORD}`,
        `oci:${layout}:v1`,
        `docker://${host}/priv/sk:v2`,
      ]),
      /denied|unauthorized|403/i,
    );
  });
});

describe("the audit log", () => {
  test("records pushes, pulls, deletes, logins (good and bad) and admin changes with actor, address and time", async () => {
    const started = new Date().toISOString();
    await ok(await adminCall("PUT", "/users/auditee", { password: PASSWORD }));
    await ok(await adminCall("PUT", "/projects/priv/members/auditee", { role: "maintainer" }));
    const c = as("auditee");
    await c.fetch("/v2/"); // the first password check: a login
    const config = await c.pushBlob("priv/app", Buffer.from('{"audited":true}'), OCI_CONFIG);
    const put = await c.pushManifest("priv/app", "audited", {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [],
    });
    assert.equal((await c.fetch("/v2/priv/app/manifests/audited")).status, 200);
    assert.equal((await c.fetch(`/v2/priv/app/manifests/audited`, { method: "DELETE" })).status, 202);
    assert.equal((await as("auditee", "not my password").fetch("/v2/")).status, 401);
    assert.equal((await as("guest").fetch("/v2/priv/app/blobs/uploads/", { method: "POST" })).status, 403);
    await ok(await adminCall("PUT", "/projects/audited", { public: true }));
    const records = async (query: string) => {
      const body = await ok(await adminCall("GET", `/audit?since=${encodeURIComponent(started)}&${query}`));
      assert.equal(body.region, "test");
      return body.records as Array<Record<string, unknown>>;
    };
    let mine: Array<Record<string, unknown>> = [];
    // Records are written in the background: wait until they are all there.
    for (let i = 0; i < 50 && mine.filter((r) => r.action !== "login").length < 4; i++) {
      mine = await records("actor=auditee");
      await sleep(100);
    }
    const summary = mine.map((r) => `${r.action} ${r.repo ?? ""}:${r.reference ?? ""} ${r.status}`);
    assert.deepEqual(summary, [
      "login : 200",
      "push priv/app:audited 201",
      "pull priv/app:audited 200",
      "delete priv/app:audited 202",
      "login.failed : 401",
    ]);
    for (const r of mine) {
      assert.equal(r.kind, "user");
      assert.equal(r.address, "127.0.0.1");
      assert.ok(Date.parse(r.at as string) >= Date.parse(started));
    }
    assert.equal(put.response.status, 201);
    const admins = await records("actor=admin&action=admin");
    assert.ok(
      admins.some((r) => r.detail === "PUT /admin/v1/projects/audited {public=true}" && r.status === 200),
      JSON.stringify(admins),
    );
    // A denied attempt is recorded too, with its status... but only artifact-level actions are (an upload start is not).
    const guest = await records("actor=guest");
    assert.ok(!guest.some((r) => r.action === "push"));
    // X-Forwarded-For from a client that is not a trusted proxy (none is configured) is not believed.
    const proxied = await as("auditee", "guessing").fetch("/v2/", {
      headers: { "x-forwarded-for": "203.0.113.9" },
    });
    assert.equal(proxied.status, 401);
    let fromProxy: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 50 && fromProxy.length < 2; i++) {
      fromProxy = await records("actor=auditee&action=login.failed");
      await sleep(100);
    }
    assert.deepEqual(
      fromProxy.map((r) => r.address),
      ["127.0.0.1", "127.0.0.1"],
    );
    // Only system admins read the audit log.
    assert.equal((await adminCall("GET", "/audit", undefined, as("dev"))).status, 403);
    assert.equal((await adminCall("GET", "/audit?since=yesterday")).status, 400);
  });

  test("an admin change's record says what changed (resource and key fields), never a secret", async () => {
    const started = new Date().toISOString();
    await ok(await adminCall("PUT", "/rules", { scope: "priv/", tagMerge: "first-write" }));
    await ok(await adminCall("PUT", "/users/summarized", { password: "summary-password-1" }));
    await ok(
      await adminCall("POST", "/robots", {
        name: "summarized",
        grants: [{ project: "priv", repositories: "app/**", actions: ["pull", "push"] }],
        expiresInDays: 1,
      }),
      201,
    );
    // A body with an unknown key is refused (400, nothing created) and still recorded, secrets redacted.
    const refused = await adminCall("POST", "/robots", {
      name: "refused",
      grants: [{ project: "priv", actions: ["pull"] }],
      secret: "robot-secret-not-for-logs",
    });
    assert.equal(refused.status, 400);
    let details: string[] = [];
    for (let i = 0; i < 50 && details.length < 4; i++) {
      const body = await ok(
        await adminCall("GET", `/audit?since=${encodeURIComponent(started)}&action=admin`),
      );
      details = (body.records as Array<{ detail: string }>).map((r) => r.detail);
      if (details.length < 4) await sleep(100);
    }
    const find = (prefix: string) => details.find((d) => d.startsWith(prefix)) ?? "";
    assert.equal(find("PUT /admin/v1/rules"), "PUT /admin/v1/rules {scope=priv/ tagMerge=first-write}");
    assert.equal(
      find("PUT /admin/v1/users/summarized"),
      "PUT /admin/v1/users/summarized {password=<redacted>}",
    );
    const robot = find("POST /admin/v1/robots {name=summarized");
    assert.match(robot, /project=priv repositories=app\/\*\* actions=\[pull, push\]/);
    assert.match(find("POST /admin/v1/robots {name=refused"), /secret=<redacted>/);
    for (const d of details) {
      assert.doesNotMatch(d, /summary-password-1|robot-secret-not-for-logs/);
      assert.ok(d.length <= 512, d);
    }
  });
});
