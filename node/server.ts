/**
 * The registry node process: config, logger, the data layer (blob store, log,
 * view), the HTTP app, listen, and a graceful close on SIGINT/SIGTERM.
 *
 *   node dist/node/server.js [--config FILE]      (settings: node/config.ts)
 *
 * Once listening it prints one JSON line to stdout:
 *   {"event":"listening","region":…,"registry":"http://127.0.0.1:PORT","pid":…}
 * (an https:// URL with `tls.certFile`/`tls.keyFile`; SIGHUP then re-reads
 * both files and serves new connections with them).
 */
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { Server as TlsServer } from "node:tls";
import { parseArgs } from "node:util";
import { type Logger, pino } from "pino";
import { Counter, Registry as MetricsRegistry } from "prom-client";
import { loadTokenKeys } from "../mesh-client/token-key-file.js";
import { TOKEN_ISSUER, type TokenKeys } from "../mesh-client/tokens.js";
import { loggerOptions } from "../protocol/logging.js";
import type { Policy } from "../protocol/policy.js";
import { collectProcessMetrics } from "../protocol/process-metrics.js";
import { AuditLog } from "./audit.js";
import { Authenticator } from "./auth/authenticator.js";
import { LdapDirectory } from "./auth/ldap-directory.js";
import { DirectoryLogin, registerLdapMetrics } from "./auth/ldap-login.js";
import { LoginLimiter } from "./auth/login-limiter.js";
import { OidcClient } from "./auth/oidc-client.js";
import { registerKdfMetrics } from "./auth/passwords.js";
import { ensureAdmin, StartRefusedError, unauthenticatedStart } from "./auth/setup.js";
import { ConfigError, loadNodeConfig, type NodeConfig } from "./config.js";
import { JetStreamLog } from "./data/jetstream-log.js";
import { NatsConnectionManager } from "./data/nats-connection.js";
import { openBlobStore } from "./data/open-blob-store.js";
import { acquirePidLock, LockHeldError } from "./data/pid-lock.js";
import { privateDirs } from "./data/private-files.js";
import { catchUp, Registry } from "./data/registry.js";
import { MetadataView } from "./data/view.js";
import { registerDiskMetrics } from "./disk-metrics.js";
import { FetchOnMiss } from "./fetch-on-miss.js";
import { scheduleGc } from "./gc-schedule.js";
import type { HttpAuth } from "./http/access.js";
import { buildApp } from "./http/app.js";
import { ProxyTrust } from "./http/forwarded.js";
import { runIfMain, serveUntilStopped } from "./lifecycle.js";
import { MeshLink } from "./mesh-link.js";
import { exitWithParent } from "./parent-watch.js";
import { Promoter } from "./promotion.js";
import { PullThrough } from "./pull-through.js";
import { registerQuotaMetrics } from "./quota-metrics.js";
import { RateLimiter } from "./rate-limits.js";
import { Scrubber } from "./scrub.js";
import { readVerificationKeys } from "./verification.js";

/** The first background scrub pass starts this long after the node (not in its busy start). */
const SCRUB_FIRST_AFTER_MS = 10 * 60_000;

export interface RunningNode {
  url: string;
  registry: Registry;
  /** Re-read `tls.certFile` and `tls.keyFile` for new connections (throws if unreadable; no-op without TLS). */
  reloadTls(): void;
  close(): Promise<void>;
}

/** The node's certificate and key, read from the configured files. */
function readTls(tls: NonNullable<NodeConfig["tls"]>): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
}

