/**
 * The nats-servers of one region under `meridian up` (./up.ts's header has
 * the port layout): one server as always, or with `--nats-cluster N` a
 * JetStream cluster of N (issue 13). Kept apart from up.ts's process
 * supervision: up.ts treats a region's servers as a list either way. Also
 * the operator's housekeeping before a region starts: its streams made
 * (prepareStreams).
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { AuditLog } from "../node/audit.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import type { NatsIdentity } from "./nats-auth.js";
import {
  clusterMemberOptions,
  type NatsServerProcess,
  startNatsCluster,
  startNatsServer,
} from "./nats-server.js";

/**
 * A region's nats-servers with `--nats-cluster n` (see the header): client
 * ports B+10i+1 (the single server's), then B+10i+6 …; route ports in a
 * block after every region's, B+10R+10i+k (R regions). Pure.
 */
export function natsClusterPorts(basePort: number, regionCount: number, i: number, n: number) {
  const b = basePort + 10 * i;
  const clients = [b + 1, b + 6, b + 7, b + 8, b + 9].slice(0, n);
  const routes = clients.map((_, k) => basePort + 10 * regionCount + 10 * i + k);
  return { clients, routes };
}

/** One of a region's nats-servers as `up` started it. */
export interface RegionNatsServer {
  server: NatsServerProcess;
  logFile: string;
  /** Start this server again, alone, as it was (same port, store, name, cluster routes): for a supervisor. */
  start(): Promise<NatsServerProcess>;
}

/**
 * Region `i`'s nats-servers. One (size 1): <region>/nats, nats.log, as
 * always. A cluster: <region>/nats-cluster/<k> and nats-<k>.log for k = 1..n,
 * named meridian-<region>-<k> in cluster meridian-<region>; a separate store
 * from the single server's, so switching modes starts from another log
 * (nothing migrates between them). Routes listen on 127.0.0.1 and require
 * the route password in <data>/nats-auth/route-password (0600, made once):
 * see cli/nats-server.ts clusterBlock for why both.
 */
export async function startRegionNats(
  dataDir: string,
  region: string,
  i: number,
  o: { basePort: number; regionCount: number; size: number; authorization: unknown },
): Promise<RegionNatsServer[]> {
  const regionDir = join(dataDir, region);
  const ports = natsClusterPorts(o.basePort, o.regionCount, i, o.size);
  if (o.size === 1) {
    const logFile = join(regionDir, "nats.log");
    const options = {
      port: ports.clients[0]!,
      storeDir: join(regionDir, "nats"),
      name: `meridian-${region}`,
      logFile,
      authorization: o.authorization,
      detached: true,
    };
    return [{ server: await startNatsServer(options), logFile, start: () => startNatsServer(options) }];
  }
  const passwordFile = join(dataDir, "nats-auth", "route-password");
  if (!existsSync(passwordFile))
    writeFileSync(passwordFile, `${randomBytes(24).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  const logFiles = ports.clients.map((_, k) => join(regionDir, `nats-${k + 1}.log`));
  const options = {
    name: `meridian-${region}`,
    ports: ports.clients,
    routePorts: ports.routes,
    storeDirs: ports.clients.map((_, k) => join(regionDir, "nats-cluster", String(k + 1))),
    routePassword: readFileSync(passwordFile, "utf8").trim(),
    logFiles,
    authorization: o.authorization,
    detached: true,
  };
  const servers = await startNatsCluster(options);
  return servers.map((server, k) => ({
    server,
    logFile: logFiles[k]!,
    start: () => startNatsServer(clusterMemberOptions(options, k)),
  }));
}

/**
 * Housekeeping as the operator, before the region's processes start: the
 * region's event and audit streams exist with the settings this version
 * wants (only the operator may update a stream, so a node could not bring an
 * older audit stream's limits up to date itself).
 */
export async function prepareStreams(
  servers: string[],
  region: string,
  operator: NatsIdentity,
  replicas: number,
): Promise<void> {
  const logger = pino({ level: "warn" }, pino.destination(2));
  const nats = { seedFile: operator.seedFile, inboxPrefix: operator.inboxPrefix, replicas };
  const log = JetStreamLog.open({ servers, region, name: "meridian-up", nats, logger });
  const audit = await AuditLog.open({ servers, region, name: "meridian-up", nats, logger });
  try {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`streams of ${region} not ready within 30 s`)), 30_000);
    });
    await Promise.race([Promise.all([log.ready(), audit.ready()]), timeout]).finally(() =>
      clearTimeout(timer),
    );
  } finally {
    await Promise.all([log.close(), audit.close()]);
  }
}
