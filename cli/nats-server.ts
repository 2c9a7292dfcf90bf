/**
 * Running a local `nats-server` with JetStream on loopback: used by
 * `meridian up` and by the tests. The binary comes from Debian's `nats-server`
 * package (scripts/bootstrap.mjs installs it), or MERIDIAN_NATS_SERVER.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { acquirePidLock } from "../node/data/pid-lock.js";

/** NATS max_payload Meridian needs (see startNatsServer). */
export const MAX_PAYLOAD = 8 * 1024 * 1024;

export interface NatsServerProcess {
  url: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** Stop (SIGTERM, then SIGKILL after a grace period). */
  stop(): Promise<void>;
  /** Kill with SIGKILL at once. */
  kill(): Promise<void>;
}

export function natsServerBinary(env: Record<string, string | undefined> = {}): string {
  const configured = env.MERIDIAN_NATS_SERVER;
  if (configured) return configured;
  const found = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  throw new Error(
    "nats-server not found: install Debian's package (apt-get install nats-server) or set MERIDIAN_NATS_SERVER",
  );
}

export async function startNatsServer(options: {
  port: number;
  storeDir: string;
  name: string;
  binary?: string;
  logFile?: string;
  /**
   * The config's `authorization` block (cli/nats-auth.ts `authorizationFor`):
   * with it the server refuses clients that are not one of its users.
   */
  authorization?: unknown;
  /** A process group (and session) of its own: see cli/up.ts's spawnChild. */
  detached?: boolean;
  /** Join a cluster (startNatsCluster): its route port, peers and route credentials. */
  cluster?: ClusterMembership;
}): Promise<NatsServerProcess> {
  mkdirSync(options.storeDir, { recursive: true, mode: 0o700 });
  // One server per store: a second refuses here, naming the holder's pid, before
  // a second nats-server could open the live JetStream store (issue 11, finding 6).
  const lock = acquirePidLock(join(options.storeDir, "meridian.lock"), `the NATS store ${options.storeDir}`);
  // A manifest event carries the manifest's references and annotations, and a
  // manifest may be 4 MiB (the OCI minimum a registry must accept): the
  // default 1 MiB NATS payload limit is too small, so raise it.
  const configFile = join(options.storeDir, "meridian-nats.conf");
  // The config format is a superset of JSON: the authorization block is written as JSON.
  const auth =
    options.authorization === undefined ? "" : `authorization: ${JSON.stringify(options.authorization)}\n`;
  // The server's name lives in the file, not on the command line: a SIGHUP
  // (a config reload) with the name only given as a flag fails ("config
  // reload not supported for ServerName").
  writeFileSync(
    configFile,
    `server_name: ${JSON.stringify(options.name)}\nmax_payload: ${MAX_PAYLOAD}\n${auth}${clusterBlock(options.cluster)}`,
    {
      mode: 0o600,
    },
  );
  chmodSync(configFile, 0o600);
  const args = [
    "-c",
    configFile,
    "-a",
    "127.0.0.1",
    "-p",
    String(options.port),
    "-js",
    "-sd",
    options.storeDir,
  ];
  if (options.logFile) args.push("-l", options.logFile);
  const child = spawn(options.binary ?? natsServerBinary(), args, {
    stdio: ["ignore", "ignore", "pipe"],
    detached: options.detached === true,
  });
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      lock.release();
      resolve();
    }),
  );
  child.once("error", () => lock.release());
  const deadline = Date.now() + 10_000;
  // Ready when the server answering on the port is this one (its INFO names it):
  // another process already on the port must not pass for it.
  while (!(await serverNamed(options.port, options.name))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      const logged = options.logFile === undefined ? "" : lastLines(options.logFile, 10);
      throw new Error(
        `nats-server did not start on port ${options.port}${child.exitCode === null ? "" : ` (exit ${child.exitCode})`}:\n${[stderr.trim(), logged].filter((t) => t !== "").join("\n")}`,
      );
    }
    await sleep(50);
  }
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };
  return {
    url: `nats://127.0.0.1:${options.port}`,
    port: options.port,
    pid: child.pid!,
    child,
    stop: () => stopWith("SIGTERM"),
    kill: () => stopWith("SIGKILL"),
  };
}

