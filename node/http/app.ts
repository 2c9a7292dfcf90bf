/**
 * The node's HTTP application: `buildApp` composes the OCI Distribution API
 * (spec v1.1), the token endpoint, the admin API, /metrics and /healthz over
 * a `Registry`. Tests build it with `buildApp` and `inject()` or
 * `listen({port:0})`; node/server.ts runs it as a process.
 *
 * The dashboard (`/ui/`, ./ui-routes.ts) shows this node's region.
 *
 * The OCI API is `ociApiPlugin`: the hooks every request goes through
 * (identity, metrics, audit, the one error handler) and, in its own scope,
 * the auth plugin (./auth-plugin.ts) and one route plugin per resource:
 * ./oci/blobs.ts, ./oci/uploads.ts, ./oci/manifests.ts,
 * ./oci/tags-catalog.ts, ./oci/referrers.ts. Repository names contain
 * slashes; ./oci/paths.ts rewrites each OCI path to its route's URL before
 * routing (fastify's `rewriteUrl`), the only place that parses them.
 */
import fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
  type onRequestHookHandler,
} from "fastify";
import fp from "fastify-plugin";
import type { Logger } from "pino";
import { Histogram, type Registry as MetricsRegistry } from "prom-client";
import { verdictOf } from "../../mesh-client/dashboard-http.js";
import { RateLimitedError } from "../../protocol/errors.js";
import {
  ConnectionCounter,
  type HttpLimits,
  limitConnections,
  serverTimeouts,
} from "../../protocol/http-limits.js";
import type { Mesh } from "../../protocol/mesh.js";
import type { AuditLog } from "../audit.js";
import { ANONYMOUS, type Identity } from "../auth/authenticator.js";
import type { OidcClient } from "../auth/oidc-client.js";
import type { OidcConfig } from "../auth/oidc-config.js";
import type { Promoter } from "../promotion.js";
import { PullGate } from "../pull-gate.js";
import type { RateLimiter } from "../rate-limits.js";
import type { Scrubber } from "../scrub.js";
import { adminApiPlugin } from "./admin.js";
import { authPlugin } from "./auth-plugin.js";
import { handleError, ociClientError, ociErrorBody } from "./errors.js";
import { clientAddress, PROXY_PROOF_HEADER, type ProxyTrust } from "./forwarded.js";
import { blobRoutes } from "./oci/blobs.js";
import { hasBody, type OciRouteConfig, type OciRoutesOptions } from "./oci/common.js";
import { manifestRoutes } from "./oci/manifests.js";
import { type OciRouteName, rewriteOciUrl } from "./oci/paths.js";
import { referrersRoutes } from "./oci/referrers.js";
import { tagsCatalogRoutes } from "./oci/tags-catalog.js";
import { uploadRoutes } from "./oci/uploads.js";
import { cookieAuthorization, oidcRoutes, renewSession } from "./oidc-routes.js";
import { lazyRequestLogger } from "./request-logger.js";
import { tokenRoutes } from "./token-routes.js";
import { uiRoutes } from "./ui-routes.js";

export interface OciApiOptions extends OciRoutesOptions {
  metrics: MetricsRegistry;
  /** Pull and push rate limits (../rate-limits.ts); absent or without a limit: none. */
  rateLimiter?: RateLimiter;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Name of the OCI route matched (a bounded metrics label); "other" outside the OCI API. */
    ociRoute: string;
    /** Who is asking (anonymous until authenticated; everyone is anonymous without auth). */
    identity: Identity;
    /** The repository and reference an OCI route named (for the audit log). */
    ociTarget?: { repo: string; reference?: string };
    /** Why the request was refused, when the audit log should say more than its status (a block-pull policy). */
    auditDetail?: string;
  }
}

