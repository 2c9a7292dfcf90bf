/**
 * What the worker knows of each of its endpoint links (issue 17;
 * ./endpoint-links.ts runs them), told as region links are (./links.ts):
 * as JSON on the worker's `/links` (`endpointLinks`) and `/failures`
 * (`endpoints`), and as metrics per {src, dst}, where the endpoint's side is
 * `endpoint:NAME` (bounded: endpoints are admin objects):
 *
 * | metric | meaning |
 * |---|---|
 * | meridian_replication_endpoint_bytes_total | blob bytes read from the link's source side and copied |
 * | meridian_replication_endpoint_runs_total{outcome} | runs by outcome (ok, failed) |
 * | meridian_replication_endpoint_failing | 1 while the link's last run failed (retrying), else 0 |
 * | meridian_replication_endpoint_oldest_pending_age_seconds | age of the oldest request not yet carried out; 0 when caught up |
 * | meridian_replication_endpoint_last_success_timestamp_seconds | unix time of the last run that succeeded |
 */
import { Counter, Gauge, type Registry as MetricsRegistry } from "prom-client";
import type { EndpointLink } from "../protocol/policy.js";

/** One endpoint link's state: what /links shows. */
export interface EndpointLinkSnapshot {
  policy: string;
  endpoint: string;
  direction: "export" | "import";
  src: string;
  dst: string;
  /** idle: in force, never asked to run yet (a manual policy); pending: asked, not run yet. */
  state: "idle" | "pending" | "ok" | "failing";
  /** Age of the oldest request not carried out yet, seconds; 0 when caught up. */
  oldestPendingAgeSeconds: number;
  lastSuccessUnix?: number;
  /** The latest failure (while failing). */
  failure?: { reason: string; attempts: number; sinceUnix: number };
  /** What the last successful run did. */
  lastStats?: Record<string, number>;
  bytes: number;
}

interface State {
  snapshot: Omit<EndpointLinkSnapshot, "oldestPendingAgeSeconds">;
  pendingSince: number | undefined;
}

/** The key of a link: policy, endpoint, direction. */
export function linkKey(link: Pick<EndpointLink, "policy" | "endpoint" | "direction">): string {
  return `${link.policy.name}\u0000${link.endpoint}\u0000${link.direction}`;
}

export class EndpointLinkStatus {
  readonly #links = new Map<string, State>();
  readonly #bytes: Counter<"src" | "dst">;
  readonly #runs: Counter<"src" | "dst" | "outcome">;
  readonly #failing: Gauge<"src" | "dst">;
  readonly #lastSuccess: Gauge<"src" | "dst">;

