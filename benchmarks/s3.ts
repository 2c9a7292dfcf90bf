/**
 * The S3 store benchmark (issue 13, item 6): one Meridian node on its
 * filesystem store, one on the S3 store (a local s3rver), and the same bytes
 * put and got with a plain `@aws-sdk/client-s3` client against the same kind
 * of s3rver: the server's own limit here (s3-targets.ts).
 *
 *   node dist/benchmarks/s3.js [--runs N] [--quick] [--profile]
 *
 * Rounds are interleaved: each round starts every contestant fresh (a new
 * node, nats-server and s3rver each) and runs each operation on each of them
 * back to back, in an order that rotates from round to round: push 256 MiB
 * as POST + PUT, push 256 MiB in 8 MiB PATCHes, pull it, push 50 images. A
 * ratio is the median of the per-round ratios (figures measured seconds
 * apart); every figure is the median over the rounds, with its spread
 * (min–max). CPU is
 * the utime+stime of each process over the operation (/proc), per MiB moved.
 * Markdown on stdout; every round's figures in
 * benchmarks/results/s3-<timestamp>.json (and .md).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { GeneratedBlob, MiB } from "./data.js";
import { cpuSeconds } from "./proc.js";
import {
  CONTESTANTS,
  type Contestant,
  PLAIN_PART_BYTES,
  PLAIN_QUEUE_SIZE,
  type Running,
  startContestant,
} from "./s3-targets.js";
import { cell, perRoundRatios, quantiles } from "./spread.js";
import { FULL, ImageData, QUICK, type Sizes } from "./suites.js";

const say = (msg: string) => process.stderr.write(`bench s3: ${msg}\n`);

/** Held against the plain client for bulk bytes (the issue's target). */
export const TARGET_RATIO = 0.8;

interface Op {
  ms: number;
  /** CPU seconds of each process over the operation; `client` is this process. */
  cpu: { node?: number; nats?: number; s3?: number; client: number };
}

interface Round {
  postPut: Op;
  chunked: Op;
  /** Plain client only: one UploadPart at a time (what a chunk-at-a-time client gets). */
  chunkedSequential?: Op;
  /** Meridian: curl. Plain: GetObject streamed in this process. */
  pull: Op;
  /** Plain client only: curl of a presigned URL. */
  pullCurl?: Op;
  images: Op & { requests: number };
}

async function measure(running: Running, work: () => Promise<unknown>): Promise<Op> {
  const pids = Object.entries(running.pids).filter((e): e is [string, number] => e[1] !== undefined);
  const before = pids.map(([, pid]) => cpuSeconds(pid));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const ms = performance.now() - t0;
  const c1 = process.cpuUsage(c0);
  const cpu: Op["cpu"] = { client: (c1.user + c1.system) / 1e6 };
  pids.forEach(([name, pid], i) => {
    cpu[name as "node" | "nats" | "s3"] = cpuSeconds(pid) - before[i]!;
  });
  return { ms, cpu };
}

type Data = {
  postPut: GeneratedBlob;
  chunked: GeneratedBlob;
  chunkedAgain: GeneratedBlob;
  images: ImageData;
};

/**
 * One round: every operation on every contestant, one contestant after the
 * other per operation (`order`), so the figures a ratio compares were
 * measured seconds apart, not minutes, on a machine whose load moves.
 */
async function round(
  contestants: Running[],
  sizes: Sizes,
  data: Data,
  verify: boolean,
): Promise<Map<Contestant, Round>> {
  const out = new Map<Contestant, Partial<Round>>(contestants.map((c) => [c.name, {}]));
  const each = async (work: (c: Running, figures: Partial<Round>) => Promise<void>) => {
    for (const c of contestants) await work(c, out.get(c.name)!);
  };
  await each(async (c, f) => {
    f.postPut = await measure(c, () => c.pushPostPut(data.postPut));
  });
  await each(async (c, f) => {
    f.chunked = await measure(c, () => c.pushChunked(data.chunked, sizes.chunkBytes));
    // The plain client again, one part at a time, to another key (what a chunk-at-a-time client gets).
    if (c.name === "plain-sdk") {
      f.chunkedSequential = await measure(c, () => c.pushChunked(data.chunkedAgain, sizes.chunkBytes, true));
    }
  });
  await each(async (c, f) => {
    f.pull = await measure(c, () => c.pull(data.postPut));
    if (c.name === "plain-sdk") f.pullCurl = await measure(c, () => c.pull(data.postPut, false));
  });
  if (verify) {
    await each(async (c) => {
      for (const blob of [data.postPut, data.chunked]) {
        const got = await c.verifyPull(blob);
        if (got !== blob.digest()) throw new Error(`${c.name}: pulled ${got}, pushed ${blob.digest()}`);
      }
    });
  }
  await each(async (c, f) => {
    let requests = 0;
    const op = await measure(c, async () => {
      requests = await c.pushImages(data.images, sizes.inFlight);
    });
    f.images = { ...op, requests };
  });
  return out as Map<Contestant, Round>;
}

