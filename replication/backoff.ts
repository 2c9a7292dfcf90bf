/** Waiting between attempts, for the worker's parts. */
import { setTimeout as delay } from "node:timers/promises";

/** Backoff before attempt `n` (0-based): doubling from `min`, capped at `max`. Pure. */
export function backoffMs(n: number, min: number, max: number): number {
  return Math.min(max, min * 2 ** Math.min(n, 30));
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}
