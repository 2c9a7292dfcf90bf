/**
 * LDAP sign-in when the directory is away or slow, and over TLS (issue 18),
 * against a real slapd (testing/ldap.ts): the cache of successful sign-ins
 * (a second login with the directory stopped works, a wrong password is
 * never taken from it), new logins 503 UNAVAILABLE with Retry-After while
 * issued tokens keep working, a SIGSTOPped directory answered 503 within
 * the configured bounds, the login limiter counting directory failures, and
 * LDAPS and StartTLS with the test CA (and refused without it).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanupStack, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import { startTestLdap, type TestDirectory } from "../../testing/ldap.js";
import { errorCode, OCI_CONFIG, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import type { NodeConfigInput } from "../config.js";
import type { RunningNode } from "../server.js";

const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "local admin pw";
const pw = (uid: string) => `${uid}'s directory password`;
let natsUrl: string;
let directory: TestDirectory;
let node: RunningNode;

const basic = (user: string, password = pw(user)) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** GET /auth/token as `authorization`, bounded (a hung login fails the test rather than waiting). */
function tokenAnswer(url: string, authorization: string): Promise<Response> {
  return fetch(`${url}/auth/token?service=meridian&scope=repository:team/app:pull`, {
    headers: { authorization },
    signal: AbortSignal.timeout(15_000),
  });
}

async function token(url: string, authorization: string): Promise<string> {
  const res = await tokenAnswer(url, authorization);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return (JSON.parse(text) as { token: string }).token;
}

/** A 503 UNAVAILABLE with Retry-After, in the OCI error envelope. */
async function assertUnavailable(res: Response): Promise<void> {
  assert.equal(res.status, 503);
  assert.equal(await errorCode(res.clone()), "UNAVAILABLE");
  const retry = Number(res.headers.get("retry-after"));
  assert.ok(retry > 0 && retry <= 60, `retry-after ${res.headers.get("retry-after")}`);
  assert.match(((await res.json()) as { errors: { message: string }[] }).errors[0]!.message, /directory/);
}

/** A node signing in against `directory` with `ldap` settings over the defaults here. */
async function startNode(
  ldap: NonNullable<NodeConfigInput["ldap"]>,
  loginFailures = 1000,
): Promise<RunningNode> {
  const dataDir = tempDir(cleanup);
  const passwordFile = join(dataDir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
  return startTestNode(cleanup, {
    nats: natsUrl,
    dataDir,
    auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures },
    ldap: {
      bindDN: directory.bindDN,
      bindPasswordFile: directory.bindPasswordFile,
      userBase: directory.userBase,
      groups: { devs: "team:developer" },
      connectTimeoutMs: 500,
      timeoutMs: 1_000,
      ...ldap,
    },
  });
}

before(async () => {
  directory = await startTestLdap(cleanup, [
    { uid: "dave", password: pw("dave"), groups: ["devs"] },
    { uid: "rita", password: pw("rita"), groups: ["devs"] },
    { uid: "otto", password: pw("otto") },
    { uid: "gus", password: pw("gus") },
  ]);
  natsUrl = (await startTestNats(cleanup)).url;
  node = await startNode({ url: directory.url }, 3);
  const admin = new OciClient(node.url, basic("admin", ADMIN_PASSWORD));
  const config = await admin.pushBlob("team/app", Buffer.from('{"seed":1}'), OCI_CONFIG);
  const layer = await admin.pushBlob("team/app", Buffer.from("layer"));
  const put = await admin.pushManifest("team/app", "v1", {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
  });
  assert.equal(put.response.status, 201);
});

