/**
 * The control-plane peer's configuration: one typed object with defaults,
 * read from an optional JSON file, then `MERIDIAN_*` environment variables,
 * then explicit overrides; validated with every problem listed at once;
 * frozen and passed down. Nothing else in control-plane/ reads the environment.
 *
 * | setting               | env                             | default                              |
 * |-----------------------|---------------------------------|--------------------------------------|
 * | region                | MERIDIAN_REGION                 | local                                |
 * | meshFile              | MERIDIAN_MESH                   | (required) path of mesh.json         |
 * | dataDir               | MERIDIAN_DATA_DIR               | ./.meridian/<region>                 |
 * | storage.root          | MERIDIAN_STORAGE_ROOT           | <dataDir>/store (the nodes' store)   |
 * | view.dir              | MERIDIAN_PEER_VIEW_DIR          | <dataDir>/peer-view                  |
 * | nats.servers          | MERIDIAN_NATS_SERVERS (a,b)     | the region's `nats` in the mesh      |
 * | nats.seedFile         | MERIDIAN_NATS_SEED_FILE         | none (anonymous): NKEY seed file     |
 * | nats.credsFile        | MERIDIAN_NATS_CREDS_FILE        | none: a .creds (JWT) file            |
 * | nats.user             | MERIDIAN_NATS_USER              | none: with nats.passwordFile         |
 * | nats.passwordFile     | MERIDIAN_NATS_PASSWORD_FILE     | none: password (first line)          |
 * | nats.inboxPrefix      | MERIDIAN_NATS_INBOX_PREFIX      | _INBOX                               |
 * | nats.tls.caFile       | MERIDIAN_NATS_TLS_CA_FILE       | none: CA of the NATS server          |
 * | nats.tls.certFile     | MERIDIAN_NATS_TLS_CERT_FILE     | none: client cert (mutual TLS)       |
 * | nats.tls.keyFile      | MERIDIAN_NATS_TLS_KEY_FILE      | none: client key (mutual TLS)        |
 * | grpc.listen           | MERIDIAN_GRPC_LISTEN (host:port)| the region's `grpc` in the mesh      |
 * | metrics.host          | MERIDIAN_METRICS_HOST           | 127.0.0.1                            |
 * | metrics.port          | MERIDIAN_METRICS_PORT           | 0 (any free port; printed at start)  |
 * | heartbeat.intervalMs  | MERIDIAN_HEARTBEAT_INTERVAL_MS  | 1000                                 |
 * | heartbeat.timeoutMs   | MERIDIAN_HEARTBEAT_TIMEOUT_MS   | the interval                         |
 * | heartbeat.misses      | MERIDIAN_HEARTBEAT_MISSES       | 3 (consecutive misses → down)        |
 * | failover.leaseMs      | MERIDIAN_LEASE_MS               | heartbeat.intervalMs × misses        |
 * | failover.autoAfterMs  | MERIDIAN_AUTO_FAILOVER_AFTER_MS | 0 (off: failover is `meridian failover`) |
 * | auth.tokenKeyFile     | MERIDIAN_TOKEN_KEY_FILE         | none: the nodes run without auth     |
 * | auth.service          | MERIDIAN_AUTH_SERVICE           | meridian                             |
 * | logLevel              | MERIDIAN_LOG_LEVEL              | info                                 |
 * | startupGraceMs        | MERIDIAN_STARTUP_GRACE_MS       | 30000 (protocol/startup-grace.ts)    |
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
import { checkNatsClient, type NatsClientConfig, natsClientFromEnv } from "../node/data/nats-connect.js";
import {
  ConfigError,
  type DeepPartial,
  deepFreeze,
  envNumber,
  LOG_LEVELS,
  mergeConfig,
} from "../protocol/config-sources.js";
import { type Mesh, MeshConfigError, parseMesh } from "../protocol/mesh.js";
import { STARTUP_GRACE_MS } from "../protocol/startup-grace.js";

export interface PeerConfig {
  region: string;
  meshFile: string;
  /** The parsed mesh (read once at load). */
  mesh: Mesh;
  dataDir: string;
  storage: { root: string };
  view: { dir: string };
  nats: { servers: string[] } & NatsClientConfig;
  grpc: { listen: string };
  metrics: { host: string; port: number };
  heartbeat: { intervalMs: number; timeoutMs: number; misses: number };
  failover: { leaseMs: number; autoAfterMs: number };
  /** With the nodes' token key, the peer signs in to its node's admin API (./service-token.ts). */
  auth: { tokenKeyFile?: string; service: string };
  logLevel: string;
  /** A peer never seen up that refuses this long after start is still starting (protocol/startup-grace.ts). */
  startupGraceMs: number;
}

