import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { loadPeerConfig, PeerConfigError } from "../config.js";

function meshFile(dir: string, doc: unknown): string {
  const path = join(dir, "mesh.json");
  writeFileSync(path, JSON.stringify(doc));
  return path;
}

const MESH = {
  regions: [
    { name: "a", registry: "http://127.0.0.1:5000", nats: "nats://127.0.0.1:5001", grpc: "127.0.0.1:5002" },
    { name: "b", registry: "http://127.0.0.1:5010", nats: "nats://127.0.0.1:5011", grpc: "127.0.0.1:5012" },
  ],
  insecure: true,
};

test("defaults come from the mesh and the data directory", (t) => {
  const dir = tempDir(cleanupStack(t));
  const config = loadPeerConfig({
    env: { MERIDIAN_REGION: "b", MERIDIAN_MESH: meshFile(dir, MESH), MERIDIAN_DATA_DIR: join(dir, "b") },
  });
  assert.equal(config.region, "b");
  assert.deepEqual(config.nats.servers, ["nats://127.0.0.1:5011"]);
  assert.equal(config.grpc.listen, "127.0.0.1:5012");
  assert.equal(config.storage.root, join(dir, "b", "store"));
  assert.equal(config.view.dir, join(dir, "b", "peer-view"));
  assert.deepEqual(config.metrics, { host: "127.0.0.1", port: 0 });
  assert.deepEqual(config.heartbeat, { intervalMs: 1000, timeoutMs: 1000, misses: 3 });
  assert.deepEqual(
    config.failover,
    { leaseMs: 3000, autoAfterMs: 0 },
    "the lease defaults to interval × misses; no automatic failover",
  );
  assert.equal(config.mesh.regions.length, 2);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.heartbeat));
});

test("environment, then overrides, win over defaults", (t) => {
  const dir = tempDir(cleanupStack(t));
  const config = loadPeerConfig({
    env: {
      MERIDIAN_REGION: "a",
      MERIDIAN_MESH: meshFile(dir, MESH),
      MERIDIAN_GRPC_LISTEN: "127.0.0.1:7000",
      MERIDIAN_METRICS_PORT: "7001",
      MERIDIAN_PEER_VIEW_DIR: join(dir, "pv"),
      MERIDIAN_VIEW_DIR: join(dir, "node-view"),
      MERIDIAN_HEARTBEAT_INTERVAL_MS: "200",
    },
    overrides: { heartbeat: { misses: 5 } },
  });
  assert.equal(config.grpc.listen, "127.0.0.1:7000");
  assert.equal(config.metrics.port, 7001);
  assert.equal(config.view.dir, join(dir, "pv"), "the node's MERIDIAN_VIEW_DIR is not the peer's");
  assert.deepEqual(config.heartbeat, { intervalMs: 200, timeoutMs: 200, misses: 5 });
  assert.equal(config.failover.leaseMs, 1000, "the default lease follows the heartbeat settings");
  const leased = loadPeerConfig({
    env: { MERIDIAN_REGION: "a", MERIDIAN_MESH: meshFile(dir, MESH), MERIDIAN_LEASE_MS: "4500" },
  });
  assert.equal(leased.failover.leaseMs, 4500);
});

test("a lease that is not a number, or shorter than a heartbeat interval, is refused", (t) => {
  const dir = tempDir(cleanupStack(t));
  for (const [env, fragment] of [
    [{ MERIDIAN_LEASE_MS: "soon" }, "MERIDIAN_LEASE_MS"],
    [{ MERIDIAN_LEASE_MS: "500" }, "failover.leaseMs"],
    [{ MERIDIAN_LEASE_MS: "1500.5" }, "failover.leaseMs"],
  ] as const) {
    assert.throws(
      () => loadPeerConfig({ env: { MERIDIAN_REGION: "a", MERIDIAN_MESH: meshFile(dir, MESH), ...env } }),
      (err: PeerConfigError) => err.problems.some((p) => p.includes(fragment)),
      fragment,
    );
  }
});

test("automatic failover: off by default, on with at least twice the lease", (t) => {
  const dir = tempDir(cleanupStack(t));
  const load = (env: Record<string, string>) =>
    loadPeerConfig({ env: { MERIDIAN_REGION: "a", MERIDIAN_MESH: meshFile(dir, MESH), ...env } });
  assert.equal(load({ MERIDIAN_AUTO_FAILOVER_AFTER_MS: "6000" }).failover.autoAfterMs, 6000);
  for (const value of ["5999", "-1", "later"]) {
    assert.throws(
      () => load({ MERIDIAN_AUTO_FAILOVER_AFTER_MS: value }),
      (err: PeerConfigError) =>
        err.problems.some(
          (p) => p.includes("failover.autoAfterMs") || p.includes("MERIDIAN_AUTO_FAILOVER_AFTER_MS"),
        ),
      value,
    );
  }
});

test("every problem is listed at once", (t) => {
  const dir = tempDir(cleanupStack(t));
  try {
    loadPeerConfig({
      env: {
        MERIDIAN_REGION: "zz",
        MERIDIAN_MESH: meshFile(dir, MESH),
        MERIDIAN_METRICS_PORT: "lots",
        MERIDIAN_HEARTBEAT_MISSES: "0",
        MERIDIAN_LOG_LEVEL: "loud",
      },
    });
    assert.fail("accepted");
  } catch (err) {
    assert.ok(err instanceof PeerConfigError);
    const text = err.problems.join("\n");
    for (const fragment of [
      "MERIDIAN_METRICS_PORT",
      'region "zz"',
      "nats.servers",
      "grpc.listen",
      "heartbeat.misses",
      "logLevel",
    ]) {
      assert.ok(text.includes(fragment), `missing ${fragment} in:\n${text}`);
    }
  }
  assert.throws(
    () => loadPeerConfig({ env: {} }),
    (err: PeerConfigError) => err.problems.some((p) => p.includes("MERIDIAN_MESH")),
  );
  assert.throws(
    () =>
      loadPeerConfig({
        env: { MERIDIAN_REGION: "a", MERIDIAN_MESH: meshFile(dir, { regions: MESH.regions }) },
      }),
    (err: PeerConfigError) => err.problems.some((p) => p.includes("tls: required")),
  );
});