describe("directory away", () => {
  test("stopped: cached sign-ins and issued tokens work, new logins are 503 with Retry-After", async () => {
    const issued = await token(node.url, basic("dave"));
    const pull = (authorization: string) =>
      new OciClient(node.url, authorization).fetch("/v2/team/app/manifests/v1");
    assert.equal((await pull(basic("dave"))).status, 200);
    await directory.stop();
    try {
      // Within the cache's life: no round trip to the (stopped) directory.
      assert.equal((await tokenAnswer(node.url, basic("dave"))).status, 200);
      assert.equal((await pull(basic("dave"))).status, 200);
      // The token issued before the outage carries its roles: no directory needed.
      assert.equal((await pull(`Bearer ${issued}`)).status, 200);
      // Never logged in: the directory must answer, and cannot.
      await assertUnavailable(await tokenAnswer(node.url, basic("rita")));
      await assertUnavailable(await pull(basic("rita")));
      // A wrong password for a cached user is not taken from the cache.
      await assertUnavailable(await tokenAnswer(node.url, basic("dave", "a wrong password")));
      // Local users do not need the directory.
      assert.equal((await tokenAnswer(node.url, basic("admin", ADMIN_PASSWORD))).status, 200);
    } finally {
      await directory.start();
    }
    assert.equal((await tokenAnswer(node.url, basic("rita"))).status, 200);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    for (const outcome of ["cached", "ok", "unavailable"])
      assert.match(
        metrics,
        new RegExp(`meridian_ldap_signins_total\\{outcome="${outcome}"[^}]*\\} [1-9]`),
        outcome,
      );
  });

  test("SIGSTOPped: a new login is answered 503 within the timeouts, and works once it runs again", async () => {
    const issued = await token(node.url, basic("dave"));
    directory.pause();
    try {
      await assertUnavailable(await tokenAnswer(node.url, basic("otto")));
      assert.equal(
        (await new OciClient(node.url, `Bearer ${issued}`).fetch("/v2/team/app/manifests/v1")).status,
        200,
      );
    } finally {
      directory.resume();
    }
    assert.equal((await tokenAnswer(node.url, basic("otto"))).status, 200);
  });

  test("the login limiter counts directory failures; an outage is not counted as one", async () => {
    await directory.stop();
    try {
      for (let i = 0; i < 4; i++) await assertUnavailable(await tokenAnswer(node.url, basic("gus", "guess")));
    } finally {
      await directory.start();
    }
    // The outage's attempts were given back: three wrong guesses are still 401, the fourth 429.
    for (let i = 0; i < 3; i++)
      assert.equal((await tokenAnswer(node.url, basic("gus", `guess ${i}`))).status, 401);
    const limited = await tokenAnswer(node.url, basic("gus", "guess 3"));
    assert.equal(limited.status, 429);
    assert.equal(await errorCode(limited), "TOOMANYREQUESTS");
    assert.ok(Number(limited.headers.get("retry-after")) > 0);
    // Even the right password waits: the limiter refuses before the directory is asked.
    assert.equal((await tokenAnswer(node.url, basic("gus"))).status, 429);
  });

  test("without a cache (cacheSeconds 0) a stopped directory refuses even a user seen before", async () => {
    const uncached = await startNode({ url: directory.url, cacheSeconds: 0 });
    assert.equal((await tokenAnswer(uncached.url, basic("dave"))).status, 200);
    await directory.stop();
    try {
      await assertUnavailable(await tokenAnswer(uncached.url, basic("dave")));
    } finally {
      await directory.start();
    }
  });
});

describe("group changes", () => {
  test("take effect at the next sign-in once the cached one has expired", async () => {
    const cached = await startNode({ url: directory.url }); // 60 s
    const short = await startNode({ url: directory.url, cacheSeconds: 1 });
    const roles = async (url: string) => {
      const t = await token(url, basic("rita"));
      return (JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()) as { dir: { roles: object } })
        .dir.roles;
    };
    assert.deepEqual(await roles(cached.url), { team: "developer" });
    assert.deepEqual(await roles(short.url), { team: "developer" });
    const change = (op: "add" | "delete") =>
      directory.modify(
        `dn: cn=devs,ou=groups,dc=example,dc=org\nchangetype: modify\n${op}: member\nmember: uid=rita,ou=people,dc=example,dc=org\n`,
      );
    await change("delete");
    try {
      await new Promise((r) => setTimeout(r, 1_100));
      // The 60 s cache still answers with the sign-in it holds; the 1 s one asked the directory again.
      assert.deepEqual(await roles(cached.url), { team: "developer" });
      assert.deepEqual(await roles(short.url), {});
    } finally {
      await change("add");
    }
  });
});

describe("TLS to the directory", () => {
  test("LDAPS and StartTLS with the test CA sign in with the groups' roles", async () => {
    for (const ldap of [
      { url: directory.ldapsUrl, caFile: directory.caFile },
      { url: directory.url, startTLS: true, caFile: directory.caFile },
    ]) {
      const n = await startNode(ldap);
      const t = await token(n.url, basic("dave"));
      const claims = JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()) as { dir: unknown };
      assert.deepEqual(claims.dir, { systemAdmin: false, operator: false, roles: { team: "developer" } });
      assert.equal((await tokenAnswer(n.url, basic("dave", "wrong"))).status, 401, JSON.stringify(ldap));
    }
  });

  test("a directory certificate the node does not trust is 503, never a sign-in", async () => {
    for (const ldap of [{ url: directory.ldapsUrl }, { url: directory.url, startTLS: true }]) {
      const n = await startNode(ldap);
      await assertUnavailable(await tokenAnswer(n.url, basic("dave")));
    }
  });
});