async function ociApi(app: FastifyInstance, options: OciApiOptions): Promise<void> {
  const duration = new Histogram({
    name: "meridian_http_request_duration_seconds",
    help: "HTTP request durations by OCI route, method and status",
    labelNames: ["route", "method", "code"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30],
    registers: [options.metrics],
  });

  app.decorateRequest("ociRoute", "other");
  // Reference-typed decorators must start null (fastify shares them otherwise); every request starts anonymous.
  app.decorateRequest("identity", null as unknown as Identity);
  app.decorateRequest("ociTarget", undefined);
  app.decorateRequest("auditDetail", undefined);
  app.removeAllContentTypeParsers();
  // Bodies are streamed by the handlers from request.raw; nothing is parsed up front.
  app.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));
  app.setErrorHandler(closeOnUnreadBody);
  // Both hooks run on every request: callback style, no promise per request.
  app.addHook("onRequest", (req, reply, done) => {
    req.identity = ANONYMOUS;
    reply.header("docker-distribution-api-version", "registry/2.0");
    done();
  });
  app.addHook("onResponse", (req, reply, done) => {
    duration.observe(
      { route: req.ociRoute, method: req.method, code: reply.statusCode },
      reply.elapsedTime / 1000,
    );
    const action = auditedAction(req.ociRoute, req.method);
    if (action !== undefined && options.audit !== undefined && req.ociTarget !== undefined)
      options.audit.record({
        actor: req.identity.name,
        kind: req.identity.kind,
        action,
        address: clientAddress(req),
        repo: req.ociTarget.repo,
        reference: req.ociTarget.reference,
        status: reply.statusCode,
        ...(req.auditDetail === undefined ? {} : { detail: req.auditDetail }),
      });
    done();
  });

  await app.register(async (oci) => {
    // Each OCI route names itself (metrics, audit) before its gate runs; bound when the route is declared.
    oci.addHook("onRoute", (route) => {
      const name = (route.config as Partial<OciRouteConfig> | undefined)?.ociRoute;
      if (name === undefined) throw new Error(`OCI route ${route.url} has no config.ociRoute`);
      const existing = route.onRequest === undefined ? [] : [route.onRequest].flat();
      route.onRequest = [...existing, labelWith(name)];
    });
    await oci.register(authPlugin, { auth: options.auth, audit: options.audit });
    // Rate limits after the gate (which sets the identity they count by), before any work.
    const limiter = options.rateLimiter;
    if (limiter?.enabled === true)
      oci.addHook("onRoute", (route) => {
        const access = (route.config as Partial<OciRouteConfig> | undefined)?.ociAccess;
        if (access === undefined || access === "none") return;
        const existing = route.onRequest === undefined ? [] : [route.onRequest].flat();
        route.onRequest = [...existing, limitWith(limiter, access === "push" || access === "delete")];
      });
    const routes: OciRoutesOptions = {
      registry: options.registry,
      fetchOnMiss: options.fetchOnMiss,
      pullThrough: options.pullThrough,
      auth: options.auth,
      audit: options.audit,
      ...(options.pullGate === undefined ? {} : { pullGate: options.pullGate }),
    };
    await oci.register(tagsCatalogRoutes, routes);
    await oci.register(uploadRoutes, routes);
    await oci.register(blobRoutes, routes);
    await oci.register(manifestRoutes, routes);
    await oci.register(referrersRoutes, routes);
  });
}

/** The hook naming a request's OCI route and target (what the metrics and the audit log record). */
function labelWith(name: OciRouteName): onRequestHookHandler {
  return (req, _reply, done) => {
    req.ociRoute = name;
    const p = req.params as { name?: string; reference?: string; digest?: string; id?: string };
    if (p.name !== undefined) req.ociTarget = { repo: p.name, reference: p.reference ?? p.digest ?? p.id };
    done();
  };
}

/** The hook counting a request against the rate limits: 429 TOOMANYREQUESTS with Retry-After when over. */
function limitWith(limiter: RateLimiter, write: boolean): onRequestHookHandler {
  return (req, reply, done) => {
    const who = req.identity;
    if (who.kind === "service") return done();
    const wait = limiter.check(
      write ? "push" : "pull",
      who.kind === "anonymous" ? undefined : who.name,
      clientAddress(req),
    );
    if (wait === undefined) return done();
    reply.header("retry-after", wait);
    done(
      new RateLimitedError(`too many ${write ? "pushes" : "pulls"}: try again in ${wait} s`, {
        detail: { retryAfterSeconds: wait },
      }),
    );
  };
}

