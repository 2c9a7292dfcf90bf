/**
 * The replication worker process of one region.
 *
 *   node dist/replication/main.js
 *
 * Settings come from the environment (the caller passes it in; see
 * `loadWorkerConfig`): MERIDIAN_REGION, MERIDIAN_MESH (path of mesh.json),
 * MERIDIAN_DATA_DIR (default .meridian/<region>), MERIDIAN_STORAGE_ROOT
 * (default <dataDir>/store, the region's blob store), MERIDIAN_METRICS_PORT
 * (default 0), MERIDIAN_METRICS_HOST (default 127.0.0.1), MERIDIAN_LOG_LEVEL,
 * MERIDIAN_WORKER_VIEW_DIR (default <dataDir>/replication/view: this worker's
 * own view of the local log; each worker process needs its own),
 * MERIDIAN_DELETE_BREAKER_SHARE (default 0.5: the largest share of a
 * repository's tags replicated deletes may remove before the breaker holds
 * them), MERIDIAN_DELETE_BREAKER_MIN_TAGS (default 4: smaller repositories are
 * never held), MERIDIAN_DELETE_BREAKER_WINDOW_MS (default 600000),
 * MERIDIAN_ANTI_ENTROPY_INTERVAL_MS (default 600000; 0 = only at start, on
 * schedules and on demand), MERIDIAN_REPLICATION_MAX_CLOSURE (default 10000:
 * the most distinct manifests and blobs one manifest's closure may have),
 * MERIDIAN_REPLICATION_MAX_DEPTH (default 16: the deepest index nesting
 * below a replicated manifest), MERIDIAN_REPLICATION_EVENT_DEADLINE_MS
 * (default 900000: how long one event's copying may take before it is
 * recorded as failed and the stream moves on), MERIDIAN_STARTUP_GRACE_MS
 * (default 30000: how long after start refusals by sources still starting
 * are retried quietly, protocol/startup-grace.ts). See worker.ts and copy.ts.
 * NATS credentials and TLS (node/data/nats-connect.ts; default none,
 * anonymous): MERIDIAN_NATS_SEED_FILE, MERIDIAN_NATS_CREDS_FILE,
 * MERIDIAN_NATS_USER + MERIDIAN_NATS_PASSWORD_FILE,
 * MERIDIAN_NATS_INBOX_PREFIX, MERIDIAN_NATS_TLS_CA_FILE,
 * MERIDIAN_NATS_TLS_CERT_FILE + MERIDIAN_NATS_TLS_KEY_FILE. The same
 * credential and TLS settings serve the local region's NATS and every other
 * region's (mesh.json's URLs, or MERIDIAN_SOURCE_NATS): one worker identity
 * per region, which every region's server knows and lets read only through
 * this region's durable consumer (cli/nats-auth.ts).
 * Liveness of every NATS connection: MERIDIAN_NATS_PING_INTERVAL_MS (2000),
 * MERIDIAN_NATS_MAX_PING_OUT (2), MERIDIAN_NATS_CONNECT_TIMEOUT_MS (5000).
 * HTTP: /metrics, /links (each link's state, replication/links.ts),
 * /failures, /healthz.
 * Once running it prints {"event":"listening","region":…,"metrics":…,"pid":…}.
 */
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type Logger, pino } from "pino";
import { collectDefaultMetrics, Registry as MetricsRegistry } from "prom-client";
import { PeerClient, peerCredentials } from "../control-plane/peer-client.js";
import { FsBlobStore } from "../node/data/fs-blob-store.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import { checkNatsClient, type NatsClientConfig, natsClientFromEnv } from "../node/data/nats-connect.js";
import { privateDirs } from "../node/data/private-files.js";
import { catchUp, followLog } from "../node/data/registry.js";
import { MetadataView } from "../node/data/view.js";
import { exitWithParent } from "../node/parent-watch.js";
import { parseRegion } from "../protocol/events.js";
import { loggerOptions } from "../protocol/logging.js";
import { type Mesh, parseMesh, regionOf } from "../protocol/mesh.js";
import { STARTUP_GRACE_MS } from "../protocol/startup-grace.js";
import { type ClosureLimits, DEFAULT_CLOSURE_LIMITS } from "./copy.js";
import { DEFAULT_EVENT_DEADLINE_MS, ReplicationWorker } from "./worker.js";

