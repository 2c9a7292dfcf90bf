/**
 * Scale (issue 14, item 6): replication lag, convergence after a heal and the
 * cost of the mesh itself, with 2, 3, 4 and 6 regions on one machine.
 *
 *   node dist/benchmarks/scale.js [--regions 2,3,4,6] [--runs 3] [--writes 200]
 *                                 [--images 5] [--poll-ms 10] [--rest-sec 10] [--fsync true]
 *   node dist/benchmarks/scale.js --from results/scale-A.json,results/scale-B.json
 *
 * The second form runs nothing: it pools the runs of earlier raw figures per
 * region count and prints the table and the model's constants again.
 *
 * Per region count N, one mesh of N regions as separate processes
 * (testing/mesh.ts startProxiedMesh: a nats-server, node, peer and worker per
 * region, chaos/ proxies on every worker's links to the other regions, so a
 * region can be partitioned); settings as the product's defaults (peer
 * heartbeat every 1 s, fsync on unless `--fsync false`) except the worker's
 * as in the convergence benchmark (no periodic anti-entropy, no delete
 * breaker). Regions are named a, b, c, …; images are pushed into a.
 *
 * 1. **Links**: the durable consumers on every region's stream, counted in
 *    JetStream (N·(N−1) expected: every worker on every other stream).
 * 2. **At rest**: after a warm-up image has reached every region and a few
 *    seconds' settle, utime+stime (/proc) of every mesh process over
 *    `--rest-sec`, and VmRSS at its end, summed per process kind.
 * 3. Per run (`--runs`), both phases on the same mesh, one after the other:
 *    - **lag**: `--images` × (config + one 1 MiB layer) pushed into a, one
 *      started every 500 ms, both blobs monolithically and concurrently, then
 *      the manifest by tag (as benchmarks/replication.ts); from the manifest's
 *      201, `HEAD` by tag (only-if-cached) at every other region every
 *      `--poll-ms` until 200 with the digest; lag = that interval. CPU of
 *      every mesh process over the phase.
 *    - **convergence**: b is cut off (every replication link into and out of
 *      it); `--writes` tag writes in a and as many in b to the same tags (each
 *      side its own image, 8 in flight a side); the regions outside b finish
 *      taking a's writes; the links heal; time until every region's peer
 *      reports the same summary of the repository (Summarize). CPU of every
 *      mesh process from the heal to agreement, and the events the workers
 *      applied in that time (meridian_replication_events_total, all outcomes).
 *
 * The load average is recorded at every phase: the machine (2 cores here) is
 * shared, and a mesh of 6 regions is 24 processes on it. CPU seconds per
 * image and per event are the figures load distorts least. Medians over the
 * runs are printed as markdown, then the constants benchmarks/README.md's
 * model rests on, fitted to the run (modelLines); every figure goes to
 * benchmarks/results/scale-<timestamp>.json.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { CONVERGENCE_WORKER_ENV, MeshProbe } from "../chaos/convergence.js";
import { streamName } from "../protocol/events.js";
import { durableName } from "../replication/worker.js";
import { sleep } from "../testing/faults.js";
import { cleanupStack, REPO_ROOT } from "../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../testing/mesh.js";
import { OCI_MANIFEST as OCI_MANIFEST_TYPE } from "../testing/oci-client.js";
import { BenchClient, type Descriptor, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "./client.js";
import { MiB } from "./data.js";
import { pool, until } from "./loops.js";
import { cpuSeconds, memory } from "./proc.js";
import { cell, quantiles } from "./spread.js";

const say = (msg: string) => process.stderr.write(`bench scale: ${msg}\n`);

const KINDS = ["nats", "node", "peer", "worker"] as const;
type Kind = (typeof KINDS)[number];
/** Per process kind, summed over the regions. */
type PerKind = Record<Kind, number>;

const SOURCE = "a";
const PARTITIONED = "b";
const INTERVAL_MS = 500;
const WRITE_WIDTH = 8;
/** No event handled anywhere for this long: the mesh is done with a phase. */
const QUIET_MS = 1000;

interface Options {
  counts: number[];
  runs: number;
  writes: number;
  images: number;
  pollMs: number;
  restMs: number;
  fsync: boolean;
}

