/**
 * The node's `oidc` settings (issue 18 item 2; node/config.ts NODE_SETTINGS):
 * the provider, this client, the redirect, the claims read and the group
 * mapping. Off unless `issuer` is set; then `clientId`, `clientSecretFile`
 * and `redirectUrl` are required, and `auth.enabled` too. Checked with the
 * rest of the configuration (`checkOidc`): every problem listed, each naming
 * its setting. The client secret is read from its file only (never an
 * environment variable or a flag), at start.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Setting } from "../../protocol/config-schema.js";
import { type GroupRoles, parseGroupRoles } from "../../protocol/oidc.js";

const { string, integer, list, table, optional, section } = Setting;

/** The `oidc` section of the node's settings. */
export function oidcSettings() {
  return section({
    issuer: optional(
      string({
        env: "MERIDIAN_OIDC_ISSUER",
        pattern: String.raw`^https?://[^\s"]+$`,
        defaultText: "none: OIDC off",
        doc: "the provider's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`)",
      }),
    ),
    clientId: optional(
      string({ env: "MERIDIAN_OIDC_CLIENT_ID", doc: "this registry's client id at the provider" }),
    ),
    clientSecretFile: optional(
      string({
        env: "MERIDIAN_OIDC_CLIENT_SECRET_FILE",
        doc: "file holding the client secret (first line); the same in every region",
      }),
    ),
    redirectUrl: optional(
      string({
        env: "MERIDIAN_OIDC_REDIRECT_URL",
        pattern: String.raw`^https?://[^\s"]+/auth/oidc/callback$`,
        doc: "the public URL of `/auth/oidc/callback` (registered at the provider)",
      }),
    ),
    postLogoutRedirectUrl: optional(
      string({
        env: "MERIDIAN_OIDC_POST_LOGOUT_REDIRECT_URL",
        pattern: String.raw`^https?://[^\s"]+$`,
        doc: "where the provider sends the browser after signing out (registered at the provider)",
      }),
    ),
    scopes: list({
      env: "MERIDIAN_OIDC_SCOPES",
      default: ["openid", "profile", "email", "groups"],
      doc: "scopes asked for (`openid` is always added)",
    }),
    usernameClaim: string({
      env: "MERIDIAN_OIDC_USERNAME_CLAIM",
      default: "preferred_username",
      doc: "the ID token claim that is the Meridian user name (lower-case letters, digits, `._-`)",
    }),
    groupsClaim: string({
      env: "MERIDIAN_OIDC_GROUPS_CLAIM",
      default: "groups",
      doc: "the ID token claim listing the user's groups",
    }),
    groupRoles: table({
      env: "MERIDIAN_OIDC_GROUP_ROLES",
      default: {},
      doc: "group → grants, comma-separated: `systemAdmin`, `operator`, `<project>:<role>`",
    }),
    caFile: optional(
      string({
        env: "MERIDIAN_OIDC_CA_FILE",
        doc: "CA certificates (PEM) the provider's TLS certificate is checked against",
      }),
    ),
    timeoutMs: integer({
      env: "MERIDIAN_OIDC_TIMEOUT_MS",
      default: 5_000,
      minimum: 100,
      maximum: 60_000,
      doc: "bound on each request to the provider (discovery, token, keys)",
    }),
    loginTimeoutSeconds: integer({
      env: "MERIDIAN_OIDC_LOGIN_TIMEOUT_SECONDS",
      default: 600,
      minimum: 30,
      maximum: 3_600,
      doc: "a sign-in must come back from the provider within this",
    }),
    sessionMaxSeconds: integer({
      env: "MERIDIAN_OIDC_SESSION_MAX_SECONDS",
      default: 8 * 3_600,
      minimum: 60,
      maximum: 7 * 86_400,
      doc: "a signed-in session ends with the ID token, and at most after this",
    }),
  });
}