/** Start a node in this process (tests use it directly; `main` wraps it). */
export async function startNode(config: Readonly<NodeConfig>, logger: Logger): Promise<RunningNode> {
  const log = logger.child({ region: config.region });
  await mkdir(config.view.dir, { recursive: true });
  const store = await openBlobStore(config.storage);
  // The metrics registry comes first: the view counts the events it refuses.
  const metrics = new MetricsRegistry();
  metrics.setDefaultLabels({ region: config.region });
  collectProcessMetrics(metrics, "meridian_node_");
  // With auth, the token keys come before the view: it checks identity and
  // policy events' proofs with them from the first event it applies.
  const keys = config.auth.enabled
    ? await loadTokenKeys({
        tokenKeyFile: config.auth.tokenKeyFile,
        retiredKeyFiles: config.auth.retiredKeyFiles,
        create: config.mesh === undefined,
        logger: log,
      })
    : undefined;
  const view = new MetadataView(
    config.view.dir,
    keys === undefined ? {} : { authority: { verify: (event) => keys.verifyEvent(event) } },
  );
  watchRefusals(view, metrics, log.child({ component: "view" }));
  registerQuotaMetrics(metrics, view.quotas);
  registerDiskMetrics(metrics, {
    ...(config.storage.type === "fs" ? { store: config.storage.root } : {}),
    view: config.view.dir,
  });
  await view.open();
  // The process's one NATS connection manager (data/nats-connection.ts): the event log's and the
  // audit log's connections; each log closes its own.
  const connections = new NatsConnectionManager(config.nats);
  const eventLog = JetStreamLog.open({
    servers: config.nats.servers,
    region: config.region,
    name: `meridian-node-${config.region}-${process.pid}`,
    connections,
    logger: log.child({ component: "log" }),
  });
  // With a mesh: the link to this region's peer (fetch on miss, sync(k), fencing).
  const link =
    config.mesh === undefined
      ? undefined
      : new MeshLink({
          region: config.region,
          mesh: config.mesh,
          keepaliveMs: config.peerPollMs,
          startupGraceMs: config.startupGraceMs,
          logger: log.child({ component: "mesh-link" }),
        });
  link?.start();
  const registry = new Registry({
    region: config.region,
    mesh: link,
    otherRegions: (config.mesh?.regions.length ?? 1) - 1,
    syncTimeoutMs: config.syncTimeoutMs,
    store,
    log: eventLog,
    view,
    logger: log.child({ component: "registry" }),
    maxManifestBytes: config.maxManifestBytes,
    undeleteWindowMs: config.undeleteWindowHours * 3_600_000,
    pullFlushMs: config.pullFlushSeconds * 1000,
    ...(keys === undefined ? {} : { signEvent: (event) => keys.signEvent(event) }),
    uploadLimits: config.uploads,
    gc: { graceMs: config.gc.graceMinutes * 60_000, settleMs: config.gc.settleMs },
  });
  registry.start();
  await catchUp(eventLog, view, log);
  // After the catch-up: a view rebuilt empty learns the users from the log first.
  let unauthenticated: string | undefined;
  try {
    unauthenticated = await unauthenticatedStart(config, view, log);
  } catch (err) {
    await eventLog.close(); // first: the registry's tail ends when its log closes
    await registry.stop();
    await view.close();
    link?.close();
    throw err;
  }
  const stopApplying = applyConfiguredPolicies(
    registry,
    config.policies,
    log.child({ component: "policies" }),
  );
  registerKdfMetrics(metrics);
  const fetchOnMiss =
    link === undefined || config.fetchOnMiss === "off"
      ? undefined
      : new FetchOnMiss({
          mode: config.fetchOnMiss,
          link,
          store,
          metrics,
          logger: log.child({ component: "fetch-on-miss" }),
        });
  // Pull-through cache projects (./pull-through.ts): their misses are fetched from upstream.
  const pullThrough = new PullThrough({
    registry,
    metrics,
    logger: log.child({ component: "pull-through" }),
    ...config.pullThrough,
  });
  // The scrub (./scrub.ts): repairs through the region's peer when there is a mesh.
  const scrubber = new Scrubber({
    region: config.region,
    store,
    content: view.content,
    ...(link === undefined ? {} : { source: link }),
    record: (body, actor) => registry.commitAdmin(body, actor),
    bytesPerSecond: config.scrub.bytesPerSecond,
    metrics,
    logger: log.child({ component: "scrub" }),
  });
  registry.onCorrupt = (repo, digest, actual, size) => scrubber.repairReported(repo, digest, actual, size);
  if (config.scrub.intervalHours > 0)
    scrubber.schedule(SCRUB_FIRST_AFTER_MS, config.scrub.intervalHours * 3_600_000);
  const auth = keys === undefined ? undefined : await startAuth(config, keys, registry, log, metrics);
  const audit = await AuditLog.open({
    servers: config.nats.servers,
    connections,
    region: config.region,
    logger: log.child({ component: "audit" }),
    metrics,
    // A flood of failed logins is something an operator must look at (GET /admin/v1/alerts).
    onFlood: (flood) =>
      void registry
        .commitAdmin(
          {
            type: "alert.raised",
            kind: "login-flood",
            message: `${flood.suppressed} failed logins in a window from ${flood.addresses} addresses (most from ${flood.top}); the audit log records them in aggregate`,
            detail: { ...flood },
          },
          "audit",
        )
        .catch((err) => log.warn({ err }, "login flood alert not stored")),
  });
  if (unauthenticated !== undefined)
    audit.record({
      actor: "operator",
      kind: "service",
      action: "admin",
      address: "local",
      status: 200,
      detail: `started without authentication although ${unauthenticated} (auth.allowUnauthenticated / MERIDIAN_NO_AUTH)`,
    });
  // Pull and push rate limits, shared with the region's other nodes over NATS (./rate-limits.ts).
  const rateLimiter = new RateLimiter({
    settings: config.rateLimits,
    region: config.region,
    metrics,
    logger: log.child({ component: "rate-limits" }),
    nats: { connections, servers: config.nats.servers },
  });
  rateLimiter.start();
  const verificationKeys = readVerificationKeys(config.verification.keys);
  const app = await buildApp({
    rateLimiter,
    ...(config.trustedProxies.length === 0
      ? {}
      : {
          // With authentication the proxy must also prove itself with the mesh key (./http/forwarded.ts).
          proxyTrust: new ProxyTrust(
            config.trustedProxies,
            auth === undefined ? undefined : (proof) => auth.authenticator.proxyProof(proof),
          ),
        }),
    auth,
    audit,
    adminWriteAddresses: config.auth.adminWriteAddresses,
    registry,
    metrics,
    fetchOnMiss,
    pullThrough,
    scrubber,
    verificationKeys,
    promoter: new Promoter({
      registry,
      keys: verificationKeys,
      ...(config.mesh === undefined ? {} : { mesh: config.mesh }),
      // Other regions take the pushes of a promotion from this node's service token (node/promotion.ts).
      ...(keys === undefined
        ? {}
        : {
            serviceToken: async () =>
              (
                await keys.issue({
                  issuer: TOKEN_ISSUER,
                  service: config.auth.service,
                  subject: `promotion-${config.region}`,
                  kind: "service",
                  access: [],
                  ttlSeconds: 600,
                })
              ).token,
          }),
      logger: log.child({ component: "promotion" }),
    }),
    ...(auth === undefined || config.oidc === undefined
      ? {}
      : { oidc: { client: new OidcClient(config.oidc), config: config.oidc } }),
    ...(config.mesh === undefined ? {} : { mesh: config.mesh }),
    logger: log.child({ component: "http" }),
    http: config.http,
    ...(config.tls === undefined ? {} : { https: readTls(config.tls) }),
  });
  const address = await app.listen({ host: config.listen.host, port: config.listen.port });
  const purge = schedulePurge(
    registry,
    config.uploads.idleMinutes,
    config.storage.uploadMaxAgeHours,
    log.child({ component: "purge" }),
  );
  const stopGc = scheduleGc(registry, config.gc.intervalMinutes, metrics, log.child({ component: "gc" }));
  return {
    url: address,
    registry,
    reloadTls() {
      if (config.tls === undefined) return;
      (app.server as unknown as TlsServer).setSecureContext(readTls(config.tls));
    },
    async close() {
      stopApplying();
      clearInterval(purge);
      stopGc();
      await app.close();
      await rateLimiter.close();
      await scrubber.close();
      await audit.close();
      await registry.stop();
      await eventLog.close();
      await view.close();
      link?.close();
    },
  };
}