export interface LagRun {
  load: number;
  pushMs: number[];
  /** Every (image, destination) lag, ms. */
  lagMs: number[];
  wallSec: number;
  /** From the first push until the workers' event counts stopped moving (the phase's CPU ends at wallSec, QUIET_MS later). */
  quietSec: number;
  /** CPU seconds over the phase (until the mesh is quiet), per kind; `bench` is this process (pollers, pushes, the proxies). */
  cpu: PerKind;
  /** CPU seconds per process, "<region>.<kind>": a is the origin of every image. */
  cpuByProcess: Record<string, number>;
  benchCpu: number;
}

export interface ConvergenceRun {
  load: number;
  writes: number;
  writeMs: number;
  /** Regions outside b taking a's writes before the heal (0 with two regions). */
  catchUpMs: number;
  convergedMs: number;
  /** Source events the workers handled from the heal to agreement (every outcome). */
  events: number;
  byOutcome: Record<string, number>;
  cpu: PerKind;
  /**
   * From the heal until the workers' event counts stop moving (QUIET_MS):
   * the whole catch-up, replicas the workers skip included (agreement comes
   * before the last of those are delivered).
   */
  untilQuiet: {
    ms: number;
    events: number;
    byOutcome: Record<string, number>;
    cpu: PerKind;
    /** CPU seconds per process, "<region>.<kind>". */
    cpuByProcess: Record<string, number>;
  };
  benchCpu: number;
}

export interface ScalePoint {
  regions: number;
  startSec: number;
  /** Durable consumers counted in JetStream: the replication links, and the regions' own views. */
  consumers: { links: number; local: number };
  rest: {
    load: number;
    seconds: number;
    cpuPct: PerKind;
    rssMiB: PerKind;
    /** CPU % of one core per process, "<region>.<kind>". */
    cpuPctByProcess: Record<string, number>;
    benchCpuPct: number;
  };
  lag: LagRun[];
  convergence: ConvergenceRun[];
  /** Peak RSS (VmHWM) per kind at the end, summed. */
  peakRssMiB: PerKind;
}

// -------------------------------------------------------------- processes

type Pids = Array<{ region: string; kind: Kind; pid: number }>;

function pidsOf(mesh: ProxiedMesh): Pids {
  const out: Pids = [];
  for (const [region, r] of mesh.regions) {
    out.push({ region, kind: "nats", pid: r.nats.pid });
    for (const kind of ["node", "peer", "worker"] as const)
      out.push({ region, kind, pid: r[kind].child.pid! });
  }
  return out;
}

const zero = (): PerKind => ({ nats: 0, node: 0, peer: 0, worker: 0 });

/** CPU seconds per kind (and this process's) spent while `work` ran. */
async function cpuOver<T>(
  pids: Pids,
  work: () => Promise<T>,
): Promise<{ result: T; cpu: PerKind; byProcess: Record<string, number>; bench: number }> {
  const before = pids.map((p) => cpuSeconds(p.pid));
  const bench0 = process.cpuUsage();
  const result = await work();
  const benchUs = process.cpuUsage(bench0);
  const cpu = zero();
  const byProcess: Record<string, number> = {};
  for (const [i, p] of pids.entries()) {
    const used = cpuSeconds(p.pid) - before[i]!;
    cpu[p.kind] += used;
    byProcess[`${p.region}.${p.kind}`] = used;
  }
  return { result, cpu, byProcess, bench: (benchUs.user + benchUs.system) / 1e6 };
}

const total = (x: PerKind) => KINDS.reduce((s, k) => s + x[k], 0);

/**
 * Durable consumers on every region's stream, counted in JetStream: the other
 * regions' workers' (`replicate-to-<region>`, the links) and the rest (the
 * region's own views: node, peer, worker).
 */
async function countConsumers(mesh: ProxiedMesh): Promise<{ links: number; local: number }> {
  const out = { links: 0, local: 0 };
  for (const [region, r] of mesh.regions) {
    const nc = await connect({ servers: r.nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      for await (const c of jsm.consumers.list(streamName(region))) {
        if (c.name.startsWith(durableName(""))) out.links++;
        else out.local++;
      }
    } finally {
      await nc.close();
    }
  }
  return out;
}

/** meridian_replication_events_total of every worker, summed over sources, per outcome. */
async function eventsHandled(mesh: ProxiedMesh): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const r of mesh.regions.values()) {
    const text = await (await fetch(new URL("/metrics", r.worker.info.metrics))).text();
    for (const m of text.matchAll(/^meridian_replication_events_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$/gm))
      out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  }
  return out;
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((x, y) => x + y, 0);

