/**
 * Convergence and anti-entropy, measured on three local regions (separate
 * processes per region, chaos/ proxies on every cross-region link):
 *
 *   partition   b is cut off; 1000 tag writes are made in a and 1000 in b to
 *               the same 1000 tags (each side its own image); then the link
 *               heals. Measured: time from the heal until a, b and c hold the
 *               same summary of the repository (the peer's Summarize).
 *   backfill    c's worker is stopped and its consumer on a's stream moved
 *               past the end (the events are gone for c, as when a stream
 *               ages out); 1000 images are pushed to a (10 repositories of
 *               100); c's worker starts. Measured: time until c's summaries
 *               equal a's (anti-entropy only).
 *
 *   node dist/benchmarks/convergence.js [--runs N] [--writes N] [--images N] [--partition-only]
 *                                       [--profile DIR]
 *
 * `--profile DIR`: every node, peer and worker is CPU-profiled (the
 * cpu-prof-preload.ts preload, as replication.ts does) into DIR, and stopped
 * with SIGTERM at the end so the profiles are written.
 *
 * With the partition, the CPU seconds every region's processes used from the
 * heal until agreement are recorded per process kind (nats, node, peer,
 * worker; summed over a, b and c, from /proc), with the load average.
 *
 * Medians over the runs are printed as markdown; every run's figures go to
 * benchmarks/results/convergence-<timestamp>.json. Target (issue 4):
 * converged ≤ 5 s after the heal.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { CONVERGENCE_WORKER_ENV, MeshProbe, REGIONS } from "../chaos/convergence.js";
import { cleanupStack, REPO_ROOT, spawnMeridian } from "../testing/harness.js";
import type { ProxiedMesh } from "../testing/mesh.js";
import { startProxiedMesh } from "../testing/mesh.js";
import { OCI_MANIFEST, type OciClient } from "../testing/oci-client.js";
import { skipConsumerToEnd } from "../testing/streams.js";
import { pool, until } from "./loops.js";
import { cpuSeconds } from "./proc.js";

const KINDS = ["nats", "node", "peer", "worker"] as const;

/** CPU seconds so far of every region's processes, summed per kind. */
function cpuByKind(mesh: ProxiedMesh): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of KINDS) {
    out[kind] = 0;
    for (const region of mesh.regions.values()) {
      const proc = region[kind];
      const pid = "pid" in proc ? proc.pid : proc.child.pid;
      if (pid === undefined) continue;
      try {
        out[kind] += cpuSeconds(pid);
      } catch {
        // gone (a worker being restarted)
      }
    }
  }
  return out;
}

const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

/** Push one small image by tag; returns the manifest body (to re-tag with). */
async function smallImage(oci: OciClient, repo: string, tag: string): Promise<string> {
  const config = await oci.pushBlob(
    repo,
    Buffer.from(`{"n":"${tag}"}`),
    "application/vnd.oci.image.config.v1+json",
  );
  const layer = await oci.pushBlob(repo, randomBytes(256));
  const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] });
  await oci.pushManifest(repo, tag, body);
  return body;
}

async function partitionRun(probe: MeshProbe, run: number, writes: number): Promise<Record<string, number>> {
  const repo = `bench/partition-${run}`;
  const a = probe.oci.get("a")!;
  const b = probe.oci.get("b")!;
  const bodyA = await smallImage(a, repo, "base-a");
  const bodyB = await smallImage(b, repo, "base-b");
  await until(60_000, async () => {
    for (const r of REGIONS) {
      const map = await probe.tagMap(r, repo);
      if (map["base-a"] === undefined || map["base-b"] === undefined) return false;
    }
    return true;
  });
  probe.mesh.partition("b");
  const writeStart = Date.now();
  await Promise.all([
    pool(writes, 8, (i) => a.pushManifest(repo, `t${i}`, bodyA).then(() => undefined)),
    pool(writes, 8, (i) => b.pushManifest(repo, `t${i}`, bodyB).then(() => undefined)),
  ]);
  const writeMs = Date.now() - writeStart;
  // c keeps receiving a's writes during the partition: let it finish, so the figure is the heal's.
  await until(120_000, async () => (await probe.summary("c", repo)) === (await probe.summary("a", repo)));
  const healed = Date.now();
  const cpu0 = cpuByKind(probe.mesh);
  const [load1] = loadavg();
  probe.mesh.heal("b");
  const convergedMs = await until(300_000, async () => {
    const s = await Promise.all(REGIONS.map((r) => probe.summary(r, repo)));
    return s[0] !== "" && s.every((x) => x === s[0]);
  });
  const cpu1 = cpuByKind(probe.mesh);
  const cpu = Object.fromEntries(KINDS.map((k) => [`cpu_${k}_s`, +(cpu1[k]! - cpu0[k]!).toFixed(2)]));
  return {
    writes,
    writeMs,
    convergedMs,
    sinceHealMs: Date.now() - healed,
    load1: +load1!.toFixed(2),
    ...cpu,
  };
}

