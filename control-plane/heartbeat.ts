/**
 * Membership by heartbeat: each peer is asked for its Status every interval;
 * the answers (or their absence) decide whether it is up, and time the round
 * trip.
 *
 * The decision is the pure function `observe(health, observation, rules)`:
 * no clock, no IO, table-tested. `Heartbeat` is the IO around it: one probe
 * loop per peer, never two probes of one peer in flight, listeners told of
 * every update and every up/down change.
 *
 * Rules: a peer starts `unknown`; any success makes it `up` and clears its
 * misses; `missesToDown` consecutive failures make it `down` (an `unknown`
 * peer too). The RTT is an EWMA (weight `alpha` on the new sample) of the
 * successful round trips; failures leave it as it was. What a peer reported
 * in its last answer (applied sequences, failover epoch, its own view of the
 * other regions) is kept until the next answer; failures leave it as it was.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { inStartupGrace, STARTUP_GRACE_MS } from "../protocol/startup-grace.js";

export type PeerState = "unknown" | "up" | "down";

export interface PeerHealth {
  peer: string;
  state: PeerState;
  /** Consecutive failed heartbeats (0 after a success). */
  misses: number;
  /** Smoothed round trip in ms; undefined before the first success. */
  rttMs: number | undefined;
  /** Wall-clock ms of the last success; undefined before it. */
  lastSeenAt: number | undefined;
  /** Why the last heartbeat failed; undefined after a success. */
  lastError: string | undefined;
  /** The peer's last reported applied sequence per region (from Status). */
  applied: Readonly<Record<string, number>>;
  /** The highest failover epoch the peer last reported (0 before it answered). */
  epoch: number;
  /** How the peer last reported seeing the regions it heartbeats (its Status `peers`). */
  peers: readonly RemotePeerView[];
}

/** One region as another region's peer sees it (Status `peers`). */
export interface RemotePeerView {
  region: string;
  up: boolean;
  /** Smoothed round trip in ms (0 before the first answer). */
  rttMs: number;
  /** Wall-clock ms (the reporting peer's clock) of its last answered heartbeat; 0 if never. */
  lastSeenAtMs: number;
}

/** What a successful heartbeat reported (each field optional: absent keeps the last value). */
export interface ProbeReply {
  applied?: Record<string, number>;
  epoch?: number;
  peers?: readonly RemotePeerView[];
}

export type Observation =
  | ({ ok: true; at: number; rttMs: number } & ProbeReply)
  | { ok: false; at: number; error: string };

export interface HeartbeatRules {
  /** Consecutive misses after which a peer is down. */
  missesToDown: number;
  /** EWMA weight of a new RTT sample, in (0, 1]. */
  alpha: number;
}

export const DEFAULT_RULES: Readonly<HeartbeatRules> = Object.freeze({ missesToDown: 3, alpha: 0.2 });

export function initialHealth(peer: string): PeerHealth {
  return {
    peer,
    state: "unknown",
    misses: 0,
    rttMs: undefined,
    lastSeenAt: undefined,
    lastError: undefined,
    applied: {},
    epoch: 0,
    peers: [],
  };
}

/** The next health of a peer after one heartbeat's outcome. Pure. */
export function observe(
  health: PeerHealth,
  observation: Observation,
  rules: HeartbeatRules = DEFAULT_RULES,
): PeerHealth {
  if (observation.ok) {
    const sample = Math.max(0, observation.rttMs);
    return {
      ...health,
      state: "up",
      misses: 0,
      rttMs: health.rttMs === undefined ? sample : health.rttMs + rules.alpha * (sample - health.rttMs),
      lastSeenAt: observation.at,
      lastError: undefined,
      applied: observation.applied ?? health.applied,
      epoch: observation.epoch ?? health.epoch,
      peers: observation.peers ?? health.peers,
    };
  }
  const misses = health.misses + 1;
  return {
    ...health,
    state: misses >= rules.missesToDown ? "down" : health.state,
    misses,
    lastError: observation.error,
  };
}

export interface PeerChange {
  peer: string;
  from: PeerState;
  to: PeerState;
  health: PeerHealth;
}

/**
 * One heartbeat: resolves with what the peer reported, rejects when it did
 * not answer within `timeoutMs` (or failed). Must give up when `signal` aborts.
 */
export type Probe = (peer: string, timeoutMs: number, signal: AbortSignal) => Promise<ProbeReply>;

export interface HeartbeatOptions {
  peers: readonly string[];
  probe: Probe;
  /** Time between the starts of two heartbeats to one peer (default 1000 ms). */
  intervalMs?: number;
  /** Deadline of one heartbeat (default: the interval, at least 100 ms). */
  timeoutMs?: number;
  missesToDown?: number;
  alpha?: number;
}

