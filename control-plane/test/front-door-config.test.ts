import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { FrontDoorConfigError, loadFrontDoorConfig, parseClientRegionsEnv } from "../front-door-config.js";

const MESH = {
  regions: [
    { name: "a", registry: "http://127.0.0.1:5000", nats: "nats://127.0.0.1:5001", grpc: "127.0.0.1:5002" },
    { name: "b", registry: "http://127.0.0.1:5010", nats: "nats://127.0.0.1:5011", grpc: "127.0.0.1:5012" },
  ],
  insecure: true,
};

function meshFile(dir: string, doc: unknown = MESH): string {
  const path = join(dir, "mesh.json");
  writeFileSync(path, JSON.stringify(doc));
  return path;
}

test("front door: defaults", (t) => {
  const dir = tempDir(cleanupStack(t));
  const config = loadFrontDoorConfig({ env: { MERIDIAN_MESH: meshFile(dir) } });
  assert.deepEqual(config.listen, { host: "127.0.0.1", port: 0 });
  assert.deepEqual(config.clientRegions, {});
  assert.equal(config.defaultRegion, "a", "the mesh's first region");
  assert.equal(config.regionHeader, "Meridian-Client-Region");
  assert.deepEqual(config.heartbeat, { intervalMs: 1000 });
  assert.equal(config.rywWaitMs, 2000);
  assert.equal(config.rulesRefreshMs, 2000);
  assert.deepEqual(config.tls, { identity: "front-door" });
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.clientRegions));
});

test("front door: file, then environment, then overrides", (t) => {
  const dir = tempDir(cleanupStack(t));
  const file = join(dir, "fd.json");
  writeFileSync(
    file,
    JSON.stringify({ meshFile: meshFile(dir), clientRegions: { "10.0.0.0/8": "a" }, rywWaitMs: 10 }),
  );
  const config = loadFrontDoorConfig({
    file,
    env: {
      MERIDIAN_FRONT_DOOR_PORT: "7005",
      MERIDIAN_CLIENT_REGIONS: "10.1.0.0/16=b, 127.0.0.1/32=a",
      MERIDIAN_HEARTBEAT_INTERVAL_MS: "250",
      MERIDIAN_FRONT_DOOR_DEFAULT_REGION: "b",
    },
    overrides: { regionHeader: "X-Region" },
  });
  assert.equal(config.listen.port, 7005);
  assert.deepEqual(
    config.clientRegions,
    { "10.1.0.0/16": "b", "127.0.0.1/32": "a" },
    "a table replaces another",
  );
  assert.equal(config.rywWaitMs, 10);
  assert.equal(config.heartbeat.intervalMs, 250);
  assert.equal(config.defaultRegion, "b");
  assert.equal(config.regionHeader, "X-Region");
  const json = loadFrontDoorConfig({
    env: { MERIDIAN_MESH: meshFile(dir), MERIDIAN_CLIENT_REGIONS: '{"fd00::/8":"b"}' },
  });
  assert.deepEqual(json.clientRegions, { "fd00::/8": "b" });
});

test("front door: every problem is listed at once", (t) => {
  const dir = tempDir(cleanupStack(t));
  const tlsMesh = { ...MESH, insecure: undefined, tls: { ca: join(dir, "ca.crt"), dir } };
  assert.throws(
    () =>
      loadFrontDoorConfig({
        env: {
          MERIDIAN_MESH: meshFile(dir, tlsMesh),
          MERIDIAN_FRONT_DOOR_PORT: "x",
          MERIDIAN_HEARTBEAT_INTERVAL_MS: "5",
          MERIDIAN_FRONT_DOOR_DEFAULT_REGION: "z",
          MERIDIAN_FRONT_DOOR_REGION_HEADER: "bad header",
          MERIDIAN_RYW_WAIT_MS: "-1",
        },
        overrides: { clientRegions: { "10.0.0.0/40": "a", "10.0.0.0/8": "q" } },
      }),
    (err: FrontDoorConfigError) => {
      assert.ok(err instanceof FrontDoorConfigError);
      const text = err.problems.join("\n");
      for (const want of [
        /MERIDIAN_FRONT_DOOR_PORT: not a number/,
        /heartbeat.intervalMs/,
        /defaultRegion "z"/,
        /regionHeader/,
        /rywWaitMs/,
        /"10.0.0.0\/40": not a CIDR/,
        /region "q" is not in the mesh/,
        /front-door.crt does not exist/,
      ]) {
        assert.match(text, want);
      }
      return true;
    },
  );
  assert.throws(() => loadFrontDoorConfig({ env: {} }), /meshFile: required/);
});

test("MERIDIAN_CLIENT_REGIONS: JSON or cidr=region pairs", () => {
  assert.deepEqual(parseClientRegionsEnv('{"10.0.0.0/8":"a"}'), { "10.0.0.0/8": "a" });
  assert.deepEqual(parseClientRegionsEnv("10.0.0.0/8=a,fd00::/8=b"), { "10.0.0.0/8": "a", "fd00::/8": "b" });
  assert.equal(typeof parseClientRegionsEnv("10.0.0.0/8"), "string");
  assert.equal(typeof parseClientRegionsEnv("[1]"), "string");
});
