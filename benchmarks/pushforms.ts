/**
 * The push forms real clients use (issue 14, item 1), Meridian (filesystem
 * store, default settings: fsync on) against CNCF Distribution, side by side:
 *
 *   node dist/benchmarks/run.js --only pushforms [--runs N] [--quick] [--profile]
 *
 * Each round starts both registries fresh and runs every operation on both,
 * one registry right after the other (which goes first alternates from
 * operation to operation and from round to round), so the two figures of a
 * ratio were measured seconds apart on a machine whose load moves. A ratio is
 * the median of the per-round ratios, shown with its spread (min–max).
 *
 * | operation | requests |
 * |---|---|
 * | `post` | one `POST ?digest=` with the whole body (Distribution has no such form: it takes `post-put`) |
 * | `postPut` | empty `POST`, one `PUT ?digest=` with the whole body (docker, containerd) |
 * | `patches` | `POST`, 8 MiB `PATCH`es with `Content-Range`, empty `PUT ?digest=` |
 * | `streamed` | `POST`, one `PATCH` with the whole body, chunked transfer encoding, no `Content-Range` (containers/image: skopeo, podman), empty `PUT ?digest=` |
 * | `images` | 50 images × (config + 5 × 1 MiB): per blob `HEAD`, `POST`, `PUT ?digest=` with the body, 8 in flight; then each manifest `PUT` |
 * | `skopeoIn` / `skopeoOut` | `skopeo copy` of one image of 5 × 20 MiB layers from an OCI layout into the registry, and from it to a `dir:` |
 * | `floor` | `skopeo copy` of the same layout to a `dir:` (no registry): skopeo's own cost |
 * | `sink` | `postPut` against sink-server.ts (hashes and drops the body), right after `postPut`: the client's own limit then |
 *
 * CPU is utime+stime from /proc over each operation: the registry process
 * (Meridian: the node, and its nats-server separately) and this process (the
 * client); reported per MiB moved.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { writeImageLayout } from "../testing/oci-layout.js";
import { BenchClient, Limiter } from "./client.js";
import { GeneratedBlob, MiB } from "./data.js";
import { cpuSeconds } from "./proc.js";
import { startTarget, type Target, type TargetName, type TargetOptions } from "./servers.js";
import { cell, fmt, perRoundRatios, quantiles } from "./spread.js";
import { ImageData, type Sizes } from "./suites.js";

const execFileAsync = promisify(execFile);

/** The goals, as ratios Meridian / Distribution. */
export const PUSHFORM_GOALS = {
  /** 256 MiB POST + PUT: at least this many times Distribution's MiB/s. */
  postPutRate: 2,
  /** 50 images: at most this fraction of Distribution's time. */
  imagesTime: 0.4,
  /** skopeo copy in: at most this fraction of Distribution's time. */
  skopeoInTime: 0.8,
} as const;

export const OPS = ["post", "postPut", "patches", "streamed", "images", "skopeoIn", "skopeoOut"] as const;
export type OpName = (typeof OPS)[number];

export interface Op {
  ms: number;
  /** CPU seconds over the operation: the registry process, Meridian's nats-server, this process. */
  cpu: { server: number; nats?: number; client: number };
}

export type Round = Record<OpName, Op>;

export interface PushformsRaw {
  rounds: Record<TargetName, Round[]>;
  /** skopeo `oci:` → `dir:` of the same image, per round. */
  floorMs: number[];
  /** `postPut` of the big blob against sink-server.ts, per round (its CPU in `cpu.server`). */
  sink: Op[];
  mib: Record<OpName, number>;
}

export interface PushformsOptions {
  runs: number;
  sizes: Sizes;
  /** Layers of the skopeo image. */
  skopeoLayers: number[];
  targetOptions: TargetOptions;
  say: (msg: string) => void;
}

export const SKOPEO_FULL = [20, 20, 20, 20, 20].map((n) => n * MiB);
export const SKOPEO_QUICK = [4, 4, 4, 4, 4].map((n) => n * MiB);

interface Data {
  blobs: Record<"post" | "postPut" | "patches" | "streamed", GeneratedBlob>;
  images: ImageData;
  layout: string;
  policy: string;
  work: string;
}

