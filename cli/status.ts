/**
 * `meridian status`: the mesh at a glance — per region: whether its peer
 * answers, the round trip to it from here, what each peer sees of the others
 * (up, smoothed RTT), and replication into the region from each source: lag
 * p50/p99 over the last 5 minutes of replications (replication/links.ts;
 * not since the worker started), events pending (the source's last sequence
 * minus what the region has handled), the age of the oldest of them, when
 * the link last moved, bytes copied; and for
 * failover, the highest failover epoch each region knows and, when a region
 * refuses home writes, why (its fence).
 * A table by default, JSON with --json. Reads <data>/mesh.json (or --mesh).
 *
 * Bounded whatever the regions do: every call has its own deadline (the
 * peer's Status `STATUS_DEADLINE_MS`, each metrics page `METRICS_DEADLINE_MS`,
 * its socket destroyed when it passes, so a frozen region leaves nothing
 * open behind), the regions are asked in parallel (and a region's Status
 * and metrics pages at once), and so `status` ends
 * within about 2 × 3 s even when a region accepts connections and never
 * answers (SIGSTOP, a blackholed link). It exits 1 when a region's peer did
 * not answer, naming each such region on stderr, and exits within
 * LINGER_MS of its answer even if a frozen peer's connection attempt is left
 * open.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { join } from "node:path";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { type Mesh, parseMesh } from "../protocol/mesh.js";
import { RECENT_LAG_WINDOW_MS } from "../replication/links.js";
import { type ControlState, controlFile } from "./supervisor.js";
import { table } from "./table.js";

export interface RegionStatus {
  region: string;
  up: boolean;
  rttMs?: number;
  appliedSeq?: number;
  /** The highest failover epoch the region knows. */
  epoch?: number;
  /** Why the region refuses writes as a repository's home now ("" when it does not). */
  fence?: string;
  error?: string;
  /** What this region's peer sees of the others. */
  peers: Record<string, { up: boolean; rttMs?: number }>;
  /** Replication into this region, by source region. */
  replication: Record<string, LinkStatus>;
}

/** One link (source → region) as its worker tells it (replication/links.ts). */
export interface LinkStatus {
  /** Lag of events replicated within the last `windowSeconds`, p50 / p99 (absent: none). */
  lagP50Ms?: number;
  lagP99Ms?: number;
  windowSeconds?: number;
  /** Events of the source not yet handled here. */
  pending?: number;
  /** Age of the oldest of them, ms; 0 when caught up. */
  oldestPendingMs?: number;
  sourceLastSeq?: number;
  appliedSeq?: number;
  /** When the link last handled an event (ISO time; absent: not since the worker started). */
  lastSuccessAt?: string;
  /** When the source's server last answered the worker (ISO time; absent: never). */
  sourceCheckedAt?: string;
  bytes?: number;
  /** Events replicated since the worker started. */
  events?: number;
}

