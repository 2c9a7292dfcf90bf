/**
 * The benchmarks (blob, small, auth, images, memory). Each takes a freshly
 * started registry and returns one run's figures; run.ts repeats them,
 * alternates the order of the registries and takes medians.
 */
import { createHash } from "node:crypto";
import { BenchClient, type Descriptor, Limiter, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "./client.js";
import { GeneratedBlob, MiB } from "./data.js";
import { type LoadResult, runLoadPoint, type Tool } from "./load.js";
import { measureCpu, memory, RssSampler } from "./proc.js";
import { basicAuthorization, type Target } from "./servers.js";

export interface Sizes {
  blobBytes: number;
  chunkBytes: number;
  smallDurationSec: number;
  warmupSec: number;
  concurrency: number[];
  /** Connections of the auth suite's load points. */
  authConcurrency: number[];
  /** The auth suite measures each variant of a point in this many slices, taking turns with the others. */
  authRounds: number;
  authSliceSec: number;
  images: number;
  layersPerImage: number;
  layerBytes: number;
  inFlight: number;
  memoryBytes: number;
}

export const FULL: Sizes = {
  blobBytes: 256 * MiB,
  chunkBytes: 8 * MiB,
  smallDurationSec: 5,
  warmupSec: 2,
  concurrency: [1, 16, 64],
  authConcurrency: [1, 16],
  authRounds: 3,
  authSliceSec: 2,
  images: 50,
  layersPerImage: 5,
  layerBytes: MiB,
  inFlight: 8,
  memoryBytes: 1024 * MiB,
};

export const QUICK: Sizes = {
  blobBytes: 32 * MiB,
  chunkBytes: 8 * MiB,
  smallDurationSec: 1,
  warmupSec: 1,
  concurrency: [1, 16, 64],
  authConcurrency: [16],
  authRounds: 1,
  authSliceSec: 1,
  images: 10,
  layersPerImage: 5,
  layerBytes: 256 * 1024,
  inFlight: 8,
  memoryBytes: 128 * MiB,
};

/** CPU seconds of the registry process, of Meridian's nats-server, and of this client process. */
export interface Cpu {
  server: number;
  nats?: number;
  client: number;
}

function pidsOf(target: Target) {
  return { server: target.pid, nats: target.natsPid };
}

function mibPerSec(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

async function timed<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const t0 = performance.now();
  const result = await work();
  return { result, ms: performance.now() - t0 };
}

async function timedCpu<T>(target: Target, work: () => Promise<T>): Promise<{ ms: number; cpu: Cpu }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const { cpu } = await measureCpu(pidsOf(target), work);
  const c1 = process.cpuUsage(c0);
  return {
    ms: performance.now() - t0,
    cpu: { server: cpu.server!, nats: cpu.nats, client: (c1.user + c1.system) / 1e6 },
  };
}

// ------------------------------------------------------------------ large blob

export interface BlobRun {
  monolithicMode: string;
  pushMonolithicMiBs: number;
  pushChunkedMiBs: number;
  pullMiBs: number;
  cpu: { pushMonolithic: Cpu; pushChunked: Cpu; pull: Cpu };
}

export class BlobData {
  readonly monolithic: GeneratedBlob;
  readonly chunked: GeneratedBlob;
  constructor(sizes: Sizes) {
    this.monolithic = new GeneratedBlob(sizes.blobBytes, "bench-blob-monolithic");
    this.chunked = new GeneratedBlob(sizes.blobBytes, "bench-blob-chunked");
    this.monolithic.digest();
    this.chunked.digest();
  }
}

export async function blobSuite(target: Target, sizes: Sizes, data: BlobData): Promise<BlobRun> {
  const client = new BenchClient(target.url, 2);
  try {
    const repo = "bench/big";
    const mode = await client.probeMonolithic(repo);
    const mono = data.monolithic;
    const pushMono = await timedCpu(target, () =>
      client.pushMonolithic(repo, mono.digest(), mono.size, mono.pieces()),
    );
    const pushChunked = await timedCpu(target, () =>
      client.pushChunked(repo, data.chunked, sizes.chunkBytes),
    );
    const pull = await timedCpu(target, () => client.pullBlobCurl(repo, mono.digest(), mono.size));
    return {
      monolithicMode: mode,
      pushMonolithicMiBs: mibPerSec(mono.size, pushMono.ms),
      pushChunkedMiBs: mibPerSec(data.chunked.size, pushChunked.ms),
      pullMiBs: mibPerSec(mono.size, pull.ms),
      cpu: { pushMonolithic: pushMono.cpu, pushChunked: pushChunked.cpu, pull: pull.cpu },
    };
  } finally {
    client.close();
  }
}

