/**
 * LDAP sign-in (issue 18) against a real slapd (testing/ldap.ts) and a real
 * node with auth on: directory groups mapped to roles in the authorization
 * matrix (admin group → system admin, dev group → developer of `team`,
 * readers → guest, no group → public projects only), with Basic
 * credentials and with tokens from /auth/token; wrong, empty and unknown
 * credentials; filter injection; a local user shadowing a directory user;
 * podman and skopeo logging in as directory users; their tokens honoured by
 * another node that has no directory configured; directory admins' admin
 * changes and operators' reads; and the settings' validation listing every
 * problem.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { Action } from "../../protocol/access.js";
import { cleanupStack, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import { startTestLdap, type TestDirectory } from "../../testing/ldap.js";
import { errorCode, OCI_CONFIG, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";
import { ConfigError, loadNodeConfig } from "../config.js";
import type { RunningNode } from "../server.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "local admin pw";
const pw = (uid: string) => `${uid}'s directory password`;
let node: RunningNode;
let directory: TestDirectory;
let natsUrl: string;
let dataDir: string;

const basic = (user: string, password = pw(user)) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const as = (authorization: string | undefined) => new OciClient(node.url, authorization);
const admin = () => as(basic("admin", ADMIN_PASSWORD));

async function tokenAnswer(scopes: string[], authorization?: string): Promise<Response> {
  const q = new URLSearchParams({ service: "meridian" });
  for (const s of scopes) q.append("scope", s);
  return fetch(`${node.url}/auth/token?${q}`, {
    headers: authorization === undefined ? {} : { authorization },
    signal: AbortSignal.timeout(20_000),
  });
}

async function token(scopes: string[], authorization: string): Promise<string> {
  const res = await tokenAnswer(scopes, authorization);
  const body = (await res.json()) as { token: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.token;
}

const claimsOf = (jwt: string) =>
  JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;

async function seed(repo: string, tag: string): Promise<void> {
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
}

before(async () => {
  directory = await startTestLdap(cleanup, [
    { uid: "alice", password: pw("alice"), groups: ["admins"] },
    { uid: "dave", password: pw("dave"), groups: ["devs"] },
    { uid: "rita", password: pw("rita"), groups: ["readers"] },
    { uid: "otto", password: pw("otto") },
    { uid: "lee", password: pw("lee"), groups: ["admins"] },
    { uid: "opal", password: pw("opal"), groups: ["ops", "readers"] },
  ]);
  const nats = await startTestNats(cleanup);
  natsUrl = nats.url;
  dataDir = tempDir(cleanup);
  const passwordFile = join(dataDir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
  node = await startTestNode(cleanup, {
    nats: nats.url,
    dataDir,
    auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures: 1000 },
    ldap: {
      url: directory.url,
      bindDN: directory.bindDN,
      bindPasswordFile: directory.bindPasswordFile,
      userBase: directory.userBase,
      groups: {
        admins: "admin",
        "cn=devs,ou=groups,dc=example,dc=org": "team:developer",
        readers: "team:guest",
        ops: "operator",
      },
    },
  });
  for (const [project, pub] of [
    ["team", false],
    ["pub", true],
  ] as const) {
    const res = await admin().fetch(`/admin/v1/projects/${project}`, {
      method: "PUT",
      body: JSON.stringify({ public: pub }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(res.status, 200, await res.text());
  }
  // A local user named like a directory user: the local one is who signs in.
  const lee = await admin().fetch("/admin/v1/users/lee", {
    method: "PUT",
    body: JSON.stringify({ password: "lee's local password" }),
    headers: { "content-type": "application/json" },
  });
  assert.equal(lee.status, 200, await lee.text());
  await seed("team/app", "v1");
  await seed("pub/app", "v1");
});

describe("directory groups in the authorization matrix", () => {
  type Who = "alice" | "dave" | "rita" | "otto";
  const allowed: Record<Who, Record<"pub" | "team", Action[]>> = {
    alice: { pub: ["pull", "push", "delete"], team: ["pull", "push", "delete"] }, // admins → system admin
    dave: { pub: ["pull"], team: ["pull", "push"] }, // devs → developer of team
    rita: { pub: ["pull"], team: ["pull"] }, // readers → guest of team
    otto: { pub: ["pull"], team: [] }, // no mapped group
  };

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
      for (const project of ["pub", "team"] as const)
        test(`${via}: directory user ${who} in ${project} may ${allowed[who][project].join(", ") || "nothing"}`, async () => {
          const tag = `del-${via}-${who}`;
          await seed(`${project}/app`, tag);
          const client =
            via === "basic"
              ? as(basic(who))
              : as(`Bearer ${await token([`repository:${project}/app:pull,push,delete`], basic(who))}`);
          const got: Action[] = [];
          for (const action of ["pull", "push", "delete"] as const)
            if (await attempt(client, action, project, tag)) got.push(action);
          assert.deepEqual(got, allowed[who][project]);
        });

  test("a directory user's token carries its groups' grant and no credential fingerprint", async () => {
    const claims = claimsOf(await token(["repository:team/app:pull,push"], basic("dave")));
    assert.equal(claims.sub, "dave");
    assert.equal(claims.kind, "user");
    assert.deepEqual(claims.dir, { systemAdmin: false, operator: false, roles: { team: "developer" } });
    assert.equal(claims.cred, undefined);
    assert.deepEqual(claims.access, [{ type: "repository", name: "team/app", actions: ["pull", "push"] }]);
  });

  test("an administrator's revocation ends a directory user's live tokens (no local record needed)", async () => {
    const live = await token(["repository:team/app:pull"], basic("rita"));
    assert.equal((await as(`Bearer ${live}`).fetch("/v2/team/app/tags/list")).status, 200);
    const revoke = await admin().fetch("/admin/v1/users/rita/revoke-tokens", { method: "POST" });
    assert.equal(revoke.status, 200, await revoke.clone().text());
    let status = 0;
    for (let i = 0; i < 50 && status !== 401; i++) {
      status = (await as(`Bearer ${live}`).fetch("/v2/team/app/tags/list")).status;
      if (status !== 401) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 401, "the revoked token is refused within seconds");
    // Tokens carry whole seconds: one issued after the revocation's second works again.
    await new Promise((r) => setTimeout(r, 1_100));
    const fresh = await token(["repository:team/app:pull"], basic("rita"));
    assert.equal((await as(`Bearer ${fresh}`).fetch("/v2/team/app/tags/list")).status, 200);
  });

  test("the admin group is a system admin on the admin API; others are refused", async () => {
    assert.equal((await as(basic("alice")).fetch("/admin/v1/users")).status, 200);
    const adminToken = await token(["registry:admin:*"], basic("alice"));
    assert.equal((await as(`Bearer ${adminToken}`).fetch("/admin/v1/users")).status, 200);
    const dave = await as(basic("dave")).fetch("/admin/v1/users");
    assert.equal(dave.status, 403);
    assert.equal(await errorCode(dave), "DENIED");
  });

  test("the operator group reads the admin API and writes nothing", async () => {
    const opal = as(basic("opal"));
    assert.equal((await opal.fetch("/admin/v1/users")).status, 200);
    const whoami = (await (await opal.fetch("/admin/v1/whoami")).json()) as Record<string, unknown>;
    assert.deepEqual(whoami, {
      name: "opal",
      kind: "user",
      systemAdmin: false,
      operator: true,
      roles: { team: "guest" },
    });
    const put = await opal.fetch("/admin/v1/projects/by-opal", {
      method: "PUT",
      body: JSON.stringify({ public: true }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(put.status, 403);
    assert.equal(await errorCode(put), "DENIED");
  });
});

describe("tokens of directory users elsewhere", () => {
  test("another node of the region, without any directory configured, honours them by their roles", async () => {
    const other = await startTestNode(cleanup, {
      nats: natsUrl,
      storage: { root: join(dataDir, "store") },
      auth: { enabled: true, tokenKeyFile: join(dataDir, "token-key.pem") },
    });
    const scope = ["repository:team/app:pull,push"];
    const dave = new OciClient(other.url, `Bearer ${await token(scope, basic("dave"))}`);
    const rita = new OciClient(other.url, `Bearer ${await token(scope, basic("rita"))}`);
    assert.equal((await dave.fetch("/v2/team/app/manifests/v1")).status, 200);
    assert.equal((await dave.fetch("/v2/team/app/blobs/uploads/", { method: "POST" })).status, 202);
    assert.equal((await rita.fetch("/v2/team/app/manifests/v1")).status, 200);
    const push = await rita.fetch("/v2/team/app/blobs/uploads/", { method: "POST" });
    assert.ok([401, 403].includes(push.status), `guest push: ${push.status}`);
    // Credentials need the directory, which this node does not know: a password is refused there.
    assert.equal((await new OciClient(other.url, basic("dave")).fetch("/v2/")).status, 401);
  });
});

describe("directory admins administer", () => {
  test("the admin group's member makes admin changes (an event the view accepts)", async () => {
    const put = await as(basic("alice")).fetch("/admin/v1/projects/made-by-alice", {
      method: "PUT",
      body: JSON.stringify({ public: true }),
      headers: { "content-type": "application/json" },
      signal: AbortSignal.timeout(20_000),
    });
    assert.equal(put.status, 200, await put.text());
    const list = await admin().fetch("/admin/v1/projects");
    assert.match(await list.text(), /made-by-alice/);
  });
});

describe("refusals", () => {
  test("a wrong password is 401 with the challenge, on Basic and at /auth/token", async () => {
    const res = await as(basic("dave", "not dave's password")).fetch("/v2/team/app/manifests/v1");
    assert.equal(res.status, 401);
    assert.equal(await errorCode(res), "UNAUTHORIZED");
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm=/);
    const t = await tokenAnswer(["repository:team/app:pull"], basic("dave", "not dave's password"));
    assert.equal(t.status, 401);
    assert.equal(await errorCode(t), "UNAUTHORIZED");
  });

  test("an unknown user and an empty password are 401 (no anonymous bind)", async () => {
    assert.equal((await as(basic("nobody", "whatever")).fetch("/v2/")).status, 401);
    assert.equal((await as(basic("dave", "")).fetch("/v2/")).status, 401);
    const form = await fetch(`${node.url}/auth/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "password",
        username: "dave",
        password: "",
        service: "meridian",
      }),
    });
    assert.equal(form.status, 401);
    // The same with the right password signs in: the refusal was the empty password's.
    const good = await fetch(`${node.url}/auth/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "password",
        username: "dave",
        password: pw("dave"),
        service: "meridian",
      }),
    });
    assert.equal(good.status, 200);
  });

  test("filter injection in the user name matches nobody: 401 even with a real user's password", async () => {
    // Unescaped, `dave)(uid=*` would make the filter (&(…)(uid=dave)(uid=*)) and find dave.
    for (const name of ["dave)(uid=*", "*)(uid=*", "*", "d*", "dave)(|(uid=*"]) {
      const res = await as(basic(name, pw("dave"))).fetch("/v2/team/app/manifests/v1");
      assert.equal(res.status, 401, name);
      assert.equal(await errorCode(res), "UNAUTHORIZED");
      const t = await tokenAnswer(["repository:team/app:pull"], basic(name, pw("dave")));
      assert.equal(t.status, 401, name);
    }
    // The real name with the same password is fine, so the refusals were the names'.
    assert.equal((await as(basic("dave")).fetch("/v2/team/app/manifests/v1")).status, 200);
  });

  test("a local user comes before a directory user of the same name", async () => {
    // lee is in the directory's admins group, but the local lee (no role) is who signs in.
    assert.equal((await as(basic("lee")).fetch("/v2/")).status, 401);
    const local = basic("lee", "lee's local password");
    assert.equal((await as(local).fetch("/v2/")).status, 200);
    assert.equal((await as(local).fetch("/v2/team/app/manifests/v1")).status, 403);
    assert.equal(claimsOf(await token([], local)).dir, undefined);
    // Directories compare names without case; Meridian does not send other cases there, so LEE is not
    // the directory's lee either (and Dave is nobody: directory names are typed in lower case).
    assert.equal((await as(basic("LEE", pw("lee"))).fetch("/v2/")).status, 401);
    assert.equal((await as(basic("Dave", pw("dave"))).fetch("/v2/")).status, 401);
  });
});

describe("real clients as directory users", () => {
  test("podman logs in as a developer, pushes and pulls; a guest pulls but cannot push", async () => {
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
    writeFileSync(join(work, "rootfs", "hello.txt"), "hello from a directory user");
    await run("tar", ["-C", join(work, "rootfs"), "-cf", join(work, "rootfs.tar"), "."]);
    await podman(["import", join(work, "rootfs.tar"), "localhost/hello:v1"]);
    await assert.rejects(
      podman(["login", "--tls-verify=false", "-u", "dave", "-p", "wrong password", host]),
      /invalid username\/password|unauthorized/i,
    );
    await podman(["login", "--tls-verify=false", "-u", "dave", "-p", pw("dave"), host]);
    await podman(["push", "--tls-verify=false", "localhost/hello:v1", `${host}/team/podman:v1`]);
    assert.equal((await admin().fetch("/v2/team/podman/manifests/v1", { method: "HEAD" })).status, 200);
    await podman(["logout", host]);
    await podman(["rmi", "-a", "-f"]);
    await podman(["pull", "--tls-verify=false", "--creds", `rita:${pw("rita")}`, `${host}/team/podman:v1`]);
    await assert.rejects(
      podman([
        "push",
        "--tls-verify=false",
        "--creds",
        `rita:${pw("rita")}`,
        `${host}/team/podman:v1`,
        `${host}/team/podman:v2`,
      ]),
      /denied|unauthorized|403/i,
    );
    await assert.rejects(
      podman(["pull", "--tls-verify=false", "--creds", `otto:${pw("otto")}`, `${host}/team/podman:v1`]),
      /denied|unauthorized|403|authentication required/i,
    );
  });

  test("skopeo logs in as a developer and copies in; a guest copies out but not in", async () => {
    const work = tempDir(cleanup);
    const layout = join(work, "layout");
    writeImageLayout(layout, "v1", [20_000]);
    const host = node.url.replace(/^http:\/\//, "");
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(work, "auth.json") };
    await assert.rejects(
      run("skopeo", ["login", "--tls-verify=false", "-u", "dave", "-p", "wrong password", host], { env }),
      /unauthorized|invalid username\/password|401/i,
    );
    await run("skopeo", ["login", "--tls-verify=false", "-u", "dave", "-p", pw("dave"), host], { env });
    await run(
      "skopeo",
      ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${host}/team/sk:v1`],
      {
        env,
        timeout: 60_000,
      },
    );
    await run("skopeo", [
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `rita:${pw("rita")}`,
      `docker://${host}/team/sk:v1`,
      `dir:${join(work, "out")}`,
    ]);
    await assert.rejects(
      run("skopeo", [
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        `rita:${pw("rita")}`,
        `oci:${layout}:v1`,
        `docker://${host}/team/sk:v2`,
      ]),
      /denied|unauthorized|403/i,
    );
  });
});

describe("settings", () => {
  test("every problem of the ldap settings is listed at once", () => {
    const dir = tempDir(cleanup);
    let caught: unknown;
    try {
      loadNodeConfig({
        overrides: {
          dataDir: dir,
          auth: { enabled: true },
          ldap: {
            url: "http://directory.example",
            startTLS: true,
            bindDN: "cn=svc,dc=example,dc=org",
            caFile: join(dir, "missing-ca.pem"),
            userFilter: "(uid=nobody",
            groupBase: "ou=groups,dc=example,dc=org",
            groupFilter: "(objectClass=groupOfNames)",
            groups: { devs: "team:owner", ops: "" },
          },
        },
      });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ConfigError, String(caught));
    const text = caught.message;
    for (const expected of [
      'ldap.url "http://directory.example": want ldap://host[:port] or ldaps://host[:port]',
      "ldap: bindDN and bindPasswordFile go together",
      "ldap.caFile",
      "ldap.userBase: required with ldap.url",
      "ldap.userFilter: must contain {username}",
      "ldap.userFilter: not a parenthesized LDAP filter",
      "ldap.groupFilter: must contain {dn} or {username}",
      'ldap.groups "devs": "owner" is not a role',
      'ldap.groups "ops": grants nothing',
    ])
      assert.ok(text.includes(expected), `missing "${expected}" in: ${text}`);
  });

  test("ldap settings without a url, or a directory without auth, are refused", () => {
    const dir = tempDir(cleanup);
    assert.throws(
      () =>
        loadNodeConfig({
          overrides: { dataDir: dir, ldap: { userBase: "ou=people", groups: { a: "admin" } } },
        }),
      /ldap: userBase, groups set without ldap\.url/,
    );
    assert.throws(
      () =>
        loadNodeConfig({
          overrides: { dataDir: dir, ldap: { url: "ldap://127.0.0.1:1", userBase: "ou=p" } },
        }),
      /directory sign-in needs auth\.enabled/,
    );
    assert.throws(
      () =>
        loadNodeConfig({
          overrides: {
            dataDir: dir,
            auth: { enabled: true },
            ldap: { url: "ldaps://h", startTLS: true, userBase: "ou=p" },
          },
        }),
      /ldap\.startTLS: an ldaps:\/\/ connection is already TLS/,
    );
  });
});
