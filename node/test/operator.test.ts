/**
 * The read-only operator role (issue 16) against a real two-region mesh with
 * authentication (`meridian up --auth`): granted with the CLI, replicated to
 * the other region like every identity; an operator reads every admin route
 * (and none of them answers a secret), is refused every admin write with 403
 * DENIED saying operators are read-only, changing nothing; anonymous callers,
 * ordinary users and pull-scoped bearer tokens are refused the reads; an
 * admin-scoped token of an operator reads but does not write; revoking the
 * role takes the reads away.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let admin: string;
let digest: string;
const OPS_PASSWORD = "an operator's password";
const DEV_PASSWORD = "a developer's password";
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const ops = basic("ops", OPS_PASSWORD);
const dev = basic("dev", DEV_PASSWORD);
const registry = (region: string) => mesh.regions.get(region)!.registry;
const cli = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);

async function call(
  region: string,
  method: string,
  path: string,
  authorization: string | undefined,
  body?: unknown,
): Promise<{ status: number; text: string; code?: string; message?: string }> {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${registry(region)}/admin/v1${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let error: { code?: string; message?: string } | undefined;
  try {
    error = (JSON.parse(text) as { errors?: Array<{ code: string; message: string }> }).errors?.[0];
  } catch {
    // not JSON
  }
  return { status: res.status, text, ...(error ?? {}) };
}

/** Every admin read (a GET of each route; items that may not exist answer 404, never 401/403). */
const READS = () => [
  "/whoami",
  "/users",
  "/robots",
  "/projects",
  "/policies",
  "/policies/mirror",
  "/alerts",
  "/activity?limit=5",
  "/rules",
  "/immutability",
  "/quotas",
  "/quotas/apps",
  "/retention/rules",
  "/retention/plan",
  "/endpoints",
  "/endpoints/onprem",
  "/proxies",
  "/webhooks",
  "/gates",
  "/pull-policies",
  "/promotions/pr-000000000000000000000000",
  "/scrub/runs",
  "/gc/collected/sha256:0000000000000000000000000000000000000000000000000000000000000000",
  "/gc/runs/nope",
  "/audit?limit=20",
  "/repositories/apps/app/tags/v1/history",
  `/artifacts/apps/app@${digest}`,
  "/artifacts/apps/app:v1",
  `/verify/apps/app@${digest}`,
  "/oidc/users",
];

/** Every admin write, each with a body it would take from a system admin. */
const WRITES: Array<[string, string, unknown?]> = [
  [
    "POST",
    "/policies",
    { name: "p2", source: "a", destination: "b", repositories: ["apps/**"], trigger: "manual" },
  ],
  [
    "PUT",
    "/policies/mirror",
    { source: "a", destination: "b", repositories: ["apps/**"], trigger: "manual" },
  ],
  ["DELETE", "/policies/mirror"],
  ["POST", "/policies/mirror/run", {}],
  ["POST", "/policies/mirror/reset-breaker", {}],
  ["PUT", "/rules", { scope: "apps/", tagMerge: "lww" }],
  ["PUT", "/immutability/frozen", { repositories: "apps/*", tags: "v*" }],
  ["DELETE", "/immutability/frozen"],
  ["DELETE", "/repositories/apps/app"],
  ["POST", "/undelete", { repo: "apps/app" }],
  ["POST", "/failover", { from: "a", to: "b" }],
  ["POST", "/rebuild", {}],
  ["PUT", "/quotas/apps", { limitBytes: 1 }],
  ["PUT", "/retention/rules/keep", { repositories: "apps/*", keepLast: 1 }],
  ["DELETE", "/retention/rules/keep"],
  ["POST", "/retention/runs", {}],
  ["PUT", "/endpoints/onprem", { url: "https://onprem.example" }],
  ["DELETE", "/endpoints/onprem"],
  ["PUT", "/gates/destination:b", { signature: { keys: ["release"] } }],
  ["DELETE", "/gates/destination:b"],
  ["PUT", "/pull-policies/prod", { gates: { signature: { keys: ["release"] } } }],
  ["DELETE", "/pull-policies/prod"],
  ["POST", "/promotions", { source: "apps/app:v1", to: "b" }],
  ["PUT", "/proxies/hub", { endpoint: "onprem" }],
  ["DELETE", "/proxies/hub"],
  ["POST", "/scrub/runs", {}],
  ["POST", "/gc/runs", { dryRun: true }],
  ["PUT", "/users/dev", { systemAdmin: true }],
  ["PUT", "/users/ops", { systemAdmin: true }],
  ["PUT", "/users/ops", { operator: false }],
  ["DELETE", "/users/dev"],
  ["POST", "/robots", { name: "ci2", grants: [{ project: "apps", actions: ["pull"] }] }],
  ["DELETE", "/robots/robot$ci"],
  ["PUT", "/projects/apps", { public: true }],
  ["PUT", "/projects/apps/members/dev", { role: "projectAdmin" }],
  ["PUT", "/webhooks/hook", { url: "https://hooks.example/x", project: "apps" }],
  ["POST", "/webhooks/hook/replay", { from: 1 }],
  ["DELETE", "/webhooks/hook"],
  ["POST", "/oidc/users/dev/secret", {}],
  ["DELETE", "/oidc/users/dev/secret"],
];

