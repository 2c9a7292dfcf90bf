/**
 * What a worker knows of each of its links (source region → this region),
 * told as it is: how far behind this region is, how old the oldest event it
 * has not applied is, when the link last moved, and the lag of recent
 * replications only (issue 11: after a freeze the link stalled for minutes
 * while every figure said 0 pending, and the lag quantiles were over
 * everything since the worker started).
 *
 * Per (src, dst), all computed when scraped (so an age keeps growing while
 * nothing happens):
 *
 * | metric                                                   | meaning |
 * |----------------------------------------------------------|---------|
 * | meridian_replication_source_last_seq                     | last sequence of the source's stream, as its server last said (delivered + not yet delivered to this worker's durable) |
 * | meridian_replication_applied_seq                         | last source sequence handled here in order (replicated, skipped or given up on) |
 * | meridian_replication_pending_events                      | source_last_seq − applied_seq: events of the source not yet handled here |
 * | meridian_replication_oldest_pending_age_seconds          | age of the oldest event not yet handled here; 0 when caught up |
 * | meridian_replication_last_success_timestamp_seconds      | unix time of the last event handled here (0: none since start) |
 * | meridian_replication_source_checked_timestamp_seconds    | unix time the source's server last answered (0: never) |
 * | meridian_replication_recent_lag_seconds{quantile}        | p50 / p99 of the lag of events replicated within the last `windowMs` (absent: none) |
 *
 * The oldest pending event's age is exact for an event delivered to the
 * worker and not yet committed (its time in the source's stream); for one
 * not even delivered (a stalled pull) it is counted from the first time the
 * source's server said it was ahead — a lower bound, never 0. While the
 * source does not answer (for more than `silentAfterMs`, default 10 s: the
 * worker asks every 2 s and a silent NATS connection is dropped within 6 s),
 * this region cannot know it is caught up, so the age counts at least from
 * the last time the source answered: a link cut off reads as stalled, not
 * as 0. `pending_events` keeps the count the source gave last (what is
 * known to wait) and `source_checked_timestamp_seconds` says how old it is.
 *
 * The decisions (`behindBy`, `oldestPendingSince`, `windowQuantile`) are pure
 * functions of what the monitor was told and of `now`.
 */
import { Gauge, type Registry as MetricsRegistry } from "prom-client";
import { RECENT_LAG_WINDOW_MS } from "../mesh-client/mesh-status.js";

/** Window over which `recent_lag_seconds` and `meridian status` lag are computed: 5 minutes. */
export { RECENT_LAG_WINDOW_MS };
/** A source not heard of for longer than this is silent (see above). */
export const SOURCE_SILENT_MS = 10_000;
/** The most completions kept per link in the window (the oldest go first). */
const WINDOW_CAP = 4_096;

/** The state of one link at `now`: what `meridian status` and /links show. */
export interface LinkSnapshot {
  src: string;
  dst: string;
  /** The source stream's last sequence (undefined: its server never answered). */
  sourceLastSeq?: number;
  appliedSeq: number;
  /** Events of the source not yet handled here (undefined: unknown, the source never answered). */
  pending?: number;
  /** Age of the oldest event not yet handled here, seconds; 0 when caught up. */
  oldestPendingAgeSeconds: number;
  /** Unix seconds of the last event handled here (undefined: none since the worker started). */
  lastSuccessUnix?: number;
  /** Unix seconds the source's server last answered (undefined: never). */
  sourceCheckedUnix?: number;
  /** Lag of events replicated in the last `windowSeconds`, ms (undefined: none). */
  recentLagP50Ms?: number;
  recentLagP99Ms?: number;
  recentCount: number;
  windowSeconds: number;
}

/** What the source's server says of this worker's durable (JetStream ConsumerInfo, the fields used). */
export interface SourcePosition {
  /** Last stream sequence delivered to the durable. */
  deliveredSeq: number;
  /** Every sequence up to it is acknowledged (or terminated). */
  ackFloorSeq: number;
  /** Messages after `deliveredSeq` not yet delivered. */
  numPending: number;
}

interface LinkState {
  sourceLastSeq: number | undefined;
  applied: number;
  /** Delivered, not yet committed: source sequence → its time in the source's stream (ms). */
  inFlight: Map<number, number>;
  /** When the source was first seen ahead of `applied` (ms), undefined while caught up. */
  aheadSince: number | undefined;
  lastSuccessMs: number | undefined;
  checkedMs: number | undefined;
  /** Recent completions: [finished at ms, lag s], oldest first. */
  recent: Array<[number, number]>;
}

