/**
 * The control-plane peer's configuration: one typed object with defaults,
 * read from an optional JSON file, then `MERIDIAN_*` environment variables,
 * then explicit overrides; validated with every problem listed at once;
 * frozen and passed down. Nothing else in control-plane/ reads the environment.
 *
 * The settings, their `MERIDIAN_*` variables, defaults and ranges are the
 * schema below (`PEER_SETTINGS`, protocol/config-schema.ts); the README's
 * configuration reference is generated from it.
 *
 * The view directory has its own variable (not the node's MERIDIAN_VIEW_DIR):
 * a level database has one owner, and a node and a peer started with the same
 * environment must not share one.
 *
 * `failover.leaseMs` is the home-write lease (control-plane/fence.ts): a
 * region none of whose peers has answered for that long stops accepting
 * writes as a home, and a failover waits at least that long after the old
 * home was last seen. It must be at least one heartbeat interval (a shorter
 * lease would lapse between two answered heartbeats); every region of a mesh
 * should use the same value.
 *
 * `failover.autoAfterMs` turns on automatic failover (control-plane/
 * auto-failover.ts): a region dark that long has its repositories re-homed
 * to the first region of mesh.json that is up. It must be at least twice the
 * lease, so the dark region has surely stopped writing as a home first.
 *
 * `nats.*` credentials and TLS: node/data/nats-connect.ts (secrets only from
 * files, never logged). `meridian up` gives each peer its own NKEY seed,
 * which may read the region's stream and append nothing (cli/nats-auth.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { checkNatsClient, type NatsClientConfig, natsClientSettings } from "../node/data/nats-connect.js";
import { type BlobStoreConfig, blobStoreConfig } from "../node/data/open-blob-store.js";
import {
  CommonSettings,
  ConfigError,
  configSchema,
  type DeepPartial,
  deepFreeze,
  resolveSettings,
  Setting,
  type Static,
} from "../protocol/config-schema.js";
import { type Mesh, MeshConfigError, natsServersOf, parseMesh } from "../protocol/mesh.js";

const { string, integer, list, optional, section } = Setting;

/** Every setting of a control-plane peer, once. */
export const PEER_SETTINGS = configSchema({
  region: CommonSettings.region(),
  meshFile: CommonSettings.requiredMeshFile(),
  dataDir: CommonSettings.dataDir("the region's"),
  storage: section({
    type: CommonSettings.storageType(),
    root: CommonSettings.sharedStoreRoot(),
    s3: CommonSettings.s3(),
  }),
  view: section({
    dir: optional(
      string({
        env: "MERIDIAN_PEER_VIEW_DIR",
        defaultText: "`<dataDir>/peer-view`",
        doc: "the peer's own view (not the node's: a level database has one owner)",
      }),
    ),
  }),
  nats: section({
    servers: optional(
      list({
        env: "MERIDIAN_NATS_SERVERS",
        defaultText: "the region's `nats` in the mesh",
        doc: "the region's NATS (comma-separated)",
      }),
    ),
    ...natsClientSettings(),
  }),
  grpc: section({
    listen: optional(
      string({
        env: "MERIDIAN_GRPC_LISTEN",
        defaultText: "the region's `grpc` in the mesh",
        doc: "host:port the peer serves gRPC on",
      }),
    ),
  }),
  metrics: CommonSettings.metrics(),
  heartbeat: section({
    intervalMs: integer({
      env: "MERIDIAN_HEARTBEAT_INTERVAL_MS",
      default: 1_000,
      minimum: 10,
      doc: "how often each peer is asked how it is",
    }),
    timeoutMs: optional(
      integer({
        env: "MERIDIAN_HEARTBEAT_TIMEOUT_MS",
        minimum: 10,
        defaultText: "the interval",
        doc: "how long a heartbeat may take",
      }),
    ),
    misses: integer({
      env: "MERIDIAN_HEARTBEAT_MISSES",
      default: 3,
      minimum: 1,
      doc: "consecutive misses that mark a peer down",
    }),
  }),
  failover: section({
    leaseMs: optional(
      integer({
        env: "MERIDIAN_LEASE_MS",
        defaultText: "`heartbeat.intervalMs` × `misses`",
        doc: "the home-write lease: at least one heartbeat interval; the same in every region",
      }),
    ),
    autoAfterMs: integer({
      env: "MERIDIAN_AUTO_FAILOVER_AFTER_MS",
      default: 0,
      minimum: 0,
      doc: "automatic failover after a region is dark this long (0: off; else at least twice the lease)",
    }),
  }),
  auth: section({
    tokenKeyFile: optional(
      string({
        env: "MERIDIAN_TOKEN_KEY_FILE",
        defaultText: "none: the nodes run without auth",
        doc: "the nodes' token key: the peer signs in to its node's admin API",
      }),
    ),
    service: CommonSettings.authService(),
  }),
  startupGraceMs: CommonSettings.startupGraceMs(
    "a peer never seen up that refuses this soon after start is still starting: info, then one warn when the grace ends",
  ),
  logLevel: CommonSettings.logLevel(),
});

