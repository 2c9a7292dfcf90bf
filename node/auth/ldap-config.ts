/**
 * The node's `ldap` settings (issue 18): where the directory is, how to find
 * a user and their groups in it, and what the groups grant. Absent `url`:
 * no directory, local users only. Checked with the rest of the
 * configuration (node/config.ts), every problem listed.
 *
 * - `url`: `ldap://host[:port]` or `ldaps://host[:port]`; `startTLS`
 *   upgrades an `ldap://` connection before anything is sent (refused with
 *   `ldaps://`); `caFile` is the CA to trust for either (otherwise the
 *   system's roots). The server's certificate is always verified.
 * - `bindDN` + `bindPasswordFile`: the service account that searches for
 *   users and groups (the secret is read from the file at each connection,
 *   first line, never logged); neither: the search is anonymous.
 * - `userBase` + `userFilter`: the subtree searched and the filter, in which
 *   `{username}` is the name typed, escaped per RFC 4515
 *   (protocol/directory.ts). Exactly one entry must match.
 * - groups: by default the user entry's `groupAttribute` (`memberOf`, as
 *   OpenLDAP's memberof overlay and Active Directory keep it); with
 *   `groupBase`, a search under it with `groupFilter` (`{dn}`: the user's DN,
 *   `{username}`: the name), each entry found a group.
 * - `groups`: group DN or cn → `admin`, `operator`, `PROJECT:ROLE` (a
 *   comma-separated list); from the environment use the JSON form, since
 *   DNs hold commas and `=`.
 * - `connectTimeoutMs`, `timeoutMs`: a TCP (and TLS) connection within the
 *   first, each LDAP operation within the second; a whole sign-in (connect,
 *   service bind, searches, user bind) within their sum, or 503.
 * - `cacheSeconds`: how long a successful sign-in is remembered (0: not at
 *   all); see ./ldap-login.ts.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { Setting, type Static } from "../../protocol/config-schema.js";
import { type GroupRule, parseGroupRules } from "../../protocol/directory.js";

const { string, integer, boolean, table, optional, section } = Setting;

export const DEFAULT_USER_FILTER = "(&(objectClass=inetOrgPerson)(uid={username}))";
export const DEFAULT_GROUP_FILTER = "(&(objectClass=groupOfNames)(member={dn}))";

/** The node's `ldap` settings (node/config.ts NODE_SETTINGS). */
export function ldapSettings() {
  return section({
    url: optional(
      string({
        env: "MERIDIAN_LDAP_URL",
        defaultText: "none (local users only)",
        doc: "the directory: ldap://host:port or ldaps://host:port",
      }),
    ),
    startTLS: boolean({
      env: "MERIDIAN_LDAP_START_TLS",
      default: false,
      doc: "upgrade an ldap:// connection with StartTLS before binding",
    }),
    caFile: optional(
      string({
        env: "MERIDIAN_LDAP_CA_FILE",
        defaultText: "the system's roots",
        doc: "PEM file of the CA that signed the directory's certificate (ldaps:// and StartTLS)",
      }),
    ),
    bindDN: optional(
      string({
        env: "MERIDIAN_LDAP_BIND_DN",
        defaultText: "none (anonymous search)",
        doc: "the service account that searches users and groups",
      }),
    ),
    bindPasswordFile: optional(
      string({
        env: "MERIDIAN_LDAP_BIND_PASSWORD_FILE",
        doc: "a file whose first line is the service account's password (with bindDN)",
      }),
    ),
    userBase: optional(
      string({
        env: "MERIDIAN_LDAP_USER_BASE",
        defaultText: "(required with url)",
        doc: "the subtree searched for users, e.g. ou=people,dc=example,dc=org",
      }),
    ),
    userFilter: string({
      env: "MERIDIAN_LDAP_USER_FILTER",
      default: DEFAULT_USER_FILTER,
      doc: "the user search filter; `{username}` is the name signed in with, RFC 4515-escaped",
    }),
    groupAttribute: string({
      env: "MERIDIAN_LDAP_GROUP_ATTRIBUTE",
      default: "memberOf",
      doc: "the user entry's attribute listing its groups' DNs (without groupBase)",
    }),
    groupBase: optional(
      string({
        env: "MERIDIAN_LDAP_GROUP_BASE",
        defaultText: "none (groups from groupAttribute)",
        doc: "search groups under this base instead of reading groupAttribute",
      }),
    ),
    groupFilter: string({
      env: "MERIDIAN_LDAP_GROUP_FILTER",
      default: DEFAULT_GROUP_FILTER,
      doc: "the group search filter (with groupBase); `{dn}` the user's DN, `{username}` the name",
    }),
    groups: table({
      env: "MERIDIAN_LDAP_GROUPS",
      default: {},
      doc: "group DN or cn → `admin`, `operator` and/or `PROJECT:ROLE`, comma-separated (environment: JSON)",
    }),
    connectTimeoutMs: integer({
      env: "MERIDIAN_LDAP_CONNECT_TIMEOUT_MS",
      default: 3_000,
      minimum: 100,
      maximum: 60_000,
      doc: "a connection (TCP and TLS) to the directory within this, ms",
    }),
    timeoutMs: integer({
      env: "MERIDIAN_LDAP_TIMEOUT_MS",
      default: 5_000,
      minimum: 100,
      maximum: 60_000,
      doc: "each LDAP operation (bind, search) within this, ms; then the sign-in is 503",
    }),
    cacheSeconds: integer({
      env: "MERIDIAN_LDAP_CACHE_SECONDS",
      default: 60,
      minimum: 0,
      maximum: 3_600,
      doc: "a successful directory sign-in is remembered this long (keyed by name and a keyed hash of the password; 0: never)",
    }),
  });
}