/** Writes on routes for system admins only: their refusal says operators are read-only. */
const ADMIN_ONLY = (method: string, path: string) =>
  !(
    (method === "PUT" && path.startsWith("/users/")) ||
    path.startsWith("/robots") ||
    path.startsWith("/projects/apps/members") ||
    path.startsWith("/immutability/") ||
    path.startsWith("/webhooks/") ||
    path.startsWith("/oidc/")
  );

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
  admin = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
  digest = (await new OciClient(registry("a"), admin).pushRandomImage("apps/app", "v1")).digest;
  const dir = tempDir(cleanup);
  const opsFile = join(dir, "ops");
  writeFileSync(opsFile, `${OPS_PASSWORD}\n`);
  const add = await cli(["user", "add", "ops", "--operator", "--password-file", opsFile, "--region", "a"]);
  assert.equal(add.code, 0, add.stderr);
  assert.match(add.stdout, /user ops saved \(operator, read-only\)/);
  assert.equal((await call("a", "PUT", "/users/dev", admin, { password: DEV_PASSWORD })).status, 200);
  const robot = await call("a", "POST", "/robots", admin, {
    name: "ci",
    grants: [{ project: "apps", actions: ["pull"] }],
  });
  assert.equal(robot.status, 201, robot.text);
  assert.equal(
    (
      await call("a", "PUT", "/policies/mirror", admin, {
        source: "a",
        destination: "b",
        repositories: ["apps/**"],
        trigger: "manual",
      })
    ).status,
    200,
  );
});

describe("operator", () => {
  test("the role replicates: the operator reads in the other region too", async () => {
    await eventually(async () => (await call("b", "GET", "/policies", ops)).status === 200, 30_000, 200);
    const me = JSON.parse((await call("b", "GET", "/whoami", ops)).text) as Record<string, unknown>;
    assert.equal(me.operator, true);
    assert.equal(me.systemAdmin, false);
    const list = await cli(["user", "list", "--region", "b"]);
    assert.match(list.stdout, /^ops\s+yes\s/m);
  });

  test("an operator reads every admin route, and no answer holds a secret", async () => {
    for (const path of READS()) {
      const r = await call("a", "GET", path, ops);
      assert.ok(r.status === 200 || r.status === 404, `${path}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.doesNotMatch(r.text, /scrypt\$|passwordHash|secretHash|PRIVATE KEY|"secret"/, path);
      // A system admin reads the same routes the same way.
      assert.equal((await call("a", "GET", path, admin)).status, r.status, path);
    }
  });

  test("an operator's every admin write is 403 DENIED, and changes nothing", async () => {
    const before = (await call("a", "GET", "/policies", admin)).text;
    const users = (await call("a", "GET", "/users", admin)).text;
    for (const [method, path, body] of WRITES) {
      const r = await call("a", method, path, ops, body);
      assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.code, "DENIED", `${method} ${path}`);
      if (ADMIN_ONLY(method, path))
        assert.match(r.message ?? "", /operators are read-only/, `${method} ${path}`);
    }
    assert.equal((await call("a", "GET", "/policies", admin)).text, before);
    assert.equal((await call("a", "GET", "/users", admin)).text, users);
    const robots = (await call("a", "GET", "/robots", admin)).text;
    assert.ok(robots.includes("robot$ci") && !robots.includes("robot$ci2"), robots);
  });

  test("anonymous callers, ordinary users and pull-scoped tokens are refused the reads", async () => {
    for (const path of [
      "/policies",
      "/activity",
      `/artifacts/apps/app@${digest}`,
      "/users",
      `/verify/apps/app@${digest}`,
    ]) {
      const anonymous = await call("a", "GET", path, undefined);
      assert.equal(anonymous.status, 401, path);
      const user = await call("a", "GET", path, dev);
      assert.equal(user.status, 403, path);
      assert.equal(user.code, "DENIED", path);
    }
    const token = async (scope: string) => {
      const res = await fetch(
        `${registry("a")}/auth/token?service=meridian&scope=${encodeURIComponent(scope)}`,
        { headers: { authorization: ops } },
      );
      assert.equal(res.status, 200);
      return `Bearer ${((await res.json()) as { token: string }).token}`;
    };
    const pull = await call("a", "GET", "/policies", await token("repository:apps/app:pull"));
    assert.equal(pull.status, 401, "a pull token is not meant for the admin API");
    // An admin-scoped token of an operator carries the operator's rights: reads, no writes.
    const adminToken = await token("registry:admin:*");
    assert.equal((await call("a", "GET", "/activity", adminToken)).status, 200);
    const write = await call("a", "POST", "/gc/runs", adminToken, { dryRun: true });
    assert.equal(write.status, 403);
    assert.match(write.message ?? "", /operators are read-only/);
  });

  test("an operator keeps an ordinary user's rights: its own password, not its role", async () => {
    const self = await call("a", "PUT", "/users/ops", ops, { operator: true, systemAdmin: true });
    assert.equal(self.status, 403);
    const changed = await call("a", "PUT", "/users/ops", ops, {
      password: `${OPS_PASSWORD}!`,
      oldPassword: OPS_PASSWORD,
    });
    assert.equal(changed.status, 200, changed.text);
    assert.equal((JSON.parse(changed.text) as { operator: boolean }).operator, true, "the role stays");
    const again = basic("ops", `${OPS_PASSWORD}!`);
    assert.equal((await call("a", "GET", "/policies", again)).status, 200);
  });

  test("revoking the role (CLI) takes the reads away, in every region", async () => {
    const again = basic("ops", `${OPS_PASSWORD}!`);
    const off = await cli(["user", "operator", "ops", "off", "--region", "a"]);
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stdout, /no longer a read-only operator/);
    const r = await call("a", "GET", "/policies", again);
    assert.equal(r.status, 403);
    await eventually(async () => (await call("b", "GET", "/policies", again)).status === 403, 30_000, 200);
    assert.equal((await cli(["user", "operator", "ops", "maybe"])).code, 2);
  });
});
