/**
 * The replication benchmark: a fresh local three-region mesh (`meridian up`,
 * testing/mesh.ts, default settings so storage.fsync is on), images pushed into
 * region a, and the time until each is pullable at b and at c.
 *
 * Per run (fresh repositories and fresh, never-seen content, so no copy is
 * skipped; the mesh is reused across runs):
 *
 * 1. Small images: `images` × (config + one `layerBytes` layer), pushed into a
 *    at a steady rate (one started every `intervalMs`): both blobs
 *    monolithically and concurrently, then the manifest PUT by tag; push time =
 *    wall time from the first blob request to the manifest's 201. From that
 *    201, `HEAD /v2/<repo>/manifests/<tag>` is polled at every other region
 *    every `pollMs` until 200 with the pushed digest; lag = that interval.
 * 2. One big image (config + one `bigBytes` layer, monolithic): push time, lag
 *    at b and c from the manifest's 201 as above, the time from the start of
 *    the layer push to pullable, and the effective replication throughput =
 *    bigBytes / (pullable − the layer's 201), since a destination starts
 *    copying when the layer's blob.pushed event arrives.
 * 3. The reference: `bigBytes` over a TLS stream on loopback with the mesh's
 *    own mutual TLS (stream-server.ts --tls in its own process, serving with
 *    a's certificate; a node:https client presenting b's that discards the
 *    bytes), once alone and once as two concurrent streams (replication
 *    copies to b and c at the same time), with the CPU per MiB of both ends;
 *    and the same over plain node:http (the figure before issue 14).
 *
 * The workers' own meridian_replication_lag_seconds histograms (src="a") are
 * scraped before and after each phase and their deltas kept.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { get, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { type After, REPO_ROOT } from "../testing/harness.js";
import { type RegionInfo, type RunningMesh, startMesh } from "../testing/mesh.js";
import { BenchClient, type Descriptor, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "./client.js";
import { GeneratedBlob, MiB } from "./data.js";
import { cpuSeconds } from "./proc.js";

export interface ReplicationSizes {
  images: number;
  layerBytes: number;
  intervalMs: number;
  pollMs: number;
  bigBytes: number;
}

export const REPLICATION_FULL: ReplicationSizes = {
  images: 5,
  layerBytes: MiB,
  intervalMs: 500,
  pollMs: 5,
  bigBytes: 256 * MiB,
};

export const REPLICATION_QUICK: ReplicationSizes = { ...REPLICATION_FULL, bigBytes: 32 * MiB };

const SOURCE = "a";
const SMALL_TIMEOUT_MS = 60_000;
const BIG_TIMEOUT_MS = 180_000;

/** Deltas of a worker's lag histogram (src = the source region) over one phase. */
export interface HistogramDelta {
  count: number;
  sumSec: number;
  /** Cumulative counts per upper bound (seconds; "+Inf" as Infinity is written as null in JSON). */
  buckets: Array<{ le: number; count: number }>;
}

export interface SmallImage {
  repo: string;
  tag: string;
  pushMs: number;
  lagMs: Record<string, number>;
}

export interface BigImage {
  bytes: number;
  configPushMs: number;
  layerPushMs: number;
  manifestPushMs: number;
  /** Config, layer and manifest, wall time. */
  pushMs: number;
  /** Manifest 201 at a → pullable, per destination. */
  lagMs: Record<string, number>;
  /** Start of the layer push at a → pullable. */
  fromLayerStartMs: Record<string, number>;
  /** The layer's 201 at a → pullable. */
  fromLayer201Ms: Record<string, number>;
  /** bytes / fromLayer201Ms. */
  replicationMiBs: Record<string, number>;
  /**
   * From the destination worker's meridian_replication_bytes_total (src a),
   * sampled every 100 ms: ms after the layer's 201 when the first byte and
   * the last byte had arrived (NaN if not seen before pullable).
   */
  copy: Record<string, { firstByteMs: number; lastByteMs: number }>;
  /** CPU seconds per process (region.role) from the layer push's start to pullable everywhere. */
  cpu: Record<string, number>;
  /** Length of that CPU window, s. */
  cpuWindowSec?: number;
  /**
   * CPU seconds per second of each process just before, over REST_WINDOW_MS
   * with the same probing as the phase (the byte sampler, the HEAD pollers at
   * every destination) and nothing to copy: what the window costs anyway.
   */
  restCpuPerSec?: Record<string, number>;
  wallSec: number;
}

