/**
 * Test harness: real processes on loopback, temporary directories, cleanup.
 * Each helper registers its own cleanup with the given `after` hook.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import {
  clusterMemberOptions,
  type NatsServerProcess,
  startNatsCluster,
  startNatsServer,
} from "../cli/nats-server.js";
import { loadNodeConfig, type NodeConfigInput } from "../node/config.js";
import { type RunningNode, startNode } from "../node/server.js";
import { freePort } from "./ports.js";

export { freePort, freePortBlock } from "./ports.js";

export type After = (fn: () => Promise<void> | void) => void;

/**
 * An `After` for the helpers below whose hooks run last-registered-first
 * (processes stop before the directories they write to are removed); every
 * hook runs even if an earlier one fails, and the first failure is rethrown.
 * Pass a TestContext, or `{ after }` (node:test's) at the top of a file; never
 * call `after()` inside a `before()` hook: on Node 20 the file then hangs.
 */
export function cleanupStack(scope: { after(fn: () => Promise<void>): void }): After {
  const hooks: Array<() => Promise<void> | void> = [];
  scope.after(async () => {
    let first: unknown;
    for (const hook of hooks.reverse()) {
      try {
        await hook();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  });
  return (fn) => {
    hooks.push(fn);
  };
}

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const NODE_ENTRY = join(REPO_ROOT, "dist", "node", "server.js");
export const CLI_ENTRY = join(REPO_ROOT, "bin", "meridian");

export function tempDir(after: After, prefix = "meridian-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A real nats-server with JetStream on a free port, stopped after the test. */
export async function startTestNats(after: After, storeDir?: string): Promise<NatsServerProcess> {
  const dir = storeDir ?? tempDir(after, "meridian-nats-");
  const nats = await startNatsServer({ port: await freePort(), storeDir: dir, name: `test-${process.pid}` });
  after(() => nats.stop());
  return nats;
}

/** A test's JetStream cluster (startTestNatsCluster). */
export interface TestNatsCluster {
  servers: NatsServerProcess[];
  urls: string[];
  /** Stop every server (SIGTERM; stores kept). */
  stop(): Promise<void>;
  /** Start every server again on the same ports and stores; resolves once JetStream answers. */
  restart(): Promise<void>;
  /** Start server `i` (from 0) again alone, after it died: it rejoins the others. */
  startMember(i: number): Promise<NatsServerProcess>;
}

/**
 * `n` clustered nats-servers on loopback (cli/nats-server.ts startNatsCluster),
 * anonymous clients, stopped after the test. Resolves once JetStream answers
 * (its meta leader is elected).
 */
export async function startTestNatsCluster(after: After, n: number): Promise<TestNatsCluster> {
  const ports: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < n; i++) {
    ports.push(await freePort());
    routePorts.push(await freePort());
  }
  const options = {
    name: `test-${process.pid}-${ports[0]}`,
    ports,
    routePorts,
    storeDirs: ports.map(() => tempDir(after, "meridian-nats-")),
    routePassword: randomBytes(16).toString("hex"),
  };
  const cluster: TestNatsCluster = {
    servers: await startNatsCluster(options),
    urls: ports.map((p) => `nats://127.0.0.1:${p}`),
    stop: async () => {
      await Promise.allSettled(cluster.servers.map((s) => s.stop()));
    },
    restart: async () => {
      cluster.servers = await startNatsCluster(options);
      await waitForJetStream(cluster.urls);
    },
    startMember: async (i) => {
      const server = await startNatsServer(clusterMemberOptions(options, i));
      cluster.servers[i] = server;
      return server;
    },
  };
  after(() => cluster.stop());
  await waitForJetStream(cluster.urls);
  return cluster;
}

/** Wait (bounded) until JetStream at `servers` answers an account info (a meta leader is elected). */
export async function waitForJetStream(servers: string[], timeoutMs = 20_000): Promise<void> {
  const nc = await connect({ servers });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        // jetstreamManager asks for the account's info (the JetStream API answers once a meta leader is elected).
        await jetstreamManager(nc);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  } finally {
    await nc.close();
  }
}

/** Restart a stopped nats-server on the same port and store (its data survives). */
export async function restartNats(
  after: After,
  previous: NatsServerProcess,
  storeDir: string,
): Promise<NatsServerProcess> {
  const nats = await startNatsServer({ port: previous.port, storeDir, name: `test-${process.pid}` });
  after(() => nats.stop());
  return nats;
}

export const silentLogger = pino({ level: process.env.MERIDIAN_TEST_LOG ?? "silent" });

/** A registry node in this process, on a free port, closed after the test. */
export async function startTestNode(
  after: After,
  options: { nats: string; dataDir?: string } & NodeConfigInput,
): Promise<RunningNode> {
  const { nats, dataDir, ...rest } = options;
  const config = loadNodeConfig({
    overrides: {
      region: "test",
      storage: { fsync: false },
      ...rest,
      dataDir: dataDir ?? tempDir(after),
      // A fixed port when asked for (a redirect URL registered before the node starts), else any.
      listen: { host: "127.0.0.1", port: rest.listen?.port ?? 0 },
      nats: { servers: [nats] },
    },
  });
  const node = await startNode(config, silentLogger);
  let closed = false;
  after(async () => {
    if (!closed) await node.close();
  });
  const close = node.close.bind(node);
  return {
    ...node,
    async close() {
      closed = true;
      await close();
    },
  };
}

export interface NodeProcess {
  url: string;
  child: ChildProcess;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
}

/** A Meridian process (node, peer, worker) started from its dist entry, awaiting its "listening" line. */
export interface MeridianProcess {
  child: ChildProcess;
  info: Record<string, string>;
  /** Everything the process wrote to stderr so far (its log). */
  log(): string;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function spawnMeridian(
  after: After,
  entry: string,
  env: Record<string, string>,
): Promise<MeridianProcess> {
  const child = spawn(process.execPath, [join(REPO_ROOT, "dist", entry)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "info", ...env },
  });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-200_000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  // Registered before the wait: a process that never says it is listening is
  // still killed (a live child holding its pipes keeps the test file running forever).
  after(() => stopWith("SIGKILL"));
  const info = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${entry} did not start: ${stderr.slice(-4000)}`)),
      30_000,
    );
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${entry} exited with ${code}: ${stderr.slice(-4000)}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (!line.includes('"listening"')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  }).catch(async (err) => {
    await stopWith("SIGKILL");
    throw err;
  });
  return { child, info, log: () => stderr, kill: () => stopWith("SIGKILL"), stop: () => stopWith("SIGTERM") };
}

/** A registry node as a child process (for kill -9), stopped after the test. */
export async function spawnNodeProcess(
  after: After,
  env: {
    nats: string;
    dataDir: string;
    region?: string;
    port?: number;
    viewDir?: string;
    storageRoot?: string;
    /** nats.replicas (a clustered NATS: 3). */
    replicas?: number;
  },
): Promise<NodeProcess> {
  const port = env.port ?? (await freePort());
  const node = await spawnMeridian(after, "node/server.js", {
    MERIDIAN_REGION: env.region ?? "test",
    MERIDIAN_DATA_DIR: env.dataDir,
    MERIDIAN_LISTEN_PORT: String(port),
    MERIDIAN_NATS_SERVERS: env.nats,
    MERIDIAN_STORAGE_FSYNC: "false",
    MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
    ...(env.viewDir ? { MERIDIAN_VIEW_DIR: env.viewDir } : {}),
    ...(env.storageRoot ? { MERIDIAN_STORAGE_ROOT: env.storageRoot } : {}),
    ...(env.replicas ? { MERIDIAN_NATS_REPLICAS: String(env.replicas) } : {}),
  });
  return { url: node.info.registry!, child: node.child, kill: node.kill, stop: node.stop };
}

/** Poll `check` until it returns true or `timeoutMs` passes. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5_000,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `bin/meridian ARGS` to its end (killed after `timeoutMs`), with its output. */
export function runCli(args: string[], timeoutMs = 60_000, env?: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => {
      stdout += d;
    });
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
