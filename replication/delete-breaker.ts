/**
 * The stream's delete breaker, as decisions without IO (the worker reads
 * the view, raises the alert and waits for the operator: worker.ts).
 *
 * A deletion from a source stream is judged against the repository's tags
 * shown here (one snapshot) and the deletions let through for it within
 * the window (`windowMs`, default 10 minutes): when the tags removed in the
 * window, this one included, would be more than `limits.maxShare` of those
 * shown at the window's start (shown now + removed before) — in a
 * repository of at least `limits.minTags` — the breaker trips (plan.ts
 * `breakerTrips`, the rule anti-entropy runs use too). After an operator's
 * reset the batch is accepted: the window counts afresh from this deletion.
 *
 * A reset lets a repository's deletes through once when it was made after
 * that repository's last breaker alert in this region (`resetLetsThrough`;
 * the worker remembers which resets it used).
 */

import type { ContentEvent } from "../protocol/events.js";
import type { Write } from "../protocol/registers.js";
import { type BreakerLimits, breakerTrips } from "./plan.js";

/** A deletion let through for a repository, and when. */
export interface WindowEntry {
  atMs: number;
  removed: number;
}

/** A tag shown here (its digest). */
export interface LiveTag {
  tag: string;
  digest: string;
}

export type BreakerDecision =
  /** It removes no tag shown here: nothing to count. */
  | { kind: "none" }
  /** Within the limits: let it through; the window's history after it. */
  | { kind: "pass"; history: WindowEntry[] }
  /**
   * Over the limits: hold it (alert, wait for a reset); `removed` of
   * `visible` tags is what the alert reports; once reset, the window's
   * history is `history` (this deletion only).
   */
  | { kind: "trip"; removed: number; visible: number; history: WindowEntry[] };

export interface DeletionInput {
  event: ContentEvent;
  /** The repository's tags shown here now. */
  live: readonly LiveTag[];
  /** The repository's deletions let through before (any age; older than the window are left out). */
  history: readonly WindowEntry[];
  nowMs: number;
  windowMs: number;
  limits: BreakerLimits;
}

/** The breaker's decision on one deletion event. Pure. */
export function judgeDeletion(input: DeletionInput): BreakerDecision {
  const { event, live, nowMs, windowMs, limits } = input;
  const removed = tagsRemovedBy(event, live);
  if (removed === 0) return { kind: "none" };
  const recent = input.history.filter((d) => nowMs - d.atMs < windowMs);
  const before = recent.reduce((n, d) => n + d.removed, 0);
  const visible = live.length + before;
  const entry = { atMs: nowMs, removed };
  if (breakerTrips(before + removed, visible, limits))
    return { kind: "trip", removed: before + removed, visible, history: [entry] };
  return { kind: "pass", history: [...recent, entry] };
}

/** How many of the tags shown (`live`) a deletion event would remove or hide. Pure. */
export function tagsRemovedBy(event: ContentEvent, live: readonly LiveTag[]): number {
  switch (event.type) {
    case "tag.deleted":
      return live.some((t) => t.tag === event.tag) ? 1 : 0;
    case "manifest.deleted":
      return live.filter((t) => t.digest === event.digest).length;
    case "repository.deleted":
      return live.length;
    default:
      return 0;
  }
}

/** A delete-breaker alert as the breaker reads it (the view's alert record). */
export interface BreakerAlert {
  kind: string;
  policy?: string;
  repo?: string;
  detail?: Record<string, unknown>;
  at: string;
}

/**
 * Whether `reset` (the policy's last breaker reset) came after `repo`'s last
 * breaker alert under `policy` in `region` (`alerts` in clock order). Pure.
 */
export function resetLetsThrough(
  reset: Write | undefined,
  alerts: readonly BreakerAlert[],
  where: { policy: string; repo: string; region: string },
): boolean {
  if (reset === undefined) return false;
  const last = alerts
    .filter((a) => a.kind === "delete-breaker" && a.policy === where.policy && a.repo === where.repo)
    .filter((a) => a.detail?.destination === where.region)
    .at(-1);
  return last !== undefined && Date.parse(reset.at) >= Date.parse(last.at);
}
