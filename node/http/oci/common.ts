/**
 * What the OCI route plugins share: their options, the route config every
 * route declares (its name and the access it needs, read by ../auth-plugin.ts
 * and ../app.ts when the route is registered, never per request), the
 * response headers of writes and of content fetched elsewhere, and the
 * helpers several routes use.
 */

import type { IncomingMessage } from "node:http";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from "fastify";
import { MethodNotAllowedError, RequestAbortedError } from "../../../protocol/errors.js";
import type { Registry } from "../../data/registry.js";
import type { FetchOnMiss } from "../../fetch-on-miss.js";
import type { PullGate } from "../../pull-gate.js";
import type { PullThrough } from "../../pull-through.js";
import type { AuditSink, HttpAuth } from "../access.js";
import type { AccessConfig, RouteAccess } from "../auth-plugin.js";
import { OCI_URLS, type OciRouteName } from "./paths.js";

export interface OciRoutesOptions {
  registry: Registry;
  /** Content this region lacks, from the other regions (node/fetch-on-miss.ts); absent for a lone region. */
  fetchOnMiss?: FetchOnMiss;
  /** Pull-through cache projects (node/pull-through.ts): their misses are fetched from upstream. */
  pullThrough?: PullThrough;
  /** Authentication (node/auth/); absent: everyone may do everything, as `anonymous`. */
  auth?: HttpAuth;
  /** Where pulls, pushes, deletes and logins are recorded (node/audit.ts). */
  audit?: AuditSink;
  /** Block-pull policies (node/pull-gate.ts); absent: every pull the access rules allow is answered. */
  pullGate?: PullGate;
}

/** The route config of every OCI route (read when the route is registered: ../app.ts, ../auth-plugin.ts). */
export interface OciRouteConfig extends AccessConfig {
  /** The OCI route this is (metrics label, audit). */
  ociRoute: OciRouteName;
}

/**
 * Every write answers with `Meridian-Seq: <region>:<seq>`, the position of
 * its event in the region's log: a read carrying the token (through the
 * front door) goes only to a region that has applied it (read-your-writes).
 */
export const SEQ_HEADER = "meridian-seq";

/** Which region content fetched on miss came from (for operators and tests). */
export const FETCHED_FROM_HEADER = "meridian-fetched-from";

/** The route config of an OCI route: its name and who may call it (../auth-plugin.ts). */
export function ociConfig(ociRoute: OciRouteName, access: RouteAccess): OciRouteConfig {
  return { ociRoute, ociAccess: access };
}

/** The parameters of a route on a repository (see ./paths.ts: `name` is the raw name, slashes and all). */
export type RepoRequest<P = { name: string }> = FastifyRequest<{ Params: P }>;

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;

/**
 * Answer 405 UNSUPPORTED with `Allow` to the methods a route does not take,
 * before any authentication (as the API answered before routes were plugins).
 */
export function methodsNotAllowed(
  app: FastifyInstance,
  route: OciRouteName,
  allowed: readonly string[],
): void {
  const others = METHODS.filter((m) => !allowed.includes(m));
  const allow = allowed.join(", ");
  app.route({
    method: others,
    url: OCI_URLS[route],
    config: ociConfig(route, "none"),
    handler: async (req, reply) => {
      reply.header("allow", allow);
      throw new MethodNotAllowedError(`${req.method} not allowed on ${route}`);
    },
  });
}

/**
 * A route's `schemaErrorFormatter`: a query parameter that fails its schema
 * is answered with the OCI error that parameter's malformation deserves
 * (fastify's own 400 body is no OCI error), made by `errors[parameter]`.
 */
export function queryErrors(errors: Record<string, (message: string) => Error>) {
  return (failures: FastifySchemaValidationError[]): Error => {
    const first = failures[0];
    const missing = (first?.params as { missingProperty?: string } | undefined)?.missingProperty;
    const parameter = missing ?? first?.instancePath.slice(1) ?? "";
    const make = errors[parameter];
    const message =
      missing !== undefined ? `${parameter} parameter is required` : `invalid ${parameter} parameter`;
    return make === undefined ? new Error(message) : make(message);
  };
}

/**
 * `Cache-Control: only-if-cached` (RFC 9111 5.2.1.7): the client asks what
 * this region holds itself, so a miss is answered 404 without asking the
 * mesh (how replication checks and tests tell replicated from fetchable).
 * Read on the miss path only.
 */
export function onlyIfCached(req: FastifyRequest): boolean {
  return req.headers["cache-control"]?.includes("only-if-cached") === true;
}

/** The query parameter of a redirect's pull token (see `presigned`, ../auth-plugin.ts `authorizationOf`). */
export const TOKEN_PARAM = "_token";

/**
 * With auth, a fetch-on-miss redirect carries a pull token for the
 * repository in `_token`: clients drop their Authorization header when
 * redirected to another host (as with a storage backend's presigned URL),
 * and every region accepts the mesh's tokens.
 */
export async function presigned(
  auth: HttpAuth | undefined,
  req: FastifyRequest,
  repo: string,
  miss: { redirect: string; region: string },
) {
  if (auth === undefined) return miss;
  const { token } = await auth.authenticator.issue(req.identity, [`repository:${repo}:pull`], {
    only: new URL(miss.redirect).pathname,
  });
  return { ...miss, redirect: `${miss.redirect}?${TOKEN_PARAM}=${encodeURIComponent(token)}` };
}

/** May this request's identity pull `repo`? (A cross-repository mount needs it of the source.) */
export async function mayPull(
  auth: HttpAuth | undefined,
  req: FastifyRequest,
  repo: string,
): Promise<boolean> {
  if (auth === undefined) return true;
  return (await auth.authenticator.decide(req.identity, "pull", repo)).allowed;
}

/** Send the client to the region that holds the content (fetch on miss, redirect mode). */
export function redirectTo(reply: FastifyReply, miss: { redirect: string; region: string }) {
  return reply
    .status(307)
    .headers({ location: miss.redirect, [FETCHED_FROM_HEADER]: miss.region, "content-length": 0 })
    .send();
}

export function hasBody(req: FastifyRequest): boolean {
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
}

/** An AbortSignal that fires if the client goes away before the response is done. */
export function abortOnClose(raw: IncomingMessage): AbortController {
  const ac = new AbortController();
  raw.once("close", () => {
    if (!raw.complete) ac.abort(new RequestAbortedError("client went away"));
  });
  return ac;
}