/** Authentication (node/auth/): the token keys, the login limiter, and the first admin. */
async function startAuth(
  config: Readonly<NodeConfig>,
  keys: TokenKeys,
  registry: Registry,
  log: Logger,
  metrics: MetricsRegistry,
): Promise<HttpAuth> {
  const file = config.auth.adminPasswordFile;
  if (file !== undefined) {
    const attempt = () =>
      ensureAdmin(registry, file, log).catch((err) => {
        log.warn({ err }, "system admin not created yet; retrying");
        setTimeout(attempt, 3_000).unref();
      });
    await attempt();
  }
  const limiter = new LoginLimiter(config.auth.loginFailures);
  const directory =
    config.ldap === undefined
      ? undefined
      : new DirectoryLogin(new LdapDirectory(config.ldap, log.child({ component: "ldap" })), limiter);
  if (directory !== undefined) registerLdapMetrics(metrics, directory);
  const authenticator = new Authenticator({
    view: registry.view,
    keys,
    service: config.auth.service,
    tokenTtlSeconds: config.auth.tokenTtlSeconds,
    limiter,
    logger: log.child({ component: "auth" }),
    ...(directory === undefined ? {} : { directory }),
  });
  return { authenticator, realm: config.auth.realm };
}

/**
 * Identity and policy events the view refused (no or a bad proof, or an
 * actor without the right: protocol/event-authority.ts): a warning each, and
 * `meridian_view_events_refused_total` by event type. Someone who can
 * append to the log is trying to forge an admin change.
 */
