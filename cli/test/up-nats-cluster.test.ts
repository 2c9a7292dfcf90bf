/**
 * `meridian up --nats-cluster 3` (issue 13, item 2): three clustered
 * nats-servers per region, every pid in the ready line (`nats` and
 * `pids.nats` as arrays), mesh.json listing each region's servers, the
 * region's streams at three replicas, route ports refusing a route without
 * the route password, and replication between two clustered regions.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { auditStreamName } from "../../node/audit-records.js";
import { natsConnectOptions } from "../../node/data/nats-connect.js";
import { streamName } from "../../protocol/events.js";
import { processAlive } from "../../testing/faults.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { natsIdentity, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { natsClusterPorts } from "../up-nats.js";

/** What a route port answers a CONNECT without credentials (the first line after INFO). */
function routeAnswer(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: "127.0.0.1" });
    let seen = "";
    const timer = setTimeout(() => finish(`(nothing after 5 s) ${seen}`), 5_000);
    const finish = (answer: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    socket.on("data", (d) => {
      const first = seen === "";
      seen += d;
      if (first) socket.write('CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n');
      const lines = seen.split("\r\n").filter((l) => l !== "" && !l.startsWith("INFO"));
      if (lines.length > 0) finish(lines[0]!);
    });
    socket.once("close", () => finish(seen));
    socket.once("error", reject);
  });
}

test("up --nats-cluster 3: clustered servers per region, streams at three replicas, replication", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["a", "b"], undefined, ["--nats-cluster", "3"]);
  const a = mesh.regions.get("a")!;
  const b = mesh.regions.get("b")!;
  for (const r of [a, b]) {
    assert.equal(r.natsCluster?.urls.length, 3, `${r.region}'s ready line lists three NATS URLs`);
    assert.equal(new Set(r.natsCluster.pids).size, 3, `${r.region}'s ready line lists three nats pids`);
    for (const pid of r.natsCluster.pids) assert.ok(processAlive(pid), `nats-server ${pid} runs`);
  }
  const meshFile = JSON.parse(readFileSync(join(mesh.dataDir, "mesh.json"), "utf8")) as {
    regions: Array<{ name: string; nats: unknown }>;
  };
  assert.deepEqual(meshFile.regions.find((r) => r.name === "a")?.nats, a.natsCluster!.urls);

  const nc = await connect({
    ...natsConnectOptions(natsIdentity(mesh, "operator")),
    servers: a.natsCluster!.urls,
  });
  after(() => nc.close());
  const jsm = await jetstreamManager(nc);
  for (const stream of [streamName("a"), auditStreamName("a")]) {
    const info = await jsm.streams.info(stream);
    assert.equal(info.config.num_replicas, 3, `${stream} has three replicas`);
    assert.equal(info.cluster?.replicas?.length, 2, `${stream}: a leader and two followers`);
  }

  // Routes require the route password: a route without it is refused (it would bypass client auth).
  const base = Number(new URL(a.registry).port);
  const { routes } = natsClusterPorts(base, 2, 0, 3);
  const answer = await routeAnswer(routes[0]!);
  assert.match(answer, /-ERR.*Authorization Violation/i, `route port answered: ${answer}`);

  // The worker of b reads a's stream through the server list in mesh.json.
  const clientA = new OciClient(a.registry);
  const clientB = new OciClient(b.registry);
  const image = await clientA.pushRandomImage("cluster/app", "v1");
  await eventually(
    async () => {
      const res = await clientB.fetch("/v2/cluster/app/manifests/v1", { headers: { accept: OCI_MANIFEST } });
      await res.arrayBuffer();
      return res.status === 200 && res.headers.get("docker-content-digest") === image.digest;
    },
    30_000,
    100,
  );
});