// ------------------------------------------------------------------ small requests

export interface SmallPoint {
  endpoint: string;
  concurrency: number;
  tool: Tool;
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU per request, µs (Meridian: the node process). */
  cpuUsPerReq: number;
  /** Meridian's nats-server CPU per request, µs. */
  natsCpuUsPerReq?: number;
  errors: number;
  raw: LoadResult;
}

const SMALL_REPO = "bench/small";
const TAGS = 10;

interface Endpoint {
  name: string;
  method: "GET" | "HEAD";
  path: string;
  headers: string[];
}

async function seedSmall(client: BenchClient): Promise<Endpoint[]> {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: {} }));
  const layer = new GeneratedBlob(4096, "bench-small-layer").bytes();
  const digest = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
  const configDesc = await client.pushMonolithic(
    SMALL_REPO,
    digest(config),
    config.length,
    config,
    OCI_CONFIG,
  );
  const layerDesc = await client.pushMonolithic(SMALL_REPO, digest(layer), layer.length, layer);
  const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDesc, layers: [layerDesc] };
  await client.putManifest(SMALL_REPO, "latest", manifest);
  for (let i = 1; i < TAGS; i++)
    await client.putManifest(SMALL_REPO, `t${String(i).padStart(2, "0")}`, manifest);
  const accept = [`Accept: ${OCI_MANIFEST}`];
  return [
    {
      name: "manifest GET (tag)",
      method: "GET",
      path: `/v2/${SMALL_REPO}/manifests/latest`,
      headers: accept,
    },
    {
      name: "manifest HEAD (tag)",
      method: "HEAD",
      path: `/v2/${SMALL_REPO}/manifests/latest`,
      headers: accept,
    },
    { name: "blob HEAD", method: "HEAD", path: `/v2/${SMALL_REPO}/blobs/${layerDesc.digest}`, headers: [] },
    { name: "tag list", method: "GET", path: `/v2/${SMALL_REPO}/tags/list`, headers: [] },
  ];
}

export async function smallSuite(
  target: Target,
  sizes: Sizes,
  options: { tool?: Tool; endpoints?: string[] } = {},
): Promise<SmallPoint[]> {
  const client = new BenchClient(target.url, 1);
  const points: SmallPoint[] = [];
  try {
    const endpoints = await seedSmall(client);
    for (const ep of endpoints) {
      const check = await checkEndpoint(client, target, ep);
      if (ep.name === "tag list" && (JSON.parse(check.toString()).tags?.length ?? 0) !== TAGS) {
        throw new Error(`${target.name} tag list: ${check.toString()}`);
      }
      points.push(
        ...(await loadEndpoint(target, ep, {
          warmupSec: sizes.warmupSec,
          durationSec: sizes.smallDurationSec,
          concurrency: sizes.concurrency,
          tool: options.tool,
        })),
      );
    }
    return points;
  } finally {
    client.close();
  }
}

const headerObject = (headers: string[]) =>
  Object.fromEntries(headers.map((h) => h.split(/:\s*/, 2) as [string, string]));

/** A wrong answer served fast is no result: check an endpoint once (200) before loading it; its body. */
async function checkEndpoint(client: BenchClient, target: Target, ep: Endpoint): Promise<Buffer> {
  const check = await client.send(ep.method, ep.path, { headers: headerObject(ep.headers), collect: true });
  if (check.status !== 200) {
    throw new Error(`${target.name} ${ep.name}: HTTP ${check.status} ${check.body.toString().slice(0, 300)}`);
  }
  return check.body;
}

