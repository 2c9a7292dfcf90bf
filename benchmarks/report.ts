/**
 * Medians over runs, ratios Meridian / Distribution, the targets, and the
 * markdown tables printed at the end (and pasted into README.md).
 */
import type { TargetName } from "./servers.js";
import type { BlobRun, ImagesRun, MemoryRun, SmallPoint } from "./suites.js";

export type PerTarget<T> = Partial<Record<TargetName, T[]>>;

export interface RawResults {
  blob?: PerTarget<BlobRun>;
  small?: PerTarget<SmallPoint[]>;
  images?: PerTarget<ImagesRun>;
  memory?: PerTarget<MemoryRun>;
}

export const TARGETS = {
  pushRatio: 2,
  pullRatio: 1,
  smallRpsRatio: 3,
  smallCpuRatio: 0.2,
  imagePushTimeRatio: 0.4,
  memoryMiB: 200,
};

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export interface Row {
  measure: string;
  meridian: number;
  distribution: number;
  ratio: number;
  /** "≥ 2" etc.; empty when there is no target. */
  target: string;
  met?: boolean;
}

export interface SmallRow {
  endpoint: string;
  concurrency: number;
  tool: string;
  meridianRps: number;
  distributionRps: number;
  rpsRatio: number;
  rpsMet: boolean;
  meridianP99Ms: number;
  distributionP99Ms: number;
  meridianCpuUs: number;
  meridianNatsCpuUs: number;
  distributionCpuUs: number;
  cpuRatio: number;
  cpuMet: boolean;
  errors: number;
}

export interface Summary {
  blob?: Row[];
  small?: SmallRow[];
  images?: Row[];
  memory?: Row[];
}

const at = <T>(runs: T[] | undefined, pick: (r: T) => number) => median((runs ?? []).map(pick));

function row(measure: string, m: number, d: number, target?: { op: "≥" | "≤"; value: number }): Row {
  const ratio = m / d;
  return {
    measure,
    meridian: m,
    distribution: d,
    ratio,
    target: target ? `${target.op} ${target.value}×` : "",
    met: target ? (target.op === "≥" ? ratio >= target.value : ratio <= target.value) : undefined,
  };
}

export function summarize(raw: RawResults): Summary {
  const out: Summary = {};
  if (raw.blob) {
    const m = raw.blob.meridian;
    const d = raw.blob.distribution;
    out.blob = [
      row(
        "push, monolithic (MiB/s)",
        at(m, (r) => r.pushMonolithicMiBs),
        at(d, (r) => r.pushMonolithicMiBs),
        { op: "≥", value: TARGETS.pushRatio },
      ),
      row(
        "push, chunked (MiB/s)",
        at(m, (r) => r.pushChunkedMiBs),
        at(d, (r) => r.pushChunkedMiBs),
        { op: "≥", value: TARGETS.pushRatio },
      ),
      row(
        "pull (MiB/s)",
        at(m, (r) => r.pullMiBs),
        at(d, (r) => r.pullMiBs),
        { op: "≥", value: TARGETS.pullRatio },
      ),
      row(
        "server CPU s, push monolithic (Meridian: node + nats)",
        at(m, (r) => r.cpu.pushMonolithic.server + (r.cpu.pushMonolithic.nats ?? 0)),
        at(d, (r) => r.cpu.pushMonolithic.server),
      ),
      row(
        "server CPU s, push chunked (Meridian: node + nats)",
        at(m, (r) => r.cpu.pushChunked.server + (r.cpu.pushChunked.nats ?? 0)),
        at(d, (r) => r.cpu.pushChunked.server),
      ),
      row(
        "server CPU s, pull",
        at(m, (r) => r.cpu.pull.server),
        at(d, (r) => r.cpu.pull.server),
      ),
      row(
        "client CPU s, push monolithic + chunked + pull",
        at(m, (r) => r.cpu.pushMonolithic.client + r.cpu.pushChunked.client + r.cpu.pull.client),
        at(d, (r) => r.cpu.pushMonolithic.client + r.cpu.pushChunked.client + r.cpu.pull.client),
      ),
    ];
  }
  if (raw.small) {
    const rows: SmallRow[] = [];
    const m = raw.small.meridian ?? [];
    const d = raw.small.distribution ?? [];
    const keys = (m[0] ?? d[0] ?? []).map((p) => [p.endpoint, p.concurrency] as const);
    for (const [endpoint, c] of keys) {
      const pick = (runs: SmallPoint[][]) =>
        runs.map((r) => r.find((p) => p.endpoint === endpoint && p.concurrency === c)!).filter(Boolean);
      const mp = pick(m);
      const dp = pick(d);
      const mRps = median(mp.map((p) => p.rps));
      const dRps = median(dp.map((p) => p.rps));
      const mCpu = median(mp.map((p) => p.cpuUsPerReq));
      const dCpu = median(dp.map((p) => p.cpuUsPerReq));
      rows.push({
        endpoint,
        concurrency: c,
        tool: (mp[0] ?? dp[0])?.tool ?? "",
        meridianRps: mRps,
        distributionRps: dRps,
        rpsRatio: mRps / dRps,
        rpsMet: mRps / dRps >= TARGETS.smallRpsRatio,
        meridianP99Ms: median(mp.map((p) => p.p99Ms)),
        distributionP99Ms: median(dp.map((p) => p.p99Ms)),
        meridianCpuUs: mCpu,
        meridianNatsCpuUs: median(mp.map((p) => p.natsCpuUsPerReq ?? 0)),
        distributionCpuUs: dCpu,
        cpuRatio: mCpu / dCpu,
        cpuMet: mCpu / dCpu <= TARGETS.smallCpuRatio,
        errors: [...mp, ...dp].reduce((n, p) => n + p.errors, 0),
      });
    }
    out.small = rows;
  }
  if (raw.images) {
    const m = raw.images.meridian;
    const d = raw.images.distribution;
    out.images = [
      row(
        "push time (s)",
        at(m, (r) => r.pushSec),
        at(d, (r) => r.pushSec),
        { op: "≤", value: TARGETS.imagePushTimeRatio },
      ),
      row(
        "pull time (s)",
        at(m, (r) => r.pullSec),
        at(d, (r) => r.pullSec),
      ),
      row(
        "server CPU s, push (Meridian: node + nats)",
        at(m, (r) => r.cpu.push.server + (r.cpu.push.nats ?? 0)),
        at(d, (r) => r.cpu.push.server),
      ),
      row(
        "  of which nats-server",
        at(m, (r) => r.cpu.push.nats ?? 0),
        Number.NaN,
      ),
      row(
        "server CPU s, pull",
        at(m, (r) => r.cpu.pull.server),
        at(d, (r) => r.cpu.pull.server),
      ),
      row(
        "client CPU s, push + pull",
        at(m, (r) => r.cpu.push.client + r.cpu.pull.client),
        at(d, (r) => r.cpu.push.client + r.cpu.pull.client),
      ),
    ];
  }
  if (raw.memory) {
    const m = raw.memory.meridian;
    const d = raw.memory.distribution;
    const hwm = at(m, (r) => r.hwmMiB);
    out.memory = [
      {
        ...row(
          "peak RSS, VmHWM (MiB)",
          hwm,
          at(d, (r) => r.hwmMiB),
        ),
        target: `≤ ${TARGETS.memoryMiB} MiB`,
        met: hwm <= TARGETS.memoryMiB,
      },
      row(
        "peak RSS sampled while pushing (MiB)",
        at(m, (r) => r.peakPushMiB),
        at(d, (r) => r.peakPushMiB),
      ),
      row(
        "peak RSS sampled while pulling (MiB)",
        at(m, (r) => r.peakPullMiB),
        at(d, (r) => r.peakPullMiB),
      ),
      row(
        "RSS before (MiB)",
        at(m, (r) => r.baselineMiB),
        at(d, (r) => r.baselineMiB),
      ),
      row(
        "nats-server peak RSS (MiB)",
        at(m, (r) => r.natsPeakMiB ?? Number.NaN),
        Number.NaN,
      ),
      row(
        "push (MiB/s)",
        at(m, (r) => r.pushMiBs),
        at(d, (r) => r.pushMiBs),
      ),
      row(
        "pull (MiB/s)",
        at(m, (r) => r.pullMiBs),
        at(d, (r) => r.pullMiBs),
      ),
    ];
  }
  return out;
}

