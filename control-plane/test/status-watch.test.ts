/**
 * WatchStatus (control-plane/status-feed.ts, mesh-client/status-watch.ts):
 * the write fence and the peer's status pushed to its own region's node and
 * worker instead of polled (issue 14, cost at rest). Region a's peer is a
 * real process (frozen with SIGSTOP, restarted), region b's runs in this
 * process; real gRPC with mutual TLS, one real nats-server.
 *
 * - a fence change arrives by the stream as it happens: the watcher asks for
 *   a keepalive far longer than the test, so only a push on change can bring it;
 * - another region going down or up is pushed too (the worker's source order);
 * - a frozen peer fences its node within the staleness bound (no status for
 *   2 s), and the node opens again when the peer resumes;
 * - the stream comes back after the peer restarts;
 * - PingStatus (heartbeats, the front door's probes): each ping answered on
 *   one stream; a frozen peer's pings go unanswered and its heartbeats miss
 *   (down), and it is up again once it resumes;
 * - every port is a door: the front door's identity (mesh CA, not a region)
 *   is refused the status stream but may ping, a certificate of another CA
 *   cannot connect.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ensureMeshCerts, type MeshCerts } from "../../cli/certs.js";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import { StatusWatch } from "../../mesh-client/status-watch.js";
import { MeshLink } from "../../node/mesh-link.js";
import { PeerUnavailableError } from "../../protocol/errors.js";
import type { StatusReply__Output } from "../../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { Mesh } from "../../protocol/mesh.js";
import {
  type After,
  cleanupStack,
  eventually,
  freePort,
  type MeridianProcess,
  silentLogger,
  spawnMeridian,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { loadPeerConfig } from "../config.js";
import { type RunningPeer, startPeer } from "../peer.js";

const defer = cleanupStack({ after });
const INTERVAL = 100;
const LEASE = 600;
/** Longer than any test here: a status that arrives was pushed on a change, not sent as a keepalive. */
const NEVER_MS = 60_000;

let root: string;
let meshFile: string;
let mesh: Mesh;
let certs: MeshCerts;
let peerA: MeridianProcess;

before(async () => {
  const nats = await startTestNats(defer);
  root = tempDir(defer);
  certs = await ensureMeshCerts(join(root, "certs"), ["a", "b", "front-door"]);
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
  peerA = await spawnPeerA();
});

/** Region a's peer as its own process (so it can be frozen and restarted). */
function spawnPeerA(): Promise<MeridianProcess> {
  return spawnMeridian(defer, "control-plane/peer.js", {
    MERIDIAN_REGION: "a",
    MERIDIAN_MESH: meshFile,
    MERIDIAN_DATA_DIR: join(root, "a"),
    MERIDIAN_HEARTBEAT_INTERVAL_MS: String(INTERVAL),
    MERIDIAN_LEASE_MS: String(LEASE),
    MERIDIAN_LOG_LEVEL: "warn",
  });
}

/** Region b's peer in this process. */
function startPeerB(after: After, leaseMs = LEASE): Promise<RunningPeer> {
  const config = loadPeerConfig({
    overrides: {
      region: "b",
      meshFile,
      dataDir: join(root, "b"),
      heartbeat: { intervalMs: INTERVAL },
      failover: { leaseMs },
      logLevel: "silent",
    },
  });
  return startPeer(config, silentLogger).then((peer) => {
    after(() => peer.close());
    return peer;
  });
}

/** A watcher of a region's status as that region, keeping every status it is sent. */
function watch(
  after: After,
  region: "a" | "b",
  keepaliveMs: number,
): { watch: StatusWatch; seen: StatusReply__Output[] } {
  const address = mesh.regions.find((r) => r.name === region)!.grpc;
  const client = new PeerClient(region, address, peerCredentials(mesh, region), region);
  const seen: StatusReply__Output[] = [];
  const watch = new StatusWatch({ client, from: region, keepaliveMs, onStatus: (s) => seen.push(s) });
  watch.start();
  after(() => {
    watch.close();
    client.close();
  });
  return { watch, seen };
}

const watchA = (after: After, keepaliveMs: number) => watch(after, "a", keepaliveMs);

const fenceOf = (seen: StatusReply__Output[]) => seen.at(-1)?.fence;

test("a fence change arrives by the stream when it happens, not at the next keepalive", async (t) => {
  const after = cleanupStack(t);
  const { watch, seen } = watchA(after, NEVER_MS);
  await eventually(() => seen.length > 0, 10_000);
  assert.equal(fenceOf(seen), "starting: no other region has answered yet", "the status comes at once");

  const b = await startPeerB(after);
  await eventually(() => fenceOf(seen) === "", 10_000);

  await b.close();
  // Nothing answers a's heartbeats now: the lease lapses, and a is fenced.
  await eventually(() => /^cut off from every other region for /.test(fenceOf(seen) ?? ""), 10_000);
  assert.equal(watch.opened, 1, "one stream carried every change");
  // Cut off it stays: the running figure in the text is no change, and nothing more is pushed.
  const sent = seen.length;
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal(seen.length, sent, "nothing is sent while the fence stays as it is");
});

