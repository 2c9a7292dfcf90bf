/**
 * The start-up grace (protocol/startup-grace.ts, issue 11 finding 10) keeps
 * start-up quiet without hiding faults: a peer never seen up, or a fence
 * "no other region has answered yet", is logged at info while the grace
 * lasts, and at warn once if it outlasts it; a peer that was up and goes
 * down is a warn at once, grace or not. Short graces (1.5 s) stand in for
 * the 30 s default; the peer of region a is real (gRPC, its own log on a
 * real nats-server) and region b never starts.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { ensureMeshCerts } from "../../cli/certs.js";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import { MeshLink } from "../../node/mesh-link.js";
import type { Mesh } from "../../protocol/mesh.js";
import {
  cleanupStack,
  eventually,
  freePort,
  silentLogger,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { loadPeerConfig } from "../config.js";
import { Heartbeat, logPeerChanges } from "../heartbeat.js";
import { startPeer } from "../peer.js";

const GRACE_MS = 1_500;

interface Line {
  level: number;
  msg: string;
  peer?: string;
  fence?: string;
}

/** A logger that keeps every line it writes. */
function capture(): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const at = (lines: Line[], level: number) => lines.filter((l) => l.level === level).map((l) => l.msg);

async function meshOfTwo(
  after: Parameters<typeof startTestNats>[0],
): Promise<{ meshFile: string; root: string }> {
  const nats = await startTestNats(after);
  const root = tempDir(after);
  const certs = await ensureMeshCerts(join(root, "certs"), ["a", "b"]);
  const mesh: Mesh = {
    regions: await Promise.all(
      ["a", "b"].map(async (name) => ({
        name,
        registry: `http://127.0.0.1:${await freePort()}`,
        nats: nats.url,
        grpc: `127.0.0.1:${await freePort()}`,
      })),
    ),
    tls: { ca: certs.ca, dir: certs.dir },
  };
  const meshFile = join(root, "mesh.json");
  writeFileSync(meshFile, JSON.stringify(mesh));
  return { meshFile, root };
}

test("a peer that never starts: info within the grace, one warn when it ends", async (t) => {
  const after = cleanupStack(t);
  const { meshFile } = await meshOfTwo(after);
  const mesh = JSON.parse(readFileSync(meshFile, "utf8")) as Mesh;
  // A real gRPC client of b's address, where nothing listens: refused, as while b starts.
  const toB = new PeerClient("b", mesh.regions[1]!.grpc, peerCredentials(mesh, "a"));
  after(() => toB.close());
  const heartbeat = new Heartbeat({
    peers: ["b"],
    probe: (_peer, timeoutMs, signal) => toB.status("a", { timeoutMs, signal }).then(() => ({})),
    intervalMs: 100,
    missesToDown: 3,
  });
  const { logger, lines } = capture();
  const stop = logPeerChanges(heartbeat, logger, GRACE_MS);
  heartbeat.start();
  after(async () => {
    stop();
    await heartbeat.stop();
  });
  await eventually(() => at(lines, 30).includes("peer not up yet"), 5_000, 20);
  assert.deepEqual(at(lines, 40), [], "nothing at warn while b may still be starting");
  await eventually(() => at(lines, 40).length > 0, GRACE_MS + 5_000, 20);
  assert.deepEqual(at(lines, 40), ["peer still down after start-up"]);
  assert.equal(lines.find((l) => l.level === 40)!.peer, "b");
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(at(lines, 40).length, 1, "said once");
});

test("a peer that was up and goes down within the grace: warn at once", async (t) => {
  const after = cleanupStack(t);
  let answering = true;
  const heartbeat = new Heartbeat({
    peers: ["b"],
    // Reaching the branch a real peer takes when it stops answering after it has answered.
    probe: async () => {
      if (!answering) throw new Error("peer unavailable");
      return {};
    },
    intervalMs: 50,
    missesToDown: 2,
  });
  const { logger, lines } = capture();
  const stop = logPeerChanges(heartbeat, logger, 60_000);
  heartbeat.start();
  after(async () => {
    stop();
    await heartbeat.stop();
  });
  await eventually(() => at(lines, 30).includes("peer up"), 5_000, 10);
  answering = false;
  await eventually(() => at(lines, 40).includes("peer down"), 5_000, 10);
  assert.ok(!at(lines, 30).includes("peer not up yet"));
});

test("the node's fence while no other region answers: info within the grace, one warn when it ends", async (t) => {
  const after = cleanupStack(t);
  const { meshFile, root } = await meshOfTwo(after);
  const peer = await startPeer(
    loadPeerConfig({
      overrides: {
        region: "a",
        meshFile,
        dataDir: join(root, "a"),
        heartbeat: { intervalMs: 100 },
        logLevel: "silent",
      },
    }),
    silentLogger,
  );
  after(() => peer.close());
  const mesh = JSON.parse(readFileSync(meshFile, "utf8")) as Mesh;
  const { logger, lines } = capture();
  const link = new MeshLink({ region: "a", mesh, keepaliveMs: 100, logger, startupGraceMs: GRACE_MS });
  link.start();
  after(() => link.close());
  await eventually(() => at(lines, 30).includes("home writes refused while starting"), 5_000, 20);
  assert.deepEqual(at(lines, 40), []);
  assert.match(link.fence(), /^starting: no other region has answered yet/);
  await eventually(() => at(lines, 40).length > 0, GRACE_MS + 5_000, 20);
  assert.deepEqual(at(lines, 40), ["home writes still refused after start-up"]);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(at(lines, 40).length, 1, "said once");
});
