/**
 * Failed logins in the audit log under a flood (issue 10, finding 7): 100,000
 * failed logins with an 11 KB user name once added 1 GiB to the audit stream
 * in 24 s, which then discarded every legitimate record. So `login.failed`
 * records are admitted per fixed window of WINDOW_MS:
 *
 * - from one address, the first PER_ADDRESS failures are recorded one by one;
 * - over all addresses, at most OVERALL are;
 * - a login refused by the limiter (429: no password was checked) is never
 *   recorded one by one: the failures that filled the limiter were;
 * - everything else is counted, and when the window closes each address
 *   with a count gets ONE aggregate record (`count`: how many it stands
 *   for); past MAX_ADDRESSES distinct addresses in a window, the rest share
 *   one aggregate under the address "*".
 *
 * So a window stores at most OVERALL single records plus one aggregate per
 * address, whatever the flood; with node/audit.ts truncating every
 * client-controlled field, a record is at most about 2 KB. When a window
 * has suppressed ALERT_AFTER records, `admit` reports a flood (at most once
 * per ALERT_EVERY_MS), which the node raises as an `alert.raised` event.
 *
 * Pure: the caller passes the clock; no timers, no IO.
 */
export const WINDOW_MS = 30_000;
export const PER_ADDRESS = 10;
export const OVERALL = 200;
export const MAX_ADDRESSES = 10_000;
export const ALERT_AFTER = 100;
export const ALERT_EVERY_MS = 10 * 60_000;

/** What one address did beyond what was recorded, in one window. */
export interface Suppressed {
  address: string;
  /** Failures not recorded one by one. */
  count: number;
  /** The window's start (ms). */
  since: number;
  /** The last user name tried (as the caller gave it: truncate before recording). */
  lastActor: string;
}

/** A flood seen in the current window. */
export interface Flood {
  suppressed: number;
  addresses: number;
  /** The address with the most suppressed failures. */
  top: string;
}

export class LoginFailureThrottle {
  #start = 0;
  #kept = 0;
  #suppressed = 0;
  readonly #perAddress = new Map<string, { kept: number; suppressed: number; lastActor: string }>();
  #lastAlert = Number.NEGATIVE_INFINITY;

  /**
   * Whether to record this failure one by one (`record`), and a flood to
   * report when this failure makes one. Call `roll` first: a failure after
   * the window's end belongs to the next.
   */
  admit(address: string, actor: string, limited: boolean, now: number): { record: boolean; flood?: Flood } {
    // A window begins with the first failure after a quiet one.
    if (this.#perAddress.size === 0) this.#start = now;
    let entry = this.#perAddress.get(address);
    if (entry === undefined) {
      const key = this.#perAddress.size >= MAX_ADDRESSES ? "*" : address;
      entry = this.#perAddress.get(key);
      if (entry === undefined) {
        entry = { kept: 0, suppressed: 0, lastActor: actor };
        this.#perAddress.set(key, entry);
      }
    }
    entry.lastActor = actor;
    if (!limited && entry.kept < PER_ADDRESS && this.#kept < OVERALL) {
      entry.kept++;
      this.#kept++;
      return { record: true };
    }
    entry.suppressed++;
    this.#suppressed++;
    if (this.#suppressed >= ALERT_AFTER && now - this.#lastAlert >= ALERT_EVERY_MS) {
      this.#lastAlert = now;
      return { record: false, flood: this.#flood() };
    }
    return { record: false };
  }

  /** If the window is over: the aggregates of the one that ended; the next begins with the next failure. */
  roll(now: number): Suppressed[] {
    if (this.#perAddress.size === 0 || now < this.#start + WINDOW_MS) return [];
    const since = this.#start;
    const out: Suppressed[] = [];
    for (const [address, e] of this.#perAddress)
      if (e.suppressed > 0) out.push({ address, count: e.suppressed, since, lastActor: e.lastActor });
    this.#perAddress.clear();
    this.#kept = 0;
    this.#suppressed = 0;
    return out;
  }

  /** Whether a window holds anything to roll (so the caller's timer can stay idle). */
  get pending(): boolean {
    return this.#perAddress.size > 0;
  }

  #flood(): Flood {
    let top = "";
    let most = -1;
    for (const [address, e] of this.#perAddress)
      if (e.suppressed > most) {
        most = e.suppressed;
        top = address;
      }
    return { suppressed: this.#suppressed, addresses: this.#perAddress.size, top };
  }
}