export interface StreamReference {
  bytes: number;
  /** One stream alone. */
  singleMiBs: number;
  /** Two concurrent streams: MiB/s of each (the slower), and both together. */
  pairEachMiBs: number;
  pairTotalMiBs: number;
}

/** The TLS reference: as StreamReference, and the CPU of each end per MiB of the single stream. */
export interface TlsStreamReference extends StreamReference {
  /** CPU ms per MiB of the sending process (stream-server.ts --tls). */
  serverCpuMsPerMiB: number;
  /** CPU ms per MiB of the receiving process (this one, discarding the bytes). */
  clientCpuMsPerMiB: number;
}

export interface ReplicationRun {
  images: SmallImage[];
  big: BigImage;
  /** Plain node:http (the reference before issue 14). */
  stream: StreamReference;
  /** The mesh's mutual TLS (issue 14's reference; optional in results from before it). */
  tls?: TlsStreamReference;
  worker: Record<string, { small: HistogramDelta; big: HistogramDelta }>;
}

export interface ReplicationResults {
  runs: ReplicationRun[];
  sizes: ReplicationSizes;
  mesh: { regions: Record<string, { registry: string; pids: Record<string, number> }>; fsync: boolean };
  /** Where the worker and node logs of the mesh were copied. */
  logsDir?: string;
}

export interface ReplicationOptions {
  runs: number;
  /** The mesh's regions, the source first (default a, b, c: two destinations copy at once). */
  regions?: string[];
  sizes: ReplicationSizes;
  fsync: boolean;
  /** Run every mesh process with --cpu-prof into this directory. */
  cpuProfDir?: string;
  /** Copy the mesh's logs here before the mesh is removed. */
  logsDir?: string;
  say: (msg: string) => void;
}

// -------------------------------------------------------------- cleanup

const hooks: Array<() => Promise<void> | void> = [];

