/**
 * OIDC users (issue 18 item 2): what the log records of them and the pure
 * decision of what a provider's groups grant. The relying party itself (the
 * code flow, the provider's answers) is node/auth/oidc-client.ts; this file
 * does no IO and reads no clock.
 *
 * Two events, two registers per user (node/data/projections/oidc-users.ts),
 * so a sign-in in one region and a secret rotated in another never overwrite
 * each other:
 * - `oidc.user.set`: who signed in (the provider's issuer and subject), the
 *   groups its ID token named and the roles they map to, and the sign-in's
 *   `session` id (null once signed out). Never a token: the ID, access and
 *   refresh tokens stay in the process that received them, and are dropped
 *   once read. Every sign-in replaces the whole record, so a group that no
 *   longer grants a role takes it away at the next sign-in.
 * - `oidc.secret.set`: the user's CLI secret (the registry password docker
 *   and podman use, as Harbor's), as a KDF hash, or null (revoked). A new
 *   hash is a rotation: the old secret stops working in every region as soon
 *   as each applies the event.
 *
 * Group mapping (`oidc.groupRoles`): group name → a comma-separated list of
 * grants, each `systemAdmin`, `operator` or `<project>:<role>` (a role of
 * protocol/access.ts). A user in several groups gets every grant; in one
 * project the highest role wins (projectAdmin > maintainer > developer >
 * guest > limitedGuest).
 */
import { ROLES, type Role } from "./access.js";
import type { Envelope } from "./event-types.js";

/** Claims from a sign-in, as recorded: no token, no secret. */
export interface OidcUserSet extends Envelope {
  type: "oidc.user.set";
  /** The Meridian user name (the configured username claim). */
  name: string;
  issuer: string;
  /** The provider's subject (`sub`). */
  sub: string;
  groups: string[];
  systemAdmin: boolean;
  operator: boolean;
  roles: Record<string, Role>;
  /** This sign-in's id (tokens issued to the user carry a fingerprint of it); null: signed out. */
  session: string | null;
}

/** The user's CLI secret set (created or rotated: a KDF hash) or revoked (null). */
export interface OidcSecretSet extends Envelope {
  type: "oidc.secret.set";
  name: string;
  /** The secret's KDF hash (node/auth/passwords.ts); null: revoked. */
  hash: string | null;
}

export type OidcEvent = OidcUserSet | OidcSecretSet;

/** What the groups of one user grant. */
export interface GroupGrants {
  systemAdmin: boolean;
  operator: boolean;
  roles: Record<string, Role>;
}

/** One group's grants, parsed. */
export type GroupRoles = ReadonlyMap<string, GroupGrants>;

const PROJECT = /^(?=.{1,63}$)[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** `oidc.groupRoles` parsed; every problem listed, each naming its group. */
export function parseGroupRoles(table: Readonly<Record<string, string>>): {
  mapping: GroupRoles;
  problems: string[];
} {
  const mapping = new Map<string, GroupGrants>();
  const problems: string[] = [];
  for (const [group, text] of Object.entries(table)) {
    const grants: GroupGrants = { systemAdmin: false, operator: false, roles: {} };
    const items = text
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (items.length === 0) problems.push(`oidc.groupRoles.${group}: grants nothing`);
    for (const item of items) {
      if (item === "systemAdmin") grants.systemAdmin = true;
      else if (item === "operator") grants.operator = true;
      else {
        const colon = item.lastIndexOf(":");
        const project = item.slice(0, Math.max(0, colon));
        const role = item.slice(colon + 1) as Role;
        if (colon <= 0 || !PROJECT.test(project) || !ROLES.includes(role))
          problems.push(
            `oidc.groupRoles.${group}: "${item}" is not systemAdmin, operator or <project>:<role> (roles: ${ROLES.join(", ")})`,
          );
        else grants.roles[project] = higher(grants.roles[project], role);
      }
    }
    mapping.set(group, grants);
  }
  return { mapping, problems };
}

/** What `groups` grant together under `mapping` (groups not in it grant nothing). */
export function grantsOf(groups: readonly string[], mapping: GroupRoles): GroupGrants {
  const out: GroupGrants = { systemAdmin: false, operator: false, roles: {} };
  for (const group of groups) {
    const g = mapping.get(group);
    if (g === undefined) continue;
    out.systemAdmin ||= g.systemAdmin;
    out.operator ||= g.operator;
    for (const [project, role] of Object.entries(g.roles))
      out.roles[project] = higher(out.roles[project], role);
  }
  return out;
}

/** The higher of two roles (ROLES is ordered highest first). */
function higher(a: Role | undefined, b: Role): Role {
  return a === undefined || ROLES.indexOf(b) < ROLES.indexOf(a) ? b : a;
}

/** Problems with an OIDC event's body (field names), for protocol/event-validation.ts. */
export function oidcEventProblems(e: Record<string, unknown>, userName: RegExp): string[] {
  const bad: string[] = [];
  const need = (ok: boolean, field: string) => {
    if (!ok) bad.push(field);
  };
  need(typeof e.name === "string" && userName.test(e.name), "name");
  if (e.type === "oidc.secret.set") {
    need(e.hash === null || (typeof e.hash === "string" && e.hash.startsWith("scrypt$")), "hash");
    return bad;
  }
  const shortText = (v: unknown) => typeof v === "string" && v.length > 0 && v.length <= 1024;
  need(shortText(e.issuer), "issuer");
  need(shortText(e.sub), "sub");
  need(Array.isArray(e.groups) && e.groups.length <= 1000 && e.groups.every((g) => shortText(g)), "groups");
  need(typeof e.systemAdmin === "boolean", "systemAdmin");
  need(typeof e.operator === "boolean", "operator");
  need(
    typeof e.roles === "object" &&
      e.roles !== null &&
      !Array.isArray(e.roles) &&
      Object.entries(e.roles).every(([p, r]) => PROJECT.test(p) && ROLES.includes(r as Role)),
    "roles",
  );
  need(
    e.session === null || (typeof e.session === "string" && /^[A-Za-z0-9_-]{16,64}$/.test(e.session)),
    "session",
  );
  return bad;
}
