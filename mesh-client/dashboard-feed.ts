/**
 * The dashboard's live feed (./dashboard-http.ts serves it): one collection
 * shared by every watching client, a state every FEED_TICK_MS while at least
 * one watches, none while nobody does; and what bounds it.
 *
 * - `DashboardFeed`: subscribers get each state; the first subscriber starts
 *   the ticks, the last one leaving stops them. Each tick's IO is bounded by
 *   REFRESH_DEADLINE_MS (below the tick, so a region that answers nothing
 *   costs one deadline, never a backlog of ticks); what it could not read it
 *   keeps from before, marked stale (./dashboard-state.ts). `current()` (the
 *   `GET /ui/api/state` answer) reuses a refresh less than a tick old and
 *   otherwise shares the one under way. `push()` sends what is known at once,
 *   without IO: the front door calls it when its probes take a region down
 *   or up, so the page turns red with the probes' verdict, not a tick later.
 * - `SseClients`: at most SSE_PER_ADDRESS event streams per client address
 *   and SSE_TOTAL in all (then 429): each is a socket held open.
 * - `SessionTokens`: the short-lived tokens an EventSource (which cannot
 *   send an Authorization header) presents; see ./dashboard-http.ts.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { DashboardSource, DashboardState } from "./dashboard-state.js";

export const FEED_TICK_MS = 1_000;
/** Every IO call of one refresh ends within this (mesh-status.ts's 3 s would outlast three ticks). */
export const REFRESH_DEADLINE_MS = 800;
export const SSE_PER_ADDRESS = 4;
export const SSE_TOTAL = 32;
/** How long a dashboard session token is good for. */
export const SESSION_TTL_MS = 10 * 60_000;

export class DashboardFeed {
  readonly #subscribers = new Set<(state: DashboardState) => void>();
  readonly #closers = new Map<(state: DashboardState) => void, () => void>();
  #lastRefresh = 0;
  #inflight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #closed = false;

  constructor(
    private readonly source: DashboardSource,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** Number of watching clients. */
  get watchers(): number {
    return this.#subscribers.size;
  }

  /** Whether states are being collected on the tick (someone watches). */
  get ticking(): boolean {
    return this.#ticking;
  }

  /**
   * Receive every state from now on; the returned function stops it.
   * `onClose` is called if the feed closes first (the server stops).
   */
  subscribe(fn: (state: DashboardState) => void, onClose?: () => void): () => void {
    if (this.#closed) {
      onClose?.();
      return () => undefined;
    }
    this.#subscribers.add(fn);
    if (onClose !== undefined) this.#closers.set(fn, onClose);
    if (!this.#ticking && !this.#closed) {
      this.#ticking = true;
      this.#tick();
    }
    return () => {
      this.#subscribers.delete(fn);
      this.#closers.delete(fn);
    };
  }

  /** The state now: a refresh less than a tick old is reused, else one is made (shared). */
  async current(): Promise<DashboardState> {
    if (Date.now() - this.#lastRefresh >= FEED_TICK_MS) await this.#refresh();
    return this.source.snapshot();
  }

  /** The state from what is known now, without IO. */
  latest(): DashboardState {
    return this.source.snapshot();
  }

  /** Send what is known now to every watcher, without IO. */
  push(): void {
    if (this.#subscribers.size === 0) return;
    let state: DashboardState;
    try {
      state = this.source.snapshot();
    } catch (err) {
      this.onError(err);
      return;
    }
    for (const fn of [...this.#subscribers]) fn(state);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    const closers = [...this.#closers.values()];
    this.#subscribers.clear();
    this.#closers.clear();
    for (const close of closers) close();
  }

  #tick(): void {
    if (this.#subscribers.size === 0 || this.#closed) {
      this.#ticking = false;
      return;
    }
    const started = Date.now();
    void this.#refresh().then(() => {
      this.push();
      if (this.#closed) return;
      this.#timer = setTimeout(() => this.#tick(), Math.max(0, FEED_TICK_MS - (Date.now() - started)));
    });
  }

  #refresh(): Promise<void> {
    this.#inflight ??= this.source
      .refresh(REFRESH_DEADLINE_MS)
      .catch((err) => this.onError(err))
      .finally(() => {
        this.#lastRefresh = Date.now();
        this.#inflight = undefined;
      });
    return this.#inflight;
  }
}

/** The open event streams, per client address and in all. */
export class SseClients {
  readonly #byAddress = new Map<string, number>();
  #total = 0;

  constructor(
    readonly perAddress = SSE_PER_ADDRESS,
    readonly total = SSE_TOTAL,
  ) {}

  /** Take a place for `address`; false when its share or the total is used up. */
  acquire(address: string): boolean {
    const mine = this.#byAddress.get(address) ?? 0;
    if (mine >= this.perAddress || this.#total >= this.total) return false;
    this.#byAddress.set(address, mine + 1);
    this.#total++;
    return true;
  }

  release(address: string): void {
    const mine = this.#byAddress.get(address) ?? 0;
    if (mine <= 1) this.#byAddress.delete(address);
    else this.#byAddress.set(address, mine - 1);
    this.#total = Math.max(0, this.#total - 1);
  }

  get open(): number {
    return this.#total;
  }
}

/**
 * Dashboard session tokens: `payload.mac`, the payload the subject and the
 * expiry (base64url JSON), the MAC an HMAC-SHA256 under a key drawn at
 * random when the process starts. So a token is good only on the process
 * that issued it (the page that asked for it talks to that process), for
 * SESSION_TTL_MS, and dies with a restart; nothing is stored. A subject
 * whose rights are taken away keeps its open stream until the token
 * expires (at most SESSION_TTL_MS); every other request is checked anew.
 */
export class SessionTokens {
  readonly #key = randomBytes(32);

  constructor(
    readonly ttlMs = SESSION_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  issue(subject: string): { token: string; expiresAt: number } {
    const expiresAt = this.now() + this.ttlMs;
    const payload = Buffer.from(
      JSON.stringify({ s: subject, e: expiresAt, n: randomBytes(8).toString("hex") }),
    ).toString("base64url");
    return { token: `${payload}.${this.#mac(payload)}`, expiresAt };
  }

  /** The token's subject and expiry; undefined when forged, malformed or expired. */
  verify(token: string): { subject: string; expiresAt: number } | undefined {
    if (token.length > 1024) return undefined;
    const dot = token.indexOf(".");
    if (dot <= 0) return undefined;
    const payload = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const want = Buffer.from(this.#mac(payload), "base64url");
    if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
    try {
      const { s, e } = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as {
        s: unknown;
        e: unknown;
      };
      if (typeof s !== "string" || typeof e !== "number" || e <= this.now()) return undefined;
      return { subject: s, expiresAt: e };
    } catch {
      return undefined;
    }
  }

  #mac(payload: string): string {
    return createHmac("sha256", this.#key).update(payload).digest("base64url");
  }
}

/**
 * Who an Authorization header speaks for, without a secret in it: the user
 * of Basic credentials, or a fingerprint of a bearer token.
 */
export function subjectOf(authorization: string): string {
  const basic = /^Basic\s+(\S+)$/i.exec(authorization);
  if (basic !== null) {
    const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    return `user:${colon < 0 ? decoded : decoded.slice(0, colon)}`;
  }
  return `token:${createHash("sha256").update(authorization).digest("hex").slice(0, 12)}`;
}