/** Run the registered cleanups, last first (also called from run.ts on a signal). */
export async function stopReplication(): Promise<void> {
  let first: unknown;
  while (hooks.length > 0) {
    const hook = hooks.pop()!;
    try {
      await hook();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}

const after: After = (fn) => {
  hooks.push(fn);
};

// -------------------------------------------------------------- the suite

export async function replicationSuite(options: ReplicationOptions): Promise<ReplicationResults> {
  const { sizes, say } = options;
  try {
    const mesh = await startBenchMesh(options);
    const regions = mesh.regions;
    const src = regions.get(SOURCE)!;
    const dsts = [...regions.keys()].filter((r) => r !== SOURCE);
    const push = new BenchClient(src.registry, 4);
    after(() => push.close());
    const pollers = new Map(dsts.map((d) => [d, new BenchClient(regions.get(d)!.registry, 16)]));
    after(() => {
      for (const p of pollers.values()) p.close();
    });
    const streamServer = await startStreamServer([]);
    const certs = join(mesh.dataDir, "certs");
    const tlsServer = await startStreamServer(["--tls", certs, "--name", SOURCE]);
    const tlsClient = {
      ca: readFileSync(join(certs, "ca.crt")),
      cert: readFileSync(join(certs, `${dsts[0]}.crt`)),
      key: readFileSync(join(certs, `${dsts[0]}.key`)),
    };

    // Warm-up: every worker connected and replicating before anything is timed.
    const nonce = randomBytes(4).toString("hex");
    await push.probeMonolithic(`warmup/${nonce}`);
    const warm = smallImage(`warmup/${nonce}`, "v0", sizes.layerBytes, `warmup-${nonce}`);
    await pushImage(push, warm);
    const warmDigest = await push.putManifest(warm.repo, warm.tag, warm.manifest);
    const t0 = performance.now();
    await Promise.all(
      dsts.map((d) =>
        pollPullable(pollers.get(d)!, warm.repo, warm.tag, warmDigest, t0, 20, SMALL_TIMEOUT_MS),
      ),
    );
    say(`replication: mesh warm (${Math.round(performance.now() - t0)} ms to replicate the first image)`);

    const runs: ReplicationRun[] = [];
    for (let run = 1; run <= options.runs; run++) {
      const id = `${nonce}-${run}`;
      const worker: ReplicationRun["worker"] = {};
      const h0 = await scrapeAll(regions, dsts);
      const images = await smallPhase(push, pollers, sizes, id);
      await sleep(250);
      const h1 = await scrapeAll(regions, dsts);
      say(
        `replication: run ${run}/${options.runs}: small images pushed in ` +
          images.map((i) => Math.round(i.pushMs)).join("/") +
          " ms; lag " +
          dsts.map((d) => `${d} ${images.map((i) => Math.round(i.lagMs[d]!)).join("/")}`).join(", ") +
          " ms",
      );
      const big = await bigPhase(push, pollers, regions, sizes, id, say);
      await sleep(250);
      const h2 = await scrapeAll(regions, dsts);
      for (const d of dsts)
        worker[d] = { small: delta(h0.get(d)!, h1.get(d)!), big: delta(h1.get(d)!, h2.get(d)!) };
      say(
        `replication: run ${run}/${options.runs}: ${sizes.bigBytes / MiB} MiB image pushed in ${Math.round(big.pushMs)} ms; ` +
          dsts
            .map(
              (d) =>
                `${d}: lag ${Math.round(big.lagMs[d]!)} ms, ${Math.round(big.fromLayerStartMs[d]!)} ms from the layer push, ${Math.round(big.replicationMiBs[d]!)} MiB/s (bytes from ${Math.round(big.copy[d]!.firstByteMs)} to ${Math.round(big.copy[d]!.lastByteMs)} ms after the layer's 201)`,
            )
            .join("; "),
      );
      const tls = await tlsReference(tlsServer, tlsClient, sizes.bigBytes);
      const stream = await streamReference((size) => streamOnce(streamServer.port, size), sizes.bigBytes);
      say(
        `replication: run ${run}/${options.runs}: TLS stream ${Math.round(tls.singleMiBs)} MiB/s ` +
          `(two at once: ${Math.round(tls.pairEachMiBs)} MiB/s each; CPU ms/MiB sender ` +
          `${tls.serverCpuMsPerMiB.toFixed(2)}, receiver ${tls.clientCpuMsPerMiB.toFixed(2)}); ` +
          `plain stream ${Math.round(stream.singleMiBs)} MiB/s (two at once: ${Math.round(stream.pairEachMiBs)} MiB/s each)`,
      );
      runs.push({ images, big, stream, tls, worker });
    }
    const results: ReplicationResults = {
      runs,
      sizes,
      mesh: {
        regions: Object.fromEntries(
          [...regions].map(([name, r]) => [name, { registry: r.registry, pids: r.pids }]),
        ),
        fsync: options.fsync,
      },
    };
    if (options.logsDir) {
      copyLogs(mesh, options.logsDir);
      results.logsDir = options.logsDir;
    }
    return results;
  } finally {
    await stopReplication();
  }
}

async function startBenchMesh(options: ReplicationOptions): Promise<RunningMesh> {
  // startMesh passes this process's environment on to `meridian up` and its children.
  const saved = {
    fsync: process.env.MERIDIAN_STORAGE_FSYNC,
    nodeOptions: process.env.NODE_OPTIONS,
    profileDir: process.env.MERIDIAN_BENCH_PROFILE_DIR,
  };
  if (!options.fsync) process.env.MERIDIAN_STORAGE_FSYNC = "false";
  else delete process.env.MERIDIAN_STORAGE_FSYNC;
  if (options.cpuProfDir) {
    // Node refuses --cpu-prof in NODE_OPTIONS: a preload starts the profiler instead.
    mkdirSync(options.cpuProfDir, { recursive: true });
    const preload = pathToFileURL(join(REPO_ROOT, "dist", "benchmarks", "cpu-prof-preload.js")).href;
    process.env.NODE_OPTIONS = `${saved.nodeOptions ?? ""} --import=${preload}`.trim();
    process.env.MERIDIAN_BENCH_PROFILE_DIR = options.cpuProfDir;
  }
  try {
    const regions = options.regions ?? ["a", "b", "c"];
    options.say(`replication: starting a mesh of ${regions.join(", ")}`);
    return await startMesh(after, regions);
  } finally {
    restoreEnv("MERIDIAN_STORAGE_FSYNC", saved.fsync);
    restoreEnv("NODE_OPTIONS", saved.nodeOptions);
    restoreEnv("MERIDIAN_BENCH_PROFILE_DIR", saved.profileDir);
  }
}

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

function copyLogs(mesh: RunningMesh, dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const region of mesh.regions.keys()) {
    for (const role of ["node", "peer", "worker"]) {
      const file = join(mesh.dataDir, region, `${role}.log`);
      if (existsSync(file) && statSync(file).size > 0) copyFileSync(file, join(dir, `${region}-${role}.log`));
    }
  }
}

// -------------------------------------------------------------- images

interface Image {
  repo: string;
  tag: string;
  config: { desc: Descriptor; bytes: Buffer };
  layer: { desc: Descriptor; blob: GeneratedBlob };
  manifest: unknown;
}

function smallImage(repo: string, tag: string, layerBytes: number, seed: string): Image {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", seed }));
  const blob = new GeneratedBlob(layerBytes, `repl-layer-${seed}`);
  const configDesc: Descriptor = {
    mediaType: OCI_CONFIG,
    digest: `sha256:${createHash("sha256").update(config).digest("hex")}`,
    size: config.length,
  };
  const layerDesc: Descriptor = { mediaType: OCI_LAYER, digest: blob.digest(), size: blob.size };
  return {
    repo,
    tag,
    config: { desc: configDesc, bytes: config },
    layer: { desc: layerDesc, blob },
    manifest: { schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers: [layerDesc] },
  };
}

function pushConfig(client: BenchClient, img: Image): Promise<Descriptor> {
  const { desc, bytes } = img.config;
  return client.pushMonolithic(img.repo, desc.digest, desc.size, bytes, desc.mediaType);
}

function pushLayer(client: BenchClient, img: Image): Promise<Descriptor> {
  const { desc, blob } = img.layer;
  return client.pushMonolithic(img.repo, desc.digest, desc.size, blob.pieces());
}

/** Both blobs at once (as docker and crane do). */
async function pushImage(client: BenchClient, img: Image): Promise<void> {
  await Promise.all([pushConfig(client, img), pushLayer(client, img)]);
}

/**
 * Poll `HEAD` of the manifest by tag every `everyMs` (start to start) until 200
 * with `digest`; the time from `t0` to the answer that saw it, ms.
 */
async function pollPullable(
  client: BenchClient,
  repo: string,
  tag: string,
  digest: string,
  t0: number,
  everyMs: number,
  timeoutMs: number,
): Promise<number> {
  for (;;) {
    const started = performance.now();
    // only-if-cached: replicated here, not fetched on miss from the region pushed to.
    const res = await client.send("HEAD", `/v2/${repo}/manifests/${tag}`, {
      headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
    });
    const now = performance.now();
    if (res.status === 200 && res.headers["docker-content-digest"] === digest) return now - t0;
    if (res.status !== 200 && res.status !== 404)
      throw new Error(`manifest HEAD ${client.base}: ${res.status}`);
    if (now - t0 > timeoutMs)
      throw new Error(`${repo}:${tag} not pullable at ${client.base} within ${timeoutMs} ms`);
    const wait = everyMs - (now - started);
    if (wait > 0) await sleep(wait);
  }
}

async function smallPhase(
  push: BenchClient,
  pollers: Map<string, BenchClient>,
  sizes: ReplicationSizes,
  id: string,
): Promise<SmallImage[]> {
  const images = Array.from({ length: sizes.images }, (_, i) =>
    smallImage(`repl/small-${id}-${i}`, `v${i}`, sizes.layerBytes, `small-${id}-${i}`),
  );
  const results: SmallImage[] = [];
  const polls: Promise<void>[] = [];
  const start = performance.now();
  for (const [i, img] of images.entries()) {
    const due = start + i * sizes.intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const t0 = performance.now();
    await pushImage(push, img);
    const digest = await push.putManifest(img.repo, img.tag, img.manifest);
    const t201 = performance.now();
    const result: SmallImage = { repo: img.repo, tag: img.tag, pushMs: t201 - t0, lagMs: {} };
    results.push(result);
    for (const [d, poller] of pollers) {
      polls.push(
        pollPullable(poller, img.repo, img.tag, digest, t201, sizes.pollMs, SMALL_TIMEOUT_MS).then((ms) => {
          result.lagMs[d] = ms;
        }),
      );
    }
  }
  await Promise.all(polls);
  return results;
}

async function bigPhase(
  push: BenchClient,
  pollers: Map<string, BenchClient>,
  regions: Map<string, RegionInfo>,
  sizes: ReplicationSizes,
  id: string,
  say: (msg: string) => void,
): Promise<BigImage> {
  say(`replication: preparing the ${sizes.bigBytes / MiB} MiB layer`);
  const img = smallImage(`repl/big-${id}`, "v1", sizes.bigBytes, `big-${id}`);
  const pids: Record<string, number> = {};
  for (const [name, r] of regions)
    for (const [role, pid] of Object.entries(r.pids)) pids[`${name}.${role}`] = pid;
  const restCpuPerSec = await restRates(pids, regions, pollers, sizes);
  const bytes0 = await bytesCopied(regions, [...pollers.keys()]);
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const tStart = performance.now();
  await pushConfig(push, img);
  const tLayer = performance.now();
  await pushLayer(push, img);
  const tLayer201 = performance.now();
  const digest = await push.putManifest(img.repo, img.tag, img.manifest);
  const t201 = performance.now();
  const pullable: Record<string, number> = {};
  const dstNames = [...pollers.keys()];
  const sampling = sampleBytes(regions, dstNames, bytes0, sizes.bigBytes, tLayer201);
  await Promise.all(
    [...pollers].map(async ([d, poller]) => {
      const lag = await pollPullable(poller, img.repo, img.tag, digest, t201, sizes.pollMs, BIG_TIMEOUT_MS);
      pullable[d] = t201 + lag;
    }),
  );
  const cpu: Record<string, number> = {};
  for (const [k, pid] of Object.entries(pids)) cpu[k] = cpuSeconds(pid) - cpu0[k]!;
  const cpuWindowSec = (performance.now() - tStart) / 1000;
  const copy = await sampling.stop();
  const per = (f: (at: number) => number) =>
    Object.fromEntries(Object.entries(pullable).map(([d, at]) => [d, f(at)]));
  return {
    bytes: sizes.bigBytes,
    configPushMs: tLayer - tStart,
    layerPushMs: tLayer201 - tLayer,
    manifestPushMs: t201 - tLayer201,
    pushMs: t201 - tStart,
    lagMs: per((at) => at - t201),
    fromLayerStartMs: per((at) => at - tLayer),
    fromLayer201Ms: per((at) => at - tLayer201),
    replicationMiBs: per((at) => sizes.bigBytes / MiB / ((at - tLayer201) / 1000)),
    copy,
    cpu,
    cpuWindowSec,
    restCpuPerSec,
    wallSec: (Math.max(...Object.values(pullable)) - tStart) / 1000,
  };
}

const REST_WINDOW_MS = 2_000;

/**
 * CPU s per s of every process over REST_WINDOW_MS while the phase's probes
 * run (the byte sampler; HEAD of a tag that does not exist at every
 * destination, every pollMs) and nothing is copied.
 */
async function restRates(
  pids: Record<string, number>,
  regions: Map<string, RegionInfo>,
  pollers: Map<string, BenchClient>,
  sizes: ReplicationSizes,
): Promise<Record<string, number>> {
  const dsts = [...pollers.keys()];
  const sampling = sampleBytes(regions, dsts, await bytesCopied(regions, dsts), Number.POSITIVE_INFINITY, 0);
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const t0 = performance.now();
  await Promise.all(
    [...pollers.values()].map((p) =>
      pollPullable(p, "repl/absent", "none", "sha256:none", t0, sizes.pollMs, REST_WINDOW_MS).catch(() => 0),
    ),
  );
  const sec = (performance.now() - t0) / 1000;
  await sampling.stop();
  return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (cpuSeconds(pid) - cpu0[k]!) / sec]));
}

