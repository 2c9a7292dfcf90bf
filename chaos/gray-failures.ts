/**
 * The gray-failure suite: three real regions (testing/mesh.ts's proxied mesh
 * with edge proxies: nats-server, node, peer and worker per region as
 * separate processes, a chaos/ TcpProxy on every link) and the front door,
 * and for each target × fault one cell:
 *
 * Targets, all in region a (the region the clients are mapped to, so the
 * front door's first choice is the sick one):
 * - `nats`: a's nats-server. Its links: a's own node, peer and worker reach
 *   it through its edge proxy; b's and c's workers through their source link.
 * - `node`: a's registry node. Its link: the front door's (and operators')
 *   edge proxy to it.
 * - `peer`: a's control-plane peer. Its links: the edge proxy the front door
 *   and `meridian status` use, and b's and c's workers' links to it. (Peers
 *   heartbeat each other directly, not through a proxy.)
 * - `worker`: a's replication worker. Its links: its source links to b's and
 *   c's NATS and peers (its local NATS is shared with the node, left alone).
 * - `front-door`: the front door itself. Its link: a proxy in front of it,
 *   the only way clients reach it; a blackholed or frozen front door answers
 *   nothing, so pulls then end only at the client's own deadline.
 * - `region`: every process of a (stop, kill) or every link into and out
 *   of it (blackhole, delay): the edge proxies to its node and peer, and the
 *   replication links both ways.
 * Faults, each held longer than the failure detector (DETECTOR_MS); a stop
 * or blackhole longer than every op's bound too (holdFor):
 * - `stop`: SIGSTOP of the target's processes, then SIGCONT;
 * - `blackhole`: TcpProxy.blackhole() on its links (connections accepted, no
 *   byte passes), then heal();
 * - `delay`: TcpProxy.setDelay(DELAY_MS) on its links, both ways, then 0;
 * - `kill`: SIGKILL of its processes, then a restart on the same ports and data.
 *
 * While the fault is held, three loops run: pulls of images replicated
 * everywhere beforehand, through the front door (manifest GET, then the
 * layer's GET, its digest checked); pushes of new images straight to the
 * healthy regions b and c (alternately); and `bin/meridian status --json
 * --mesh <edge mesh>`, the real CLI, as an operator would run it. Every op
 * has a stated bound (PULL_BOUND_MS, PUSH_BOUND_MS, ADMIN_BOUND_MS, from the
 * product's documented deadlines) and a client deadline above it: an op
 * that needed the client's deadline to end "hung". Before the fault, one
 * image is pushed to a itself, so a's acknowledged writes are checked too.
 *
 * After the heal (SIGCONT, heal(), setDelay(0) or the restart): every region
 * must hold every acknowledged push of the cell (HEAD by digest with
 * `Cache-Control: only-if-cached`: what the region holds, not what it could
 * fetch), within CONVERGE_TIMEOUT_MS; measured are the time from the heal
 * until then, and until a pull through the front door succeeds again. A cell
 * whose mesh does not converge gets region a (and the front door) restarted
 * before the next cell, and says so.
 *
 *   node dist/chaos/gray-failures.js [--target nats|node|peer|worker|front-door|region|all]
 *                                    [--fault stop|blackhole|delay|kill|all] [--hold-ms MS]
 *
 * prints one JSON line per cell as it ends, then the table in markdown and
 * the results as one JSON document; exits 1 when a cell did not hold.
 * chaos/test/gray-failures.test.ts runs a subset and asserts what must hold.
 */

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { sleep } from "../testing/faults.js";
import {
  type After,
  CLI_ENTRY,
  cleanupStack,
  eventually,
  freePort,
  type MeridianProcess,
  spawnMeridian,
} from "../testing/harness.js";
import { type ProxiedMesh, type RegionProcess, startProxiedMesh } from "../testing/mesh.js";
import { OCI_MANIFEST } from "../testing/oci-client.js";
import { TcpProxy } from "./tcp-proxy.js";

export const TARGETS = ["nats", "node", "peer", "worker", "front-door", "region"] as const;
export const FAULTS = ["stop", "blackhole", "delay", "kill"] as const;
export type Target = (typeof TARGETS)[number];
export type Fault = (typeof FAULTS)[number];
export interface Cell {
  target: Target;
  fault: Fault;
}

