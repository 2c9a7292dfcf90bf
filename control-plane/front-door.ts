/**
 * The front door: one OCI endpoint for clients in front of every region. It
 * maps each client to a region, sends reads to the nearest healthy region and
 * writes to the repository's home region, keeps upload sessions where they
 * started, honours read-your-writes tokens, and stops sending traffic to a
 * region within 3 heartbeat intervals of its going dark.
 *
 *   node dist/control-plane/front-door.js [--config FILE]   (settings: control-plane/front-door-config.ts)
 *
 * Once listening it prints one JSON line to stdout:
 *   {"event":"listening","frontDoor":"http://127.0.0.1:PORT","pid":…}
 * (https:// with `tls.certFile`/`tls.keyFile`; SIGHUP then re-reads them).
 * SIGINT/SIGTERM close it gracefully. The decisions are the pure functions of
 * ./front-door-routing.ts; this file is the IO around them.
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
 * A bodiless GET/HEAD that cannot reach its region is retried at once on the
 * next candidate (so killing a region costs readers nothing but the retry); a
 * failure on a reused keep-alive connection (one the region had closed) is
 * first retried on the same region and never takes it down. Requests with a
 * body are never replayed: their client gets 503 UNAVAILABLE (404
 * BLOB_UPLOAD_UNKNOWN for an upload session) and retries.
 *
 * Regions that take connections but answer nothing (a frozen process, a
 * blackholed link). Every proxied request has a time to its first response
 * byte (`responseTimeouts`, front-door-config.ts): a GET/HEAD `readMs`
 * (default 5 s) from being sent, anything else `writeMs` (default 45 s,
 * above the nodes' `syncTimeoutMs`) from the end of its body. The client's
 * status and headers are written only with the region's first body byte (or
 * its end), so until then an attempt may still fail over. Past the bound, or
 * when the region's response breaks before that byte, the region is marked
 * down (the probes bring it back) and a bodiless GET/HEAD is retried once on
 * the next healthy candidate: at most about 2 × `readMs` in all. Writes and
 * upload sessions are never replayed elsewhere (a session lives in one
 * region; a timed-out write may have been applied): 503 UNAVAILABLE saying
 * the region did not answer in time. A body the region stops taking, and a
 * response that stalls after its first byte, are bounded by the client's
 * idle timer (`http.idleTimeoutMs`) instead.
 *
 * Regions over HTTPS. A region whose mesh.json `registry` URL is https:// is
 * proxied and probed over TLS, its certificate verified against the mesh CA
 * (`mesh.tls.ca`) and the system's roots (./registry-http.ts).
 *
 * Responses. Bodies stream both ways (a blob may be gigabytes); each region
 * has a keep-alive agent. Every proxied response carries `Meridian-Region`.
 * A Location on an upload session (`/v2/<name>/blobs/uploads/<id>`) gains
 * `_region=<region holding it>`; an absolute Location on a region's registry
 * becomes relative to the front door; redirects (3xx) and Locations elsewhere
 * pass through untouched (a region may send a client to another on purpose).
 * `Meridian-Seq` passes through both ways; a bare sequence number from a
 * region is qualified as `region:seq`.
 *
 * Its own port also serves `GET /metrics` (`meridian_front_door_routes_total
 * {client_region, region, reason}` — every routing decision, including each
 * retry; a refusal counts with `region="none"` — and
 * `meridian_front_door_region_up{region}`, process metrics prefixed
 * `meridian_front_door_`) and `GET /healthz` (JSON: each region's up, RTT,
 * misses, applied, epoch, fence; the homes in use). With auth (the regions
 * check credentials), callers without credentials get liveness only
 * (`status`, each region's `up`): the homes name private repositories. The
 * whole view needs a system admin's credentials, checked by an up region.
 *
 * Client input never makes a 500: whatever the client controls (query,
 * headers, target) that does not parse is a 4xx with the OCI envelope,
 * logged at debug without a stack; only the front door's own failures are
 * errors.
 *
 * Slow and greedy clients (protocol/http-limits.ts, settings `http.*`): no
 * total request deadline, but a client connection on which no byte moves
 * for `http.idleTimeoutMs` is cut; headers must arrive within
 * `http.headersTimeoutMs`; at most `http.maxConnectionsPerClient`
 * connections per source address (then 429 and close). When a client's
 * response is over (answered, gone, or cut idle) the request to the region
 * is destroyed with its socket if it is still under way; a response that
 * arrives before the client's whole body was sent (a 401) ends the body's
 * forwarding and closes the client's connection after the answer.
 * Requests Node's HTTP parser refuses before any handler (headers over its
 * limit: 431, headers not in within `http.headersTimeoutMs`: 408, anything
 * unparseable: 400) are answered in the OCI error envelope, as the node
 * answers them (protocol/oci-errors.ts), and the connection is closed.
 */
