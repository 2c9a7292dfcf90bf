/**
 * The replication worker's configuration: an optional JSON file
 * (`node dist/replication/main.js --config FILE`), then `MERIDIAN_*`
 * environment variables; every setting, its variable, default and range is
 * the schema below (`WORKER_SETTINGS`, protocol/config-schema.ts), and the
 * README's configuration reference is generated from it. Validated with
 * every problem listed at once, frozen, passed down; nothing else in
 * replication/ reads the environment.
 *
 * `nats.*` (credentials, inbox prefix, TLS; node/data/nats-connect.ts) serve
 * the local region's NATS and every other region's (mesh.json's URLs, or
 * `sourceNats`): one worker identity per region, which every region's server
 * knows and lets read only through this region's durable consumer
 * (cli/nats-auth.ts). `peerAddresses` and `sourceNats` override where the
 * other regions' peers and NATS are reached (region → address), e.g.
 * through a proxy; the breaker, anti-entropy, closure and deadline settings
 * are explained in worker.ts and copy.ts.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { checkNatsClient, type NatsClientConfig, natsClientSettings } from "../node/data/nats-connect.js";
import { type BlobStoreConfig, blobStoreConfig } from "../node/data/open-blob-store.js";
import {
  CommonSettings,
  ConfigError,
  configSchema,
  deepFreeze,
  resolveSettings,
  Setting,
} from "../protocol/config-schema.js";
import { type Mesh, parseMesh, regionOf } from "../protocol/mesh.js";
import { type ClosureLimits, DEFAULT_CLOSURE_LIMITS } from "./copy.js";

const { string, integer, number, boolean, table, optional, section } = Setting;

/** How long one event's copying may take before it is recorded as failed (worker.ts). */
export const DEFAULT_EVENT_DEADLINE_MS = 15 * 60_000;

/** Every setting of a replication worker, once. */
export const WORKER_SETTINGS = configSchema({
  region: CommonSettings.region(),
  meshFile: CommonSettings.requiredMeshFile(),
  dataDir: CommonSettings.dataDir("the region's"),
  storage: section({
    type: CommonSettings.storageType(),
    root: CommonSettings.sharedStoreRoot(),
    s3: CommonSettings.s3(),
    fsync: boolean({ env: "MERIDIAN_STORAGE_FSYNC", default: true, doc: "flush each copied blob to disk" }),
  }),
  view: section({
    dir: optional(
      string({
        env: "MERIDIAN_WORKER_VIEW_DIR",
        defaultText: "`<dataDir>/replication/view`",
        doc: "this worker's own view of the local log (each worker process needs its own)",
      }),
    ),
  }),
  metrics: CommonSettings.metrics(),
  nats: section(natsClientSettings()),
  peerAddresses: optional(
    table({
      env: "MERIDIAN_PEER_ADDRESSES",
      defaultText: "mesh.json's `grpc`",
      doc: "region → host:port of its peer, overriding the mesh (a JSON object)",
    }),
  ),
  sourceNats: optional(
    table({
      env: "MERIDIAN_SOURCE_NATS",
      defaultText: "mesh.json's `nats`",
      doc: "region → NATS URL, overriding the mesh (a JSON object)",
    }),
  ),
  breaker: section({
    maxShare: number({
      env: "MERIDIAN_DELETE_BREAKER_SHARE",
      default: 0.5,
      exclusiveMinimum: 0,
      maximum: 1,
      doc: "the largest share of a repository's tags replicated deletes may remove in a window before they are held",
    }),
    minTags: integer({
      env: "MERIDIAN_DELETE_BREAKER_MIN_TAGS",
      default: 4,
      minimum: 1,
      doc: "smaller repositories are never held",
    }),
    windowMs: integer({
      env: "MERIDIAN_DELETE_BREAKER_WINDOW_MS",
      default: 600_000,
      minimum: 1,
      doc: "the breaker's window",
    }),
  }),
  antiEntropyIntervalMs: integer({
    env: "MERIDIAN_ANTI_ENTROPY_INTERVAL_MS",
    default: 600_000,
    minimum: 0,
    doc: "how often anti-entropy runs (0: only at start, on schedules and on demand)",
  }),
  closure: section({
    maxItems: integer({
      env: "MERIDIAN_REPLICATION_MAX_CLOSURE",
      default: DEFAULT_CLOSURE_LIMITS.maxItems,
      minimum: 1,
      doc: "the most distinct manifests and blobs one manifest's closure may have",
    }),
    maxDepth: integer({
      env: "MERIDIAN_REPLICATION_MAX_DEPTH",
      default: DEFAULT_CLOSURE_LIMITS.maxDepth,
      minimum: 0,
      doc: "the deepest index nesting below a replicated manifest",
    }),
  }),
  eventDeadlineMs: integer({
    env: "MERIDIAN_REPLICATION_EVENT_DEADLINE_MS",
    default: DEFAULT_EVENT_DEADLINE_MS,
    minimum: 1,
    doc: "how long one event's copying may take before it is recorded as failed and the stream moves on",
  }),
  startupGraceMs: CommonSettings.startupGraceMs(
    "refusals by sources this soon after start are start-up: retried quietly, one warn when the grace ends",
  ),
  webhooks: section({
    allowLoopback: boolean({
      env: "MERIDIAN_WEBHOOK_ALLOW_LOOPBACK",
      default: false,
      doc: "deliver webhooks to receivers on loopback addresses (tests, single-host labs); link-local never",
    }),
    timeoutMs: integer({
      env: "MERIDIAN_WEBHOOK_TIMEOUT_MS",
      default: 10_000,
      minimum: 1,
      doc: "how long one webhook delivery may take before it is retried",
    }),
  }),
  logLevel: CommonSettings.logLevel(),
});