export class Heartbeat {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly #rules: HeartbeatRules;
  readonly #probe: Probe;
  readonly #health = new Map<string, PeerHealth>();
  readonly #updateListeners = new Set<(health: PeerHealth) => void>();
  readonly #changeListeners = new Set<(change: PeerChange) => void>();
  #abort: AbortController | undefined;
  #loops: Promise<void>[] = [];

  constructor(options: HeartbeatOptions) {
    this.intervalMs = options.intervalMs ?? 1_000;
    this.timeoutMs = options.timeoutMs ?? Math.max(100, this.intervalMs);
    this.#rules = {
      missesToDown: options.missesToDown ?? DEFAULT_RULES.missesToDown,
      alpha: options.alpha ?? DEFAULT_RULES.alpha,
    };
    this.#probe = options.probe;
    for (const peer of options.peers) this.#health.set(peer, initialHealth(peer));
  }

  /** Start probing every peer (idempotent). */
  start(): void {
    if (this.#abort !== undefined) return;
    const abort = new AbortController();
    this.#abort = abort;
    this.#loops = [...this.#health.keys()].map((peer) => this.#loop(peer, abort.signal));
  }

  /** Stop probing; resolves once no probe is in flight. */
  async stop(): Promise<void> {
    this.#abort?.abort();
    this.#abort = undefined;
    await Promise.all(this.#loops);
    this.#loops = [];
  }

  /** Every peer's health now, ordered by peer name. */
  snapshot(): PeerHealth[] {
    return [...this.#health.values()].sort((a, b) => (a.peer < b.peer ? -1 : 1));
  }

  health(peer: string): PeerHealth | undefined {
    return this.#health.get(peer);
  }

  /** Called after every heartbeat with the peer's new health; returns an unsubscribe function. */
  onUpdate(listener: (health: PeerHealth) => void): () => void {
    this.#updateListeners.add(listener);
    return () => this.#updateListeners.delete(listener);
  }

  /** Called when a peer's state changes (unknown → up, up → down, down → up …). */
  onChange(listener: (change: PeerChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** The state changes from now on, as an async iterable that ends when `signal` aborts. */
  async *changes(signal: AbortSignal): AsyncIterable<PeerChange> {
    const queue: PeerChange[] = [];
    let wake: (() => void) | undefined;
    const off = this.onChange((c) => {
      queue.push(c);
      wake?.();
    });
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      off();
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** Apply one observation (the probe loops call it; exposed for callers with their own transport). */
  record(peer: string, observation: Observation): PeerHealth {
    const previous = this.#health.get(peer) ?? initialHealth(peer);
    const next = observe(previous, observation, this.#rules);
    this.#health.set(peer, next);
    for (const listener of this.#updateListeners) listener(next);
    if (next.state !== previous.state) {
      const change = { peer, from: previous.state, to: next.state, health: next };
      for (const listener of this.#changeListeners) listener(change);
    }
    return next;
  }

  async #loop(peer: string, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = performance.now();
      let observation: Observation;
      try {
        const reply = await this.#probe(peer, this.timeoutMs, signal);
        observation = {
          ok: true,
          at: Date.now(),
          rttMs: performance.now() - started,
          applied: reply.applied,
          epoch: reply.epoch,
          peers: reply.peers,
        };
      } catch (err) {
        observation = { ok: false, at: Date.now(), error: (err as Error)?.message ?? String(err) };
      }
      if (signal.aborted) return;
      this.record(peer, observation);
      const wait = this.intervalMs - (performance.now() - started);
      try {
        await sleep(Math.max(0, wait), undefined, { signal });
      } catch {
        return;
      }
    }
  }
}

/**
 * Log `heartbeat`'s changes: a peer going down at warn, up at info — except
 * a peer never seen up that refuses within `graceMs` of this call (it is
 * still starting, protocol/startup-grace.ts): info, and a warn once when the
 * grace ends if it is still not up. Returns a function that stops the grace
 * timer (the change listener goes with the heartbeat).
 */
export function logPeerChanges(heartbeat: Heartbeat, log: Logger, graceMs = STARTUP_GRACE_MS): () => void {
  const startedAtMs = Date.now();
  const notUpYet = new Set<string>();
  heartbeat.onChange((c) => {
    const fields = { peer: c.peer, from: c.from, to: c.to, err: c.health.lastError };
    notUpYet.delete(c.peer);
    if (c.to === "down" && c.from === "unknown" && inStartupGrace(startedAtMs, Date.now(), graceMs)) {
      notUpYet.add(c.peer);
      log.info(fields, "peer not up yet");
    } else if (c.to === "down") log.warn(fields, "peer down");
    else log.info(fields, c.to === "up" ? "peer up" : "peer state changed");
  });
  const graceEnd = setTimeout(() => {
    for (const peer of notUpYet)
      log.warn({ peer, err: heartbeat.health(peer)?.lastError, graceMs }, "peer still down after start-up");
    notUpYet.clear();
  }, graceMs);
  graceEnd.unref();
  return () => clearTimeout(graceEnd);
}
