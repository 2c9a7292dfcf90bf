/**
 * A whole local mesh for tests: `bin/meridian up --regions …` as a child
 * process on a free block of ports, its JSON lines parsed, stopped (SIGTERM,
 * then SIGKILL) after the test. Or (startProxiedMesh) regions as separate
 * processes with TCP proxies between them; mesh certificates there include
 * one for the front door (`front-door`), so a test can start one.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TcpProxy } from "../chaos/tcp-proxy.js";
import { ensureMeshCerts } from "../cli/certs.js";
import type { NatsServerProcess } from "../cli/nats-server.js";
import { natsClusterPorts } from "../cli/up-nats.js";
import { nodePorts } from "../cli/up-region.js";
import { inboxPrefixOf, type NatsClientConfig } from "../node/data/nats-connect.js";
import { type Mesh, natsServersOf } from "../protocol/mesh.js";
import {
  type After,
  CLI_ENTRY,
  freePort,
  type MeridianProcess,
  restartNats,
  spawnMeridian,
  startTestNats,
  tempDir,
} from "./harness.js";
import { freePortBlock } from "./ports.js";

export interface RegionInfo {
  region: string;
  registry: string;
  nats: string;
  grpc?: string;
  metrics?: { peer: string; worker: string };
  pids: Record<string, number>;
  /**
   * With `--nats-cluster N`: the region's servers (the ready line's `nats` and
   * `pids.nats` arrays); `nats` and `pids.nats` above are then the first's.
   */
  natsCluster?: { urls: string[]; pids: number[] };
  /**
   * With `--nodes N` (N > 1): every node's URL and pid (the ready line's
   * `registries` and `pids.node` array); `registry` and `pids.node` above are
   * then the first's.
   */
  nodes?: { urls: string[]; pids: number[] };
}

export interface RunningMesh {
  regions: Map<string, RegionInfo>;
  /** The front door's URL (from the `{"ready":true,…}` line), with several regions. */
  frontDoor?: string;
  /** The ready line's `dashboard`: the dashboard's URL (the front door's /ui/, or a lone region's). */
  dashboard?: string;
  /** The ready line's `adminPasswordFile` (with `--auth`). */
  adminPasswordFile?: string;
  /** The ready line's `s3` (with `--s3`): the S3 server's URL. */
  s3?: string;
  /** The ready line's `pids` (the front door's, the S3 server's), as printed. */
  pids: Record<string, number>;
  /** The ready line's `natsAuthDir`: NATS seeds of every identity (cli/nats-auth.ts). */
  natsAuthDir: string;
  dataDir: string;
  child: ChildProcess;
  stop(): Promise<number | null>;
}

/**
 * `flags`: more options for `meridian up` (e.g. `--tls`). `env`: settings for
 * every process `up` starts (e.g. MERIDIAN_FETCH_ON_MISS: "proxy", which is
 * otherwise "off"); a function of the base port when a setting names a
 * region's URL (region i's registry is `base + 10 i`: an OIDC redirect URL).
 */
