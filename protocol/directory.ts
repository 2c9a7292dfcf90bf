/**
 * Directory sign-in's pure parts (issue 18, LDAP): how a user name is put
 * into a search filter, and how the groups a directory says a user belongs
 * to become Meridian roles. No IO, no clock: node/auth/ldap-*.ts does the
 * talking to the directory and calls these.
 *
 * Filters (RFC 4515 §3): a value placed into a filter has `*`, `(`, `)`,
 * `\` and NUL written as `\2a`, `\28`, `\29`, `\5c`, `\00`, so a user name
 * like `*)(uid=*` matches only an entry whose uid is literally that string,
 * never every entry. `fillFilter` substitutes `{username}` and `{dn}` in a
 * configured template this way, and nothing else.
 *
 * Group mapping (setting `ldap.groups`): a table from a group, named by its
 * DN (`cn=devs,ou=groups,dc=example,dc=org`) or by its cn alone (`devs`),
 * to what membership grants, a comma-separated list of
 *
 *   admin              system admin
 *   operator           read-only operator of the admin API
 *   PROJECT:ROLE       ROLE (projectAdmin, maintainer, developer, guest,
 *                      limitedGuest) in PROJECT
 *
 * DNs are compared without case and without spaces around `,` and `=` (as
 * directories compare them for the usual attribute types); a cn key matches
 * a group whose DN's first RDN is `cn=<key>` (any case). A user in several
 * mapped groups gets the union; two roles in one project: the stronger
 * (the order of protocol/access.ts ROLES). A user in no mapped group has no
 * role (public projects only), which is not a refusal to sign in.
 */
import { ROLES, type Role } from "./access.js";

/** What the directory's groups grant a user (carried in that user's tokens: mesh-client/tokens.ts). */
export interface DirectoryGrant {
  systemAdmin: boolean;
  operator: boolean;
  roles: Readonly<Record<string, Role>>;
}

/** One configured group and what it grants. */
export interface GroupRule {
  /** The key as configured. */
  group: string;
  /** Normalized DN (contains `=`) or lower-case cn. */
  match: { dn: string } | { cn: string };
  systemAdmin: boolean;
  operator: boolean;
  roles: Readonly<Record<string, Role>>;
}

/** A project: a repository name's first component (OCI's path component). */
const PROJECT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** RFC 4515 §3: a value as it must appear inside a filter. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** `template` with `{username}` and `{dn}` replaced by escaped values (absent ones left as they are). */
export function fillFilter(template: string, values: { username?: string; dn?: string }): string {
  return template.replace(/\{(username|dn)\}/g, (whole, key: "username" | "dn") => {
    const v = values[key];
    return v === undefined ? whole : escapeFilterValue(v);
  });
}

/** A DN as compared here: lower case, no spaces around `,` and `=`. */
export function normalizeDn(dn: string): string {
  return dn
    .trim()
    .toLowerCase()
    .replace(/\s*([,=+])\s*/g, "$1");
}

/** The value of a DN's first RDN when it is a cn (`cn=devs,ou=…` → `devs`), lower case. */
export function cnOf(dn: string): string | undefined {
  const m = /^\s*cn\s*=\s*((?:\\.|[^,+])*)/i.exec(dn);
  return m === null ? undefined : m[1]!.trim().toLowerCase();
}

/**
 * The `ldap.groups` table parsed into rules; every problem listed, each
 * naming the group (an empty list, an unknown role, a bad project name).
 */
export function parseGroupRules(table: Readonly<Record<string, string>>): {
  rules: GroupRule[];
  problems: string[];
} {
  const rules: GroupRule[] = [];
  const problems: string[] = [];
  for (const [group, grants] of Object.entries(table)) {
    const where = `ldap.groups "${group}"`;
    if (group.trim() === "") {
      problems.push(`${where}: a group DN or cn is required`);
      continue;
    }
    const rule: GroupRule = {
      group,
      match: group.includes("=") ? { dn: normalizeDn(group) } : { cn: group.trim().toLowerCase() },
      systemAdmin: false,
      operator: false,
      roles: {},
    };
    const roles: Record<string, Role> = {};
    const items = grants
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (items.length === 0) problems.push(`${where}: grants nothing (admin, operator or PROJECT:ROLE)`);
    for (const item of items) {
      if (item === "admin") rule.systemAdmin = true;
      else if (item === "operator") rule.operator = true;
      else {
        const colon = item.indexOf(":");
        const project = colon < 0 ? "" : item.slice(0, colon);
        const role = colon < 0 ? "" : item.slice(colon + 1);
        if (colon < 0 || !PROJECT.test(project))
          problems.push(`${where}: "${item}" is not admin, operator or PROJECT:ROLE`);
        else if (!(ROLES as readonly string[]).includes(role))
          problems.push(`${where}: "${role}" is not a role (${ROLES.join(", ")})`);
        else roles[project] = stronger(roles[project], role as Role);
      }
    }
    rules.push({ ...rule, roles });
  }
  return { rules, problems };
}

/** What membership of `groups` (their DNs) grants under `rules`. */
export function grantOf(groups: readonly string[], rules: readonly GroupRule[]): DirectoryGrant {
  const dns = new Set(groups.map(normalizeDn));
  const cns = new Set(groups.map(cnOf).filter((c): c is string => c !== undefined));
  const grant = { systemAdmin: false, operator: false, roles: {} as Record<string, Role> };
  for (const rule of rules) {
    const member = "dn" in rule.match ? dns.has(rule.match.dn) : cns.has(rule.match.cn);
    if (!member) continue;
    grant.systemAdmin ||= rule.systemAdmin;
    grant.operator ||= rule.operator;
    for (const [project, role] of Object.entries(rule.roles))
      grant.roles[project] = stronger(grant.roles[project], role);
  }
  return grant;
}

/** A grant read back from a token's claims; undefined when malformed. */
export function parseGrant(value: unknown): DirectoryGrant | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.systemAdmin !== "boolean" || typeof v.operator !== "boolean") return undefined;
  if (typeof v.roles !== "object" || v.roles === null || Array.isArray(v.roles)) return undefined;
  const roles: Record<string, Role> = {};
  for (const [project, role] of Object.entries(v.roles as Record<string, unknown>)) {
    if (!PROJECT.test(project) || !(ROLES as readonly unknown[]).includes(role)) return undefined;
    roles[project] = role as Role;
  }
  return { systemAdmin: v.systemAdmin, operator: v.operator, roles };
}

function stronger(a: Role | undefined, b: Role): Role {
  return a === undefined || ROLES.indexOf(b) < ROLES.indexOf(a) ? b : a;
}
