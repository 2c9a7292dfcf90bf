/**
 * The replication worker's own metrics (each link's state is links.ts's):
 * how long a replica took from its origin's commit, bytes copied, what
 * became of every source event, and the delete breaker (replication/
 * delete-breaker.ts): trips, and whether a source's stream is held by one
 * now (what deploy/prometheus/rules.yml MeridianDeleteBreakerTripped reads).
 * Nothing here is on the registry's request path: the worker's own work.
 */
import { Counter, Gauge, Histogram, type Registry as MetricsRegistry } from "prom-client";

/** What became of a source event. */
export type EventOutcome = "replicated" | "skipped" | "filtered" | "failed";

export class WorkerMetrics {
  readonly #region: string;
  readonly #lag: Histogram<"src" | "dst">;
  readonly #bytes: Counter<"src" | "dst">;
  readonly #events: Counter<"src" | "dst" | "outcome">;
  readonly #breakerTrips: Counter<"src" | "dst">;
  readonly #breakerTripped: Gauge<"src" | "dst">;
  /** Deletions from each source held by the breaker now (several of a stream's pipeline may wait). */
  readonly #held = new Map<string, number>();

  /** `sources`: the regions replicated from, whose breaker series start at 0. */
  constructor(region: string, metrics: MetricsRegistry, sources: readonly string[] = []) {
    this.#region = region;
    const registers = [metrics];
    this.#lag = new Histogram({
      name: "meridian_replication_lag_seconds",
      help: "Time from an event's commit at its origin to its replica's commit here",
      labelNames: ["src", "dst"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.#bytes = new Counter({
      name: "meridian_replication_bytes_total",
      help: "Blob bytes copied from the source region",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#events = new Counter({
      name: "meridian_replication_events_total",
      help: "Source events handled, by outcome (replicated, skipped, filtered, failed)",
      labelNames: ["src", "dst", "outcome"],
      registers,
    });
    this.#breakerTrips = new Counter({
      name: "meridian_replication_delete_breaker_trips_total",
      help: "Delete-breaker alerts raised for deletions from the source region (its stream's or an anti-entropy run's)",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#breakerTripped = new Gauge({
      name: "meridian_replication_delete_breaker_tripped",
      help: "1 while the delete breaker holds the source region's stream (until an operator resets the policy's breaker), else 0",
      labelNames: ["src", "dst"],
      registers,
    });
    for (const src of sources) {
      this.#breakerTrips.inc({ src, dst: region }, 0);
      this.#breakerTripped.set({ src, dst: region }, 0);
    }
  }

  /** The delete breaker tripped on deletions from `src`. */
  breakerTripped(src: string): void {
    this.#breakerTrips.inc({ src, dst: this.#region });
  }

  /** A deletion from `src`'s stream is held by the breaker (`held`), or no longer (`!held`). */
  breakerHolding(src: string, held: boolean): void {
    const n = (this.#held.get(src) ?? 0) + (held ? 1 : -1);
    this.#held.set(src, n);
    this.#breakerTripped.set({ src, dst: this.#region }, n > 0 ? 1 : 0);
  }

  /** `n` blob bytes copied from `src`. */
  copied(src: string, n: number): void {
    this.#bytes.inc({ src, dst: this.#region }, n);
  }

  /** An event from `src` handled. */
  handled(src: string, outcome: EventOutcome): void {
    this.#events.inc({ src, dst: this.#region, outcome });
  }

  /** A replica committed here `lagSeconds` after its origin's commit. */
  lag(src: string, lagSeconds: number): void {
    this.#lag.observe({ src, dst: this.#region }, lagSeconds);
  }
}