/** What the audit log records of a request on an OCI route: artifact-level reads and every write. */
function auditedAction(route: string, method: string): "pull" | "push" | "delete" | undefined {
  if (route === "manifest")
    return method === "GET" ? "pull" : method === "PUT" ? "push" : method === "DELETE" ? "delete" : undefined;
  if (route === "blob" && method === "DELETE") return "delete";
  return undefined;
}

/**
 * Errors answered before the request's body was read (a 401/403 of the gate,
 * a refused upload) close the connection instead of reading the rest of the
 * body: a client that is not allowed to send it must not hold the socket
 * while it does, however slowly.
 */
function closeOnUnreadBody(err: Error, req: FastifyRequest, reply: FastifyReply): void {
  if (!req.raw.complete && hasBody(req)) reply.header("connection", "close");
  handleError(err, req, reply);
}

export const ociApiPlugin = fp(ociApi, { name: "meridian-oci-api", fastify: "5.x" });

export interface BuildAppOptions extends OciApiOptions {
  logger: Logger;
  /** Proxies whose forwarded headers are honoured, when they prove themselves (./forwarded.ts). */
  proxyTrust?: ProxyTrust;
  /** The audit log (recorded to by every API, read by the admin API's GET /audit). */
  audit?: AuditLog;
  /** Serve HTTPS with this certificate (PEM, with its chain) and key; plain HTTP without. */
  https?: { cert: Buffer; key: Buffer };
  /** Timeouts and the per-client connection cap (node/config.ts `http`); Node's defaults without. */
  http?: HttpLimits;
  /** Without auth: where admin writes are accepted from (./admin.ts writesFrom; default loopback). */
  adminWriteAddresses?: readonly string[];
  /** The node's scrub, for the admin API's /scrub/runs (node/scrub.ts). */
  scrubber?: Scrubber;
  /** The mesh, for the dashboard's view of this region (./ui-routes.ts); none for a lone node. */
  mesh?: Mesh;
  /** Public keys for the admin API's /verify (./admin/verify.ts). */
  verificationKeys?: ReadonlyMap<string, string>;
  /** Promotions (node/promotion.ts) for POST /admin/v1/promotions; default: one without a mesh or token. */
  promoter?: Promoter;
  /** OIDC sign-in (./oidc-routes.ts; with `auth` only). */
  oidc?: { client: OidcClient; config: OidcConfig };
}

