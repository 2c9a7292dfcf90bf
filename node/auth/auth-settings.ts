/**
 * The node's `auth` settings (node/config.ts NODE_SETTINGS): tokens, the
 * mesh key, the first admin, failed-login limits, admin writes without
 * authentication. Apart from node/config.ts for its size; the directory and
 * OIDC sign-ins have theirs in ./ldap-config.ts and ./oidc-config.ts.
 */
import { Setting } from "../../protocol/config-schema.js";

/** The addresses a loopback client connects from (IPv4, IPv6, IPv4-mapped IPv6). */
export const LOOPBACK: readonly string[] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];

export function authSettings() {
  const { string, integer, boolean, list, optional } = Setting;
  return {
    enabled: boolean({ env: "MERIDIAN_AUTH", default: false, doc: "authenticate every request" }),
    tokenKeyFile: optional(
      string({
        env: "MERIDIAN_TOKEN_KEY_FILE",
        defaultText: "`<dataDir>/token-key.pem`",
        doc: "the mesh's token signing key (ES256, PKCS#8 PEM): the same file in every region",
      }),
    ),
    retiredKeyFiles: list({
      env: "MERIDIAN_TOKEN_RETIRED_KEY_FILES",
      default: [],
      doc: "public keys (SPKI PEM) of earlier signing keys, still accepted",
    }),
    service: string({
      env: "MERIDIAN_AUTH_SERVICE",
      default: "meridian",
      pattern: String.raw`^[\x21\x23-\x7e]{1,128}$`,
      doc: "the token service name (printable ASCII without spaces or quotes)",
    }),
    realm: optional(
      string({
        env: "MERIDIAN_AUTH_REALM",
        pattern: String.raw`^https?://[^\s"]+$`,
        defaultText: "a trusted proxy's URL, else the node's address, + `/auth/token`",
        doc: "the token endpoint clients are sent to",
      }),
    ),
    tokenTtlSeconds: integer({
      env: "MERIDIAN_TOKEN_TTL_SECONDS",
      default: 300,
      minimum: 10,
      maximum: 86_400,
      doc: "life of an issued token",
    }),
    adminPasswordFile: optional(
      string({
        env: "MERIDIAN_ADMIN_PASSWORD_FILE",
        doc: "creates the system admin `admin` with the file's first line as password when missing",
      }),
    ),
    loginFailures: integer({
      env: "MERIDIAN_LOGIN_FAILURES",
      default: 5,
      minimum: 1,
      doc: "failed logins a minute per user and per address before 429",
    }),
    allowUnauthenticated: boolean({
      env: "MERIDIAN_NO_AUTH",
      default: false,
      doc: "start with auth off although the data has identities (logged at warn and audited)",
    }),
    adminWriteAddresses: list({
      env: "MERIDIAN_ADMIN_WRITE_ADDRESSES",
      default: [...LOOPBACK],
      doc: "with auth off, the socket addresses admin writes are accepted from (`*`: anyone)",
    }),
  };
}
