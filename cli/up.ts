/**
 * `meridian up`: a local mesh on 127.0.0.1, every part a separate process.
 * Per region (index i, base port B):
 *
 *   B+10i     registry node (OCI HTTP)         node/server.ts
 *   B+10i+1   nats-server with JetStream
 *   B+10i+2   control-plane peer (gRPC, mTLS; and blob copies, by ALPN)  control-plane/peer.ts
 *   B+10i+3   the peer's /metrics
 *   B+10i+4   the replication worker's /metrics  replication/main.ts
 *
 * and, once for the whole mesh:
 *
 *   B+5       the front door (OCI HTTP)        control-plane/front-door.ts
 *   B+10R+9   with --s3: the S3 server (s3rver)  ./up-s3.ts, ./s3-server.ts
 *
 * (R regions). The second block of ten per region, B+10R+10i …, holds the
 * region's extra ports: +0…+4 NATS routes (--nats-cluster), +5…+8 its nodes
 * 2…5 (--nodes); region 0's +9 the S3 server.
 *
 * With `--s3` (issue 13, item 7) `up` first starts a local S3-protocol
 * server, supervised like every process (role `s3`), with its data and the
 * key pair it accepts (made once, 0600) under <data>/s3 and one bucket per
 * region, `meridian-<region>` (./up-s3.ts); every process of a region gets
 * storage.type=s3 and its bucket. The last ready line gives `s3` (its URL)
 * and `pids.s3`; up.json its current pid. Without it blobs stay on the
 * filesystem (<data>/<region>/store), as before.
 *
 * With `--nodes N` (1..5, issue 13, item 3) each region runs N registry
 * nodes, each supervised alone: node 1 as always (data <data>/<region>,
 * log node.log), node k ≥ 2 on port B+10R+10i+5+(k-2) with its own data
 * directory <data>/<region>/node-<k>/ (its view, view lock, caches) and log
 * node-<k>.log. With --s3 they share nothing on local disk (blobs in the
 * bucket, the log in NATS): a node's directory can be deleted and rebuilds
 * from the log. Without --s3 the nodes share the region's filesystem store,
 * <data>/<region>/store, as its peer and worker already do: safe on one
 * machine (node/data/fs-blob-store.ts: blobs commit by rename, upload
 * sessions are files any process on the root continues; only a client
 * sending two chunks of one upload at once to two nodes could interleave
 * them, and the digest check at commit refuses the result). mesh.json's
 * region `registry` becomes the list of its nodes' URLs (protocol/mesh.ts
 * meshDocument), the region's ready line gives `registry` (the first),
 * `registries` (all) and `pids.node` as an array. Without the flag: one
 * URL, one number.
 *
 * With `--nats-cluster N` (2..5; issue 13) each region runs N clustered
 * nats-servers instead of one: client ports B+10i+1, B+10i+6, B+10i+7, …
 * and route ports B+10R+10i+k (k < N, R regions, after every region's
 * block), stores <data>/<region>/nats-cluster/<k>, logs nats-<k>.log; routes
 * on 127.0.0.1 with a route password (<data>/nats-auth/route-password). Every
 * server gets the same NKEY authorization. The region's streams are created
 * with N replicas (MERIDIAN_NATS_REPLICAS for its processes), its processes
 * and mesh.json get the whole server list, and the region's ready line gives
 * `nats` (URLs) and `pids.nats` as arrays. Without the flag both stay one
 * string / one number.
 *
 * With more than one region, `up` writes <data>/mesh.json (regions and their
 * endpoints, given to every process as MERIDIAN_MESH) and a mesh CA with a
 * certificate per region and one for the front door (`front-door`) under
 * <data>/certs, reused on later starts, and starts the front door after the
 * regions. One region runs without a mesh, so without peers and front door
 * (mesh.json is still written, for the `meridian` admin commands).
 * Data lives under <data>/<region>/ and survives restarts; process logs go to
 * <data>/<region>/<process>.log and <data>/front-door.log.
 *
 * With `--tls` every registry node and the front door serve HTTPS (plain
 * HTTP is the default) with those same certificates: region R's node with
 * <data>/certs/R.crt, the front door with front-door.crt (each valid for
 * 127.0.0.1 and localhost). mesh.json's registry URLs and the URLs printed
 * are then https://; clients trust <data>/certs/ca.crt (skopeo:
 * `--dest-cert-dir`/`--src-cert-dir` of a directory holding it as ca.crt;
 * other Node programs: NODE_EXTRA_CA_CERTS; the admin commands read it from
 * mesh.json themselves). One region with `--tls` gets the certificates
 * too, for its node. The peers' and workers' /metrics stay HTTP.
 *
 * stdout is machine-readable, one JSON object per line:
 *   {"region":"a","registry":"http://127.0.0.1:5000","nats":"nats://127.0.0.1:5001",
 *    "grpc":"127.0.0.1:5002","metrics":{"peer":…,"worker":…},"pids":{"nats":…,"node":…,"peer":…,"worker":…}}
 *   {"ready":true,"natsAuthDir":"<data>/nats-auth","frontDoor":"http://127.0.0.1:5005","pids":{"frontDoor":…},
 *    "dashboard":"http://127.0.0.1:5005/ui/","controlFile":"<data>/up.json"}
 * (pids as at the first start; <data>/up.json has the current ones after restarts).
 *
 * With `--auth` every node checks credentials (node/auth/): `up` makes the
 * mesh's token signing key (<data>/auth/token-key.pem) and a generated
 * password for the system admin `admin` (<data>/auth/admin-password), both
 * mode 0600 and kept across starts, and the ready line names the password
 * file as `adminPasswordFile`. Peers and the front door get the key to sign
 * in to the nodes' admin API; the `meridian` admin commands use the password
 * file when given the same --data.
 *
 * NATS (issue 10): every nats-server `up` starts requires authentication.
 * `up` keeps one NKEY seed per identity under <data>/nats-auth (mode 0700,
 * seeds 0600; cli/nats-auth.ts says who may do what where): each region's
 * node, peer and worker sign in with their own seed and inbox prefix
 * (MERIDIAN_NATS_SEED_FILE, MERIDIAN_NATS_INBOX_PREFIX); a worker uses its
 * one seed on every region's server, which all know its public key. The
 * `operator` seed is for `meridian rebuild` and admin tooling; the ready
 * line names the directory as `natsAuthDir`. Each server's config
 * (<data>/<region>/nats/meridian-nats.conf) holds public keys only and is
 * rewritten on every start, so deleting a seed and restarting rotates it.
 *
 * Files: `up` and every process it starts create files with umask 077, and
 * the data directory and each region's directory are made 0700 (also when
 * an older version left them open), so no other local user can read region
 * data (issue 10, finding 10).
 * SIGINT/SIGTERM/SIGHUP stop every process (the front door, workers, peers,
 * nodes, nats-servers, then the S3 server). A process that fails its first start stops the
 * rest and `up` exits non-zero, printing the last lines of its log (issue 11,
 * finding 6); one that dies after it was up is logged and restarted with
 * backoff while the rest keeps serving, and `meridian region stop|start`
 * holds a region down and brings it back (issue 13: ./supervisor.ts; the
 * current pids in <data>/up.json). A second signal while stopping
 * exits 1 at once (node/lifecycle.ts; the children follow by their parent
 * watch, the nats-servers by the watchdog).
 *
 * Lifecycle (issue 11, finding 5): package.json's start script `exec`s `up`,
 * so the signal npm passes on reaches `up` itself (a shell waiting for a
 * command survives SIGINT). `up` stops everything, exiting 1, once its
 * parent is gone (checked twice a second: `npm start`'s npm or shell killed
 * without passing the signal on). Each Meridian process it starts gets
 * MERIDIAN_PARENT_PID and exits within about a second of `up` going away,
 * even by SIGKILL (node/parent-watch.ts). nats-server cannot watch: a small
 * watchdog process (WATCHDOG in ./up-processes.ts, with the spawning and
 * stopping of every child) holds a pipe from `up` and stops the servers when
 * the pipe closes. Not covered: `up` and the watchdog both
 * SIGKILLed together (e.g. `kill -9` of the process group); then the
 * nats-servers stay until killed by the pids `up` printed, and their locks
 * are taken over on the next start once they are gone.
 *
 * Locks (issue 11, finding 6): before writing or starting anything `up`
 * takes <data>/up.lock and <data>/<region>/region.lock, and each NATS store
 * <data>/<region>/nats/meridian.lock (cli/nats-server.ts); every node takes
 * <view>.lock next to its view (<data>/<region>/view.lock; node k ≥ 2 of
 * --nodes in <data>/<region>/node-<k>/). Each holds the owner's pid
 * (node/data/pid-lock.ts): a second `up` or node on the same data refuses at
 * once naming it, before any nats-server opens the live store; a lock whose
 * pid is dead (a SIGKILLed owner) is taken over.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeTokenKey } from "../mesh-client/token-key-file.js";
import { acquirePidLock, LockHeldError, type PidLock } from "../node/data/pid-lock.js";
import { privateDirs } from "../node/data/private-files.js";
import { handleStopSignals } from "../node/lifecycle.js";
import { type Mesh, meshDocument } from "../protocol/mesh.js";
import { ensureMeshCerts } from "./certs.js";
import { ensureNatsIdentities } from "./nats-auth.js";
import {
  Control,
  controlFile,
  pidsOf,
  type Started,
  Supervised,
  type SupervisedRegion,
} from "./supervisor.js";
import { natsClusterPorts } from "./up-nats.js";
import { startNatsWatchdog } from "./up-processes.js";
import {
  ENTRIES,
  meridianProcess,
  nodePorts,
  type RegionContext,
  regionPorts,
  startRegion,
} from "./up-region.js";
import { s3Port, startUpS3, type UpS3 } from "./up-s3.js";

export interface UpOptions {
  regions: string[];
  basePort: number;
  dataDir: string;
  /** Serve the registries and the front door over HTTPS with the mesh's certificates. */
  tls?: boolean;
  /** Authentication on (see the header): a token key and an admin password under <data>/auth. */
  auth?: boolean;
  /**
   * Authentication off although <data>/auth exists (the mesh once ran with
   * --auth): without it such a start is refused (issue 11, finding 9); with
   * it every node starts with MERIDIAN_NO_AUTH=true, which it logs and audits.
   */
  noAuth?: boolean;
  /**
   * Servers per region's JetStream cluster (`--nats-cluster N`, 1..5): with
   * more than one, each region runs N clustered nats-servers and its streams
   * get N replicas (see the header). Default 1: one nats-server, as before.
   */
  natsCluster?: number;
  /** `--s3`: blobs in a local S3-protocol server `up` runs, one bucket per region (./up-s3.ts). */
  s3?: boolean;
  /** `--nodes N` (1..5, default 1): registry nodes per region, each with its own data directory. */
  nodes?: number;
}

