/**
 * The control-plane peer process of one region: the Peer gRPC service over
 * the region's blob store and its own view of the region's log, the standard
 * health service, heartbeats to every other region's peer, and a small HTTP
 * server for `/metrics` (Prometheus) and `/healthz` (JSON).
 *
 * One PeerClient per other region carries both the heartbeat and the calls
 * made for this region's nodes (MeshFetch: fetch on miss, sync(k)), so the
 * heartbeat keeps the channel those calls use connected. The write fence
 * served in Status (control-plane/fence.ts) is computed on each call from the
 * heartbeats and the view's home tables; WatchStatus pushes it to the
 * region's nodes and worker when it changes (control-plane/status-feed.ts).
 *
 *   node dist/control-plane/peer.js [--config FILE]   (settings: control-plane/config.ts)
 *
 * Once listening it prints one JSON line to stdout:
 *   {"event":"listening","region":…,"grpc":"127.0.0.1:PORT","metrics":"http://127.0.0.1:PORT","pid":…}
 *
 * Between peers: mutual TLS under the mesh CA (protocol/mesh.ts), plaintext
 * only with `"insecure": true` in the mesh. SIGINT/SIGTERM close gracefully.
 */
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { type Logger, pino } from "pino";
import { Registry as MetricsRegistry } from "prom-client";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { peerPackage } from "../mesh-client/proto.js";
import { ServiceToken } from "../mesh-client/service-token.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import { openBlobStore } from "../node/data/open-blob-store.js";
import { privateDirs } from "../node/data/private-files.js";
import { catchUp, followLog } from "../node/data/registry.js";
import { MetadataView } from "../node/data/view.js";
import { runIfMain, serveUntilStopped } from "../node/lifecycle.js";
import { loggerOptions } from "../protocol/logging.js";
import { regionOf, registriesOf } from "../protocol/mesh.js";
import { PEER_FLOW_CONTROL_WINDOW } from "../protocol/peer.js";
import { linkBandwidth, type Policy, parsePolicy } from "../protocol/policy.js";
import { collectProcessMetrics } from "../protocol/process-metrics.js";
import { startAutoFailover } from "./auto-failover.js";
import { LinkBudgets } from "./bandwidth.js";
import { createBlobChannel, listenPeer } from "./blob-channel.js";
import { loadPeerConfig, type PeerConfig, PeerConfigError } from "./config.js";
import { fenceReason, highestEpoch } from "./fence.js";
import { HealthService, healthPackage } from "./health.js";
import { Heartbeat, logPeerChanges, type PeerHealth, type Probe } from "./heartbeat.js";
import { MeshFetch } from "./mesh-fetch.js";
import { peerGauges } from "./peer-metrics.js";
import { createPeerService, statusReply } from "./peer-service.js";
import { registryAgent } from "./registry-http.js";
import { StatusFeed } from "./status-feed.js";
import { serverCredentials } from "./tls.js";

/** How long a lookup that missed waits for the peer's view to catch up with its log (peer-service.ts `caughtUp`). */
const CATCH_UP_ON_MISS_MS = 1_000;

export interface RunningPeer {
  region: string;
  /** host:port the gRPC server listens on. */
  grpc: string;
  /** http://host:port of /metrics and /healthz. */
  metrics: string;
  view: MetadataView;
  heartbeat: Heartbeat;
  /** Why this region must not accept home writes now ("" when it may), as Status reports it. */
  fence(): string;
  close(): Promise<void>;
}