// ------------------------------------------------------------------ report

type Pick = (r: Round) => Op | undefined;

function rates(rounds: Round[], pick: Pick, mib: number): number[] {
  return rounds.flatMap((r) => {
    const op = pick(r);
    return op === undefined ? [] : [mib / (op.ms / 1000)];
  });
}

function cpuPerMiB(rounds: Round[], pick: Pick, mib: number, proc: keyof Op["cpu"]): number[] {
  return rounds.flatMap((r) => {
    const v = pick(r)?.cpu[proc];
    return v === undefined ? [] : [(v * 1000) / mib];
  });
}

/** Median of per-round ratios a[i]/b[i] (rounds are interleaved, so round i of each ran close in time). */
function ratio(a: number[], b: number[]): { text: string; value: number } {
  const r = perRoundRatios(a, b);
  return { text: cell(r), value: r.length === 0 ? Number.NaN : quantiles(r).median };
}

export function markdown(raw: Record<Contestant, Round[]>, sizes: Sizes, imageMiB: number): string {
  const blobMiB = sizes.blobBytes / MiB;
  const fs = raw["meridian-fs"];
  const s3 = raw["meridian-s3"];
  const plain = raw["plain-sdk"];
  const lines = [
    "| measure (MiB/s; median (min–max) over rounds) | Meridian fs | Meridian S3 | plain SDK on s3rver | S3 / plain | target | met | S3 / fs |",
    "|---|---:|---:|---:|---:|---|---|---:|",
  ];
  const row = (label: string, pick: Pick, plainPick: Pick, mib: number, target: boolean) => {
    const [f, s, p] = [rates(fs, pick, mib), rates(s3, pick, mib), rates(plain, plainPick, mib)];
    const sp = ratio(s, p);
    const met = target ? (sp.value >= TARGET_RATIO ? "yes" : "**no**") : "";
    lines.push(
      `| ${label} | ${cell(f)} | ${cell(s)} | ${cell(p)} | ${sp.text} | ${target ? `≥ ${TARGET_RATIO}×` : ""} | ${met} | ${ratio(s, f).text} |`,
    );
  };
  row(
    `push ${blobMiB} MiB, POST + PUT (plain: Upload)`,
    (r) => r.postPut,
    (r) => r.postPut,
    blobMiB,
    true,
  );
  row(
    `push ${blobMiB} MiB, ${sizes.chunkBytes / MiB} MiB PATCHes (plain: Upload)`,
    (r) => r.chunked,
    (r) => r.chunked,
    blobMiB,
    true,
  );
  row(
    `push ${blobMiB} MiB, ${sizes.chunkBytes / MiB} MiB PATCHes (plain: UploadPart one at a time)`,
    (r) => r.chunked,
    (r) => r.chunkedSequential,
    blobMiB,
    false,
  );
  row(
    `pull ${blobMiB} MiB (Meridian: curl; plain: GetObject in Node)`,
    (r) => r.pull,
    (r) => r.pull,
    blobMiB,
    true,
  );
  row(
    `pull ${blobMiB} MiB (plain: curl of a presigned URL)`,
    (r) => r.pull,
    (r) => r.pullCurl,
    blobMiB,
    false,
  );
  row(
    `${sizes.images} images × ${sizes.layersPerImage} × ${sizes.layerBytes / MiB} MiB, ${sizes.inFlight} in flight`,
    (r) => r.images,
    (r) => r.images,
    imageMiB,
    false,
  );
  const secs = (rounds: Round[]) => rounds.map((r) => r.images.ms / 1000);
  lines.push(
    `| (the same, seconds) | ${cell(secs(fs))} | ${cell(secs(s3))} | ${cell(secs(plain))} |  |  |  |  |`,
    `| (the same, requests) | ${fs[0]?.images.requests ?? ""} | ${s3[0]?.images.requests ?? ""} | ${plain[0]?.images.requests ?? ""} |  |  |  |  |`,
  );
  lines.push(
    "",
    "CPU ms per MiB moved (median (min–max)): the node process / its nats-server / the s3rver process / this benchmark process (the client; for the plain SDK that is the S3 client itself).",
    "",
    "| operation | Meridian fs: node / nats / – / client | Meridian S3: node / nats / s3rver / client | plain SDK: – / – / s3rver / client |",
    "|---|---|---|---|",
  );
  const cpuRow = (label: string, pick: Pick, plainPick: Pick, mib: number) => {
    const of = (rounds: Round[], p: Pick, procs: (keyof Op["cpu"])[]) =>
      procs.map((proc) => cell(cpuPerMiB(rounds, p, mib, proc)) || "–").join(" / ");
    lines.push(
      `| ${label} | ${of(fs, pick, ["node", "nats", "s3", "client"])} | ${of(s3, pick, ["node", "nats", "s3", "client"])} | ${of(plain, plainPick, ["node", "nats", "s3", "client"])} |`,
    );
  };
  cpuRow(
    "push POST + PUT",
    (r) => r.postPut,
    (r) => r.postPut,
    blobMiB,
  );
  cpuRow(
    "push PATCHes",
    (r) => r.chunked,
    (r) => r.chunked,
    blobMiB,
  );
  cpuRow(
    "pull",
    (r) => r.pull,
    (r) => r.pull,
    blobMiB,
  );
  cpuRow(
    "images",
    (r) => r.images,
    (r) => r.images,
    imageMiB,
  );
  return lines.join("\n");
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string" },
      quick: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write("usage: node dist/benchmarks/s3.js [--runs N] [--quick] [--profile]\n");
    return;
  }
  const sizes: Sizes = values.quick ? QUICK : FULL;
  const runs = Number(values.runs ?? 3);
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw new Error("--runs: 1 to 20");
  const resultsDir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const cpuProfDir = values.profile ? join(resultsDir, `profiles-s3-${stamp}`) : undefined;

  say("preparing data");
  const data: Data = {
    postPut: new GeneratedBlob(sizes.blobBytes, "bench-s3-post-put"),
    chunked: new GeneratedBlob(sizes.blobBytes, "bench-s3-chunked"),
    chunkedAgain: new GeneratedBlob(sizes.blobBytes, "bench-s3-chunked-sequential"),
    images: new ImageData(sizes),
  };
  for (const blob of [data.postPut, data.chunked, data.chunkedAgain]) blob.digest();
  const imageMiB =
    data.images.images.reduce((n, img) => n + img.blobs.reduce((m, b) => m + b.desc.size, 0), 0) / MiB;

  const started = new Date();
  const loadBefore = loadavg();
  const raw: Record<Contestant, Round[]> = { "meridian-fs": [], "meridian-s3": [], "plain-sdk": [] };
  const settings: Partial<Record<Contestant, Record<string, unknown>>> = {};
  const running: Running[] = [];
  for (let r = 0; r < runs; r++) {
    const order = CONTESTANTS.map((_, i) => CONTESTANTS[(i + r) % CONTESTANTS.length]!);
    say(`round ${r + 1}/${runs}: ${order.join(", ")}`);
    try {
      for (const name of order) {
        running.push(
          await startContestant(name, {
            ...(cpuProfDir !== undefined && name === "meridian-s3" ? { cpuProfDir } : {}),
          }),
        );
      }
      active = running;
      const figures = await round(running, sizes, data, r === 0);
      for (const c of running) {
        const f = figures.get(c.name)!;
        raw[c.name].push(f);
        settings[c.name] = c.settings;
        const mibs = (op: Op) => (sizes.blobBytes / MiB / (op.ms / 1000)).toFixed(0);
        say(
          `round ${r + 1}/${runs}: ${c.name}: post+put ${mibs(f.postPut)} MiB/s, patches ${mibs(f.chunked)} MiB/s, ` +
            `pull ${mibs(f.pull)} MiB/s, images ${(f.images.ms / 1000).toFixed(2)} s`,
        );
      }
    } finally {
      await Promise.allSettled(running.splice(0).map((c) => c.stop()));
    }
  }

  const table = markdown(raw, sizes, imageMiB);
  const md = [
    `## S3 store: ${started.toISOString().slice(0, 16).replace("T", " ")} UTC, \`node dist/benchmarks/s3.js --runs ${runs}${values.quick ? " --quick" : ""}\``,
    "",
    `Machine: ${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 1024 ** 3)} GiB, shared; load average ` +
      `before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}. ` +
      `${runs} interleaved round(s); each round starts all three fresh and runs each operation on each back to back (order rotating). Plain SDK: ${PLAIN_PART_BYTES / MiB} MiB parts, ${PLAIN_QUEUE_SIZE} in flight.`,
    "",
    table,
  ].join("\n");
  const file = join(resultsDir, `s3-${stamp}${values.quick ? "-quick" : ""}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ meta: { date: started.toISOString(), runs, sizes, loadBefore, loadAfter: loadavg(), settings }, raw }, null, 2)}\n`,
  );
  writeFileSync(file.replace(/\.json$/, ".md"), `${md}\n`);
  process.stdout.write(`${md}\n`);
  say(`results: ${file}`);
}

/** Contestants of the current round, stopped on a signal or a failure. */
let active: Running[] = [];
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    say(`${signal}: stopping`);
    Promise.allSettled(active.map((c) => c.stop())).then(() => process.exit(130));
  });
}

main().catch(async (err) => {
  process.stderr.write(`bench s3 failed: ${err?.stack ?? err}\n`);
  await Promise.allSettled(active.map((c) => c.stop()));
  process.exit(1);
});