/** meridian_replication_bytes_total{src=a} of each destination's worker. */
async function bytesCopied(
  regions: Map<string, RegionInfo>,
  dsts: string[],
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await Promise.all(
    dsts.map(async (d) => {
      const url = regions.get(d)!.metrics?.worker;
      if (!url) return;
      const text = await (await fetch(new URL("/metrics", url))).text();
      for (const line of text.split("\n")) {
        const m = /^meridian_replication_bytes_total\{([^}]*)\} (\S+)$/.exec(line);
        if (m && /src="a"/.test(m[1]!)) out[d] = Number(m[2]);
      }
      out[d] ??= 0;
    }),
  );
  return out;
}

/** Sample the copied bytes every 100 ms until stopped: when the first and the last byte of `size` arrived. */
function sampleBytes(
  regions: Map<string, RegionInfo>,
  dsts: string[],
  base: Record<string, number>,
  size: number,
  t0: number,
): { stop(): Promise<BigImage["copy"]> } {
  const out: BigImage["copy"] = Object.fromEntries(
    dsts.map((d) => [d, { firstByteMs: Number.NaN, lastByteMs: Number.NaN }]),
  );
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const now = await bytesCopied(regions, dsts).catch(() => ({}) as Record<string, number>);
      const at = performance.now() - t0;
      for (const d of dsts) {
        const n = (now[d] ?? 0) - (base[d] ?? 0);
        if (n > 0 && Number.isNaN(out[d]!.firstByteMs)) out[d]!.firstByteMs = at;
        if (n >= size && Number.isNaN(out[d]!.lastByteMs)) out[d]!.lastByteMs = at;
      }
      const wait = 100 - (performance.now() - started);
      if (wait > 0) await sleep(wait);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return out;
    },
  };
}

