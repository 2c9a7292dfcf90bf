/**
 * Meridian versus CNCF Distribution, side by side on 127.0.0.1.
 *
 *   npm run bench -- [--runs N] [--quick]
 *                    [--only blob,small,auth,images,memory,replication,pushforms,pull,perblob,rest,convergence,scale]
 *                    [--duration SEC] [--tool wrk|loadgen] [--no-fsync] [--rate-limits] [--profile] [--replication-regions 2|3]
 *
 * Each benchmark run starts each registry fresh (the order alternates from run
 * to run), drives it with the same client, and stops it. Medians over the runs
 * and the ratios Meridian / Distribution are printed as markdown and written,
 * with every run's raw figures, to benchmarks/results/<timestamp>.json.
 * The auth suite starts each registry twice per run, side by side:
 * authentication off and on.
 * The replication suite (replication.ts) is Meridian only: one local
 * three-region mesh for all its runs, medians over the runs.
 * pull, perblob, rest, convergence and scale are scripts of their own, run
 * after these suites as child processes (companions.ts).
 * See benchmarks/README.md.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, hostname, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { COMPANIONS, type CompanionName, companionArgs, runCompanion } from "./companions.js";
import { GeneratedBlob, MiB } from "./data.js";
import type { Tool } from "./load.js";
import { clkTck } from "./proc.js";
import {
  PUSHFORM_GOALS,
  type PushformsRaw,
  pushformsMarkdown,
  pushformsSuite,
  SKOPEO_FULL,
  SKOPEO_QUICK,
} from "./pushforms.js";
import { REPLICATION_FULL, REPLICATION_QUICK, replicationSuite, stopReplication } from "./replication.js";
import { markdown, type RawResults, summarize, TARGETS } from "./report.js";
import {
  distributionVersion,
  RATE_LIMITS_ON,
  startTarget,
  type Target,
  type TargetName,
  type TargetOptions,
} from "./servers.js";
import {
  type AuthPoint,
  authSuite,
  BlobData,
  blobSuite,
  FULL,
  ImageData,
  imagesSuite,
  memorySuite,
  QUICK,
  type Sizes,
  smallSuite,
} from "./suites.js";

const SUITES = ["blob", "small", "auth", "images", "memory", "replication", "pushforms"] as const;
type SuiteName = (typeof SUITES)[number];

const active = new Set<Target>();
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function withTarget<T>(
  name: TargetName,
  options: TargetOptions,
  work: (t: Target) => Promise<T>,
): Promise<{ result: T; settings: Record<string, unknown> }> {
  const target = await startTarget(name, options);
  active.add(target);
  try {
    return { result: await work(target), settings: target.settings };
  } finally {
    active.delete(target);
    await target.stop();
  }
}

function size(bytes: number): string {
  return bytes >= 1024 * MiB
    ? `${bytes / 1024 / MiB} GiB`
    : bytes >= MiB
      ? `${bytes / MiB} MiB`
      : `${bytes / 1024} KiB`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string" },
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      duration: { type: "string" },
      tool: { type: "string" },
      "no-fsync": { type: "boolean", default: false },
      "rate-limits": { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      "replication-regions": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      `usage: node dist/benchmarks/run.js [--runs N] [--quick] [--only ${[...SUITES, ...COMPANIONS].join(",")}]\n` +
        "         [--duration SEC] [--tool wrk|loadgen] [--no-fsync] [--rate-limits] [--profile] [--replication-regions 2|3]\n",
    );
    return;
  }
  const sizes: Sizes = { ...(values.quick ? QUICK : FULL) };
  if (values.duration !== undefined) sizes.smallDurationSec = Number(values.duration);
  const runs = Number(values.runs ?? (values.quick ? 1 : 3));
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw new Error("--runs: 1 to 20");
  const chosen = values.only?.split(",").map((s) => s.trim()) ?? [...SUITES, ...COMPANIONS];
  const isSuite = (s: string): s is SuiteName => (SUITES as readonly string[]).includes(s);
  const isCompanion = (s: string): s is CompanionName => (COMPANIONS as readonly string[]).includes(s);
  for (const s of chosen) {
    if (!isSuite(s) && !isCompanion(s))
      throw new Error(`--only: one of ${[...SUITES, ...COMPANIONS].join(", ")}`);
  }
  const only = chosen.filter(isSuite);
  const companions = chosen.filter(isCompanion);
  const tool = values.tool as Tool | undefined;
  if (tool !== undefined && tool !== "wrk" && tool !== "loadgen") throw new Error("--tool: wrk or loadgen");

  const resultsDir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const options: TargetOptions = {
    ...(values["no-fsync"] ? { fsync: false } : {}),
    // Every rate limit on, too high to refuse anything: what counting every request costs (issue 18).
    ...(values["rate-limits"] ? { env: RATE_LIMITS_ON } : {}),
    ...(values.profile ? { cpuProfDir: join(resultsDir, `profiles-${stamp}`) } : {}),
  };

  const raw: RawResults = {};
  const settings: Partial<Record<TargetName, Record<string, unknown>>> = {};
  const authSettings: Record<string, Record<string, unknown>> = {};
  const started = new Date();
  const loadBefore = loadavg();

  const replicationSizes = values.quick ? REPLICATION_QUICK : REPLICATION_FULL;
  const skopeoLayers = values.quick ? SKOPEO_QUICK : SKOPEO_FULL;
  let pushforms: PushformsRaw | undefined;
  for (const suite of only) {
    if (suite === "pushforms") {
      // Both registries in every round, each operation on both back to back (pushforms.ts).
      pushforms = await pushformsSuite({ runs, sizes, skopeoLayers, targetOptions: options, say });
      continue;
    }
    if (suite === "replication") {
      raw.replication = await replicationSuite({
        runs,
        sizes: replicationSizes,
        fsync: !values["no-fsync"],
        // 2: a and b only (one copy: the pair the issue's target names); default 3 (a copies to b and c).
        regions: ["a", "b", "c"].slice(0, Number(values["replication-regions"] ?? 3)),
        say,
        logsDir: join(resultsDir, `replication-logs-${stamp}`),
        ...(values.profile ? { cpuProfDir: join(resultsDir, `profiles-${stamp}`, "replication") } : {}),
      });
      continue;
    }
    if (suite === "auth") {
      raw.auth = await authRuns(runs, sizes, options, tool, authSettings);
      continue;
    }
    say(`${suite}: preparing data`);
    const blobData = suite === "blob" ? new BlobData(sizes) : undefined;
    const imageData = suite === "images" ? new ImageData(sizes) : undefined;
    const memoryBlob = suite === "memory" ? new GeneratedBlob(sizes.memoryBytes, "bench-memory") : undefined;
    memoryBlob?.digest();
    for (let run = 1; run <= runs; run++) {
      const order: TargetName[] = run % 2 === 1 ? ["meridian", "distribution"] : ["distribution", "meridian"];
      for (const name of order) {
        say(`${suite}: run ${run}/${runs}, ${name}`);
        const { result, settings: s } = await withTarget(name, options, async (target) => {
          switch (suite) {
            case "blob":
              return blobSuite(target, sizes, blobData!);
            case "small":
              return smallSuite(target, sizes, { tool });
            case "images":
              return imagesSuite(target, sizes, imageData!);
            case "memory":
              return memorySuite(target, memoryBlob!);
            default:
              throw new Error(`suite ${suite}`);
          }
        });
        settings[name] = s;
        const buckets = raw as Record<SuiteName, Partial<Record<TargetName, unknown[]>> | undefined>;
        const bucket = buckets[suite] ?? {};
        buckets[suite] = bucket;
        bucket[name] = [...(bucket[name] ?? []), result];
        say(`${suite}: run ${run}/${runs}, ${name}: ${brief(result)}`);
      }
    }
  }

  const summary = summarize(raw);
  const labels = {
    blob: size(sizes.blobBytes),
    images: `${sizes.images} × ${sizes.layersPerImage} layers × ${size(sizes.layerBytes)}, ${sizes.inFlight} requests in flight`,
    memory: size(sizes.memoryBytes),
    replication: {
      small:
        `${replicationSizes.images} images × (config + 1 layer of ${size(replicationSizes.layerBytes)}), ` +
        `one every ${replicationSizes.intervalMs} ms, into a; lag = manifest 201 at a → HEAD 200 at b/c`,
      big: `one image with a ${size(replicationSizes.bigBytes)} layer`,
    },
  };
  const meta = {
    date: started.toISOString(),
    finished: new Date().toISOString(),
    runs,
    quick: values.quick,
    suites: only,
    sizes,
    ...(only.includes("replication") ? { replicationSizes } : {}),
    machine: {
      hostname: hostname(),
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 1024 ** 3),
      loadavgBefore: loadBefore,
      loadavgAfter: loadavg(),
      clkTck: clkTck(),
      node: process.version,
      note: "shared machine: other workloads ran at the same time",
    },
    meridian: settings.meridian,
    distribution: settings.distribution ?? { version: distributionVersion() },
    ...(raw.auth ? { auth: authSettings } : {}),
    targets: { ...TARGETS, ...(pushforms ? { pushforms: PUSHFORM_GOALS } : {}) },
    tools: {
      get: tool ?? "wrk -t1 (Lua done() hook for percentiles)",
      head: tool ?? "loadgen.ts (wrk cannot do HEAD)",
    },
  };
  const md = [
    `## Results ${started.toISOString().slice(0, 10)} — medians of ${runs} run(s)${values.quick ? " (--quick)" : ""}`,
    "",
    `Machine: ${meta.machine.cpus} × ${meta.machine.cpuModel}, ${meta.machine.memoryGiB} GiB, shared; ` +
      `load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}. ` +
      `Meridian fsync: ${String((settings.meridian ?? authSettings["meridian, auth off"])?.fsync ?? (raw.replication || pushforms ? !values["no-fsync"] : "n/a"))}. ${meta.distribution.version ?? ""}`,
    "",
    markdown(summary, labels),
    ...(pushforms
      ? [
          "",
          `### Real client forms (interleaved rounds: both registries per round, operations back to back)`,
          "",
          pushformsMarkdown(pushforms, sizes, skopeoLayers),
        ]
      : []),
  ].join("\n");
  if (only.length > 0) {
    const file = join(resultsDir, `${stamp}${values.quick ? "-quick" : ""}.json`);
    writeFileSync(file, `${JSON.stringify({ meta, summary, raw: { ...raw, pushforms } }, null, 2)}\n`);
    writeFileSync(file.replace(/\.json$/, ".md"), `${md}\n`);
    process.stdout.write(`${md}\n`);
    say(`results: ${file}`);
  }
  for (const name of companions) {
    const child = runCompanion(name, companionArgs(name, runs, values.quick ?? false), say);
    stopCompanion = child.stop;
    await child.done;
    stopCompanion = undefined;
  }
}

/** The companion running now, stopped with this process (companions.ts). */
let stopCompanion: (() => void) | undefined;