import { readFileSync } from "node:fs";
import http, {
  type Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Server as TlsServer } from "node:tls";
import { parseArgs } from "node:util";
import { type Logger, pino } from "pino";
import { Counter, collectDefaultMetrics, Gauge, Registry as MetricsRegistry } from "prom-client";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { ServiceToken } from "../mesh-client/service-token.js";
import { PROXY_PROOF_HEADER } from "../mesh-client/tokens.js";
import { runIfMain, serveUntilStopped } from "../node/lifecycle.js";
import {
  AccessDeniedError,
  MeridianError,
  ociErrorFor,
  PeerUnavailableError,
  RouteNotFoundError,
  UnauthorizedError,
  UnsupportedError,
  UploadNotFoundError,
} from "../protocol/errors.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import { ConnectionCounter, limitConnections, serverTimeouts } from "../protocol/http-limits.js";
import { loggerOptions } from "../protocol/logging.js";
import { answerClientError, ociErrorBody } from "../protocol/oci-errors.js";
import { type FrontDoorConfig, FrontDoorConfigError, loadFrontDoorConfig } from "./front-door-config.js";
import {
  clientRegionOf,
  clientRegionTable,
  type HomeRules,
  homeList,
  homeOf,
  initialRegionState,
  mergeHomeRules,
  observeRegion,
  parseSeqTokens,
  type RegionObservation,
  type RegionState,
  type RouteReason,
  type RulesDocument,
  requestShape,
  rewriteLocation,
  route,
  type SeqToken,
  type StatusSnapshot,
  splitTarget,
  takeRegionParam,
} from "./front-door-routing.js";
import { registryAgent, registryRequest } from "./registry-http.js";

export interface RunningFrontDoor {
  /** http(s)://host:port of the front door (OCI API, /metrics, /healthz). */
  url: string;
  /** Every region's state now. */
  regions(): RegionState[];
  /** Re-read `tls.certFile` and `tls.keyFile` for new connections (throws if unreadable; no-op without TLS). */
  reloadTls(): void;
  close(): Promise<void>;
}

/** Consecutive failed probes that take a region down (see the header: 3 intervals). */
const MISSES_TO_DOWN = 2;
const RTT_ALPHA = 0.2;
/** How often a read-your-writes read re-polls the regions while it waits. */
const RYW_POLL_MS = 50;
/** Reads retried on the same region after failing on stale keep-alive connections (one each). */
const MAX_STALE_RETRIES = 4;
/** At most this often, a write that finds no home re-reads the rules first. */
const HOMES_ON_DEMAND_MS = 250;

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

// ---------------------------------------------------------------- region health

interface ProbeTarget {
  region: string;
  registry: string;
  /** For probes and rules (apart from the proxy's agents, as a client of its own would be). */
  agent: Agent;
  client: PeerClient;
}

/** The probe loops and the state of every region (decisions: observeRegion). */
class RegionMonitor {
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

  /** Poll every region's Status once more (read-your-writes waits); one poll per region in flight. */
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

// ---------------------------------------------------------------- home regions

/** The repositories' home regions, re-read from every up region's admin API. */
class HomeCache {
  #rules: HomeRules = new Map();
  #startedAt = 0;
  #stale = false;
  #inflight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sources: () => Array<{ registry: string; agent: Agent }>,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    /** Signs in to the regions' admin API when they run with auth. */
    private readonly token?: ServiceToken,
  ) {}

  get rules(): HomeRules {
    return this.#rules;
  }

  start(everyMs: number): void {
    this.#timer = setInterval(() => void this.refresh(), everyMs);
  }