/** Heartbeat interval of the peers and the front door during the suite (MERIDIAN_HEARTBEAT_INTERVAL_MS). */
export const HEARTBEAT_MS = 500;
/**
 * The failure detector: the front door takes a region down after two failed
 * probes, within 3 heartbeat intervals of its going dark
 * (control-plane/front-door.ts, "Health").
 */
export const DETECTOR_MS = 3 * HEARTBEAT_MS;
/**
 * The front door's bound on a GET/HEAD's first response byte
 * (`responseTimeouts.readMs`, MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS, default
 * 5 s); past it the region is marked down and the read retried once elsewhere.
 */
export const FRONT_DOOR_READ_MS = 5_000;
/**
 * The front door's bound on any other request's first response byte after
 * its body (`responseTimeouts.writeMs`, default 45 s).
 */
export const FRONT_DOOR_WRITE_MS = 45_000;
/**
 * One pull through the front door (manifest GET, then the layer's GET).
 * With one sick region, a GET sent there gets no first byte within
 * FRONT_DOOR_READ_MS, the region is marked down and the GET is retried at
 * once on a healthy one; the next GET goes to a healthy one directly. (The
 * front door's documented worst case, 2 × FRONT_DOOR_READ_MS per GET, is for
 * two sick candidates in a row.) Plus 2 s for a loaded machine.
 */
export const PULL_BOUND_MS = FRONT_DOOR_READ_MS + 2_000;
/**
 * One push (two blob uploads and the manifest PUT) straight to a healthy
 * region: the product's write bound, FRONT_DOOR_WRITE_MS (a healthy region
 * owes nothing to the sick one for an async write).
 */
export const PUSH_BOUND_MS = FRONT_DOOR_WRITE_MS;
/**
 * One `meridian status` run, from spawning the CLI to its exit: cli/status.ts
 * bounds each call (peer Status 3 s, each metrics page 3 s, the regions in
 * parallel) and documents "within about 2 × 3 s", plus its 0.5 s linger,
 * plus 2.5 s to start a Node process on a loaded machine.
 */
export const ADMIN_BOUND_MS = 2 * 3_000 + 500 + 2_500;
/** What an op's client waits beyond its bound before giving up on it ("hung"). */
export const CLIENT_GRACE_MS = 10_000;
/** The latency the `delay` fault adds to every chunk, each way. */
export const DELAY_MS = 800;
/**
 * How long a `stop` or `blackhole` is held: 2 s beyond the longest bound, so
 * an op the product fails to bound (one that waits for the SIGCONT or the
 * heal) shows as out of bound instead of finishing in time by luck.
 */
export const STALL_HOLD_MS = Math.max(PULL_BOUND_MS, ADMIN_BOUND_MS) + 2_000;
/** How long a `delay` or `kill` is held: a few seconds beyond the failure detector. */
export const SHORT_HOLD_MS = DETECTOR_MS + 4_500;

export function holdFor(fault: Fault): number {
  return fault === "stop" || fault === "blackhole" ? STALL_HOLD_MS : SHORT_HOLD_MS;
}
/** After the heal, how long every region has to hold every acknowledged push. */
export const CONVERGE_TIMEOUT_MS = 60_000;

export type Outcome = "ok" | "error" | "hung";

export interface OpStats {
  ok: number;
  /** Ended by the product (an error status, a refused or reset connection) within the client's deadline. */
  failed: number;
  /** Ended only by the client's own deadline (bound + CLIENT_GRACE_MS). */
  hung: number;
  maxMs: number;
  /** Every op ended (ok or failed) within its bound. */
  bounded: boolean;
  /** First few distinct failure reasons. */
  errors: string[];
}