export interface WorkerConfig {
  region: string;
  mesh: Mesh;
  dataDir: string;
  storageRoot: string;
  fsync: boolean;
  /** The region's blob store (node/data/open-blob-store.ts); `storageRoot`/`fsync` are its fs settings. */
  storage: BlobStoreConfig;
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
  /** Webhook delivery (webhook-delivery.ts). */
  webhooks: { allowLoopback: boolean; timeoutMs: number };
}

export class WorkerConfigError extends ConfigError {}

/** Typed, validated, frozen configuration from a file and the environment (every problem listed). */
export function loadWorkerConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
}): Readonly<WorkerConfig> {
  const problems: string[] = [];
  const s = resolveSettings(WORKER_SETTINGS, sources, problems, readFileSync);
  let mesh: Mesh | undefined;
  if (s.meshFile === undefined) problems.push("meshFile: required (MERIDIAN_MESH, the path of mesh.json)");
  else {
    try {
      mesh = parseMesh(JSON.parse(readFileSync(s.meshFile, "utf8")));
      regionOf(mesh, s.region);
    } catch (err) {
      problems.push(`mesh ${s.meshFile}: ${(err as Error).message}`);
    }
  }
  const nats = checkNatsClient(s.nats, problems);
  const dataDir = resolve(s.dataDir ?? join(".meridian", s.region));
  const storage = blobStoreConfig(s.storage, resolve(s.storage.root ?? join(dataDir, "store")), problems);
  if (problems.length > 0) throw new WorkerConfigError(problems);
  const config: WorkerConfig = {
    region: s.region,
    mesh: mesh!,
    dataDir,
    storageRoot: resolve(s.storage.root ?? join(dataDir, "store")),
    fsync: s.storage.fsync,
    storage,
    metrics: s.metrics,
    logLevel: s.logLevel,
    nats,
    viewDir: resolve(s.view.dir ?? join(dataDir, "replication", "view")),
    breaker: s.breaker,
    antiEntropyIntervalMs: s.antiEntropyIntervalMs,
    closure: s.closure,
    eventDeadlineMs: s.eventDeadlineMs,
    startupGraceMs: s.startupGraceMs,
    webhooks: s.webhooks,
  };
  if (s.peerAddresses !== undefined) config.peerAddresses = s.peerAddresses;
  if (s.sourceNats !== undefined) config.sourceNats = s.sourceNats;
  return deepFreeze(config);
}
