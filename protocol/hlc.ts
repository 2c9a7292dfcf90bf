/**
 * Hybrid logical clock (Kulkarni et al., 2014). A timestamp is wall-clock
 * milliseconds plus a logical counter; it never goes backwards on one process
 * and always exceeds every timestamp that process has observed. The clock is a
 * pure state machine: the caller passes the physical time in.
 */
export interface Hlc {
  /** Milliseconds since the epoch (physical component). */
  wall: number;
  /** Tie-breaker within one millisecond. */
  logical: number;
}

export const HLC_ZERO: Hlc = Object.freeze({ wall: 0, logical: 0 });

export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wall - b.wall || a.logical - b.logical;
}

/** A clock's next timestamp for a local event at physical time `now`. */
export function tick(last: Hlc, now: number): Hlc {
  if (now > last.wall) return { wall: now, logical: 0 };
  return { wall: last.wall, logical: last.logical + 1 };
}

/** The clock's state after observing a remote timestamp at physical time `now`. */
export function observe(last: Hlc, remote: Hlc, now: number): Hlc {
  const wall = Math.max(last.wall, remote.wall, now);
  if (wall === last.wall && wall === remote.wall)
    return { wall, logical: Math.max(last.logical, remote.logical) + 1 };
  if (wall === last.wall) return { wall, logical: last.logical + 1 };
  if (wall === remote.wall) return { wall, logical: remote.logical + 1 };
  return { wall, logical: 0 };
}

export function isHlc(value: unknown): value is Hlc {
  const v = value as Hlc;
  return (
    typeof v === "object" &&
    v !== null &&
    Number.isSafeInteger(v.wall) &&
    v.wall >= 0 &&
    Number.isSafeInteger(v.logical) &&
    v.logical >= 0
  );
}

/** A process-local clock around the pure functions; reads Date.now() only here. */
export class HybridClock {
  #last: Hlc = HLC_ZERO;
  constructor(private readonly physical: () => number = Date.now) {}
  now(): Hlc {
    this.#last = tick(this.#last, this.physical());
    return this.#last;
  }
  observe(remote: Hlc): void {
    this.#last = observe(this.#last, remote, this.physical());
  }
}
