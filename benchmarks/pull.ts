/**
 * Pull, Meridian against CNCF Distribution (issue 14, item 3), with the
 * clients people use: curl, a Node `http` client (benchmarks/client.ts), and
 * `skopeo copy docker://… dir:`.
 *
 *   node dist/benchmarks/pull.js [--rounds N] [--quick] [--profile] [--only curl-256,skopeo,…]
 *
 * Both registries are started once (filesystem store, Meridian's defaults)
 * and seeded with the same content: one 256 MiB, one 20 MiB and one 1 MiB
 * blob, an image of 5 × 20 MiB layers, and the images suite's 50 images ×
 * 5 × 1 MiB. Then every round runs every operation on both registries back
 * to back, the registry that goes first alternating from operation to
 * operation and round to round, so the two figures of a pair are measured
 * seconds apart on this shared machine. A ratio is the median of the
 * per-round ratios (Meridian MiB/s / Distribution MiB/s), with the spread;
 * server CPU is the utime+stime of the registry process (Meridian: the node;
 * its nats-server is ~0 on reads) per MiB moved, from /proc; a child
 * client's (curl, skopeo) CPU comes from /usr/bin/time.
 * Markdown on stdout, every round in benchmarks/results/pull-<timestamp>.json.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { BenchClient, Limiter, OCI_CONFIG, OCI_MANIFEST } from "./client.js";
import { GeneratedBlob, MiB } from "./data.js";
import { cpuSeconds } from "./proc.js";
import { median } from "./report.js";
import { startTarget, type Target, type TargetName } from "./servers.js";
import { FULL, ImageData, QUICK } from "./suites.js";

const execFileAsync = promisify(execFile);
const say = (msg: string) => process.stderr.write(`bench pull: ${msg}\n`);

interface Op {
  ms: number;
  bytes: number;
  /** CPU seconds over the operation: the registry process, Meridian's nats-server, the client. */
  cpu: { server: number; nats?: number; client: number };
}

interface Seeded {
  big: { digest: string; size: number };
  mid: { digest: string; size: number };
  small: { digest: string; size: number };
  image: { repo: string; tag: string; bytes: number };
  images: ImageData | undefined;
  imagesBytes: number;
}

const REPO = "bench/pull";
const SMALL_COUNT = 64;
const MID_COUNT = 5;

/** Run a child client under /usr/bin/time, returning its CPU seconds (user + system). */
async function timedChild(cmd: string, args: string[]): Promise<{ stdout: string; cpu: number }> {
  const { stdout, stderr } = await execFileAsync("/usr/bin/time", ["-f", "CPU %U %S", cmd, ...args], {
    maxBuffer: 16 * MiB,
  });
  const m = /CPU ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
  if (m === null) throw new Error(`${cmd}: no CPU figure in ${stderr.slice(-300)}`);
  return { stdout, cpu: Number(m[1]) + Number(m[2]) };
}

