/**
 * Issue 11, finding 9: authentication used to be only a start flag. Real
 * node processes on one data directory:
 *   - a node started once with authentication (its view then holds the
 *     first admin, its data the token key) refuses to start without it: a
 *     clear message and exit 1, nothing listening;
 *   - with the explicit override (MERIDIAN_NO_AUTH=true) it starts, says so
 *     at warn, and the audit log records the unauthenticated start;
 *   - with authentication off, admin writes are accepted only from the
 *     configured socket addresses: by default loopback (127.0.0.1, ::1), so a
 *     client bound to 127.0.0.2 (also a loopback interface on Linux, but not
 *     in the list) is refused with 403 while its reads still work; and a list
 *     that leaves 127.0.0.1 out (MERIDIAN_ADMIN_WRITE_ADDRESSES) refuses
 *     127.0.0.1 too.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanupStack, freePort, spawnMeridian, startTestNats, tempDir } from "../../testing/harness.js";
import { ConfigError, loadNodeConfig } from "../config.js";

const cleanup = cleanupStack({ after });
let natsUrl: string;
let dataDir: string;

/** Env of the node on the shared data directory, plus `extra`. */
async function nodeEnv(extra: Record<string, string>): Promise<Record<string, string>> {
  return {
    MERIDIAN_REGION: "solo",
    MERIDIAN_DATA_DIR: dataDir,
    MERIDIAN_LISTEN_PORT: String(await freePort()),
    MERIDIAN_NATS_SERVERS: natsUrl,
    MERIDIAN_STORAGE_FSYNC: "false",
    MERIDIAN_LOG_LEVEL: "warn",
    ...extra,
  };
}

/** An HTTP request from a chosen local address: status and body. */
function call(
  url: string,
  method: string,
  localAddress: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, localAddress, headers: body === undefined ? {} : { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const RULE = JSON.stringify({ scope: "team/", tagMerge: "first-write" });

describe("a data directory with identities is not reopened without authentication by accident", () => {
  before(async () => {
    natsUrl = (await startTestNats(cleanup)).url;
    dataDir = tempDir(cleanup);
    const password = join(dataDir, "admin-password");
    writeFileSync(password, "correct horse battery staple\n", { mode: 0o600 });
    // The first start, with authentication: the admin user goes into the view, the token key onto disk.
    const first = await spawnMeridian(
      cleanup,
      "node/server.js",
      await nodeEnv({ MERIDIAN_AUTH: "true", MERIDIAN_ADMIN_PASSWORD_FILE: password }),
    );
    const anonymous = await fetch(`${first.info.registry}/v2/_catalog`);
    assert.equal(anonymous.status, 401, "the first start checks credentials");
    await first.stop();
  });

  test("without authentication and without the override, the node refuses to start (exit 1, a clear message)", async (t) => {
    const local = cleanupStack(t);
    await assert.rejects(spawnMeridian(local, "node/server.js", await nodeEnv({})), (err: Error) => {
      assert.match(err.message, /exited with 1/);
      assert.match(err.message, /refusing to start without authentication: its view has 1 user/);
      assert.match(err.message, /MERIDIAN_NO_AUTH=true/);
      return true;
    });
  });

  test("with MERIDIAN_NO_AUTH=true it starts open, warns, and audits the start", async (t) => {
    const local = cleanupStack(t);
    const node = await spawnMeridian(local, "node/server.js", await nodeEnv({ MERIDIAN_NO_AUTH: "true" }));
    const base = node.info.registry!;
    assert.equal((await fetch(`${base}/v2/_catalog`)).status, 200, "open, as the operator said");
    assert.match(node.log(), /"level":40.*starting WITHOUT authentication/);
    let records: Array<{ detail?: string }> = [];
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${base}/admin/v1/audit?limit=1000`);
      records = ((await res.json()) as { records: Array<{ detail?: string }> }).records;
      if (records.some((r) => r.detail?.includes("started without authentication"))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(
      records.some((r) => r.detail?.includes("started without authentication although its view has 1 user")),
      JSON.stringify(records.slice(-5)),
    );

    // Admin writes without authentication: from loopback only (127.0.0.1 yes, 127.0.0.2 no).
    const rule = `${base}/admin/v1/rules`;
    const fromOther = await call(rule, "PUT", "127.0.0.2", RULE);
    assert.equal(fromOther.status, 403, fromOther.body);
    assert.match(fromOther.body, /DENIED/);
    assert.match(fromOther.body, /accepted only from 127\.0\.0\.1/);
    assert.equal(
      (await call(`${base}/admin/v1/policies`, "GET", "127.0.0.2")).status,
      200,
      "reads stay open",
    );
    const fromLoopback = await call(rule, "PUT", "127.0.0.1", RULE);
    assert.ok(fromLoopback.status < 300, `${fromLoopback.status} ${fromLoopback.body}`);
  });

  test("MERIDIAN_ADMIN_WRITE_ADDRESSES without 127.0.0.1: an admin write from 127.0.0.1 is refused", async (t) => {
    const local = cleanupStack(t);
    const node = await spawnMeridian(
      local,
      "node/server.js",
      await nodeEnv({ MERIDIAN_NO_AUTH: "true", MERIDIAN_ADMIN_WRITE_ADDRESSES: "192.0.2.10" }),
    );
    const res = await call(`${node.info.registry}/admin/v1/rules`, "PUT", "127.0.0.1", RULE);
    assert.equal(res.status, 403, res.body);
    assert.match(res.body, /accepted only from 192\.0\.2\.10/);
  });
});

describe("the no-auth settings", () => {
  test("defaults: refuse an unauthenticated start over identities; admin writes from loopback only", () => {
    const config = loadNodeConfig({ env: {} });
    assert.equal(config.auth.allowUnauthenticated, false);
    assert.deepEqual(config.auth.adminWriteAddresses, ["127.0.0.1", "::1", "::ffff:127.0.0.1"]);
    const set = loadNodeConfig({
      env: { MERIDIAN_NO_AUTH: "true", MERIDIAN_ADMIN_WRITE_ADDRESSES: "10.0.0.5, *" },
    });
    assert.equal(set.auth.allowUnauthenticated, true);
    assert.deepEqual(set.auth.adminWriteAddresses, ["10.0.0.5", "*"]);
  });

  test("nonsense is refused, not read as a default", () => {
    assert.throws(
      () => loadNodeConfig({ env: { MERIDIAN_NO_AUTH: "sure" } }),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /MERIDIAN_NO_AUTH: true or false/);
        return true;
      },
    );
    assert.throws(
      () => loadNodeConfig({ env: { MERIDIAN_ADMIN_WRITE_ADDRESSES: "localhost" } }),
      /auth\.adminWriteAddresses: "localhost" is not an IP address/,
    );
  });
});