export interface WorkerConfig {
  region: string;
  mesh: Mesh;
  dataDir: string;
  storageRoot: string;
  fsync: boolean;
  metrics: { host: string; port: number };
  logLevel: string;
  /** Overrides of peer addresses (region → host:port), e.g. through a chaos proxy. */
  peerAddresses?: Record<string, string>;
  /** Overrides of source NATS URLs (region → URL). */
  sourceNats?: Record<string, string>;
  /** Credentials, inbox prefix and TLS for every NATS connection (local and sources). */
  nats: NatsClientConfig;
  viewDir: string;
  breaker: { maxShare: number; minTags: number; windowMs: number };
  antiEntropyIntervalMs: number;
  /** Bounds of one manifest's closure (replication/copy.ts). */
  closure: ClosureLimits;
  /** How long one event's copying may take before it is recorded as failed. */
  eventDeadlineMs: number;
  /** Refusals by sources this long after start are start-up (protocol/startup-grace.ts). */
  startupGraceMs: number;
}

export class WorkerConfigError extends Error {}

/** Typed, validated, frozen configuration from the environment (every problem listed). */
export function loadWorkerConfig(env: Record<string, string | undefined>): Readonly<WorkerConfig> {
  const problems: string[] = [];
  const region = env.MERIDIAN_REGION ?? "local";
  try {
    parseRegion(region);
  } catch {
    problems.push(`MERIDIAN_REGION "${region}": lower-case letters, digits and dashes`);
  }
  let mesh: Mesh | undefined;
  if (env.MERIDIAN_MESH === undefined) problems.push("MERIDIAN_MESH: path of the mesh file is required");
  else {
    try {
      mesh = parseMesh(JSON.parse(readFileSync(env.MERIDIAN_MESH, "utf8")));
      regionOf(mesh, region);
    } catch (err) {
      problems.push(`MERIDIAN_MESH ${env.MERIDIAN_MESH}: ${(err as Error).message}`);
    }
  }
  const port = Number(env.MERIDIAN_METRICS_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push("MERIDIAN_METRICS_PORT: 0-65535");
  const json = (name: string): Record<string, string> | undefined => {
    const v = env[name];
    if (v === undefined) return undefined;
    try {
      return JSON.parse(v);
    } catch {
      problems.push(`${name}: a JSON object`);
      return undefined;
    }
  };
  const number = (name: string, fallback: number, ok: (n: number) => boolean, what: string): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!ok(n)) problems.push(`${name} "${raw}": ${what}`);
    return n;
  };
  const maxShare = number("MERIDIAN_DELETE_BREAKER_SHARE", 0.5, (n) => n > 0 && n <= 1, "a share in (0, 1]");
  const minTags = number(
    "MERIDIAN_DELETE_BREAKER_MIN_TAGS",
    4,
    (n) => Number.isInteger(n) && n >= 1,
    "an integer ≥ 1",
  );
  const windowMs = number(
    "MERIDIAN_DELETE_BREAKER_WINDOW_MS",
    600_000,
    (n) => Number.isInteger(n) && n > 0,
    "ms > 0",
  );
  const antiEntropyIntervalMs = number(
    "MERIDIAN_ANTI_ENTROPY_INTERVAL_MS",
    600_000,
    (n) => Number.isInteger(n) && n >= 0,
    "ms ≥ 0",
  );
  const positive = (n: number) => Number.isSafeInteger(n) && n >= 1;
  const maxItems = number(
    "MERIDIAN_REPLICATION_MAX_CLOSURE",
    DEFAULT_CLOSURE_LIMITS.maxItems,
    positive,
    "an integer ≥ 1",
  );
  const maxDepth = number(
    "MERIDIAN_REPLICATION_MAX_DEPTH",
    DEFAULT_CLOSURE_LIMITS.maxDepth,
    (n) => Number.isSafeInteger(n) && n >= 0,
    "an integer ≥ 0",
  );
  const eventDeadlineMs = number(
    "MERIDIAN_REPLICATION_EVENT_DEADLINE_MS",
    DEFAULT_EVENT_DEADLINE_MS,
    positive,
    "ms > 0",
  );
  const startupGraceMs = number(
    "MERIDIAN_STARTUP_GRACE_MS",
    STARTUP_GRACE_MS,
    (n) => Number.isSafeInteger(n) && n >= 0,
    "ms ≥ 0",
  );
  const peerAddresses = json("MERIDIAN_PEER_ADDRESSES");
  const sourceNats = json("MERIDIAN_SOURCE_NATS");
  const nats = checkNatsClient(natsClientFromEnv(env), problems, "MERIDIAN_NATS_*");
  if (problems.length > 0)
    throw new WorkerConfigError(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  const dataDir = resolve(env.MERIDIAN_DATA_DIR ?? join(".meridian", region));
  return Object.freeze({
    region,
    mesh: mesh!,
    dataDir,
    storageRoot: resolve(env.MERIDIAN_STORAGE_ROOT ?? join(dataDir, "store")),
    fsync: env.MERIDIAN_STORAGE_FSYNC !== "false",
    metrics: { host: env.MERIDIAN_METRICS_HOST ?? "127.0.0.1", port },
    logLevel: env.MERIDIAN_LOG_LEVEL ?? "info",
    peerAddresses,
    sourceNats,
    nats,
    viewDir: resolve(env.MERIDIAN_WORKER_VIEW_DIR ?? join(dataDir, "replication", "view")),
    breaker: { maxShare, minTags, windowMs },
    antiEntropyIntervalMs,
    closure: { maxItems, maxDepth },
    eventDeadlineMs,
    startupGraceMs,
  });
}

