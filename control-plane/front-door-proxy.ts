/**
 * The front door's proxying (./front-door.ts routes, this file forwards):
 * one attempt at a region (`createForwarder`), the attempts over a
 * request's candidate regions with their retries (`proxyToCandidates`),
 * the headers both ways, and the OCI error answer.
 *
 * Each attempt goes to one registry node of a region (./front-door-nodes.ts
 * attemptsFor: a region's up nodes, fewest outstanding requests first, in
 * round-robin; each node has its own keep-alive agent). A bodiless GET/HEAD
 * that cannot reach its node is retried at once on the next attempt: another
 * node of the same region, then the next candidate region (so killing a node
 * or a region costs readers nothing but the retry); a failure on a reused
 * keep-alive connection (one the node had closed) is first retried on the
 * same node and never takes it down. A node that cannot be reached is down
 * at once (its region with its last up node). Requests with a
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
 * when the node's response breaks before that byte, the node is marked
 * down (the probes bring it back; its region goes down with its last up
 * node) and a bodiless GET/HEAD is retried once on the next healthy attempt
 * (another node of the region first): at most about 2 × `readMs` in all. Writes and
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
 */
import http, {
  type Agent,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import https from "node:https";
import type { Logger } from "pino";
import type { ServiceToken } from "../mesh-client/service-token.js";
import { PROXY_PROOF_HEADER } from "../mesh-client/tokens.js";
import {
  type MeridianError,
  ociErrorFor,
  PeerUnavailableError,
  UnsupportedError,
  UploadNotFoundError,
} from "../protocol/errors.js";
import { ociErrorBody } from "../protocol/oci-errors.js";
import type { RegionMonitor } from "./front-door-health.js";
import type { Attempt } from "./front-door-nodes.js";
import type { RouteReason } from "./front-door-routing.js";
import { rewriteLocation } from "./front-door-urls.js";

/** Reads retried on the same region after failing on stale keep-alive connections (one each). */
const MAX_STALE_RETRIES = 4;

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

/** One attempt at a node of a region (see createForwarder). */
export type Forward = (
  req: IncomingMessage,
  res: ServerResponse,
  attempt: { region: string; node: string },
  target: string,
  bodiless: boolean,
  boundMs: number,
) => Promise<Outcome>;

export interface ForwarderOptions {
  /** Each registry node's keep-alive agent for proxied requests, by its URL (no trailing slash). */
  agents: ReadonlyMap<string, Agent>;
  /** Each registry node's origin → its region's name (absolute Locations become relative). */
  registryOrigins: ReadonlyMap<string, string>;
  /** How long a connection to a region may take (one heartbeat interval). */
  connectTimeoutMs: number;
  /** X-Forwarded-Proto: how the client reached the front door. */
  forwardedProto: "http" | "https";
  /** The front door's proof to the nodes that its X-Forwarded-* are to be trusted (auth on). */
  proxyProof: ServiceToken | undefined;
}

export function createForwarder(options: ForwarderOptions): Forward {
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
    attempt: { region: string; node: string },
    target: string,
    bodiless: boolean,
    boundMs: number,
  ): Promise<Outcome> =>
    new Promise((resolve) => {
      const { region } = attempt;
      const base = new URL(attempt.node);
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
          agent: options.agents.get(attempt.node),
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
          options.connectTimeoutMs,
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
          const seq = headers["meridian-seq"];
          settle({ kind: "answered", status, seq: typeof seq === "string" ? seq : undefined });
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
    out["x-forwarded-proto"] = options.forwardedProto;
    const proof = options.proxyProof?.current();
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
      out.location = rewriteLocation(headers.location, status, region, options.registryOrigins);
    }
    const seq = headers["meridian-seq"];
    if (typeof seq === "string" && /^\d+$/.test(seq.trim())) out["meridian-seq"] = `${region}:${seq.trim()}`;
    out["meridian-region"] = region;
    return out;
  };

  return forward;
}

/** What the attempts at a request's candidate regions need (./front-door.ts wires it). */
export interface ProxyContext {
  forward: Forward;
  monitor: Pick<RegionMonitor, "states" | "record" | "recordNode" | "nodeUp" | "floors">;
  /** Requests under way at each node (by URL), for ./front-door-nodes.ts nodeOrder. */
  outstanding: Map<string, number>;
  responseTimeouts: { readMs: number; writeMs: number };
  /** Counts each attempt's routing decision (every retry included). */
  countRoute(clientRegion: string, region: string, reason: RouteReason): void;
  /** Counts each attempt at a node. */
  countNode(region: string, node: string): void;
  /** An admin write was answered with success: the home rules may have changed. */
  adminWritten(): void;
  log: Logger;
}

/**
 * Try the request's attempts (nodes of its candidate regions, in order) until
 * one answers (the retry rules are in the header); when none does and the
 * client is still there, answer it 503 UNAVAILABLE (404 BLOB_UPLOAD_UNKNOWN
 * for an upload session).
 */