export async function status(options: {
  dataDir: string;
  meshFile?: string;
  json: boolean;
}): Promise<number> {
  const meshFile = options.meshFile ?? join(options.dataDir, "mesh.json");
  let mesh: Mesh;
  try {
    mesh = parseMesh(JSON.parse(readFileSync(meshFile, "utf8")));
  } catch (err) {
    process.stderr.write(`meridian status: cannot read ${meshFile}: ${(err as Error).message}\n`);
    return 2;
  }
  const [report, s3] = await Promise.all([collectStatus(mesh), s3Status(options.dataDir)]);
  process.stdout.write(
    options.json
      ? `${JSON.stringify({ regions: report, ...(s3 === undefined ? {} : { s3 }) }, null, 2)}\n`
      : `${formatTable(report)}${s3 === undefined ? "" : `S3 server ${s3.endpoint}: ${s3.up ? "up" : "down"}${s3.pid === null ? "" : ` (pid ${s3.pid})`}\n`}`,
  );
  if (s3?.up === false)
    process.stderr.write(
      `meridian status: the S3 server of 'meridian up' (${s3.endpoint}) does not answer${s3.pid === null ? " (it is being restarted)" : ""}\n`,
    );
  const held = heldRegions(options.dataDir);
  for (const r of report.filter((x) => !x.up))
    process.stderr.write(
      `meridian status: region ${r.region} is unreachable: ${r.error ?? "no answer"}${held.has(r.region) ? ` (held down by 'meridian region stop'; 'meridian region start ${r.region}' brings it back)` : ""}\n`,
    );
  const code = report.every((r) => r.up) && s3?.up !== false ? 0 : 1;
  // The CLI's end (status() is the `meridian status` command). grpc-js keeps a
  // connection attempt to a frozen peer (a TLS handshake that never ends) open
  // after its channel is closed and the call's deadline passed; that socket
  // alone would keep the process alive for ever. Unref'd: a process with
  // nothing left open exits at once without it.
  setTimeout(() => process.exit(code), LINGER_MS).unref();
  return code;
}

/** Regions the `up` running on `dataDir` holds down (cli/supervisor.ts's up.json; none without it). */
function heldRegions(dataDir: string): Set<string> {
  try {
    const state = JSON.parse(readFileSync(controlFile(dataDir), "utf8")) as ControlState;
    return new Set(Object.entries(state.regions).flatMap(([name, r]) => (r.held ? [name] : [])));
  } catch {
    return new Set();
  }
}

/**
 * `up --s3`: the S3 server named in up.json and whether it answers HTTP at
 * all (any status: it refuses an unsigned request) within the metrics
 * deadline. None without up.json or without --s3.
 */
async function s3Status(
  dataDir: string,
): Promise<{ endpoint: string; up: boolean; pid: number | null } | undefined> {
  let state: ControlState;
  try {
    state = JSON.parse(readFileSync(controlFile(dataDir), "utf8")) as ControlState;
  } catch {
    return undefined;
  }
  if (state.s3 === undefined) return undefined;
  const pid = state.s3.pids.s3;
  const up = await new Promise<boolean>((resolve) => {
    const req = http.get(state.s3!.endpoint, { agent: false }, (res) => {
      res.resume();
      resolve(true);
    });
    const timer = setTimeout(() => req.destroy(new Error("deadline")), METRICS_DEADLINE_MS);
    req.once("error", () => resolve(false));
    req.once("close", () => clearTimeout(timer));
  });
  return { endpoint: state.s3.endpoint, up, pid: typeof pid === "number" ? pid : null };
}

export async function collectStatus(mesh: Mesh): Promise<RegionStatus[]> {
  // Call the peers as the first region (any mesh member's certificate will do locally).
  const credentials = peerCredentials(mesh, mesh.regions[0]!.name);
  return Promise.all(
    mesh.regions.map(async (r): Promise<RegionStatus> => {
      const out: RegionStatus = { region: r.name, up: false, peers: {}, replication: {} };
      const client = new PeerClient(r.name, r.grpc, credentials);
      // The metrics pages are asked at the same time as Status: a frozen region
      // costs one deadline, not three in a row (chaos/gray-failures.ts, region stop).
      const peerPage = r.metrics?.peer ? fetchText(`${r.metrics.peer}/metrics`) : undefined;
      const workerPage = r.metrics?.worker ? fetchText(`${r.metrics.worker}/metrics`) : undefined;
      try {
        const started = performance.now();
        const reply = await client.status("meridian-status", { timeoutMs: STATUS_DEADLINE_MS });
        out.rttMs = round(performance.now() - started);
        out.up = true;
        out.appliedSeq = Number(reply.applied[r.name] ?? 0);
        out.epoch = Number(reply.epoch);
        out.fence = reply.fence;
      } catch (err) {
        out.error = (err as Error).message;
      } finally {
        client.close();
      }
      const peerText = await peerPage;
      for (const s of parseProm(peerText ?? "")) {
        const peer = s.labels.peer;
        if (peer === undefined) continue;
        out.peers[peer] ??= { up: false };
        if (s.name === "meridian_peer_up") out.peers[peer].up = s.value === 1;
        if (s.name === "meridian_peer_rtt_seconds") out.peers[peer].rttMs = round(s.value * 1000);
      }
      const workerText = await workerPage;
      const samples = parseProm(workerText ?? "");
      for (const src of mesh.regions.map((x) => x.name).filter((n) => n !== r.name))
        out.replication[src] = linkStatus(samples, src, r.name);
      return out;
    }),
  );
}