test("a frozen peer fences its node within the staleness bound, and the node opens when it resumes", async (t) => {
  const after = cleanupStack(t);
  await startPeerB(after);
  // As the node has it (node/server.ts): the keepalive of `peerPollMs`' default.
  const link = new MeshLink({ region: "a", mesh, keepaliveMs: 1_000, logger: silentLogger });
  link.start();
  after(() => link.close());
  await eventually(() => link.fence() === "", 10_000);

  const pid = peerA.child.pid!;
  process.kill(pid, "SIGSTOP");
  after(() => {
    if (peerA.child.exitCode === null) process.kill(pid, "SIGCONT");
  });
  const frozenAt = Date.now();
  // No status for 2 s fences; the test allows far more than that (a loaded machine).
  await eventually(() => /has not answered for/.test(link.fence()), 10_000, 50);
  const fencedAfter = Date.now() - frozenAt;
  assert.ok(fencedAfter >= 1_000, `fenced only once the keepalives stopped (${fencedAfter} ms)`);
  assert.ok(fencedAfter < 10_000);

  process.kill(pid, "SIGCONT");
  await eventually(() => link.fence() === "", 15_000, 50);
});

test("another region going down and up is pushed to watchers at once (the worker's source order)", async (t) => {
  const after = cleanupStack(t);
  // A lease far longer than the test: b's fence stays open, so only the up/down change can push.
  const b = await startPeerB(after, 120_000);
  const { seen } = watch(after, "b", NEVER_MS);
  const aUp = (s: StatusReply__Output | undefined) => s?.peers.find((p) => p.region === "a")?.up;
  await eventually(() => aUp(seen.at(-1)) === true, 10_000);

  const pid = peerA.child.pid!;
  process.kill(pid, "SIGSTOP");
  after(() => {
    if (peerA.child.exitCode === null) process.kill(pid, "SIGCONT");
  });
  await eventually(() => aUp(seen.at(-1)) === false, 10_000, 50);
  assert.equal(fenceOf(seen), "", "b's fence did not change: the push was for a's health");
  process.kill(pid, "SIGCONT");
  await eventually(() => aUp(seen.at(-1)) === true, 15_000, 50);
  assert.equal(b.heartbeat.health("a")?.state, "up");
});

test("pings: one stream answers each; a frozen peer's go unanswered, its heartbeats miss, and it is up again once it resumes", async (t) => {
  const after = cleanupStack(t);
  const b = await startPeerB(after);
  const client = new PeerClient("a", mesh.regions[0]!.grpc, peerCredentials(mesh, "b"), "b");
  after(() => client.close());
  const first = await client.pingStatus("b");
  const second = await client.pingStatus("b");
  assert.equal(first.region, "a");
  assert.ok(second.sentAtMs > first.sentAtMs, "each reply echoes its own ping");
  await eventually(() => b.heartbeat.health("a")?.state === "up", 10_000);

  const pid = peerA.child.pid!;
  process.kill(pid, "SIGSTOP");
  after(() => {
    if (peerA.child.exitCode === null) process.kill(pid, "SIGCONT");
  });
  await assert.rejects(client.pingStatus("b", { timeoutMs: 500 }), PeerUnavailableError);
  // b's heartbeats ride the same kind of stream: three unanswered and a is down.
  await eventually(() => b.heartbeat.health("a")?.state === "down", 10_000, 50);

  process.kill(pid, "SIGCONT");
  await eventually(() => b.heartbeat.health("a")?.state === "up", 15_000, 50);
  assert.equal((await client.pingStatus("b")).region, "a", "a later ping is answered on a new stream");
});

test("the stream comes back after the peer restarts", async (t) => {
  const after = cleanupStack(t);
  await startPeerB(after);
  const link = new MeshLink({ region: "a", mesh, keepaliveMs: 1_000, logger: silentLogger });
  link.start();
  after(() => link.close());
  const { watch, seen } = watchA(after, 200);
  await eventually(() => link.fence() === "" && fenceOf(seen) === "", 10_000);

  await peerA.stop();
  await eventually(() => link.fence() !== "", 10_000, 50);
  const before = seen.length;
  peerA = await spawnPeerA();
  await eventually(() => link.fence() === "" && seen.length > before && fenceOf(seen) === "", 20_000, 50);
  assert.ok(watch.opened >= 2, "the stream was opened again");
});

test("every port is a door: the front door's identity is refused the stream, another CA cannot connect", async (t) => {
  const after = cleanupStack(t);
  const address = mesh.regions[0]!.grpc;
  const firstError = (client: PeerClient) =>
    new Promise<grpc.ServiceError>((resolve, reject) => {
      const call = client.watchStatus("a", 100);
      call.on("data", () => reject(new Error("a status reached a caller that may not have one")));
      call.on("error", (err) => resolve(err as grpc.ServiceError));
    });

  // The front door may ask Status (its health probe), not hold a status stream.
  const frontDoor = new PeerClient("a", address, peerCredentials(mesh, "front-door"));
  after(() => frontDoor.close());
  assert.equal((await firstError(frontDoor)).code, grpc.status.PERMISSION_DENIED);
  assert.equal((await frontDoor.status("front-door")).region, "a", "while Status stays open to it");
  assert.equal((await frontDoor.pingStatus("front-door")).region, "a", "and its ping form (its probes)");

  // A certificate named "a" but issued by another CA: the TLS handshake refuses it.
  const foreign = await ensureMeshCerts(join(root, "foreign-certs"), ["a"]);
  const stranger = new PeerClient(
    "a",
    address,
    grpc.credentials.createSsl(
      readFileSync(certs.ca),
      readFileSync(foreign.regions.a!.key),
      readFileSync(foreign.regions.a!.cert),
    ),
  );
  after(() => stranger.close());
  assert.equal((await firstError(stranger)).code, grpc.status.UNAVAILABLE);
  await assert.rejects(stranger.pingStatus("a"), PeerUnavailableError);
});
