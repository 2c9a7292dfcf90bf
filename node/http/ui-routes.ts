/**
 * The dashboard as a registry node serves it (`/ui/`, registered by
 * ./app.ts): its own region. The HTTP side is mesh-client/dashboard-http.ts
 * (the same as the front door's); the routes hand it the raw request
 * (`reply.hijack()`: assets, JSON and the event stream are written by it).
 *
 * The node's state, one region:
 * - the region's health as its own peer tells it: a Status call on one
 *   long-lived PeerClient (not a new channel every second) under the
 *   feed's deadline, down after MISSES_TO_DOWN missed in a row; its epoch, fence, what it has applied, and how it sees
 *   the other regions (up, RTT). The other regions are shown as the peer
 *   sees them; the node does not probe them itself.
 * - the inbound links (every other region → this one) from the region's
 *   worker metrics page (mesh-client/dashboard-state.ts LinkReader);
 * - the homes from the node's view (the repositories' rules).
 * - the search (mesh-client/locate.ts) over the whole mesh: an artifact's
 *   place is worth seeing everywhere from any node; the activity
 *   (mesh-client/activity.ts) of this region only. Both with the caller's
 *   own credentials.
 * Without a mesh (a lone node) the region has no peer and no links, and the
 * page offers no search or activity (the session answer says so).
 *
 * Credentials (with auth) are judged by this node's own admin API:
 * `authorize` is a `GET /admin/v1/rules` injected into the app with the
 * caller's Authorization and address (./app.ts), so the dashboard admits
 * exactly who the admin API's GETs admit.
 */
import type { FastifyPluginAsync } from "fastify";
import { collectActivity } from "../../mesh-client/activity.js";
import { DashboardFeed } from "../../mesh-client/dashboard-feed.js";
import { type AccessVerdict, createDashboardHandler } from "../../mesh-client/dashboard-http.js";
import {
  type DashboardSource,
  type DashboardState,
  LAG_OK_MS,
  LAG_WARN_MS,
  LinkReader,
  type RegionHealth,
  regionLevel,
} from "../../mesh-client/dashboard-state.js";
import { locate } from "../../mesh-client/locate.js";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import type { StatusReply__Output } from "../../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { Mesh } from "../../protocol/mesh.js";
import type { Registry } from "../data/registry.js";

/**
 * Status calls missed in a row that show the region's peer down: as the
 * front door's probes count (one slow call on a loaded machine is no outage).
 */
const MISSES_TO_DOWN = 2;
/** Each region's answer to a search or an activity read, at most. */
const SEARCH_DEADLINE_MS = 2_500;
const ACTIVITY_LIMIT = 50;

export interface UiRoutesOptions {
  registry: Registry;
  mesh?: Mesh;
  /** With auth: whether the admin API's GETs admit the caller (./app.ts injects one). */
  authorize?: (authorization: string, address: string) => Promise<AccessVerdict>;
  /** With OIDC: the sign-in URL the page offers (./oidc-routes.ts). */
  signIn?: string;
}

