/**
 * The front door's decisions about a region's registry nodes, pure like
 * ./front-door-routing.ts (no clock read, no IO): each node's health and what
 * its view has applied, which nodes may serve a read-your-writes read, the
 * order to try a region's nodes in, and the floors of the writes passed
 * through (WriteFloors: bookkeeping without IO or clock).
 *
 * A region may run several stateless registry nodes with no load balancer of
 * its own (mesh.json `registry` as a list, protocol/mesh.ts registriesOf).
 * ./front-door-routing.ts `route` picks the regions; `attemptsFor` turns
 * them into attempts at nodes:
 * - Within a region, the up nodes, fewest requests outstanding first (at
 *   this front door), ties in round-robin order from a cursor the caller
 *   advances per request; the region's other nodes follow before the next
 *   region, so a read whose node fails or misses its first-byte bound is
 *   retried on another node of the same region first.
 * - Read-your-writes: each node has its own view, which follows the region's
 *   log at its own pace, so a read carrying `Meridian-Seq` goes only to a node
 *   that has applied every token: its last `/healthz` (`applied`, per origin)
 *   or a write it answered (its `Meridian-Seq` is applied there before the
 *   answer leaves, node/data/commit-step.ts), never a lagging one. A region of one
 *   node keeps today's rule besides (the region has applied the token: it is
 *   its origin, or its peer's Status says so), so nothing changes for it.
 * - Writes passed through this front door set floors (WriteFloors): a view
 *   applies the log in order, so a node that has applied a write's position
 *   has applied every earlier one. Writes (and the steps of an upload) go to
 *   a node known to have applied every write the front door has seen its
 *   region answer: a manifest pushed right after its blobs, through another
 *   node, finds them linked in that node's view. Reads of a repository go to
 *   a node known to have applied the last write to it answered here, until
 *   every node has: a client that pushes and then pulls through the front
 *   door sees its push without sending `Meridian-Seq`, as with one node. Both
 *   are preferences among the up nodes (freshestNodes): those known to have
 *   applied the floor come first, then the region's other nodes (a retry
 *   there beats one in another region, which may lag as much). Other reads
 *   are spread over every up node.
 * - Upload sessions (`_region`) go to any up node of their region: with the
 *   S3 store the session lives in the bucket (node/data/s3-uploads.ts), with
 *   the filesystem store in files every node sharing the region's storage
 *   root reads (node/data/fs-blob-store.ts), so a session need not stick to
 *   the node that opened it.
 */
import type { RouteReason, SeqToken } from "./front-door-routing.js";

/** What the front door knows of one registry node of a region. */
export interface NodeState {
  region: string;
  /** The node's registry URL without a trailing slash (its name in metrics and /healthz). */
  node: string;
  /** Routable: answered its last probe and not found unreachable since. */
  up: boolean;
  /** Consecutive failed probes (0 after a success). */
  misses: number;
  /** Smoothed round trip of the node's probes, ms; undefined before the first. */
  rttMs: number | undefined;
  lastSeenAt: number | undefined;
  lastError: string | undefined;
  /**
   * What the node's view has applied, per origin region (its own region: the
   * position in the region's log); undefined until it said. Lowered only by
   * its own report (a node whose view was rebuilt starts over).
   */
  applied: Readonly<Record<string, number>> | undefined;
}

export function initialNodeState(region: string, node: string): NodeState {
  return {
    region,
    node,
    up: false,
    misses: 0,
    rttMs: undefined,
    lastSeenAt: undefined,
    lastError: undefined,
    applied: undefined,
  };
}

export type NodeObservation =
  /** The node answered its probe (`applied`: its /healthz's, when it said). */
  | { kind: "probe-ok"; at: number; rttMs: number; applied: Record<string, number> | undefined }
  /** The probe failed, answered 5xx, or timed out. */
  | { kind: "probe-failed"; at: number; error: string }
  /** A proxied request could not reach it (refused, reset, connect timeout, no first byte in time). */
  | { kind: "unreachable"; at: number; error: string }
  /** News of what it applied, not of its health: an extra /healthz poll (read-your-writes waits). */
  | { kind: "applied"; applied: Record<string, number> }
  /** It answered a write with `Meridian-Seq: origin:seq`: applied there before the answer. */
  | { kind: "wrote"; origin: string; seq: number };

