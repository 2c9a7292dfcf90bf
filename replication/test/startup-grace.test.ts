/**
 * The worker's start-up grace (protocol/startup-grace.ts, issue 11 finding
 * 10), with a real worker process: region b never starts (nothing listens on
 * its nats or gRPC ports). While the grace lasts, the start-up anti-entropy
 * from b is retried quietly (debug) and nothing is logged at warn; when it
 * ends, the worker says once that b's anti-entropy failed and that b's
 * nats-server is still unreachable. A 1.5 s grace stands in for the 30 s
 * default (MERIDIAN_STARTUP_GRACE_MS).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  cleanupStack,
  eventually,
  freePort,
  spawnMeridian,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";

const GRACE_MS = 1_500;

interface Line {
  level: number;
  msg: string;
  time: number;
  src?: string;
}

function lines(log: string): Line[] {
  return log
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
}

test("a source that never starts: retried quietly within the grace, warned once after it", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const root = tempDir(after, "meridian-worker-grace-");
  // Region a's node creates a's stream, as under `meridian up`.
  const node = await startTestNode(after, { nats: nats.url, dataDir: join(root, "a"), region: "a" });
  await node.close();
  const meshFile = join(root, "mesh.json");
  writeFileSync(
    meshFile,
    JSON.stringify({
      regions: [
        {
          name: "a",
          registry: `http://127.0.0.1:${await freePort()}`,
          nats: nats.url,
          grpc: `127.0.0.1:${await freePort()}`,
        },
        {
          name: "b",
          registry: `http://127.0.0.1:${await freePort()}`,
          nats: `nats://127.0.0.1:${await freePort()}`,
          grpc: `127.0.0.1:${await freePort()}`,
        },
      ],
      insecure: true,
    }),
  );
  const worker = await spawnMeridian(after, "replication/main.js", {
    MERIDIAN_REGION: "a",
    MERIDIAN_MESH: meshFile,
    MERIDIAN_DATA_DIR: join(root, "a"),
    MERIDIAN_LOG_LEVEL: "debug",
    MERIDIAN_STARTUP_GRACE_MS: String(GRACE_MS),
  });
  await eventually(
    () => lines(worker.log()).some((l) => l.msg === "anti-entropy source not up yet; retrying"),
    10_000,
    20,
  );
  await eventually(
    () =>
      lines(worker.log()).some((l) => l.msg === "anti-entropy run failed") &&
      lines(worker.log()).some((l) => l.msg === "source still unreachable after start-up"),
    GRACE_MS + 15_000,
    50,
  );
  const loud = lines(worker.log()).filter((l) => l.level >= 40);
  const retries = lines(worker.log()).filter((l) => l.msg === "anti-entropy source not up yet; retrying");
  assert.ok(retries.length >= 2, `retried with backoff during the grace (${retries.length})`);
  assert.deepEqual(loud.map((l) => [l.msg, l.src]).sort(), [
    ["anti-entropy run failed", "b"],
    ["source still unreachable after start-up", "b"],
  ]);
  const first = lines(worker.log())[0]!.time;
  for (const l of loud) assert.ok(l.time - first >= GRACE_MS, `${l.msg}: not before the grace ended`);
  // Said once: no more warnings a while later.
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(lines(worker.log()).filter((l) => l.level >= 40).length, 2);
});