function fmt(n: number, digits?: number): string {
  if (!Number.isFinite(n)) return "–";
  const d = digits ?? (Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2);
  return n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

function verdict(met: boolean | undefined): string {
  return met === undefined ? "" : met ? "yes" : "**no**";
}

function table(rows: Row[]): string[] {
  const lines = [
    "| measure | Meridian | Distribution | Meridian / Distribution | target | met |",
    "|---|---:|---:|---:|---|---|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.measure} | ${fmt(r.meridian)} | ${fmt(r.distribution)} | ${fmt(r.ratio)} | ${r.target} | ${verdict(r.met)} |`,
    );
  }
  return lines;
}

export function markdown(summary: Summary, labels: { blob: string; images: string; memory: string }): string {
  const out: string[] = [];
  if (summary.blob) out.push(`### One ${labels.blob} blob`, "", ...table(summary.blob), "");
  if (summary.small) {
    out.push(
      "### Small requests",
      "",
      "CPU is the registry process's utime+stime per request (Meridian: the node process; its",
      "nats-server's share is shown after the slash and is not in the ratio). p99 in ms.",
      "",
      "| request | conns | tool | Meridian req/s | Distribution req/s | ratio (≥ 3×) | p99 M | p99 D | CPU µs/req M (+nats) | CPU µs/req D | ratio (≤ 0.2×) | errors |",
      "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const r of summary.small) {
      out.push(
        `| ${r.endpoint} | ${r.concurrency} | ${r.tool} | ${fmt(r.meridianRps, 0)} | ${fmt(r.distributionRps, 0)} | ` +
          `${fmt(r.rpsRatio)} ${r.rpsMet ? "✓" : "✗"} | ${fmt(r.meridianP99Ms)} | ${fmt(r.distributionP99Ms)} | ` +
          `${fmt(r.meridianCpuUs)} / ${fmt(r.meridianNatsCpuUs)} | ${fmt(r.distributionCpuUs)} | ` +
          `${fmt(r.cpuRatio)} ${r.cpuMet ? "✓" : "✗"} | ${r.errors} |`,
      );
    }
    out.push("");
  }
  if (summary.images) out.push(`### Images: ${labels.images}`, "", ...table(summary.images), "");
  if (summary.memory)
    out.push(`### Meridian node memory, ${labels.memory} blob in then out`, "", ...table(summary.memory), "");
  return out.join("\n");
}
