/**
 * Routing decisions, as pure functions of what the control plane observes.
 */

export interface RegionHealth {
  region: string;
  up: boolean;
  /** Smoothed round trip in ms; undefined or 0 when never measured. */
  rttMs?: number;
}

/**
 * Regions in the order to try them: healthy ones nearest first, then those
 * never measured, then unhealthy ones; ties by name, so every caller given
 * the same observations makes the same choice. Regions missing from `health`
 * count as never measured.
 */
export function nearestFirst(regions: readonly string[], health: readonly RegionHealth[]): string[] {
  const byRegion = new Map(health.map((h) => [h.region, h]));
  const rank = (r: string): [number, number] => {
    const h = byRegion.get(r);
    if (h === undefined || (h.up && !h.rttMs)) return [1, 0];
    return h.up ? [0, h.rttMs!] : [2, 0];
  };
  return [...regions].sort((a, b) => {
    const [ca, ra] = rank(a);
    const [cb, rb] = rank(b);
    return ca - cb || ra - rb || (a < b ? -1 : a > b ? 1 : 0);
  });
}