/** The front door's certificate name under <data>/certs (front-door-config.ts `tls.identity`). */
const FRONT_DOOR_IDENTITY = "front-door";

/** The front door's port (see the header): free in region 0's block. */
export function frontDoorPort(basePort: number): number {
  return basePort + 5;
}

export async function up(options: UpOptions): Promise<number> {
  const dataDir = resolve(options.dataDir);
  if (options.auth === true && options.noAuth === true) {
    process.stderr.write("meridian up: --auth and --no-auth contradict each other\n");
    return 2;
  }
  const clusterSize = options.natsCluster ?? 1;
  if (!Number.isSafeInteger(clusterSize) || clusterSize < 1 || clusterSize > 5) {
    process.stderr.write("meridian up: --nats-cluster takes 1 to 5 (servers per region)\n");
    return 2;
  }
  const nodeCount = options.nodes ?? 1;
  if (!Number.isSafeInteger(nodeCount) || nodeCount < 1 || nodeCount > 5) {
    process.stderr.write("meridian up: --nodes takes 1 to 5 (registry nodes per region)\n");
    return 2;
  }
  if (options.auth !== true && options.noAuth !== true && existsSync(join(dataDir, "auth"))) {
    process.stderr.write(
      `meridian up: refusing to start without authentication: ${join(dataDir, "auth")} exists, so this mesh ran with --auth ` +
        "and starting without it would open everything to anyone. Use --auth, or --no-auth to say explicitly that it may be open.\n",
    );
    return 1;
  }
  // Every process, supervised (./supervisor.ts): restarted when it dies, held down by `region stop`.
  const regions: SupervisedRegion[] = [];
  let frontDoor: Supervised | undefined;
  let s3: UpS3 | undefined;
  const control = new Control(
    dataDir,
    regions,
    () => frontDoor,
    () => s3,
  );
  const supervise = (what: string, role: string, logFile: string, start: () => Promise<Started>) =>
    new Supervised(
      what,
      role,
      logFile,
      start,
      (line) => process.stderr.write(`meridian up: ${line}\n`),
      () => control.write(),
    );
  const locks: PidLock[] = [];
  let stopping = false;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });

  /** Stops everything once; resolves with the exit code of the first reason to stop. */
  const stopAll = async (code: number): Promise<number> => {
    if (stopping) return done;
    stopping = true;
    control.close();
    await frontDoor?.shutdown();
    for (const role of ["worker", "peer", "node", "nats"]) {
      const all = regions.flatMap((r) => r.processes.filter((p) => p.role === role));
      await Promise.all(all.map((p) => p.shutdown()));
    }
    await s3?.server.shutdown();
    watchdog.kill("SIGKILL");
    for (const lock of locks) lock.release();
    resolveDone(code);
    return done;
  };
  // SIGINT/SIGTERM/SIGHUP stop everything, exit 0 (node/lifecycle.ts); a second signal exits 1 at
  // once (the children follow by their parent watch, the nats-servers by the watchdog). No bound
  // of its own: each child is SIGKILLed 10 s after its SIGTERM. An uncaught error stops, exit 1.
  // A stop already under way for another reason (a child died: exit 1) keeps its exit code.
  handleStopSignals({
    logger: { error: stderrLine, fatal: stderrLine },
    graceMs: false,
    hangup: "stop",
    stop: async ({ err }) => {
      const code = await stopAll(err === undefined ? 0 : 1);
      if (code !== 0) process.exit(code);
    },
  });
  // The parent going away (npm, or the shell running `npm start`, killed
  // without passing the signal on) re-parents `up`: stop then too (issue 11).
  const parent = process.ppid;
  if (parent > 1) {
    const parentWatch = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(parentWatch);
      process.stderr.write(`meridian up: its parent process ${parent} is gone; stopping\n`);
      void stopAll(1);
    }, 500);
    parentWatch.unref();
  }
  // nats-server cannot watch `up`: a watchdog stops the servers if `up` dies without doing so.
  const watchdog = startNatsWatchdog();
  try {
    const multi = options.regions.length > 1;
    const scheme = options.tls === true ? "https" : "http";
    privateDirs([dataDir, ...options.regions.map((r) => join(dataDir, r))]);
    // Before anything is written or started: the data directory and each
    // region's are this process's (a second `up` refuses here, naming our pid).
    try {
      locks.push(acquirePidLock(join(dataDir, "up.lock"), `the data directory ${dataDir}`));
      for (const r of options.regions)
        locks.push(
          acquirePidLock(join(dataDir, r, "region.lock"), `region ${r}'s data (${join(dataDir, r)})`),
        );
    } catch (err) {
      if (err instanceof LockHeldError) throw new Error(`refusing to start: ${err.message}`);
      throw err;
    }
    const natsIds = ensureNatsIdentities(join(dataDir, "nats-auth"), options.regions);
    const clustered = clusterSize > 1;
    // Region i's NATS URLs: one, or its cluster's (mesh.json then lists them all).
    const natsUrls = (i: number): string[] =>
      natsClusterPorts(options.basePort, options.regions.length, i, clusterSize).clients.map(
        (p) => `nats://127.0.0.1:${p}`,
      );
    const mesh: Mesh = {
      regions: options.regions.map((name, i) => {
        const p = regionPorts(options.basePort, i);
        return {
          name,
          registry: `${scheme}://127.0.0.1:${p.registry}`,
          registries: nodePorts(options.basePort, options.regions.length, i, nodeCount).map(
            (port) => `${scheme}://127.0.0.1:${port}`,
          ),
          nats: clustered ? natsUrls(i) : natsUrls(i)[0]!,
          grpc: `127.0.0.1:${p.grpc}`,
          metrics: {
            peer: `http://127.0.0.1:${p.peerMetrics}`,
            worker: `http://127.0.0.1:${p.workerMetrics}`,
          },
        };
      }),
    };
    const meshFile = join(dataDir, "mesh.json");
    const certs =
      multi || options.tls === true
        ? await ensureMeshCerts(join(dataDir, "certs"), [
            ...options.regions,
            ...(multi ? [FRONT_DOOR_IDENTITY] : []),
          ])
        : undefined;
    // The HTTPS settings of a node or the front door serving as `identity` (none without --tls).
    const tlsEnv = (identity: string): Record<string, string> =>
      options.tls === true && certs !== undefined
        ? {
            MERIDIAN_TLS_CERT_FILE: certs.regions[identity]!.cert,
            MERIDIAN_TLS_KEY_FILE: certs.regions[identity]!.key,
          }
        : {};
    // One region: mesh.json is still written, for the admin commands (no peer runs to read it).
    if (certs !== undefined) mesh.tls = { ca: certs.ca, dir: certs.dir };
    else mesh.insecure = true;
    // One node per region: `registry` stays one URL; several: the list (protocol/mesh.ts).
    writeFileSync(meshFile, `${JSON.stringify(meshDocument(mesh), null, 2)}\n`);
    const auth = options.auth === true ? await ensureAuthFiles(dataDir) : undefined;
    // Nodes check credentials; peers and the front door sign in to the nodes' admin API with the key.
    const nodeAuthEnv: Record<string, string> =
      auth === undefined
        ? options.noAuth === true
          ? { MERIDIAN_NO_AUTH: "true" }
          : {}
        : {
            MERIDIAN_AUTH: "true",
            MERIDIAN_TOKEN_KEY_FILE: auth.keyFile,
            MERIDIAN_ADMIN_PASSWORD_FILE: auth.passwordFile,
          };
    const serviceAuthEnv: Record<string, string> =
      auth === undefined ? {} : { MERIDIAN_TOKEN_KEY_FILE: auth.keyFile };
    // The mesh's S3 server, before any region (their processes open their buckets at start).
    if (options.s3 === true)
      s3 = await startUpS3(
        dataDir,
        s3Port(options.basePort, options.regions.length),
        options.regions,
        supervise,
      );
    const regionContext: RegionContext = {
      dataDir,
      basePort: options.basePort,
      regionCount: options.regions.length,
      clusterSize,
      natsIds,
      meshFile,
      multi,
      nodes: nodeCount,
      storageEnv: (region) => s3?.env(region) ?? {},
      supervise,
      watchdog,
      tlsEnv,
      nodeAuthEnv,
      serviceAuthEnv,
    };
    // The regions start side by side (each its own ports, data, NATS and streams; a worker
    // retries the other regions until they answer, as it must anyway when one restarts): one
    // after the other, a three-region start took three times as long. Every region has
    // settled before anything is printed or thrown, so a failure stops no half-started one
    // behind stopAll's back; the lines come in the order of --regions.
    const starting = options.regions.map((name) => ({ name, processes: [] }) as SupervisedRegion);
    regions.push(...starting);
    const started = await Promise.allSettled(
      starting.map((supervised, i) => startRegion(regionContext, i, supervised)),
    );
    for (const result of started) if (result.status === "rejected") throw result.reason;
    let firstLine: Record<string, unknown> | undefined;
    for (const result of started)
      if (result.status === "fulfilled") {
        firstLine ??= result.value;
        process.stdout.write(`${JSON.stringify(result.value)}\n`);
      }
    const firstRegistry = (firstLine?.registry as string | undefined) ?? "";
    const ready: Record<string, unknown> = { ready: true, natsAuthDir: natsIds.dir };
    if (s3 !== undefined) ready.s3 = s3.endpoint;
    if (auth !== undefined) ready.adminPasswordFile = auth.passwordFile;
    if (multi) {
      const fd = meridianProcess(
        supervise,
        "front door",
        "frontDoor",
        ENTRIES.frontDoor,
        join(dataDir, "front-door.log"),
        {
          MERIDIAN_MESH: meshFile,
          MERIDIAN_FRONT_DOOR_HOST: "127.0.0.1",
          MERIDIAN_FRONT_DOOR_PORT: String(frontDoorPort(options.basePort)),
          MERIDIAN_FRONT_DOOR_IDENTITY: FRONT_DOOR_IDENTITY,
          ...tlsEnv(FRONT_DOOR_IDENTITY),
          ...serviceAuthEnv,
        },
      );
      frontDoor = fd.p;
      await fd.p.start();
      ready.frontDoor = fd.info().frontDoor;
    }
    // The dashboard (README "Dashboard"): the front door's whole-mesh view, or a lone region's node.
    ready.dashboard = `${(ready.frontDoor as string | undefined) ?? firstRegistry}/ui/`;
    const meshWide = [
      ...(s3 === undefined ? [] : [s3.server]),
      ...(frontDoor === undefined ? [] : [frontDoor]),
    ];
    if (meshWide.length > 0) ready.pids = pidsOf(meshWide);
    // `meridian region stop|start` and the current pids: <data>/up.json (./supervisor.ts).
    await control.listen();
    ready.controlFile = controlFile(dataDir);
    process.stdout.write(`${JSON.stringify(ready)}\n`);
  } catch (err) {
    process.stderr.write(`meridian up: ${(err as Error).message}\n`);
    await stopAll(1);
  }
  return done;
}

/** `up` writes plain lines to stderr ("meridian up: …"), not JSON logs. */
function stderrLine(fields: object, message: string): void {
  const err = (fields as { err?: Error }).err;
  process.stderr.write(`meridian up: ${message}${err === undefined ? "" : `: ${err.stack ?? err}`}\n`);
}

/**
 * `--auth`: the mesh's token signing key and the first admin's password
 * under <data>/auth (mode 0600), made once and reused on later starts.
 */
async function ensureAuthFiles(dataDir: string): Promise<{ keyFile: string; passwordFile: string }> {
  const dir = join(dataDir, "auth");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, "token-key.pem");
  await writeTokenKey(keyFile);
  const passwordFile = join(dir, "admin-password");
  if (!existsSync(passwordFile))
    writeFileSync(passwordFile, `${randomBytes(18).toString("base64url")}\n`, { mode: 0o600 });
  return { keyFile, passwordFile };
}
