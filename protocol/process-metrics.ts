/**
 * What every process's default metrics (prom-client's collectDefaultMetrics,
 * through `collectProcessMetrics` in node/server.ts, control-plane/peer.ts,
 * control-plane/front-door.ts, replication/main.ts) share.
 *
 * The event-loop delay histogram samples with a timer that fires every
 * `eventLoopMonitoringPrecision` ms whether or not anything happens:
 * prom-client's default, 10 ms, woke every process 100 times a second and
 * cost an idle process about 0.25 % of a core (ten processes in the default
 * mesh: 2.5 %; issue 14, benchmarks/README.md "Cost at rest"). At 100 ms a
 * stall as long as the resolution or longer still always delays a due sample
 * (the one it blocks), so every stall that matters to an operator is in the
 * histogram; shorter ones are sampled rather than all seen.
 */
import { collectDefaultMetrics, type Registry } from "prom-client";

export const PROCESS_METRICS_OPTIONS = { eventLoopMonitoringPrecision: 100 } as const;

/**
 * prom-client's gauges that end in `_total` (the sums of the per-type
 * `…_active_handles`, `…_active_requests`, `…_active_resources` gauges, which
 * stay): `_total` names a counter by Prometheus convention, and a rule or
 * board that took them for one (rate, increase) would read nonsense.
 */
const GAUGES_NAMED_LIKE_COUNTERS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/**
 * The process's default metrics (CPU, memory, file descriptors, event loop,
 * heap, GC) on `registry`, named `<prefix>process_…` and `<prefix>nodejs_…`,
 * without the gauges named like counters.
 */
export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix, ...PROCESS_METRICS_OPTIONS });
  for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(prefix + name);
}
