/**
 * One region's processes under `meridian up` (./up.ts has the port layout,
 * the files and the ready line): its nats-servers (./up-nats.ts), its
 * streams, its registry node, and with a mesh its peer and worker, each
 * supervised (./supervisor.ts) and started in that order. up.ts keeps what
 * is once per mesh (locks, identities, certificates, mesh.json, the front
 * door, stopping).
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { authorizationFor, type NatsIdentities, natsClientEnv } from "./nats-auth.js";
import type { NatsServerProcess } from "./nats-server.js";
import { livenessProbe, pidsOf, type Started, type Supervised, type SupervisedRegion } from "./supervisor.js";
import { prepareStreams, startRegionNats } from "./up-nats.js";
import { startProcess, stopChild, V8_FLAGS } from "./up-processes.js";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..");
export const ENTRIES = {
  node: join(DIST, "node", "server.js"),
  peer: join(DIST, "control-plane", "peer.js"),
  worker: join(DIST, "replication", "main.js"),
  frontDoor: join(DIST, "control-plane", "front-door.js"),
};

/** Port layout of region `i` (see up.ts's header). */
export function regionPorts(basePort: number, i: number) {
  const b = basePort + 10 * i;
  return { registry: b, nats: b + 1, grpc: b + 2, peerMetrics: b + 3, workerMetrics: b + 4 };
}

/**
 * The registry ports of region `i`'s `n` nodes (see up.ts's header): the
 * first at the region's registry port, the others at B+10R+10i+5 … +8 (R
 * regions: the free end of the region's block of route ports). Pure.
 */
export function nodePorts(basePort: number, regionCount: number, i: number, n: number): number[] {
  const extra = [5, 6, 7, 8].slice(0, n - 1).map((o) => basePort + 10 * regionCount + 10 * i + o);
  return [regionPorts(basePort, i).registry, ...extra];
}

/** Node `k` (1-based) of a region: its data directory and log (see up.ts's header). */
export function nodeFiles(regionDir: string, k: number): { dataDir: string; logFile: string } {
  return k === 1
    ? { dataDir: regionDir, logFile: join(regionDir, "node.log") }
    : { dataDir: join(regionDir, `node-${k}`), logFile: join(regionDir, `node-${k}.log`) };
}

/** How up.ts supervises a process: what, role, log file, one start. */
export type Supervise = (
  what: string,
  role: string,
  logFile: string,
  start: () => Promise<Started>,
) => Supervised;

/**
 * A Meridian process as a supervised one: started (and restarted) by
 * `startProcess`, and probed for liveness from its listening line (a frozen
 * process is killed and restarted: ./supervisor.ts).
 */
export function meridianProcess(
  supervise: Supervise,
  what: string,
  role: string,
  entry: string,
  logFile: string,
  env: Record<string, string>,
) {
  let info: Record<string, string> = {};
  const p = supervise(what, role, logFile, async () => {
    const started = await startProcess(entry, what, logFile, env, V8_FLAGS[role]);
    info = started.info;
    return { child: started.child, stop: () => stopChild(started.child), probe: livenessProbe(info) };
  });
  return { p, info: () => info };
}

/** What every region's start shares, made once by up.ts. */
export interface RegionContext {
  dataDir: string;
  basePort: number;
  regionCount: number;
  /** Servers per region's JetStream cluster (1: one nats-server). */
  clusterSize: number;
  natsIds: NatsIdentities;
  /** <data>/mesh.json, given to every process when there are several regions. */
  meshFile: string;
  /** Several regions: peers, workers and a front door run. */
  multi: boolean;
  /** Registry nodes per region (`--nodes`, 1..5). */
  nodes: number;
  /** The blob store settings of a region's processes (`--s3`: its bucket; empty: the filesystem). */
  storageEnv(region: string): Record<string, string>;
  supervise: Supervise;
  /** The nats-servers' watchdog (./up-processes.ts startNatsWatchdog). */
  watchdog: { stdin: NodeJS.WritableStream | null };
  /** HTTPS settings of a node serving as `identity` (empty without --tls). */
  tlsEnv(identity: string): Record<string, string>;
  /** Authentication settings of every node (./up.ts). */
  nodeAuthEnv: Record<string, string>;
  /** The token key for peers (they sign in to the nodes' admin API). */
  serviceAuthEnv: Record<string, string>;
}

/**
 * Start region `i` (`supervised` collects its processes as they start, so a
 * failure part-way still stops the ones already up); returns its ready line.
 */
