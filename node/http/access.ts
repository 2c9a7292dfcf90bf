/**
 * The HTTP side of authentication shared by the OCI API (./app.ts), the
 * admin API (./admin.ts) and the token endpoint (./token-routes.ts): what
 * they are given, the realm clients are sent to, and audit entries of logins.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { DirectoryUnavailableError, TooManyLoginsError, UnauthorizedError } from "../../protocol/errors.js";
import { SERVICE_ACTOR_PREFIX } from "../../protocol/event-authority.js";
import { ROBOT_NAME } from "../../protocol/events.js";
import {
  type Authenticator,
  bearerChallenge,
  type IdentityKind,
  type LoginOutcome,
} from "../auth/authenticator.js";
import { realmOf } from "./forwarded.js";

export { realmOf };

export interface HttpAuth {
  authenticator: Authenticator;
  /**
   * The token endpoint's URL for challenges (`auth.realm`, the public URL); undefined: the one a
   * proven proxy names, else the address this node answered on (./forwarded.ts), never the client's Host.
   */
  realm?: string;
}

/** What the HTTP layer records (node/audit.ts's AuditLog). */
export interface AuditSink {
  record(entry: {
    actor: string;
    kind: IdentityKind;
    action: "pull" | "push" | "delete" | "login" | "login.failed" | "admin";
    address: string;
    repo?: string;
    reference?: string;
    status: number;
    detail?: string;
  }): void;
}

/**
 * Who an admin event names as its actor: the identity's name, or
 * `service:<name>` for a Meridian component (so the view can tell a service
 * from a user of the same name: protocol/event-authority.ts). A directory
 * user (issue 18, node/auth/ldap-login.ts) is no user of the view, which
 * could not judge its right: its changes are `service:ldap/<name>`, the
 * node holding the mesh key vouching for them, as it checked the right
 * (from the user's directory groups) before committing, as for anyone.
 */
export function actorOf(
  identity: { name: string; kind: IdentityKind; directory?: unknown } | undefined,
): string {
  if (identity === undefined) return "anonymous";
  if (identity.directory !== undefined) return `${SERVICE_ACTOR_PREFIX}ldap/${identity.name}`;
  return identity.kind === "service" ? `${SERVICE_ACTOR_PREFIX}${identity.name}` : identity.name;
}

/** An audit entry for a password checked (basic auth on a request, or the token endpoint). */
export function loginRecord(
  outcome: LoginOutcome,
  address: string,
  via: string,
): Parameters<AuditSink["record"]>[0] {
  return {
    actor: outcome.name,
    kind: outcome.identity?.kind ?? (ROBOT_NAME.test(outcome.name) ? "robot" : "user"),
    action: outcome.failure === undefined ? "login" : "login.failed",
    address,
    status: outcome.failure === undefined ? 200 : outcome.limited === true ? 429 : 401,
    detail: outcome.failure === undefined ? via : `${via}: ${outcome.failure}`,
  };
}

/** Send the Bearer challenge: where to get a token, and (optionally) for which scope. */
export function challenge(
  auth: HttpAuth,
  req: FastifyRequest,
  reply: FastifyReply,
  scope?: string,
  insufficientScope?: boolean,
): void {
  reply.header(
    "www-authenticate",
    bearerChallenge({
      realm: auth.realm ?? realmOf(req),
      service: auth.authenticator.service,
      scope,
      insufficientScope,
    }),
  );
}

/** The headers a failed authentication answers with: the challenge on a 401, Retry-After on a 429 or a directory's 503. */
export function authFailureHeaders(
  auth: HttpAuth,
  req: FastifyRequest,
  reply: FastifyReply,
  err: unknown,
): void {
  if (err instanceof UnauthorizedError) challenge(auth, req, reply);
  if (err instanceof TooManyLoginsError || err instanceof DirectoryUnavailableError)
    reply.header("retry-after", (err.detail as { retryAfterSeconds: number }).retryAfterSeconds);
}