/** Wait until the workers' event counts have not moved for QUIET_MS (at most a minute): the counts and when they last moved. */
async function quiet(mesh: ProxiedMesh): Promise<{ events: Record<string, number>; at: number }> {
  let last = await eventsHandled(mesh);
  let at = performance.now();
  const end = at + 60_000;
  while (performance.now() < end) {
    await sleep(250);
    const now = await eventsHandled(mesh);
    if (sum(now) !== sum(last)) {
      last = now;
      at = performance.now();
    } else if (performance.now() - at >= QUIET_MS) break;
  }
  return { events: last, at };
}

function minus(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b[k] ?? 0)]));
}

// -------------------------------------------------------------- lag

interface Image {
  repo: string;
  tag: string;
  config: Buffer;
  layer: Buffer;
  manifest: unknown;
}

const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** Config + one layer of `layerBytes` never seen before (the shape of replication.ts's small images). */
function image(repo: string, tag: string, layerBytes: number): Image {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", seed: `${repo}:${tag}` }));
  const layer = randomBytes(layerBytes);
  const c: Descriptor = { mediaType: OCI_CONFIG, digest: digestOf(config), size: config.length };
  const l: Descriptor = { mediaType: OCI_LAYER, digest: digestOf(layer), size: layer.length };
  return {
    repo,
    tag,
    config,
    layer,
    manifest: { schemaVersion: 2, mediaType: OCI_MANIFEST, config: c, layers: [l] },
  };
}

/** Push both blobs at once, then the manifest; its digest. */
async function pushImage(client: BenchClient, img: Image): Promise<string> {
  await Promise.all([
    client.pushMonolithic(img.repo, digestOf(img.config), img.config.length, img.config, OCI_CONFIG),
    client.pushMonolithic(img.repo, digestOf(img.layer), img.layer.length, img.layer),
  ]);
  return client.putManifest(img.repo, img.tag, img.manifest);
}

/** Poll HEAD by tag every `everyMs` until 200 with `digest`: ms from `t0`. */
async function pullable(
  client: BenchClient,
  img: Image,
  digest: string,
  t0: number,
  everyMs: number,
): Promise<number> {
  for (;;) {
    const started = performance.now();
    const res = await client.send("HEAD", `/v2/${img.repo}/manifests/${img.tag}`, {
      headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
    });
    const now = performance.now();
    if (res.status === 200 && res.headers["docker-content-digest"] === digest) return now - t0;
    if (res.status !== 200 && res.status !== 404) throw new Error(`HEAD ${client.base}: ${res.status}`);
    if (now - t0 > 120_000) throw new Error(`${img.repo} not pullable at ${client.base} in 120 s`);
    const wait = everyMs - (now - started);
    if (wait > 0) await sleep(wait);
  }
}

async function lagRun(
  push: BenchClient,
  pollers: BenchClient[],
  options: Options,
  id: string,
): Promise<{ pushMs: number[]; lagMs: number[] }> {
  const pushMs: number[] = [];
  const lagMs: number[] = [];
  const polls: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < options.images; i++) {
    const wait = start + i * INTERVAL_MS - performance.now();
    if (wait > 0) await sleep(wait);
    const img = image(`scale/lag-${id}-${i}`, `v${i}`, MiB);
    const t0 = performance.now();
    const digest = await pushImage(push, img);
    const t201 = performance.now();
    pushMs.push(t201 - t0);
    for (const poller of pollers)
      polls.push(pullable(poller, img, digest, t201, options.pollMs).then((ms) => void lagMs.push(ms)));
  }
  await Promise.all(polls);
  return { pushMs, lagMs };
}

// -------------------------------------------------------------- convergence

async function smallManifest(probe: MeshProbe, region: string, repo: string, tag: string): Promise<string> {
  const oci = probe.oci.get(region)!;
  const config = await oci.pushBlob(repo, Buffer.from(`{"n":"${region}-${tag}"}`), OCI_CONFIG);
  const layer = await oci.pushBlob(repo, randomBytes(256));
  const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST_TYPE, config, layers: [layer] });
  await oci.pushManifest(repo, tag, body);
  return body;
}

