/**
 * The admin API's request schemas (node/http/admin/schema.ts, issue 12):
 * a malformed body, an unknown or misspelt key, a wrong type or an unknown
 * query parameter is answered 400 UNSUPPORTED with a message naming the
 * field, before the handler runs, and changes nothing. Before the schemas,
 * the identity routes and the tag-history query silently ignored unknown
 * keys: a misspelt `sytemAdmin` created an ordinary user, a grant's
 * misspelt `repos` widened a robot to every repository. Against a real node
 * with authentication on (so identity routes run in full) and a real
 * nats-server; the access gate still answers before the schema (401 for
 * anonymous, whatever the body).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanupStack, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import type { RunningNode } from "../server.js";

const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "schema-admin-password";
const ADMIN = `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString("base64")}`;
let node: RunningNode;

before(async () => {
  const nats = await startTestNats(cleanup);
  const dataDir = tempDir(cleanup);
  const passwordFile = join(dataDir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
  node = await startTestNode(cleanup, {
    nats: nats.url,
    dataDir,
    auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures: 1000 },
  });
});

async function call(
  method: string,
  path: string,
  body?: unknown,
  options: { type?: string; authorization?: string | null } = {},
): Promise<Response> {
  const headers: Record<string, string> = {};
  if (options.authorization !== null) headers.authorization = options.authorization ?? ADMIN;
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    headers["content-type"] = options.type ?? "application/json";
  }
  return fetch(`${node.url}/admin/v1${path}`, init);
}

async function json(res: Response, status: number): Promise<Record<string, unknown>> {
  const text = await res.text();
  assert.equal(res.status, status, `${res.url}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** A 400 UNSUPPORTED whose message and listed errors name `field`; its errors. */
async function refused(res: Response, field: string | RegExp): Promise<string[]> {
  const body = (await json(res, 400)) as {
    errors: Array<{ code: string; message: string; detail?: { errors?: string[] } }>;
  };
  const e = body.errors[0]!;
  assert.equal(e.code, "UNSUPPORTED", e.message);
  const names = typeof field === "string" ? new RegExp(`\\b${field}\\b`) : field;
  assert.match(e.message, names);
  const errors = e.detail?.errors ?? [];
  assert.ok(
    errors.some((m) => names.test(m)),
    errors.join(" | "),
  );
  return errors;
}

async function userNames(): Promise<string[]> {
  const { users } = (await json(await call("GET", "/users"), 200)) as { users: Array<{ name: string }> };
  return users.map((u) => u.name);
}

describe("identity bodies", () => {
  test("a misspelt key is refused, naming it, and no user is created", async () => {
    const errors = await refused(
      await call("PUT", "/users/typo", { password: "a-long-password", sytemAdmin: true }),
      "sytemAdmin",
    );
    assert.deepEqual(errors, ["sytemAdmin: unknown key"]);
    assert.ok(!(await userNames()).includes("typo"));
  });

  test("a wrong type is refused naming the field; a body that is not JSON is refused", async () => {
    await refused(await call("PUT", "/users/typed", { password: 12345678 }), "password");
    await refused(await call("PUT", "/projects/typed", { public: "yes" }), "public");
    await refused(await call("PUT", "/projects/typed", "{not json"), /request body: not JSON/);
    await refused(await call("PUT", "/projects/typed", [true]), /request body: want an object/);
    assert.ok(!(await userNames()).includes("typed"));
    const { projects } = (await json(await call("GET", "/projects"), 200)) as {
      projects: Array<{ name: string }>;
    };
    assert.ok(!projects.some((p) => p.name === "typed"));
  });

  test("a grant's misspelt key is refused: no robot with a wider grant than asked", async () => {
    await json(await call("PUT", "/projects/robotic", { public: false }), 200);
    await refused(
      await call("POST", "/robots", {
        name: "wide",
        grants: [{ project: "robotic", repos: "app/*", actions: ["pull"] }],
      }),
      /grants\[0\]\.repos: unknown key/,
    );
    await refused(await call("POST", "/robots", { name: "wide", grants: "robotic" }), "grants");
    await refused(
      await call("POST", "/robots", { name: "wide", grants: [{ project: 7, actions: ["pull"] }] }),
      /grants\[0\]\.project/,
    );
    await refused(
      await call("POST", "/robots", {
        name: "wide",
        grants: [{ project: "robotic", actions: ["pull"] }],
        ttl: 3,
      }),
      "ttl",
    );
    const { robots } = (await json(await call("GET", "/robots"), 200)) as { robots: Array<{ name: string }> };
    assert.ok(!robots.some((r) => r.name === "robot$wide"));
    // The same request spelt right is taken.
    await json(
      await call("POST", "/robots", {
        name: "wide",
        grants: [{ project: "robotic", repositories: "app/*", actions: ["pull"] }],
      }),
      201,
    );
  });

  test("the access gate answers first: anonymous is 401 whatever the body", async () => {
    const res = await call("PUT", "/users/anon", { sytemAdmin: "no" }, { authorization: null });
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer /);
  });
});

describe("admin bodies and queries", () => {
  test("rules: unknown key, wrong type, YAML alike; every problem listed; nothing configured", async () => {
    const errors = await refused(
      await call("PUT", "/rules", { scope: "schema/", tagMerge: "lww", epoch: "3", hme: "a" }),
      "hme",
    );
    assert.equal(errors.length, 2, errors.join(" | "));
    assert.ok(
      errors.some((e) => /^epoch: want a non-negative integer, got "3"$/.test(e)),
      errors.join(" | "),
    );
    await refused(
      await call("PUT", "/rules", "scope: schema/\ntagMerge: lww\nextra: 1\n", { type: "application/yaml" }),
      "extra",
    );
    await refused(await call("PUT", "/rules", { scope: 7, tagMerge: "lww" }), "scope");
    const { rules } = (await json(await call("GET", "/rules"), 200)) as { rules: Array<{ scope: string }> };
    assert.ok(!rules.some((r) => r.scope === "schema/"));
  });

  test("failover and rebuild: wrong types and unknown keys name the field", async () => {
    await refused(await call("POST", "/failover", { from: "a", to: "b", force: "yes" }), "force");
    await refused(await call("POST", "/failover", { from: "a" }), /to: required/);
    await refused(await call("POST", "/rebuild", { region: "test", full: true }), "full");
    await refused(await call("POST", "/rebuild", { region: 3 }), "region");
    // A flood of unknown keys is listed shortly, not echoed back whole.
    const flood = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, i]));
    const errors = await refused(await call("POST", "/rebuild", flood), "k0");
    assert.ok(errors.length > 0 && errors.length <= 21, errors.join(" | "));
    assert.ok(errors.join("; ").length < 2048);
  });

  test("an unknown query parameter is refused, naming it", async () => {
    await refused(
      await call("GET", "/repositories/some/repo/tags/v1/history?when=1h"),
      /unknown parameter "when"/,
    );
    await refused(
      await call("GET", "/repositories/some/repo/tags/v1/history?at=1&at=2"),
      /parameter at: give it once/,
    );
    await refused(await call("GET", "/audit?actr=alice"), /unknown parameter "actr"/);
  });
});