export interface CellResult extends Cell {
  holdMs: number;
  pulls: OpStats;
  pushes: OpStats;
  admin: OpStats;
  /** Acknowledged pushes of the cell (a's one before the fault included). */
  acked: number;
  /** Acknowledged pushes held by no region once the cell is over. */
  lost: number;
  /** (push, region) pairs still missing at the convergence deadline. */
  missing: number;
  /** Per region, the pushes it still lacked at the last check that found any (after the heal). */
  lastLacking: Record<string, number>;
  converged: boolean;
  /** From the heal until every region held every acknowledged push (-1: never, within the timeout). */
  convergedMs: number;
  /** From the heal until a pull through the front door succeeded (-1: never). */
  readsBackMs: number;
  /** From the heal until the front door saw every region up (-1: never). */
  allUpMs: number;
  /**
   * The front door itself is frozen or blackholed: nothing in the product can
   * bound the pulls (they end at the client's deadline, or when the fault
   * ends), so their bound is not part of `held`.
   */
  pullsUnboundable: boolean;
  /** bounded (pulls unless unboundable, pushes, admin) && converged && lost = 0 && pulls came back. */
  held: boolean;
  /** What broke, in words ("" when it held). */
  broke: string;
  /** Region a and the front door were restarted after the cell to get a usable mesh. */
  restartedAfter: boolean;
}

export interface SuiteOptions {
  cells: Cell[];
  /** How long every fault is held (default: holdFor(fault)). */
  holdMs?: number;
  /**
   * The front door's read bound actually configured (default
   * FRONT_DOOR_READ_MS). The suite's bounds stay the documented ones: a larger
   * value here plays a front door that does not keep its bound, to see the
   * suite catch it.
   */
  frontDoorReadMs?: number;
  /** Called with each cell's result as it ends. */
  onCell?: (r: CellResult) => void;
}

const REGIONS = ["a", "b", "c"] as const;
const VICTIM = "a";

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

interface Ack {
  region: string;
  repo: string;
  digest: string;
}

/** A small image (config, one layer, the manifest by tag) pushed to `base`, every request under `signal`. */
async function pushImage(base: string, repo: string, tag: string, signal: AbortSignal): Promise<string> {
  const blob = async (bytes: Buffer) => {
    const digest = digestOf(bytes);
    const res = await fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
      signal,
    });
    await res.arrayBuffer();
    if (res.status !== 201) throw new Error(`blob upload ${res.status}`);
    return { mediaType: "application/octet-stream", digest, size: bytes.byteLength };
  };
  const config = await blob(Buffer.from(JSON.stringify({ tag, nonce: randomBytes(8).toString("hex") })));
  const layer = await blob(randomBytes(2048));
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }),
  );
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: bytes,
    signal,
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`manifest put ${res.status}`);
  return digestOf(bytes);
}

/** Whether the registry at `base` itself holds the manifest (no fetching on miss). */
async function holds(base: string, repo: string, digest: string): Promise<boolean> {
  try {
    const res = await fetch(`${base}/v2/${repo}/manifests/${digest}`, {
      method: "HEAD",
      headers: { "cache-control": "only-if-cached" },
      signal: AbortSignal.timeout(3_000),
    });
    return res.status === 200;
  } catch {
    return false;
  }
}

interface Seeded {
  repo: string;
  tag: string;
  layer: string;
}

/** One pull through the front door: the manifest by tag, then its layer, checked. */
async function pull(front: string, s: Seeded, signal: AbortSignal): Promise<void> {
  const m = await fetch(`${front}/v2/${s.repo}/manifests/${s.tag}`, {
    headers: { accept: OCI_MANIFEST },
    signal,
  });
  await m.arrayBuffer();
  if (m.status !== 200) throw new Error(`manifest ${m.status}`);
  const b = await fetch(`${front}/v2/${s.repo}/blobs/${s.layer}`, { signal });
  const body = Buffer.from(await b.arrayBuffer());
  if (b.status !== 200) throw new Error(`blob ${b.status}`);
  if (digestOf(body) !== s.layer) throw new Error("blob digest mismatch");
}