export async function startMesh(
  after: After,
  regions: string[],
  dataDir?: string,
  flags: string[] = [],
  env: Record<string, string> | ((base: number) => Record<string, string>) = {},
): Promise<RunningMesh> {
  const dir = dataDir ?? tempDir(after, "meridian-mesh-");
  // cli/up.ts regionPorts: B+10i … B+10i+4 per region, and B+5 for the front door; with
  // --nats-cluster N, cli/up-nats.ts natsClusterPorts too.
  const offsets = [...regions.flatMap((_, i) => [0, 1, 2, 3, 4].map((o) => 10 * i + o)), 5];
  const cluster = flags.indexOf("--nats-cluster");
  const clusterSize = cluster < 0 ? 1 : Number(flags[cluster + 1]);
  if (clusterSize > 1)
    for (const [i] of regions.entries()) {
      const { clients, routes } = natsClusterPorts(0, regions.length, i, clusterSize);
      offsets.push(...clients, ...routes);
    }
  // --s3: cli/up-s3.ts s3Port; --nodes N: cli/up-region.ts nodePorts (the free end of the route block).
  const nodesAt = flags.indexOf("--nodes");
  const nodeCount = nodesAt < 0 ? 1 : Number(flags[nodesAt + 1]);
  if (flags.includes("--s3")) offsets.push(10 * regions.length + 9);
  for (const [i] of regions.entries()) offsets.push(...nodePorts(0, regions.length, i, nodeCount).slice(1));
  const base = await freePortBlock([...new Set(offsets)]);
  const child = spawn(
    process.execPath,
    [CLI_ENTRY, "up", "--regions", regions.join(","), "--base-port", String(base), "--data", dir, ...flags],
    {
      stdio: ["ignore", "pipe", "pipe"],
      // As in startProxiedMesh: regions do not fetch on miss, so tests see what each one holds.
      env: {
        ...process.env,
        MERIDIAN_FETCH_ON_MISS: "off",
        MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
        ...(typeof env === "function" ? env(base) : env),
      },
    },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    }
    return child.exitCode;
  };
  // Registered before the wait, so a mesh that never comes up is still stopped.
  after(async () => {
    await stop();
  });
  const infos = new Map<string, RegionInfo>();
  let frontDoor: string | undefined;
  let adminPasswordFile: string | undefined;
  let dashboard: string | undefined;
  let natsAuthDir = "";
  let s3: string | undefined;
  let readyPids: Record<string, number> = {};
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh did not come up: ${stderr}`)), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`meridian up exited with ${code}: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line);
      if (msg.ready) {
        frontDoor = msg.frontDoor;
        dashboard = msg.dashboard;
        adminPasswordFile = msg.adminPasswordFile;
        natsAuthDir = msg.natsAuthDir;
        s3 = msg.s3;
        readyPids = msg.pids ?? {};
        clearTimeout(timer);
        resolve();
      } else if (msg.region) {
        if (Array.isArray(msg.nats)) {
          msg.natsCluster = { urls: msg.nats, pids: msg.pids.nats };
          msg.nats = msg.nats[0];
          msg.pids.nats = msg.pids.nats[0];
        }
        if (Array.isArray(msg.pids.node)) {
          msg.nodes = { urls: msg.registries, pids: msg.pids.node };
          msg.pids.node = msg.pids.node[0];
        }
        infos.set(msg.region, msg);
      }
    });
  });
  return {
    regions: infos,
    ...(frontDoor === undefined ? {} : { frontDoor }),
    ...(dashboard === undefined ? {} : { dashboard }),
    ...(adminPasswordFile === undefined ? {} : { adminPasswordFile }),
    ...(s3 === undefined ? {} : { s3 }),
    pids: readyPids,
    natsAuthDir,
    dataDir: dir,
    child,
    stop,
  };
}

/**
 * How to sign in to a `startMesh` mesh's NATS as `identity`: "operator", or
 * "<region>-node|peer|worker" (cli/nats-auth.ts says what each may do).
 */
export function natsIdentity(mesh: Pick<RunningMesh, "natsAuthDir">, identity: string): NatsClientConfig {
  return { seedFile: join(mesh.natsAuthDir, `${identity}.seed`), inboxPrefix: inboxPrefixOf(identity) };
}

type Env = Record<string, string>;

export interface ProxiedRegion {
  name: string;
  dir: string;
  nats: NatsServerProcess;
  registry: string;
  node: MeridianProcess;
  peer: MeridianProcess;
  worker: MeridianProcess;
  /** Environment the worker was started with (to restart it the same way). */
  workerEnv: Record<string, string>;
  nodeEnv: Record<string, string>;
  peerEnv: Record<string, string>;
}

/** One process of a region, as `killProcess`/`restartProcess` name it. */
export type RegionProcess = "nats" | "node" | "peer" | "worker";

/**
 * With `edges`: the links into a region from outside replication, each a
 * TcpProxy. `registry` and `grpc` are the region's node (HTTP) and peer
 * (gRPC) as the front door and operators see them (`edgeMeshFile`); `nats`
 * is the region's nats-server as its own node, peer and worker see it.
 */
export interface EdgeLinks {
  registry: TcpProxy;
  grpc: TcpProxy;
  nats: TcpProxy;
}

export interface ProxiedMeshOptions {
  /**
   * Put `EdgeLinks` in front of every region (default false: the front door,
   * operators and a region's own processes reach it directly). The peer's
   * and worker's metrics ports are then fixed, and named in `edgeMeshFile`,
   * so `meridian status --mesh edgeMeshFile` sees them across restarts.
   */
  edges?: boolean;
}

