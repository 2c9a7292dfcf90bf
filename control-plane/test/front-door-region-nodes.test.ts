/**
 * A region of two registry nodes behind the front door, with no load balancer
 * of its own (mesh.json `registry` as a list; issue 13 item 3). Real
 * processes: startProxiedMesh regions a and b, a second node of a on a's
 * NATS (through its own TcpProxy) and a's filesystem store, the front door as
 * a process on a mesh.json listing both nodes of a. Requests reach both
 * nodes; a read-your-writes read never reaches a node whose view lags; a
 * frozen node (SIGSTOP) costs GETs one first-byte bound, answered by the
 * other node of the region; a killed node (kill -9) costs readers nothing and
 * is marked down within 3 heartbeat intervals. Frozen nodes are resumed in
 * cleanup.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { cleanupStack, eventually, type MeridianProcess, spawnMeridian } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import {
  addRegionNode,
  type ExtraNode,
  meshWithNodes,
  requestsAnswered,
} from "../../testing/region-nodes.js";

const cleanup = cleanupStack({ after });
const INTERVAL_MS = 1_000;
const READ_MS = 2_000;

let mesh: ProxiedMesh;
let a2: ExtraNode;
let a1: string;
let frontDoor: MeridianProcess;
let url: string;

interface Healthz {
  regions: Array<{
    region: string;
    up: boolean;
    nodes: Array<{ node: string; up: boolean; applied: Record<string, number> | null }>;
  }>;
}

const healthz = async () => (await (await fetch(`${url}/healthz`)).json()) as Healthz;
const nodeUp = async (node: string) =>
  (await healthz()).regions.find((r) => r.region === "a")!.nodes.find((n) => n.node === node)?.up;

/** A node's own view's position in its region's log. */
const appliedSeq = async (node: string) =>
  ((await (await fetch(`${node}/healthz`)).json()) as { appliedSeq: number }).appliedSeq;

before(async () => {
  mesh = await startProxiedMesh(cleanup, ["a", "b"]);
  const a = mesh.regions.get("a")!;
  a1 = a.registry;
  a2 = await addRegionNode(cleanup, a, 2);
  const meshFile = meshWithNodes(mesh.meshFile, { a: [a1, a2.url] }, "mesh-nodes.json");
  frontDoor = await spawnMeridian(cleanup, "control-plane/front-door.js", {
    MERIDIAN_MESH: meshFile,
    MERIDIAN_CLIENT_REGIONS: "127.0.0.0/8=a",
    MERIDIAN_HEARTBEAT_INTERVAL_MS: String(INTERVAL_MS),
    MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS: String(READ_MS),
  });
  url = frontDoor.info.frontDoor!;
  await eventually(
    async () => {
      const h = await healthz();
      return h.regions.every((r) => r.up && r.nodes.every((n) => n.up));
    },
    30_000,
    50,
  );
});

test("requests through the front door reach both nodes of the region; a push spread over them works", async () => {
  const before = [await requestsAnswered(a1), await requestsAnswered(a2.url)];
  // The push's blobs, upload steps and manifest may land on either node (the store is shared).
  const image = await new OciClient(url).pushRandomImage("team/app", "v1");
  // A pull right after the push sees it (the repository's floor: a node that applied the push).
  const pulled = await fetch(`${url}/v2/team/app/manifests/v1`, { method: "HEAD" });
  assert.equal(pulled.status, 200);
  // Once both nodes have applied the push (their probes say so), reads spread over both.
  const written = Math.max(await appliedSeq(a1), await appliedSeq(a2.url));
  await eventually(
    async () =>
      (await healthz()).regions
        .find((r) => r.region === "a")!
        .nodes.every((n) => (n.applied?.a ?? 0) >= written),
    10_000,
    50,
  );
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${url}/v2/team/app/manifests/${image.digest}`, { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("meridian-region"), "a");
  }
  const gained = [(await requestsAnswered(a1)) - before[0]!, (await requestsAnswered(a2.url)) - before[1]!];
  assert.ok(
    gained.every((n) => n >= 5),
    `each node answered a share of the requests: ${gained}`,
  );
  // An upload session continued on whichever node: its chunks are spread over both, the blob is whole.
  const during = [await requestsAnswered(a1), await requestsAnswered(a2.url)];
  const bytes = randomBytes(60_000);
  const blob = await new OciClient(url).pushBlobChunked("team/app", bytes, 10_000);
  const parts = [(await requestsAnswered(a1)) - during[0]!, (await requestsAnswered(a2.url)) - during[1]!];
  assert.ok(
    parts.every((n) => n >= 2),
    `both nodes took part in the upload: ${parts}`,
  );
  const got = await fetch(`${url}/v2/team/app/blobs/${blob.digest}`);
  assert.equal(got.status, 200);
  assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes));
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, new RegExp(`meridian_front_door_node_up\\{region="a",node="${a2.url}"\\} 1`));
  assert.match(metrics, /meridian_front_door_region_up\{region="a"\} 1/);
});

test("a read-your-writes read never reaches the node whose view lags", async () => {
  // a2's link to the log is cut: its HTTP answers, its view stands still.
  a2.nats.partition();
  cleanup(() => a2.nats.heal());
  try {
    // Pushed on a1 directly: the token names a write a2 has not applied.
    const pushed = await new OciClient(a1).pushRandomImage("team/ryw", "v1");
    const seq = (
      await fetch(`${a1}/v2/team/ryw/manifests/v1`, {
        method: "PUT",
        headers: { "content-type": pushed.manifest.mediaType as string },
        body: JSON.stringify(pushed.manifest),
      })
    ).headers.get("meridian-seq");
    assert.match(seq ?? "", /^a:\d+$/);
    // a2 itself does not have it (so a read sent there would be a 404).
    assert.equal((await fetch(`${a2.url}/v2/team/ryw/manifests/v1`, { method: "HEAD" })).status, 404);
    const a2Before = await requestsAnswered(a2.url);
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${url}/v2/team/ryw/manifests/v1`, {
        method: "HEAD",
        headers: { "meridian-seq": seq! },
      });
      assert.equal(res.status, 200, `read ${i} saw the write`);
    }
    // Only its /healthz probes reached a2 meanwhile (one per interval, a few RYW polls at most).
    const probes = (await requestsAnswered(a2.url)) - a2Before;
    assert.ok(probes < 12, `the reads did not go to a2 (${probes} requests there)`);
  } finally {
    a2.nats.heal();
  }
  // a2 back on the log: it catches up (and can write again) before the next test.
  const written = await appliedSeq(a1);
  await eventually(async () => (await appliedSeq(a2.url)) >= written, 30_000, 100);
});

