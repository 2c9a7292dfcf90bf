/**
 * The front door's decisions, as pure functions of what it observes (no
 * clock read, no IO): which region a client belongs to, which regions are up,
 * which are nearest, which have applied a read-your-writes token, where a
 * repository's writes go (request targets and Location headers: ./front-door-urls.ts). The process
 * around them (probes, proxying, metrics) is control-plane/front-door.ts,
 * whose header documents the behaviour as a whole.
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";
import {
  type MeridianError,
  PeerUnavailableError,
  UnsupportedError,
  UploadNotFoundError,
} from "../protocol/errors.js";
import { parseRepository } from "../protocol/names.js";
import { nearestFirst } from "../protocol/routing.js";
import { type NodeState, servingNodes } from "./front-door-nodes.js";

/** Why a request went where it did (the `reason` label of the routing metric). */
export type RouteReason = "local" | "nearest" | "home" | "read-your-writes" | "upload-session";

// ---------------------------------------------------------------- health

/** What the front door knows of one region, from its probes and the region's last Status. */
export interface RegionState {
  region: string;
  /** Routable: answered its last probe (peer Status and registry), not marked down since. */
  up: boolean;
  /** Consecutive failed probes (0 after a success). */
  misses: number;
  /** Smoothed round trip of the front door's Status calls, ms; undefined before the first. */
  rttMs: number | undefined;
  /** Wall-clock ms of the last successful probe. */
  lastSeenAt: number | undefined;
  lastError: string | undefined;
  /** The last Status the region answered (kept while it is down: its RTTs still order the others). */
  applied: Readonly<Record<string, number>>;
  /** How the region's peer sees the others: smoothed RTT (0 = never measured) and up. */
  peers: ReadonlyArray<{ region: string; up: boolean; rttMs: number }>;
  epoch: number;
  fence: string;
}

export function initialRegionState(region: string): RegionState {
  return {
    region,
    up: false,
    misses: 0,
    rttMs: undefined,
    lastSeenAt: undefined,
    lastError: undefined,
    applied: {},
    peers: [],
    epoch: 0,
    fence: "",
  };
}

export interface StatusSnapshot {
  applied: Record<string, number>;
  peers: Array<{ region: string; up: boolean; rttMs: number }>;
  epoch: number;
  fence: string;
}

export type RegionObservation =
  /** A probe answered: the region's Status (and its registry answered too). */
  | { kind: "probe-ok"; at: number; rttMs: number; status: StatusSnapshot }
  /** A probe failed or timed out. */
  | { kind: "probe-failed"; at: number; error: string }
  /** A proxied request could not reach the region's registry (refused, reset, connect timeout). */
  | { kind: "unreachable"; at: number; error: string }
  /** An extra Status poll (read-your-writes waits): news of what it applied, not of its health. */
  | { kind: "status"; status: StatusSnapshot };

export interface HealthRules {
  /** Consecutive failed probes after which a region is down. */
  missesToDown: number;
  /** EWMA weight of a new RTT sample, in (0, 1]. */
  alpha: number;
}

/**
 * The next state of a region after one observation. A probe success makes it
 * up (one is enough); `missesToDown` consecutive probe failures make it down;
 * a proxied request that could not reach it makes it down at once.
 */
export function observeRegion(state: RegionState, o: RegionObservation, rules: HealthRules): RegionState {
  switch (o.kind) {
    case "probe-ok": {
      const sample = Math.max(0, o.rttMs);
      return {
        ...state,
        ...o.status,
        up: true,
        misses: 0,
        rttMs: state.rttMs === undefined ? sample : state.rttMs + rules.alpha * (sample - state.rttMs),
        lastSeenAt: o.at,
        lastError: undefined,
      };
    }
    case "probe-failed": {
      const misses = state.misses + 1;
      return { ...state, up: state.up && misses < rules.missesToDown, misses, lastError: o.error };
    }
    case "unreachable":
      return { ...state, up: false, lastError: o.error };
    case "status":
      return { ...state, ...o.status };
  }
}

// ---------------------------------------------------------------- client region

export interface ClientRegionTable {
  /** Longest prefix first. */
  readonly entries: ReadonlyArray<{ cidr: string; prefix: number; list: BlockList; region: string }>;
}