async function measure(target: Target, work: () => Promise<unknown>): Promise<Op> {
  const s0 = cpuSeconds(target.pid);
  const n0 = target.natsPid === undefined ? 0 : cpuSeconds(target.natsPid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const ms = performance.now() - t0;
  const c1 = process.cpuUsage(c0);
  return {
    ms,
    cpu: {
      server: cpuSeconds(target.pid) - s0,
      ...(target.natsPid === undefined ? {} : { nats: cpuSeconds(target.natsPid) - n0 }),
      client: (c1.user + c1.system) / 1e6,
    },
  };
}

const REPO = "bench/forms";

function expectStatus(status: number, want: number, what: string, body = ""): void {
  if (status !== want) throw new Error(`${what}: HTTP ${status}, expected ${want} ${body.slice(0, 300)}`);
}

async function startSession(client: BenchClient): Promise<URL> {
  const res = await client.send("POST", `/v2/${REPO}/blobs/uploads/`, { headers: { "content-length": 0 } });
  expectStatus(res.status, 202, "upload start", res.body.toString());
  return client.url(String(res.headers.location));
}

async function finishEmpty(client: BenchClient, loc: URL, digest: string): Promise<void> {
  loc.searchParams.set("digest", digest);
  const res = await client.send("PUT", loc, { headers: { "content-length": 0 } });
  expectStatus(res.status, 201, "upload finish", res.body.toString());
}

/** POST, then one PATCH with the whole body streamed (chunked, no Content-Range), then an empty PUT. */
async function pushStreamed(client: BenchClient, blob: GeneratedBlob): Promise<void> {
  const loc = await startSession(client);
  const res = await client.send("PATCH", loc, {
    headers: { "content-type": "application/octet-stream", "transfer-encoding": "chunked" },
    body: blob.pieces(),
  });
  expectStatus(res.status, 202, "streamed PATCH", res.body.toString());
  await finishEmpty(client, client.url(String(res.headers.location)), blob.digest());
}

/**
 * Per blob HEAD, POST, PUT with the body, `inFlight` at a time; then each
 * image's manifest. The number of requests sent (the S3 benchmark's rates).
 */
export async function pushImages(client: BenchClient, data: ImageData, inFlight: number): Promise<number> {
  let requests = 0;
  const limit = new Limiter(inFlight);
  await Promise.all(
    data.images.map(async (img) => {
      await Promise.all(
        img.blobs.map((b) =>
          limit.run(async () => {
            requests++;
            const head = await client.send("HEAD", `/v2/${img.repo}/blobs/${b.desc.digest}`);
            if (head.status === 200) return;
            requests += 2;
            await client.pushMonolithic(img.repo, b.desc.digest, b.desc.size, b.bytes, b.desc.mediaType);
          }),
        ),
      );
      requests++;
      await limit.run(() => client.putManifest(img.repo, img.tag, img.manifest));
    }),
  );
  return requests;
}

async function skopeo(policy: string, args: string[]): Promise<void> {
  await execFileAsync("skopeo", ["--policy", policy, "copy", "--quiet", ...args], {
    maxBuffer: 1 << 20,
  });
}

function hostOf(target: Target): string {
  return new URL(target.url).host;
}

async function runOp(
  op: OpName,
  target: Target,
  client: BenchClient,
  data: Data,
  sizes: Sizes,
  round: number,
) {
  const out = join(data.work, `out-${target.name}-${round}`);
  try {
    return await measure(target, async () => {
      switch (op) {
        case "post":
        case "postPut": {
          const b = data.blobs[op];
          client.monolithic = op === "post" && target.name === "meridian" ? "post" : "post-put";
          await client.pushMonolithic(REPO, b.digest(), b.size, b.pieces());
          return;
        }
        case "patches":
          await client.pushChunked(REPO, data.blobs.patches, sizes.chunkBytes);
          return;
        case "streamed":
          await pushStreamed(client, data.blobs.streamed);
          return;
        case "images":
          client.monolithic = "post-put";
          await pushImages(client, data.images, sizes.inFlight);
          return;
        case "skopeoIn":
          await skopeo(data.policy, [
            "--dest-tls-verify=false",
            `oci:${data.layout}:v1`,
            `docker://${hostOf(target)}/bench/skopeo:v1`,
          ]);
          return;
        case "skopeoOut":
          await skopeo(data.policy, [
            "--src-tls-verify=false",
            `docker://${hostOf(target)}/bench/skopeo:v1`,
            `dir:${out}`,
          ]);
          return;
      }
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** `postPut` of `blob` against a fresh sink-server.ts process: the client's limit at this moment. */
async function sinkPush(blob: GeneratedBlob): Promise<Op> {
  const child = spawn(process.execPath, [join(REPO_ROOT, "dist", "benchmarks", "sink-server.js")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`sink server exited with ${code}`)));
      createInterface({ input: child.stdout! }).once("line", (line) => resolve(JSON.parse(line).port));
    });
    const target = { name: "meridian", url: `http://127.0.0.1:${port}`, pid: child.pid! } as Target;
    const client = new BenchClient(target.url, 2);
    client.monolithic = "post-put";
    try {
      return await measure(target, () =>
        client.pushMonolithic(REPO, blob.digest(), blob.size, blob.pieces()),
      );
    } finally {
      client.close();
    }
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

export async function pushformsSuite(options: PushformsOptions): Promise<PushformsRaw> {
  const { runs, sizes, say } = options;
  say("pushforms: preparing data");
  const work = mkdtempSync(join(tmpdir(), "meridian-bench-forms-"));
  try {
    const policy = join(work, "policy.json");
    writeFileSync(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
    const layout = join(work, "layout");
    writeImageLayout(layout, "v1", options.skopeoLayers);
    const data: Data = {
      blobs: {
        post: new GeneratedBlob(sizes.blobBytes, "bench-forms-post"),
        postPut: new GeneratedBlob(sizes.blobBytes, "bench-forms-post-put"),
        patches: new GeneratedBlob(sizes.blobBytes, "bench-forms-patches"),
        streamed: new GeneratedBlob(sizes.blobBytes, "bench-forms-streamed"),
      },
      images: new ImageData(sizes),
      layout,
      policy,
      work,
    };
    for (const b of Object.values(data.blobs)) b.digest();
    const blobMiB = sizes.blobBytes / MiB;
    const imagesMiB =
      data.images.images.reduce((n, img) => n + img.blobs.reduce((m, b) => m + b.desc.size, 0), 0) / MiB;
    // The layout's bytes: its layers (gzip of random bytes is a little larger) dominate.
    const skopeoMiB = options.skopeoLayers.reduce((a, b) => a + b, 0) / MiB;
    const raw: PushformsRaw = {
      rounds: { meridian: [], distribution: [] },
      floorMs: [],
      sink: [],
      mib: {
        post: blobMiB,
        postPut: blobMiB,
        patches: blobMiB,
        streamed: blobMiB,
        images: imagesMiB,
        skopeoIn: skopeoMiB,
        skopeoOut: skopeoMiB,
      },
    };

    for (let r = 0; r < runs; r++) {
      const targets: Target[] = [];
      const clients = new Map<TargetName, BenchClient>();
      try {
        for (const name of ["meridian", "distribution"] as const) {
          const t = await startTarget(name, options.targetOptions);
          targets.push(t);
          clients.set(name, new BenchClient(t.url, sizes.inFlight));
        }
        const figures: Record<TargetName, Partial<Round>> = { meridian: {}, distribution: {} };
        for (const [i, op] of OPS.entries()) {
          const order = (r + i) % 2 === 0 ? targets : [...targets].reverse();
          for (const t of order) {
            figures[t.name][op] = await runOp(op, t, clients.get(t.name)!, data, sizes, r);
          }
          // The client's own limit, right after the two figures it is held against.
          if (op === "postPut") raw.sink.push(await sinkPush(data.blobs.postPut));
          const m = figures.meridian[op]!;
          const d = figures.distribution[op]!;
          say(
            `pushforms: round ${r + 1}/${runs} ${op}: meridian ${(m.ms / 1000).toFixed(2)} s, ` +
              `distribution ${(d.ms / 1000).toFixed(2)} s (M/D time ${(m.ms / d.ms).toFixed(2)})`,
          );
        }
        const floorOut = join(work, `floor-${r}`);
        const t0 = performance.now();
        await skopeo(data.policy, [`oci:${data.layout}:v1`, `dir:${floorOut}`]);
        raw.floorMs.push(performance.now() - t0);
        rmSync(floorOut, { recursive: true, force: true });
        raw.rounds.meridian.push(figures.meridian as Round);
        raw.rounds.distribution.push(figures.distribution as Round);
      } finally {
        for (const c of clients.values()) c.close();
        await Promise.allSettled(targets.map((t) => t.stop()));
      }
    }
    return raw;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ report

const LABELS: Record<OpName, string> = {
  post: "push 256 MiB, one `POST ?digest=` (Distribution: POST + PUT)",
  postPut: "push 256 MiB, `POST` + one `PUT ?digest=` with the body",
  patches: "push 256 MiB, `POST` + 8 MiB `PATCH`es (Content-Range) + empty `PUT`",
  streamed: "push 256 MiB, `POST` + one streamed `PATCH` (no Content-Range) + empty `PUT`",
  images: "50 images × 5 × 1 MiB: `HEAD`, `POST`, `PUT` per blob, 8 in flight",
  skopeoIn: "skopeo copy 5 × 20 MiB `oci:` → registry",
  skopeoOut: "skopeo copy 5 × 20 MiB registry → `dir:`",
};

export function pushformsMarkdown(raw: PushformsRaw, sizes: Sizes, skopeoLayers: number[]): string {
  const m = raw.rounds.meridian;
  const d = raw.rounds.distribution;
  const blob = `${sizes.blobBytes / MiB} MiB`;
  const layers = `${skopeoLayers.length} × ${skopeoLayers[0]! / MiB} MiB`;
  const label = (op: OpName) =>
    LABELS[op]
      .replace("256 MiB", blob)
      .replace("5 × 20 MiB", layers)
      .replace(
        "50 images × 5 × 1 MiB",
        `${sizes.images} images × ${sizes.layersPerImage} × ${sizes.layerBytes / MiB} MiB`,
      );
  const goal: Partial<Record<OpName, { text: string; met: (time: number) => boolean }>> = {
    postPut: {
      text: `≥ ${PUSHFORM_GOALS.postPutRate}× MiB/s`,
      met: (t) => 1 / t >= PUSHFORM_GOALS.postPutRate,
    },
    images: { text: `≤ ${PUSHFORM_GOALS.imagesTime}× time`, met: (t) => t <= PUSHFORM_GOALS.imagesTime },
    skopeoIn: {
      text: `≤ ${PUSHFORM_GOALS.skopeoInTime}× time`,
      met: (t) => t <= PUSHFORM_GOALS.skopeoInTime,
    },
  };
  const lines = [
    "| operation | Meridian s | Distribution s | M / D time | M / D MiB/s | goal | met | server CPU ms/MiB M (node + nats) | D | M / D CPU |",
    "|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
  ];
  for (const op of OPS) {
    const mib = raw.mib[op];
    const mt = m.map((r) => r[op].ms / 1000);
    const dt = d.map((r) => r[op].ms / 1000);
    const timeRatios = perRoundRatios(mt, dt);
    const rateRatios = timeRatios.map((x) => 1 / x);
    const mCpu = m.map((r) => ((r[op].cpu.server + (r[op].cpu.nats ?? 0)) * 1000) / mib);
    const mNats = m.map((r) => ((r[op].cpu.nats ?? 0) * 1000) / mib);
    const dCpu = d.map((r) => (r[op].cpu.server * 1000) / mib);
    const g = goal[op];
    const median = timeRatios.length ? quantiles(timeRatios).median : Number.NaN;
    lines.push(
      `| ${label(op)} | ${cell(mt, "–")} | ${cell(dt, "–")} | ${cell(timeRatios, "–")} | ${cell(rateRatios, "–")} | ${g?.text ?? ""} | ` +
        `${g === undefined ? "" : g.met(median) ? "yes" : "**no**"} | ${cell(mCpu, "–")} (nats ${fmt(quantiles(mNats).median)}) | ${cell(dCpu, "–")} | ${cell(perRoundRatios(mCpu, dCpu), "–")} |`,
    );
  }
  const sinkS = raw.sink.map((o) => o.ms / 1000);
  const mPostPut = m.map((r) => r.postPut.ms / 1000);
  const dPostPut = d.map((r) => r.postPut.ms / 1000);
  const floor = raw.floorMs.map((x) => x / 1000);
  const dIn = d.map((r) => r.skopeoIn.ms / 1000);
  lines.push(
    "",
    `The client's own limit (\`POST\` + \`PUT\` of the ${blob} blob against sink-server.ts, which hashes and drops the body): ` +
      `${cell(sinkS, "–")} s, ${cell(
        sinkS.map((x) => raw.mib.postPut / x),
        "–",
      )} MiB/s, its CPU ${cell(
        raw.sink.map((o) => (o.cpu.server * 1000) / raw.mib.postPut),
        "–",
      )} ms/MiB; ` +
      `Distribution's POST + PUT takes ${cell(perRoundRatios(dPostPut, sinkS), "–")}× the sink's time, Meridian's ${cell(perRoundRatios(mPostPut, sinkS), "–")}× (per round). ` +
      `So Distribution's MiB/s × 2 is reachable only where Distribution is at least 2× the sink's time.`,
    "",
    `skopeo's own floor (\`oci:\` → \`dir:\` of the same image, no registry): ${cell(floor, "–")} s, ` +
      `${cell(perRoundRatios(floor, dIn), "–")}× Distribution's copy-in time, per round.`,
    "",
    "Times are medians (min–max) over rounds; ratios are medians of per-round ratios (min–max). " +
      "CPU: utime+stime of the registry process (Meridian: node + its nats-server; nats alone in parentheses) per MiB moved.",
  );
  return lines.join("\n");
}
