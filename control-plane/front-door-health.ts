/**
 * The front door's view of region health (./front-door.ts starts it): the
 * probe loops and every region's state; the decisions are observeRegion's
 * (./front-door-routing.ts).
 *
 * Health. Every `heartbeat.intervalMs` each region is probed: its peer's
 * Status over gRPC (mesh-client/peer-client.ts; mutual TLS as `tls.identity` with
 * `<mesh.tls.dir>/NAME.crt`, plaintext with an `"insecure": true` mesh) and
 * `GET /v2/` on its registry, both within one interval. The region is routable only while both answer:
 * a region whose peer is up but whose registry is dead serves no client.
 * Two consecutive failed probes take it down, so it stops getting traffic
 * within 3 intervals of going dark (the last answered probe started at most
 * one interval before, each failed one takes at most one); one good probe
 * brings it back. Passively, a proxied request that cannot reach a region
 * (refused, reset or no connection within one interval, before any response
 * header) takes it down at once. Until its first good probe a region is down;
 * `startFrontDoor` waits for the first round before listening. Status also
 * brings what the region has applied of every log, how its peer sees the
 * others (RTT), its failover epoch and its fence, all shown on /healthz.
 */
import type { Agent } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { PeerClient } from "../mesh-client/peer-client.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import {
  initialRegionState,
  observeRegion,
  type RegionObservation,
  type RegionState,
  type StatusSnapshot,
} from "./front-door-routing.js";
import { registryRequest } from "./registry-http.js";

/** Consecutive failed probes that take a region down (see the header: 3 intervals). */
const MISSES_TO_DOWN = 2;
const RTT_ALPHA = 0.2;

export interface ProbeTarget {
  region: string;
  registry: string;
  /** For probes and rules (apart from the proxy's agents, as a client of its own would be). */
  agent: Agent;
  client: PeerClient;
}

/** The probe loops and the state of every region (decisions: observeRegion). */
export class RegionMonitor {
  readonly #states = new Map<string, RegionState>();
  readonly #targets: ProbeTarget[];
  readonly #intervalMs: number;
  readonly #identity: string;
  readonly #onChange: (state: RegionState, previous: RegionState) => void;
  readonly #polls = new Map<string, Promise<void>>();
  #abort = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(options: {
    targets: ProbeTarget[];
    intervalMs: number;
    identity: string;
    onChange: (state: RegionState, previous: RegionState) => void;
  }) {
    this.#targets = options.targets;
    this.#intervalMs = options.intervalMs;
    this.#identity = options.identity;
    this.#onChange = options.onChange;
    for (const t of this.#targets) this.#states.set(t.region, initialRegionState(t.region));
  }

  get states(): ReadonlyMap<string, RegionState> {
    return this.#states;
  }

  /** Start the probe loops; resolves once every region has been probed once. */
  start(): Promise<void> {
    const firsts: Promise<void>[] = [];
    this.#loops = this.#targets.map((t) => {
      let first!: () => void;
      firsts.push(
        new Promise<void>((r) => {
          first = r;
        }),
      );
      return this.#loop(t, first);
    });
    return Promise.all(firsts).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.all([...this.#loops, ...this.#polls.values()]);
  }

  record(region: string, observation: RegionObservation): void {
    const previous = this.#states.get(region);
    if (previous === undefined) return;
    const next = observeRegion(previous, observation, { missesToDown: MISSES_TO_DOWN, alpha: RTT_ALPHA });
    this.#states.set(region, next);
    if (next.up !== previous.up) this.#onChange(next, previous);
  }

  /**
   * Poll every region's Status once more (read-your-writes waits); one poll
   * per region in flight, shared by every waiter (a single flight, not a
   * concurrency gate: a map of promises is all it takes, p-limit would add nothing).
   */
  pollStatus(): Promise<void> {
    return Promise.all(
      this.#targets.map((t) => {
        let p = this.#polls.get(t.region);
        if (p === undefined) {
          p = this.#status(t, this.#intervalMs)
            .then(
              ({ status }) => this.record(t.region, { kind: "status", status }),
              () => undefined, // the probe loop counts failures
            )
            .finally(() => this.#polls.delete(t.region));
          this.#polls.set(t.region, p);
        }
        return p;
      }),
    ).then(() => undefined);
  }

  async #loop(t: ProbeTarget, first: () => void): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const started = performance.now();
      let observation: RegionObservation;
      try {
        const [{ status, rttMs }] = await Promise.all([
          this.#status(t, this.#intervalMs),
          this.#registry(t, this.#intervalMs),
        ]);
        observation = { kind: "probe-ok", at: Date.now(), rttMs, status };
      } catch (err) {
        observation = { kind: "probe-failed", at: Date.now(), error: (err as Error)?.message ?? String(err) };
      }
      if (signal.aborted) break;
      this.record(t.region, observation);
      first();
      try {
        await sleep(Math.max(0, this.#intervalMs - (performance.now() - started)), undefined, { signal });
      } catch {
        break;
      }
    }
    first();
  }

  async #status(t: ProbeTarget, timeoutMs: number): Promise<{ status: StatusSnapshot; rttMs: number }> {
    const started = performance.now();
    const reply = await t.client.status(this.#identity, { timeoutMs, signal: this.#abort.signal });
    return { status: snapshotOf(reply), rttMs: performance.now() - started };
  }

  async #registry(t: ProbeTarget, timeoutMs: number): Promise<void> {
    let status: number;
    try {
      ({ status } = await registryRequest(`${t.registry}/v2/`, {
        agent: t.agent,
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.#abort.signal]),
      }));
    } catch (err) {
      const e = err as Error & { code?: string };
      throw new Error(`registry: ${e.code ?? e.message}`, { cause: err });
    }
    if (status >= 500) throw new Error(`registry: answered ${status}`);
  }
}

function snapshotOf(reply: StatusReply__Output): StatusSnapshot {
  return {
    applied: Object.fromEntries(Object.entries(reply.applied ?? {}).map(([k, v]) => [k, Number(v)])),
    peers: (reply.peers ?? []).map((p) => ({ region: p.region, up: p.up, rttMs: Number(p.rttMs) })),
    epoch: Number(reply.epoch ?? 0),
    fence: reply.fence ?? "",
  };
}