export type PeerConfigInput = Omit<DeepPartial<PeerConfig>, "mesh">;

export class PeerConfigError extends ConfigError {}

export function loadPeerConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: PeerConfigInput;
}): Readonly<PeerConfig> {
  const problems: string[] = [];
  let fromFile: PeerConfigInput = {};
  if (sources.file !== undefined) {
    try {
      fromFile = JSON.parse(readFileSync(sources.file, "utf8"));
    } catch (err) {
      problems.push(`config file ${sources.file}: ${(err as Error).message}`);
    }
  }
  const env = sources.env ?? {};
  const fromEnv: PeerConfigInput = {
    region: env.MERIDIAN_REGION,
    meshFile: env.MERIDIAN_MESH,
    dataDir: env.MERIDIAN_DATA_DIR,
    storage: { root: env.MERIDIAN_STORAGE_ROOT },
    view: { dir: env.MERIDIAN_PEER_VIEW_DIR },
    nats: { servers: env.MERIDIAN_NATS_SERVERS?.split(",").map((s) => s.trim()), ...natsClientFromEnv(env) },
    grpc: { listen: env.MERIDIAN_GRPC_LISTEN },
    metrics: { host: env.MERIDIAN_METRICS_HOST, port: envNumber(env.MERIDIAN_METRICS_PORT) },
    heartbeat: {
      intervalMs: envNumber(env.MERIDIAN_HEARTBEAT_INTERVAL_MS),
      timeoutMs: envNumber(env.MERIDIAN_HEARTBEAT_TIMEOUT_MS),
      misses: envNumber(env.MERIDIAN_HEARTBEAT_MISSES),
    },
    failover: {
      leaseMs: envNumber(env.MERIDIAN_LEASE_MS),
      autoAfterMs: envNumber(env.MERIDIAN_AUTO_FAILOVER_AFTER_MS),
    },
    auth: { tokenKeyFile: env.MERIDIAN_TOKEN_KEY_FILE, service: env.MERIDIAN_AUTH_SERVICE },
    logLevel: env.MERIDIAN_LOG_LEVEL,
    startupGraceMs: envNumber(env.MERIDIAN_STARTUP_GRACE_MS),
  };
  for (const [k, v] of [
    ["MERIDIAN_METRICS_PORT", env.MERIDIAN_METRICS_PORT],
    ["MERIDIAN_HEARTBEAT_INTERVAL_MS", env.MERIDIAN_HEARTBEAT_INTERVAL_MS],
    ["MERIDIAN_HEARTBEAT_TIMEOUT_MS", env.MERIDIAN_HEARTBEAT_TIMEOUT_MS],
    ["MERIDIAN_HEARTBEAT_MISSES", env.MERIDIAN_HEARTBEAT_MISSES],
    ["MERIDIAN_LEASE_MS", env.MERIDIAN_LEASE_MS],
    ["MERIDIAN_AUTO_FAILOVER_AFTER_MS", env.MERIDIAN_AUTO_FAILOVER_AFTER_MS],
    ["MERIDIAN_STARTUP_GRACE_MS", env.MERIDIAN_STARTUP_GRACE_MS],
  ] as const) {
    if (v !== undefined && envNumber(v) === undefined) problems.push(`${k}: not a number`);
  }
  const merged = mergeConfig(mergeConfig(fromFile, fromEnv), sources.overrides ?? {});
  const region = merged.region ?? "local";
  const dataDir = resolve(merged.dataDir ?? join(".meridian", region));

  let mesh: Mesh | undefined;
  const meshFile = merged.meshFile === undefined ? undefined : resolve(merged.meshFile);
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

  const intervalMs = merged.heartbeat?.intervalMs ?? 1_000;
  const misses = merged.heartbeat?.misses ?? 3;
  const config: PeerConfig = {
    region,
    meshFile: meshFile ?? "",
    mesh: mesh ?? { regions: [] },
    dataDir,
    storage: { root: resolve(merged.storage?.root ?? join(dataDir, "store")) },
    view: { dir: resolve(merged.view?.dir ?? join(dataDir, "peer-view")) },
    nats: {
      servers: merged.nats?.servers ?? (self ? [self.nats] : []),
      ...checkNatsClient(merged.nats, problems),
    },
    grpc: { listen: merged.grpc?.listen ?? self?.grpc ?? "" },
    metrics: { host: merged.metrics?.host ?? "127.0.0.1", port: merged.metrics?.port ?? 0 },
    heartbeat: {
      intervalMs,
      timeoutMs: merged.heartbeat?.timeoutMs ?? intervalMs,
      misses,
    },
    failover: {
      leaseMs: merged.failover?.leaseMs ?? intervalMs * misses,
      autoAfterMs: merged.failover?.autoAfterMs ?? 0,
    },
    auth: {
      tokenKeyFile: merged.auth?.tokenKeyFile === undefined ? undefined : resolve(merged.auth.tokenKeyFile),
      service: merged.auth?.service ?? "meridian",
    },
    logLevel: merged.logLevel ?? "info",
    startupGraceMs: merged.startupGraceMs ?? STARTUP_GRACE_MS,
  };
  if (config.auth.tokenKeyFile !== undefined && !existsSync(config.auth.tokenKeyFile))
    problems.push(`auth.tokenKeyFile ${config.auth.tokenKeyFile}: does not exist`);

  if (!/^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/.test(config.region)) {
    problems.push(`region "${config.region}": lower-case letters, digits and dashes, at most 32`);
  }
  if (
    config.nats.servers.length === 0 ||
    config.nats.servers.some((s) => !/^(nats|tls):\/\/[^\s]+$/.test(s))
  ) {
    problems.push("nats.servers: each must be a nats:// or tls:// URL");
  }
  if (!/^[^\s:/]+:\d{1,5}$/.test(config.grpc.listen) || Number(config.grpc.listen.split(":")[1]) > 65535) {
    problems.push(`grpc.listen "${config.grpc.listen}": host:port`);
  }
  if (!Number.isInteger(config.metrics.port) || config.metrics.port < 0 || config.metrics.port > 65535) {
    problems.push(`metrics.port ${config.metrics.port}: must be 0-65535`);
  }
  if (!Number.isInteger(config.heartbeat.intervalMs) || config.heartbeat.intervalMs < 10) {
    problems.push("heartbeat.intervalMs: an integer of at least 10");
  }
  if (!Number.isInteger(config.heartbeat.timeoutMs) || config.heartbeat.timeoutMs < 10) {
    problems.push("heartbeat.timeoutMs: an integer of at least 10");
  }
  if (!Number.isSafeInteger(config.startupGraceMs) || config.startupGraceMs < 0) {
    problems.push("startupGraceMs: an integer of at least 0");
  }
  if (!Number.isInteger(config.heartbeat.misses) || config.heartbeat.misses < 1) {
    problems.push("heartbeat.misses: a positive integer");
  }
  // The default (interval × misses) is valid whenever the heartbeat settings are.
  if (
    merged.failover?.leaseMs !== undefined &&
    (!Number.isSafeInteger(config.failover.leaseMs) || config.failover.leaseMs < config.heartbeat.intervalMs)
  ) {
    problems.push(
      `failover.leaseMs: an integer of at least heartbeat.intervalMs (${config.heartbeat.intervalMs}); a shorter lease lapses between two heartbeats`,
    );
  }
  const auto = config.failover.autoAfterMs;
  if (!Number.isSafeInteger(auto) || auto < 0 || (auto > 0 && auto < 2 * config.failover.leaseMs)) {
    problems.push(
      `failover.autoAfterMs: 0 (off) or an integer of at least twice the lease (${2 * config.failover.leaseMs}); sooner, the dark region may still be writing as a home`,
    );
  }
  if (!LOG_LEVELS.includes(config.logLevel)) problems.push(`logLevel: one of ${LOG_LEVELS.join(", ")}`);
  if (problems.length > 0) throw new PeerConfigError(problems);
  return deepFreeze(config);
}
