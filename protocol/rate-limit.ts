/**
 * Token buckets (issue 18, item 4), pure: no clock read (callers pass `now`,
 * ms), no IO. node/rate-limits.ts keeps one bucket per (kind, key) and
 * shares what each node took with the region's other nodes.
 *
 * A bucket holds at most `burst` tokens and refills at `perSecond`. A request
 * takes one token; with less than one left it is refused, and
 * `retryAfterSeconds` is when the bucket will hold one again (at least 1 s,
 * whole seconds as `Retry-After` wants). What other nodes of the region took
 * is `drain`ed from the same bucket; it may go below zero (down to
 * `-burst`), so a burst spread over several nodes is paid back before any
 * node lets the key in again, and no amount of remote traffic can push the
 * wait past one full refill.
 */

export interface Rate {
  perSecond: number;
  burst: number;
}

export interface Bucket {
  tokens: number;
  /** When `tokens` was computed (ms). */
  at: number;
}

/** The bucket refilled up to `now` (a new key starts full). */
export function refill(bucket: Bucket | undefined, now: number, rate: Rate): Bucket {
  if (bucket === undefined) return { tokens: rate.burst, at: now };
  const elapsed = Math.max(0, now - bucket.at) / 1000;
  return {
    tokens: Math.min(rate.burst, bucket.tokens + elapsed * rate.perSecond),
    at: Math.max(now, bucket.at),
  };
}

export type Taken = { ok: true; bucket: Bucket } | { ok: false; bucket: Bucket; retryAfterSeconds: number };

/** Take one token at `now`. */
export function take(bucket: Bucket | undefined, now: number, rate: Rate): Taken {
  const b = refill(bucket, now, rate);
  if (b.tokens >= 1) return { ok: true, bucket: { tokens: b.tokens - 1, at: b.at } };
  return { ok: false, bucket: b, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / rate.perSecond)) };
}

/** `n` tokens another node took at about `now` (never below -burst). */
export function drain(bucket: Bucket | undefined, now: number, rate: Rate, n: number): Bucket {
  const b = refill(bucket, now, rate);
  return { tokens: Math.max(-rate.burst, b.tokens - n), at: b.at };
}
