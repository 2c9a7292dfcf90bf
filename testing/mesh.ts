/**
 * A whole local mesh for tests: `bin/meridian up --regions …` as a child
 * process on a free block of ports, its JSON lines parsed, stopped (SIGTERM,
 * then SIGKILL) after the test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TcpProxy } from "../chaos/tcp-proxy.js";
import { ensureMeshCerts } from "../cli/certs.js";
import type { NatsServerProcess } from "../cli/nats-server.js";
import type { Mesh } from "../protocol/mesh.js";
import {
  type After,
  CLI_ENTRY,
  freePort,
  type MeridianProcess,
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
}

export interface RunningMesh {
  regions: Map<string, RegionInfo>;
  dataDir: string;
  child: ChildProcess;
  stop(): Promise<number | null>;
}

export async function startMesh(after: After, regions: string[], dataDir?: string): Promise<RunningMesh> {
  const dir = dataDir ?? tempDir(after, "meridian-mesh-");
  const offsets = regions.flatMap((_, i) => [0, 1, 2, 3, 4].map((o) => 10 * i + o));
  const base = await freePortBlock(offsets);
  const child = spawn(
    process.execPath,
    [CLI_ENTRY, "up", "--regions", regions.join(","), "--base-port", String(base), "--data", dir],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn" },
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
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh did not come up: ${stderr}`)), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`meridian up exited with ${code}: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line);
      if (msg.ready) {
        clearTimeout(timer);
        resolve();
      } else if (msg.region) infos.set(msg.region, msg);
    });
  });
  return { regions: infos, dataDir: dir, child, stop };
}

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
}

export interface ProxiedMesh {
  regions: Map<string, ProxiedRegion>;
  meshFile: string;
  /** proxies.get(dst).get(src): the links dst's worker uses to reach src (NATS and gRPC). */
  proxies: Map<string, Map<string, { nats: TcpProxy; grpc: TcpProxy }>>;
  /** Cut every replication link into and out of `region`. */
  partition(region: string): void;
  heal(region: string): void;
}

/**
 * Regions as separate processes (nats-server, node, peer, worker each), with
 * every worker reaching the other regions' NATS and peers through a TcpProxy
 * of chaos/, so a test can partition a region or slow a link.
 */
export async function startProxiedMesh(
  after: After,
  names: string[],
  extraWorkerEnv: Record<string, string> = {},
): Promise<ProxiedMesh> {
  const root = tempDir(after, "meridian-pmesh-");
  const certs = await ensureMeshCerts(join(root, "certs"), names);
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
  const regions = new Map<string, ProxiedRegion>();
  for (const r of mesh.regions) {
    const dir = join(root, r.name);
    const base = {
      MERIDIAN_REGION: r.name,
      MERIDIAN_DATA_DIR: dir,
      MERIDIAN_MESH: meshFile,
      MERIDIAN_STORAGE_FSYNC: "false",
    };
    const node = await spawnMeridian(after, "node/server.js", {
      ...base,
      MERIDIAN_NATS_SERVERS: r.nats,
      MERIDIAN_LISTEN_PORT: new URL(r.registry).port,
    });
    const peer = await spawnMeridian(after, "control-plane/peer.js", {
      ...base,
      MERIDIAN_HEARTBEAT_INTERVAL_MS: "250",
    });
    const links = proxies.get(r.name)!;
    const workerEnv = {
      ...base,
      ...extraWorkerEnv,
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
    });
  }
  const linksOf = (region: string) => [
    ...proxies.get(region)!.values(),
    ...[...proxies].filter(([dst]) => dst !== region).map(([, links]) => links.get(region)!),
  ];
  return {
    regions,
    meshFile,
    proxies,
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
  };
}