  stop(): Promise<void> {
    clearInterval(this.#timer);
    return this.#inflight ?? Promise.resolve();
  }

  /** Re-read before the next write is routed (an admin write passed through). */
  invalidate(): void {
    this.#stale = true;
    void this.refresh();
  }

  /** Before routing a write: re-read if invalidated, or if `repo` has no home and the rules are not fresh. */
  async beforeWrite(repo: string | undefined, now: number): Promise<void> {
    if (this.#stale) return this.refresh();
    if (
      repo !== undefined &&
      homeOf(repo, this.#rules) === undefined &&
      now - this.#startedAt >= HOMES_ON_DEMAND_MS
    )
      return this.refresh();
  }

  refresh(): Promise<void> {
    if (this.#inflight !== undefined) return this.#inflight;
    this.#startedAt = Date.now();
    this.#stale = false;
    this.#inflight = this.#read().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #read(): Promise<void> {
    const registries = this.sources();
    const documents: RulesDocument[] = [];
    await Promise.all(
      registries.map(async ({ registry, agent }) => {
        try {
          const res = await registryRequest(`${registry}/admin/v1/rules`, {
            agent,
            ...(this.token === undefined ? {} : { headers: { authorization: await this.token.header() } }),
            signal: AbortSignal.timeout(this.timeoutMs),
          });
          if (res.status === 200) documents.push(JSON.parse(res.body.toString("utf8")) as RulesDocument);
        } catch (err) {
          this.log.debug({ err, registry }, "rules unavailable");
        }
      }),
    );
    if (documents.length > 0) this.#rules = mergeHomeRules(documents);
  }
}

// ---------------------------------------------------------------- the process

/** Start a front door in this process (tests use it directly; `main` wraps it). */
export async function startFrontDoor(
  config: Readonly<FrontDoorConfig>,
  logger: Logger,
): Promise<RunningFrontDoor> {
  const log = logger.child({ component: "front-door" });
  const regionNames = config.mesh.regions.map((r) => r.name);
  const registries = new Map(config.mesh.regions.map((r) => [r.name, r.registry.replace(/\/+$/, "")]));
  const registryOrigins = new Map(config.mesh.regions.map((r) => [new URL(r.registry).origin, r.name]));
  const table = clientRegionTable(config.clientRegions);
  const regionHeader = config.regionHeader.toLowerCase();
  const { certFile, keyFile } = config.tls;
  // The listener's certificate and key, read at start and on reloadTls.
  const listenTls =
    certFile === undefined || keyFile === undefined
      ? undefined
      : () => ({ cert: readFileSync(certFile), key: readFileSync(keyFile) });

  // ---- metrics
  const metrics = new MetricsRegistry();
  collectDefaultMetrics({ register: metrics, prefix: "meridian_front_door_" });
  const routes = new Counter({
    name: "meridian_front_door_routes_total",
    help: "Routing decisions by the client's region, the region chosen (none for a refusal) and why",
    labelNames: ["client_region", "region", "reason"] as const,
    registers: [metrics],
  });
  const upGauge = new Gauge({
    name: "meridian_front_door_region_up",
    help: "1 while the front door routes to the region, 0 while it is down",
    labelNames: ["region"] as const,
    registers: [metrics],
  });
  for (const r of regionNames) upGauge.set({ region: r }, 0);

  // ---- health
  const credentials = peerCredentials(config.mesh, config.tls.identity);
  const targets: ProbeTarget[] = config.mesh.regions.map((r) => ({
    region: r.name,
    registry: registries.get(r.name)!,
    agent: registryAgent(config.mesh, r.registry, { keepAlive: true }),
    client: new PeerClient(r.name, r.grpc, credentials, config.tls.identity, {
      // The peer must hold region r's certificate (DNS:r), whatever address it is reached at.
      "grpc.ssl_target_name_override": r.name,
      // A returning region must be noticed within an interval or two, not after minutes of backoff.
      "grpc.initial_reconnect_backoff_ms": Math.min(1_000, config.heartbeat.intervalMs),
      "grpc.max_reconnect_backoff_ms": Math.max(1_000, 2 * config.heartbeat.intervalMs),
    }),
  }));
  const healthLog = log.child({ component: "health" });
  const monitor = new RegionMonitor({
    targets,
    intervalMs: config.heartbeat.intervalMs,
    identity: config.tls.identity,
    onChange: (state) => {
      upGauge.set({ region: state.region }, state.up ? 1 : 0);
      if (state.up) healthLog.info({ region: state.region }, "region up");
      else healthLog.warn({ region: state.region, err: state.lastError }, "region down");
    },
  });
  const homes = new HomeCache(
    () => targets.filter((t) => monitor.states.get(t.region)?.up),
    Math.max(500, 2 * config.heartbeat.intervalMs),
    log.child({ component: "homes" }),
    await ServiceToken.fromKeyFile(config.auth.tokenKeyFile, "front-door", config.auth.service, log),
  );
  // Nodes honour X-Forwarded-* only from a proxy that proves itself with the mesh key (node/http/forwarded.ts).
  const proxyProof = await ServiceToken.proxyProof(config.auth.tokenKeyFile, config.auth.service, log);
  const agents = new Map<string, Agent>(
    config.mesh.regions.map((r) => [
      r.name,
      registryAgent(config.mesh, r.registry, { keepAlive: true, maxFreeSockets: 64, scheduling: "lifo" }),
    ]),
  );

  const closeClients = () => {
    for (const t of targets) {
      t.client.close();
      t.agent.destroy();
    }
    for (const a of agents.values()) a.destroy();
  };
  const proxyLog = log.child({ component: "proxy" });

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
    const decide = () => route(input, { regions: regionNames, states: monitor.states, homes: homes.rules });
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

    const withoutBody = bodiless(req);
    const retryable = (method === "GET" || method === "HEAD") && withoutBody;
    const candidates = decision.candidates;
    let last: { region: string; reason: RouteReason } | undefined;
    let staleRetries = 0;
    let timedOut = false;
    const boundMs = retryable ? config.responseTimeouts.readMs : config.responseTimeouts.writeMs;
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      // A candidate found unreachable by another request since the decision is skipped.
      if (i > 0 && monitor.states.get(c.region)?.up !== true) continue;
      last = c;
      routes.inc({ client_region: clientRegion, region: c.region, reason: c.reason });
      const outcome = await forward(req, res, c.region, target, withoutBody, boundMs);
      if (outcome.kind === "client-gone") return;
      if (outcome.kind === "invalid") {
        sendError(req, res, outcome.error, !withoutBody);
        return;
      }
      if (outcome.kind === "answered") {
        if (path.startsWith("/admin/") && !retryable && outcome.status < 300) homes.invalidate();
        return;
      }
      if (outcome.timedOut) {
        // Accepts connections, answers nothing (frozen, blackholed): suspect until a probe succeeds.
        proxyLog.warn({ region: c.region, boundMs, err: outcome.error.message }, "region did not answer");
        monitor.record(c.region, { kind: "unreachable", at: Date.now(), error: outcome.error.message });
        // A read is retried once elsewhere (bounded: at most two bounds in all); a write never.
        if (!retryable || timedOut) {
          timedOut = true;
          break;
        }
        timedOut = true;
        continue;
      }
      if (outcome.reused) {
        // A keep-alive connection the region had already closed: no sign that it is down.
        if (!retryable) break;
        if (staleRetries++ < MAX_STALE_RETRIES) i--;
        continue;
      }
      proxyLog.warn({ region: c.region, err: outcome.error }, "region unreachable");
      monitor.record(c.region, { kind: "unreachable", at: Date.now(), error: outcome.error.message });
      if (!retryable) break;
    }
    if (res.headersSent || gone) return;
    const error = timedOut
      ? new PeerUnavailableError(
          retryable
            ? `no region answered within ${boundMs} ms`
            : `region ${last?.region} did not answer within ${boundMs} ms; the request may or may not have been applied there; retry`,
        )
      : last?.reason === "upload-session"
        ? new UploadNotFoundError(`upload session unknown: its region ${last.region} could not be reached`)
        : new PeerUnavailableError(
            retryable ? "no region could be reached" : `region ${last?.region} could not be reached; retry`,
          );
    sendError(req, res, error, !withoutBody);
  };

  /**
   * One attempt at a region; resolves once the response is under way, or the
   * attempt failed. The client's response is committed (status and headers
   * written) only with the region's first body byte, or its end for a bodiless
   * answer: until then nothing has reached the client and the attempt may
   * still fail over. `boundMs` bounds that first byte, counted from the
   * moment the whole request (body included) was sent.
   */
  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    region: string,
    target: string,
    bodiless: boolean,
    boundMs: number,
  ): Promise<Outcome> =>
    new Promise((resolve) => {
      const base = new URL(registries.get(region)!);
      const transport = base.protocol === "https:" ? https : http;
      let clientGone = false;
      let settled = false;
      let committed = false;
      const settle = (o: Outcome) => {
        if (!settled) {
          settled = true;
          resolve(o);
        }
      };
      let upstream: http.ClientRequest;
      try {
        upstream = transport.request({
          protocol: base.protocol,
          hostname: base.hostname.replace(/^\[(.*)\]$/, "$1"),
          port: base.port,
          method: req.method,
          path: `${base.pathname.replace(/\/+$/, "")}${target}`,
          headers: requestHeaders(req, base.host),
          agent: agents.get(region),
        });
      } catch (err) {
        // Node refuses to send what the client sent (a target or header it cannot carry): the client's fault.
        settle({
          kind: "invalid",
          error: new UnsupportedError(`request not forwardable: ${(err as Error).message}`),
        });
        return;
      }
      let connectTimer: NodeJS.Timeout | undefined;
      let responseTimer: NodeJS.Timeout | undefined;
      upstream.once("socket", (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(
          () => upstream.destroy(Object.assign(new Error("connect timeout"), { code: "ETIMEDOUT" })),
          config.heartbeat.intervalMs,
        );
        socket.once("connect", () => clearTimeout(connectTimer));
      });
      // The client's response is over: answered, or the client went away (or was cut idle).
      // Whatever is still under way upstream then is cut with its socket, not left in the agent.
      const onClientClose = () => {
        clearTimeout(responseTimer);
        if (res.writableFinished) {
          // Answered before the whole body went up (a 401, a refusal): the rest is never sent.
          if (!upstream.writableFinished) upstream.destroy();
          return;
        }
        clientGone = true;
        upstream.destroy();
        settle({ kind: "client-gone" });
      };
      res.once("close", onClientClose);
      // Before the client's response is committed, a failure is the attempt's (it may fail over).
      const fail = (error: Error, timedOut: boolean) => {
        clearTimeout(connectTimer);
        clearTimeout(responseTimer);
        if (clientGone) return;
        if (committed) {
          res.destroy(error);
          return;
        }
        if (settled) return;
        res.off("close", onClientClose);
        settle({ kind: "failed", error, reused: upstream.reusedSocket, timedOut });
        upstream.destroy();
      };
      upstream.on("error", (error) => fail(error, false));
      // The whole request is sent: the region has `boundMs` for its first response byte.
      upstream.once("finish", () => {
        if (settled) return;
        responseTimer = setTimeout(() => fail(new Error(`no response within ${boundMs} ms`), true), boundMs);
      });
      upstream.once("response", (upRes) => {
        clearTimeout(connectTimer);
        const status = upRes.statusCode ?? 502;
        const headers = responseHeaders(upRes.headers, status, region);
        const commit = () => {
          clearTimeout(responseTimer);
          if (settled) return false;
          committed = true;
          if (!bodiless && !req.complete) {
            // Answered before the body was read: stop taking it, and close the client's
            // connection after the answer (rather than reading the rest of a slow body).
            req.unpipe(upstream);
            headers.connection = "close";
          }
          res.writeHead(status, headers);
          settle({ kind: "answered", status });
          return true;
        };
        const onData = (chunk: Buffer) => {
          upRes.off("end", onEnd);
          upRes.pause();
          if (!commit()) return;
          res.write(chunk);
          upRes.pipe(res);
        };
        const onEnd = () => {
          upRes.off("data", onData);
          if (commit()) res.end();
        };
        upRes.on("error", (err) => fail(err, false));
        upRes.once("aborted", () => fail(new Error("response aborted"), false));
        upRes.once("data", onData);
        upRes.once("end", onEnd);
      });
      if (bodiless) upstream.end();
      else req.pipe(upstream);
    });

  const requestHeaders = (req: IncomingMessage, host: string): OutgoingHttpHeaders => {
    const out: OutgoingHttpHeaders = {};
    const drop = connectionTokens(req.headers);
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
      // Host is the region's; Expect was answered here (Node sends 100 Continue itself).
      if (name === "host" || name === "expect") continue;
      out[name] = value;
    }
    out.host = host;
    const from = req.socket.remoteAddress ?? "";
    const prior = req.headers["x-forwarded-for"];
    out["x-forwarded-for"] = prior === undefined ? from : `${prior}, ${from}`;
    if (req.headers.host !== undefined) out["x-forwarded-host"] = req.headers.host;
    out["x-forwarded-proto"] = listenTls === undefined ? "http" : "https";
    const proof = proxyProof?.current();
    if (proof === undefined) delete out[PROXY_PROOF_HEADER];
    else out[PROXY_PROOF_HEADER] = proof;
    return out;
  };