export type LdapSettings = Static<ReturnType<typeof ldapSettings>>;

/** The directory as the node uses it: settings checked, files resolved, the group table parsed. */
export interface LdapConfig extends Omit<LdapSettings, "url" | "userBase"> {
  url: string;
  userBase: string;
  rules: GroupRule[];
}

/**
 * The settings checked: undefined without `url` (every other `ldap.*`
 * setting is then a problem, not silently ignored), else the config; every
 * problem pushed onto `problems`.
 */
export function checkLdap(
  settings: LdapSettings,
  authEnabled: boolean,
  problems: string[],
): LdapConfig | undefined {
  const before = problems.length;
  const { url, userBase } = settings;
  if (url === undefined) {
    const set: string[] = (["caFile", "bindDN", "bindPasswordFile", "userBase", "groupBase"] as const).filter(
      (k) => settings[k] !== undefined,
    );
    if (settings.startTLS) set.push("startTLS");
    if (Object.keys(settings.groups).length > 0) set.push("groups");
    if (set.length > 0) problems.push(`ldap: ${set.join(", ")} set without ldap.url`);
    return undefined;
  }
  if (!/^ldaps?:\/\/[^\s/?#]+\/?$/.test(url))
    problems.push(`ldap.url "${url}": want ldap://host[:port] or ldaps://host[:port]`);
  if (settings.startTLS && url.startsWith("ldaps://"))
    problems.push("ldap.startTLS: an ldaps:// connection is already TLS (use ldap:// with startTLS)");
  if (!authEnabled) problems.push("ldap.url: directory sign-in needs auth.enabled");
  if ((settings.bindDN === undefined) !== (settings.bindPasswordFile === undefined))
    problems.push("ldap: bindDN and bindPasswordFile go together (both or neither)");
  const caFile = settings.caFile === undefined ? undefined : resolve(settings.caFile);
  const bindPasswordFile =
    settings.bindPasswordFile === undefined ? undefined : resolve(settings.bindPasswordFile);
  if (caFile !== undefined && !existsSync(caFile)) problems.push(`ldap.caFile ${caFile}: does not exist`);
  if (bindPasswordFile !== undefined && !existsSync(bindPasswordFile))
    problems.push(`ldap.bindPasswordFile ${bindPasswordFile}: does not exist`);
  if (userBase === undefined || userBase.trim() === "")
    problems.push("ldap.userBase: required with ldap.url");
  if (!settings.userFilter.includes("{username}")) problems.push("ldap.userFilter: must contain {username}");
  for (const key of ["userFilter", "groupFilter"] as const)
    if (!balancedFilter(settings[key])) problems.push(`ldap.${key}: not a parenthesized LDAP filter`);
  if (
    settings.groupBase !== undefined &&
    !settings.groupFilter.includes("{dn}") &&
    !settings.groupFilter.includes("{username}")
  )
    problems.push("ldap.groupFilter: must contain {dn} or {username}");
  if (!/^[A-Za-z][A-Za-z0-9-]*$/.test(settings.groupAttribute))
    problems.push(`ldap.groupAttribute "${settings.groupAttribute}": not an attribute name`);
  const { rules, problems: ruleProblems } = parseGroupRules(settings.groups);
  problems.push(...ruleProblems);
  if (problems.length > before) return undefined;
  return {
    ...settings,
    url,
    userBase: userBase!,
    ...(caFile === undefined ? {} : { caFile }),
    ...(bindPasswordFile === undefined ? {} : { bindPasswordFile }),
    rules,
  };
}

/** A filter that starts with `(`, ends with `)` and whose parentheses balance (escaped ones do not count). */
function balancedFilter(filter: string): boolean {
  const f = filter.trim().replace(/\\[0-9a-fA-F]{2}/g, "");
  if (!f.startsWith("(") || !f.endsWith(")")) return false;
  let depth = 0;
  for (const c of f) {
    if (c === "(") depth++;
    else if (c === ")" && --depth < 0) return false;
  }
  return depth === 0;
}
