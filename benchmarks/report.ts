/**
 * Medians over runs, ratios Meridian / Distribution, the targets, and the
 * markdown tables printed at the end (and pasted into README.md).
 */
import { MiB } from "./data.js";
import { bucketQuantile, percentile, type ReplicationResults } from "./replication.js";
import type { TargetName } from "./servers.js";
import type { AuthPoint, BlobRun, Credential, ImagesRun, MemoryRun, SmallPoint } from "./suites.js";

export type PerTarget<T> = Partial<Record<TargetName, T[]>>;

export interface RawResults {
  blob?: PerTarget<BlobRun>;
  small?: PerTarget<SmallPoint[]>;
  /** Per run, the points of the registry started with authentication off and then on. */
  auth?: PerTarget<AuthPoint[]>;
  images?: PerTarget<ImagesRun>;
  memory?: PerTarget<MemoryRun>;
  /** One mesh, not a comparison: Meridian only. */
  replication?: ReplicationResults;
}

export const TARGETS = {
  pushRatio: 2,
  pullRatio: 1,
  smallRpsRatio: 3,
  smallCpuRatio: 0.2,
  imagePushTimeRatio: 0.4,
  memoryMiB: 200,
  /** Authentication costs at most this share of Meridian's small-request throughput. */
  authCost: 0.1,
  /** Replication lag p99 ≤ this × the local push time of the same image. */
  replicationLagRatio: 2,
  /** A big image replicates at ≥ this × a plain Node HTTP stream's throughput. */
  replicationThroughputRatio: 0.7,
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

/** One registry, one request, one load: authentication off against on with one kind of credential. */
export interface AuthRow {
  endpoint: string;
  concurrency: number;
  tool: string;
  target: TargetName;
  credential: Credential;
  offRps: number;
  onRps: number;
  /** 1 − on/off, of the medians. */
  cost: number;
  /** Against TARGETS.authCost; Meridian only (Distribution is the reference). */
  met?: boolean;
  /** The same, run by run (off and on of one run were measured minutes apart). */
  runCosts: number[];
  offP99Ms: number;
  onP99Ms: number;
  offCpuUs: number;
  onCpuUs: number;
  errors: number;
}

/** Meridian with authentication on against Distribution with htpasswd (Basic, bcrypt). */
export interface AuthVsRow {
  endpoint: string;
  concurrency: number;
  credential: Credential;
  meridianRps: number;
  distributionRps: number;
  ratio: number;
}

export interface Summary {
  blob?: Row[];
  small?: SmallRow[];
  auth?: { rows: AuthRow[]; versus: AuthVsRow[] };
  images?: Row[];
  memory?: Row[];
  replication?: { small: ValueRow[]; big: ValueRow[] };
}

/** A single-system figure (replication): median over runs, with its target if any. */
export interface ValueRow {
  measure: string;
  value: number;
  target: string;
  met?: boolean;
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
  if (raw.auth) out.auth = summarizeAuth(raw.auth);
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
  if (raw.replication) out.replication = summarizeReplication(raw.replication);
  return out;
}

function summarizeAuth(raw: PerTarget<AuthPoint[]>): { rows: AuthRow[]; versus: AuthVsRow[] } {
  const rows: AuthRow[] = [];
  const versus: AuthVsRow[] = [];
  const keys = (raw.meridian?.[0] ?? raw.distribution?.[0] ?? [])
    .filter((p) => p.auth === "off")
    .map((p) => [p.endpoint, p.concurrency] as const);
  const pick = (runs: AuthPoint[][], endpoint: string, c: number, credential: Credential) =>
    runs.map((r) =>
      r.find((p) => p.endpoint === endpoint && p.concurrency === c && p.credential === credential),
    );
  for (const [endpoint, c] of keys) {
    for (const target of ["meridian", "distribution"] as const) {
      const runs = raw[target] ?? [];
      const off = pick(runs, endpoint, c, "none");
      const offRps = median(off.map((p) => p?.rps ?? Number.NaN));
      const credentials: Credential[] = target === "meridian" ? ["bearer", "basic"] : ["basic"];
      for (const credential of credentials) {
        const on = pick(runs, endpoint, c, credential);
        if (on.every((p) => p === undefined)) continue;
        const onRps = median(on.map((p) => p?.rps ?? Number.NaN));
        const cost = 1 - onRps / offRps;
        rows.push({
          endpoint,
          concurrency: c,
          tool: (on.find(Boolean) ?? off.find(Boolean))?.tool ?? "",
          target,
          credential,
          offRps,
          onRps,
          cost,
          met: target === "meridian" ? cost <= TARGETS.authCost : undefined,
          runCosts: on.map((p, i) => (p && off[i] ? 1 - p.rps / off[i].rps : Number.NaN)),
          offP99Ms: median(off.map((p) => p?.p99Ms ?? Number.NaN)),
          onP99Ms: median(on.map((p) => p?.p99Ms ?? Number.NaN)),
          offCpuUs: median(off.map((p) => p?.cpuUsPerReq ?? Number.NaN)),
          onCpuUs: median(on.map((p) => p?.cpuUsPerReq ?? Number.NaN)),
          errors: [...off, ...on].reduce((n, p) => n + (p?.errors ?? 0), 0),
        });
      }
    }
    const dist = rows.find(
      (r) => r.target === "distribution" && r.endpoint === endpoint && r.concurrency === c,
    );
    for (const r of rows) {
      if (r.target !== "meridian" || r.endpoint !== endpoint || r.concurrency !== c) continue;
      versus.push({
        endpoint,
        concurrency: c,
        credential: r.credential,
        meridianRps: r.onRps,
        distributionRps: dist?.onRps ?? Number.NaN,
        ratio: r.onRps / (dist?.onRps ?? Number.NaN),
      });
    }
  }
  return { rows, versus };
}

const CREDENTIAL_LABEL: Record<Credential, string> = {
  none: "none",
  bearer: "Bearer token",
  basic: "Basic, every request",
};

function summarizeReplication(r: ReplicationResults): { small: ValueRow[]; big: ValueRow[] } {
  const runs = r.runs;
  const dsts = Object.keys(runs[0]?.big.lagMs ?? {}).sort();
  const med = (pick: (run: (typeof runs)[number]) => number) => median(runs.map(pick));
  const lagTarget = TARGETS.replicationLagRatio;
  const pushP50 = med((run) =>
    percentile(
      run.images.map((i) => i.pushMs),
      0.5,
    ),
  );
  const small: ValueRow[] = [
    { measure: "local push time p50 (ms): 2 blobs + manifest PUT", value: pushP50, target: "" },
  ];
  for (const d of dsts) {
    const p99 = med((run) =>
      percentile(
        run.images.map((i) => i.lagMs[d]!),
        0.99,
      ),
    );
    small.push(
      {
        measure: `lag at ${d}, p50 (ms)`,
        value: med((run) =>
          percentile(
            run.images.map((i) => i.lagMs[d]!),
            0.5,
          ),
        ),
        target: "",
      },
      {
        measure: `lag at ${d}, p99 (ms)`,
        value: p99,
        target: `≤ ${lagTarget}× push p50 = ${fmt(lagTarget * pushP50)} ms`,
        met: p99 <= lagTarget * pushP50,
      },
      {
        measure: `lag at ${d} / push time of the same image, worst image`,
        value: med((run) => Math.max(...run.images.map((i) => i.lagMs[d]! / i.pushMs))),
        target: `≤ ${lagTarget}`,
        met: med((run) => Math.max(...run.images.map((i) => i.lagMs[d]! / i.pushMs))) <= lagTarget,
      },
      {
        measure: `worker ${d} histogram (src a): mean (ms), all events`,
        value: med((run) => (run.worker[d]!.small.sumSec / run.worker[d]!.small.count) * 1000),
        target: "",
      },
      {
        measure: `worker ${d} histogram (src a): p99 bucket bound (ms)`,
        value: med((run) => bucketQuantile(run.worker[d]!.small, 0.99) * 1000),
        target: "",
      },
    );
  }
  const push = med((run) => run.big.pushMs);
  // Issue 14: the target is a TLS stream (the mesh's mutual TLS); results from before it have only plain.
  const hasTls = runs.every((run) => run.tls !== undefined);
  const stream = med((run) => (hasTls ? run.tls!.singleMiBs : run.stream.singleMiBs));
  const streamName = hasTls ? "TLS stream" : "plain stream";
  const thrTarget = TARGETS.replicationThroughputRatio;
  const big: ValueRow[] = [
    { measure: "local push time (ms): config + layer + manifest", value: push, target: "" },
    {
      measure: "  of which the layer, monolithic (MiB/s)",
      value: med((run) => run.big.bytes / MiB / (run.big.layerPushMs / 1000)),
      target: "",
    },
  ];
  for (const d of dsts) {
    const lag = med((run) => run.big.lagMs[d]!);
    const mibs = med((run) => run.big.replicationMiBs[d]!);
    big.push(
      {
        measure: `lag at ${d} from the manifest's 201 (ms)`,
        value: lag,
        target: `≤ ${lagTarget}× push = ${fmt(lagTarget * push)} ms`,
        met: lag <= lagTarget * push,
      },
      {
        measure: `layer push start → pullable at ${d} (ms)`,
        value: med((run) => run.big.fromLayerStartMs[d]!),
        target: "",
      },
      {
        measure: `layer's 201 → pullable at ${d} (ms)`,
        value: med((run) => run.big.fromLayer201Ms[d]!),
        target: "",
      },
      {
        measure: `replication throughput to ${d} (MiB/s)`,
        value: mibs,
        target: `≥ ${thrTarget}× ${streamName} = ${fmt(thrTarget * stream)}`,
        met: mibs >= thrTarget * stream,
      },
      {
        measure: `  ratio to the ${streamName} (${d})`,
        value: mibs / stream,
        target: `≥ ${thrTarget}`,
        met: mibs / stream >= thrTarget,
      },
    );
    if (hasTls)
      big.push({
        measure: `  ratio to two TLS streams at once, each (${d})`,
        value: mibs / med((run) => run.tls!.pairEachMiBs),
        target: "",
      });
  }
  if (hasTls)
    big.push(
      { measure: "TLS stream (mesh mTLS) on loopback (MiB/s)", value: stream, target: "" },
      {
        measure: "two TLS streams at once, each (MiB/s)",
        value: med((run) => run.tls!.pairEachMiBs),
        target: "",
      },
      {
        measure: "TLS stream: CPU ms per MiB, sender / receiver",
        value: med((run) => run.tls!.serverCpuMsPerMiB),
        target: `receiver ${fmt(med((run) => run.tls!.clientCpuMsPerMiB))}`,
      },
    );
  big.push(
    {
      measure: "plain node:http stream on loopback (MiB/s)",
      value: med((run) => run.stream.singleMiBs),
      target: "",
    },
    {
      measure: "two plain streams at once, each (MiB/s)",
      value: med((run) => run.stream.pairEachMiBs),
      target: "",
    },
  );
  // CPU per MiB copied: a's peer serves every destination its own copy.
  const mibCopied = r.sizes.bigBytes / MiB;
  big.push({
    measure: "CPU ms per MiB, a peer (per MiB served, all destinations)",
    value: med((run) => ((run.big.cpu["a.peer"] ?? Number.NaN) * 1000) / (mibCopied * dsts.length)),
    target: "",
  });
  for (const d of dsts)
    big.push({
      measure: `CPU ms per MiB, ${d} worker`,
      value: med((run) => ((run.big.cpu[`${d}.worker`] ?? Number.NaN) * 1000) / mibCopied),
      target: "",
    });
  // The same net of what each process spends per second anyway under the phase's probes
  // (restCpuPerSec × the window): the per-byte cost, less distorted by a slow, loaded run.
  const net = (run: (typeof runs)[number], key: string, mib: number) =>
    run.big.restCpuPerSec === undefined || run.big.cpuWindowSec === undefined
      ? Number.NaN
      : (((run.big.cpu[key] ?? Number.NaN) - (run.big.restCpuPerSec[key] ?? 0) * run.big.cpuWindowSec) *
          1000) /
        mib;
  big.push({
    measure: "CPU ms per MiB net of rest, a peer (per MiB served)",
    value: med((run) => net(run, "a.peer", mibCopied * dsts.length)),
    target: "",
  });
  for (const d of dsts)
    big.push({
      measure: `CPU ms per MiB net of rest, ${d} worker`,
      value: med((run) => net(run, `${d}.worker`, mibCopied)),
      target: "",
    });
  for (const [key, label] of [
    ["a.node", "CPU s, a node"],
    ["a.peer", "CPU s, a peer"],
    ["a.nats", "CPU s, a nats-server"],
  ] as const) {
    big.push({
      measure: `${label} (whole big image)`,
      value: med((run) => run.big.cpu[key] ?? Number.NaN),
      target: "",
    });
  }
  for (const d of dsts) {
    for (const role of ["worker", "node", "nats"]) {
      big.push({
        measure: `CPU s, ${d} ${role === "nats" ? "nats-server" : role} (whole big image)`,
        value: med((run) => run.big.cpu[`${d}.${role}`] ?? Number.NaN),
        target: "",
      });
    }
  }
  big.push({
    measure: "wall time of the whole big image (s)",
    value: med((run) => run.big.wallSec),
    target: "",
  });
  return { small, big };
}

function valueTable(rows: ValueRow[]): string[] {
  const lines = ["| measure | value | target | met |", "|---|---:|---|---|"];
  for (const r of rows) lines.push(`| ${r.measure} | ${fmt(r.value)} | ${r.target} | ${verdict(r.met)} |`);
  return lines;
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

export function markdown(
  summary: Summary,
  labels: { blob: string; images: string; memory: string; replication?: { small: string; big: string } },
): string {
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
  if (summary.auth) {
    const name = (t: TargetName) => (t === "meridian" ? "Meridian" : "Distribution");
    const pct = (x: number) =>
      Number.isFinite(x) ? `${x < 0 ? "−" : ""}${Math.abs(x * 100).toFixed(1)} %` : "–";
    out.push(
      "### Authentication off and on",
      "",
      "Each run starts each registry twice side by side, authentication off (requests carry no",
      "credentials) and on; the variants of a point take turns in short slices. Cost = 1 − on/off",
      "of the medians over runs; `runs` lists each run's cost. CPU is the registry process's",
      "utime+stime per request (the change with authentication in brackets); p99 in ms.",
      "",
      `| request | conns | tool | registry | credentials | req/s off | req/s on | cost (≤ ${TARGETS.authCost * 100} %) | runs | p99 off / on | CPU µs/req off / on | errors |`,
      "|---|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|",
    );
    for (const r of summary.auth.rows) {
      const mark = r.met === undefined ? "" : r.met ? " ✓" : " ✗";
      out.push(
        `| ${r.endpoint} | ${r.concurrency} | ${r.tool} | ${name(r.target)} | ${CREDENTIAL_LABEL[r.credential]} | ` +
          `${fmt(r.offRps, 0)} | ${fmt(r.onRps, 0)} | ${pct(r.cost)}${mark} | ${r.runCosts.map(pct).join(", ")} | ` +
          `${fmt(r.offP99Ms)} / ${fmt(r.onP99Ms)} | ${fmt(r.offCpuUs)} / ${fmt(r.onCpuUs)} ` +
          `(${r.onCpuUs >= r.offCpuUs ? "+" : ""}${pct(r.onCpuUs / r.offCpuUs - 1)}) | ${r.errors} |`,
      );
    }
    out.push(
      "",
      "Meridian with authentication on ÷ Distribution with htpasswd (Basic on every request):",
      "",
      "| request | conns | Meridian credentials | Meridian req/s | Distribution req/s | ratio |",
      "|---|---:|---|---:|---:|---:|",
    );
    for (const v of summary.auth.versus) {
      out.push(
        `| ${v.endpoint} | ${v.concurrency} | ${CREDENTIAL_LABEL[v.credential]} | ${fmt(v.meridianRps, 0)} | ` +
          `${fmt(v.distributionRps, 0)} | ${fmt(v.ratio)} |`,
      );
    }
    out.push("");
  }
  if (summary.images) out.push(`### Images: ${labels.images}`, "", ...table(summary.images), "");
  if (summary.memory)
    out.push(`### Meridian node memory, ${labels.memory} blob in then out`, "", ...table(summary.memory), "");
  if (summary.replication) {
    out.push(
      `### Replication: ${labels.replication?.small ?? "small images"}`,
      "",
      ...valueTable(summary.replication.small),
      "",
      `### Replication: ${labels.replication?.big ?? "one big image"}`,
      "",
      ...valueTable(summary.replication.big),
      "",
    );
  }
  return out.join("\n");
}
