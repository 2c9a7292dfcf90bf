/**
 * Authentication of the OCI API as one fastify plugin: every route in its
 * scope declares in its route config what it needs (`config.ociAccess`), and the
 * plugin, when the route is registered (`onRoute`), gives it the matching
 * `onRequest` gate. A route that declares nothing is refused at registration,
 * so no route is left open by forgetting. Without auth no gate is added
 * (everyone is `anonymous` and may do everything).
 *
 *   none        open (the 405 answers, which come before authentication)
 *   identified  any known identity (`GET /v2/`)
 *   catalog     any known identity; the challenge names `registry:catalog:*`
 *   pull / push / delete   that action on the route's repository (`:name`)
 *
 * Anonymous requests and tokens lacking the scope get 401 with the Bearer
 * challenge naming the scope to ask for (how clients discover the token
 * endpoint); known identities without the right get 403 DENIED. Denial comes
 * before any lookup, so nobody learns whether a repository they may not read
 * exists.
 *
 * The gate is a callback hook, and its fast lane (credentials and settings
 * all cached by the authenticator, node/auth/authenticator.ts) neither awaits
 * nor allocates: the hot reads (GET manifest, HEAD blob) pay nothing more
 * than the two cache lookups.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import fp from "fastify-plugin";
import type { Action } from "../../protocol/access.js";
import { AccessDeniedError, UnauthorizedError } from "../../protocol/errors.js";
import { parseRepository } from "../../protocol/names.js";
import { type AuditSink, authFailureHeaders, challenge, type HttpAuth, loginRecord } from "./access.js";
import { clientAddress } from "./forwarded.js";
import { TOKEN_PARAM } from "./oci/common.js";
import { originalPath } from "./oci/paths.js";

/** What a route needs of the request's identity (see the header). */
export type RouteAccess = "none" | "identified" | "catalog" | Action;

/**
 * The route config the plugin reads (not a FastifyContextConfig augmentation:
 * the admin API's routes keep their own `access` key, ./admin.ts).
 */
export interface AccessConfig {
  /** What the route needs; every route under the auth plugin declares it. */
  ociAccess?: RouteAccess;
}

export interface AuthPluginOptions {
  /** Authentication (node/auth/); absent: no gate, everyone is anonymous. */
  auth?: HttpAuth;
  /** Where logins with a password on a request are recorded. */
  audit?: AuditSink;
}

async function authPluginImpl(app: FastifyInstance, options: AuthPluginOptions): Promise<void> {
  app.addHook("onRoute", (route) => {
    const access = (route.config as AccessConfig | undefined)?.ociAccess;
    if (access === undefined)
      throw new Error(`route ${String(route.method)} ${route.url} declares no access (config.ociAccess)`);
    const auth = options.auth;
    if (access === "none" || auth === undefined) return;
    const gate = gateFor(auth, options.audit, access);
    const existing = route.onRequest === undefined ? [] : [route.onRequest].flat();
    route.onRequest = [...existing, gate];
  });
}

/** The plugin: register it before the routes it guards (in the same scope). */
export const authPlugin = fp(authPluginImpl, { name: "meridian-auth", fastify: "5.x" });

/** The `onRequest` gate of a route needing `access`. */
function gateFor(auth: HttpAuth, audit: AuditSink | undefined, access: Exclude<RouteAccess, "none">) {
  const onRepo = access === "pull" || access === "push" || access === "delete";
  const hook: onRequestHookHandler = (req, reply, done) => {
    const rawRepo = onRepo ? (req.params as { name: string }).name : undefined;
    const pending = gate(auth, audit, req, reply, access, rawRepo);
    if (pending === undefined) return done();
    pending.then(() => done(), done);
  };
  return hook;
}

function gate(
  auth: HttpAuth,
  audit: AuditSink | undefined,
  req: FastifyRequest,
  reply: FastifyReply,
  access: Exclude<RouteAccess, "none">,
  rawRepo: string | undefined,
): Promise<void> | undefined {
  // Fast lane (most requests): credentials and settings all cached, allowed: nothing to await.
  const known = auth.authenticator.identifyCached(authorizationOf(req));
  if (known !== undefined && known.claims?.only === undefined) {
    if (rawRepo === undefined && known.kind !== "anonymous") {
      req.identity = known;
      return undefined;
    }
    if (rawRepo !== undefined) {
      const repo = parseRepository(rawRepo);
      if (auth.authenticator.decideCached(known, access as Action, repo)?.allowed === true) {
        req.identity = known;
        return undefined;
      }
    }
  }
  return gateSlow(auth, audit, req, reply, access, rawRepo);
}

async function gateSlow(
  auth: HttpAuth,
  audit: AuditSink | undefined,
  req: FastifyRequest,
  reply: FastifyReply,
  access: Exclude<RouteAccess, "none">,
  rawRepo: string | undefined,
): Promise<void> {
  try {
    const address = clientAddress(req);
    req.identity = await auth.authenticator.identify(authorizationOf(req), address, (outcome) =>
      audit?.record(loginRecord(outcome, address, "basic")),
    );
  } catch (err) {
    authFailureHeaders(auth, req, reply, err);
    throw err;
  }
  // A redirect's `_token` reads the one path it was made for, nothing else.
  const only = req.identity.claims?.only;
  if (
    only !== undefined &&
    (only !== originalPath(req.originalUrl) || (req.method !== "GET" && req.method !== "HEAD"))
  )
    throw new AccessDeniedError("this token is good only for the one read it was issued for");
  const anonymous = req.identity.kind === "anonymous";
  if (rawRepo === undefined) {
    if (!anonymous) return;
    challenge(auth, req, reply, access === "catalog" ? "registry:catalog:*" : undefined);
    throw new UnauthorizedError("authentication required");
  }
  const repo = parseRepository(rawRepo);
  const action = access as Action;
  const decision = await auth.authenticator.decide(req.identity, action, repo);
  if (decision.allowed) return;
  if (anonymous || decision.scopeMissing === true) {
    challenge(
      auth,
      req,
      reply,
      `repository:${repo}:${action === "push" ? "pull,push" : action}`,
      decision.scopeMissing,
    );
    throw new UnauthorizedError(`authentication required to ${action} ${repo}`);
  }
  throw new AccessDeniedError(`denied: ${decision.reason}`);
}

/** The request's credentials: its Authorization header, or on a read a redirect's `_token`. */
function authorizationOf(req: FastifyRequest): string | undefined {
  if (req.headers.authorization !== undefined) return req.headers.authorization;
  if (req.method !== "GET" && req.method !== "HEAD") return undefined;
  const token = (req.query as Record<string, string | undefined>)[TOKEN_PARAM];
  return typeof token === "string" && token !== "" ? `Bearer ${token}` : undefined;
}