  constructor(metrics: MetricsRegistry) {
    const registers = [metrics];
    this.#bytes = new Counter({
      name: "meridian_replication_endpoint_bytes_total",
      help: "Blob bytes copied on an endpoint link (read from its source side)",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#runs = new Counter({
      name: "meridian_replication_endpoint_runs_total",
      help: "Runs of an endpoint link by outcome (ok, failed)",
      labelNames: ["src", "dst", "outcome"],
      registers,
    });
    this.#failing = new Gauge({
      name: "meridian_replication_endpoint_failing",
      help: "1 while the endpoint link's last run failed (it is retried), else 0",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#lastSuccess = new Gauge({
      name: "meridian_replication_endpoint_last_success_timestamp_seconds",
      help: "Unix time of the endpoint link's last successful run",
      labelNames: ["src", "dst"],
      registers,
    });
    const oldest = new Gauge({
      name: "meridian_replication_endpoint_oldest_pending_age_seconds",
      help: "Age of the oldest request on the endpoint link not carried out yet; 0 when caught up",
      labelNames: ["src", "dst"],
      registers,
      collect: () => {
        oldest.reset();
        for (const s of this.snapshot()) oldest.set({ src: s.src, dst: s.dst }, s.oldestPendingAgeSeconds);
      },
    });
  }

  /** The link's metric labels: the endpoint's side is `endpoint:NAME`. */
  labels(link: EndpointLink): { src: string; dst: string } {
    const ep = `endpoint:${link.endpoint}`;
    return link.direction === "export" ? { src: link.region, dst: ep } : { src: ep, dst: link.region };
  }

  #state(link: EndpointLink): State {
    const key = linkKey(link);
    let s = this.#links.get(key);
    if (s === undefined) {
      s = {
        snapshot: {
          policy: link.policy.name,
          endpoint: link.endpoint,
          direction: link.direction,
          ...this.labels(link),
          state: "idle",
          bytes: 0,
        },
        pendingSince: undefined,
      };
      this.#links.set(key, s);
      this.#failing.set(this.labels(link), 0);
    }
    return s;
  }

  /** The links in force now: new ones are shown (idle), those gone are forgotten. */
  inForce(links: readonly EndpointLink[]): void {
    const keys = new Set(links.map(linkKey));
    for (const [key, s] of this.#links)
      if (!keys.has(key)) {
        this.#links.delete(key);
        this.#failing.remove({ src: s.snapshot.src, dst: s.snapshot.dst });
      }
    for (const link of links) this.#state(link);
  }

  /** Something was asked of the link at `since` (ms). */
  pending(link: EndpointLink, since: number): void {
    const s = this.#state(link);
    if (s.snapshot.state === "idle") s.snapshot.state = "pending";
    s.pendingSince = Math.min(s.pendingSince ?? since, since);
  }

  /** A run succeeded; `nextSince`: when what is still queued was asked (undefined: nothing). */
  succeeded(link: EndpointLink, stats: Record<string, number>, nextSince: number | undefined): void {
    const s = this.#state(link);
    const now = Date.now();
    s.snapshot.state = "ok";
    s.snapshot.lastSuccessUnix = now / 1000;
    s.snapshot.lastStats = stats;
    delete s.snapshot.failure;
    s.pendingSince = nextSince;
    this.#runs.inc({ ...this.labels(link), outcome: "ok" });
    this.#failing.set(this.labels(link), 0);
    this.#lastSuccess.set(this.labels(link), now / 1000);
  }

  /** A run failed with `reason`; what it carried (asked at `since`) is retried. */
  failed(link: EndpointLink, reason: string, since: number): void {
    const s = this.#state(link);
    const now = Date.now();
    s.snapshot.state = "failing";
    s.snapshot.failure = {
      reason,
      attempts: (s.snapshot.failure?.attempts ?? 0) + 1,
      sinceUnix: s.snapshot.failure?.sinceUnix ?? now / 1000,
    };
    s.pendingSince = Math.min(s.pendingSince ?? since, since);
    this.#runs.inc({ ...this.labels(link), outcome: "failed" });
    this.#failing.set(this.labels(link), 1);
  }

  bytes(link: EndpointLink, n: number): void {
    this.#state(link).snapshot.bytes += n;
    this.#bytes.inc(this.labels(link), n);
  }

  /** The link is no longer in force (its policy deleted or disabled). */
  forget(link: EndpointLink): void {
    const s = this.#links.get(linkKey(link));
    if (s === undefined) return;
    this.#links.delete(linkKey(link));
    this.#failing.remove(this.labels(link));
  }

  snapshot(now = Date.now()): EndpointLinkSnapshot[] {
    return [...this.#links.values()].map((s) => ({
      ...s.snapshot,
      oldestPendingAgeSeconds: s.pendingSince === undefined ? 0 : Math.max(0, (now - s.pendingSince) / 1000),
    }));
  }

  /** Failing links, by "policy/endpoint/direction": what /failures shows. */
  failures(): Record<
    string,
    { source: string; destination: string; reason: string; attempts: number; at: string }
  > {
    const out: Record<
      string,
      { source: string; destination: string; reason: string; attempts: number; at: string }
    > = {};
    for (const s of this.#links.values()) {
      const f = s.snapshot.failure;
      if (f === undefined) continue;
      out[`${s.snapshot.policy}/${s.snapshot.endpoint}/${s.snapshot.direction}`] = {
        source: s.snapshot.src,
        destination: s.snapshot.dst,
        reason: f.reason,
        attempts: f.attempts,
        at: new Date(f.sinceUnix * 1000).toISOString(),
      };
    }
    return out;
  }
}
