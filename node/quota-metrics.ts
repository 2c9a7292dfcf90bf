/**
 * Storage per project as Prometheus gauges (issue 15, quotas and storage
 * metrics), read from the view's quota projection at each scrape (one
 * prefix scan of the projects' totals; nothing on the request path):
 *
 *   meridian_project_storage_bytes{project}      distinct bytes live in the project in this region
 *   meridian_project_blobs{project}              distinct digests (blobs and manifests) live in it
 *   meridian_project_reclaimable_bytes{project}  deleted from it, not yet collected from the store
 *   meridian_project_quota_bytes{project}        its quota (only projects that have one)
 *
 * `project` is a bounded label in the sense the metrics rules mean: projects
 * are created by administrators, unlike repositories, tags or digests. The
 * region is the registry's default label (node/server.ts).
 */
import { Gauge, type Registry as MetricsRegistry } from "prom-client";
import type { ProjectQuota, QuotaReads } from "./data/view.js";

export function registerQuotaMetrics(metrics: MetricsRegistry, quotas: QuotaReads): void {
  // A scrape collects every metric at once: the four gauges share one read of the view.
  let reading: Promise<ProjectQuota[]> | undefined;
  const read = () => {
    reading ??= quotas.all().finally(() => {
      reading = undefined;
    });
    return reading;
  };
  const gauge = (name: string, help: string, value: (q: ProjectQuota) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ["project"],
      registers: [metrics],
      async collect() {
        const all = await read();
        this.reset();
        for (const q of all) {
          const v = value(q);
          if (v !== null) this.set({ project: q.project }, v);
        }
      },
    });
  gauge(
    "meridian_project_storage_bytes",
    "Distinct bytes live in the project's repositories in this region",
    (q) => q.usedBytes,
  );
  gauge(
    "meridian_project_blobs",
    "Distinct blobs and manifests live in the project's repositories in this region",
    (q) => q.blobs,
  );
  gauge(
    "meridian_project_reclaimable_bytes",
    "Bytes deleted from the project in this region and not yet collected from the store",
    (q) => q.reclaimableBytes,
  );
  gauge("meridian_project_quota_bytes", "The project's storage quota in each region", (q) => q.limitBytes);
}