// -------------------------------------------------------------- plain stream

async function startStreamServer(args: string[]): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, "dist", "benchmarks", "stream-server.js"), ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`stream server exited with ${code}`)));
    createInterface({ input: child.stdout! }).once("line", (line) => resolve(JSON.parse(line).port));
  });
  return { port, child };
}

/** GET `size` bytes from the stream server (over TLS with `tls`), discarding them; MiB/s. */
function streamOnce(
  port: number,
  size: number,
  tls?: { ca: Buffer; cert: Buffer; key: Buffer },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const target = { host: "127.0.0.1", port, path: `/?size=${size}`, agent: false } as const;
    const onResponse = (res: IncomingMessage) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.on("error", reject);
      res.on("end", () => {
        if (bytes !== size) reject(new Error(`plain stream: ${bytes} bytes, expected ${size}`));
        else resolve(size / MiB / ((performance.now() - t0) / 1000));
      });
    };
    const req =
      tls === undefined
        ? get(target, onResponse)
        : httpsGet({ ...target, ...tls, servername: "localhost" }, onResponse);
    req.on("error", reject);
  });
}

async function streamReference(
  once: (size: number) => Promise<number>,
  size: number,
): Promise<StreamReference> {
  await once(Math.min(size, 16 * MiB)); // warm-up
  const singleMiBs = await once(size);
  const t0 = performance.now();
  const pair = await Promise.all([once(size), once(size)]);
  const pairTotalMiBs = (2 * size) / MiB / ((performance.now() - t0) / 1000);
  return { bytes: size, singleMiBs, pairEachMiBs: Math.min(...pair), pairTotalMiBs };
}