/** A CIDR (`10.0.0.0/8`, `fd00::/8`) as address, family and prefix; undefined when malformed. */
export function parseCidr(
  text: string,
): { address: string; family: "ipv4" | "ipv6"; prefix: number } | undefined {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
  if (m === null) return undefined;
  const address = m[1]!;
  const prefix = Number(m[2]);
  if (isIPv4(address) && prefix <= 32) return { address, family: "ipv4", prefix };
  if (isIPv6(address) && prefix <= 128) return { address, family: "ipv6", prefix };
  return undefined;
}

/** The CIDR → region table, ready for longest-prefix matching (CIDRs already validated). */
export function clientRegionTable(cidrs: Readonly<Record<string, string>>): ClientRegionTable {
  const entries = Object.entries(cidrs).map(([cidr, region]) => {
    const parsed = parseCidr(cidr);
    if (parsed === undefined) throw new Error(`not a CIDR: ${cidr}`);
    const list = new BlockList();
    list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    return { cidr, prefix: parsed.prefix, list, region };
  });
  entries.sort((x, y) => y.prefix - x.prefix || (x.cidr < y.cidr ? -1 : 1));
  return { entries };
}

/**
 * The region a client belongs to: the override header if it names a mesh
 * region; else the longest CIDR prefix holding its address (an IPv4 address
 * seen on an IPv6 socket as `::ffff:a.b.c.d` counts as IPv4); else the default.
 */
export function clientRegionOf(input: {
  header: string | undefined;
  address: string | undefined;
  table: ClientRegionTable;
  defaultRegion: string;
  regions: readonly string[];
}): string {
  const named = input.header?.trim().toLowerCase();
  if (named !== undefined && input.regions.includes(named)) return named;
  let address = input.address;
  if (address !== undefined) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped !== null) address = mapped[1]!;
    const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
    if (family !== undefined) {
      for (const e of input.table.entries) if (e.list.check(address, family)) return e.region;
    }
  }
  return input.defaultRegion;
}

// ---------------------------------------------------------------- nearest

/**
 * Round trip between two regions as their peers measure it: x's view of y,
 * else y's view of x; undefined when neither has measured it.
 */
export function regionRtt(
  x: string,
  y: string,
  states: ReadonlyMap<string, RegionState>,
): number | undefined {
  if (x === y) return 0;
  const seen = (from: string, to: string) => {
    const p = states.get(from)?.peers.find((v) => v.region === to);
    return p !== undefined && p.rttMs > 0 ? p.rttMs : undefined;
  };
  return seen(x, y) ?? seen(y, x);
}

/**
 * The up regions among `eligible` in the order to try them for a client of
 * `client`: its own region first, then by RTT from its region (never measured
 * last), ties by name (protocol/routing.ts nearestFirst).
 */
export function nearestUp(
  client: string,
  eligible: readonly string[],
  states: ReadonlyMap<string, RegionState>,
): string[] {
  const up = eligible.filter((r) => states.get(r)?.up === true);
  const others = up.filter((r) => r !== client);
  const ordered = nearestFirst(
    others,
    others.map((r) => ({ region: r, up: true, rttMs: regionRtt(client, r, states) })),
  );
  return up.includes(client) ? [client, ...ordered] : ordered;
}

// ---------------------------------------------------------------- read-your-writes tokens

export interface SeqToken {
  origin: string;
  seq: number;
}

/**
 * A `Meridian-Seq` header: comma-separated `region:seq` tokens (one per
 * origin; the greatest seq of an origin counts). Throws UnsupportedError
 * (400 UNSUPPORTED) naming the first malformed token, or one naming no
 * region of the mesh. A blank header is no token.
 */
export function parseSeqTokens(header: string, regions: readonly string[]): SeqToken[] {
  const byOrigin = new Map<string, number>();
  for (const raw of header.split(",")) {
    const text = raw.trim();
    if (text === "" && header.trim() === "") continue;
    const m = /^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?):(\d{1,15})$/.exec(text);
    if (m === null) {
      throw new UnsupportedError(`malformed Meridian-Seq token "${text.slice(0, 80)}": want region:seq`);
    }
    const origin = m[1]!;
    if (!regions.includes(origin)) {
      throw new UnsupportedError(`Meridian-Seq token "${text}" names no region of the mesh`);
    }
    byOrigin.set(origin, Math.max(byOrigin.get(origin) ?? 0, Number(m[2])));
  }
  return [...byOrigin].map(([origin, seq]) => ({ origin, seq }));
}

