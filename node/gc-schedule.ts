/**
 * The node's garbage-collection schedule and metrics (node/data/gc.ts does
 * the collecting). Scheduled runs are off by default (`gc.intervalMinutes`
 * 0): set it on one node per region (each node that has it runs its own
 * collection; two at once are safe, only wasteful). Manual runs come from
 * the admin API (`meridian gc run`).
 *
 * Metrics (the region label is the registry's default):
 *   meridian_node_gc_runs_total{outcome}         finished runs (ok, failed, dry-run)
 *   meridian_node_gc_reclaimed_blobs_total       blobs deleted for good
 *   meridian_node_gc_reclaimed_bytes_total       their bytes
 *   meridian_node_gc_reclaimable_bytes           what the last run found collectable
 *   meridian_node_gc_last_run_duration_seconds   how long the last run took
 */
import type { Logger } from "pino";
import { Counter, Gauge, type Registry as MetricsRegistry } from "prom-client";
import type { Registry } from "./data/registry.js";

/** Record every run's outcome as metrics, and start scheduled runs; returns the stop. */
export function scheduleGc(
  registry: Registry,
  intervalMinutes: number,
  metrics: MetricsRegistry,
  log: Logger,
): () => void {
  const runs = new Counter({
    name: "meridian_node_gc_runs_total",
    help: "Garbage-collection runs finished on this node, by outcome (ok, failed, dry-run)",
    labelNames: ["outcome"] as const,
    registers: [metrics],
  });
  const blobs = new Counter({
    name: "meridian_node_gc_reclaimed_blobs_total",
    help: "Blobs garbage collection deleted for good",
    registers: [metrics],
  });
  const bytes = new Counter({
    name: "meridian_node_gc_reclaimed_bytes_total",
    help: "Bytes garbage collection reclaimed",
    registers: [metrics],
  });
  const reclaimable = new Gauge({
    name: "meridian_node_gc_reclaimable_bytes",
    help: "Bytes the last garbage-collection run (a dry run too) found collectable",
    registers: [metrics],
  });
  const duration = new Gauge({
    name: "meridian_node_gc_last_run_duration_seconds",
    help: "How long the last garbage-collection run took",
    registers: [metrics],
  });
  registry.gc.onFinished = (state) => {
    const r = state.result;
    runs.inc({ outcome: state.state === "failed" ? "failed" : state.dryRun ? "dry-run" : "ok" });
    if (r === undefined) return;
    blobs.inc(r.collected);
    bytes.inc(r.collectedBytes);
    reclaimable.set(r.dryRun ? r.candidateBytes : r.candidateBytes - r.collectedBytes);
    duration.set(r.durationMs / 1000);
    log.info(
      { runId: r.runId, collected: r.collected, bytes: r.collectedBytes, restored: r.restored },
      "gc run finished",
    );
  };
  if (intervalMinutes <= 0) return () => undefined;
  const timer = setInterval(() => {
    registry.gc.start({ dryRun: false, now: false, actor: "system", trigger: "scheduled" });
  }, intervalMinutes * 60_000);
  timer.unref();
  return () => clearInterval(timer);
}