/** The software version reported by Status (package.json's). */
export function peerVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [join(here, "..", "package.json"), join(here, "..", "..", "package.json")]) {
    try {
      const pkg = JSON.parse(readFileSync(candidate, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "meridian" && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return "unknown";
}

/** Start a peer in this process (tests use it directly; `main` wraps it). */
export async function startPeer(config: Readonly<PeerConfig>, logger: Logger): Promise<RunningPeer> {
  const log = logger.child({ region: config.region });
  const cleanup: Array<() => Promise<void> | void> = [];
  // From here on the peer service answers failures UNAVAILABLE, not INTERNAL (terminal for a caller's event).
  let closing = false;
  const closeAll = async () => {
    closing = true;
    let first: unknown;
    for (const step of cleanup.reverse()) {
      try {
        await step();
      } catch (err) {
        first ??= err;
      }
    }
    cleanup.length = 0;
    if (first !== undefined) throw first;
  };
  try {
    // ---- data: the region's shared store, this peer's own view of the region's log
    await mkdir(config.view.dir, { recursive: true });
    const store = await openBlobStore(config.storage);
    const view = new MetadataView(config.view.dir);
    await view.open();
    cleanup.push(() => view.close());
    const eventLog = JetStreamLog.open({
      servers: config.nats.servers,
      region: config.region,
      name: `meridian-peer-${config.region}-${process.pid}`,
      nats: config.nats,
      logger: log.child({ component: "log" }),
    });
    cleanup.push(() => eventLog.close());
    const follower = followLog(eventLog, view, log.child({ component: "view" }));
    cleanup.push(() => follower.stop());
    await catchUp(eventLog, view, log);

    // ---- clients of every other region's peer (heartbeats and mesh calls share them)
    const others = config.mesh.regions.filter((r) => r.name !== config.region);
    const credentials = peerCredentials(config.mesh, config.region);
    const clients = new Map<string, PeerClient>();
    for (const r of others) {
      clients.set(
        r.name,
        new PeerClient(r.name, r.grpc, credentials, config.region, {
          // Check that the server holds region r's certificate (DNS:r), whatever address it is reached at.
          "grpc.ssl_target_name_override": r.name,
          // A heartbeat must notice a returning peer soon, not after minutes of backoff.
          "grpc.initial_reconnect_backoff_ms": Math.min(1_000, config.heartbeat.intervalMs),
          "grpc.max_reconnect_backoff_ms": Math.max(1_000, 2 * config.heartbeat.intervalMs),
        }),
      );
    }
    cleanup.push(() => {
      for (const c of clients.values()) c.close();
    });

    // ---- gRPC: Peer + health
    let heartbeatRef: Heartbeat | undefined;
    const fence = () =>
      fenceReason({
        now: Date.now(),
        leaseMs: config.failover.leaseMs,
        epoch: highestEpoch(view.content.configs()),
        others: others.map((r) => {
          const h = heartbeatRef?.health(r.name);
          return { region: r.name, lastSeenAt: h?.lastSeenAt, epoch: h?.epoch ?? 0 };
        }),
      });
    const meshFetch = new MeshFetch({
      region: config.region,
      mesh: config.mesh,
      peers: clients,
      // Regions not heard from yet are left out: "never measured", tried after the measured ones.
      health: () =>
        (heartbeatRef?.snapshot() ?? [])
          .filter((h) => h.state !== "unknown")
          .map((h) => ({ region: h.peer, up: h.state === "up", rttMs: h.rttMs })),
      logger: log.child({ component: "mesh-fetch" }),
    });
    // Bandwidth budgets of the links out of this region, from the policies: read at start and
    // again whenever the view applies a policy change (it publishes after the commit), not on a
    // timer: a resting peer read and parsed every policy every 2 s (issue 14, cost at rest).
    let policies: Policy[] = [];
    let policyReads = 0;
    const refreshPolicies = async () => {
      // Reads may overlap; only the latest one started may set the budgets (an older one saw less).
      const read = ++policyReads;
      const out: Policy[] = [];
      for (const { policy } of await view.admin.policies()) {
        try {
          out.push(parsePolicy(policy));
        } catch {
          // a malformed stored policy: the workers log it; it sets no budget
        }
      }
      if (read === policyReads) policies = out;
    };
    const stopPolicyWatch = view.applied.subscribe((event) => {
      if (event.type === "policy.set" || event.type === "policy.deleted")
        void refreshPolicies().catch((err) => log.warn({ err }, "policies not re-read"));
    });
    cleanup.push(stopPolicyWatch);
    await refreshPolicies();
    const budgets = new LinkBudgets((to) => linkBandwidth(policies, config.region, to));
    // Status pushed to this region's nodes and worker (WatchStatus); re-checked on every
    // heartbeat update and failover configuration below, and when the lease would lapse.
    const statusOptions = {
      region: config.region,
      view,
      version: peerVersion(),
      // The heartbeat starts below; until then Status reports no peers.
      peerHealth: () =>
        (heartbeatRef?.snapshot() ?? []).map((h) => ({
          region: h.peer,
          up: h.state === "up",
          rttMs: h.rttMs,
          lastSeenAtMs: h.lastSeenAt,
        })),
      fence,
      leaseMs: config.failover.leaseMs,
    };
    const feed = new StatusFeed({
      status: () => statusReply(statusOptions, 0),
      fence,
      fenceLapsesAt: () => {
        let lastSeen: number | undefined;
        for (const r of others) {
          const seen = heartbeatRef?.health(r.name)?.lastSeenAt;
          if (seen !== undefined && (lastSeen === undefined || seen > lastSeen)) lastSeen = seen;
        }
        return lastSeen === undefined ? undefined : lastSeen + config.failover.leaseMs;
      },
      logger: log.child({ component: "status-feed" }),
    });
    const stopFenceWatch = view.applied.subscribe((event) => {
      if (event.type === "repository.configured") feed.changed();
    });
    cleanup.push(stopFenceWatch);
    const health = new HealthService({ "": "SERVING", "meridian.peer.v1.Peer": "SERVING" });
    const server = new grpc.Server({
      "grpc-node.flow_control_window": PEER_FLOW_CONTROL_WINDOW,
      // No channelz (nothing serves or reads it): per-call trackers on every Status (issue 14, cost at rest).
      "grpc.enable_channelz": 0,
    });
    server.addService(
      peerPackage().meridian.peer.v1.Peer.service,
      createPeerService({
        ...statusOptions,
        store,
        logger: log.child({ component: "peer-service" }),
        budgets,
        meshFetch,
        watchStatus: (call) => feed.watch(call),
        pingStatus: (call) => feed.pings(call),
        // A miss waits (at most CATCH_UP_ON_MISS_MS) for the view to apply what the log holds now.
        caughtUp: async () => view.waitFor(await eventLog.lastSeq(), CATCH_UP_ON_MISS_MS),
        closing: () => closing,
        // Regions may call every RPC; the front door's certificate only Status (peer-service.ts).
        regions: config.mesh.tls === undefined ? undefined : config.mesh.regions.map((r) => r.name),
      }),
    );
    server.addService(healthPackage().grpc.health.v1.Health.service, health.handlers);
    let port: number;
    if (config.mesh.tls !== undefined) {
      // With TLS, the port also serves the byte channel for blob data (blob-channel.ts): one
      // listener does the mutual TLS and hands each connection to gRPC or to it by ALPN.
      const blobs = createBlobChannel({
        store,
        view,
        budgets,
        regions: config.mesh.regions.map((r) => r.name),
        logger: log.child({ component: "blob-channel" }),
        closing: () => closing,
      });
      const listener = await listenPeer(server, blobs, config.mesh, config.region, config.grpc.listen, log);
      port = listener.port;
      cleanup.push(() => shutdownGrpc(server, health));
      cleanup.push(() => listener.close());
    } else {
      port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(config.grpc.listen, serverCredentials(config.mesh, config.region), (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
      cleanup.push(() => shutdownGrpc(server, health));
    }
    // Runs before the shutdown above (cleanup runs last-in first): watchers' streams end at once.
    cleanup.push(() => feed.close());
    const grpcAddress = `${config.grpc.listen.slice(0, config.grpc.listen.lastIndexOf(":"))}:${port}`;

    // ---- heartbeats to every other region's peer
    const probe: Probe = async (peer, timeoutMs, signal) => {
      // A ping on the long-lived PingStatus stream, not a call of its own (mesh-client/status-pings.ts).
      const reply = await clients.get(peer)!.pingStatus(config.region, { timeoutMs, signal });
      return {
        applied: reply.applied,
        epoch: reply.epoch,
        peers: reply.peers.map((p) => ({
          region: p.region,
          up: p.up,
          rttMs: p.rttMs,
          lastSeenAtMs: p.lastSeenAtMs,
        })),
      };
    };
    const heartbeat: Heartbeat = new Heartbeat({
      peers: others.map((r) => r.name),
      probe,
      intervalMs: config.heartbeat.intervalMs,
      timeoutMs: config.heartbeat.timeoutMs,
      missesToDown: config.heartbeat.misses,
    });

    // ---- metrics
    const metrics = new MetricsRegistry();
    metrics.setDefaultLabels({ region: config.region });
    collectProcessMetrics(metrics, "meridian_peer_");
    const { upGauge, rttGauge } = peerGauges(metrics, fence);
    for (const r of others) upGauge.set({ peer: r.name }, 0);
    heartbeat.onUpdate((h) => {
      upGauge.set({ peer: h.peer }, h.state === "up" ? 1 : 0);
      if (h.rttMs !== undefined) rttGauge.set({ peer: h.peer }, h.rttMs / 1000);
    });
    // A peer still starting is not a fault for the start-up grace (protocol/startup-grace.ts).
    const stopChangeLog = logPeerChanges(
      heartbeat,
      log.child({ component: "heartbeat" }),
      config.startupGraceMs,
    );
    heartbeatRef = heartbeat;
    const stopFeedUpdates = heartbeat.onUpdate(() => feed.changed());
    const stopFeedChanges = heartbeat.onChange(() => feed.peersChanged());
    cleanup.push(() => {
      stopFeedUpdates();
      stopFeedChanges();
    });
    heartbeat.start();
    cleanup.push(() => {
      stopChangeLog();
      return heartbeat.stop();
    });

    // ---- automatic failover (off unless failover.autoAfterMs is set)
    if (config.failover.autoAfterMs > 0) {
      // Every node of the region (mesh.json may list several, one scheme for all): the next is asked
      // when one does not answer (auto-failover.ts NodeTurns).
      const registry = registriesOf(regionOf(config.mesh, config.region));
      const agent = registryAgent(config.mesh, registry[0]!);
      const token = await ServiceToken.fromKeyFile(
        config.auth.tokenKeyFile,
        `peer-${config.region}`,
        config.auth.service,
        log,
      );
      const stop = startAutoFailover({
        authorization: token === undefined ? undefined : () => token.header(),
        self: config.region,
        regions: config.mesh.regions.map((r) => r.name),
        registry,
        agent,
        afterMs: config.failover.autoAfterMs,
        everyMs: config.heartbeat.intervalMs,
        health: () => heartbeat.snapshot(),
        logger: log.child({ component: "auto-failover" }),
      });
      cleanup.push(() => {
        stop();
        agent.destroy();
      });
    }

    const http = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
      } else if (path === "/metrics") {
        metrics.metrics().then(
          (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
          (err) => {
            log.error({ err }, "metrics failed");
            res.writeHead(500).end();
          },
        );
      } else if (path === "/healthz") {
        const body = {
          region: config.region,
          serving: true,
          applied: { [config.region]: view.appliedSeq },
          epoch: highestEpoch(view.content.configs()),
          fence: fence(),
          peers: heartbeat.snapshot().map(describe),
        };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      http.once("error", reject);
      http.listen(config.metrics.port, config.metrics.host, () => resolve());
    });
    cleanup.push(() => closeHttp(http));
    const metricsPort = (http.address() as AddressInfo).port;
    const metricsHost = config.metrics.host.includes(":") ? `[${config.metrics.host}]` : config.metrics.host;

    let closed: Promise<void> | undefined;
    return {
      region: config.region,
      grpc: grpcAddress,
      metrics: `http://${metricsHost}:${metricsPort}`,
      view,
      heartbeat,
      fence,
      close() {
        closed ??= closeAll();
        return closed;
      },
    };
  } catch (err) {
    // Release what started, but never let a stuck step hide the startup error.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closeAll().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 5_000);
      }),
    ]);
    clearTimeout(timer);
    throw err;
  }
}