/**
 * Warm an endpoint up at 16 connections for `warmupSec` (0: not), then
 * measure it for `durationSec` at each of `concurrency`.
 */
async function loadEndpoint(
  target: Target,
  ep: Endpoint,
  how: { warmupSec: number; durationSec: number; concurrency: number[]; tool: Tool | undefined },
): Promise<SmallPoint[]> {
  const points: SmallPoint[] = [];
  const tool: Tool = how.tool ?? (ep.method === "HEAD" ? "loadgen" : "wrk");
  const point = (connections: number, durationSec: number) =>
    runLoadPoint({
      url: `${target.url}${ep.path}`,
      method: ep.method,
      headers: ep.headers,
      connections,
      durationSec,
      tool,
    });
  if (how.warmupSec > 0) await point(16, how.warmupSec);
  for (const c of how.concurrency) {
    const { result, cpu } = await measureCpu(pidsOf(target), () => point(c, how.durationSec));
    const n = Math.max(1, result.requests);
    points.push({
      endpoint: ep.name,
      concurrency: c,
      tool,
      requests: result.requests,
      rps: result.requests / (result.duration_us / 1e6),
      p50Ms: result.p50_us / 1000,
      p99Ms: result.p99_us / 1000,
      cpuUsPerReq: (cpu.server! / n) * 1e6,
      natsCpuUsPerReq: cpu.nats === undefined ? undefined : (cpu.nats / n) * 1e6,
      errors:
        result.connect_errors +
        result.read_errors +
        result.write_errors +
        result.status_errors +
        result.timeouts,
      raw: result,
    });
  }
  return points;
}

// ------------------------------------------------------------------ authentication

/**
 * How a request proves who it is: not at all (authentication off), with a
 * bearer token fetched once (how docker, podman and skopeo talk to Meridian
 * after logging in), or with Basic credentials on every request (how they
 * talk to Distribution's htpasswd).
 */
export type Credential = "none" | "bearer" | "basic";

/** One variant at one load, over all its slices (see authSuite). */
export interface AuthPoint {
  endpoint: string;
  concurrency: number;
  tool: Tool;
  auth: "off" | "on";
  credential: Credential;
  requests: number;
  /** Requests over the slices' total time. */
  rps: number;
  /** Medians of the slices'. */
  p50Ms: number;
  p99Ms: number;
  /** Server CPU over the slices / requests, µs. */
  cpuUsPerReq: number;
  errors: number;
  slices: SmallPoint[];
}

/** The endpoints of the auth suite: a small manifest by tag, and a blob's HEAD. */
const AUTH_ENDPOINTS = ["manifest GET (tag)", "blob HEAD"];

/**
 * Small requests against two instances of one registry, started side by side:
 * `off` without authentication (requests carry no credentials) and `on` with
 * it (`on.credentials`): Meridian with a token from its `/auth/token` and with
 * Basic on every request, Distribution with Basic. For each endpoint and
 * connection count the variants take turns in `authRounds` slices of
 * `authSliceSec` each (the order reversed every other round, and in the
 * first with `reverse`), so that off and on see the same machine: on a
 * shared 2-core host the load drifts more in a minute than authentication
 * costs. A request to `on` without credentials must get 401 first, so a registry
 * that quietly ignores its auth settings is caught.
 */
