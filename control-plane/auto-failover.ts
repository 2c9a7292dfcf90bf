/**
 * Automatic failover (README "Operations"): when a region has been dark for
 * `failover.autoAfterMs`, the repositories homed there are re-homed without
 * an operator, by the same admin call `meridian failover` makes.
 *
 * Who acts: every peer runs the same pure rule over its heartbeats
 * (`autoFailoverDecision`), and only the successor acts: the first region of
 * the mesh file, in its order, that is up (itself included) other than the
 * dark one. So operators choose the successor by ordering mesh.json.
 *
 * When: the dark region has missed heartbeats for at least `afterMs` as this
 * peer sees it, and every other region this peer hears from reports it down
 * too, and (in a mesh of three or more) at least one does: a region only this
 * peer cannot reach is a partition of this peer, not an outage. In a mesh of
 * two nothing can confirm; the lease keeps that case safe. `afterMs` is at least the lease, so the old home has stopped
 * accepting home writes before anything moves (control-plane/fence.ts); the
 * node re-checks that before it commits.
 *
 * Once per outage: after acting for a region, the peer waits for that region
 * to be seen up again before it would act for it again. If two peers disagree
 * about who the successor is (their views differ for a moment), both re-home
 * at the same new epoch; the home register at one epoch is last-writer-wins,
 * so every region still ends with one home.
 */
import type { Agent } from "node:http";
import type { Logger } from "pino";
import type { PeerHealth } from "./heartbeat.js";
import { registryRequest } from "./registry-http.js";

export interface AutoFailoverInput {
  now: number;
  /** This peer's region. */
  self: string;
  /** Every region of the mesh, in the mesh file's order. */
  regions: readonly string[];
  /** This peer's heartbeats of the other regions. */
  health: readonly PeerHealth[];
  afterMs: number;
  /** Regions already failed over in their current outage. */
  done: ReadonlySet<string>;
}

/** The failover this peer should make now, if any. Pure. */
export function autoFailoverDecision(input: AutoFailoverInput): { from: string; to: string } | undefined {
  const { now, self, regions, health, afterMs, done } = input;
  const byRegion = new Map(health.map((h) => [h.peer, h]));
  const isUp = (r: string) => r === self || byRegion.get(r)?.state === "up";
  for (const dark of regions) {
    if (dark === self || done.has(dark)) continue;
    const h = byRegion.get(dark);
    if (h === undefined || h.state !== "down") continue;
    // Dark for long enough as this peer sees it (never seen counts from never: no failover of a region never known).
    if (h.lastSeenAt === undefined || now - h.lastSeenAt < afterMs) continue;
    // Every region this peer hears from must see it down as well.
    const witnesses = health.filter((w) => w.peer !== dark && w.state === "up");
    const agreed = witnesses.every((w) => {
      const view = w.peers.find((p) => p.region === dark);
      return view !== undefined && !view.up;
    });
    // With three regions or more, someone else must confirm: alone, this peer may be the one cut off.
    if (!agreed || (regions.length > 2 && witnesses.length === 0)) continue;
    const successor = regions.find((r) => r !== dark && isUp(r));
    if (successor === self) return { from: dark, to: self };
  }
  return undefined;
}

/** Forget failovers of regions seen up again (a later outage may fail them over anew). */
export function recovered(health: readonly PeerHealth[], done: Set<string>): void {
  for (const h of health) if (h.state === "up") done.delete(h.peer);
}

/**
 * Check every `everyMs` and, when this peer is the successor, ask this
 * region's node (its admin API at `registry`, through `agent`: an https://
 * registry's agent trusts the mesh CA, ./registry-http.ts) to fail over.
 * Returns a stop function.
 */
export function startAutoFailover(options: {
  self: string;
  regions: readonly string[];
  /** This region's registry node, or its nodes (mesh.json may list several): see askNodes. */
  registry: string | readonly string[];
  agent: Agent;
  afterMs: number;
  everyMs: number;
  health: () => readonly PeerHealth[];
  logger: Logger;
  /** The Authorization header for the node's admin API when it runs with auth (mesh-client/service-token.ts). */
  authorization?: () => Promise<string>;
}): () => void {
  const done = new Set<string>();
  const nodes = new NodeTurns(typeof options.registry === "string" ? [options.registry] : options.registry);
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const health = options.health();
      recovered(health, done);
      const decision = autoFailoverDecision({
        now: Date.now(),
        self: options.self,
        regions: options.regions,
        health,
        afterMs: options.afterMs,
        done,
      });
      if (decision === undefined) return;
      const headers = {
        "content-type": "application/json",
        ...(options.authorization === undefined ? {} : { authorization: await options.authorization() }),
      };
      const res = await nodes.ask((node) =>
        registryRequest(`${node}/admin/v1/failover`, {
          agent: options.agent,
          method: "POST",
          headers,
          body: JSON.stringify(decision),
          signal: AbortSignal.timeout(10_000),
        }),
      );
      const body = res.body.toString("utf8");
      if (res.status >= 200 && res.status < 300) {
        done.add(decision.from);
        options.logger.warn({ ...decision, result: JSON.parse(body) }, "automatic failover done");
      } else {
        options.logger.warn(
          { ...decision, status: res.status, body },
          "automatic failover refused; will retry",
        );
      }
    } catch (err) {
      options.logger.warn({ err }, "automatic failover failed; will retry");
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), options.everyMs);
  return () => clearInterval(timer);
}

/**
 * A region's registry nodes for the peer's calls to its own region: the
 * node that answered last first, and on a failure to get any answer
 * (refused, reset, timed out) the next one, within the same call. A failover
 * the first node may have applied before timing out is safe to send again:
 * it names its epoch's successor, and the tick would send it again anyway.
 */
export class NodeTurns {
  #nodes: string[];

  constructor(nodes: readonly string[]) {
    this.#nodes = nodes.map((n) => n.replace(/\/+$/, ""));
  }

  /** `call` on each node in turn until one answers; rejects with the last failure. */
  async ask<T>(call: (node: string) => Promise<T>): Promise<T> {
    let last: unknown;
    for (const node of [...this.#nodes]) {
      try {
        const answer = await call(node);
        this.#nodes = [node, ...this.#nodes.filter((n) => n !== node)];
        return answer;
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }
}
