/**
 * What every process's default metrics (prom-client's collectDefaultMetrics in
 * node/server.ts, control-plane/peer.ts, control-plane/front-door.ts,
 * replication/main.ts) share. Pure data.
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
export const PROCESS_METRICS_OPTIONS = { eventLoopMonitoringPrecision: 100 } as const;
