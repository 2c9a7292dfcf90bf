/**
 * The write fence as two real peers serve it in Status (regions a and b,
 * real gRPC with mutual TLS, one real nats-server, real nodes writing the
 * failover configuration to the logs): closed while a has heard from no
 * one, open once b answers, closed while b reports a later failover epoch
 * than a knows, open again once a's view has it, closed once b is gone for
 * longer than the lease.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureMeshCerts } from "../../cli/certs.js";
import { parseProm } from "../../mesh-client/mesh-status.js";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import type { EventBody } from "../../protocol/events.js";
import type { StatusReply__Output } from "../../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { Mesh } from "../../protocol/mesh.js";
import {
  type After,
  cleanupStack,
  eventually,
  freePort,
  silentLogger,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { loadPeerConfig } from "../config.js";
import { type RunningPeer, startPeer } from "../peer.js";

const defer = cleanupStack({ after });
const INTERVAL = 100;
const LEASE = 600;

let root: string;
let natsUrl: string;
let meshFile: string;
let mesh: Mesh;
let peerA: RunningPeer;
let peerB: RunningPeer;
/** Callers of a's and b's Status, as a third party with a's certificate. */
let toA: PeerClient;
let toB: PeerClient;

before(async () => {
  const nats = await startTestNats(defer);
  natsUrl = nats.url;
  root = tempDir(defer);
  const certs = await ensureMeshCerts(join(root, "certs"), ["a", "b"]);
  mesh = {
    regions: await Promise.all(
      ["a", "b"].map(async (name) => ({
        name,
        registry: `http://127.0.0.1:${name === "a" ? 1 : 2}`,
        nats: nats.url,
        grpc: `127.0.0.1:${await freePort()}`,
      })),
    ),
    tls: { ca: certs.ca, dir: certs.dir },
  };
  meshFile = join(root, "mesh.json");
  writeFileSync(meshFile, JSON.stringify(mesh));
  peerA = await startRegion("a", defer);
  toA = new PeerClient("a", peerA.grpc, peerCredentials(mesh, "a"));
  defer(() => toA.close());
  toB = new PeerClient("b", mesh.regions[1]!.grpc, peerCredentials(mesh, "a"));
  defer(() => toB.close());
});

function startRegion(region: string, after: After): Promise<RunningPeer> {
  const config = loadPeerConfig({
    overrides: {
      region,
      meshFile,
      dataDir: join(root, region),
      heartbeat: { intervalMs: INTERVAL },
      failover: { leaseMs: LEASE },
      logLevel: "silent",
    },
  });
  return startPeer(config, silentLogger).then((peer) => {
    after(() => peer.close());
    return peer;
  });
}

const status = (client: PeerClient): Promise<StatusReply__Output> => client.status("t");

/** a's `meridian_peer_home_writes_refused` by reason, from its metrics page. */
async function refusedByReason(): Promise<Record<string, number>> {
  const text = await (await fetch(`${peerA.metrics}/metrics`)).text();
  return Object.fromEntries(
    parseProm(text)
      .filter((s) => s.name === "meridian_peer_home_writes_refused")
      .map((s) => [s.labels.reason!, s.value]),
  );
}
const refusing = (reason: string | undefined) =>
  Object.fromEntries(["starting", "cut_off", "behind_epoch"].map((r) => [r, r === reason ? 1 : 0]));

/** A `repository.configured` naming `home` at failover `epoch`, written by a node of `region`. */
async function configure(region: string, home: string, epoch: number): Promise<void> {
  const node = await startTestNode(defer, { nats: natsUrl, dataDir: join(root, region), region });
  await node.registry.commitAdmin(
    { type: "repository.configured", scope: "team/", tagMerge: "home-region", home } as EventBody,
    "test",
    epoch,
  );
  await node.close();
}

test("alone, a is fenced: no other region has answered yet", async () => {
  const reply = await status(toA);
  assert.equal(reply.fence, "starting: no other region has answered yet");
  assert.equal(reply.epoch, 0);
  assert.equal(reply.leaseMs, LEASE);
  assert.deepEqual(
    reply.peers.map((p) => [p.region, p.up, p.lastSeenAtMs]),
    [["b", false, 0]],
  );
  assert.equal(peerA.fence(), reply.fence);
  assert.deepEqual(await refusedByReason(), refusing("starting"));
});

test("once b answers, a is open, and its Status says when it last saw b", async () => {
  const before = Date.now();
  peerB = await startRegion("b", defer);
  await eventually(async () => (await status(toA)).fence === "", 5_000);
  const reply = await status(toA);
  assert.equal(reply.peers.length, 1);
  const b = reply.peers[0]!;
  assert.equal(b.region, "b");
  assert.equal(b.up, true);
  assert.ok(b.lastSeenAtMs >= before && b.lastSeenAtMs <= Date.now(), `${b.lastSeenAtMs}`);
  assert.equal((await status(toB)).fence, "");
  assert.deepEqual(await refusedByReason(), refusing(undefined));
});

test("a later failover epoch reported by b fences a until a's view has it", async () => {
  await configure("b", "b", 2);
  await eventually(async () => (await status(toB)).epoch === 2, 5_000);
  assert.equal((await status(toB)).fence, "", "b knows the latest epoch");
  await eventually(
    async () => (await status(toA)).fence === "behind failover epoch 2 (this region has 0); catching up",
    5_000,
  );
  assert.equal(peerA.heartbeat.health("b")!.epoch, 2);
  const healthz = (await (await fetch(`${peerA.metrics}/healthz`)).json()) as {
    fence: string;
    epoch: number;
  };
  assert.match(healthz.fence, /^behind failover epoch 2/);
  assert.equal(healthz.epoch, 0);
  assert.deepEqual(await refusedByReason(), refusing("behind_epoch"));

  // What a's replication worker would do: the same configuration into a's log.
  await configure("a", "b", 2);
  await eventually(async () => (await status(toA)).fence === "", 5_000);
  assert.equal((await status(toA)).epoch, 2);
});

test("with b gone for longer than the lease, a is fenced as cut off", async () => {
  await peerB.close();
  await eventually(
    async () => /^cut off from every other region for /.test((await status(toA)).fence),
    10_000,
  );
  assert.match(
    (await status(toA)).fence,
    /^cut off from every other region for \d+(\.\d)? s \(lease 0\.6 s\)$/,
  );
  const healthz = (await (await fetch(`${peerA.metrics}/healthz`)).json()) as { fence: string };
  assert.match(healthz.fence, /^cut off/);
  assert.deepEqual(await refusedByReason(), refusing("cut_off"));
});
