/**
 * Failed-login limits (issue 6, "failed logins rate-limited per user and per
 * address"): at most `limit` failures in a sliding minute per user name and,
 * separately, per source address; past either, attempts are refused before
 * any password is checked until the oldest failure leaves the window. A good
 * login clears that user's count (not the address's: one address guessing
 * many users stays slowed). Kept in memory per node: a guesser spreading
 * over regions gets `limit` per region, which still bounds the rate.
 */
const WINDOW_MS = 60_000;
const MAX_KEYS = 100_000;

export class LoginLimiter {
  readonly #failures = new Map<string, number[]>();

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

  failed(name: string, address: string): void {
    const now = this.now();
    if (this.#failures.size >= MAX_KEYS) this.#prune(now);
    for (const key of [`u:${name}`, `a:${address}`]) {
      const recent = this.#recent(key, now);
      recent.push(now);
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

  #prune(now: number): void {
    for (const key of [...this.#failures.keys()]) this.#recent(key, now);
    if (this.#failures.size >= MAX_KEYS) this.#failures.clear();
  }
}
