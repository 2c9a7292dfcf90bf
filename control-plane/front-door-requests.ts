/**
 * How the front door answers a request on its port (./front-door.ts
 * listens): `/metrics`, `/healthz` and the dashboard (`/ui/`), else the routing decision
 * (./front-door-routing.ts `route`), read-your-writes waits included, and
 * the attempts at the chosen regions (./front-door-proxy.ts).
 *
 * Client region. The `regionHeader` header if it names a mesh region, else
 * the longest `clientRegions` CIDR holding the socket's remote address, else
 * `defaultRegion`.
 *
 * Where a request goes (the first rule that applies):
 * - `_region=R` in the query (an upload session's URL, see below): R, with
 *   the parameter stripped (reason `upload-session`); 404 BLOB_UPLOAD_UNKNOWN
 *   when R is down: the session died with its region; 400 UNSUPPORTED when
 *   it is not a region name's shape (bad percent-encoding included).
 * - A read (GET/HEAD) carrying `Meridian-Seq: region:seq[, …]`: only regions
 *   that are a token's origin or whose last Status shows `applied[origin] ≥
 *   seq`, for every token; the nearest of them (reason `read-your-writes`).
 *   When none is up, every region's Status is polled again (about every
 *   50 ms) for up to `rywWaitMs`, then 503 UNAVAILABLE. A malformed token, or
 *   one naming no mesh region, is refused with 400 UNSUPPORTED. Tokens on
 *   writes are passed on, not used.
 * - A write (any other method under /v2/) to a repository with a home region:
 *   that region (reason `home`), or 503 UNAVAILABLE naming the home and the
 *   way out (`meridian failover --from HOME --to R`) when it is down. Homes
 *   are the union of every up region's `GET /admin/v1/rules` (an epoch names
 *   one home everywhere, so the union is consistent; the longest scope
 *   covering the repository wins, at its greatest epoch), re-read every
 *   `rulesRefreshMs`, at once when an admin write passes through the front
 *   door, and on demand (at most every 250 ms) when a write finds no home.
 * - Anything else (reads, writes without a home, `/admin/v1/…`, `GET /v2/`,
 *   the token endpoint `/auth/token`; tokens are good in every region):
 *   the client's region if up (reason `local`), else the other up regions by
 *   RTT from the client's region as the regions' peers measure it (reason
 *   `nearest`). 503 UNAVAILABLE when no region is up.
 *
 * Then, within each region, which of its registry nodes
 * (./front-door-nodes.ts attemptsFor): its up nodes, fewest requests
 * outstanding first, in round-robin; for a read-your-writes read only nodes
 * whose own view has applied the tokens (the region is eligible only if one
 * of its up nodes has).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Counter, Registry as MetricsRegistry } from "prom-client";
import { isDashboardPath } from "../mesh-client/dashboard-http.js";
import { MeridianError, ociErrorFor, RouteNotFoundError } from "../protocol/errors.js";
import type { FrontDoorConfig } from "./front-door-config.js";
import type { RegionMonitor } from "./front-door-health.js";
import type { HomeCache } from "./front-door-homes.js";
import { attemptsFor } from "./front-door-nodes.js";
import {
  bodiless,
  type Forward,
  type ProxyContext,
  proxyToCandidates,
  sendError,
} from "./front-door-proxy.js";
import {
  clientRegionOf,
  clientRegionTable,
  hasApplied,
  parseSeqTokens,
  requestShape,
  route,
  type SeqToken,
} from "./front-door-routing.js";
import { splitTarget, takeRegionParam } from "./front-door-urls.js";

/** How often a read-your-writes read re-polls the regions while it waits. */
const RYW_POLL_MS = 50;

export interface RequestHandlerDeps {
  config: Readonly<FrontDoorConfig>;
  regionNames: readonly string[];
  monitor: RegionMonitor;
  homes: HomeCache;
  /** meridian_front_door_routes_total */
  routes: Counter<"client_region" | "region" | "reason">;
  /** meridian_front_door_node_requests_total */
  nodeRequests: Counter<"region" | "node">;
  metrics: MetricsRegistry;
  serveHealthz: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** The dashboard, `/ui` and `/ui/…` (./front-door-ui.ts). */
  serveUi?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  forward: Forward;
  log: Logger;
}

