/**
 * Space on the filesystems a node writes to, as Prometheus gauges read at
 * each scrape (one statfs per volume; nothing on the request path):
 *
 *   meridian_node_filesystem_avail_bytes{volume}  bytes this process may still write there
 *   meridian_node_filesystem_size_bytes{volume}   the filesystem's size
 *
 * `volume` is `store` (the filesystem blob store's `storage.root`) and `view`
 * (the node's `view.dir`). With the S3 store there is no `store` series: a
 * bucket has no size a client can read; watch the bucket's own metrics. The
 * names follow node_exporter's `node_filesystem_avail_bytes` /
 * `node_filesystem_size_bytes`; `avail` is what an unprivileged process can
 * use (statfs `bavail`), not `bfree`, which counts root's reserve. A volume
 * whose statfs fails (its directory gone) has no series at that scrape:
 * deploy/prometheus/rules.yml MeridianDiskNearlyFull fires on what is there.
 */
import { statfs } from "node:fs/promises";
import { Gauge, type Registry as MetricsRegistry } from "prom-client";

/** The directories to watch, by volume name. */
export type Volumes = Readonly<Record<string, string>>;

export function registerDiskMetrics(metrics: MetricsRegistry, volumes: Volumes): void {
  // A scrape collects both gauges at once: they share one statfs per volume.
  let reading: Promise<Array<{ volume: string; avail: number; size: number }>> | undefined;
  const read = () => {
    reading ??= Promise.all(
      Object.entries(volumes).map(async ([volume, dir]) => {
        try {
          const s = await statfs(dir);
          return [{ volume, avail: s.bavail * s.bsize, size: s.blocks * s.bsize }];
        } catch {
          return [];
        }
      }),
    )
      .then((all) => all.flat())
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };
  const gauge = (name: string, help: string, value: (v: { avail: number; size: number }) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["volume"],
      registers: [metrics],
      async collect() {
        const all = await read();
        this.reset();
        for (const v of all) this.set({ volume: v.volume }, value(v));
      },
    });
  gauge(
    "meridian_node_filesystem_avail_bytes",
    "Bytes the node may still write on the filesystem of its blob store (volume=store, filesystem store only) or view (volume=view)",
    (v) => v.avail,
  );
  gauge(
    "meridian_node_filesystem_size_bytes",
    "Size of the filesystem of the node's blob store (volume=store, filesystem store only) or view (volume=view)",
    (v) => v.size,
  );
}