type Settings = Static<typeof PEER_SETTINGS>;

export interface PeerConfig
  extends Omit<Settings, "meshFile" | "dataDir" | "storage" | "view" | "nats" | "grpc"> {
  meshFile: string;
  /** The parsed mesh (read once at load). */
  mesh: Mesh;
  dataDir: string;
  storage: BlobStoreConfig;
  view: { dir: string };
  nats: { servers: string[] } & NatsClientConfig;
  grpc: { listen: string };
  heartbeat: { intervalMs: number; timeoutMs: number; misses: number };
  failover: { leaseMs: number; autoAfterMs: number };
}

export type PeerConfigInput = DeepPartial<Settings>;

export class PeerConfigError extends ConfigError {}

export function loadPeerConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: PeerConfigInput;
}): Readonly<PeerConfig> {
  const problems: string[] = [];
  const settings = resolveSettings(PEER_SETTINGS, sources, problems, readFileSync);
  const { region } = settings;
  const dataDir = resolve(settings.dataDir ?? join(".meridian", region));

  let mesh: Mesh | undefined;
  const meshFile = settings.meshFile === undefined ? undefined : resolve(settings.meshFile);
  if (meshFile === undefined) {
    problems.push("meshFile: required (MERIDIAN_MESH, the path of mesh.json)");
  } else {
    try {
      mesh = parseMesh(JSON.parse(readFileSync(meshFile, "utf8")));
    } catch (err) {
      if (err instanceof MeshConfigError) problems.push(...err.problems.map((p) => `mesh ${meshFile}: ${p}`));
      else problems.push(`mesh ${meshFile}: ${(err as Error).message}`);
    }
  }
  const self = mesh?.regions.find((r) => r.name === region);
  if (mesh !== undefined && self === undefined) problems.push(`region "${region}": not in the mesh`);

  const { intervalMs, misses } = settings.heartbeat;
  const config: PeerConfig = {
    ...settings,
    meshFile: meshFile ?? "",
    mesh: mesh ?? { regions: [] },
    dataDir,
    storage: blobStoreConfig(
      settings.storage,
      resolve(settings.storage.root ?? join(dataDir, "store")),
      problems,
    ),
    view: { dir: resolve(settings.view.dir ?? join(dataDir, "peer-view")) },
    nats: {
      servers: settings.nats.servers ?? (self ? natsServersOf(self) : []),
      ...checkNatsClient(settings.nats, problems),
    },
    grpc: { listen: settings.grpc.listen ?? self?.grpc ?? "" },
    heartbeat: { intervalMs, timeoutMs: settings.heartbeat.timeoutMs ?? intervalMs, misses },
    failover: {
      leaseMs: settings.failover.leaseMs ?? intervalMs * misses,
      autoAfterMs: settings.failover.autoAfterMs,
    },
    auth: {
      tokenKeyFile:
        settings.auth.tokenKeyFile === undefined ? undefined : resolve(settings.auth.tokenKeyFile),
      service: settings.auth.service,
    },
  };
  if (config.auth.tokenKeyFile !== undefined && !existsSync(config.auth.tokenKeyFile))
    problems.push(`auth.tokenKeyFile ${config.auth.tokenKeyFile}: does not exist`);
  if (
    config.nats.servers.length === 0 ||
    config.nats.servers.some((s) => !/^(nats|tls):\/\/[^\s]+$/.test(s))
  ) {
    problems.push("nats.servers: each must be a nats:// or tls:// URL");
  }
  if (!/^[^\s:/]+:\d{1,5}$/.test(config.grpc.listen) || Number(config.grpc.listen.split(":")[1]) > 65535) {
    problems.push(`grpc.listen "${config.grpc.listen}": host:port`);
  }
  // The default (interval × misses) is valid whenever the heartbeat settings are.
  if (
    settings.failover.leaseMs !== undefined &&
    (!Number.isSafeInteger(config.failover.leaseMs) || config.failover.leaseMs < config.heartbeat.intervalMs)
  ) {
    problems.push(
      `failover.leaseMs: an integer of at least heartbeat.intervalMs (${config.heartbeat.intervalMs}); a shorter lease lapses between two heartbeats`,
    );
  }
  const auto = config.failover.autoAfterMs;
  if (auto > 0 && auto < 2 * config.failover.leaseMs) {
    problems.push(
      `failover.autoAfterMs: 0 (off) or an integer of at least twice the lease (${2 * config.failover.leaseMs}); sooner, the dark region may still be writing as a home`,
    );
  }
  if (problems.length > 0) throw new PeerConfigError(problems);
  return deepFreeze(config);
}