export async function authSuite(
  off: Target,
  on: Target,
  sizes: Sizes,
  options: { tool?: Tool; reverse?: boolean } = {},
): Promise<AuthPoint[]> {
  if (on.credentials === undefined) throw new Error(`${on.name}: started without credentials`);
  const basic = basicAuthorization(on.credentials);
  const offClient = new BenchClient(off.url, 1);
  const onClient = new BenchClient(on.url, 1, { authorization: basic });
  const points: AuthPoint[] = [];
  try {
    const endpoints = (await seedSmall(offClient)).filter((ep) => AUTH_ENDPOINTS.includes(ep.name));
    await seedSmall(onClient);
    const anonymous = await offClient.send("GET", `${on.url}${endpoints[0]!.path}`, {
      headers: headerObject(endpoints[0]!.headers),
    });
    if (anonymous.status !== 401)
      throw new Error(`${on.name} with auth: HTTP ${anonymous.status} without credentials`);

    const variants: Array<{
      target: Target;
      client: BenchClient;
      credential: Credential;
      authorization?: string;
    }> = [{ target: off, client: offClient, credential: "none" }];
    if (on.name === "meridian") {
      const token = await fetchToken(onClient, SMALL_REPO);
      variants.push({ target: on, client: onClient, credential: "bearer", authorization: `Bearer ${token}` });
    }
    variants.push({ target: on, client: onClient, credential: "basic", authorization: basic });

    const withAuth = (ep: Endpoint, authorization: string | undefined): Endpoint =>
      authorization === undefined
        ? ep
        : { ...ep, headers: [...ep.headers, `Authorization: ${authorization}`] };

    // Every path is warmed up before any is measured: the first load on a fresh node runs
    // unoptimized code, and would otherwise fall on whichever variant is measured first.
    for (const ep of endpoints) {
      for (const v of variants) {
        const e = withAuth(ep, v.authorization);
        await checkEndpoint(v.client, v.target, e);
        await loadEndpoint(v.target, e, {
          warmupSec: sizes.warmupSec,
          durationSec: 0,
          concurrency: [],
          tool: options.tool,
        });
      }
    }
    for (const ep of endpoints) {
      for (const c of sizes.authConcurrency) {
        const slices = variants.map((): SmallPoint[] => []);
        for (let round = 0; round < sizes.authRounds; round++) {
          const order = variants.map((_, i) => i);
          if ((round % 2 === 1) !== (options.reverse === true)) order.reverse();
          for (const i of order) {
            const v = variants[i]!;
            const [p] = await loadEndpoint(v.target, withAuth(ep, v.authorization), {
              warmupSec: 0,
              durationSec: sizes.authSliceSec,
              concurrency: [c],
              tool: options.tool,
            });
            slices[i]!.push(p!);
          }
        }
        variants.forEach((v, i) => {
          points.push(combineSlices(slices[i]!, v.credential));
        });
      }
    }
    return points;
  } finally {
    offClient.close();
    onClient.close();
  }
}

function combineSlices(slices: SmallPoint[], credential: Credential): AuthPoint {
  const first = slices[0]!;
  const requests = slices.reduce((n, p) => n + p.requests, 0);
  const seconds = slices.reduce((n, p) => n + p.raw.duration_us / 1e6, 0);
  const cpuSec = slices.reduce((n, p) => n + (p.cpuUsPerReq / 1e6) * Math.max(1, p.requests), 0);
  const mid = (values: number[]) => values.sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)]!;
  return {
    endpoint: first.endpoint,
    concurrency: first.concurrency,
    tool: first.tool,
    auth: credential === "none" ? "off" : "on",
    credential,
    requests,
    rps: requests / seconds,
    p50Ms: mid(slices.map((p) => p.p50Ms)),
    p99Ms: mid(slices.map((p) => p.p99Ms)),
    cpuUsPerReq: (cpuSec / Math.max(1, requests)) * 1e6,
    errors: slices.reduce((n, p) => n + p.errors, 0),
    slices,
  };
}

/** A pull token for `repo` from Meridian's token endpoint, as `docker login` + pull get one. */
async function fetchToken(client: BenchClient, repo: string): Promise<string> {
  const query = new URLSearchParams({ service: "meridian", scope: `repository:${repo}:pull` });
  const res = await client.send("GET", `/auth/token?${query}`, { collect: true });
  if (res.status !== 200) throw new Error(`token: HTTP ${res.status} ${res.body.toString().slice(0, 300)}`);
  const { token } = JSON.parse(res.body.toString()) as { token?: string };
  if (typeof token !== "string" || token === "") throw new Error("token: no token in the answer");
  return token;
}

// ------------------------------------------------------------------ images

export interface ImagesRun {
  pushSec: number;
  pullSec: number;
  requests: { push: number; pull: number };
  cpu: { push: Cpu; pull: Cpu };
}

interface PreparedImage {
  repo: string;
  tag: string;
  blobs: Array<{ desc: Descriptor; bytes: Buffer }>;
  manifest: unknown;
}

