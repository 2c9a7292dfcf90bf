/**
 * The write fence of a region: whether it may accept writes as a
 * repository's home region right now, decided by the pure `fenceReason`
 * from what the heartbeats observed (no clock read inside, no IO;
 * table-tested in test/fence.test.ts). The peer serves the answer as
 * `StatusReply.fence`; "" means the region may write as a home.
 *
 * Why a lease: a region cut off from every other region cannot tell whether
 * the others have failed its repositories over to a new home. So it stops
 * writing as a home once `leaseMs` have passed since any other region last
 * answered its heartbeat, and a failover waits at least `leaseMs` after the
 * old home was last seen (PeerView.last_seen_at_ms, from every region)
 * before naming a new home. The old home has then fenced itself before the
 * new one opens, and the two never both accept home writes. (Both sides
 * measure on their own clocks; what matters is elapsed time, so the lease
 * must exceed any drift in rate, not in wall time: a few seconds is ample.)
 *
 * Why the epoch: a region that returns after being failed over hears the
 * higher epoch from the others in its first heartbeats, before its own view
 * has the new home table. It stays fenced ("catching up") until its
 * replication worker has brought the new configuration into its view, so it
 * never accepts a write the merge would refuse as stale.
 */
import type { HomeTable } from "../protocol/tag-merge.js";

/** One other region as this region's heartbeats see it. */
export interface FencePeer {
  region: string;
  /** Wall-clock ms of its last answered heartbeat; undefined if it never answered. */
  lastSeenAt: number | undefined;
  /** The failover epoch it reported in that answer. */
  epoch: number;
}

export interface FenceInput {
  /** Now, in wall-clock ms (the same clock as `lastSeenAt`). */
  now: number;
  leaseMs: number;
  /** This region's own highest failover epoch (`highestEpoch` of its view). */
  epoch: number;
  /** Every other region in the mesh (none: a mesh of one region). */
  others: readonly FencePeer[];
}

/**
 * Why this region must not accept home writes now, or "" when it may:
 * a mesh of one region is never fenced; otherwise fenced while no other
 * region has answered within the lease, then while a region that has
 * answered within the lease reports a higher epoch than this region's.
 */
export function fenceReason(input: FenceInput): string {
  const { now, leaseMs, epoch, others } = input;
  if (others.length === 0) return "";
  let lastSeen: number | undefined;
  for (const o of others) {
    if (o.lastSeenAt !== undefined && (lastSeen === undefined || o.lastSeenAt > lastSeen))
      lastSeen = o.lastSeenAt;
  }
  if (lastSeen === undefined) return "starting: no other region has answered yet";
  const silent = now - lastSeen;
  if (silent > leaseMs) {
    return `cut off from every other region for ${seconds(silent)} (lease ${seconds(leaseMs)})`;
  }
  let highest = epoch;
  for (const o of others) {
    if (o.lastSeenAt !== undefined && now - o.lastSeenAt <= leaseMs && o.epoch > highest) highest = o.epoch;
  }
  if (highest > epoch) return `behind failover epoch ${highest} (this region has ${epoch}); catching up`;
  return "";
}

/**
 * The fence's causes, each a `reason` of the peer's metric
 * `meridian_peer_home_writes_refused` (1 for the cause now, 0 for the
 * others; all 0 while home writes are allowed): a bounded label, unlike the
 * reason's text, which carries figures.
 */
export const FENCE_CAUSES = ["starting", "cut_off", "behind_epoch"] as const;
export type FenceCause = (typeof FENCE_CAUSES)[number];

/** The cause of a `fenceReason` ("" → undefined: not fenced). Pure. */
export function fenceCause(reason: string): FenceCause | undefined {
  if (reason === "") return undefined;
  if (reason.startsWith("starting")) return "starting";
  if (reason.startsWith("cut off")) return "cut_off";
  return "behind_epoch";
}

/** The highest failover epoch in any configured scope's home table; 0 when none. */
export function highestEpoch(configs: ReadonlyArray<{ homes: HomeTable }>): number {
  let highest = 0;
  for (const { homes } of configs) {
    for (const key of Object.keys(homes)) {
      const epoch = Number(key);
      if (Number.isSafeInteger(epoch) && epoch > highest) highest = epoch;
    }
  }
  return highest;
}

/** 4200 → "4.2 s", 3000 → "3 s". */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