  const responseHeaders = (
    headers: IncomingHttpHeaders,
    status: number,
    region: string,
  ): OutgoingHttpHeaders => {
    const out: OutgoingHttpHeaders = {};
    const drop = connectionTokens(headers);
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
      out[name] = value;
    }
    if (typeof headers.location === "string") {
      out.location = rewriteLocation(headers.location, status, region, registryOrigins);
    }
    const seq = headers["meridian-seq"];
    if (typeof seq === "string" && /^\d+$/.test(seq.trim())) out["meridian-seq"] = `${region}:${seq.trim()}`;
    out["meridian-region"] = region;
    return out;
  };

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
    const checker = targets.find((t) => monitor.states.get(t.region)?.up);
    if (checker === undefined) {
      sendError(req, res, new PeerUnavailableError("no region is up to check the credentials"));
      return;
    }
    let status: number;
    try {
      ({ status } = await registryRequest(`${checker.registry}/admin/v1/rules`, {
        agent: checker.agent,
        headers: { authorization, "x-forwarded-for": req.socket.remoteAddress ?? "" },
        signal: AbortSignal.timeout(Math.max(1_000, 2 * config.heartbeat.intervalMs)),
      }));
    } catch {
      sendError(req, res, new PeerUnavailableError("the credentials could not be checked; retry"));
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
      };
    }),
    homes: homeList(homes.rules),
  });

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
  // Slow and greedy clients (protocol/http-limits.ts): no total deadline, an idle timer per connection.
  const serverOptions = serverTimeouts(config.http);
  const server =
    listenTls === undefined
      ? createServer(serverOptions, onRequest)
      : https.createServer({ ...serverOptions, ...listenTls() }, onRequest);
  server.setTimeout(config.http.idleTimeoutMs);
  // Requests Node's parser refuses (oversized headers, malformed, headers too slow): the OCI envelope too.
  server.on("clientError", answerClientError);
  limitConnections(server, new ConnectionCounter(config.http), listenTls !== undefined, (address, refused) =>
    proxyLog.warn({ address, refused }, "connections refused: too many from one address"),
  );
  try {
    await monitor.start();
    await homes.refresh();
    homes.start(config.rulesRefreshMs);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await monitor.stop();
    await homes.stop();
    closeClients();
    throw err;
  }

  const port = (server.address() as AddressInfo).port;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  let closed: Promise<void> | undefined;
  return {
    url: `${listenTls === undefined ? "http" : "https"}://${host}:${port}`,
    regions: () => regionNames.map((r) => monitor.states.get(r)!),
    reloadTls() {
      if (listenTls !== undefined) (server as TlsServer).setSecureContext(listenTls());
    },
    close() {
      closed ??= (async () => {
        // Stop taking requests, let those under way finish for a moment, then cut them.
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const force = setTimeout(() => server.closeAllConnections(), 2_000);
        await drained;
        clearTimeout(force);
        await monitor.stop();
        await homes.stop();
        closeClients();
      })();
      return closed;
    },
  };
}