/** `bin/meridian ARGS`: its exit code (null when killed at `killAfterMs`) and stderr's tail. */
function runCli(args: string[], killAfterMs: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_ENTRY, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d) => {
      stderr = (stderr + d).slice(-2_000);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Collects the outcome and latency of the ops of one kind. */
class OpLog {
  readonly ops: Array<{ outcome: Outcome; ms: number; error?: string }> = [];
  constructor(readonly boundMs: number) {}

  /** Runs `op` under the client's deadline (bound + grace) and records how it ended. */
  async run(op: (signal: AbortSignal) => Promise<void>): Promise<boolean> {
    const started = performance.now();
    const deadline = AbortSignal.timeout(this.boundMs + CLIENT_GRACE_MS);
    try {
      await op(deadline);
      this.ops.push({ outcome: "ok", ms: performance.now() - started });
      return true;
    } catch (err) {
      const ms = performance.now() - started;
      if (deadline.aborted || (err as { hung?: boolean }).hung === true)
        this.ops.push({ outcome: "hung", ms });
      else this.ops.push({ outcome: "error", ms, error: describe(err) });
      return false;
    }
  }

  stats(): OpStats {
    const maxMs = Math.round(Math.max(0, ...this.ops.map((o) => o.ms)));
    return {
      ok: this.ops.filter((o) => o.outcome === "ok").length,
      failed: this.ops.filter((o) => o.outcome === "error").length,
      hung: this.ops.filter((o) => o.outcome === "hung").length,
      maxMs,
      bounded: this.ops.every((o) => o.outcome !== "hung" && o.ms <= this.boundMs),
      errors: [...new Set(this.ops.flatMap((o) => (o.error === undefined ? [] : [o.error])))].slice(0, 3),
    };
  }
}

function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

/** The mesh, the front door and the proxy clients reach it through. */
class Rig {
  door!: MeridianProcess;
  doorPort = 0;
  clientProxy!: TcpProxy;
  /** Pids currently SIGSTOPped: resumed whatever happens. */
  readonly stopped = new Set<number>();

  constructor(
    readonly after: After,
    readonly mesh: ProxiedMesh,
    readonly frontDoorReadMs: number,
  ) {}

  get front(): string {
    return `http://${this.clientProxy.address}`;
  }

  registry(region: string): string {
    return this.mesh.regions.get(region)!.registry;
  }

  async startDoor(): Promise<void> {
    this.door = await spawnMeridian(this.after, "control-plane/front-door.js", {
      MERIDIAN_MESH: this.mesh.edgeMeshFile!,
      MERIDIAN_FRONT_DOOR_PORT: String(this.doorPort),
      MERIDIAN_CLIENT_REGIONS: `127.0.0.1/32=${VICTIM}`,
      MERIDIAN_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS: String(this.frontDoorReadMs),
      MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS: String(FRONT_DOOR_WRITE_MS),
      MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
    });
  }

  /** Whether the front door (asked directly, not through the client proxy) sees every region up. */
  async allUp(): Promise<boolean> {
    try {
      const res = await fetch(`${this.door.info.frontDoor}/healthz`, { signal: AbortSignal.timeout(2_000) });
      const h = (await res.json()) as { regions: Array<{ up: boolean }> };
      return h.regions.length === REGIONS.length && h.regions.every((r) => r.up);
    } catch {
      return false;
    }
  }

  pidsOf(target: Target): number[] {
    const r = this.mesh.regions.get(VICTIM)!;
    const pid = (kind: RegionProcess) => (kind === "nats" ? r.nats.pid : r[kind].child.pid!);
    switch (target) {
      case "front-door":
        return [this.door.child.pid!];
      case "region":
        return (["worker", "peer", "node", "nats"] as const).map(pid);
      default:
        return [pid(target)];
    }
  }

  /** The proxies a blackhole or delay of `target` acts on. */
  linksOf(target: Target): TcpProxy[] {
    const edge = this.mesh.edges!.get(VICTIM)!;
    const into = (kind: "nats" | "grpc") =>
      [...this.mesh.proxies].filter(([dst]) => dst !== VICTIM).map(([, links]) => links.get(VICTIM)![kind]);
    const outOf = [...this.mesh.proxies.get(VICTIM)!.values()].flatMap((l) => [l.nats, l.grpc]);
    switch (target) {
      case "nats":
        return [edge.nats, ...into("nats")];
      case "node":
        return [edge.registry];
      case "peer":
        return [edge.grpc, ...into("grpc")];
      case "worker":
        return outOf;
      case "front-door":
        return [this.clientProxy];
      case "region":
        return [edge.registry, edge.grpc, ...into("nats"), ...into("grpc"), ...outOf];
    }
  }

  async inject(cell: Cell): Promise<void> {
    switch (cell.fault) {
      case "stop":
        for (const pid of this.pidsOf(cell.target)) {
          this.stopped.add(pid);
          process.kill(pid, "SIGSTOP");
        }
        return;
      case "blackhole":
        for (const p of this.linksOf(cell.target)) p.blackhole();
        return;
      case "delay":
        for (const p of this.linksOf(cell.target)) p.setDelay(DELAY_MS);
        return;
      case "kill":
        if (cell.target === "front-door") await this.door.kill();
        else if (cell.target === "region") await this.mesh.killRegion(VICTIM);
        else await this.mesh.killProcess(VICTIM, cell.target);
        return;
    }
  }

  async heal(cell: Cell): Promise<void> {
    switch (cell.fault) {
      case "stop":
        this.resumeAll();
        return;
      case "blackhole":
        for (const p of this.linksOf(cell.target)) p.heal();
        return;
      case "delay":
        for (const p of this.linksOf(cell.target)) p.setDelay(0);
        return;
      case "kill":
        if (cell.target === "front-door") await this.startDoor();
        else if (cell.target === "region") await this.mesh.restartRegion(VICTIM);
        else await this.mesh.restartProcess(VICTIM, cell.target);
        return;
    }
  }

  resumeAll(): void {
    for (const pid of this.stopped) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
    this.stopped.clear();
  }

  /** Every link open, region a and the front door restarted: the mesh as new, data kept. */
  async reset(): Promise<void> {
    this.resumeAll();
    for (const t of TARGETS)
      for (const p of this.linksOf(t)) {
        p.heal();
        p.setDelay(0);
      }
    await this.mesh.killRegion(VICTIM);
    await this.mesh.restartRegion(VICTIM);
    await this.door.kill();
    await this.startDoor();
  }
}

export async function startRig(
  after: After,
  frontDoorReadMs = FRONT_DOOR_READ_MS,
): Promise<{ rig: Rig; seeded: Seeded[] }> {
  const interval = String(HEARTBEAT_MS);
  const mesh = await startProxiedMesh(
    after,
    [...REGIONS],
    {
      peer: { MERIDIAN_HEARTBEAT_INTERVAL_MS: interval, MERIDIAN_LOG_LEVEL: "warn" },
      node: { MERIDIAN_LOG_LEVEL: "warn" },
      worker: { MERIDIAN_LOG_LEVEL: "warn" },
    },
    { edges: true },
  );
  const rig = new Rig(after, mesh, frontDoorReadMs);
  // Registered after the processes: runs before their SIGKILLs (last registered first).
  after(() => rig.resumeAll());
  rig.doorPort = await freePort();
  await rig.startDoor();
  rig.clientProxy = await TcpProxy.start({ target: { host: "127.0.0.1", port: rig.doorPort } });
  after(() => rig.clientProxy.close());
  await eventually(() => rig.allUp(), 30_000, 100);
  // Images replicated everywhere before anything fails: one pushed into each region.
  const seeded: Seeded[] = [];
  for (const region of REGIONS) {
    const repo = `gray/seed/${region}`;
    const digest = await pushImage(rig.registry(region), repo, "v1", AbortSignal.timeout(30_000));
    const manifest = (await (
      await fetch(`${rig.registry(region)}/v2/${repo}/manifests/${digest}`, {
        headers: { accept: OCI_MANIFEST },
      })
    ).json()) as { layers: Array<{ digest: string }> };
    seeded.push({ repo, tag: "v1", layer: manifest.layers[0]!.digest });
    for (const r of REGIONS)
      await eventually(() => holds(rig.registry(r), repo, digest), CONVERGE_TIMEOUT_MS, 100);
  }
  return { rig, seeded };
}

async function runCell(rig: Rig, seeded: Seeded[], cell: Cell, holdMs: number): Promise<CellResult> {
  const repo = `gray/${cell.target}-${cell.fault}/app`;
  const acks: Ack[] = [];
  // a's own acknowledged write, its replication possibly still under way when the fault comes.
  const before = await pushImage(rig.registry(VICTIM), repo, "before", AbortSignal.timeout(30_000));
  acks.push({ region: VICTIM, repo, digest: before });

  const pulls = new OpLog(PULL_BOUND_MS);
  const pushes = new OpLog(PUSH_BOUND_MS);
  const admin = new OpLog(ADMIN_BOUND_MS);
  let launching = true;
  const loops: Array<Promise<void>> = [];
  const loop = (body: (n: number) => Promise<void>, pauseMs: number) =>
    loops.push(
      (async () => {
        for (let n = 0; launching; n++) {
          await body(n);
          await sleep(pauseMs);
        }
      })(),
    );
  await rig.inject(cell);
  const injectedAt = Date.now();
  loop(async (n) => {
    await pulls.run((signal) => pull(rig.front, seeded[n % seeded.length]!, signal));
  }, 100);
  loop(async (n) => {
    const region = n % 2 === 0 ? "b" : "c";
    let digest = "";
    const ok = await pushes.run(async (signal) => {
      digest = await pushImage(rig.registry(region), repo, `p${n}`, signal);
    });
    if (ok) acks.push({ region, repo, digest });
  }, 100);
  loop(async () => {
    await admin.run(async () => {
      const r = await runCli(
        ["status", "--json", "--mesh", rig.mesh.edgeMeshFile!],
        ADMIN_BOUND_MS + CLIENT_GRACE_MS,
      );
      if (r.code === null) throw Object.assign(new Error("killed at the client deadline"), { hung: true });
      // Exit 1 names the unreachable region: an answer, within the bound, but not a clean one.
      if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr.trim().split("\n").at(-1)}`);
    });
  }, 200);
  const remaining = injectedAt + holdMs - Date.now();
  if (remaining > 0) await sleep(remaining);
  launching = false;

  // ---- heal, then recovery: convergence, pulls through the front door, every region up
  const healStarted = Date.now();
  await rig.heal(cell);
  const since = () => Date.now() - healStarted;
  const waitFor = async (check: () => Promise<boolean>): Promise<number> => {
    try {
      await eventually(check, CONVERGE_TIMEOUT_MS, 200);
      return since();
    } catch {
      return -1;
    }
  };
  // Which regions still lacked pushes at the last check that found any: who was slow to catch up.
  let lastLacking: Record<string, number> = {};
  const missingPairs = async () => {
    const lacking: Record<string, number> = {};
    for (const ack of acks)
      for (const r of REGIONS)
        if (!(await holds(rig.registry(r), ack.repo, ack.digest))) lacking[r] = (lacking[r] ?? 0) + 1;
    const missing = Object.values(lacking).reduce((n, v) => n + v, 0);
    if (missing > 0) lastLacking = lacking;
    return missing;
  };
  // In-flight ops settle while recovery is measured (they were started before the heal).
  const [convergedMs, readsBackMs, allUpMs] = await Promise.all([
    Promise.all(loops).then(() => waitFor(async () => (await missingPairs()) === 0)),
    waitFor(async () => {
      try {
        await pull(rig.front, seeded[0]!, AbortSignal.timeout(PULL_BOUND_MS));
        return true;
      } catch {
        return false;
      }
    }),
    waitFor(() => rig.allUp()),
  ]);
  const missing = await missingPairs();
  let lost = 0;
  for (const ack of acks) {
    const held = await Promise.all(REGIONS.map((r) => holds(rig.registry(r), ack.repo, ack.digest)));
    if (!held.some(Boolean)) lost++;
  }
  const pullsUnboundable =
    cell.target === "front-door" && (cell.fault === "stop" || cell.fault === "blackhole");
  const s = { pulls: pulls.stats(), pushes: pushes.stats(), admin: admin.stats() };
  const broke: string[] = [];
  if (!s.pulls.bounded && !pullsUnboundable) broke.push("pulls unbounded");
  if (!s.pushes.bounded) broke.push("pushes unbounded");
  if (!s.admin.bounded) broke.push("status unbounded");
  if (convergedMs < 0) broke.push(`not converged (${missing} missing)`);
  if (lost > 0) broke.push(`${lost} lost`);
  if (readsBackMs < 0) broke.push("pulls never came back");
  const restartedAfter = convergedMs < 0 || readsBackMs < 0 || allUpMs < 0;
  if (restartedAfter) {
    await rig.reset();
    await eventually(() => rig.allUp(), 30_000, 100).catch(() => undefined);
  }
  return {
    ...cell,
    holdMs,
    ...s,
    acked: acks.length,
    lost,
    missing,
    lastLacking,
    converged: convergedMs >= 0,
    convergedMs,
    readsBackMs,
    allUpMs,
    pullsUnboundable,
    held: broke.length === 0,
    broke: broke.join(", "),
    restartedAfter,
  };
}

/** Runs `cells` one after the other on one mesh (started here, closed through `after`). */
export async function runGrayFailures(after: After, options: SuiteOptions): Promise<CellResult[]> {
  const { rig, seeded } = await startRig(after, options.frontDoorReadMs);
  const results: CellResult[] = [];
  for (const cell of options.cells) {
    const r = await runCell(rig, seeded, cell, options.holdMs ?? holdFor(cell.fault));
    results.push(r);
    options.onCell?.(r);
  }
  return results;
}

export function allCells(targets: readonly Target[] = TARGETS, faults: readonly Fault[] = FAULTS): Cell[] {
  return targets.flatMap((target) => faults.map((fault) => ({ target, fault })));
}

const ops = (s: OpStats, unboundable = false) =>
  `${s.ok}/${s.failed}${s.hung > 0 ? `/${s.hung} hung` : ""} (${s.maxMs})${s.bounded || unboundable ? "" : " ✗"}`;
const ms = (v: number) => (v < 0 ? "never" : String(v));

/** The results as a markdown table. */
export function markdownTable(results: CellResult[]): string {
  const rows = [
    "| target | fault | held for (ms) | held | pulls ok/failed (max ms) | pushes ok/failed (max ms) | status ok/failed (max ms) | acked | lost | converged after heal (ms) | pulls back after heal (ms) |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results)
    rows.push(
      `| ${r.target} | ${r.fault} | ${r.holdMs} | ${r.held ? "yes" : `**no**: ${r.broke}`} | ${ops(r.pulls, r.pullsUnboundable)}${r.pullsUnboundable ? " front door gone: waited it out" : ""} | ${ops(r.pushes)} | ${ops(r.admin)} | ${r.acked} | ${r.lost} | ${ms(r.convergedMs)} | ${ms(r.readsBackMs)} |`,
    );
  return `${rows.join("\n")}\n`;
}

function pick<T extends string>(value: string, all: readonly T[], what: string): T[] {
  if (value === "all") return [...all];
  const chosen = value.split(",") as T[];
  for (const c of chosen) if (!all.includes(c)) throw new Error(`--${what}: one of ${all.join(", ")} or all`);
  return chosen;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: "string", default: "all" },
      fault: { type: "string", default: "all" },
      "hold-ms": { type: "string" },
    },
  });
  const cells = allCells(pick(values.target, TARGETS, "target"), pick(values.fault, FAULTS, "fault"));
  const holdMs = values["hold-ms"] === undefined ? undefined : Number(values["hold-ms"]);
  const hooks: Array<() => Promise<void> | void> = [];
  const after = cleanupStack({ after: (fn) => hooks.push(fn) });
  const started = Date.now();
  let results: CellResult[] = [];
  try {
    results = await runGrayFailures(after, {
      cells,
      ...(holdMs === undefined ? {} : { holdMs }),
      onCell: (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    });
  } finally {
    for (const hook of hooks.reverse()) await hook();
  }
  process.stdout.write(`\n${markdownTable(results)}\n`);
  process.stdout.write(
    `${JSON.stringify({
      done: true,
      cells: results.length,
      held: results.filter((r) => r.held).length,
      runMs: Date.now() - started,
      bounds: { PULL_BOUND_MS, PUSH_BOUND_MS, ADMIN_BOUND_MS, DETECTOR_MS, DELAY_MS },
      results,
    })}\n`,
  );
  if (results.some((r) => !r.held)) process.exitCode = 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