export class ImageData {
  readonly images: PreparedImage[] = [];
  constructor(sizes: Sizes) {
    for (let i = 0; i < sizes.images; i++) {
      const blobs: PreparedImage["blobs"] = [];
      const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", image: i }));
      blobs.push({ desc: describe(config, OCI_CONFIG), bytes: config });
      for (let j = 0; j < sizes.layersPerImage; j++) {
        const bytes = new GeneratedBlob(sizes.layerBytes, `bench-image-${i}-layer-${j}`).bytes();
        blobs.push({ desc: describe(bytes, OCI_LAYER), bytes });
      }
      const manifest = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: blobs[0]!.desc,
        layers: blobs.slice(1).map((b) => b.desc),
      };
      this.images.push({ repo: `bench/app-${i % 10}`, tag: `v${i}`, blobs, manifest });
    }
  }
}

function describe(bytes: Buffer, mediaType: string): Descriptor {
  return {
    mediaType,
    digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    size: bytes.length,
  };
}

export async function imagesSuite(target: Target, sizes: Sizes, data: ImageData): Promise<ImagesRun> {
  const client = new BenchClient(target.url, sizes.inFlight);
  try {
    await client.probeMonolithic("bench/probe");
    let pushRequests = 0;
    const pushLimit = new Limiter(sizes.inFlight);
    const push = await timedCpu(target, () =>
      Promise.all(
        data.images.map(async (img) => {
          await Promise.all(
            img.blobs.map((b) =>
              pushLimit.run(() => {
                pushRequests += client.monolithic === "post" ? 1 : 2;
                return client.pushMonolithic(img.repo, b.desc.digest, b.desc.size, b.bytes, b.desc.mediaType);
              }),
            ),
          );
          pushRequests++;
          await pushLimit.run(() => client.putManifest(img.repo, img.tag, img.manifest));
        }),
      ),
    );
    let pullRequests = 0;
    const pullLimit = new Limiter(sizes.inFlight);
    const pull = await timedCpu(target, () =>
      Promise.all(
        data.images.map(async (img) => {
          pullRequests++;
          const { manifest } = await pullLimit.run(() => client.getManifest(img.repo, img.tag));
          await Promise.all(
            [manifest.config, ...manifest.layers].map((d) =>
              pullLimit.run(() => {
                pullRequests++;
                return client.pullBlob(img.repo, d.digest, d.size);
              }),
            ),
          );
        }),
      ),
    );
    return {
      pushSec: push.ms / 1000,
      pullSec: pull.ms / 1000,
      requests: { push: pushRequests, pull: pullRequests },
      cpu: { push: push.cpu, pull: pull.cpu },
    };
  } finally {
    client.close();
  }
}

// ------------------------------------------------------------------ memory

export interface MemoryRun {
  baselineMiB: number;
  peakPushMiB: number;
  peakPullMiB: number;
  hwmMiB: number;
  natsPeakMiB?: number;
  pushMiBs: number;
  pullMiBs: number;
}

export async function memorySuite(target: Target, blob: GeneratedBlob): Promise<MemoryRun> {
  const client = new BenchClient(target.url, 1);
  try {
    const repo = "bench/memory";
    await client.probeMonolithic(repo);
    const baselineMiB = memory(target.pid).rssMiB;
    const nats = target.natsPid === undefined ? undefined : new RssSampler(target.natsPid, 100);
    let sampler = new RssSampler(target.pid, 20);
    const push = await timed(() => client.pushMonolithic(repo, blob.digest(), blob.size, blob.pieces()));
    const peakPushMiB = sampler.stop();
    sampler = new RssSampler(target.pid, 20);
    const pull = await timed(() => client.pullBlob(repo, blob.digest(), blob.size));
    const peakPullMiB = sampler.stop();
    return {
      baselineMiB,
      peakPushMiB,
      peakPullMiB,
      hwmMiB: memory(target.pid).hwmMiB,
      natsPeakMiB: nats?.stop(),
      pushMiBs: mibPerSec(blob.size, push.ms),
      pullMiBs: mibPerSec(blob.size, pull.ms),
    };
  } finally {
    client.close();
  }
}
