/**
 * node/disk-metrics.ts from a real node process's /metrics: the blob store's
 * and the view's filesystems, as the test's own statfs of the same
 * directories sees them (the S3 store's absence of a `store` series is
 * checked in s3-node.test.ts).
 */
import assert from "node:assert/strict";
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseProm } from "../../mesh-client/mesh-status.js";
import { cleanupStack, freePort, spawnMeridian, startTestNats, tempDir } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });

test("the store's and the view's filesystems: size as statfs says, free space close to it", async () => {
  const nats = await startTestNats(cleanup);
  const dir = tempDir(cleanup);
  const node = await spawnMeridian(cleanup, "node/server.js", {
    MERIDIAN_REGION: "a",
    MERIDIAN_DATA_DIR: dir,
    MERIDIAN_STORAGE_ROOT: join(dir, "blobs"),
    MERIDIAN_LISTEN_PORT: String(await freePort()),
    MERIDIAN_NATS_SERVERS: nats.url,
    MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
  });
  const samples = parseProm(await (await fetch(`${node.info.registry}/metrics`)).text());
  const series = (name: string) =>
    Object.fromEntries(samples.filter((s) => s.name === name).map((s) => [s.labels.volume, s]));
  const avail = series("meridian_node_filesystem_avail_bytes");
  const size = series("meridian_node_filesystem_size_bytes");
  assert.deepEqual(Object.keys(avail).sort(), ["store", "view"]);
  assert.deepEqual(Object.keys(size).sort(), ["store", "view"]);
  for (const [volume, path] of [
    ["store", join(dir, "blobs")],
    ["view", join(dir, "view")],
  ] as const) {
    const fs = await statfs(path);
    assert.equal(size[volume]!.value, fs.blocks * fs.bsize, `${volume}: size`);
    assert.equal(size[volume]!.labels.region, "a");
    // Others write to the same disk meanwhile: close, not equal (within 256 MiB).
    const free = fs.bavail * fs.bsize;
    assert.ok(
      Math.abs(avail[volume]!.value - free) < 256 * 2 ** 20,
      `${volume}: ${avail[volume]!.value} vs ${free}`,
    );
    assert.ok(avail[volume]!.value > 0 && avail[volume]!.value <= size[volume]!.value);
  }
});