async function convergenceRun(
  probe: MeshProbe,
  pids: Pids,
  names: string[],
  writes: number,
  id: string,
): Promise<ConvergenceRun> {
  const mesh = probe.mesh;
  const repo = `scale/partition-${id}`;
  const bodyA = await smallManifest(probe, SOURCE, repo, "base-a");
  const bodyB = await smallManifest(probe, PARTITIONED, repo, "base-b");
  const summaries = () => Promise.all(names.map((r) => probe.summary(r, repo)));
  const agree = async () => {
    const s = await summaries();
    return s[0] !== "" && s.every((x) => x === s[0]);
  };
  await until(120_000, agree);
  mesh.partition(PARTITIONED);
  const load = loadavg()[0]!;
  const writeStart = Date.now();
  const a = probe.oci.get(SOURCE)!;
  const b = probe.oci.get(PARTITIONED)!;
  await Promise.all([
    pool(writes, WRITE_WIDTH, (i) => a.pushManifest(repo, `t${i}`, bodyA)),
    pool(writes, WRITE_WIDTH, (i) => b.pushManifest(repo, `t${i}`, bodyB)),
  ]);
  const writeMs = Date.now() - writeStart;
  // The regions outside b take a's writes during the partition: the figure below is the heal's alone.
  const outside = names.filter((r) => r !== PARTITIONED);
  const catchUpMs = await until(300_000, async () => {
    const s = await Promise.all(outside.map((r) => probe.summary(r, repo)));
    return s.every((x) => x === s[0]);
  });
  const events0 = await eventsHandled(mesh);
  const healed = performance.now();
  let convergedMs = 0;
  let atAgreement: Record<string, number> = {};
  let cpuAtAgreement = zero();
  const before = pids.map((p) => cpuSeconds(p.pid));
  const sinceHeal = () => {
    const cpu = zero();
    for (const [i, p] of pids.entries()) cpu[p.kind] += cpuSeconds(p.pid) - before[i]!;
    return cpu;
  };
  const {
    result: quietAt,
    cpu: cpuQuiet,
    byProcess,
    bench,
  } = await cpuOver(pids, async () => {
    mesh.heal(PARTITIONED);
    convergedMs = await until(600_000, agree);
    cpuAtAgreement = sinceHeal();
    atAgreement = minus(await eventsHandled(mesh), events0);
    return quiet(mesh);
  });
  const cpu = cpuAtAgreement;
  const byOutcome = atAgreement;
  const events = sum(byOutcome);
  const all = minus(quietAt.events, events0);
  const untilQuiet = {
    ms: quietAt.at - healed,
    events: sum(all),
    byOutcome: all,
    cpu: cpuQuiet,
    cpuByProcess: byProcess,
  };
  return {
    load,
    writes,
    writeMs,
    catchUpMs,
    convergedMs,
    events,
    byOutcome,
    cpu,
    untilQuiet,
    benchCpu: bench,
  };
}

// -------------------------------------------------------------- one region count