/**
 * The next state of a node after one observation: the rules of a region
 * (./front-door-routing.ts observeRegion): up on one good probe, down after
 * `missesToDown` failed ones or at once when a request could not reach it.
 */
export function observeNode(
  state: NodeState,
  o: NodeObservation,
  rules: { missesToDown: number; alpha: number },
): NodeState {
  switch (o.kind) {
    case "probe-ok": {
      const sample = Math.max(0, o.rttMs);
      return {
        ...state,
        up: true,
        misses: 0,
        rttMs: state.rttMs === undefined ? sample : state.rttMs + rules.alpha * (sample - state.rttMs),
        lastSeenAt: o.at,
        lastError: undefined,
        applied: o.applied ?? state.applied,
      };
    }
    case "probe-failed": {
      const misses = state.misses + 1;
      return { ...state, up: state.up && misses < rules.missesToDown, misses, lastError: o.error };
    }
    case "unreachable":
      return { ...state, up: false, lastError: o.error };
    case "applied":
      return { ...state, applied: o.applied };
    case "wrote": {
      const known = state.applied?.[o.origin] ?? 0;
      if (known >= o.seq) return state;
      return { ...state, applied: { ...state.applied, [o.origin]: o.seq } };
    }
  }
}

/**
 * A node's `/healthz` as what it has applied: `applied` (every origin's
 * events replicated into its region and applied by its view, its own region
 * included), else `appliedSeq` (its own region's log only; an older node).
 * Undefined when the answer says neither.
 */
export function appliedOfHealthz(region: string, body: unknown): Record<string, number> | undefined {
  const b = body as { applied?: unknown; appliedSeq?: unknown } | null;
  if (typeof b !== "object" || b === null) return undefined;
  const out: Record<string, number> = {};
  if (typeof b.applied === "object" && b.applied !== null) {
    for (const [origin, seq] of Object.entries(b.applied as Record<string, unknown>))
      if (typeof seq === "number" && Number.isFinite(seq)) out[origin] = seq;
  }
  if (typeof b.appliedSeq === "number" && Number.isFinite(b.appliedSeq)) out[region] = b.appliedSeq;
  return Object.keys(out).length === 0 ? undefined : out;
}

/** Whether the node's view has applied every token's event, as far as the front door knows. */
export function nodeHasApplied(tokens: readonly SeqToken[], node: NodeState): boolean {
  return tokens.every((t) => (node.applied?.[t.origin] ?? 0) >= t.seq);
}

/**
 * The nodes of a region that may serve a read carrying `tokens` (all of them
 * without tokens). `regionHasApplied`: today's region-level rule
 * (./front-door-routing.ts hasApplied); it admits the only node of a
 * one-node region, never a node among several.
 */
export function servingNodes(
  nodes: readonly NodeState[],
  tokens: readonly SeqToken[],
  regionHasApplied: boolean,
): NodeState[] {
  if (tokens.length === 0) return nodes.filter((n) => n.up);
  return nodes.filter((n) => n.up && (nodeHasApplied(tokens, n) || (nodes.length === 1 && regionHasApplied)));
}

/**
 * The order to try `nodes` in (indexes into it): fewest `outstanding`
 * requests first, ties in round-robin order starting at `cursor` (mod the
 * number of nodes). Deterministic; every index appears once.
 */
export function nodeOrder(outstanding: readonly number[], cursor: number): number[] {
  const n = outstanding.length;
  const start = n === 0 ? 0 : ((cursor % n) + n) % n;
  const rotated = Array.from({ length: n }, (_, i) => (start + i) % n);
  return rotated.sort((x, y) => (outstanding[x] ?? 0) - (outstanding[y] ?? 0) || rotation(x) - rotation(y));
  function rotation(i: number): number {
    return (i - start + n) % n;
  }
}

/**
 * Among `nodes` (of `region`), those known to have applied `floor` of the
 * region's log; all of them when none is known to (a write is then sent as
 * without several nodes: the node answers from its view, never refused here).
 */