/** One server's place in a cluster (see startNatsCluster). */
export interface ClusterMembership {
  /** The cluster's name (one per region). */
  name: string;
  /** This server's route port (bound on 127.0.0.1). */
  port: number;
  /** The other servers' route ports. */
  peers: number[];
  /** The route credentials every member requires of, and presents to, the others. */
  user: string;
  password: string;
}

/**
 * The config's `cluster` block ("" without one). Routes are protected twice:
 * bound on 127.0.0.1 only (no other host reaches them) AND a route
 * user/password (a route is trusted with every message of every account,
 * bypassing client authorization, so any local process that could open a
 * route would read and write every stream: loopback alone is not enough on a
 * shared machine). The password lives only in the 0600 config file.
 */
function clusterBlock(cluster: ClusterMembership | undefined): string {
  if (cluster === undefined) return "";
  const credentials = `${encodeURIComponent(cluster.user)}:${encodeURIComponent(cluster.password)}`;
  const block = {
    name: cluster.name,
    listen: `127.0.0.1:${cluster.port}`,
    authorization: { user: cluster.user, password: cluster.password },
    routes: cluster.peers.map((p) => `nats-route://${credentials}@127.0.0.1:${p}`),
  };
  return `cluster: ${JSON.stringify(block)}\n`;
}

export interface NatsClusterOptions {
  /** The cluster's name; servers are named `<name>-1` … `<name>-<n>`. */
  name: string;
  /** Client ports, one per server (its length is the cluster's size). */
  ports: number[];
  /** Route ports, one per server. */
  routePorts: number[];
  /** JetStream store directories, one per server. */
  storeDirs: string[];
  /** Route password (generated by the caller, e.g. kept in a 0600 file by `up`). */
  routePassword: string;
  binary?: string;
  /** Log files, one per server. */
  logFiles?: string[];
  authorization?: unknown;
  detached?: boolean;
}

/**
 * startNatsServer's options for member `i` (from 0) of the cluster: what
 * starts it again alone after it died (it rejoins, catching up from the others).
 */
export function clusterMemberOptions(options: NatsClusterOptions, i: number) {
  return {
    port: options.ports[i]!,
    storeDir: options.storeDirs[i]!,
    name: `${options.name}-${i + 1}`,
    binary: options.binary,
    logFile: options.logFiles?.[i],
    authorization: options.authorization,
    detached: options.detached,
    cluster: {
      name: options.name,
      port: options.routePorts[i]!,
      peers: options.routePorts.filter((_, j) => j !== i),
      user: "meridian-route",
      password: options.routePassword,
    },
  };
}

/**
 * Start `ports.length` clustered nats-servers (one region's JetStream
 * cluster): each routes to every other on loopback; JetStream elects its
 * meta leader once a majority is up. Resolves when every server answers
 * clients; JetStream itself may need a moment more to elect (callers that
 * create streams retry while it answers "temporarily unavailable": see
 * node/data/jetstream-log.ts). On failure the servers already started stop.
 */
export async function startNatsCluster(options: NatsClusterOptions): Promise<NatsServerProcess[]> {
  const n = options.ports.length;
  if (options.routePorts.length !== n || options.storeDirs.length !== n)
    throw new Error("startNatsCluster: one client port, route port and store per server");
  const servers = await Promise.allSettled(
    options.ports.map((_, i) => startNatsServer(clusterMemberOptions(options, i))),
  );
  const started = servers.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = servers.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed !== undefined) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw failed.reason;
  }
  return started;
}

/** The last `n` lines of a log file, indented, for an error message ("" when unreadable). */
export function lastLines(file: string, n: number): string {
  try {
    const lines = readFileSync(file, "utf8").trimEnd().split("\n").slice(-n);
    return [`last lines of ${file}:`, ...lines.map((l) => `  ${l}`)].join("\n");
  } catch {
    return "";
  }
}

/** Whether the NATS server on `port` is the one named `name` (its INFO's server_name). */
function serverNamed(port: number, name: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ port, host: "127.0.0.1" });
    let seen = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.on("data", (d) => {
      seen += d;
      if (seen.includes("\n")) finish(seen.includes(`"server_name":${JSON.stringify(name)}`));
    });
    socket.once("error", () => finish(false));
    socket.once("close", () => finish(false));
  });
}

export function canConnect(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ port, host });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