export async function startRegion(
  ctx: RegionContext,
  i: number,
  supervised: SupervisedRegion,
): Promise<Record<string, unknown>> {
  const region = supervised.name;
  const regionDir = join(ctx.dataDir, region);
  const ports = regionPorts(ctx.basePort, i);
  const clustered = ctx.clusterSize > 1;
  const natsIds = ctx.natsIds;
  // The region's nats-servers: one, or a JetStream cluster started together
  // (./up-nats.ts); each is then supervised alone (a restarted member
  // rejoins its cluster), its first start being the one just made.
  const regionNats = await startRegionNats(ctx.dataDir, region, i, {
    basePort: ctx.basePort,
    regionCount: ctx.regionCount,
    size: ctx.clusterSize,
    authorization: authorizationFor(natsIds, region),
  });
  for (const [k, member] of regionNats.entries()) {
    let first: NatsServerProcess | undefined = member.server;
    const what = clustered ? `nats-server ${k + 1} of ${region}` : `nats-server of ${region}`;
    const nats = ctx.supervise(what, "nats", member.logFile, async () => {
      const server = first ?? (await member.start());
      first = undefined;
      ctx.watchdog.stdin!.write(`${server.pid}\n`);
      server.child.once("exit", () => ctx.watchdog.stdin!.write(`-${server.pid}\n`));
      return { child: server.child, stop: () => server.stop() };
    });
    supervised.processes.push(nats);
    await nats.start();
  }
  const urls = regionNats.map((n) => n.server.url);
  await prepareStreams(urls, region, natsIds.operator, ctx.clusterSize);
  const env = {
    MERIDIAN_REGION: region,
    MERIDIAN_DATA_DIR: regionDir,
    MERIDIAN_NATS_SERVERS: urls.join(","),
    // Streams a process creates get one replica per server of the cluster.
    ...(clustered ? { MERIDIAN_NATS_REPLICAS: String(ctx.clusterSize) } : {}),
    ...(ctx.multi ? { MERIDIAN_MESH: ctx.meshFile } : {}),
  };
  const storageEnv = ctx.storageEnv(region);
  const nodes = nodePorts(ctx.basePort, ctx.regionCount, i, ctx.nodes);
  const registries: string[] = [];
  for (const [index, port] of nodes.entries()) {
    const k = index + 1;
    const files = nodeFiles(regionDir, k);
    const node = meridianProcess(
      ctx.supervise,
      nodes.length === 1 ? `node of ${region}` : `node ${k} of ${region}`,
      "node",
      ENTRIES.node,
      files.logFile,
      {
        ...env,
        // Its own view, locks and caches; the blobs where every process of the region has them:
        // the bucket, or (filesystem) the region's store directory, shared (up.ts's header).
        MERIDIAN_DATA_DIR: files.dataDir,
        ...(k > 1 && storageEnv.MERIDIAN_STORAGE_TYPE !== "s3"
          ? { MERIDIAN_STORAGE_ROOT: join(regionDir, "store") }
          : {}),
        ...storageEnv,
        // The shared store is scrubbed in the background by the first node only (node/scrub.ts).
        ...(k > 1 ? { MERIDIAN_SCRUB_INTERVAL_HOURS: "0" } : {}),
        MERIDIAN_LISTEN_HOST: "127.0.0.1",
        MERIDIAN_LISTEN_PORT: String(port),
        ...natsClientEnv(natsIds.regions[region]!.node),
        // The front door's address; with --auth it also proves itself with the mesh key.
        ...(ctx.multi ? { MERIDIAN_TRUSTED_PROXIES: "127.0.0.1" } : {}),
        ...ctx.tlsEnv(region),
        ...ctx.nodeAuthEnv,
      },
    );
    supervised.processes.push(node.p);
    await node.p.start();
    registries.push(node.info().registry!);
  }
  // Without --nats-cluster / --nodes, the shape tests and docs read: one URL (pids: one number).
  const line: Record<string, unknown> = {
    region,
    registry: registries[0],
    ...(registries.length > 1 ? { registries } : {}),
    nats: clustered ? urls : urls[0],
  };
  if (ctx.multi) {
    const peer = meridianProcess(
      ctx.supervise,
      `peer of ${region}`,
      "peer",
      ENTRIES.peer,
      join(regionDir, "peer.log"),
      {
        ...env,
        ...storageEnv,
        MERIDIAN_METRICS_PORT: String(ports.peerMetrics),
        ...natsClientEnv(natsIds.regions[region]!.peer),
        ...ctx.serviceAuthEnv,
      },
    );
    supervised.processes.push(peer.p);
    await peer.p.start();
    const worker = meridianProcess(
      ctx.supervise,
      `worker of ${region}`,
      "worker",
      ENTRIES.worker,
      join(regionDir, "worker.log"),
      {
        ...env,
        ...storageEnv,
        MERIDIAN_METRICS_PORT: String(ports.workerMetrics),
        ...natsClientEnv(natsIds.regions[region]!.worker),
      },
    );
    supervised.processes.push(worker.p);
    await worker.p.start();
    line.grpc = peer.info().grpc;
    line.metrics = { peer: peer.info().metrics, worker: worker.info().metrics };
  }
  return { ...line, pids: pidsOf(supervised.processes) };
}