/**
 * The node's HTTP application, not listening: the OCI API, the admin API,
 * with `auth` the token endpoint (/auth/token), /metrics and /healthz (both
 * open to all: they carry no content, and scrapers and probes hold no
 * credentials).
 */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const timeouts = options.http === undefined ? undefined : serverTimeouts(options.http);
  const app = fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // Each request's child logger is made only if the request logs (./request-logger.ts).
    childLoggerFactory: lazyRequestLogger,
    exposeHeadRoutes: false,
    bodyLimit: 1 << 20,
    keepAliveTimeout: options.http?.keepAliveTimeoutMs ?? 75_000,
    // No total deadline (a big upload that keeps moving is never cut); an idle connection is.
    requestTimeout: 0,
    connectionTimeout: options.http?.idleTimeoutMs ?? 0,
    ...(timeouts === undefined ? {} : { http: timeouts }),
    return503OnClosing: true,
    https: options.https === undefined ? null : { ...timeouts, ...options.https },
    // Forwarded headers are judged by ./forwarded.ts (a proxy must prove itself), never by fastify.
    trustProxy: false,
    // OCI paths (repository names with slashes) to their routes' URLs: ./oci/paths.ts.
    rewriteUrl: rewriteOciUrl,
    // A raw repository name is one parameter; longer than the default 100 it must still reach the route (NAME_INVALID).
    routerOptions: { maxParamLength: 8192 },
    // Requests Node's HTTP parser rejects (headers too large, malformed, too slow) get the OCI envelope too.
    clientErrorHandler: ociClientError,
  });
  if (options.http !== undefined) {
    const log = options.logger;
    limitConnections(
      app.server,
      new ConnectionCounter(options.http),
      options.https !== undefined,
      (address, refused) => log.warn({ address, refused }, "connections refused: too many from one address"),
    );
  }
  app.decorateRequest("proxied", false);
  const proxyTrust = options.proxyTrust;
  // Only when proxies are configured; before every other hook, so logins and the realm see its verdict.
  if (proxyTrust !== undefined)
    app.addHook("onRequest", (req, _reply, done) => {
      const proof = req.headers[PROXY_PROOF_HEADER];
      if (proof === undefined) return done();
      const trusted = proxyTrust.check(req.socket.remoteAddress, proof);
      if (typeof trusted === "boolean") {
        req.proxied = trusted;
        return done();
      }
      trusted.then((ok) => {
        req.proxied = ok;
        done();
      }, done);
    });
  // An OIDC session's cookie as a bearer, for the admin API and the dashboard (./oidc-routes.ts).
  if (options.oidc !== undefined) cookieAuthorization(app);
  await app.register(ociApiPlugin, {
    registry: options.registry,
    metrics: options.metrics,
    fetchOnMiss: options.fetchOnMiss,
    pullThrough: options.pullThrough,
    auth: options.auth,
    audit: options.audit,
    ...(options.rateLimiter === undefined ? {} : { rateLimiter: options.rateLimiter }),
    // Block-pull policies, judged with the same keys as /verify and promotions.
    pullGate:
      options.pullGate ??
      new PullGate({
        registry: options.registry,
        keys: options.verificationKeys ?? new Map(),
        metrics: options.metrics,
        logger: options.logger.child({ component: "pull-gate" }),
      }),
  });
  if (options.auth !== undefined)
    await tokenRoutes(app, {
      authenticator: options.auth.authenticator,
      audit: options.audit,
      realm: options.auth.realm,
    });
  if (options.auth !== undefined && options.oidc !== undefined)
    await oidcRoutes(app, {
      registry: options.registry,
      auth: options.auth,
      client: options.oidc.client,
      redirectUrl: options.oidc.config.redirectUrl,
      sessionMaxSeconds: options.oidc.config.sessionMaxSeconds,
      loginTimeoutSeconds: options.oidc.config.loginTimeoutSeconds,
      audit: options.audit,
      metrics: options.metrics,
    });
  await app.register(adminApiPlugin, {
    registry: options.registry,
    auth: options.auth,
    audit: options.audit,
    writeAddresses: options.adminWriteAddresses,
    scrubber: options.scrubber,
    verificationKeys: options.verificationKeys,
    ...(options.promoter === undefined ? {} : { promoter: options.promoter }),
    ...(options.auth === undefined || options.oidc === undefined
      ? {}
      : { renewOidcSession: renewSession(options.auth, options.registry, options.oidc.config.redirectUrl) }),
  });
  // The dashboard (/ui/, ./ui-routes.ts): with auth, it admits whom this node's admin API's GETs admit.
  await app.register(uiRoutes, {
    registry: options.registry,
    ...(options.oidc === undefined ? {} : { signIn: "/auth/oidc/login?next=/ui/" }),
    ...(options.mesh === undefined ? {} : { mesh: options.mesh }),
    ...(options.auth === undefined
      ? {}
      : {
          authorize: async (authorization: string, address: string) => {
            const res = await app.inject({
              method: "GET",
              url: "/admin/v1/rules",
              headers: { authorization },
              remoteAddress: address,
            });
            return verdictOf(res.statusCode);
          },
        }),
  });
  app.get("/metrics", async (_req, reply) => {
    return reply.type(options.metrics.contentType).send(await options.metrics.metrics());
  });
  // `applied`: what this node's view has applied of every origin's events (its own region's: its
  // log position), so a front door sends a read-your-writes read only to a node that has it.
  app.get("/healthz", async () => {
    const { view } = options.registry;
    const appliedSeq = view.appliedSeq;
    return {
      region: options.registry.region,
      writable: options.registry.writable,
      appliedSeq,
      applied: { ...(await view.originSeqs()), [options.registry.region]: appliedSeq },
      storage: options.registry.store.health?.() ?? { ok: true },
    };
  });
  // Like every error answered before the body is read (closeOnUnreadBody), an unknown endpoint closes.
  app.setNotFoundHandler((req, reply) => {
    if (!req.raw.complete && hasBody(req)) reply.header("connection", "close");
    reply.status(404).type("application/json").send(ociErrorBody("UNSUPPORTED", "no such endpoint"));
  });
  return app;
}