async function backfillRun(
  probe: MeshProbe,
  run: number,
  images: number,
  restartWorker: () => Promise<void>,
  stopWorker: () => Promise<void>,
  natsA: string,
): Promise<Record<string, number>> {
  await stopWorker();
  const a = probe.oci.get("a")!;
  const repos = Array.from({ length: 10 }, (_, i) => `bench/backfill-${run}-${i}`);
  const pushStart = Date.now();
  await pool(images, 8, async (i) => {
    await smallImage(a, repos[i % repos.length]!, `v${i}`);
  });
  const pushMs = Date.now() - pushStart;
  await skipConsumerToEnd(natsA, "a", "c");
  const started = Date.now();
  await restartWorker();
  const backfillMs = await until(600_000, async () => {
    for (const repo of repos) {
      const [x, y] = await Promise.all([probe.summary("a", repo), probe.summary("c", repo)]);
      if (x === "" || x !== y) return false;
    }
    return true;
  });
  return { images, pushMs, backfillMs, sinceStartMs: Date.now() - started };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((p, q) => p - q);
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      writes: { type: "string", default: "1000" },
      images: { type: "string", default: "1000" },
      "partition-only": { type: "boolean", default: false },
      profile: { type: "string" },
    },
  });
  const runs = Number(values.runs);
  const hooks: Array<() => Promise<void> | void> = [];
  const after = cleanupStack({ after: (fn) => hooks.push(fn) });
  const results: { partition: Record<string, number>[]; backfill: Record<string, number>[] } = {
    partition: [],
    backfill: [],
  };
  let probe: MeshProbe | undefined;
  try {
    if (values.profile !== undefined) {
      mkdirSync(values.profile, { recursive: true });
      const preload = pathToFileURL(join(REPO_ROOT, "dist", "benchmarks", "cpu-prof-preload.js")).href;
      process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --import=${preload}`.trim();
      process.env.MERIDIAN_BENCH_PROFILE_DIR = values.profile;
    }
    const mesh = await startProxiedMesh(after, [...REGIONS], {
      worker: { ...CONVERGENCE_WORKER_ENV, MERIDIAN_LOG_LEVEL: "warn" },
    });
    // Gracefully first, so profiles are written (the cleanups kill).
    if (values.profile !== undefined)
      hooks.push(async () => {
        for (const region of mesh.regions.values())
          await Promise.all([region.worker.stop(), region.peer.stop(), region.node.stop()]);
      });
    probe = new MeshProbe(mesh);
    const c = mesh.regions.get("c")!;
    for (let run = 0; run < runs; run++) {
      const p = await partitionRun(probe, run, Number(values.writes));
      say(`partition run ${run + 1}: ${JSON.stringify(p)}`);
      results.partition.push(p);
      if (values["partition-only"]) continue;
      const b = await backfillRun(
        probe,
        run,
        Number(values.images),
        async () => {
          c.worker = await spawnMeridian(after, "replication/main.js", c.workerEnv);
        },
        () => c.worker.stop(),
        mesh.regions.get("a")!.nats.url,
      );
      say(`backfill run ${run + 1}: ${JSON.stringify(b)}`);
      results.backfill.push(b);
    }
  } finally {
    probe?.close();
    for (const hook of hooks.reverse()) await hook();
  }
  const m = (xs: Record<string, number>[], k: string) => median(xs.map((x) => x[k]!));
  const lines = [
    `| measure | median of ${runs} | target |`,
    "|---|---|---|",
    `| converge after heal, ${values.writes} tag writes on each side | ${(m(results.partition, "convergedMs") / 1000).toFixed(2)} s | ≤ 5 s |`,
    `| (the writes themselves, both sides at once) | ${(m(results.partition, "writeMs") / 1000).toFixed(2)} s | |`,
    ...KINDS.map(
      (k) =>
        `| CPU s from heal to agreement, ${k} (a+b+c) | ${m(results.partition, `cpu_${k}_s`).toFixed(2)} | |`,
    ),
    `| load average (1 min) at the heal | ${m(results.partition, "load1").toFixed(2)} | |`,
    ...(results.backfill.length === 0
      ? [] // --partition-only
      : [
          `| anti-entropy backfill of ${values.images} images (10 repositories) | ${(m(results.backfill, "backfillMs") / 1000).toFixed(2)} s | |`,
          `| (pushing them to the source) | ${(m(results.backfill, "pushMs") / 1000).toFixed(2)} s | |`,
        ]),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  const dir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `convergence-${new Date().toISOString().replaceAll(":", "-")}.json`);
  writeFileSync(file, JSON.stringify({ runs, ...results }, null, 2));
  say(`raw figures: ${file}`);
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