/** Whether `region` has applied every token's event (the origin of a token has, by definition). */
export function hasApplied(
  region: string,
  tokens: readonly SeqToken[],
  state: RegionState | undefined,
): boolean {
  return tokens.every((t) => t.origin === region || (state?.applied[t.origin] ?? 0) >= t.seq);
}

// ---------------------------------------------------------------- home regions

/** Home tables by scope (`repo`, `prefix/`, or "" for every repository), merged over regions. */
export type HomeRules = ReadonlyMap<string, Readonly<Record<string, string>>>;

/** One region's `GET /admin/v1/rules` answer, as far as homes go. */
export interface RulesDocument {
  rules?: Array<{ scope?: unknown; homes?: unknown }>;
}

/**
 * The union of several regions' rules. An epoch names one home everywhere
 * (a failover writes a new epoch), so merging the home tables loses nothing
 * and a rule one region has not replicated yet is already seen.
 */
export function mergeHomeRules(documents: readonly RulesDocument[]): HomeRules {
  const out = new Map<string, Record<string, string>>();
  for (const doc of documents) {
    for (const rule of doc.rules ?? []) {
      if (typeof rule?.scope !== "string") continue;
      const homes = out.get(rule.scope) ?? {};
      if (typeof rule.homes === "object" && rule.homes !== null) {
        for (const [epoch, region] of Object.entries(rule.homes as Record<string, unknown>)) {
          if (/^\d+$/.test(epoch) && typeof region === "string") homes[epoch] = region;
        }
      }
      out.set(rule.scope, homes);
    }
  }
  return out;
}

/**
 * A repository's home region and epoch: the rule of the longest scope that
 * covers it (the repository itself, a prefix ending in "/", or ""), at its
 * greatest epoch. Undefined when that rule names no home (or none covers it).
 */
export function homeOf(
  repo: string,
  rules: HomeRules,
): { home: string; epoch: number; scope: string } | undefined {
  let best: string | undefined;
  for (const scope of rules.keys()) {
    const covers = scope === repo || scope === "" || (scope.endsWith("/") && repo.startsWith(scope));
    if (covers && (best === undefined || scope.length > best.length)) best = scope;
  }
  if (best === undefined) return undefined;
  const current = currentHome(rules.get(best)!);
  return current === undefined ? undefined : { ...current, scope: best };
}

/** The region a home table names now (its greatest epoch's); undefined for an empty table. */
export function currentHome(
  homes: Readonly<Record<string, string>>,
): { home: string; epoch: number } | undefined {
  let epoch: number | undefined;
  for (const key of Object.keys(homes)) if (epoch === undefined || Number(key) > epoch) epoch = Number(key);
  return epoch === undefined ? undefined : { home: homes[String(epoch)]!, epoch };
}

/** Every scope that names a home, with its current home (for /healthz). */
export function homeList(rules: HomeRules): Array<{ scope: string; home: string; epoch: number }> {
  return [...rules]
    .flatMap(([scope, homes]) => {
      const h = currentHome(homes);
      return h === undefined ? [] : [{ scope, ...h }];
    })
    .sort((x, y) => (x.scope < y.scope ? -1 : x.scope > y.scope ? 1 : 0));
}

// ---------------------------------------------------------------- requests

export interface RequestShape {
  kind: "read" | "write" | "other";
  /** The repository named by an OCI path (/v2/<name>/…), when valid. */
  repo: string | undefined;
}

const REPO_PATHS = [
  /^\/v2\/(.+)\/blobs\/uploads(?:\/[^/]*)?$/,
  /^\/v2\/(.+)\/(?:manifests|blobs|referrers)\/[^/]+$/,
  /^\/v2\/(.+)\/tags\/list$/,
];

/** The repository an OCI API path names (upload paths first: a repository may be called `…/blobs`). */
export function repositoryOf(path: string): string | undefined {
  for (const pattern of REPO_PATHS) {
    const m = pattern.exec(path);
    if (m === null) continue;
    try {
      return parseRepository(m[1]!);
    } catch {
      return undefined; // the region will answer NAME_INVALID
    }
  }
  return undefined;
}