export async function proxyToCandidates(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  request: {
    method: string;
    path: string;
    target: string;
    clientRegion: string;
    /** The repository the path names (a write's floor, ./front-door-nodes.ts WriteFloors). */
    repo: string | undefined;
    /** The routing decision's candidate regions (the error names the first when no attempt is left). */
    candidates: ReadonlyArray<{ region: string; reason: RouteReason }>;
    /** Their nodes, in the order to try them (./front-door-nodes.ts attemptsFor). */
    attempts: readonly Attempt[];
    /** The client went away before its response was over. */
    gone: () => boolean;
  },
): Promise<void> {
  const { method, path, target, attempts } = request;
  const { monitor, log: proxyLog } = ctx;
  const withoutBody = bodiless(req);
  const retryable = (method === "GET" || method === "HEAD") && withoutBody;
  let last: { region: string; reason: RouteReason } | undefined = request.candidates[0];
  let staleRetries = 0;
  let timedOut = false;
  const boundMs = retryable ? ctx.responseTimeouts.readMs : ctx.responseTimeouts.writeMs;
  for (let i = 0; i < attempts.length; i++) {
    const a = attempts[i]!;
    // A node (or region) found unreachable by another request since the decision is skipped.
    if (i > 0 && !(monitor.states.get(a.region)?.up === true && monitor.nodeUp(a.region, a.node))) continue;
    last = a;
    ctx.countRoute(request.clientRegion, a.region, a.reason);
    ctx.countNode(a.region, a.node);
    ctx.outstanding.set(a.node, (ctx.outstanding.get(a.node) ?? 0) + 1);
    const done = () => ctx.outstanding.set(a.node, (ctx.outstanding.get(a.node) ?? 1) - 1);
    const outcome = await ctx.forward(req, res, a, target, withoutBody, boundMs);
    if (outcome.kind === "answered") res.once("close", done);
    else done();
    if (outcome.kind === "client-gone") return;
    if (outcome.kind === "invalid") {
      sendError(req, res, outcome.error, !withoutBody);
      return;
    }
    if (outcome.kind === "answered") {
      if (path.startsWith("/admin/") && !retryable && outcome.status < 300) ctx.adminWritten();
      // A write's position in the region's log is applied on the node that answered it.
      const wrote = outcome.seq === undefined ? undefined : ownSeq(outcome.seq, a.region);
      if (wrote !== undefined && !retryable) {
        monitor.recordNode(a.region, a.node, { kind: "wrote", origin: a.region, seq: wrote });
        monitor.floors.wrote(a.region, request.repo, wrote);
      }
      return;
    }
    if (outcome.timedOut) {
      // Accepts connections, answers nothing (frozen, blackholed): suspect until a probe succeeds.
      proxyLog.warn(
        { region: a.region, node: a.node, boundMs, err: outcome.error.message },
        "region did not answer",
      );
      monitor.recordNode(a.region, a.node, {
        kind: "unreachable",
        at: Date.now(),
        error: outcome.error.message,
      });
      // A read is retried once elsewhere (bounded: at most two bounds in all); a write never.
      if (!retryable || timedOut) {
        timedOut = true;
        break;
      }
      timedOut = true;
      continue;
    }
    if (outcome.reused) {
      // A keep-alive connection the node had already closed: no sign that it is down.
      if (!retryable) break;
      if (staleRetries++ < MAX_STALE_RETRIES) i--;
      continue;
    }
    proxyLog.warn({ region: a.region, node: a.node, err: outcome.error }, "region unreachable");
    monitor.recordNode(a.region, a.node, {
      kind: "unreachable",
      at: Date.now(),
      error: outcome.error.message,
    });
    if (!retryable) break;
  }
  if (res.headersSent || request.gone()) return;
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
}

/** The sequence of a write's `Meridian-Seq` (`region:seq`, or bare) when it is `region`'s own log's. */
function ownSeq(header: string, region: string): number | undefined {
  const m = /^(?:([a-z0-9-]+):)?(\d{1,15})$/.exec(header.trim());
  return m === null || (m[1] !== undefined && m[1] !== region) ? undefined : Number(m[2]);
}

export type Outcome =
  /** `seq`: the response's `Meridian-Seq` as sent to the client (a write's position, `region:seq`). */
  | { kind: "answered"; status: number; seq: string | undefined }
  | { kind: "client-gone" }
  /** The request cannot be forwarded as the client sent it (400). */
  | { kind: "invalid"; error: MeridianError }
  /** `timedOut`: the region took the connection but sent no first byte within the bound. */
  | { kind: "failed"; error: Error; reused: boolean; timedOut: boolean };

/** The request declares no body (so a failed attempt may be replayed, and nothing is left unread). */
export function bodiless(req: IncomingMessage): boolean {
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

/**
 * The proxy proof as a header (none without auth): a request the front door
 * makes for a client (the dashboard's and /healthz's credential checks) names
 * the client's address in X-Forwarded-For, and the node counts failed logins
 * against that address only with the proof; without it, against the front
 * door's, and a few wrong passwords would lock every client out.
 */
export function proofHeader(proof: ServiceToken | undefined): Record<string, string> {
  const current = proof?.current();
  return current === undefined ? {} : { [PROXY_PROOF_HEADER]: current };
}

/** The OCI error envelope, with the status the catalogue binds (protocol/errors.ts); 500 otherwise. */
export function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  err: unknown,
  closeConnection = false,
): void {
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