/** The `oidc` settings as loaded (node/config.ts). */
export interface OidcSettings {
  issuer?: string;
  clientId?: string;
  clientSecretFile?: string;
  redirectUrl?: string;
  postLogoutRedirectUrl?: string;
  scopes: string[];
  usernameClaim: string;
  groupsClaim: string;
  groupRoles: Record<string, string>;
  caFile?: string;
  timeoutMs: number;
  loginTimeoutSeconds: number;
  sessionMaxSeconds: number;
}

/** OIDC as the node runs it: the settings checked, the secret and CA read, the mapping parsed. */
export interface OidcConfig {
  issuer: string;
  clientId: string;
  clientSecret: string;
  redirectUrl: string;
  postLogoutRedirectUrl?: string;
  scopes: string[];
  usernameClaim: string;
  groupsClaim: string;
  groupRoles: GroupRoles;
  ca?: string;
  timeoutMs: number;
  loginTimeoutSeconds: number;
  sessionMaxSeconds: number;
}

/**
 * Every problem with the `oidc` settings added to `allProblems` (none when
 * `issuer` is unset), and the runnable configuration when there is none.
 */
export function checkOidc(
  settings: OidcSettings,
  authEnabled: boolean,
  allProblems: string[],
): OidcConfig | undefined {
  const problems: string[] = [];
  if (settings.issuer === undefined) {
    for (const key of ["clientId", "clientSecretFile", "redirectUrl"] as const)
      if (settings[key] !== undefined) allProblems.push(`oidc.${key}: set without oidc.issuer`);
    return undefined;
  }
  if (!authEnabled) problems.push("oidc.issuer: OIDC needs auth.enabled");
  for (const key of ["clientId", "clientSecretFile", "redirectUrl"] as const)
    if (settings[key] === undefined || settings[key] === "")
      problems.push(`oidc.${key}: required with oidc.issuer`);
  let clientSecret = "";
  if (settings.clientSecretFile !== undefined) {
    const file = resolve(settings.clientSecretFile);
    if (!existsSync(file)) problems.push(`oidc.clientSecretFile ${file}: does not exist`);
    else {
      clientSecret = readFileSync(file, "utf8").split(/\r?\n/, 1)[0]!;
      if (clientSecret === "") problems.push(`oidc.clientSecretFile ${file}: its first line is empty`);
    }
  }
  let ca: string | undefined;
  if (settings.caFile !== undefined) {
    const file = resolve(settings.caFile);
    if (!existsSync(file)) problems.push(`oidc.caFile ${file}: does not exist`);
    else {
      ca = readFileSync(file, "utf8");
      if (!ca.includes("-----BEGIN CERTIFICATE-----"))
        problems.push(`oidc.caFile ${file}: no PEM certificate in it`);
    }
  }
  if (settings.usernameClaim === "") problems.push("oidc.usernameClaim: empty");
  if (settings.groupsClaim === "") problems.push("oidc.groupsClaim: empty");
  const { mapping, problems: mappingProblems } = parseGroupRoles(settings.groupRoles);
  problems.push(...mappingProblems);
  allProblems.push(...problems);
  if (problems.length > 0) return undefined;
  return {
    issuer: settings.issuer,
    clientId: settings.clientId!,
    clientSecret,
    redirectUrl: settings.redirectUrl!,
    ...(settings.postLogoutRedirectUrl === undefined
      ? {}
      : { postLogoutRedirectUrl: settings.postLogoutRedirectUrl }),
    scopes: [...new Set(["openid", ...settings.scopes])],
    usernameClaim: settings.usernameClaim,
    groupsClaim: settings.groupsClaim,
    groupRoles: mapping,
    ...(ca === undefined ? {} : { ca }),
    timeoutMs: settings.timeoutMs,
    loginTimeoutSeconds: settings.loginTimeoutSeconds,
    sessionMaxSeconds: settings.sessionMaxSeconds,
  };
}