function watchRefusals(view: MetadataView, metrics: MetricsRegistry, log: Logger): void {
  const refused = new Counter({
    name: "meridian_view_events_refused_total",
    help: "Identity and policy events the view refused: no valid proof, or an actor without the right",
    labelNames: ["type"],
    registers: [metrics],
  });
  view.onRefused = (event, seq, reason) => {
    refused.inc({ type: event.type });
    log.warn(
      {
        eventId: event.id,
        seq,
        type: event.type,
        actor: event.actor.slice(0, 100),
        origin: event.origin,
        reason,
      },
      "event refused",
    );
  };
}

/**
 * Store the configuration file's policies that differ from those stored under
 * their names; while the log is unreachable, try again every few seconds.
 * Returns a function that stops trying.
 */
function applyConfiguredPolicies(registry: Registry, policies: Policy[], log: Logger): () => void {
  if (policies.length === 0) return () => undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const attempt = async () => {
    try {
      const stored = new Map(
        (await registry.view.admin.policies()).map((p) => [p.name, JSON.stringify(p.policy)]),
      );
      for (const policy of policies) {
        if (stored.get(policy.name) === JSON.stringify(policy)) continue;
        await registry.commitAdmin(
          { type: "policy.set", name: policy.name, policy: policy as unknown as Record<string, unknown> },
          "config",
        );
        log.info({ policy: policy.name }, "policy from the configuration file stored");
      }
    } catch (err) {
      if (stopped) return;
      log.warn({ err }, "policies from the configuration file not stored yet; retrying");
      timer = setTimeout(() => void attempt(), 3_000);
    }
  };
  void attempt();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/**
 * Abandoned upload sessions (nothing received for `idleMinutes`), sessions
 * older than `maxAgeHours` whatever they do, and crash leftovers are removed
 * at start and then every `idleMinutes / 4` (at most hourly), so an abandoned session lives at most 1.25 × `idleMinutes`.
 */
function schedulePurge(
  registry: Registry,
  idleMinutes: number,
  maxAgeHours: number,
  log: Logger,
): NodeJS.Timeout {
  const run = () => {
    const now = Date.now();
    registry.uploads
      .purge(new Date(now - idleMinutes * 60_000), new Date(now - maxAgeHours * 3_600_000))
      .then(
        (n) => {
          if (n.uploads + n.leftovers > 0) log.info(n, "stale uploads purged");
        },
        (err) => log.warn({ err }, "upload purge failed"),
      );
  };
  run();
  const everyMs = Math.min(3_600_000, Math.max(1_000, (idleMinutes * 60_000) / 4));
  return setInterval(run, everyMs).unref();
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string" } } });
  let config: Readonly<NodeConfig>;
  try {
    config = loadNodeConfig({ file: values.config, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  privateDirs([config.dataDir, config.view.dir, config.storage.root]);
  // One node per view (several nodes of a region share its data directory and
  // blob store, each with its own view): a second on the same view refuses at
  // once, naming the first's pid (issue 11). `meridian rebuild` reads it.
  try {
    acquirePidLock(`${config.view.dir}.lock`, `the view ${config.view.dir}`);
  } catch (err) {
    if (!(err instanceof LockHeldError)) throw err;
    process.stderr.write(`node: ${err.message}\n`);
    process.exit(1);
  }
  // Watched from the start, not only once serving: a start may wait long (node/lifecycle.ts watches again, a no-op).
  exitWithParent();
  const logger = pino(loggerOptions(config.logLevel), pino.destination(2));
  let node: RunningNode;
  try {
    node = await startNode(config, logger);
  } catch (err) {
    if (err instanceof StartRefusedError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  serveUntilStopped(node, {
    name: "node",
    logger,
    listening: { region: config.region, registry: node.url },
    ...(config.tls === undefined ? {} : { reloadTls: () => node.reloadTls() }),
  });
}

runIfMain(import.meta.url, "node", main);