type Outcome =
  | { kind: "answered"; status: number }
  | { kind: "client-gone" }
  /** The request cannot be forwarded as the client sent it (400). */
  | { kind: "invalid"; error: MeridianError }
  /** `timedOut`: the region took the connection but sent no first byte within the bound. */
  | { kind: "failed"; error: Error; reused: boolean; timedOut: boolean };

/** The request declares no body (so a failed attempt may be replayed, and nothing is left unread). */
function bodiless(req: IncomingMessage): boolean {
  return (
    req.headers["transfer-encoding"] === undefined &&
    (req.headers["content-length"] === undefined || req.headers["content-length"] === "0")
  );
}

/** Headers a message's Connection header names as hop-by-hop. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  return new Set(
    (typeof value === "string" ? value : "")
      .split(",")
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** The OCI error envelope, with the status the catalogue binds (protocol/errors.ts); 500 otherwise. */
function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, closeConnection = false): void {
  const binding = ociErrorFor(err);
  const status = binding?.status ?? 500;
  const code = binding?.code ?? "UNKNOWN";
  // 5xx of our own making carry our message; an unexpected error never echoes its own.
  const message = binding === undefined ? "internal server error" : (err as Error).message;
  const body = ociErrorBody(code, message);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "docker-distribution-api-version": "registry/2.0",
    ...(closeConnection ? { connection: "close" } : {}),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: "string" } } });
  let config: Readonly<FrontDoorConfig>;
  try {
    config = loadFrontDoorConfig({ file: values.config, env: process.env });
  } catch (err) {
    if (err instanceof FrontDoorConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino(loggerOptions(config.logLevel), pino.destination(2));
  const frontDoor = await startFrontDoor(config, logger);
  serveUntilStopped(frontDoor, {
    name: "front door",
    logger,
    listening: { frontDoor: frontDoor.url },
    ...(config.tls.certFile === undefined ? {} : { reloadTls: () => frontDoor.reloadTls() }),
  });
}

runIfMain(import.meta.url, "front door", main);
