/**
 * A source region whose JetStream cluster has not formed yet (issue 13:
 * `meridian up --nats-cluster 3` starts regions one after the other, so a
 * worker may dial a source's first nats-server before its peers are up and
 * a meta leader is elected). The source consumer must treat that as an
 * interruption and retry, as it does a source that is not up at all; it
 * used to check the JetStream API when it connected, outside those retries,
 * and the worker died of the timeout ("uncaught error: stopping").
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { clusterMemberOptions, startNatsServer } from "../../cli/nats-server.js";
import {
  cleanupStack,
  eventually,
  freePort,
  spawnMeridian,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";

test("a worker whose source's JetStream cluster is still forming keeps running and retries", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const root = tempDir(after, "meridian-worker-forming-");
  // Region a's node creates a's stream, as under `meridian up`.
  const node = await startTestNode(after, { nats: nats.url, dataDir: join(root, "a"), region: "a" });
  await node.close();
  // Region b: the first of a three-server cluster whose other two never start (no meta leader).
  const ports = [await freePort(), await freePort(), await freePort()];
  const routePorts = [await freePort(), await freePort(), await freePort()];
  const b = await startNatsServer(
    clusterMemberOptions(
      {
        name: `forming-${process.pid}`,
        ports,
        routePorts,
        storeDirs: ports.map(() => tempDir(after, "meridian-nats-")),
        routePassword: randomBytes(16).toString("hex"),
      },
      0,
    ),
  );
  after(() => b.stop());
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
          nats: ports.map((p) => `nats://127.0.0.1:${p}`),
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
  });
  // The consumer of b meets the forming cluster and retries (an interruption within the start-up grace)…
  await eventually(() => worker.log().includes("source consumer not ready yet; retrying"), 20_000, 50);
  // …and keeps running (it used to die at connect, before any retry).
  await new Promise((r) => setTimeout(r, 2_000));
  assert.equal(worker.child.exitCode, null, `the worker is still running:\n${worker.log().slice(-3000)}`);
  assert.ok(!worker.log().includes("uncaught error"), worker.log().slice(-3000));
});