/** The server's request listener. */
export function createRequestHandler(
  deps: RequestHandlerDeps,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { config, regionNames, monitor, homes, routes, metrics, serveHealthz, log: proxyLog } = deps;
  const table = clientRegionTable(config.clientRegions);
  const regionHeader = config.regionHeader.toLowerCase();
  const outstanding = new Map<string, number>();
  /** Each region's round-robin cursor over its nodes (./front-door-nodes.ts nodeOrder). */
  const cursors = new Map<string, number>();
  const proxy: ProxyContext = {
    forward: deps.forward,
    monitor,
    outstanding,
    responseTimeouts: config.responseTimeouts,
    countRoute: (clientRegion, region, reason) => routes.inc({ client_region: clientRegion, region, reason }),
    countNode: (region, node) => deps.nodeRequests.inc({ region, node }),
    adminWritten: () => homes.invalidate(),
    log: proxyLog,
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? "GET";
    const { path, query } = splitTarget(req.url ?? "/");
    if (path === "/metrics" || path === "/healthz") {
      if (method !== "GET" && method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
      } else if (path === "/metrics") {
        const text = await metrics.metrics();
        res.writeHead(200, { "content-type": metrics.contentType }).end(text);
      } else {
        await serveHealthz(req, res);
      }
      return;
    }
    if (deps.serveUi !== undefined && isDashboardPath(path)) {
      await deps.serveUi(req, res);
      return;
    }
    if (
      !(path === "/v2" || path.startsWith("/v2/") || path.startsWith("/admin/") || path === "/auth/token")
    ) {
      sendError(req, res, new RouteNotFoundError("no such endpoint"));
      return;
    }
    const header = req.headers[regionHeader];
    const clientRegion = clientRegionOf({
      header: Array.isArray(header) ? header[0] : header,
      address: req.socket.remoteAddress,
      table,
      defaultRegion: config.defaultRegion,
      regions: regionNames,
    });
    const shape = requestShape(method, path);
    let tokens: SeqToken[] = [];
    const seqHeader = req.headers["meridian-seq"];
    if (shape.kind === "read" && typeof seqHeader === "string") {
      try {
        tokens = parseSeqTokens(seqHeader, regionNames);
      } catch (err) {
        sendError(req, res, err, !bodiless(req));
        return;
      }
    }
    let uploadRegion: string | undefined;
    let rest: string;
    try {
      ({ region: uploadRegion, query: rest } = takeRegionParam(query));
    } catch (err) {
      sendError(req, res, err, !bodiless(req));
      return;
    }
    const target = rest === "" ? path : `${path}?${rest}`;
    if (shape.kind === "write" && uploadRegion === undefined) await homes.beforeWrite(shape.repo, Date.now());

    let gone = false;
    res.once("close", () => {
      gone = !res.writableFinished;
    });
    const input = { method, path, clientRegion, tokens, uploadRegion };
    const decide = () =>
      route(input, {
        regions: regionNames,
        states: monitor.states,
        homes: homes.rules,
        nodes: monitor.nodes,
      });
    let decision = decide();
    const until = Date.now() + config.rywWaitMs;
    while (decision.kind === "refuse" && decision.wait && Date.now() < until && !gone) {
      await Promise.all([monitor.pollStatus(), sleep(RYW_POLL_MS)]);
      decision = decide();
    }
    if (decision.kind === "refuse") {
      routes.inc({ client_region: clientRegion, region: "none", reason: decision.reason });
      sendError(req, res, decision.error);
      return;
    }
    const attempts = attemptsFor(decision.candidates, {
      nodes: monitor.nodes,
      outstanding: (r) => (monitor.nodes.get(r) ?? []).map((n) => outstanding.get(n.node) ?? 0),
      cursor: (r) => {
        const c = cursors.get(r) ?? 0;
        cursors.set(r, c + 1);
        return c;
      },
      tokens,
      regionHasApplied: (r) => hasApplied(r, tokens, monitor.states.get(r)),
      floor:
        shape.kind === "read"
          ? (r) => monitor.floors.forRead(r, shape.repo)
          : (r) => monitor.floors.forWrite(r),
    });
    await proxyToCandidates(proxy, req, res, {
      method,
      path,
      target,
      clientRegion,
      repo: shape.repo,
      candidates: decision.candidates,
      attempts,
      gone: () => gone,
    });
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err) => {
      // A refusal of the client's input is the client's business (no stack, no error level); the rest is ours.
      const binding = ociErrorFor(err);
      if (binding !== undefined && binding.status < 500)
        proxyLog.debug({ reason: (err as Error).message }, "request refused");
      else proxyLog.error({ err }, "request failed");
      if (!res.headersSent) sendError(req, res, err instanceof MeridianError ? err : new Error("internal"));
      else res.destroy();
    });
  };
  return onRequest;
}