test("a frozen node: GETs answer within the first-byte bound from the other node of its region", async () => {
  await eventually(async () => (await nodeUp(a2.url)) === true, 10_000, 50);
  const image = await new OciClient(url).pushRandomImage("team/frozen", "v1");
  const pid = a2.process.child.pid!;
  process.kill(pid, "SIGSTOP");
  cleanup(() => {
    try {
      process.kill(pid, "SIGCONT");
    } catch {}
  });
  try {
    for (let i = 0; i < 6; i++) {
      const started = Date.now();
      const res = await fetch(`${url}/v2/team/frozen/manifests/${image.digest}`, {
        signal: AbortSignal.timeout(30_000),
      });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("meridian-region"), "a", "retried on a's other node, not region b");
      assert.ok(Date.now() - started < READ_MS + 3_000, `GET ${i} finished within the bound and a retry`);
    }
    await eventually(async () => (await nodeUp(a2.url)) === false, 3 * INTERVAL_MS + 2_000, 50);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  await eventually(async () => (await nodeUp(a2.url)) === true, 10_000, 50);
});

test("a killed node: reads keep succeeding, the node is down within 3 heartbeat intervals", async () => {
  const image = await new OciClient(url).pushRandomImage("team/kill", "v1");
  const read = async () => {
    const res = await fetch(`${url}/v2/team/kill/manifests/${image.digest}`);
    await res.arrayBuffer();
    assert.equal(res.status, 200, "no client-visible error");
    assert.equal(res.headers.get("meridian-region"), "a", "retried on a's other node");
  };
  // Reads right after the kill, of a repository whose reads spread over both nodes: those sent
  // to the dead node are retried on the other one, until the node is marked down.
  await a2.process.kill();
  const killedAt = Date.now();
  let reads = 0;
  while ((await nodeUp(a2.url)) !== false) {
    assert.ok(Date.now() - killedAt < 3 * INTERVAL_MS + 1_000, "a2 marked down within 3 intervals");
    const res = await fetch(`${url}/v2/team/app/manifests/v1`, { method: "HEAD" });
    assert.equal(res.status, 200, "no client-visible error");
    assert.equal(res.headers.get("meridian-region"), "a", "retried on a's other node");
    reads++;
  }
  await read();
  process.stdout.write(`# ${reads} reads while the killed node was still up at the front door\n`);
  assert.equal((await healthz()).regions.find((r) => r.region === "a")!.up, true, "a is up on a1");

  // Back, then killed again with no traffic: the probes alone mark it down within 3 intervals.
  a2.process = await spawnMeridian(cleanup, "node/server.js", a2.env);
  await eventually(async () => (await nodeUp(a2.url)) === true, 15_000, 50);
  await a2.process.kill();
  const probedAt = Date.now();
  await eventually(async () => (await nodeUp(a2.url)) === false, 10_000, 25);
  const downAfter = Date.now() - probedAt;
  assert.ok(downAfter <= 3 * INTERVAL_MS + 500, `down after ${downAfter} ms`);
  for (let i = 0; i < 4; i++) await read();
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, new RegExp(`meridian_front_door_node_up\\{region="a",node="${a2.url}"\\} 0`));
});