/**
 * One link's figures from its worker's metrics page (replication/links.ts
 * names them). The lag is the worker's recent window, not the histogram
 * (that one is over everything since the worker started). Pure.
 */
export function linkStatus(samples: readonly Sample[], src: string, dst: string): LinkStatus {
  const mine = samples.filter((s) => s.labels.src === src && s.labels.dst === dst);
  const value = (name: string, quantileLabel?: string) =>
    mine.find((s) => s.name === name && s.labels.quantile === quantileLabel)?.value;
  const time = (name: string) => {
    const v = value(name);
    return v === undefined || v <= 0 ? undefined : new Date(v * 1000).toISOString();
  };
  const out: LinkStatus = {};
  const set = <K extends keyof LinkStatus>(key: K, v: LinkStatus[K] | undefined) => {
    if (v !== undefined) out[key] = v;
  };
  set("lagP50Ms", msOrUndefined(value("meridian_replication_recent_lag_seconds", "0.5")));
  set("lagP99Ms", msOrUndefined(value("meridian_replication_recent_lag_seconds", "0.99")));
  if (out.lagP50Ms !== undefined) out.windowSeconds = RECENT_WINDOW_SECONDS;
  set("pending", value("meridian_replication_pending_events"));
  set("oldestPendingMs", msOrUndefined(value("meridian_replication_oldest_pending_age_seconds")));
  set("sourceLastSeq", value("meridian_replication_source_last_seq"));
  set("appliedSeq", value("meridian_replication_applied_seq"));
  set("lastSuccessAt", time("meridian_replication_last_success_timestamp_seconds"));
  set("sourceCheckedAt", time("meridian_replication_source_checked_timestamp_seconds"));
  set("bytes", value("meridian_replication_bytes_total"));
  set("events", value("meridian_replication_lag_seconds_count"));
  return out;
}

const RECENT_WINDOW_SECONDS = RECENT_LAG_WINDOW_MS / 1000;

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Samples of a Prometheus text exposition (comments skipped). */
export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/**
 * Quantile `q` from cumulative histogram buckets, interpolating linearly
 * inside the bucket (as Prometheus' histogram_quantile does). Pure.
 */
