/**
 * Two peer processes' worth of the control plane (regions a and b) with real
 * mutual TLS from ensureMeshCerts, one real nats-server holding both regions'
 * streams: who may call a peer, heartbeats, metrics, and b going away and
 * coming back (the second time as a child process started by `main`).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ensureMeshCerts, type MeshCerts } from "../../cli/certs.js";
import { peerPackage } from "../../mesh-client/proto.js";
import type { PeerClient } from "../../protocol/generated/meridian/peer/v1/Peer.js";
import type { StatusReply__Output } from "../../protocol/generated/meridian/peer/v1/StatusReply.js";
import {
  cleanupStack,
  eventually,
  freePort,
  REPO_ROOT,
  silentLogger,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { loadPeerConfig, type PeerConfig } from "../config.js";
import { healthPackage } from "../health.js";
import type { PeerChange } from "../heartbeat.js";
import { type RunningPeer, startPeer } from "../peer.js";

const defer = cleanupStack({ after });
const INTERVAL = 200;

let certs: MeshCerts;
let meshFile: string;
let configA: Readonly<PeerConfig>;
let configB: Readonly<PeerConfig>;
let peerA: RunningPeer;
let peerB: RunningPeer;
let bAddress: string;
const changesAtA: Array<PeerChange & { t: number }> = [];

before(async () => {
  const nats = await startTestNats(defer);
  const root = tempDir(defer);
  certs = await ensureMeshCerts(join(root, "certs"), ["a", "b"]);
  const [ga, gb] = [await freePort(), await freePort()];
  bAddress = `127.0.0.1:${gb}`;
  meshFile = join(root, "mesh.json");
  writeFileSync(
    meshFile,
    JSON.stringify({
      regions: [
        { name: "a", registry: "http://127.0.0.1:1", nats: nats.url, grpc: `127.0.0.1:${ga}` },
        { name: "b", registry: "http://127.0.0.1:2", nats: nats.url, grpc: bAddress },
      ],
      tls: { ca: certs.ca, dir: certs.dir },
    }),
  );
  const config = (region: string) =>
    loadPeerConfig({
      overrides: {
        region,
        meshFile,
        dataDir: join(root, region),
        heartbeat: { intervalMs: INTERVAL },
        logLevel: "silent",
      },
    });
  configA = config("a");
  configB = config("b");
  peerA = await startPeer(configA, silentLogger);
  defer(() => peerA.close());
  peerA.heartbeat.onChange((c) => changesAtA.push({ ...c, t: Date.now() }));
  peerB = await startPeer(configB, silentLogger);
  defer(() => peerB.close());
});

function peerClient(address: string, credentials: grpc.ChannelCredentials): PeerClient {
  const Peer = peerPackage().meridian.peer.v1.Peer;
  // The certificates name their region: check that the server is b.
  const client = new Peer(address, credentials, {
    "grpc.ssl_target_name_override": "b",
  }) as unknown as PeerClient;
  defer(() => client.close());
  return client;
}

function status(client: PeerClient): Promise<StatusReply__Output> {
  return new Promise((resolve, reject) =>
    client.status({ fromRegion: "t", sentAtMs: 1 }, { deadline: Date.now() + 3_000 }, (err, reply) =>
      err ? reject(err) : resolve(reply!),
    ),
  );
}

const file = (p: string) => readFileSync(p);

test("a client with the mesh CA and its region's certificate is served", async () => {
  const client = peerClient(
    bAddress,
    grpc.credentials.createSsl(file(certs.ca), file(certs.regions.a!.key), file(certs.regions.a!.cert)),
  );
  const reply = await status(client);
  assert.equal(reply.region, "b");
  assert.equal(reply.epoch, 0);
  assert.deepEqual(Object.keys(reply.applied), ["b"]);
  assert.equal(peerB.grpc, bAddress);
});

test("the standard health service reports SERVING", async () => {
  const Health = healthPackage().grpc.health.v1.Health;
  const client = new Health(
    bAddress,
    grpc.credentials.createSsl(file(certs.ca), file(certs.regions.a!.key), file(certs.regions.a!.cert)),
    { "grpc.ssl_target_name_override": "b" },
  );
  defer(() => client.close());
  const check = (service: string) =>
    new Promise<{ status: string }>((resolve, reject) =>
      client.check({ service }, { deadline: Date.now() + 3_000 }, (err, reply) =>
        err ? reject(err) : resolve(reply!),
      ),
    );
  assert.equal((await check("")).status, "SERVING");
  assert.equal((await check("meridian.peer.v1.Peer")).status, "SERVING");
  await assert.rejects(check("nope.Service"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
});

test("a client without a client certificate is refused", async () => {
  const client = peerClient(bAddress, grpc.credentials.createSsl(file(certs.ca)));
  await assert.rejects(status(client), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
});

test("a plaintext client is refused", async () => {
  const client = peerClient(bAddress, grpc.credentials.createInsecure());
  await assert.rejects(status(client), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
});

test("a certificate from another CA is refused", async (t) => {
  const foreign = await ensureMeshCerts(tempDir(cleanupStack(t)), ["a"]);
  const client = peerClient(
    bAddress,
    grpc.credentials.createSsl(file(certs.ca), file(foreign.regions.a!.key), file(foreign.regions.a!.cert)),
  );
  await assert.rejects(status(client), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
});

test("a caller checks the server's region: b's certificate does not pass for a", async () => {
  const Peer = peerPackage().meridian.peer.v1.Peer;
  const client = new Peer(
    bAddress,
    grpc.credentials.createSsl(file(certs.ca), file(certs.regions.a!.key), file(certs.regions.a!.cert)),
    { "grpc.ssl_target_name_override": "a" },
  ) as unknown as PeerClient;
  defer(() => client.close());
  await assert.rejects(status(client), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
});

async function metricsOf(peer: RunningPeer): Promise<string> {
  const res = await fetch(`${peer.metrics}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function gauge(text: string, name: string, peer: string): number | undefined {
  const m = text.match(new RegExp(`^${name}\\{[^}]*peer="${peer}"[^}]*\\} (\\S+)$`, "m"));
  return m === null ? undefined : Number(m[1]);
}

test("heartbeats: a and b see each other up, with RTT, in metrics and /healthz; b's loss and return", async (t) => {
  await eventually(
    () => peerA.heartbeat.health("b")?.state === "up" && peerB.heartbeat.health("a")?.state === "up",
    5_000,
  );
  assert.ok(peerA.heartbeat.health("b")!.rttMs! > 0);
  assert.ok(peerB.heartbeat.health("a")!.rttMs! > 0);
  assert.ok(peerA.heartbeat.health("b")!.applied.b !== undefined, "b's applied sequence is known to a");

  const text = await metricsOf(peerA);
  assert.equal(gauge(text, "meridian_peer_up", "b"), 1);
  assert.ok(gauge(text, "meridian_peer_rtt_seconds", "b")! > 0);
  assert.match(text, /^meridian_peer_process_cpu_user_seconds_total\{region="a"\} /m);
  const healthz = (await (await fetch(`${peerA.metrics}/healthz`)).json()) as {
    region: string;
    peers: Array<{ peer: string; up: boolean; rttSeconds: number }>;
  };
  assert.equal(healthz.region, "a");
  assert.equal(healthz.peers.length, 1);
  assert.equal(healthz.peers[0]!.peer, "b");
  assert.equal(healthz.peers[0]!.up, true);
  assert.ok(healthz.peers[0]!.rttSeconds > 0);

  // b stops: a marks it down within about three intervals.
  const stoppedAt = Date.now();
  await peerB.close();
  await eventually(() => peerA.heartbeat.health("b")?.state === "down", 5_000, 10);
  const down = changesAtA.find((c) => c.peer === "b" && c.to === "down")!;
  const took = down.t - stoppedAt;
  assert.ok(took <= 3 * INTERVAL + 600, `marked down after ${took} ms`);
  assert.equal(gauge(await metricsOf(peerA), "meridian_peer_up", "b"), 0);

  // b returns, now as a process (the same data and view directories, the same port).
  const child = await spawnPeer(t, "b");
  assert.equal(child.line.region, "b");
  assert.equal(child.line.grpc, bAddress);
  assert.match(child.line.metrics, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(child.line.pid, child.process.pid);
  await eventually(() => peerA.heartbeat.health("b")?.state === "up", 8_000);
  await eventually(async () => {
    const h = (await (await fetch(`${child.line.metrics}/healthz`)).json()) as {
      peers: Array<{ peer: string; up: boolean }>;
    };
    return h.peers[0]?.peer === "a" && h.peers[0]?.up === true;
  }, 5_000);
  assert.deepEqual(
    changesAtA.filter((c) => c.peer === "b").map((c) => `${c.from}>${c.to}`),
    ["unknown>up", "up>down", "down>up"],
  );

  // SIGTERM: a graceful close, exit code 0.
  const exit = new Promise<number | null>((resolve) => child.process.once("exit", (code) => resolve(code)));
  child.process.kill("SIGTERM");
  assert.equal(await exit, 0);
  await eventually(() => peerA.heartbeat.health("b")?.state === "down", 5_000);
});

async function spawnPeer(
  t: { after(fn: () => Promise<void>): void },
  region: string,
): Promise<{ process: ChildProcess; line: { region: string; grpc: string; metrics: string; pid: number } }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, "dist", "control-plane", "peer.js")], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      MERIDIAN_REGION: region,
      MERIDIAN_MESH: meshFile,
      MERIDIAN_DATA_DIR: configB.dataDir,
      MERIDIAN_HEARTBEAT_INTERVAL_MS: String(INTERVAL),
      MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
    },
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  cleanupStack(t)(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`peer did not start: ${stderr}`)), 15_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`peer exited with ${code}: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (l) => {
      if (l.includes('"listening"')) {
        clearTimeout(timer);
        resolve(l);
      }
    });
  });
  return { process: child, line: JSON.parse(line) };
}
