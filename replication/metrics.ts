/**
 * The replication worker's own metrics (each link's state is links.ts's):
 * how long a replica took from its origin's commit, bytes copied, and what
 * became of every source event.
 */
import { Counter, Histogram, type Registry as MetricsRegistry } from "prom-client";

/** What became of a source event. */
export type EventOutcome = "replicated" | "skipped" | "filtered" | "failed";

export class WorkerMetrics {
  readonly #region: string;
  readonly #lag: Histogram<"src" | "dst">;
  readonly #bytes: Counter<"src" | "dst">;
  readonly #events: Counter<"src" | "dst" | "outcome">;

  constructor(region: string, metrics: MetricsRegistry) {
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