export interface ProxiedMesh {
  regions: Map<string, ProxiedRegion>;
  meshFile: string;
  /** With `edges`: region → its edge links. */
  edges?: Map<string, EdgeLinks>;
  /** With `edges`: mesh.json with every region's registry and gRPC behind its edge proxies, metrics included. */
  edgeMeshFile?: string;
  /** proxies.get(dst).get(src): the links dst's worker uses to reach src (NATS and gRPC). */
  proxies: Map<string, Map<string, { nats: TcpProxy; grpc: TcpProxy }>>;
  /** Cut every replication link into and out of `region`. */
  partition(region: string): void;
  heal(region: string): void;
  /** SIGKILL every process of a region (worker, peer, node, nats-server), as a region dying. */
  killRegion(region: string): Promise<void>;
  /**
   * Start a killed region's processes again on the same ports; with `fresh`,
   * its data (log, store, views) is deleted first: a region rebuilt empty.
   */
  restartRegion(region: string, options?: { fresh?: boolean }): Promise<void>;
  /** SIGKILL one process of a region, and wait for its exit. */
  killProcess(region: string, kind: RegionProcess): Promise<void>;
  /** Start one (killed) process of a region again, as it was started (same ports and data). */
  restartProcess(region: string, kind: RegionProcess): Promise<void>;
}

/**
 * Regions as separate processes (nats-server, node, peer, worker each), with
 * every worker reaching the other regions' NATS and peers through a TcpProxy
 * of chaos/, so a test can partition a region or slow a link. `env` adds
 * settings per process kind. Nodes do not fetch on miss unless `env.node`
 * sets MERIDIAN_FETCH_ON_MISS. `options.edges` adds proxies on the other
 * links too (ProxiedMeshOptions).
 */
