/**
 * The replication worker process of one region.
 *
 *   node dist/replication/main.js [--config FILE]
 *
 * Settings: an optional JSON file, then the environment; every setting, its
 * variable and default is in replication/config.ts (`WORKER_SETTINGS`) and
 * the README's configuration reference. See worker.ts and copy.ts for what
 * they bound. HTTP: /metrics, /links (each link's state,
 * replication/links.ts; `endpointLinks`: each external endpoint link's,
 * replication/endpoint-status.ts), /failures (`endpoints`: failing
 * endpoint links), /healthz.
 * Once running it prints {"event":"listening","region":…,"metrics":…,"pid":…}.
 */
import { mkdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type Logger, pino } from "pino";
import { Registry as MetricsRegistry } from "prom-client";
import { blobChannelTls } from "../mesh-client/blob-channel.js";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import { NatsConnectionManager } from "../node/data/nats-connection.js";
import { openBlobStore } from "../node/data/open-blob-store.js";
import { privateDirs } from "../node/data/private-files.js";
import { catchUp, followLog } from "../node/data/registry.js";
import { MetadataView } from "../node/data/view.js";
import { runIfMain, serveUntilStopped } from "../node/lifecycle.js";
import { loggerOptions } from "../protocol/logging.js";
import { type Mesh, natsServersOf, regionOf } from "../protocol/mesh.js";
import { collectProcessMetrics } from "../protocol/process-metrics.js";
import { loadWorkerConfig, type WorkerConfig, WorkerConfigError } from "./config.js";
import { type DeliveryAttempt, WebhookDeliverer } from "./webhook-delivery.js";
import { followWebhooks, type WebhookFollower } from "./webhooks-follow.js";
import { ReplicationWorker } from "./worker.js";

export { loadWorkerConfig, type WorkerConfig, WorkerConfigError };

export interface RunningWorker {
  worker: ReplicationWorker;
  metricsUrl: string;
  close(): Promise<void>;
}

export async function startWorker(config: Readonly<WorkerConfig>, logger: Logger): Promise<RunningWorker> {
  const log = logger.child({ region: config.region, component: "replication" });
  const store = await openBlobStore(config.storage);
  const stateDir = join(config.dataDir, "replication");
  await mkdir(stateDir, { recursive: true });
  const local = regionOf(config.mesh, config.region);
  // The process's one NATS connection manager: the local log's connection and one to each source.
  const connections = new NatsConnectionManager(config.nats);
  const eventLog = JetStreamLog.open({
    servers: natsServersOf(local),
    region: config.region,
    name: `meridian-worker-${config.region}`,
    connections,
    logger: log.child({ component: "log" }),
  });
  // The worker's own view of the local log: policies, tag registers, run requests.
  await mkdir(config.viewDir, { recursive: true });
  const view = new MetadataView(config.viewDir);
  await view.open();
  const follower = followLog(eventLog, view, log.child({ component: "view" }));
  await catchUp(eventLog, view, log);
  const credentials = peerCredentials(config.mesh, config.region);
  // Copies read the peers' byte channels (control-plane/blob-channel.ts) on a mesh with TLS.
  const blobTls = blobChannelTls(config.mesh, config.region);
  const peers = new Map<string, PeerClient>();
  for (const r of config.mesh.regions) {
    if (r.name === config.region) continue;
    const address = config.peerAddresses?.[r.name] ?? r.grpc;
    peers.set(r.name, new PeerClient(r.name, address, credentials, config.region, {}, blobTls));
  }
  const mesh: Mesh = {
    ...config.mesh,
    regions: config.mesh.regions.map((r) => ({ ...r, nats: config.sourceNats?.[r.name] ?? r.nats })),
  };
  const metrics = new MetricsRegistry();
  metrics.setDefaultLabels({ region: config.region });
  collectProcessMetrics(metrics, "meridian_worker_");
  const localPeer = new PeerClient(config.region, local.grpc, credentials);
  const worker = new ReplicationWorker({
    localPeer,
    region: config.region,
    mesh,
    store,
    log: eventLog,
    connections,
    peers,
    stateDir,
    logger: log,
    metrics,
    view,
    breaker: { maxShare: config.breaker.maxShare, minTags: config.breaker.minTags },
    breakerWindowMs: config.breaker.windowMs,
    antiEntropyIntervalMs: config.antiEntropyIntervalMs,
    closureLimits: config.closure,
    eventDeadlineMs: config.eventDeadlineMs,
    startupGraceMs: config.startupGraceMs,
  });
  worker.start();
  const webhooks = startWebhooks(config, connections, natsServersOf(local), view, log);
  const server = await listenMetrics(
    config.metrics.host,
    config.metrics.port,
    metrics,
    worker,
    config.region,
    webhooks,
  );
  const address = server.address() as { port: number };
  return {
    worker,
    metricsUrl: `http://${config.metrics.host}:${address.port}`,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await webhooks.close();
      await worker.stop();
      for (const p of peers.values()) p.close();
      localPeer.close();
      await follower.stop();
      await view.close();
      await eventLog.close();
      await connections.close();
    },
  };
}

