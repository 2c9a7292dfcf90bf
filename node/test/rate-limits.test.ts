/**
 * Pull and push rate limits (issue 18, item 4; node/rate-limits.ts): buckets
 * per identity and per address, shared by a region's nodes over a real
 * nats-server; and through HTTP, two real node processes of one region: what
 * one node let through counts on the other, the answer is 429 TOOMANYREQUESTS
 * with Retry-After, reads and writes are limited apart, and a loop of
 * refused requests is answered at once and ends.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { Registry as MetricsRegistry } from "prom-client";
import {
  cleanupStack,
  eventually,
  freePort,
  spawnMeridian,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import type { RateLimitSettings } from "../config.js";
import { NatsConnectionManager } from "../data/nats-connection.js";
import { RateLimiter } from "../rate-limits.js";

const cleanup = cleanupStack({ after });
const logger = pino({ level: "silent" });
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

const settings = (over: Partial<RateLimitSettings>): RateLimitSettings => ({
  pullsPerSecond: 0,
  pullBurst: 200,
  pushesPerSecond: 0,
  pushBurst: 100,
  addressPullsPerSecond: 0,
  addressPushesPerSecond: 0,
  shareIntervalMs: 50,
  ...over,
});

describe("RateLimiter", () => {
  test("per identity, per address, reads apart from writes", () => {
    const limiter = new RateLimiter({
      settings: settings({
        pullsPerSecond: 1,
        pullBurst: 2,
        addressPullsPerSecond: 1,
        pushesPerSecond: 1,
        pushBurst: 1,
      }),
      region: "r",
      metrics: new MetricsRegistry(),
      logger,
    });
    assert.equal(limiter.enabled, true);
    // The address allows 2 reads at once (the pull burst), whoever signs in from it.
    assert.equal(limiter.check("pull", "alice", "10.0.0.1", 0), undefined);
    assert.equal(limiter.check("pull", "bob", "10.0.0.1", 0), undefined);
    assert.equal(limiter.check("pull", "carol", "10.0.0.1", 0), 1, "the address is over");
    // From another address alice has one read left, then she is over.
    assert.equal(limiter.check("pull", "alice", "10.0.0.2", 0), undefined);
    assert.equal(limiter.check("pull", "alice", "10.0.0.3", 0), 1, "alice is over");
    // Writes have their own buckets.
    assert.equal(limiter.check("push", "alice", "10.0.0.4", 0), undefined);
    assert.equal(limiter.check("push", "alice", "10.0.0.4", 0), 1);
    // Anonymous requests count by their address under the identity rate.
    assert.equal(limiter.check("pull", undefined, "10.0.0.9", 0), undefined);
    assert.equal(limiter.check("pull", undefined, "10.0.0.9", 0), undefined);
    assert.equal(limiter.check("pull", undefined, "10.0.0.9", 0), 1);
    // A second later, one more.
    assert.equal(limiter.check("pull", "alice", "10.0.0.5", 1000), undefined);
  });

  test("no limit configured: disabled", () => {
    const limiter = new RateLimiter({
      settings: settings({}),
      region: "r",
      metrics: new MetricsRegistry(),
      logger,
    });
    assert.equal(limiter.enabled, false);
  });

  test("two nodes of a region share what they let through (a real nats-server)", async () => {
    const nats = await startTestNats(cleanup);
    const make = () => {
      const connections = new NatsConnectionManager(undefined);
      cleanup(() => connections.close());
      const metrics = new MetricsRegistry();
      const limiter = new RateLimiter({
        settings: settings({ pullsPerSecond: 0.01, pullBurst: 5 }),
        region: "r",
        metrics,
        logger,
        nats: { connections, servers: [nats.url] },
      });
      limiter.start();
      cleanup(() => limiter.close());
      return { limiter, metrics };
    };
    const a = make();
    const b = make();
    const other = new RateLimiter({
      settings: settings({ pullsPerSecond: 0.01, pullBurst: 5 }),
      region: "elsewhere",
      metrics: new MetricsRegistry(),
      logger,
      nats: { connections: new NatsConnectionManager(undefined), servers: [nats.url] },
    });
    other.start();
    cleanup(() => other.close());
    // Wait until both are subscribed: a share from a reaches b.
    await eventually(
      async () => {
        a.limiter.check("pull", "probe", "10.1.1.1");
        const text = await b.metrics.metrics();
        return /meridian_rate_limit_shares_total\{direction="received"\} [1-9]/.test(text);
      },
      10_000,
      50,
    );
    for (let i = 0; i < 5; i++)
      assert.equal(a.limiter.check("pull", "alice", "10.0.0.1"), undefined, `a ${i}`);
    await eventually(() => b.limiter.check("pull", "alice", "10.0.0.2") !== undefined, 5_000, 20);
    // Another region's limiter shares nothing with this one.
    assert.equal(other.check("pull", "alice", "10.0.0.3"), undefined);
  });
});

describe("rate limits through HTTP: two nodes of one region", () => {
  let nodes: string[] = [];
  const password = "alice-password-1";
  before(async () => {
    const nats = await startTestNats(cleanup);
    const dataDir = tempDir(cleanup, "meridian-rate-");
    const adminFile = join(dataDir, "admin-password");
    writeFileSync(adminFile, "admin-password-1\n", { mode: 0o600 });
    const env = (i: number, port: number) => ({
      MERIDIAN_REGION: "rl",
      MERIDIAN_DATA_DIR: dataDir,
      MERIDIAN_VIEW_DIR: join(dataDir, `view-${i}`),
      MERIDIAN_LISTEN_PORT: String(port),
      MERIDIAN_NATS_SERVERS: nats.url,
      MERIDIAN_STORAGE_FSYNC: "false",
      MERIDIAN_AUTH: "true",
      MERIDIAN_ADMIN_PASSWORD_FILE: adminFile,
      MERIDIAN_LOG_LEVEL: "warn",
      MERIDIAN_RATE_PULLS_PER_SECOND: "0.5",
      MERIDIAN_RATE_PULL_BURST: "6",
      MERIDIAN_RATE_PUSHES_PER_SECOND: "0.5",
      MERIDIAN_RATE_PUSH_BURST: "3",
      MERIDIAN_RATE_SHARE_INTERVAL_MS: "50",
    });
    // One after the other: the second reads the token key the first made.
    for (const i of [1, 2]) {
      const proc = await spawnMeridian(cleanup, "node/server.js", env(i, await freePort()));
      nodes.push(proc.info.registry!);
    }
    const admin = basic("admin", "admin-password-1");
    await eventually(
      async () => (await fetch(`${nodes[0]}/admin/v1/whoami`, { headers: { authorization: admin } })).ok,
      20_000,
      100,
    );
    for (const user of ["alice", "bob"]) {
      const res = await fetch(`${nodes[0]}/admin/v1/users/${user}`, {
        method: "PUT",
        headers: { authorization: admin, "content-type": "application/json" },
        body: JSON.stringify({ password, systemAdmin: true }),
      });
      assert.equal(res.status, 200);
    }
    // Both nodes know both users (the second applies the events from the region's log).
    for (const node of nodes)
      await eventually(
        async () =>
          (await fetch(`${node}/admin/v1/whoami`, { headers: { authorization: basic("bob", password) } })).ok,
        20_000,
        100,
      );
  });
  after(() => {
    nodes = [];
  });

  test("reads let through by one node count on the other; 429 with Retry-After; writes apart", async () => {
    const alice = basic("alice", password);
    // whoami above took one of bob's reads per node... alice has her whole burst of 6.
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${nodes[0]}/v2/`, { headers: { authorization: alice } });
      assert.equal(res.status, 200, `read ${i}`);
    }
    let refused: Response | undefined;
    await eventually(
      async () => {
        const res = await fetch(`${nodes[1]}/v2/`, { headers: { authorization: alice } });
        if (res.status === 429) refused = res;
        else await res.arrayBuffer();
        return res.status === 429;
      },
      5_000,
      20,
    );
    assert.ok(refused !== undefined);
    const wait = Number(refused.headers.get("retry-after"));
    assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= 14, `Retry-After ${wait}`);
    const body = (await refused.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]?.code, "TOOMANYREQUESTS");
    assert.match(body.errors[0]!.message, /too many pulls/);
    // Bob has his own bucket; alice's writes have theirs.
    assert.equal(
      (await fetch(`${nodes[1]}/v2/`, { headers: { authorization: basic("bob", password) } })).status,
      200,
    );
    const upload = await fetch(`${nodes[1]}/v2/team/app/blobs/uploads/`, {
      method: "POST",
      headers: { authorization: alice },
    });
    assert.equal(upload.status, 202);
    const metrics = await (await fetch(`${nodes[1]}/metrics`)).text();
    assert.match(
      metrics,
      /meridian_rate_limited_requests_total\{[^}]*kind="pull",by="identity"[^}]*\} [1-9]/,
    );
  });

  test("a loop over the limit is answered 429 at once and ends; the limit lifts after Retry-After", async () => {
    const alice = basic("alice", password);
    const statuses = new Map<number, number>();
    let retryAfter = 0;
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`${nodes[i % 2]}/v2/`, {
        headers: { authorization: alice },
        signal: AbortSignal.timeout(5_000),
      });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 429) retryAfter = Number(res.headers.get("retry-after"));
      await res.arrayBuffer();
    }
    assert.ok((statuses.get(429) ?? 0) >= 38, `statuses ${JSON.stringify([...statuses])}`);
    await new Promise((r) => setTimeout(r, retryAfter * 1000 + 200));
    assert.equal((await fetch(`${nodes[0]}/v2/`, { headers: { authorization: alice } })).status, 200);
  });
});