async function measure(target: Target, bytes: number, work: () => Promise<number | undefined>): Promise<Op> {
  const s0 = cpuSeconds(target.pid);
  const n0 = target.natsPid === undefined ? 0 : cpuSeconds(target.natsPid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const childCpu = await work();
  const ms = performance.now() - t0;
  const c1 = process.cpuUsage(c0);
  return {
    ms,
    bytes,
    cpu: {
      server: cpuSeconds(target.pid) - s0,
      ...(target.natsPid === undefined ? {} : { nats: cpuSeconds(target.natsPid) - n0 }),
      client: childCpu ?? (c1.user + c1.system) / 1e6,
    },
  };
}

function curlArgs(client: BenchClient, repo: string, digest: string, times: number): string[] {
  const url = client.url(`/v2/${repo}/blobs/${digest}`).href;
  // One curl process, one keep-alive connection, `times` sequential GETs.
  const args = ["-sS", "--fail", "-w", "%{size_download}\\n"];
  for (let i = 0; i < times; i++) args.push("-o", "/dev/null", url);
  return args;
}

type OpName = (typeof OPS)[number];
const OPS = [
  "curl-256",
  "node-256",
  "curl-20",
  "node-20",
  "curl-1",
  "node-1",
  "skopeo",
  "images-node",
] as const;

function opBytes(name: OpName, s: Seeded): number {
  switch (name) {
    case "curl-256":
    case "node-256":
      return s.big.size;
    case "curl-20":
    case "node-20":
      return s.mid.size * MID_COUNT;
    case "curl-1":
    case "node-1":
      return s.small.size * SMALL_COUNT;
    case "skopeo":
      return s.image.bytes;
    case "images-node":
      return s.imagesBytes;
  }
}

async function runOp(name: OpName, target: Target, client: BenchClient, s: Seeded): Promise<Op> {
  const bytes = opBytes(name, s);
  const curl = (blob: { digest: string; size: number }, times: number) =>
    measure(target, bytes, async () => {
      const { stdout, cpu } = await timedChild("curl", curlArgs(client, REPO, blob.digest, times));
      const got = stdout
        .trim()
        .split("\n")
        .reduce((sum, n) => sum + Number(n), 0);
      if (got !== blob.size * times) throw new Error(`${name}: ${got} bytes, expected ${blob.size * times}`);
      return cpu;
    });
  const node = (blob: { digest: string; size: number }, times: number) =>
    measure(target, bytes, async () => {
      for (let i = 0; i < times; i++) await client.pullBlob(REPO, blob.digest, blob.size);
      return undefined;
    });
  switch (name) {
    case "curl-256":
      return curl(s.big, 1);
    case "node-256":
      return node(s.big, 1);
    case "curl-20":
      return curl(s.mid, MID_COUNT);
    case "node-20":
      return node(s.mid, MID_COUNT);
    case "curl-1":
      return curl(s.small, SMALL_COUNT);
    case "node-1":
      return node(s.small, SMALL_COUNT);
    case "skopeo": {
      const dir = mkdtempSync(join(tmpdir(), "meridian-bench-skopeo-"));
      try {
        const host = new URL(target.url).host;
        return await measure(target, bytes, async () => {
          const { cpu } = await timedChild("skopeo", [
            "copy",
            "-q",
            "--src-tls-verify=false",
            `docker://${host}/${s.image.repo}:${s.image.tag}`,
            `dir:${join(dir, "out")}`,
          ]);
          return cpu;
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    case "images-node": {
      const images = s.images!;
      const limit = new Limiter(FULL.inFlight);
      return measure(target, bytes, async () => {
        await Promise.all(
          images.images.map(async (img) => {
            const { manifest } = await limit.run(() => client.getManifest(img.repo, img.tag));
            await Promise.all(
              [manifest.config, ...manifest.layers].map((d) =>
                limit.run(() => client.pullBlob(img.repo, d.digest, d.size)),
              ),
            );
          }),
        );
        return undefined;
      });
    }
  }
}

async function seed(target: Target, blobs: GeneratedBlob[], layers: GeneratedBlob[], images?: ImageData) {
  const client = new BenchClient(target.url, 8);
  try {
    for (const b of blobs) await client.pushMonolithic(REPO, b.digest(), b.size, b.pieces());
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", bench: "pull" }));
    const configDigest = await pushBytes(client, "bench/skopeo", config, OCI_CONFIG);
    const layerDescs = [];
    for (const l of layers)
      layerDescs.push(await client.pushMonolithic("bench/skopeo", l.digest(), l.size, l.pieces()));
    await client.putManifest("bench/skopeo", "v1", {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: layerDescs,
    });
    for (const img of images?.images ?? []) {
      for (const b of img.blobs) {
        await client.pushMonolithic(img.repo, b.desc.digest, b.desc.size, b.bytes, b.desc.mediaType);
      }
      await client.putManifest(img.repo, img.tag, img.manifest);
    }
  } finally {
    client.close();
  }
}

async function pushBytes(client: BenchClient, repo: string, bytes: Buffer, mediaType: string) {
  const { createHash } = await import("node:crypto");
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  await client.pushMonolithic(repo, digest, bytes.length, bytes, mediaType);
  return digest;
}

const fmt = (n: number, digits = 2) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits }) : "–";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string" },
      quick: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      only: { type: "string" },
    },
  });
  const rounds = Number(values.rounds ?? (values.quick ? 1 : 5));
  const only = (values.only?.split(",") ?? [...OPS]) as OpName[];
  for (const o of only) if (!OPS.includes(o)) throw new Error(`--only: any of ${OPS.join(", ")}`);
  const bigBytes = values.quick ? 32 * MiB : 256 * MiB;
  const resultsDir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");

  const big = new GeneratedBlob(bigBytes, "bench-pull-big");
  const mid = new GeneratedBlob(20 * MiB, "bench-pull-mid");
  const small = new GeneratedBlob(MiB, "bench-pull-small");
  const layers = [0, 1, 2, 3, 4].map((i) => new GeneratedBlob(20 * MiB, `bench-pull-layer-${i}`));
  const images = only.includes("images-node") ? new ImageData(values.quick ? QUICK : FULL) : undefined;
  const imagesBytes =
    images?.images.reduce((sum, img) => sum + img.blobs.reduce((s, b) => s + b.desc.size, 0), 0) ?? 0;
  const seeded: Seeded = {
    big: { digest: big.digest(), size: big.size },
    mid: { digest: mid.digest(), size: mid.size },
    small: { digest: small.digest(), size: small.size },
    image: { repo: "bench/skopeo", tag: "v1", bytes: layers.reduce((s, l) => s + l.size, 0) },
    images,
    imagesBytes,
  };

  const started = new Date();
  const loadBefore = loadavg();
  const targets: Partial<Record<TargetName, Target>> = {};
  const clients: Partial<Record<TargetName, BenchClient>> = {};
  const all: Record<string, Record<TargetName, Op[]>> = {};
  try {
    for (const name of ["meridian", "distribution"] as const) {
      say(`starting ${name}`);
      targets[name] = await startTarget(
        name,
        values.profile && name === "meridian"
          ? { cpuProfDir: join(resultsDir, `profiles-pull-${stamp}`) }
          : {},
      );
      say(`seeding ${name}`);
      await seed(targets[name]!, [big, mid, small], layers, images);
      clients[name] = new BenchClient(targets[name]!.url, FULL.inFlight);
      // Warm: one pass of every blob through each server (page cache, JIT).
      await clients[name]!.pullBlob(REPO, big.digest(), big.size);
    }
    let flip = 0;
    for (let round = 1; round <= rounds; round++) {
      for (const op of only) {
        const order: TargetName[] =
          flip++ % 2 === 0 ? ["meridian", "distribution"] : ["distribution", "meridian"];
        for (const name of order) {
          const result = await runOp(op, targets[name]!, clients[name]!, seeded);
          all[op] ??= { meridian: [], distribution: [] };
          all[op]![name].push(result);
        }
        const m = all[op]!.meridian.at(-1)!;
        const d = all[op]!.distribution.at(-1)!;
        say(
          `round ${round}/${rounds} ${op}: M ${fmt(m.bytes / MiB / (m.ms / 1000), 0)} MiB/s, ` +
            `D ${fmt(d.bytes / MiB / (d.ms / 1000), 0)} MiB/s, ratio ${fmt(d.ms / m.ms)}`,
        );
      }
      if (round % 2 === 0) flip++;
    }
  } finally {
    for (const c of Object.values(clients)) c.close();
    for (const t of Object.values(targets)) await t.stop();
  }

  const rows = [
    `## Pull — ${started.toISOString()}, ${rounds} interleaved round(s)${values.quick ? " (--quick)" : ""}`,
    "",
    `Machine: ${cpus().length} × ${cpus()[0]?.model}, shared; load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}.`,
    "",
    "| operation | Meridian MiB/s | Distribution MiB/s | ratio M/D, median (min–max) | server CPU ms/MiB M | D | client CPU ms/MiB M | D |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const summary: Record<string, unknown> = {};
  for (const op of only) {
    const { meridian: m, distribution: d } = all[op]!;
    const mibs = (o: Op) => o.bytes / MiB / (o.ms / 1000);
    const ratios = m.map((mo, i) => mibs(mo) / mibs(d[i]!));
    const cpuPerMiB = (ops: Op[], k: "server" | "client") =>
      median(ops.map((o) => (o.cpu[k] * 1000) / (o.bytes / MiB)));
    const row = {
      meridianMiBs: median(m.map(mibs)),
      distributionMiBs: median(d.map(mibs)),
      ratio: median(ratios),
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios),
      serverCpuMsPerMiB: { meridian: cpuPerMiB(m, "server"), distribution: cpuPerMiB(d, "server") },
      clientCpuMsPerMiB: { meridian: cpuPerMiB(m, "client"), distribution: cpuPerMiB(d, "client") },
    };
    summary[op] = row;
    rows.push(
      `| ${op} | ${fmt(row.meridianMiBs, 0)} | ${fmt(row.distributionMiBs, 0)} | ${fmt(row.ratio)} (${fmt(row.ratioMin)}–${fmt(row.ratioMax)}) | ` +
        `${fmt(row.serverCpuMsPerMiB.meridian)} | ${fmt(row.serverCpuMsPerMiB.distribution)} | ` +
        `${fmt(row.clientCpuMsPerMiB.meridian)} | ${fmt(row.clientCpuMsPerMiB.distribution)} |`,
    );
  }
  const md = rows.join("\n");
  const file = join(resultsDir, `pull-${stamp}${values.quick ? "-quick" : ""}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ meta: { date: started.toISOString(), rounds, loadBefore, loadAfter: loadavg() }, summary, raw: all }, null, 2)}\n`,
  );
  writeFileSync(file.replace(/\.json$/, ".md"), `${md}\n`);
  process.stdout.write(`${md}\n`);
  say(`results: ${file}`);
}

main().catch((err) => {
  process.stderr.write(`bench pull failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