export function quantile(buckets: Array<{ le: number; count: number }>, q: number): number | undefined {
  const sorted = [...buckets].sort((x, y) => x.le - y.le);
  const total = sorted[sorted.length - 1]?.count ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      const inBucket = b.count - prevCount;
      return inBucket === 0 ? b.le : prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket;
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

function formatTable(regions: RegionStatus[]): string {
  const window = `${RECENT_WINDOW_SECONDS / 60}m`;
  const rows: string[][] = [
    [
      "region",
      "peer",
      "rtt",
      "applied",
      "epoch",
      "from",
      `lag p50 ${window}`,
      `lag p99 ${window}`,
      "pending",
      "oldest",
      "last ok",
      "copied",
      "sees",
    ],
  ];
  const now = Date.now();
  for (const r of regions) {
    const sees = Object.entries(r.peers)
      .map(([p, s]) => `${p}:${s.up ? "up" : "DOWN"}${s.rttMs !== undefined ? `/${s.rttMs}ms` : ""}`)
      .join(" ");
    const sources = Object.entries(r.replication);
    const head = [
      r.region,
      r.up ? "up" : "DOWN",
      ms(r.rttMs),
      String(r.appliedSeq ?? "-"),
      String(r.epoch ?? "-"),
    ];
    if (sources.length === 0) rows.push([...head, "-", "-", "-", "-", "-", "-", "-", sees]);
    sources.forEach(([src, s], i) => {
      rows.push([
        ...(i === 0 ? head : ["", "", "", "", ""]),
        src,
        ms(s.lagP50Ms),
        ms(s.lagP99Ms),
        s.pending === undefined ? "-" : String(s.pending),
        s.oldestPendingMs === undefined ? "-" : age(s.oldestPendingMs),
        s.lastSuccessAt === undefined ? "-" : `${age(now - Date.parse(s.lastSuccessAt))} ago`,
        s.bytes === undefined ? "-" : bytes(s.bytes),
        i === 0 ? sees : "",
      ]);
    });
  }
  const fences = regions
    .filter((r) => r.fence !== undefined && r.fence !== "")
    .map((r) => `${r.region} refuses home writes: ${r.fence}\n`);
  // A source that has not answered its worker for a while: its pending figure is as of then.
  const silent: string[] = [];
  for (const r of regions)
    for (const [src, s] of Object.entries(r.replication)) {
      const quiet = s.sourceCheckedAt === undefined ? undefined : now - Date.parse(s.sourceCheckedAt);
      if (quiet !== undefined && quiet > SOURCE_SILENT_MS)
        silent.push(
          `${src} → ${r.region}: ${src}'s NATS has not answered ${r.region}'s worker for ${age(quiet)}; pending is as of then\n`,
        );
    }
  return table(rows) + fences.join("") + silent.join("");
}

/** Past this, a link's source is called silent (the worker asks it every 2 s). */
const SOURCE_SILENT_MS = 10_000;

/** Deadline of the peer's Status call. */
const STATUS_DEADLINE_MS = 3_000;
/** How long the command may linger after its answer for connections it could not close. */
const LINGER_MS = 500;
/** Deadline of one metrics page, from the request to its last byte. */
const METRICS_DEADLINE_MS = 3_000;

/**
 * A page's text, undefined on any failure or after METRICS_DEADLINE_MS. Its
 * own connection (no keep-alive pool), destroyed at the deadline: nothing of
 * a frozen region's connection outlives the call and keeps the CLI running.
 */
function fetchText(url: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const get = url.startsWith("https:") ? https.get : http.get;
    let answered = false;
    const req = get(url, { agent: false }, (res) => {
      answered = true;
      res.once("aborted", () => resolve(undefined));
      if (res.statusCode !== 200) {
        res.resume();
        resolve(undefined);
        return;
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.once("error", () => resolve(undefined));
    });
    const timer = setTimeout(() => req.destroy(new Error("deadline")), METRICS_DEADLINE_MS);
    req.once("error", () => resolve(undefined));
    // Closed without an answer (destroyed at the deadline, refused): nothing. With one, "end" or "error" resolves.
    req.once("close", () => {
      clearTimeout(timer);
      if (!answered) resolve(undefined);
    });
  });
}

const round = (v: number) => Math.round(v * 100) / 100;
const msOrUndefined = (s: number | undefined) => (s === undefined ? undefined : round(s * 1000));
const ms = (v: number | undefined) => (v === undefined ? "-" : `${v}ms`);
/** A duration for people: 0s, 850ms, 12s, 3m05s. */
function age(msValue: number): string {
  if (msValue <= 0) return "0s";
  if (msValue < 1000) return `${Math.round(msValue)}ms`;
  const s = Math.floor(msValue / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}
function bytes(n: number): string {
  return n >= 1 << 20
    ? `${(n / (1 << 20)).toFixed(1)}MiB`
    : n >= 1024
      ? `${(n / 1024).toFixed(1)}KiB`
      : `${n}B`;
}