export interface RunningWorker {
  worker: ReplicationWorker;
  metricsUrl: string;
  close(): Promise<void>;
}

export async function startWorker(config: Readonly<WorkerConfig>, logger: Logger): Promise<RunningWorker> {
  const log = logger.child({ region: config.region, component: "replication" });
  const store = new FsBlobStore(config.storageRoot, { fsync: config.fsync });
  await store.init();
  const stateDir = join(config.dataDir, "replication");
  await mkdir(stateDir, { recursive: true });
  const local = regionOf(config.mesh, config.region);
  const eventLog = JetStreamLog.open({
    servers: [local.nats],
    region: config.region,
    name: `meridian-worker-${config.region}`,
    nats: config.nats,
    logger: log.child({ component: "log" }),
  });
  // The worker's own view of the local log: policies, tag registers, run requests.
  await mkdir(config.viewDir, { recursive: true });
  const view = new MetadataView(config.viewDir);
  await view.open();
  const follower = followLog(eventLog, view, log.child({ component: "view" }));
  await catchUp(eventLog, view, log);
  const credentials = peerCredentials(config.mesh, config.region);
  const peers = new Map<string, PeerClient>();
  for (const r of config.mesh.regions) {
    if (r.name === config.region) continue;
    peers.set(
      r.name,
      new PeerClient(r.name, config.peerAddresses?.[r.name] ?? r.grpc, credentials, config.region),
    );
  }
  const mesh: Mesh = {
    ...config.mesh,
    regions: config.mesh.regions.map((r) => ({ ...r, nats: config.sourceNats?.[r.name] ?? r.nats })),
  };
  const metrics = new MetricsRegistry();
  metrics.setDefaultLabels({ region: config.region });
  collectDefaultMetrics({ register: metrics, prefix: "meridian_worker_" });
  const localPeer = new PeerClient(config.region, local.grpc, credentials);
  const worker = new ReplicationWorker({
    localPeer,
    region: config.region,
    mesh,
    store,
    log: eventLog,
    nats: config.nats,
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
  const server = await listenMetrics(
    config.metrics.host,
    config.metrics.port,
    metrics,
    worker,
    config.region,
  );
  const address = server.address() as { port: number };
  return {
    worker,
    metricsUrl: `http://${config.metrics.host}:${address.port}`,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await worker.stop();
      for (const p of peers.values()) p.close();
      localPeer.close();
      await follower.stop();
      await view.close();
      await eventLog.close();
    },
  };
}

function listenMetrics(
  host: string,
  port: number,
  metrics: MetricsRegistry,
  worker: ReplicationWorker,
  region: string,
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
      res.end(JSON.stringify({ region, failures: Object.fromEntries(worker.failures) }));
    } else if (req.url === "/links") {
      // Each link's state now (replication/links.ts): what `meridian status` shows per source.
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ region, links: worker.links.snapshot() }));
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
    config = loadWorkerConfig(process.env);
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
  process.stdout.write(
    `${JSON.stringify({ event: "listening", region: config.region, metrics: running.metricsUrl, pid: process.pid })}\n`,
  );
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  // Nothing to reload; a stray SIGHUP must not stop the worker (node/server.ts).
  process.on("SIGHUP", () => logger.info("SIGHUP: nothing to reload"));
  exitWithParent(); // issue 11: dies with `meridian up`, even a SIGKILLed one
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`worker failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
