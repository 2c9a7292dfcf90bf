/**
 * CPU per pushed blob, Meridian and CNCF Distribution against the floor of
 * Node's HTTP itself (floor-server.ts), for the request pattern of the 50-image push
 * (pushforms.ts `images`): per blob `HEAD` (a miss), empty `POST`, `PUT
 * ?digest=` with the body, 8 blobs in flight. Every target is started fresh
 * for each measurement, the order rotates from round to round, and the figure
 * is the server process's utime+stime from /proc over the push, per blob
 * (Meridian: its node; its nats-server separately). Two sizes: the images'
 * blobs (50 × config + 5 × 1 MiB: bytes and requests) and 1 KiB blobs (the
 * fixed cost of the three requests).
 *
 *   node dist/benchmarks/perblob.js [--runs 3] [--small 1500] [--targets meridian,distribution,http,fastify,http-store,fastify-store]
 *
 * Markdown on stdout. See benchmarks/README.md, "Real client forms".
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { BenchClient, Limiter } from "./client.js";
import { cpuSeconds } from "./proc.js";
import { startTarget } from "./servers.js";
import { cell } from "./spread.js";
import { FULL, ImageData } from "./suites.js";

const FLOORS = ["http", "fastify", "http-store", "fastify-store"] as const;
type TargetKind = "meridian" | "distribution" | (typeof FLOORS)[number];

interface Running {
  url: string;
  pid: number;
  natsPid?: number;
  stop(): Promise<void>;
}

interface Blob {
  repo: string;
  digest: string;
  bytes: Buffer;
}

async function startFloor(mode: (typeof FLOORS)[number]): Promise<Running> {
  const child = spawn(process.execPath, [join(REPO_ROOT, "dist", "benchmarks", "floor-server.js"), mode], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`floor server exited with ${code}`)));
    createInterface({ input: child.stdout! }).once("line", (line) => resolve(JSON.parse(line).port));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function start(kind: TargetKind): Promise<Running> {
  if (kind !== "meridian" && kind !== "distribution") return startFloor(kind);
  const t = await startTarget(kind);
  return { url: t.url, pid: t.pid, natsPid: t.natsPid, stop: () => t.stop() };
}

/** HEAD, POST, PUT with the body per blob, `inFlight` blobs at a time. */
async function push(client: BenchClient, blobs: Blob[], inFlight: number): Promise<void> {
  const limit = new Limiter(inFlight);
  await Promise.all(
    blobs.map((b) =>
      limit.run(async () => {
        const head = await client.send("HEAD", `/v2/${b.repo}/blobs/${b.digest}`);
        if (head.status !== 404) throw new Error(`HEAD ${b.digest}: ${head.status}, expected a miss`);
        await client.pushMonolithic(b.repo, b.digest, b.bytes.length, b.bytes);
      }),
    ),
  );
}

/** Server CPU ms per blob (and its nats-server's) over one push of `blobs` to a fresh `kind`. */
async function measure(kind: TargetKind, blobs: Blob[]): Promise<{ ms: number; nats?: number }> {
  const target = await start(kind);
  const client = new BenchClient(target.url, 8);
  client.monolithic = "post-put";
  try {
    const s0 = cpuSeconds(target.pid);
    const n0 = target.natsPid === undefined ? 0 : cpuSeconds(target.natsPid);
    await push(client, blobs, 8);
    const ms = ((cpuSeconds(target.pid) - s0) * 1000) / blobs.length;
    if (target.natsPid === undefined) return { ms };
    return { ms, nats: ((cpuSeconds(target.natsPid) - n0) * 1000) / blobs.length };
  } finally {
    client.close();
    await target.stop();
  }
}

function smallBlobs(n: number): Blob[] {
  return Array.from({ length: n }, (_, i) => {
    const bytes = randomBytes(1024);
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    return { repo: `bench/small-${i % 10}`, digest, bytes };
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      small: { type: "string", default: "1500" },
      targets: { type: "string", default: ["meridian", "distribution", ...FLOORS].join(",") },
    },
  });
  const runs = Number(values.runs);
  const kinds = values.targets.split(",") as TargetKind[];
  const images = new ImageData({ ...FULL, images: 50, layersPerImage: 5, layerBytes: 1 << 20 });
  const imageBlobs: Blob[] = images.images.flatMap((img) =>
    img.blobs.map((b) => ({ repo: img.repo, digest: b.desc.digest, bytes: b.bytes })),
  );
  const load0 = loadavg()[0]!;
  const figures = new Map<string, number[]>();
  const add = (key: string, v: number) => figures.set(key, [...(figures.get(key) ?? []), v]);
  for (let round = 0; round < runs; round++) {
    const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]!);
    for (const kind of order) {
      process.stderr.write(`perblob: round ${round + 1}, ${kind}\n`);
      const big = await measure(kind, imageBlobs);
      add(`${kind} images`, big.ms);
      if (big.nats !== undefined) add(`${kind} images nats`, big.nats);
      const small = await measure(kind, smallBlobs(Number(values.small)));
      add(`${kind} small`, small.ms);
      if (small.nats !== undefined) add(`${kind} small nats`, small.nats);
    }
  }
  const load1 = loadavg()[0]!;
  const lines = [
    `Server CPU ms per blob (HEAD + POST + PUT with the body, 8 in flight), medians of ${runs} rounds (min–max); load average ${load0.toFixed(1)} → ${load1.toFixed(1)}`,
    "",
    `| server | ${imageBlobs.length} image blobs (1 MiB layers) | nats-server | ${values.small} × 1 KiB blobs | nats-server |`,
    "|---|---:|---:|---:|---:|",
    ...kinds.map(
      (k) =>
        `| ${k} | ${cell(figures.get(`${k} images`) ?? [])} | ${cell(figures.get(`${k} images nats`) ?? [])} | ${cell(figures.get(`${k} small`) ?? [])} | ${cell(figures.get(`${k} small nats`) ?? [])} |`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();
