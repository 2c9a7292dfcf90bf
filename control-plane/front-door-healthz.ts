/**
 * The front door's `GET /healthz` (./front-door.ts serves it on its own
 * port, next to `/metrics`): each region's up, RTT, misses, applied, epoch,
 * fence and nodes (each registry node's up, RTT, misses, applied), and the
 * homes in use; with auth, liveness only for callers without
 * a system admin's credentials.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServiceToken } from "../mesh-client/service-token.js";
import { AccessDeniedError, PeerUnavailableError, UnauthorizedError } from "../protocol/errors.js";
import type { FrontDoorConfig } from "./front-door-config.js";
import type { ProbeTarget, RegionMonitor } from "./front-door-health.js";
import type { HomeCache } from "./front-door-homes.js";
import { proofHeader, sendError } from "./front-door-proxy.js";
import { homeList } from "./front-door-routing.js";
import { registryRequest } from "./registry-http.js";

export function createHealthz(deps: {
  config: Readonly<FrontDoorConfig>;
  regionNames: readonly string[];
  targets: readonly ProbeTarget[];
  monitor: RegionMonitor;
  homes: HomeCache;
  /** Proves to the node that the caller's address in X-Forwarded-For is to be trusted (auth on). */
  proxyProof?: ServiceToken;
}): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { config, regionNames, monitor, homes } = deps;
  /**
   * `GET /healthz`. Without auth (the regions let anyone read everything,
   * home rules included) the whole view. With auth, the public answer is
   * liveness only (`status`, each region's `up`): the home rules name
   * repositories, private ones too. The whole view needs a system admin's
   * credentials (`Authorization`, as for `/admin/v1/rules`), checked by an up
   * region: 401/403 as that region answers.
   */
  const serveHealthz = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    if (config.auth.tokenKeyFile === undefined) return json(200, healthz());
    const authorization = req.headers.authorization;
    if (authorization === undefined) return json(200, liveness());
    let status: number | undefined;
    try {
      status = await credentialStatus(deps, authorization, req.socket.remoteAddress ?? "");
    } catch {
      sendError(req, res, new PeerUnavailableError("the credentials could not be checked; retry"));
      return;
    }
    if (status === undefined) {
      sendError(req, res, new PeerUnavailableError("no region is up to check the credentials"));
      return;
    }
    if (status === 200) return json(200, healthz());
    sendError(
      req,
      res,
      status === 403
        ? new AccessDeniedError("the detailed health view needs a system admin")
        : new UnauthorizedError("the detailed health view needs a system admin's credentials"),
    );
  };

  const liveness = () => ({
    status: regionNames.some((r) => monitor.states.get(r)?.up) ? "ok" : "no region up",
    regions: regionNames.map((r) => ({ region: r, up: monitor.states.get(r)?.up === true })),
  });

  const healthz = () => ({
    defaultRegion: config.defaultRegion,
    clientRegions: config.clientRegions,
    regions: regionNames.map((r) => {
      const s = monitor.states.get(r)!;
      return {
        region: r,
        up: s.up,
        rttMs: s.rttMs ?? null,
        misses: s.misses,
        lastSeenAt: s.lastSeenAt === undefined ? null : new Date(s.lastSeenAt).toISOString(),
        lastError: s.lastError ?? null,
        applied: s.applied,
        epoch: s.epoch,
        fence: s.fence,
        peers: s.peers,
        // Each registry node (one unless mesh.json lists several): its own health and view.
        nodes: (monitor.nodes.get(r) ?? []).map((n) => ({
          node: n.node,
          up: n.up,
          rttMs: n.rttMs ?? null,
          misses: n.misses,
          lastSeenAt: n.lastSeenAt === undefined ? null : new Date(n.lastSeenAt).toISOString(),
          lastError: n.lastError ?? null,
          applied: n.applied ?? null,
        })),
      };
    }),
    homes: homeList(homes.rules),
  });

  return serveHealthz;
}

/**
 * How an up region's admin API answers `authorization` (`GET /admin/v1/rules`:
 * 200 for a system admin or an operator, else 401, 403 or 429), asked for the
 * client at `address`: X-Forwarded-For with the front door's proof, so the
 * region counts a failed sign-in against the client, not the front door.
 * Undefined when no region is up; a region that does not answer in time throws.
 * `/healthz` and the dashboard (./front-door-ui.ts) sign callers in with it.
 */
export async function credentialStatus(
  deps: {
    config: Readonly<FrontDoorConfig>;
    targets: readonly ProbeTarget[];
    monitor: RegionMonitor;
    proxyProof?: ServiceToken;
  },
  authorization: string,
  address: string,
): Promise<number | undefined> {
  const up = deps.targets.find((t) => deps.monitor.states.get(t.region)?.up);
  const checker = up === undefined ? undefined : deps.monitor.nodeOf(up.region);
  if (checker === undefined) return undefined;
  const { status } = await registryRequest(`${checker.registry}/admin/v1/rules`, {
    agent: checker.agent,
    headers: { authorization, "x-forwarded-for": address, ...proofHeader(deps.proxyProof) },
    signal: AbortSignal.timeout(Math.max(1_000, 2 * deps.config.heartbeat.intervalMs)),
  });
  return status;
}