/**
 * Reads are GET/HEAD anywhere; writes are the other methods on the OCI API
 * (/v2/…); everything else (admin API writes included) is routed to the nearest region.
 */
export function requestShape(method: string, path: string): RequestShape {
  const oci = path === "/v2" || path.startsWith("/v2/");
  if (method === "GET" || method === "HEAD")
    return { kind: "read", repo: oci ? repositoryOf(path) : undefined };
  if (oci) return { kind: "write", repo: repositoryOf(path) };
  return { kind: "other", repo: undefined };
}

// ---------------------------------------------------------------- the decision

export interface RouteInput {
  method: string;
  path: string;
  clientRegion: string;
  /** Read-your-writes tokens (already parsed). */
  tokens: readonly SeqToken[];
  /** The `_region` of an upload session's URL, if any. */
  uploadRegion: string | undefined;
}

export interface RouteView {
  regions: readonly string[];
  states: ReadonlyMap<string, RegionState>;
  homes: HomeRules;
  /**
   * Each region's registry nodes (./front-door-nodes.ts). With them, a
   * read-your-writes read goes only to a region with an up node that has
   * applied its tokens (servingNodes); without, the region-level rule alone.
   */
  nodes?: ReadonlyMap<string, readonly NodeState[]>;
}

export type RouteDecision =
  /** Try these in order (the next only when a read could not reach the one before). */
  | { kind: "proxy"; candidates: Array<{ region: string; reason: RouteReason }> }
  /**
   * No region may serve the request now. `wait` (read-your-writes): the
   * caller may poll the regions again and decide anew before giving up.
   */
  | { kind: "refuse"; reason: RouteReason; error: MeridianError; wait: boolean };

/** Where one request goes. Pure: the same input and view always give the same answer. */
export function route(input: RouteInput, view: RouteView): RouteDecision {
  const { states } = view;
  if (input.uploadRegion !== undefined) {
    const r = input.uploadRegion;
    if (view.regions.includes(r) && states.get(r)?.up === true) {
      return { kind: "proxy", candidates: [{ region: r, reason: "upload-session" }] };
    }
    return {
      kind: "refuse",
      reason: "upload-session",
      error: new UploadNotFoundError(`upload session unknown: its region ${r} is down`),
      wait: false,
    };
  }
  const shape = requestShape(input.method, input.path);
  if (shape.kind === "read" && input.tokens.length > 0) {
    const eligible = view.regions.filter((r) => {
      const regionWide = hasApplied(r, input.tokens, states.get(r));
      const nodes = view.nodes?.get(r);
      return nodes === undefined ? regionWide : servingNodes(nodes, input.tokens, regionWide).length > 0;
    });
    const order = nearestUp(input.clientRegion, eligible, states);
    if (order.length > 0) {
      return { kind: "proxy", candidates: order.map((region) => ({ region, reason: "read-your-writes" })) };
    }
    const wanted = input.tokens.map((t) => `${t.origin}:${t.seq}`).join(", ");
    return {
      kind: "refuse",
      reason: "read-your-writes",
      error: new PeerUnavailableError(`no region that is up has applied ${wanted} yet; retry later`),
      wait: true,
    };
  }
  if (shape.kind === "write" && shape.repo !== undefined) {
    const home = homeOf(shape.repo, view.homes);
    if (home !== undefined) {
      if (states.get(home.home)?.up === true) {
        return { kind: "proxy", candidates: [{ region: home.home, reason: "home" }] };
      }
      const to = nearestUp(input.clientRegion, view.regions, states)[0] ?? "<region>";
      return {
        kind: "refuse",
        reason: "home",
        error: new PeerUnavailableError(
          `repository ${shape.repo} takes writes only in its home region ${home.home} (epoch ${home.epoch}), ` +
            `which is down; to move its home: meridian failover --from ${home.home} --to ${to}`,
        ),
        wait: false,
      };
    }
  }
  const order = nearestUp(input.clientRegion, view.regions, states);
  if (order.length === 0) {
    return {
      kind: "refuse",
      reason: "nearest",
      error: new PeerUnavailableError("no region is up"),
      wait: false,
    };
  }
  return {
    kind: "proxy",
    candidates: order.map((region, i) => ({
      region,
      reason: i === 0 && region === input.clientRegion ? "local" : "nearest",
    })),
  };
}
