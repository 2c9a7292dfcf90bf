/**
 * Failed-login limits (issue 6, "failed logins rate-limited per user and per
 * address"): at most `limit` failures in a sliding minute per user name and,
 * separately, per source address; past either, attempts are refused before
 * any password is checked until the oldest failure leaves the window. A good
 * login clears that user's count (not the address's: one address guessing
 * many users stays slowed). Kept in memory per node: a guesser spreading
 * over regions gets `limit` per region, which still bounds the rate.
 *
 * Slots are reserved before the password is checked (issue 10, finding 3):
 * `attempt` counts the attempt as a failure at once and hands back a
 * reservation; only a good login takes it back. So 100 concurrent guesses
 * for one user from one address check at most `limit` passwords: the others
 * find the window full while the first are still being verified. (Counting
 * after the check let every concurrent guess through, since none had failed
 * yet.)
 */
import { LRUCache } from "lru-cache";

const WINDOW_MS = 60_000;
/**
 * Users and addresses tracked at once. Past it the least recently failing key
 * is forgotten (lru-cache): a flood of new names or addresses pushes out old
 * ones, one at a time, where a full map used to be cleared at once, which
 * forgave every failure counted so far.
 */
const MAX_KEYS = 100_000;

/** A reserved attempt: counted as failed unless `succeeded` is called. */
export interface LoginAttempt {
  /** The password was right: clear the user's failures and give back the address's slot. */
  succeeded(): void;
  /** The password could not be checked (the KDF queue was full): give back both slots. */
  cancel(): void;
}

export class LoginLimiter {
  readonly #failures = new LRUCache<string, number[]>({ max: MAX_KEYS });

  constructor(
    readonly limit: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `name` from `address` may try again, or undefined when it may now. */
  blocked(name: string, address: string): number | undefined {
    const now = this.now();
    let wait = 0;
    for (const key of [`u:${name}`, `a:${address}`]) {
      const recent = this.#recent(key, now);
      if (recent.length >= this.limit)
        wait = Math.max(wait, recent[recent.length - this.limit]! + WINDOW_MS - now);
    }
    return wait > 0 ? Math.ceil(wait / 1000) : undefined;
  }

  /**
   * Reserve a slot for checking a password of `name` from `address`: the
   * seconds to wait (nothing reserved) when the window is full, else the
   * reservation, already counted as a failure.
   */
  attempt(name: string, address: string): number | LoginAttempt {
    const wait = this.blocked(name, address);
    if (wait !== undefined) return wait;
    const at = this.now();
    this.failed(name, address, at);
    const release = (key: string) => {
      const times = this.#failures.get(key);
      const i = times?.lastIndexOf(at) ?? -1;
      if (i >= 0) times!.splice(i, 1);
    };
    return {
      succeeded: () => {
        this.#failures.delete(`u:${name}`);
        release(`a:${address}`);
      },
      cancel: () => {
        release(`u:${name}`);
        release(`a:${address}`);
      },
    };
  }

  failed(name: string, address: string, at = this.now()): void {
    for (const key of [`u:${name}`, `a:${address}`]) {
      const recent = this.#recent(key, at);
      recent.push(at);
      this.#failures.set(key, recent);
    }
  }

  succeeded(name: string, _address: string): void {
    this.#failures.delete(`u:${name}`);
  }

  #recent(key: string, now: number): number[] {
    const times = this.#failures.get(key);
    if (times === undefined) return [];
    const recent = times.filter((t) => now - t < WINDOW_MS);
    if (recent.length === 0) this.#failures.delete(key);
    else this.#failures.set(key, recent);
    return recent;
  }
}
