/**
 * The front door: one OCI endpoint for clients in front of every region. It
 * maps each client to a region, sends reads to the nearest healthy region and
 * writes to the repository's home region, keeps upload sessions where they
 * started, honours read-your-writes tokens, and stops sending traffic to a
 * region within 3 heartbeat intervals of its going dark.
 *
 *   node dist/control-plane/front-door.js [--config FILE]   (settings: control-plane/front-door-config.ts)
 *
 * Once listening it prints one JSON line to stdout:
 *   {"event":"listening","frontDoor":"http://127.0.0.1:PORT","pid":…}
 * (https:// with `tls.certFile`/`tls.keyFile`; SIGHUP then re-reads them).
 * SIGINT/SIGTERM close it gracefully (node/lifecycle.ts). The decisions are the pure functions of
 * ./front-door-routing.ts; this file is the IO around them.
 *
 * Its parts: ./front-door-requests.ts (where a request goes, read-your-writes),
 * ./front-door-proxy.ts (forwarding, first-byte bounds, retries, headers),
 * ./front-door-health.ts (probes, region state), ./front-door-homes.ts (home
 * regions), ./front-door-healthz.ts (`/healthz`), ./front-door-ui.ts (the
 * dashboard at `/ui/`); this file starts them, and
 * the HTTP server, metrics and the process around them.
 *
 * Its own port also serves `GET /metrics` (`meridian_front_door_routes_total
 * {client_region, region, reason}` — every routing decision, including each
 * retry; a refusal counts with `region="none"` — and
 * `meridian_front_door_region_up{region}`,
 * `meridian_front_door_node_up{region,node}` and
 * `meridian_front_door_node_requests_total{region,node}` for each registry
 * node of a region (mesh.json may list several: ./front-door-nodes.ts),
 * process metrics prefixed `meridian_front_door_`) and `GET /healthz` (JSON:
 * each region's up, RTT, misses, applied, epoch, fence and nodes; the homes
 * in use). With auth (the regions
 * check credentials), callers without credentials get liveness only
 * (`status`, each region's `up`): the homes name private repositories. The
 * whole view needs a system admin's credentials, checked by an up region.
 *
 * Client input never makes a 500: whatever the client controls (query,
 * headers, target) that does not parse is a 4xx with the OCI envelope,
 * logged at debug without a stack; only the front door's own failures are
 * errors.
 *
 * Slow and greedy clients (protocol/http-limits.ts, settings `http.*`): no
 * total request deadline, but a client connection on which no byte moves
 * for `http.idleTimeoutMs` is cut; headers must arrive within
 * `http.headersTimeoutMs`; at most `http.maxConnectionsPerClient`
 * connections per source address (then 429 and close). When a client's
 * response is over (answered, gone, or cut idle) the request to the region
 * is destroyed with its socket if it is still under way; a response that
 * arrives before the client's whole body was sent (a 401) ends the body's
 * forwarding and closes the client's connection after the answer.
 * Requests Node's HTTP parser refuses before any handler (headers over its
 * limit: 431, headers not in within `http.headersTimeoutMs`: 408, anything
 * unparseable: 400) are answered in the OCI error envelope, as the node
 * answers them (protocol/oci-errors.ts), and the connection is closed.
 */
import { readFileSync } from "node:fs";
import { type Agent, createServer } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { Server as TlsServer } from "node:tls";
import { parseArgs } from "node:util";
import { type Logger, pino } from "pino";
import { Counter, Gauge, Registry as MetricsRegistry } from "prom-client";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { ServiceToken } from "../mesh-client/service-token.js";
import { runIfMain, serveUntilStopped } from "../node/lifecycle.js";
import { ConnectionCounter, limitConnections, serverTimeouts } from "../protocol/http-limits.js";
import { loggerOptions } from "../protocol/logging.js";
import { registriesOf } from "../protocol/mesh.js";
import { answerClientError } from "../protocol/oci-errors.js";
import { collectProcessMetrics } from "../protocol/process-metrics.js";
import { type FrontDoorConfig, FrontDoorConfigError, loadFrontDoorConfig } from "./front-door-config.js";
import { type ProbeTarget, RegionMonitor } from "./front-door-health.js";
import { createHealthz } from "./front-door-healthz.js";
import { HomeCache } from "./front-door-homes.js";
import { createForwarder } from "./front-door-proxy.js";
import { createRequestHandler } from "./front-door-requests.js";
import type { RegionState } from "./front-door-routing.js";
import { createFrontDoorUi } from "./front-door-ui.js";
import { registryAgent } from "./registry-http.js";

