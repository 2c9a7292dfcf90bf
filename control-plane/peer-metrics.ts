/**
 * The peer's own gauges (control-plane/peer.ts sets the first two from its
 * heartbeats): `meridian_peer_up{peer}`, `meridian_peer_rtt_seconds{peer}`,
 * and `meridian_peer_home_writes_refused{reason}`, the write fence as it
 * stands at each scrape (./fence.ts, a pure computation; nothing per request).
 */
import { Gauge, type Registry as MetricsRegistry } from "prom-client";
import { FENCE_CAUSES, fenceCause } from "./fence.js";

export function peerGauges(
  metrics: MetricsRegistry,
  fence: () => string,
): { upGauge: Gauge<"peer">; rttGauge: Gauge<"peer"> } {
  const upGauge = new Gauge({
    name: "meridian_peer_up",
    help: "1 while the peer answers heartbeats, 0 once it has missed enough of them (or before its first answer)",
    labelNames: ["peer"],
    registers: [metrics],
  });
  const rttGauge = new Gauge({
    name: "meridian_peer_rtt_seconds",
    help: "Smoothed (EWMA) round trip of heartbeats to the peer",
    labelNames: ["peer"],
    registers: [metrics],
  });
  new Gauge({
    name: "meridian_peer_home_writes_refused",
    help: `1 while this region refuses writes as a repository's home region, by reason (${FENCE_CAUSES.join(", ")}); else 0`,
    labelNames: ["reason"],
    registers: [metrics],
    collect() {
      const cause = fenceCause(fence());
      for (const reason of FENCE_CAUSES) this.set({ reason }, reason === cause ? 1 : 0);
    },
  });
  return { upGauge, rttGauge };
}