export function freshestNodes(nodes: readonly NodeState[], region: string, floor: number): NodeState[] {
  const fresh = nodes.filter((n) => (n.applied?.[region] ?? 0) >= floor);
  return fresh.length > 0 ? fresh : [...nodes];
}

/** At most this many repositories' floors are kept per region (the oldest go first). */
const MAX_REPOSITORY_FLOORS = 10_000;

/**
 * The floors of the writes passed through the front door (see the header):
 * per region the highest position of its log a node answered a write with,
 * and per repository the position of its last write, until every node of the
 * region is known to have applied it (`prune`). No IO, no clock.
 */
export class WriteFloors {
  readonly #region = new Map<string, number>();
  readonly #repos = new Map<string, Map<string, number>>();

  /** A node of `region` answered a write (to `repo`, when the path named one) at `seq` of its log. */
  wrote(region: string, repo: string | undefined, seq: number): void {
    if (seq > (this.#region.get(region) ?? 0)) this.#region.set(region, seq);
    if (repo === undefined) return;
    const repos = this.#repos.get(region) ?? new Map<string, number>();
    this.#repos.set(region, repos);
    const known = repos.get(repo) ?? 0;
    repos.delete(repo); // re-inserted last: the map's order is the eviction order
    repos.set(repo, Math.max(known, seq));
    if (repos.size > MAX_REPOSITORY_FLOORS) repos.delete(repos.keys().next().value!);
  }

  /** The floor of a write to `region`: every write answered there. */
  forWrite(region: string): number {
    return this.#region.get(region) ?? 0;
  }

  /** The floor of a read of `repo` in `region`: its last write answered there (0: none pending). */
  forRead(region: string, repo: string | undefined): number {
    return repo === undefined ? 0 : (this.#repos.get(region)?.get(repo) ?? 0);
  }

  /** Forget repositories' floors every node of `region` has applied (`applied`: the least of them). */
  prune(region: string, applied: number): void {
    const repos = this.#repos.get(region);
    if (repos === undefined) return;
    for (const [repo, seq] of repos) if (seq <= applied) repos.delete(repo);
  }

  /** Repositories with a floor pending in `region` (for tests and /healthz). */
  pending(region: string): number {
    return this.#repos.get(region)?.size ?? 0;
  }
}

/** One attempt of a request: a node of a candidate region. */
export interface Attempt {
  region: string;
  reason: RouteReason;
  node: string;
}

/**
 * The attempts for a routing decision's candidate regions, in order: per
 * region its serving nodes (servingNodes) by nodeOrder, those past the
 * floor first. `outstanding` is per region, index-aligned with `nodes`;
 * `cursor` is asked once per region (the caller advances it).
 */
export function attemptsFor(
  candidates: ReadonlyArray<{ region: string; reason: RouteReason }>,
  view: {
    nodes: ReadonlyMap<string, readonly NodeState[]>;
    outstanding: (region: string) => readonly number[];
    cursor: (region: string) => number;
    tokens: readonly SeqToken[];
    /** The region-level read-your-writes rule (./front-door-routing.ts hasApplied). */
    regionHasApplied: (region: string) => boolean;
    /**
     * The position of the region's log a node should have applied to serve
     * the request (WriteFloors; 0: none). Nodes known to have applied it are
     * preferred (freshestNodes).
     */
    floor?: (region: string) => number;
  },
): Attempt[] {
  const out: Attempt[] = [];
  for (const c of candidates) {
    const nodes = view.nodes.get(c.region) ?? [];
    const serving = servingNodes(
      nodes,
      view.tokens,
      view.tokens.length > 0 && view.regionHasApplied(c.region),
    );
    const floor = view.floor?.(c.region) ?? 0;
    const fresh = new Set(floor > 0 ? freshestNodes(serving, c.region, floor) : serving);
    const ordered = nodeOrder(view.outstanding(c.region), view.cursor(c.region))
      .map((i) => nodes[i]!)
      .filter((n) => serving.includes(n));
    // The floor orders, it does not exclude: when the fresh nodes fail, the region's others
    // (most likely caught up by then) come before another region (which may lag as much).
    for (const n of [...ordered.filter((x) => fresh.has(x)), ...ordered.filter((x) => !fresh.has(x))])
      out.push({ region: c.region, reason: c.reason, node: n.node });
  }
  return out;
}