export interface RunningFrontDoor {
  /** http(s)://host:port of the front door (OCI API, /metrics, /healthz). */
  url: string;
  /** Every region's state now. */
  regions(): RegionState[];
  /** Re-read `tls.certFile` and `tls.keyFile` for new connections (throws if unreadable; no-op without TLS). */
  reloadTls(): void;
  close(): Promise<void>;
}

/** Start a front door in this process (tests use it directly; `main` wraps it). */
export async function startFrontDoor(
  config: Readonly<FrontDoorConfig>,
  logger: Logger,
): Promise<RunningFrontDoor> {
  const log = logger.child({ component: "front-door" });
  const regionNames = config.mesh.regions.map((r) => r.name);
  // Each region's registry nodes (one, or mesh.json's list: ./front-door-nodes.ts), without trailing slashes.
  const nodeUrls = new Map(
    config.mesh.regions.map((r) => [r.name, registriesOf(r).map((u) => u.replace(/\/+$/, ""))]),
  );
  const registryOrigins = new Map(
    [...nodeUrls].flatMap(([region, urls]) => urls.map((u) => [new URL(u).origin, region] as const)),
  );
  const { certFile, keyFile } = config.tls;
  // The listener's certificate and key, read at start and on reloadTls.
  const listenTls =
    certFile === undefined || keyFile === undefined
      ? undefined
      : () => ({ cert: readFileSync(certFile), key: readFileSync(keyFile) });

  // ---- metrics
  const metrics = new MetricsRegistry();
  collectProcessMetrics(metrics, "meridian_front_door_");
  const routes = new Counter({
    name: "meridian_front_door_routes_total",
    help: "Routing decisions by the client's region, the region chosen (none for a refusal) and why",
    labelNames: ["client_region", "region", "reason"] as const,
    registers: [metrics],
  });
  const upGauge = new Gauge({
    name: "meridian_front_door_region_up",
    help: "1 while the front door routes to the region, 0 while it is down",
    labelNames: ["region"] as const,
    registers: [metrics],
  });
  for (const r of regionNames) upGauge.set({ region: r }, 0);
  const nodeUpGauge = new Gauge({
    name: "meridian_front_door_node_up",
    help: "1 while the front door sends requests to the registry node, 0 while it is down",
    labelNames: ["region", "node"] as const,
    registers: [metrics],
  });
  for (const [region, urls] of nodeUrls) for (const node of urls) nodeUpGauge.set({ region, node }, 0);
  const nodeRequests = new Counter({
    name: "meridian_front_door_node_requests_total",
    help: "Attempts at each registry node (every retry included)",
    labelNames: ["region", "node"] as const,
    registers: [metrics],
  });

  // ---- health
  const credentials = peerCredentials(config.mesh, config.tls.identity);
  const targets: ProbeTarget[] = config.mesh.regions.map((r) => ({
    region: r.name,
    nodes: nodeUrls.get(r.name)!.map((registry) => ({
      registry,
      agent: registryAgent(config.mesh, registry, { keepAlive: true }),
    })),
    client: new PeerClient(r.name, r.grpc, credentials, config.tls.identity, {
      // The peer must hold region r's certificate (DNS:r), whatever address it is reached at.
      "grpc.ssl_target_name_override": r.name,
      // A returning region must be noticed within an interval or two, not after minutes of backoff.
      "grpc.initial_reconnect_backoff_ms": Math.min(1_000, config.heartbeat.intervalMs),
      "grpc.max_reconnect_backoff_ms": Math.max(1_000, 2 * config.heartbeat.intervalMs),
    }),
  }));
  const healthLog = log.child({ component: "health" });
  // The dashboard (./front-door-ui.ts) is told at once when a region goes down or up.
  let healthChanged: () => void = () => undefined;
  const monitor = new RegionMonitor({
    targets,
    intervalMs: config.heartbeat.intervalMs,
    identity: config.tls.identity,
    onChange: (state) => {
      upGauge.set({ region: state.region }, state.up ? 1 : 0);
      healthChanged();
      if (state.up) healthLog.info({ region: state.region }, "region up");
      else healthLog.warn({ region: state.region, err: state.lastError }, "region down");
    },
    onNodeChange: (state) => {
      nodeUpGauge.set({ region: state.region, node: state.node }, state.up ? 1 : 0);
      if (state.up) healthLog.info({ region: state.region, node: state.node }, "node up");
      else healthLog.warn({ region: state.region, node: state.node, err: state.lastError }, "node down");
    },
  });
  const homes = new HomeCache(
    () => targets.filter((t) => monitor.states.get(t.region)?.up).map((t) => monitor.nodeOf(t.region)!),
    Math.max(500, 2 * config.heartbeat.intervalMs),
    log.child({ component: "homes" }),
    await ServiceToken.fromKeyFile(config.auth.tokenKeyFile, "front-door", config.auth.service, log),
  );
  // Nodes honour X-Forwarded-* only from a proxy that proves itself with the mesh key (node/http/forwarded.ts).
  const proxyProof = await ServiceToken.proxyProof(config.auth.tokenKeyFile, config.auth.service, log);
  // One keep-alive agent per node.
  const agents = new Map<string, Agent>(
    [...nodeUrls.values()]
      .flat()
      .map((node) => [
        node,
        registryAgent(config.mesh, node, { keepAlive: true, maxFreeSockets: 64, scheduling: "lifo" }),
      ]),
  );

  const closeClients = () => {
    for (const t of targets) {
      t.client.close();
      for (const n of t.nodes) n.agent.destroy();
    }
    for (const a of agents.values()) a.destroy();
  };
  const proxyLog = log.child({ component: "proxy" });

  const forward = createForwarder({
    agents,
    registryOrigins,
    connectTimeoutMs: config.heartbeat.intervalMs,
    forwardedProto: listenTls === undefined ? "http" : "https",
    proxyProof,
  });
  const serveHealthz = createHealthz({ config, regionNames, targets, monitor, homes, proxyProof });
  const ui = createFrontDoorUi({
    config,
    regionNames,
    targets,
    monitor,
    homes,
    proxyProof,
    log: log.child({ component: "dashboard" }),
  });
  healthChanged = () => ui.push();
  const onRequest = createRequestHandler({
    config,
    regionNames,
    monitor,
    homes,
    routes,
    nodeRequests,
    metrics,
    serveHealthz,
    serveUi: ui.serve,
    forward,
    log: proxyLog,
  });
  // Slow and greedy clients (protocol/http-limits.ts): no total deadline, an idle timer per connection.
  const serverOptions = serverTimeouts(config.http);
  const server =
    listenTls === undefined
      ? createServer(serverOptions, onRequest)
      : https.createServer({ ...serverOptions, ...listenTls() }, onRequest);
  server.setTimeout(config.http.idleTimeoutMs);
  // Requests Node's parser refuses (oversized headers, malformed, headers too slow): the OCI envelope too.
  server.on("clientError", answerClientError);
  limitConnections(server, new ConnectionCounter(config.http), listenTls !== undefined, (address, refused) =>
    proxyLog.warn({ address, refused }, "connections refused: too many from one address"),
  );
  try {
    await monitor.start();
    await homes.refresh();
    homes.start(config.rulesRefreshMs);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await monitor.stop();
    await homes.stop();
    closeClients();
    throw err;
  }

  const port = (server.address() as AddressInfo).port;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  let closed: Promise<void> | undefined;
  return {
    url: `${listenTls === undefined ? "http" : "https"}://${host}:${port}`,
    regions: () => regionNames.map((r) => monitor.states.get(r)!),
    reloadTls() {
      if (listenTls !== undefined) (server as TlsServer).setSecureContext(listenTls());
    },
    close() {
      closed ??= (async () => {
        // Stop taking requests, let those under way finish for a moment, then cut them.
        ui.close(); // ends the dashboard's event streams, which would otherwise hold the drain
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const force = setTimeout(() => server.closeAllConnections(), 2_000);
        await drained;
        clearTimeout(force);
        await monitor.stop();
        await homes.stop();
        closeClients();
      })();
      return closed;
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string" } } });
  let config: Readonly<FrontDoorConfig>;
  try {
    config = loadFrontDoorConfig({ file: values.config, env: process.env });
  } catch (err) {
    if (err instanceof FrontDoorConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino(loggerOptions(config.logLevel), pino.destination(2));
  const frontDoor = await startFrontDoor(config, logger);
  serveUntilStopped(frontDoor, {
    name: "front door",
    logger,
    listening: { frontDoor: frontDoor.url },
    ...(config.tls.certFile === undefined ? {} : { reloadTls: () => frontDoor.reloadTls() }),
  });
}

runIfMain(import.meta.url, "front door", main);