/**
 * The auth suite: per run, each registry twice side by side, authentication
 * off and on. The registries take turns going first, and the variants
 * within a registry are measured in reverse order every other run.
 */
async function authRuns(
  runs: number,
  sizes: Sizes,
  options: TargetOptions,
  tool: Tool | undefined,
  settings: Record<string, Record<string, unknown>>,
): Promise<Partial<Record<TargetName, AuthPoint[][]>>> {
  const out: Partial<Record<TargetName, AuthPoint[][]>> = {};
  const password = randomBytes(12).toString("base64url");
  for (let run = 1; run <= runs; run++) {
    const order: TargetName[] = run % 2 === 1 ? ["meridian", "distribution"] : ["distribution", "meridian"];
    for (const name of order) {
      say(`auth: run ${run}/${runs}, ${name}`);
      const { result, settings: offSettings } = await withTarget(name, options, async (off) => {
        const { result, settings: onSettings } = await withTarget(
          name,
          { ...options, auth: { password } },
          (on) => authSuite(off, on, sizes, { tool, reverse: run % 2 === 0 }),
        );
        settings[`${name}, auth on`] = onSettings;
        return result;
      });
      settings[`${name}, auth off`] = offSettings;
      out[name] = [...(out[name] ?? []), result];
      say(`auth: run ${run}/${runs}, ${name}: ${brief(result)}`);
    }
  }
  return out;
}

function brief(result: unknown): string {
  if (Array.isArray(result)) {
    return result
      .map(
        (p) =>
          `${p.endpoint}${p.credential ? ` [${p.credential}]` : ""}@${p.concurrency}=${Math.round(p.rps)}/s` +
          `${p.errors ? ` (${p.errors} errors)` : ""}`,
      )
      .join(", ");
  }
  return JSON.stringify(result, (k, v) => (typeof v === "number" && k !== "" ? Number(v.toFixed(3)) : v));
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    say(`${signal}: stopping the registries`);
    stopCompanion?.();
    Promise.allSettled([...[...active].map((t) => t.stop()), stopReplication()]).then(() =>
      process.exit(130),
    );
  });
}

main().catch(async (err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  await Promise.allSettled([...[...active].map((t) => t.stop()), stopReplication()]);
  process.exit(1);
});