/** The TLS reference, and the CPU per MiB of both ends over one stream alone. */
async function tlsReference(
  server: { port: number; child: ChildProcess },
  tls: { ca: Buffer; cert: Buffer; key: Buffer },
  size: number,
): Promise<TlsStreamReference> {
  const once = (n: number) => streamOnce(server.port, n, tls);
  await once(Math.min(size, 16 * MiB)); // warm-up
  const server0 = cpuSeconds(server.child.pid!);
  const client0 = process.cpuUsage();
  await once(size);
  const client = process.cpuUsage(client0);
  const serverSec = cpuSeconds(server.child.pid!) - server0;
  const ref = await streamReference(once, size);
  return {
    ...ref,
    serverCpuMsPerMiB: (serverSec * 1000) / (size / MiB),
    clientCpuMsPerMiB: (client.user + client.system) / 1000 / (size / MiB),
  };
}

// -------------------------------------------------------------- worker metrics

type Histogram = Map<number, number> & { sum?: number; count?: number };

async function scrapeAll(regions: Map<string, RegionInfo>, dsts: string[]): Promise<Map<string, Histogram>> {
  const out = new Map<string, Histogram>();
  for (const d of dsts) {
    const url = regions.get(d)!.metrics?.worker;
    out.set(d, url ? await scrapeLag(url, SOURCE) : new Map());
  }
  return out;
}