function describe(h: PeerHealth) {
  return {
    peer: h.peer,
    state: h.state,
    up: h.state === "up",
    rttSeconds: h.rttMs === undefined ? null : h.rttMs / 1000,
    misses: h.misses,
    lastSeenAt: h.lastSeenAt === undefined ? null : new Date(h.lastSeenAt).toISOString(),
    lastError: h.lastError ?? null,
    applied: h.applied,
    epoch: h.epoch,
  };
}

/** Refuse new calls, let running ones finish for a moment, then cut them. */
async function shutdownGrpc(server: grpc.Server, health: HealthService): Promise<void> {
  health.shutdown();
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2_000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

function closeHttp(http: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    http.close(() => resolve());
    http.closeAllConnections();
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string" } } });
  let config: Readonly<PeerConfig>;
  try {
    config = loadPeerConfig({ file: values.config, env: process.env });
  } catch (err) {
    if (err instanceof PeerConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  privateDirs([config.dataDir, config.view.dir, config.storage.root]);
  const logger = pino(loggerOptions(config.logLevel), pino.destination(2));
  const peer = await startPeer(config, logger);
  serveUntilStopped(peer, {
    name: "peer",
    logger,
    listening: { region: config.region, grpc: peer.grpc, metrics: peer.metrics },
  });
}

runIfMain(import.meta.url, "peer", main);
