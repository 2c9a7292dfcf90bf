/**
 * Bandwidth budgets per link (a policy's `bandwidth`), enforced where
 * the bytes leave: the serving peer. Every worker of a destination region
 * copies from this region through this peer, so one budget per destination
 * here is one budget per link, shared by all the workers on it — however
 * many there are. The replication worker's links to external endpoints
 * (issue 17) are charged the same way where the worker reads the bytes
 * (replication/endpoint-transfer.ts): one budget per endpoint link.
 *
 * A token bucket in "debt" form: each chunk is charged when sent; a caller
 * whose charge takes the balance below zero waits until the refill (at the
 * budget's rate) pays it back. The balance never exceeds one second's worth,
 * so an idle link does not bank a burst. `charge` is pure; `LinkBudgets`
 * keeps the balances and sleeps.
 */

export interface Bucket {
  /** Bytes that may be sent without waiting (negative: owed). */
  balance: number;
  /** When the balance was last brought up to date, ms. */
  at: number;
}

/** The bucket after charging `bytes` at time `now`, and how long the sender must wait. Pure. */
export function charge(
  bucket: Bucket | undefined,
  bytes: number,
  now: number,
  bytesPerSecond: number,
): { bucket: Bucket; waitMs: number } {
  const burst = bytesPerSecond;
  const previous = bucket ?? { balance: burst, at: now };
  const refilled = Math.min(burst, previous.balance + ((now - previous.at) / 1000) * bytesPerSecond);
  const balance = refilled - bytes;
  return { bucket: { balance, at: now }, waitMs: balance >= 0 ? 0 : (-balance / bytesPerSecond) * 1000 };
}

export class LinkBudgets {
  readonly #buckets = new Map<string, Bucket>();

  /** `rateOf(destination)`: the link's budget in bytes per second, or undefined for none. */
  constructor(
    private readonly rateOf: (destination: string) => number | undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The link's budget to `destination` in bytes per second, or undefined for none. */
  rate(destination: string): number | undefined {
    return destination === "" ? undefined : this.rateOf(destination);
  }

  /** Charge `bytes` sent to `destination`; resolves when they may go (at once without a budget). */
  async take(destination: string, bytes: number, signal?: AbortSignal): Promise<void> {
    const rate = this.rateOf(destination);
    if (rate === undefined || destination === "") return;
    const { bucket, waitMs } = charge(this.#buckets.get(destination), bytes, this.now(), rate);
    this.#buckets.set(destination, bucket);
    if (waitMs <= 0 || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}
