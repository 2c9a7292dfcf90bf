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
 *
 * Nodes. A region may list several registry nodes (mesh.json `registry` as
 * a list): each is probed on its own (`GET /healthz`, which also says what
 * its view has applied) and has its own state (./front-door-nodes.ts
 * observeNode, the same rules); the region's registry "answers" while at
 * least one of its nodes does, and a request that cannot reach a node takes
 * that node down at once, the region only with its last up node.
 */
import type { Agent } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { PeerClient } from "../mesh-client/peer-client.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import {
  appliedOfHealthz,
  initialNodeState,
  type NodeObservation,
  type NodeState,
  observeNode,
  WriteFloors,
} from "./front-door-nodes.js";
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

/** A registry node: its URL (no trailing slash) and an agent for probes and rules. */
export interface NodeTarget {
  registry: string;
  /** For probes and rules (apart from the proxy's agents, as a client of its own would be). */
  agent: Agent;
}

export interface ProbeTarget {
  region: string;
  /** The region's registry nodes (protocol/mesh.ts registriesOf), one or more. */
  nodes: readonly NodeTarget[];
  client: PeerClient;
}

/** The probe loops and the state of every region (decisions: observeRegion). */
export class RegionMonitor {
  readonly #states = new Map<string, RegionState>();
  /** Each region's nodes, index-aligned with its target's `nodes`. */
  readonly #nodes = new Map<string, NodeState[]>();
  readonly #targets: ProbeTarget[];
  readonly #intervalMs: number;
  readonly #identity: string;
  readonly #onChange: (state: RegionState, previous: RegionState) => void;
  readonly #onNodeChange: (state: NodeState) => void;
  readonly #polls = new Map<string, Promise<void>>();
  /** The floors of the writes passed through the front door (./front-door-nodes.ts). */
  readonly floors = new WriteFloors();
  #abort = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(options: {
    targets: ProbeTarget[];
    intervalMs: number;
    identity: string;
    onChange: (state: RegionState, previous: RegionState) => void;
    /** A node went up or down. */
    onNodeChange?: (state: NodeState) => void;
  }) {
    this.#targets = options.targets;
    this.#intervalMs = options.intervalMs;
    this.#identity = options.identity;
    this.#onChange = options.onChange;
    this.#onNodeChange = options.onNodeChange ?? (() => undefined);
    for (const t of this.#targets) {
      this.#states.set(t.region, initialRegionState(t.region));
      this.#nodes.set(
        t.region,
        t.nodes.map((n) => initialNodeState(t.region, n.registry)),
      );
    }
  }

  get states(): ReadonlyMap<string, RegionState> {
    return this.#states;
  }

  /** Every region's nodes and their state. */
  get nodes(): ReadonlyMap<string, readonly NodeState[]> {
    return this.#nodes;
  }

  /** Whether `node` of `region` is up now. */
  nodeUp(region: string, node: string): boolean {
    return this.#nodes.get(region)?.some((n) => n.node === node && n.up) === true;
  }

  /**
   * A node of `region` for the front door's own calls (home rules, checking
   * credentials): the first up one, else the first. Undefined for a region
   * not in the mesh.
   */
  nodeOf(region: string): NodeTarget | undefined {
    const t = this.#targets.find((x) => x.region === region);
    if (t === undefined) return undefined;
    const states = this.#nodes.get(region)!;
    return t.nodes.find((_, i) => states[i]?.up) ?? t.nodes[0];
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
   * One observation of a node. A node found unreachable that was its
   * region's last up node takes the region down with it.
   */
  recordNode(region: string, node: string, observation: NodeObservation): void {
    const nodes = this.#nodes.get(region);
    const i = nodes?.findIndex((n) => n.node === node) ?? -1;
    if (nodes === undefined || i < 0) return;
    const previous = nodes[i]!;
    const next = observeNode(previous, observation, { missesToDown: MISSES_TO_DOWN, alpha: RTT_ALPHA });
    nodes[i] = next;
    if (observation.kind === "probe-ok" || observation.kind === "applied") {
      // Repositories every up node of the region has applied need no floor any more (a node
      // that comes back has caught up with the log before it listens: node/data/log-follow.ts).
      const up = nodes.filter((n) => n.up);
      const least = Math.min(...up.map((n) => n.applied?.[region] ?? 0));
      if (up.length > 0 && least > 0) this.floors.prune(region, least);
    }
    if (next.up !== previous.up) this.#onNodeChange(next);
    if (observation.kind === "unreachable" && !nodes.some((n) => n.up))
      this.record(region, { kind: "unreachable", at: observation.at, error: observation.error });
  }

  /**
   * Poll every region's Status once more (read-your-writes waits); one poll
   * per region in flight, shared by every waiter (a single flight, not a
   * concurrency gate: a map of promises is all it takes, p-limit would add nothing).
   */
  pollStatus(): Promise<void> {
    const once = (key: string, poll: () => Promise<void>) => {
      let p = this.#polls.get(key);
      if (p === undefined) {
        p = poll().finally(() => this.#polls.delete(key));
        this.#polls.set(key, p);
      }
      return p;
    };
    return Promise.all(
      this.#targets.flatMap((t) => [
        once(t.region, () =>
          this.#status(t, this.#intervalMs).then(
            ({ status }) => this.record(t.region, { kind: "status", status }),
            () => undefined, // the probe loop counts failures
          ),
        ),
        // Each node's view applies at its own pace (./front-door-nodes.ts).
        ...t.nodes.map((n) =>
          once(`${t.region} ${n.registry}`, () =>
            this.#probeNode(t.region, n, this.#intervalMs).then(
              ({ applied }) => {
                if (applied !== undefined)
                  this.recordNode(t.region, n.registry, { kind: "applied", applied });
              },
              () => undefined,
            ),
          ),
        ),
      ]),
    ).then(() => undefined);
  }

  async #loop(t: ProbeTarget, first: () => void): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const started = performance.now();
      const [status, ...probes] = await Promise.allSettled([
        this.#status(t, this.#intervalMs),
        ...t.nodes.map((n) => this.#probeNode(t.region, n, this.#intervalMs)),
      ]);
      if (signal.aborted) break;
      const at = Date.now();
      t.nodes.forEach((n, i) => {
        const p = probes[i]!;
        this.recordNode(
          t.region,
          n.registry,
          p.status === "fulfilled"
            ? { kind: "probe-ok", at, rttMs: p.value.rttMs, applied: p.value.applied }
            : { kind: "probe-failed", at, error: messageOf(p.reason) },
        );
      });
      // The region answers while its peer does and at least one of its nodes does.
      const answered = probes.some((p) => p.status === "fulfilled");
      let observation: RegionObservation;
      if (status.status === "fulfilled" && answered)
        observation = { kind: "probe-ok", at, rttMs: status.value.rttMs, status: status.value.status };
      else
        observation = {
          kind: "probe-failed",
          at,
          error: messageOf(
            status.status === "rejected" ? status.reason : (probes[0] as PromiseRejectedResult).reason,
          ),
        };
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
    // A ping on the long-lived PingStatus stream, not a call of its own (mesh-client/status-pings.ts).
    const reply = await t.client.pingStatus(this.#identity, { timeoutMs, signal: this.#abort.signal });
    return { status: snapshotOf(reply), rttMs: performance.now() - started };
  }

  /**
   * `GET /healthz` on one node (open to all, with auth too): up unless it
   * fails or answers 5xx; what it has applied when it says (appliedOfHealthz).
   */
  async #probeNode(
    region: string,
    n: NodeTarget,
    timeoutMs: number,
  ): Promise<{ rttMs: number; applied: Record<string, number> | undefined }> {
    const started = performance.now();
    let reply: { status: number; body: Buffer };
    try {
      reply = await registryRequest(`${n.registry}/healthz`, {
        agent: n.agent,
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.#abort.signal]),
      });
    } catch (err) {
      const e = err as Error & { code?: string };
      throw new Error(`registry: ${e.code ?? e.message}`, { cause: err });
    }
    if (reply.status >= 500) throw new Error(`registry: answered ${reply.status}`);
    const rttMs = performance.now() - started;
    if (reply.status !== 200) return { rttMs, applied: undefined };
    try {
      return { rttMs, applied: appliedOfHealthz(region, JSON.parse(reply.body.toString("utf8"))) };
    } catch {
      return { rttMs, applied: undefined };
    }
  }
}

function messageOf(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

function snapshotOf(reply: StatusReply__Output): StatusSnapshot {
  return {
    applied: Object.fromEntries(Object.entries(reply.applied ?? {}).map(([k, v]) => [k, Number(v)])),
    peers: (reply.peers ?? []).map((p) => ({ region: p.region, up: p.up, rttMs: Number(p.rttMs) })),
    epoch: Number(reply.epoch ?? 0),
    fence: reply.fence ?? "",
  };
}
