/**
 * Who may call the admin API: one `onRequest` hook on the admin context
 * (../admin.ts), the same for every route; each route's config declares
 * the role it needs beyond that (`config: { access }`, RouteAccess below;
 * default "admin"), and its handler checks any finer condition (a project
 * the caller administers, their own password).
 *
 * It runs at `onRequest`, before the body is read and checked against the
 * route's schema: a caller without the rights is answered 401/403 whatever
 * its body holds, and learns nothing of the schema from a 400.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ADMIN_SCOPE } from "../../../mesh-client/tokens.js";
import { AccessDeniedError, UnauthorizedError } from "../../../protocol/errors.js";
import { type LoginOutcome, meantForAdmin } from "../../auth/authenticator.js";
import { type AuditSink, authFailureHeaders, challenge, type HttpAuth, loginRecord } from "../access.js";
import { clientAddress } from "../forwarded.js";

/** Who may call a route beyond system admins (a route's `config.access`; default "admin"). */
export type RouteAccess = "admin" | "self" | "projectAdmin" | "authenticated";

/** A route's config saying who may call it beyond system admins. */
export function access(role: RouteAccess): { config: { access: RouteAccess } } {
  return { config: { access: role } };
}

/**
 * With authentication, every admin route needs a system admin (or a service
 * token: the front door, a peer), except routes whose `access` config lets
 * more in (../identity-routes.ts; their handlers check the finer condition).
 * No credentials: 401 with the Bearer challenge; not enough: 403 DENIED.
 * A read-only operator (a user with `operator`, issue 16) may call every
 * route's GET and HEAD, the routes' own reads included (none of them answers
 * a secret: no password or secret hash, no token key); a write on a route
 * for system admins is 403 DENIED saying operators are read-only. On the
 * other routes (`access` beyond "admin") an operator is an ordinary user: it
 * may change its own password, as any user may.
 * Only credentials meant for the admin API get in (finding 2): Basic, or a
 * bearer token naming `registry:admin:*`; any other token (a pull token, a
 * redirect's `_token`) is 401 with a challenge naming that scope. Every
 * password checked here is audited as `login`/`login.failed` (finding 12).
 */
export function gate(admin: FastifyInstance, auth: HttpAuth, audit: AuditSink | undefined): void {
  admin.addHook("onRequest", async (req, reply) => {
    try {
      req.identity = await auth.authenticator.identify(
        req.headers.authorization,
        clientAddress(req),
        loginAudit(req, audit),
      );
    } catch (err) {
      authFailureHeaders(auth, req, reply, err);
      throw err;
    }
    if (!meantForAdmin(req.identity)) {
      challenge(auth, req, reply, ADMIN_SCOPE, true);
      throw new UnauthorizedError(`this token is not meant for the admin API (ask for ${ADMIN_SCOPE})`);
    }
    const s = req.identity.subject;
    if (s.kind === "user" && s.systemAdmin) return;
    if (req.identity.kind === "anonymous") {
      challenge(auth, req, reply);
      throw new UnauthorizedError("authentication required");
    }
    const read = req.method === "GET" || req.method === "HEAD";
    if (s.kind === "user" && s.operator === true && read) return;
    const access = (req.routeOptions.config as { access?: RouteAccess } | undefined)?.access ?? "admin";
    if (access !== "admin") return;
    if (s.kind === "user" && s.operator === true)
      throw new AccessDeniedError(`operators are read-only: ${req.method} needs a system admin`);
    throw new AccessDeniedError("a system admin is required");
  });
}

/**
 * Without authentication anyone who reaches the port could change policies,
 * rules and projects (issue 11, finding 9): admin writes (anything but GET and
 * HEAD) are accepted only from the listed socket addresses, by default
 * loopback. The socket's address, never a forwarded header: a front door on
 * another host must be listed itself, as must a peer on another host (its
 * automatic failover posts /admin/v1/failover). Reads stay open, as the registry is.
 */
export function writesFrom(admin: FastifyInstance, addresses: readonly string[]): void {
  if (addresses.includes("*")) return;
  const allowed = new Set(addresses);
  admin.addHook("onRequest", async (req) => {
    if (req.method === "GET" || req.method === "HEAD") return;
    const from = req.socket.remoteAddress ?? "";
    if (!allowed.has(from))
      throw new AccessDeniedError(
        `authentication is off: admin changes are accepted only from ${[...allowed].join(", ")} (auth.adminWriteAddresses), not ${from}`,
      );
  });
}

/** The audit callback of a password checked by the admin API (undefined without an audit log). */
export function loginAudit(req: FastifyRequest, audit: AuditSink | undefined) {
  return audit === undefined
    ? undefined
    : (outcome: LoginOutcome) => audit.record(loginRecord(outcome, clientAddress(req), "admin"));
}