async function point(n: number, options: Options): Promise<ScalePoint> {
  const names = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
  const hooks: Array<() => Promise<void> | void> = [];
  const after = cleanupStack({ after: (fn) => hooks.push(fn) });
  let probe: MeshProbe | undefined;
  const clients: BenchClient[] = [];
  try {
    const fsync = String(options.fsync);
    const common = { MERIDIAN_LOG_LEVEL: "warn", MERIDIAN_STORAGE_FSYNC: fsync };
    const t0 = Date.now();
    say(`${n} regions: starting ${names.join(", ")} (load ${loadavg()[0]!.toFixed(2)})`);
    const mesh = await startProxiedMesh(after, names, {
      node: common,
      peer: { ...common, MERIDIAN_HEARTBEAT_INTERVAL_MS: "1000" },
      worker: { ...common, ...CONVERGENCE_WORKER_ENV },
    });
    const startSec = (Date.now() - t0) / 1000;
    probe = new MeshProbe(mesh);
    const pids = pidsOf(mesh);
    const push = new BenchClient(mesh.regions.get(SOURCE)!.registry, 4);
    const pollers = names
      .filter((r) => r !== SOURCE)
      .map((r) => new BenchClient(mesh.regions.get(r)!.registry, 4));
    clients.push(push, ...pollers);
    const nonce = randomBytes(4).toString("hex");

    // Warm-up: every worker connected and copying before anything is measured.
    const warm = await lagRun(push, pollers, { ...options, images: 1 }, `warm-${nonce}`);
    const consumers = await countConsumers(mesh);
    say(
      `${n} regions: up in ${startSec.toFixed(1)} s, warm-up image everywhere in ${Math.round(Math.max(...warm.lagMs))} ms, ${consumers.links} link consumers (+${consumers.local} local)`,
    );

    await sleep(3000);
    const restLoad = loadavg()[0]!;
    const restStart = performance.now();
    const rest = await cpuOver(pids, () => sleep(options.restMs));
    const seconds = (performance.now() - restStart) / 1000;
    const cpuPct = zero();
    const rssMiB = zero();
    for (const k of KINDS) cpuPct[k] = (100 * rest.cpu[k]) / seconds;
    for (const p of pids) rssMiB[p.kind] += memory(p.pid).rssMiB;
    say(`${n} regions: at rest ${total(cpuPct).toFixed(1)} % of a core, ${Math.round(total(rssMiB))} MiB`);

    const lag: LagRun[] = [];
    const convergence: ConvergenceRun[] = [];
    for (let run = 1; run <= options.runs; run++) {
      const load = loadavg()[0]!;
      const t = performance.now();
      const l = await cpuOver(pids, async () => {
        const r = await lagRun(push, pollers, options, `${nonce}-${run}`);
        const q = await quiet(mesh);
        return { ...r, quietSec: (q.at - t) / 1000 };
      });
      const lagRow: LagRun = {
        load,
        ...l.result,
        wallSec: (performance.now() - t) / 1000,
        cpu: l.cpu,
        cpuByProcess: l.byProcess,
        benchCpu: l.bench,
      };
      lag.push(lagRow);
      const q = quantiles(lagRow.lagMs);
      say(
        `${n} regions, run ${run}: lag p50 ${Math.round(pct(lagRow.lagMs, 0.5))} ms, max ${Math.round(q.max)} ms, ` +
          `push p50 ${Math.round(pct(lagRow.pushMs, 0.5))} ms, mesh CPU ${total(l.cpu).toFixed(2)} s (load ${load.toFixed(2)})`,
      );
      const c = await convergenceRun(probe, pids, names, options.writes, `${nonce}-${run}`);
      convergence.push(c);
      say(
        `${n} regions, run ${run}: ${c.writes} writes a side in ${c.writeMs} ms; others caught up ${c.catchUpMs} ms; ` +
          `converged ${c.convergedMs} ms after the heal, ${c.events} events, mesh CPU ${total(c.cpu).toFixed(2)} s (load ${c.load.toFixed(2)})`,
      );
    }
    const peakRssMiB = zero();
    for (const p of pids) peakRssMiB[p.kind] += memory(p.pid).hwmMiB;
    return {
      regions: n,
      startSec,
      consumers,
      rest: {
        load: restLoad,
        seconds,
        cpuPct,
        rssMiB,
        cpuPctByProcess: Object.fromEntries(
          Object.entries(rest.byProcess).map(([k, v]) => [k, (100 * v) / seconds]),
        ),
        benchCpuPct: (100 * rest.bench) / seconds,
      },
      lag,
      convergence,
      peakRssMiB,
    };
  } finally {
    for (const c of clients) c.close();
    probe?.close();
    for (const hook of hooks.reverse()) await hook();
  }
}

/** CPU seconds of the origin region's processes. */
function originCpu(byProcess: Record<string, number> | undefined): number {
  // Raw figures from before per-process CPU was kept have none.
  if (byProcess === undefined) return Number.NaN;
  return KINDS.reduce((s, k) => s + (byProcess[`${SOURCE}.${k}`] ?? 0), 0);
}

/** CPU seconds of `cpu` over `seconds` beyond what the mesh spends at rest in that time. */
function aboveRest(p: ScalePoint, cpu: PerKind, seconds: number): number {
  return total(cpu) - (total(p.rest.cpuPct) / 100) * seconds;
}

/** Nearest-rank percentile. */
function pct(values: number[], p: number): number {
  const v = [...values].sort((x, y) => x - y);
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))] ?? Number.NaN;
}

// -------------------------------------------------------------- the model's constants

/** Least squares of y ≈ a·x1 + b·x2 (no intercept), by the 2×2 normal equations. */
function fit2(rows: Array<[number, number, number]>): { a: number; b: number } {
  let s11 = 0;
  let s12 = 0;
  let s22 = 0;
  let s1y = 0;
  let s2y = 0;
  const finite = rows.filter((r) => r.every(Number.isFinite));
  for (const [x1, x2, y] of finite) {
    s11 += x1 * x1;
    s12 += x1 * x2;
    s22 += x2 * x2;
    s1y += x1 * y;
    s2y += x2 * y;
  }
  const det = s11 * s22 - s12 * s12;
  if (finite.length < 2 || Math.abs(det) < 1e-12) return { a: Number.NaN, b: Number.NaN };
  return { a: (s1y * s22 - s2y * s12) / det, b: (s2y * s11 - s1y * s12) / det };
}