/** `last − applied`, never negative; undefined when `last` is unknown. Pure. */
export function behindBy(last: number | undefined, applied: number): number | undefined {
  return last === undefined ? undefined : Math.max(0, last - applied);
}

/**
 * Since when (ms) the oldest event not handled here has been waiting:
 * the oldest in-flight event's stream time, or when the source was first
 * seen ahead, whichever is earlier; undefined when nothing waits. Pure.
 */
export function oldestPendingSince(
  behind: number | undefined,
  inFlightTimes: Iterable<number>,
  aheadSince: number | undefined,
): number | undefined {
  let oldest: number | undefined;
  for (const t of inFlightTimes) oldest = oldest === undefined ? t : Math.min(oldest, t);
  if ((behind ?? 0) > 0 && aheadSince !== undefined)
    oldest = oldest === undefined ? aheadSince : Math.min(oldest, aheadSince);
  return oldest;
}

/** Quantile `q` (0..1, nearest rank) of `values`; undefined when empty. Pure. */
export function windowQuantile(values: readonly number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((x, y) => x - y);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

export class LinkMonitor {
  readonly #dst: string;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #silentAfterMs: number;
  readonly #startedMs: number;
  readonly #links = new Map<string, LinkState>();

  constructor(options: {
    region: string;
    sources: readonly string[];
    metrics: MetricsRegistry;
    windowMs?: number;
    /** A source unheard of for longer is silent (default SOURCE_SILENT_MS). */
    silentAfterMs?: number;
    /** Clock (ms), for tests. */
    now?: () => number;
  }) {
    this.#dst = options.region;
    this.#windowMs = options.windowMs ?? RECENT_LAG_WINDOW_MS;
    this.#silentAfterMs = options.silentAfterMs ?? SOURCE_SILENT_MS;
    this.#now = options.now ?? Date.now;
    this.#startedMs = this.#now();
    for (const s of options.sources) this.#state(s);
    const registers = [options.metrics];
    const labelNames = ["src", "dst"] as const;
    // Each gauge sets every link's value when scraped, from one snapshot.
    const gauge = (name: string, help: string, value: (s: LinkSnapshot) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect: function (this: Gauge<"src" | "dst">) {
          this.reset();
          for (const s of monitor.snapshot()) {
            const v = value(s);
            if (v !== undefined) this.set({ src: s.src, dst: s.dst }, v);
          }
        },
      });
    const monitor = this;
    gauge(
      "meridian_replication_source_last_seq",
      "Last sequence of the source region's stream, as its server last said",
      (s) => s.sourceLastSeq,
    );
    gauge(
      "meridian_replication_applied_seq",
      "Last source sequence handled here in order (replicated, skipped or given up on)",
      (s) => s.appliedSeq,
    );
    gauge(
      "meridian_replication_pending_events",
      "Events of the source region not yet handled here (source_last_seq - applied_seq)",
      (s) => s.pending,
    );
    gauge(
      "meridian_replication_oldest_pending_age_seconds",
      "Age of the oldest source event not yet handled here; 0 when caught up",
      (s) => s.oldestPendingAgeSeconds,
    );
    gauge(
      "meridian_replication_last_success_timestamp_seconds",
      "Unix time of the last source event handled here (0: none since the worker started)",
      (s) => s.lastSuccessUnix ?? 0,
    );
    gauge(
      "meridian_replication_source_checked_timestamp_seconds",
      "Unix time the source region's server last answered about this link (0: never)",
      (s) => s.sourceCheckedUnix ?? 0,
    );
    new Gauge({
      name: "meridian_replication_recent_lag_seconds",
      help: `Lag of events replicated within the last ${this.#windowMs / 1000} s, by quantile (absent: none)`,
      labelNames: ["src", "dst", "quantile"],
      registers,
      collect: function (this: Gauge<"src" | "dst" | "quantile">) {
        this.reset();
        for (const s of monitor.snapshot()) {
          if (s.recentLagP50Ms !== undefined)
            this.set({ src: s.src, dst: s.dst, quantile: "0.5" }, s.recentLagP50Ms / 1000);
          if (s.recentLagP99Ms !== undefined)
            this.set({ src: s.src, dst: s.dst, quantile: "0.99" }, s.recentLagP99Ms / 1000);
        }
      },
    });
  }

  #state(src: string): LinkState {
    let s = this.#links.get(src);
    if (s === undefined) {
      s = {
        sourceLastSeq: undefined,
        applied: 0,
        inFlight: new Map(),
        aheadSince: undefined,
        lastSuccessMs: undefined,
        checkedMs: undefined,
        recent: [],
      };
      this.#links.set(src, s);
    }
    return s;
  }

  /**
   * An event of `src` was delivered to the worker (`streamTimeMs`: its time
   * in the source's stream; `pendingAfter`: how many more the server had
   * for the durable then, from the delivery's metadata).
   */
  delivered(src: string, seq: number, streamTimeMs: number, pendingAfter = 0): void {
    const s = this.#state(src);
    s.checkedMs = this.#now(); // a delivery is the source answering
    if (seq > s.applied) s.inFlight.set(seq, streamTimeMs);
    s.sourceLastSeq = Math.max(s.sourceLastSeq ?? 0, seq + pendingAfter);
    this.#judge(s);
  }

  /**
   * The event at `seq` of `src` was handled here, in order (replicated,
   * skipped, or given up on); `lagSeconds` when it was replicated.
   */
  committed(src: string, seq: number, lagSeconds?: number): void {
    const s = this.#state(src);
    const now = this.#now();
    s.applied = Math.max(s.applied, seq);
    for (const k of s.inFlight.keys()) if (k <= s.applied) s.inFlight.delete(k);
    s.lastSuccessMs = now;
    if (lagSeconds !== undefined) {
      s.recent.push([now, lagSeconds]);
      if (s.recent.length > WINDOW_CAP) s.recent.splice(0, s.recent.length - WINDOW_CAP);
    }
    // Moving: what waits now has waited at most since this commit.
    if (s.aheadSince !== undefined) s.aheadSince = now;
    this.#judge(s);
  }

  /** What the source's server says of this worker's durable. */
  sourceAnswered(src: string, p: SourcePosition): void {
    const s = this.#state(src);
    s.checkedMs = this.#now();
    s.sourceLastSeq = Math.max(p.deliveredSeq + p.numPending, s.sourceLastSeq ?? 0);
    // After a restart nothing is known applied until the first commit; the durable's floor is.
    s.applied = Math.max(s.applied, p.ackFloorSeq);
    for (const k of s.inFlight.keys()) if (k <= s.applied) s.inFlight.delete(k);
    this.#judge(s);
  }

  /** Keep `aheadSince` in step with whether the source is ahead. */
  #judge(s: LinkState): void {
    const behind = behindBy(s.sourceLastSeq, s.applied) ?? 0;
    if (behind === 0) s.aheadSince = undefined;
    else s.aheadSince ??= this.#now();
  }

  /** Every link's state now. */
  snapshot(): LinkSnapshot[] {
    const now = this.#now();
    return [...this.#links].map(([src, s]) => {
      const pending = behindBy(s.sourceLastSeq, s.applied);
      let since = oldestPendingSince(pending, s.inFlight.values(), s.aheadSince);
      const heard = s.checkedMs ?? this.#startedMs;
      if (now - heard > this.#silentAfterMs) since = Math.min(since ?? heard, heard);
      const cut = now - this.#windowMs;
      while (s.recent.length > 0 && s.recent[0]![0] < cut) s.recent.shift();
      const lags = s.recent.map(([, lag]) => lag);
      const ms = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 1e6) / 1e3);
      const unix = (v: number | undefined) => (v === undefined ? undefined : Math.floor(v / 1000));
      const out: LinkSnapshot = {
        src,
        dst: this.#dst,
        appliedSeq: s.applied,
        oldestPendingAgeSeconds: since === undefined ? 0 : Math.max(0, (now - since) / 1000),
        recentCount: lags.length,
        windowSeconds: this.#windowMs / 1000,
      };
      if (s.sourceLastSeq !== undefined) out.sourceLastSeq = s.sourceLastSeq;
      if (pending !== undefined) out.pending = pending;
      const success = unix(s.lastSuccessMs);
      if (success !== undefined) out.lastSuccessUnix = success;
      const checked = unix(s.checkedMs);
      if (checked !== undefined) out.sourceCheckedUnix = checked;
      const p50 = ms(windowQuantile(lags, 0.5));
      const p99 = ms(windowQuantile(lags, 0.99));
      if (p50 !== undefined) out.recentLagP50Ms = p50;
      if (p99 !== undefined) out.recentLagP99Ms = p99;
      return out;
    });
  }
}
