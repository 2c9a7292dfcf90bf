/**
 * `meridian up --s3 --nats-cluster 3` (issue 13, item 7): two regions on
 * clustered JetStream and the local S3 server `up` runs. The ready lines
 * list every pid (each region's three nats-servers as an array, the S3
 * server's in the last line, with its URL), replication copies an image from
 * a's bucket into b's, and the S3 server is supervised like every other
 * process: killed with SIGKILL, it is restarted on its port and data, and
 * pushes work again.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { processAlive } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import type { ControlState } from "../supervisor.js";
import { s3Port } from "../up-s3.js";

test("up --s3 --nats-cluster 3: every pid in the ready lines, replication between buckets, the S3 server restarted after kill -9", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["a", "b"], undefined, ["--s3", "--nats-cluster", "3"]);
  const a = mesh.regions.get("a")!;
  const b = mesh.regions.get("b")!;
  for (const r of [a, b]) {
    assert.equal(r.natsCluster?.pids.length, 3, `${r.region}: three nats pids`);
    const pids = { nats: r.natsCluster.pids, node: r.pids.node, peer: r.pids.peer, worker: r.pids.worker };
    for (const [role, pid] of Object.entries(pids).flatMap(([role, p]) =>
      [p].flat().map((x) => [role, x] as const),
    ))
      assert.ok(typeof pid === "number" && processAlive(pid), `${r.region}: ${role} ${pid} runs`);
  }
  const s3Pid = mesh.pids.s3!;
  assert.ok(processAlive(s3Pid), "the S3 server's pid is in the ready line and runs");
  assert.ok(processAlive(mesh.pids.frontDoor!), "the front door's pid is in the ready line");
  const base = Number(new URL(a.registry).port);
  assert.equal(mesh.s3, `http://127.0.0.1:${s3Port(base, 2)}`);

  const clientA = new OciClient(a.registry);
  const clientB = new OciClient(b.registry);
  const pulledFromB = async (repo: string, digest: string) => {
    const res = await clientB.fetch(`/v2/${repo}/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
    await res.arrayBuffer();
    return res.status === 200 && res.headers.get("docker-content-digest") === digest;
  };
  const first = await clientA.pushRandomImage("s3cluster/app", "v1", 2, 200_000);
  await eventually(() => pulledFromB("s3cluster/app", first.digest), 30_000, 100);

  // `meridian status` knows the S3 server (through up.json).
  const status = await runCli(["status", "--data", mesh.dataDir, "--json"], 30_000);
  assert.equal(status.code, 0, status.stderr);
  assert.deepEqual(JSON.parse(status.stdout).s3, { endpoint: mesh.s3, up: true, pid: s3Pid });

  process.kill(s3Pid, "SIGKILL");
  const upJson = join(mesh.dataDir, "up.json");
  await eventually(
    () => {
      const state = JSON.parse(readFileSync(upJson, "utf8")) as ControlState;
      const pid = state.s3?.pids.s3;
      return typeof pid === "number" && pid !== s3Pid && processAlive(pid);
    },
    20_000,
    100,
  );
  // Pushes work again (the first may still meet the server coming back: retried for a while).
  let second: Awaited<ReturnType<OciClient["pushRandomImage"]>> | undefined;
  await eventually(
    async () => {
      second = await clientA.pushRandomImage("s3cluster/after", "v1", 1, 100_000).catch(() => undefined);
      return second !== undefined;
    },
    20_000,
    250,
  );
  await eventually(() => pulledFromB("s3cluster/after", second!.digest), 30_000, 100);
  // What was stored before the restart is still there.
  const layer = await clientA.fetch(`/v2/s3cluster/app/blobs/${first.layers[0]!.digest}`);
  assert.equal(layer.status, 200);
  assert.equal((await layer.arrayBuffer()).byteLength, 200_000);
});