/**
 * The constants benchmarks/README.md's model rests on, fitted to this run's
 * points (they need at least two region counts):
 *   catch-up CPU  ≈ c_r · replicated + c_s · skipped   (heal → quiet, above rest, every run)
 *   resting CPU % ≈ α · N + β · N·(N−1)                 (every point)
 *   a peer at rest ≈ p0 + p1 · (N−1)                     (every point)
 *   origin CPU per image ≈ o0 + o1 · (N−1)               (every lag run; its peer alone too)
 */
function modelLines(points: ScalePoint[], images: number): string[] {
  const catchUp = fit2(
    points.flatMap((p) =>
      p.convergence.map((r): [number, number, number] => [
        r.untilQuiet.byOutcome.replicated ?? 0,
        r.untilQuiet.byOutcome.skipped ?? 0,
        aboveRest(p, r.untilQuiet.cpu, r.untilQuiet.ms / 1000 + 1),
      ]),
    ),
  );
  const rest = fit2(points.map((p) => [p.regions, p.regions * (p.regions - 1), total(p.rest.cpuPct)]));
  const peer = fit2(points.map((p) => [1, p.regions - 1, p.rest.cpuPct.peer / p.regions]));
  const origin = fit2(
    points.flatMap((p) =>
      p.lag.map((r): [number, number, number] => [1, p.regions - 1, originCpu(r.cpuByProcess) / images]),
    ),
  );
  const originPeer = fit2(
    points.flatMap((p) =>
      p.lag.map((r): [number, number, number] => [
        1,
        p.regions - 1,
        (r.cpuByProcess?.[`${SOURCE}.peer`] ?? Number.NaN) / images,
      ]),
    ),
  );
  const workerShare =
    points
      .flatMap((p) => p.convergence.map((r) => r.untilQuiet.cpu.worker / total(r.untilQuiet.cpu)))
      .reduce((x, y) => x + y, 0) /
    Math.max(
      1,
      points.reduce((n, p) => n + p.convergence.length, 0),
    );
  const ms = (x: number) => (1000 * x).toFixed(2);
  return [
    "Model constants fitted to this run (least squares; see benchmarks/README.md, Scale):",
    "",
    `- catch-up: c_r = ${ms(catchUp.a)} ms of mesh CPU per replicated event, c_s = ${ms(catchUp.b)} ms per skipped delivery; workers ${(100 * workerShare).toFixed(0)} % of it`,
    `- at rest: ${rest.a.toFixed(2)} % of a core per region + ${rest.b.toFixed(3)} % per ordered pair of regions; a peer ${peer.a.toFixed(2)} % + ${peer.b.toFixed(3)} % per other region`,
    `- per 1 MiB image: the origin region ${origin.a.toFixed(3)} + ${origin.b.toFixed(3)} CPU-s per destination, its peer ${originPeer.a.toFixed(3)} + ${originPeer.b.toFixed(3)}`,
  ];
}

// -------------------------------------------------------------- report

