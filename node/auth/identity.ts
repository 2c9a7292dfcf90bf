/**
 * Who is asking (node/auth/authenticator.ts decides it): the identity a
 * request carries through the HTTP layer, and what a login reports.
 */
import type { TokenClaims } from "../../mesh-client/tokens.js";
import type { Subject } from "../../protocol/access.js";
import type { DirectoryGrant } from "../../protocol/directory.js";

export type IdentityKind = "user" | "robot" | "anonymous" | "service";

/** The party behind a request. */
export interface Identity {
  name: string;
  kind: IdentityKind;
  subject: Subject;
  /** How it proved itself. */
  via: "none" | "basic" | "bearer";
  /** A bearer token's claims (its scope limits what the identity may do). */
  claims?: TokenClaims;
  /** Fingerprint of the user's password or the robot's secret hash (tokens issued to it carry it). */
  cred?: string;
  /** A directory user (node/auth/ldap-login.ts): what its groups grant; its tokens carry it. */
  directory?: DirectoryGrant;
}

/**
 * Whether the admin API may take this identity's credentials: a password or
 * secret (Basic), or a bearer token naming `registry:admin:*` (services'
 * tokens included); never another bearer token (a pull token, a redirect's
 * `_token`).
 */
export function meantForAdmin(identity: Identity): boolean {
  return identity.via !== "bearer" || identity.claims?.admin === true;
}

export const ANONYMOUS: Identity = Object.freeze({
  name: "anonymous",
  kind: "anonymous",
  subject: { kind: "anonymous" },
  via: "none",
}) as Identity;

/** A login attempt's outcome, for the audit log. */
export interface LoginOutcome {
  identity?: Identity;
  name: string;
  failure?: string;
  /** Refused by the limiter (429) without checking the password. */
  limited?: boolean;
}

/** A Meridian component holding the mesh's key: a system admin. */
export function serviceIdentity(claims: TokenClaims): Identity {
  return {
    name: claims.subject,
    kind: "service",
    subject: { kind: "user", name: claims.subject, systemAdmin: true, roles: {} },
    via: "bearer",
    claims,
  };
}
