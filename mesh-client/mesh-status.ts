/**
 * The mesh as its regions tell it, for `meridian status`, `meridian lag`
 * and the dashboard (`/ui/`): per region, whether its peer answers Status and
 * the round trip, the failover epoch and fence it reports, what its peer sees
 * of the others (its metrics page: `meridian_peer_up`,
 * `meridian_peer_rtt_seconds`), and replication into it from each source as
 * its worker's metrics page tells it (replication/links.ts names the
 * figures): lag p50/p99 over the last RECENT_LAG_WINDOW_MS of replications,
 * events pending, the oldest one's age, the last success, bytes copied.
 *
 * Bounded whatever the regions do: every call has its own deadline (Status
 * STATUS_DEADLINE_MS, each metrics page METRICS_DEADLINE_MS, its socket
 * destroyed when it passes, so a frozen region leaves nothing open behind),
 * and the regions, and a region's Status and metrics pages, are asked in
 * parallel: a collection ends within about 3 s even when a region accepts
 * connections and never answers (SIGSTOP, a blackholed link).
 */
import http from "node:http";
import https from "node:https";
import type { Mesh } from "../protocol/mesh.js";
import { PeerClient, peerCredentials } from "./peer-client.js";

/** The window of the workers' recent-lag quantiles (replication/links.ts keeps them): 5 minutes. */
export const RECENT_LAG_WINDOW_MS = 5 * 60_000;
export const RECENT_WINDOW_SECONDS = RECENT_LAG_WINDOW_MS / 1000;

/** Deadline of the peer's Status call. */
export const STATUS_DEADLINE_MS = 3_000;
/** Deadline of one metrics page, from the request to its last byte. */
export const METRICS_DEADLINE_MS = 3_000;

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
  /** This region's links to external endpoints (exports and imports), from its worker's metrics page. */
  endpointLinks?: EndpointLinkFigures[];
}

/** A link between a region and an external endpoint, as its worker tells it (replication/endpoint-status.ts). */
export interface EndpointLinkFigures {
  /** A region, or `endpoint:NAME`. */
  src: string;
  dst: string;
  /** The link's last run failed (it is being retried). */
  failing: boolean;
  /** Age of the oldest request not carried out yet, ms; 0 when caught up. */
  oldestPendingMs?: number;
  lastSuccessAt?: string;
  bytes?: number;
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

export async function collectStatus(mesh: Mesh): Promise<RegionStatus[]> {
  // Call the peers as the first region (any mesh member's certificate will do locally).
  const credentials = peerCredentials(mesh, mesh.regions[0]!.name);
  return Promise.all(
    mesh.regions.map(async (r): Promise<RegionStatus> => {
      const out: RegionStatus = { region: r.name, up: false, peers: {}, replication: {} };
      const client = new PeerClient(r.name, r.grpc, credentials);
      // The metrics pages are asked at the same time as Status: a frozen region
      // costs one deadline, not three in a row (chaos/gray-failures.ts, region stop).
      const peerPage = r.metrics?.peer ? fetchMetricsText(`${r.metrics.peer}/metrics`) : undefined;
      const workerPage = r.metrics?.worker ? fetchMetricsText(`${r.metrics.worker}/metrics`) : undefined;
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
      const endpoints = endpointLinkFigures(samples);
      if (endpoints.length > 0) out.endpointLinks = endpoints;
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

/** Every endpoint link on a worker's metrics page (by its `_failing` series), sorted. Pure. */
export function endpointLinkFigures(samples: readonly Sample[]): EndpointLinkFigures[] {
  const out: EndpointLinkFigures[] = [];
  for (const f of samples.filter((s) => s.name === "meridian_replication_endpoint_failing")) {
    const { src, dst } = f.labels;
    if (src === undefined || dst === undefined) continue;
    const value = (name: string) =>
      samples.find((s) => s.name === name && s.labels.src === src && s.labels.dst === dst)?.value;
    const link: EndpointLinkFigures = { src, dst, failing: f.value === 1 };
    const oldest = value("meridian_replication_endpoint_oldest_pending_age_seconds");
    if (oldest !== undefined) link.oldestPendingMs = Math.round(oldest * 1000);
    const last = value("meridian_replication_endpoint_last_success_timestamp_seconds");
    if (last !== undefined && last > 0) link.lastSuccessAt = new Date(last * 1000).toISOString();
    const bytes = value("meridian_replication_endpoint_bytes_total");
    if (bytes !== undefined) link.bytes = bytes;
    out.push(link);
  }
  return out.sort((a, b) => (`${a.src} ${a.dst}` < `${b.src} ${b.dst}` ? -1 : 1));
}

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

/**
 * A page's text, undefined on any failure or after `deadlineMs` (default
 * METRICS_DEADLINE_MS; the dashboard's 1 s cadence asks for less). Its
 * own connection (no keep-alive pool), destroyed at the deadline: nothing of
 * a frozen region's connection outlives the call and keeps the CLI running.
 */
export function fetchMetricsText(
  url: string,
  deadlineMs: number = METRICS_DEADLINE_MS,
): Promise<string | undefined> {
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
    const timer = setTimeout(() => req.destroy(new Error("deadline")), deadlineMs);
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