function report(points: ScalePoint[], options: Options): string {
  const col = (f: (p: ScalePoint) => string) => points.map(f).join(" | ");
  const runs = <T>(p: ScalePoint, xs: (p: ScalePoint) => T[], f: (x: T) => number) =>
    cell(xs(p).map(f).filter(Number.isFinite), "–");
  const lagRuns = (f: (x: LagRun) => number) => (p: ScalePoint) => runs(p, (q) => q.lag, f);
  const convRuns = (f: (x: ConvergenceRun) => number) => (p: ScalePoint) => runs(p, (q) => q.convergence, f);
  const pooled = (p: ScalePoint, q: number) =>
    pct(
      p.lag.flatMap((r) => r.lagMs),
      q,
    );
  const rows: Array<[string, (p: ScalePoint) => string]> = [
    [
      "links: workers' durable consumers on other regions' streams, counted (N·(N−1))",
      (p) => String(p.consumers.links),
    ],
    ["  and the regions' own views' consumers, counted", (p) => String(p.consumers.local)],
    [
      "peer pairs heartbeating (N·(N−1)/2, both ways, 1/s each way)",
      (p) => String((p.regions * (p.regions - 1)) / 2),
    ],
    ["mesh processes (4 per region)", (p) => String(4 * p.regions)],
    ["start-up of the mesh (s, wall)", (p) => p.startSec.toFixed(1)],
    ["**at rest**: load average (1 min)", (p) => p.rest.load.toFixed(2)],
    ...KINDS.map((k): [string, (p: ScalePoint) => string] => [
      `at rest: ${k}, CPU % of one core, summed`,
      (p) => p.rest.cpuPct[k].toFixed(2),
    ]),
    ["at rest: **mesh CPU % of one core**", (p) => total(p.rest.cpuPct).toFixed(2)],
    ["at rest: mesh CPU % per region", (p) => (total(p.rest.cpuPct) / p.regions).toFixed(2)],
    ["at rest: mesh RSS MiB, summed", (p) => Math.round(total(p.rest.rssMiB)).toString()],
    ["at rest: the proxies (this process), CPU %", (p) => p.rest.benchCpuPct.toFixed(2)],
    ["**lag**: load average (1 min), per run", lagRuns((r) => r.load)],
    ["local push time p50 (ms)", lagRuns((r) => pct(r.pushMs, 0.5))],
    ["lag p50 (ms), all destinations", lagRuns((r) => pct(r.lagMs, 0.5))],
    ["lag p99 (ms), all destinations (of images × (N−1) samples a run)", lagRuns((r) => pct(r.lagMs, 0.99))],
    [
      "lag p50 / p99 pooled over the runs (ms)",
      (p) => `${Math.round(pooled(p, 0.5))} / ${Math.round(pooled(p, 0.99))}`,
    ],
    ["lag p99 / push p50", lagRuns((r) => pct(r.lagMs, 0.99) / pct(r.pushMs, 0.5))],
    [
      "mesh CPU s per image pushed (all processes, until quiet)",
      lagRuns((r) => total(r.cpu) / options.images),
    ],
    [
      "  the same above the mesh's resting CPU",
      (p) => cell(p.lag.map((r) => aboveRest(p, r.cpu, r.wallSec) / options.images)),
    ],
    ["  of which workers", lagRuns((r) => r.cpu.worker / options.images)],
    ["  of which peers", lagRuns((r) => r.cpu.peer / options.images)],
    ["  of which nodes", lagRuns((r) => r.cpu.node / options.images)],
    [
      "  of which the origin region a (its 4 processes)",
      lagRuns((r) => originCpu(r.cpuByProcess) / options.images),
    ],
    [
      "  of which a's peer (serves every copy)",
      lagRuns((r) => (r.cpuByProcess?.[`${SOURCE}.peer`] ?? Number.NaN) / options.images),
    ],
    [
      "mesh CPU s per image per destination",
      lagRuns((r) => total(r.cpu) / options.images / (r.lagMs.length / options.images)),
    ],
    ["mesh CPU % of one core over the lag phase", lagRuns((r) => (100 * total(r.cpu)) / r.wallSec)],
    [`**convergence**, ${options.writes} writes a side: load average (1 min)`, convRuns((r) => r.load)],
    ["the writes, both sides at once (s)", convRuns((r) => r.writeMs / 1000)],
    ["regions outside b taking a's writes, before the heal (s)", convRuns((r) => r.catchUpMs / 1000)],
    ["**converged after the heal (s)**", convRuns((r) => r.convergedMs / 1000)],
    ["events handled by the workers, heal → agreement", convRuns((r) => r.events)],
    ["  of which replicated", convRuns((r) => r.byOutcome.replicated ?? 0)],
    ["mesh CPU s, heal → agreement", convRuns((r) => total(r.cpu))],
    ["heal → the workers quiet (no event for 1 s) (s)", convRuns((r) => r.untilQuiet.ms / 1000)],
    ["events handled, heal → quiet", convRuns((r) => r.untilQuiet.events)],
    ["  of which replicated", convRuns((r) => r.untilQuiet.byOutcome.replicated ?? 0)],
    [
      "  of which skipped (a replica of a third region's write)",
      convRuns((r) => r.untilQuiet.byOutcome.skipped ?? 0),
    ],
    [
      "mesh CPU s, heal → quiet, above rest",
      (p) => cell(p.convergence.map((r) => aboveRest(p, r.untilQuiet.cpu, r.untilQuiet.ms / 1000 + 1))),
    ],
    [
      "mesh CPU ms per event handled (heal → quiet, above rest)",
      (p) =>
        cell(
          p.convergence.map(
            (r) => (1000 * aboveRest(p, r.untilQuiet.cpu, r.untilQuiet.ms / 1000 + 1)) / r.untilQuiet.events,
          ),
        ),
    ],
    [
      "mesh CPU ms per write made (heal → quiet, above rest; 2 × writes)",
      (p) =>
        cell(
          p.convergence.map(
            (r) => (1000 * aboveRest(p, r.untilQuiet.cpu, r.untilQuiet.ms / 1000 + 1)) / (2 * r.writes),
          ),
        ),
    ],
    [
      "mesh CPU % of one core, heal → agreement",
      convRuns((r) => (100 * total(r.cpu)) / (r.convergedMs / 1000)),
    ],
    ["the proxies (this process), CPU s, heal → agreement", convRuns((r) => r.benchCpu)],
    ["peak RSS (VmHWM) MiB, summed over the mesh", (p) => Math.round(total(p.peakRssMiB)).toString()],
  ];
  const head = `| measure | ${col((p) => `${p.regions} regions`)} |`;
  const rule = `|---|${points.map(() => "---:").join("|")}|`;
  return [
    `Scale: ${new Date().toISOString().slice(0, 16)} UTC, ${options.runs} runs a point, ${options.images} images a lag run, ` +
      `${options.writes} writes a side, poll every ${options.pollMs} ms, fsync ${options.fsync ? "on" : "off"}; ` +
      "medians of the runs (min–max)",
    "",
    head,
    rule,
    ...rows.map(([name, f]) => `| ${name} | ${col(f)} |`),
  ].join("\n");
}