export const uiRoutes: FastifyPluginAsync<UiRoutesOptions> = async (app, options) => {
  const { registry, mesh } = options;
  const region = registry.region;
  const own = mesh?.regions.find((r) => r.name === region);
  const peer =
    mesh === undefined || own === undefined
      ? undefined
      : new PeerClient(region, own.grpc, peerCredentials(mesh, region), region);
  const links =
    mesh === undefined
      ? undefined
      : new LinkReader(
          [{ region, worker: own?.metrics?.worker }],
          mesh.regions.map((r) => r.name),
        );
  let status: { reply: StatusReply__Output; rttMs: number; at: number } | undefined;
  let statusError: string | undefined;
  /** Consecutive Status calls that failed (MISSES_TO_DOWN of them: the peer is down). */
  let misses = 0;

  const refreshStatus = async (deadlineMs: number) => {
    if (peer === undefined) return;
    const started = performance.now();
    try {
      const reply = await peer.status(region, { timeoutMs: deadlineMs });
      status = { reply, rttMs: Math.round((performance.now() - started) * 100) / 100, at: Date.now() };
      statusError = undefined;
      misses = 0;
    } catch (err) {
      statusError = (err as Error).message;
      misses++;
    }
  };

  const source: DashboardSource = {
    async refresh(deadlineMs) {
      await Promise.all([refreshStatus(deadlineMs), links?.refresh(deadlineMs)]);
    },
    snapshot(): DashboardState {
      const peerUp = peer === undefined ? true : status !== undefined && misses < MISSES_TO_DOWN;
      const reply = peerUp ? status?.reply : undefined;
      const fence = peer === undefined ? "" : reply?.fence;
      const mine: RegionHealth = {
        region,
        level: regionLevel(peerUp, fence),
        up: peerUp,
        seenBy: "node",
        ...(status === undefined ? {} : { rttMs: status.rttMs, lastSeenAt: iso(status.at) }),
        ...(peer === undefined ? {} : { misses }),
        ...(statusError === undefined ? {} : { lastError: `peer: ${statusError}` }),
        ...(reply === undefined ? {} : { epoch: Number(reply.epoch) }),
        ...(fence === undefined ? {} : { fence }),
        appliedSeq: registry.view.appliedSeq,
        peers: (reply?.peers ?? []).map((p) => ({
          region: p.region,
          up: p.up,
          ...(Number(p.rttMs) > 0 ? { rttMs: round(Number(p.rttMs)) } : {}),
        })),
      };
      const others: RegionHealth[] = (mesh?.regions ?? [])
        .filter((r) => r.name !== region)
        .map((r) => {
          const seen = reply?.peers.find((p) => p.region === r.name);
          return {
            region: r.name,
            level: regionLevel(seen?.up, undefined),
            up: seen?.up,
            seenBy: `peer of ${region}`,
            ...(seen !== undefined && Number(seen.rttMs) > 0 ? { rttMs: round(Number(seen.rttMs)) } : {}),
            peers: [],
          };
        });
      const upOf = (r: string) => (r === region ? peerUp : reply?.peers.find((p) => p.region === r)?.up);
      return {
        scope: "region",
        servedBy: `node of region ${region}`,
        at: new Date().toISOString(),
        thresholds: { okMs: LAG_OK_MS, warnMs: LAG_WARN_MS },
        regions: [mine, ...others],
        links: links?.cells(upOf) ?? [],
        homes: homesOf(registry),
      };
    },
  };
  const feed = new DashboardFeed(source, (err) => app.log.warn({ err }, "dashboard state not collected"));
  const serve = createDashboardHandler({
    feed,
    ...(mesh === undefined
      ? {}
      : {
          search: (reference: string, authorization: string | undefined) =>
            locate(mesh, reference, { authorization, timeoutMs: SEARCH_DEADLINE_MS }),
          activity: (authorization: string | undefined) =>
            collectActivity(mesh, {
              authorization,
              limit: ACTIVITY_LIMIT,
              regions: [region],
              timeoutMs: SEARCH_DEADLINE_MS,
            }),
        }),
    ...(options.authorize === undefined ? {} : { authorize: options.authorize }),
    ...(options.signIn === undefined ? {} : { signIn: options.signIn }),
    onError: (err, what) => app.log.warn({ err, what }, "dashboard request failed"),
  });
  // preClose: the open event streams end before the server waits for its connections to finish.
  app.addHook("preClose", (done) => {
    feed.close();
    done();
  });
  app.addHook("onClose", async () => {
    peer?.close();
  });
  for (const url of ["/ui", "/ui/*"])
    app.route({
      method: ["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH"],
      url,
      handler: async (req, reply) => {
        reply.hijack();
        await serve(req.raw, reply.raw);
      },
    });
};

/** Every scope with a home, at its greatest epoch. */
function homesOf(registry: Registry): DashboardState["homes"] {
  const out: DashboardState["homes"] = [];
  for (const config of registry.view.content.configs()) {
    const homes = config.homes as Readonly<Record<string, string>>;
    const epochs = Object.keys(homes).map(Number);
    if (epochs.length === 0) continue;
    const epoch = Math.max(...epochs);
    out.push({ scope: config.scope, home: homes[String(epoch)]!, epoch });
  }
  return out.sort((x, y) => (x.scope < y.scope ? -1 : x.scope > y.scope ? 1 : 0));
}

const iso = (ms: number) => new Date(ms).toISOString();
const round = (v: number) => Math.round(v * 100) / 100;