function listenMetrics(
  host: string,
  port: number,
  metrics: MetricsRegistry,
  worker: ReplicationWorker,
  region: string,
  webhooks: { deliveries(): Record<string, DeliveryAttempt[]> },
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === "/metrics") {
      metrics.metrics().then((text) => {
        res.writeHead(200, { "content-type": metrics.contentType });
        res.end(text);
      });
    } else if (req.url === "/failures") {
      // What this worker is retrying, and why (meridian replication status reads it).
      res.writeHead(200, { "content-type": "application/json" });
      // `endpoints`: failing links to external endpoints (replication/endpoint-status.ts), by policy/endpoint/direction.
      res.end(
        JSON.stringify({
          region,
          failures: Object.fromEntries(worker.failures),
          endpoints: worker.endpoints.failures(),
        }),
      );
    } else if (req.url === "/links") {
      // Each link's state now (replication/links.ts): what `meridian status` shows per source.
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          region,
          links: worker.links.snapshot(),
          endpointLinks: worker.endpoints.snapshot(),
        }),
      );
    } else if (req.url === "/webhooks") {
      // Each webhook subscription's last delivery attempts (meridian webhook deliveries reads it;
      // event ids, statuses and errors only: never a key or a body).
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ region, webhooks: webhooks.deliveries() }));
    } else if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ region, applied: Object.fromEntries(worker.applied) }));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolvePromise(server));
  });
}

async function main(): Promise<void> {
  let config: Readonly<WorkerConfig>;
  try {
    const { values } = parseArgs({ options: { config: { type: "string" } } });
    config = loadWorkerConfig({ file: values.config, env: process.env });
  } catch (err) {
    if (err instanceof WorkerConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  privateDirs([config.dataDir, join(config.dataDir, "replication"), config.viewDir, config.storageRoot]);
  const logger = pino(loggerOptions(config.logLevel), pino.destination(2));
  const running = await startWorker(config, logger);
  serveUntilStopped(running, {
    name: "worker",
    logger,
    listening: { region: config.region, metrics: running.metricsUrl },
  });
}

runIfMain(import.meta.url, "worker", main);

/**
 * Webhook deliveries of this region's own log (issue 17, item 5): on their
 * own connection, so a slow receiver never shares anything with
 * replication's consumers; started in the background (the log may not be up yet).
 */
function startWebhooks(
  config: Readonly<WorkerConfig>,
  connections: NatsConnectionManager,
  servers: string[],
  view: MetadataView,
  log: Logger,
): { deliveries(): Record<string, DeliveryAttempt[]>; close(): Promise<void> } {
  const wlog = log.child({ component: "webhooks" });
  const connection = connections.open({ servers, name: `meridian-webhooks-${config.region}` });
  let follower: WebhookFollower | undefined;
  let deliverer: WebhookDeliverer | undefined;
  const started = (async () => {
    const nc = await connection.connected;
    if (nc === undefined) return;
    deliverer = new WebhookDeliverer({
      js: jetstream(nc),
      jsm: await jetstreamManager(nc, { checkAPI: false }),
      region: config.region,
      logger: wlog,
      allowLoopback: config.webhooks.allowLoopback,
      timeoutMs: config.webhooks.timeoutMs,
    });
    follower = followWebhooks(view, deliverer, config.region, wlog);
  })().catch((err) => wlog.error({ err }, "webhooks not started"));
  return {
    deliveries: () => deliverer?.allDeliveries() ?? {},
    async close() {
      follower?.stop();
      // Deliveries end first (their outcomes applied); then the connection, which also stops a
      // dial still under way, so `started` settles even when the server never answered.
      await deliverer?.close();
      await connection.close().catch(() => undefined);
      await started;
      await deliverer?.close();
    },
  };
}