/** What a run writes to benchmarks/results/scale-*.json. */
interface Raw {
  options: Options;
  points: ScalePoint[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      regions: { type: "string", default: "2,3,4,6" },
      runs: { type: "string", default: "3" },
      writes: { type: "string", default: "200" },
      images: { type: "string", default: "5" },
      "poll-ms": { type: "string", default: "10" },
      "rest-sec": { type: "string", default: "10" },
      fsync: { type: "string", default: "true" },
      from: { type: "string" },
    },
  });
  const options: Options = {
    counts: values.regions.split(",").map(Number),
    runs: Number(values.runs),
    writes: Number(values.writes),
    images: Number(values.images),
    pollMs: Number(values["poll-ms"]),
    restMs: Number(values["rest-sec"]) * 1000,
    fsync: values.fsync !== "false",
  };
  if (values.from !== undefined) {
    // Report again from raw figures (several files' points are pooled per region count): no mesh is run.
    const files = values.from.split(",").map((f) => JSON.parse(readFileSync(f, "utf8")) as Raw);
    const all = files.flatMap((f) => f.points.filter((p) => p.convergence.every((r) => r.untilQuiet)));
    const counts = [...new Set(all.map((p) => p.regions))].sort((x, y) => x - y);
    const pooled = counts.map((n) => {
      const same = all.filter((p) => p.regions === n);
      // At rest: the median over the files of each kind's figure.
      const med = (f: (p: ScalePoint) => number) => quantiles(same.map(f)).median;
      const perKind = (f: (p: ScalePoint, k: Kind) => number) =>
        Object.fromEntries(KINDS.map((k) => [k, med((p) => f(p, k))])) as PerKind;
      const rest = {
        ...same[0]!.rest,
        load: med((p) => p.rest.load),
        cpuPct: perKind((p, k) => p.rest.cpuPct[k]),
        rssMiB: perKind((p, k) => p.rest.rssMiB[k]),
        benchCpuPct: med((p) => p.rest.benchCpuPct),
      };
      return {
        ...same[0]!,
        rest,
        lag: same.flatMap((p) => p.lag),
        convergence: same.flatMap((p) => p.convergence),
      };
    });
    const first = files[0]!.options;
    const runs = Math.max(...pooled.map((p) => p.convergence.length));
    process.stdout.write(
      `${report(pooled, { ...first, runs })}\n\n${modelLines(all, first.images).join("\n")}\n`,
    );
    return;
  }
  if (options.counts.some((n) => !Number.isInteger(n) || n < 2 || n > 26))
    throw new Error("--regions: counts between 2 and 26");
  const started = Date.now();
  const points: ScalePoint[] = [];
  for (const n of options.counts) points.push(await point(n, options));
  process.stdout.write(`${report(points, options)}\n`);
  if (points.length > 1) process.stdout.write(`\n${modelLines(points, options.images).join("\n")}\n`);
  const dir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `scale-${new Date().toISOString().replaceAll(":", "-")}.json`);
  writeFileSync(file, JSON.stringify({ options, points }, null, 2));
  say(`done in ${Math.round((Date.now() - started) / 1000)} s; raw figures: ${file}`);
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
