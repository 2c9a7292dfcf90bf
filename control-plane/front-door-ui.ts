/**
 * The dashboard as the front door serves it (`/ui/`, routed here by
 * ./front-door-requests.ts before any proxying): the whole mesh. The HTTP
 * side is mesh-client/dashboard-http.ts (shared with every registry node);
 * this file is the front door's source of the state.
 *
 * - Health is the front door's own: its probes' verdict (./front-door-health.ts:
 *   down within 3 heartbeat intervals), RTT, misses, last error, and what
 *   each region's last Status said (epoch, fence, its peer's view of the
 *   others). Nothing is asked for it: `push()` (called when the probes take
 *   a region down or up) sends the new verdict to every open page at once.
 * - Homes are the front door's home cache (./front-door-homes.ts).
 * - Links are read from every region's worker metrics page on each tick,
 *   each under the feed's deadline (mesh-client/dashboard-state.ts
 *   LinkReader), the last good figures kept and marked stale.
 * - Search and activity are mesh-client/locate.ts and activity.ts over every
 *   region, with the caller's own credentials (each region answers what the
 *   caller may read), each region within SEARCH_DEADLINE_MS.
 * - Credentials (with auth) are checked as `/healthz` checks them: by an up
 *   region's admin API (`GET /admin/v1/rules`) with the caller's
 *   Authorization, within two heartbeat intervals.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { collectActivity } from "../mesh-client/activity.js";
import { DashboardFeed } from "../mesh-client/dashboard-feed.js";
import { type AccessVerdict, createDashboardHandler, verdictOf } from "../mesh-client/dashboard-http.js";
import {
  type DashboardSource,
  type DashboardState,
  LAG_OK_MS,
  LAG_WARN_MS,
  LinkReader,
  regionLevel,
} from "../mesh-client/dashboard-state.js";
import { locate } from "../mesh-client/locate.js";
import type { ServiceToken } from "../mesh-client/service-token.js";
import type { FrontDoorConfig } from "./front-door-config.js";
import type { ProbeTarget, RegionMonitor } from "./front-door-health.js";
import { credentialStatus } from "./front-door-healthz.js";
import type { HomeCache } from "./front-door-homes.js";
import { homeList } from "./front-door-routing.js";

/** Each region's answer to a search or an activity read, at most (locate's default, 5 s, is long for a page). */
const SEARCH_DEADLINE_MS = 2_500;
/** Items of recent activity shown. */
const ACTIVITY_LIMIT = 50;

export interface FrontDoorUi {
  serve(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Send the current health to every open page now (a region went down or up). */
  push(): void;
  close(): void;
}

export function createFrontDoorUi(deps: {
  config: Readonly<FrontDoorConfig>;
  regionNames: readonly string[];
  targets: readonly ProbeTarget[];
  monitor: RegionMonitor;
  homes: HomeCache;
  /** Proves to the node that the caller's address in X-Forwarded-For is to be trusted (auth on). */
  proxyProof?: ServiceToken;
  log: Logger;
}): FrontDoorUi {
  const { config, regionNames, monitor, homes, log } = deps;
  const links = new LinkReader(
    config.mesh.regions.map((r) => ({ region: r.name, worker: r.metrics?.worker })),
    regionNames,
  );
  const up = (region: string) => monitor.states.get(region)?.up;

  const source: DashboardSource = {
    refresh: (deadlineMs) => links.refresh(deadlineMs),
    snapshot(): DashboardState {
      return {
        scope: "mesh",
        servedBy: "front door",
        at: new Date().toISOString(),
        thresholds: { okMs: LAG_OK_MS, warnMs: LAG_WARN_MS },
        heartbeatMs: config.heartbeat.intervalMs,
        regions: regionNames.map((region) => {
          const s = monitor.states.get(region)!;
          return {
            region,
            level: regionLevel(s.up, s.fence),
            up: s.up,
            seenBy: "front door probes",
            ...(s.rttMs === undefined ? {} : { rttMs: Math.round(s.rttMs * 100) / 100 }),
            misses: s.misses,
            ...(s.lastSeenAt === undefined ? {} : { lastSeenAt: new Date(s.lastSeenAt).toISOString() }),
            ...(s.lastError === undefined ? {} : { lastError: s.lastError }),
            epoch: s.epoch,
            fence: s.fence,
            ...(s.applied[region] === undefined ? {} : { appliedSeq: s.applied[region] }),
            peers: s.peers.map((p) => ({
              region: p.region,
              up: p.up,
              ...(p.rttMs > 0 ? { rttMs: Math.round(p.rttMs * 100) / 100 } : {}),
            })),
          };
        }),
        links: links.cells(up),
        homes: homeList(homes.rules),
      };
    },
  };
  const feed = new DashboardFeed(source, (err) => log.warn({ err }, "dashboard state not collected"));

  const authorize = async (authorization: string, address: string): Promise<AccessVerdict> => {
    const status = await credentialStatus(deps, authorization, address);
    if (status === undefined)
      return { ok: false, status: 503, message: "no region is up to check the credentials" };
    return verdictOf(status);
  };

  const serve = createDashboardHandler({
    feed,
    // The caller's own credentials go to the regions' admin APIs: they see what the caller may see.
    search: (reference, authorization) =>
      locate(config.mesh, reference, { authorization, timeoutMs: SEARCH_DEADLINE_MS }),
    activity: (authorization) =>
      collectActivity(config.mesh, { authorization, limit: ACTIVITY_LIMIT, timeoutMs: SEARCH_DEADLINE_MS }),
    ...(config.auth.tokenKeyFile === undefined ? {} : { authorize }),
    onError: (err, what) => log.warn({ err, what }, "dashboard request failed"),
  });
  return { serve, push: () => feed.push(), close: () => feed.close() };
}