export async function startProxiedMesh(
  after: After,
  names: string[],
  env: { node?: Env; peer?: Env; worker?: Env } = {},
  options: ProxiedMeshOptions = {},
): Promise<ProxiedMesh> {
  const root = tempDir(after, "meridian-pmesh-");
  const certs = await ensureMeshCerts(join(root, "certs"), [...names, "front-door"]);
  const natsByRegion = new Map<string, NatsServerProcess>();
  for (const name of names) natsByRegion.set(name, await startTestNats(after, join(root, name, "nats")));
  const mesh: Mesh = {
    regions: await Promise.all(
      names.map(async (name) => ({
        name,
        registry: `http://127.0.0.1:${await freePort()}`,
        nats: natsByRegion.get(name)!.url,
        grpc: `127.0.0.1:${await freePort()}`,
      })),
    ),
    tls: { ca: certs.ca, dir: certs.dir },
  };
  const meshFile = join(root, "mesh.json");
  writeFileSync(meshFile, JSON.stringify(mesh));
  const proxies = new Map<string, Map<string, { nats: TcpProxy; grpc: TcpProxy }>>();
  for (const dst of names) {
    const links = new Map<string, { nats: TcpProxy; grpc: TcpProxy }>();
    for (const src of mesh.regions.filter((r) => r.name !== dst)) {
      const [grpcHost, grpcPort] = src.grpc.split(":");
      const nats = await TcpProxy.start({
        target: { host: "127.0.0.1", port: natsByRegion.get(src.name)!.port },
      });
      const grpc = await TcpProxy.start({ target: { host: grpcHost!, port: Number(grpcPort) } });
      after(() => nats.close());
      after(() => grpc.close());
      links.set(src.name, { nats, grpc });
    }
    proxies.set(dst, links);
  }
  const edges = options.edges === true ? new Map<string, EdgeLinks>() : undefined;
  let edgeMeshFile: string | undefined;
  const metricsPorts = new Map<string, { peer: string; worker: string }>();
  if (edges !== undefined) {
    const to = async (address: string) => {
      const url = new URL(address.includes("://") ? address : `tcp://${address}`);
      const proxy = await TcpProxy.start({ target: { host: url.hostname, port: Number(url.port) } });
      after(() => proxy.close());
      return proxy;
    };
    for (const r of mesh.regions) {
      edges.set(r.name, {
        registry: await to(r.registry),
        grpc: await to(r.grpc),
        nats: await to(natsServersOf(r)[0]!),
      });
      metricsPorts.set(r.name, { peer: String(await freePort()), worker: String(await freePort()) });
    }
    const seen: Mesh = {
      ...mesh,
      regions: mesh.regions.map((r) => ({
        ...r,
        registry: `http://${edges.get(r.name)!.registry.address}`,
        grpc: edges.get(r.name)!.grpc.address,
        metrics: {
          peer: `http://127.0.0.1:${metricsPorts.get(r.name)!.peer}`,
          worker: `http://127.0.0.1:${metricsPorts.get(r.name)!.worker}`,
        },
      })),
    };
    edgeMeshFile = join(root, "mesh-edge.json");
    writeFileSync(edgeMeshFile, JSON.stringify(seen));
  }
  const regions = new Map<string, ProxiedRegion>();
  for (const r of mesh.regions) {
    const dir = join(root, r.name);
    // With edges, the region's own processes reach its nats-server through its edge proxy: the
    // worker takes its local NATS from mesh.json, so the region gets a copy naming that proxy.
    const localNats =
      edges === undefined ? natsServersOf(r).join(",") : `nats://${edges.get(r.name)!.nats.address}`;
    let regionMeshFile = meshFile;
    if (edges !== undefined) {
      regionMeshFile = join(root, `mesh-${r.name}.json`);
      const own: Mesh = {
        ...mesh,
        regions: mesh.regions.map((x) => (x.name === r.name ? { ...x, nats: localNats } : x)),
      };
      writeFileSync(regionMeshFile, JSON.stringify(own));
    }
    const fixedMetrics = metricsPorts.get(r.name);
    const base = {
      MERIDIAN_REGION: r.name,
      MERIDIAN_DATA_DIR: dir,
      MERIDIAN_MESH: regionMeshFile,
      MERIDIAN_STORAGE_FSYNC: "false",
    };
    const nodeEnv = {
      ...base,
      MERIDIAN_NATS_SERVERS: localNats,
      MERIDIAN_LISTEN_PORT: new URL(r.registry).port,
      // Replication tests look at what each region holds: no fetching from the others unless asked.
      MERIDIAN_FETCH_ON_MISS: "off",
      ...env.node,
    };
    const node = await spawnMeridian(after, "node/server.js", nodeEnv);
    const peerEnv = {
      ...base,
      MERIDIAN_HEARTBEAT_INTERVAL_MS: "250",
      ...(edges === undefined
        ? {}
        : { MERIDIAN_NATS_SERVERS: localNats, MERIDIAN_METRICS_PORT: fixedMetrics!.peer }),
      ...env.peer,
    };
    const peer = await spawnMeridian(after, "control-plane/peer.js", peerEnv);
    const links = proxies.get(r.name)!;
    const workerEnv = {
      ...base,
      ...(fixedMetrics === undefined ? {} : { MERIDIAN_METRICS_PORT: fixedMetrics.worker }),
      ...env.worker,
      MERIDIAN_PEER_ADDRESSES: JSON.stringify(
        Object.fromEntries([...links].map(([s, l]) => [s, l.grpc.address])),
      ),
      MERIDIAN_SOURCE_NATS: JSON.stringify(
        Object.fromEntries([...links].map(([s, l]) => [s, `nats://${l.nats.address}`])),
      ),
    };
    const worker = await spawnMeridian(after, "replication/main.js", workerEnv);
    regions.set(r.name, {
      name: r.name,
      dir,
      nats: natsByRegion.get(r.name)!,
      registry: r.registry,
      node,
      peer,
      worker,
      workerEnv,
      nodeEnv,
      peerEnv,
    });
  }
  const linksOf = (region: string) => [
    ...proxies.get(region)!.values(),
    ...[...proxies].filter(([dst]) => dst !== region).map(([, links]) => links.get(region)!),
  ];
  const entries = { node: "node/server.js", peer: "control-plane/peer.js", worker: "replication/main.js" };
  const envOf = (r: ProxiedRegion) => ({ node: r.nodeEnv, peer: r.peerEnv, worker: r.workerEnv });
  return {
    regions,
    meshFile,
    proxies,
    ...(edges === undefined ? {} : { edges, edgeMeshFile: edgeMeshFile! }),
    partition: (region) => {
      for (const l of linksOf(region)) {
        l.nats.partition();
        l.grpc.partition();
      }
    },
    heal: (region) => {
      for (const l of linksOf(region)) {
        l.nats.heal();
        l.grpc.heal();
      }
    },
    killRegion: async (name) => {
      const r = regions.get(name)!;
      await Promise.all([r.worker.kill(), r.peer.kill(), r.node.kill(), r.nats.kill()]);
    },
    restartRegion: async (name, options = {}) => {
      const r = regions.get(name)!;
      if (options.fresh === true) {
        for (const entry of readdirSync(r.dir)) rmSync(join(r.dir, entry), { recursive: true, force: true });
      }
      r.nats = await restartNats(after, r.nats, join(r.dir, "nats"));
      r.node = await spawnMeridian(after, "node/server.js", r.nodeEnv);
      r.peer = await spawnMeridian(after, "control-plane/peer.js", r.peerEnv);
      r.worker = await spawnMeridian(after, "replication/main.js", r.workerEnv);
    },
    killProcess: async (name, kind) => {
      const r = regions.get(name)!;
      await (kind === "nats" ? r.nats : r[kind]).kill();
    },
    restartProcess: async (name, kind) => {
      const r = regions.get(name)!;
      if (kind === "nats") r.nats = await restartNats(after, r.nats, join(r.dir, "nats"));
      else r[kind] = await spawnMeridian(after, entries[kind], envOf(r)[kind]);
    },
  };
}