/** The meridian_replication_lag_seconds histogram of src = `source` from a worker's /metrics. */
async function scrapeLag(base: string, source: string): Promise<Histogram> {
  const res = await fetch(new URL("/metrics", base));
  const text = await res.text();
  const h: Histogram = new Map();
  for (const line of text.split("\n")) {
    const m = /^meridian_replication_lag_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.src !== source) continue;
    const value = Number(m[3]);
    if (m[1] === "bucket") h.set(labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(labels.le), value);
    else if (m[1] === "sum") h.sum = value;
    else h.count = value;
  }
  return h;
}

function delta(before: Histogram, after: Histogram): HistogramDelta {
  return {
    count: (after.count ?? 0) - (before.count ?? 0),
    sumSec: (after.sum ?? 0) - (before.sum ?? 0),
    buckets: [...after]
      .sort((x, y) => x[0] - y[0])
      .map(([le, n]) => ({ le, count: n - (before.get(le) ?? 0) })),
  };
}

/** The upper bound of the bucket holding quantile `q` (seconds), from a histogram delta. */
export function bucketQuantile(h: HistogramDelta, q: number): number {
  if (h.count <= 0) return Number.NaN;
  const rank = Math.ceil(q * h.count);
  for (const b of h.buckets) if (b.count >= rank) return b.le;
  return Number.NaN;
}

/** Nearest-rank percentile. */
export function percentile(values: number[], p: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))]!;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
