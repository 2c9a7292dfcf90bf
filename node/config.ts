/**
 * The node's configuration: one typed object with defaults, read from an
 * optional JSON file, then `MERIDIAN_*` environment variables, then explicit
 * overrides (command-line flags); validated with every problem listed at once;
 * frozen and passed down. Nothing else in the node reads the environment.
 *
 * The settings, their `MERIDIAN_*` variables, defaults and ranges are the
 * schema below (`NODE_SETTINGS`, protocol/config-schema.ts); the README's
 * configuration reference is generated from it. An unknown or misspelt key,
 * in the file or the overrides, is an error naming it.
 *
 * `http` bounds slow and greedy clients (protocol/http-limits.ts): there is
 * no total request deadline (a 10 GiB upload that keeps moving is never
 * cut), but a connection on which nothing moves for `idleTimeoutMs` is, so
 * it must exceed `syncTimeoutMs` (a `sync(k)` push sends nothing while it
 * waits). `maxConnectionsPerClient` counts by the socket's address, never a
 * header's; list the front door and load balancers in front of the node in
 * `http.exempt`, since each of their connections carries many clients.
 * A request refused 401/403 (or any error) before its body was read closes
 * its connection instead of reading the body.
 *
 * `uploads` caps the upload sessions this node opens (node/data/registry.ts):
 * one more is refused 429 TOOMANYREQUESTS. A session that received no bytes
 * for `idleMinutes` is abandoned and removed (checked every `idleMinutes / 4`,
 * at most hourly, at least every second); `storage.uploadMaxAgeHours` still bounds any session's life.
 *
 * `scrub` paces the scrub (node/data/scrub.ts): every stored blob re-hashed
 * at `bytesPerSecond`, a pass every `intervalHours` (0: only when asked,
 * `meridian scrub run`). In a region of several nodes sharing a store, give
 * one of them the background pass (`meridian up --nodes N` does: the first).
 *
 * With `meshFile` (protocol/mesh.ts) the node talks to its own region's
 * control-plane peer (node/mesh-link.ts) for three things:
 * - fetch on miss: a manifest or blob this region does not hold is fetched
 *   from the nearest healthy region that does, relayed to the client
 *   (`proxy`), or the client is sent there with a 307 (`redirect`); `off`
 *   answers 404 as a lone region would;
 * - `sync(k)` durability: a push to such a repository is acknowledged only
 *   once k other regions hold it, waiting at most `syncTimeoutMs`;
 * - fencing: writes as a repository's home are refused while the peer says
 *   the region must not make them (pushed on a stream at once when it
 *   changes, and every `peerPollMs` as a keepalive; no status for two
 *   keepalives, at least 2 s, and the node refuses them too).
 *
 * `policiesFile` is a YAML file of replication policies (the format of
 * `meridian policy apply`, protocol/policy.ts). It is validated with the rest
 * of the configuration; at start the node stores each policy that differs
 * from the stored one with that name (policies are events, so every region
 * gets them). Policies not in the file are left as they are: the file adds
 * and updates, `meridian policy delete` removes.
 *
 * Authentication (issue 6, node/auth/): with `auth.enabled` every request
 * under /v2/ and /admin/v1/ is checked (node/auth/authenticator.ts) and the
 * token endpoint is served at /auth/token. `tokenKeyFile` is the mesh's
 * token signing key (PKCS#8 PEM, ES256): every region and the front door
 * read the same file, so a token from one region is good in all. A lone
 * node creates the file when it is missing; in a mesh a missing key is a
 * configuration error (regions that each made their own would refuse each
 * other's tokens). `retiredKeyFiles` are public keys (SPKI PEM) of earlier
 * signing keys, still accepted while their tokens live. With
 * `adminPasswordFile`, the node creates the system admin `admin` with the
 * file's first line as password when no user `admin` exists. Secrets are
 * only ever read from files, never from the environment or flags.
 *
 * With `tls.certFile` and `tls.keyFile` (both or neither: PEM files, the
 * certificate with its chain) the node serves HTTPS only; SIGHUP re-reads
 * both files, so a renewed certificate needs no restart. In a mesh, registry
 * URLs in mesh.json are then https:// and the certificate is one the mesh CA
 * signed (`meridian up --tls` uses the region's mesh certificate), since the
 * front door and the peers trust that CA for them.
 *
 * `trustedProxies` (addresses or CIDRs; none by default) are the proxies,
 * the front door, whose X-Forwarded-For/-Host/-Proto are honoured: the audit
 * log records the client address it names, failed logins are counted
 * against it, and the token realm is the URL the client used. With `auth`
 * the proxy must also prove itself with a token of the mesh key
 * (node/http/forwarded.ts): on one machine the front door shares loopback
 * with every local user. `meridian up` sets the front door's address.
 * Requests from anywhere else are taken at their socket's address.
 *
 * `nats.*` are how the node signs in to its NATS (data/nats-connect.ts):
 * one of an NKEY seed file, a `.creds` file or a user and password file,
 * and TLS (CA, and a client certificate and key for mutual TLS). Secrets
 * are read from the files only, when connecting, and never logged.
 * `meridian up` gives each region's nodes their own seed and inbox prefix
 * (cli/nats-auth.ts: publish only the region's subjects, no stream purge).
 *
 * Two node processes of one region share `storage.root` and the NATS stream;
 * each needs its own `view.dir` (a level database has one owner).
 */
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import {
  CommonSettings,
  ConfigError,
  configSchema,
  type DeepPartial,
  deepFreeze,
  resolveSettings,
  Setting,
  type Static,
} from "../protocol/config-schema.js";
import { type HttpLimits, httpLimitSettings, httpLimitsProblems } from "../protocol/http-limits.js";
import { type Mesh, MeshConfigError, parseMesh } from "../protocol/mesh.js";
import { type Policy, parsePolicies } from "../protocol/policy.js";
import { authSettings } from "./auth/auth-settings.js";
import { checkLdap, type LdapConfig, ldapSettings } from "./auth/ldap-config.js";
import { checkOidc, type OidcConfig, oidcSettings } from "./auth/oidc-config.js";
import { checkNatsClient, type NatsClientConfig, natsClientSettings } from "./data/nats-connect.js";
import { type BlobStoreConfig, blobStoreConfig } from "./data/open-blob-store.js";
import { pullThroughSettings } from "./pull-through.js";
import { rateLimitSettings } from "./rate-limit-settings.js";
import { checkVerificationKeys, verificationSettings } from "./verification.js";

const { string, integer, number, boolean, list, oneOf, optional, section } = Setting;

export { LOOPBACK } from "./auth/auth-settings.js";

export type FetchOnMiss = "proxy" | "redirect" | "off";

/** Every setting of a registry node, once. */
export const NODE_SETTINGS = configSchema({
  region: CommonSettings.region(),
  dataDir: CommonSettings.dataDir("the node's"),
  listen: section({
    host: string({
      env: "MERIDIAN_LISTEN_HOST",
      default: "127.0.0.1",
      doc: "address the registry listens on",
    }),
    port: integer({
      env: "MERIDIAN_LISTEN_PORT",
      default: 5000,
      minimum: 0,
      maximum: 65535,
      doc: "its port",
    }),
  }),
  nats: section({
    servers: list({
      env: "MERIDIAN_NATS_SERVERS",
      default: ["nats://127.0.0.1:4222"],
      doc: "the region's NATS (nats:// or tls:// URLs; comma-separated)",
    }),
    ...natsClientSettings(),
  }),
  storage: section({
    type: CommonSettings.storageType(),
    root: optional(
      string({ env: "MERIDIAN_STORAGE_ROOT", defaultText: "`<dataDir>/store`", doc: "the blob store" }),
    ),
    s3: CommonSettings.s3(),
    fsync: boolean({
      env: "MERIDIAN_STORAGE_FSYNC",
      default: true,
      doc: "flush each blob to disk before it becomes visible",
    }),
    uploadMaxAgeHours: number({
      env: "MERIDIAN_UPLOAD_MAX_AGE_HOURS",
      default: 168,
      exclusiveMinimum: 0,
      doc: "longest life of an upload session, in hours (a week, as Distribution)",
    }),
  }),
  view: section({
    dir: optional(
      string({
        env: "MERIDIAN_VIEW_DIR",
        defaultText: "`<dataDir>/view`",
        doc: "the node's metadata view (one node per view)",
      }),
    ),
  }),
  maxManifestBytes: integer({
    env: "MERIDIAN_MAX_MANIFEST_BYTES",
    default: 4 * 1024 * 1024,
    minimum: 4 * 1024 * 1024,
    doc: "largest manifest accepted (the OCI spec's minimum is 4 MiB)",
  }),
  undeleteWindowHours: number({
    env: "MERIDIAN_UNDELETE_WINDOW_HOURS",
    default: 168,
    exclusiveMinimum: 0,
    doc: "how long deleted content stays restorable with `meridian undelete`, in hours",
  }),
  pullFlushSeconds: number({
    env: "MERIDIAN_PULL_FLUSH_SECONDS",
    default: 600,
    exclusiveMinimum: 0,
    doc: "how often a node records the pulls it saw in the log, for retention's pulledDays (node/data/pull-record.ts)",
  }),
  logLevel: CommonSettings.logLevel(),
  verification: verificationSettings(), // GET /admin/v1/verify/… (node/verification.ts)
  policiesFile: optional(
    string({
      env: "MERIDIAN_POLICIES_FILE",
      doc: "a YAML file of replication policies, stored at start when they differ from the stored ones",
    }),
  ),
  meshFile: optional(
    string({
      env: "MERIDIAN_MESH",
      defaultText: "none (a region on its own)",
      doc: "mesh.json: the other regions; with it the node talks to its region's peer",
    }),
  ),
  fetchOnMiss: optional(
    oneOf(["proxy", "redirect", "off"], {
      env: "MERIDIAN_FETCH_ON_MISS",
      defaultText: "`proxy` with a mesh, else `off`",
      doc: "content this region lacks: relayed from a region that has it, a 307 there, or 404",
    }),
  ),
  syncTimeoutMs: integer({
    env: "MERIDIAN_SYNC_TIMEOUT_MS",
    default: 30_000,
    minimum: 1,
    maximum: 300_000,
    doc: "how long a `sync(k)` push waits for k other regions",
  }),
  peerPollMs: integer({
    env: "MERIDIAN_PEER_POLL_MS",
    default: 1_000,
    minimum: 100,
    maximum: 60_000,
    doc: "how often the peer re-sends the write fence on the node's status stream while it does not change (its keepalive; a change is sent at once); no status for two keepalives (at least 2 s) fences the node",
  }),
  tls: section({
    certFile: optional(
      string({
        env: "MERIDIAN_TLS_CERT_FILE",
        doc: "HTTPS: the certificate with its chain (PEM; with keyFile; re-read on SIGHUP)",
      }),
    ),
    keyFile: optional(string({ env: "MERIDIAN_TLS_KEY_FILE", doc: "HTTPS: the key (PEM; with certFile)" })),
  }),
  trustedProxies: list({
    env: "MERIDIAN_TRUSTED_PROXIES",
    default: [],
    doc: "addresses or CIDRs of proxies (the front door) whose X-Forwarded-* are honoured",
  }),
  auth: section(authSettings()), // authentication (node/auth/auth-settings.ts)
  pullThrough: pullThroughSettings(), // pull-through cache projects (node/pull-through.ts)
  ldap: ldapSettings(), // directory sign-in (node/auth/ldap-config.ts)
  startupGraceMs: CommonSettings.startupGraceMs(
    "a fence set this soon after start (no other region has answered yet) is logged at info, at warn once if it outlasts it",
  ),
  http: section(httpLimitSettings({ keepAliveTimeoutMs: 75_000, exempt: ["127.0.0.1", "::1"] })),
  oidc: oidcSettings(),
  // Garbage collection (node/data/gc.ts, node/gc-runner.ts).
  gc: section({
    intervalMinutes: number({
      env: "MERIDIAN_GC_INTERVAL_MINUTES",
      default: 0,
      minimum: 0,
      doc: "run garbage collection every this many minutes (0: off, the default; run it with `meridian gc run`). Set it on one node per region",
    }),
    graceMinutes: number({
      env: "MERIDIAN_GC_GRACE_MINUTES",
      default: 60,
      minimum: 0,
      doc: "bytes and unreferenced links younger than this are never collected (pushes in flight)",
    }),
    settleMs: integer({
      env: "MERIDIAN_GC_SETTLE_MS",
      default: 30_000,
      minimum: 0,
      doc: "wait between setting garbage aside and checking again that no write needed it; longer than any writer's step from seeing a blob to committing its event (a node's append and apply, a replication worker's copy of a closure)",
    }),
  }),
  // Pull and push rate limits (./rate-limits.ts), shared by the region's nodes.
  rateLimits: section(rateLimitSettings()),
  uploads: section({
    idleMinutes: number({
      env: "MERIDIAN_UPLOAD_IDLE_MINUTES",
      default: 60,
      exclusiveMinimum: 0,
      doc: "an upload session that received nothing this long is removed",
    }),
    maxSessions: integer({
      env: "MERIDIAN_UPLOAD_MAX_SESSIONS",
      default: 4096,
      minimum: 1,
      doc: "open upload sessions started on this node; one more is 429",
    }),
    maxSessionsPerClient: integer({
      env: "MERIDIAN_UPLOAD_MAX_SESSIONS_PER_CLIENT",
      default: 256,
      minimum: 1,
      doc: "per identity (per address when anonymous)",
    }),
    maxSessionsPerRepository: integer({
      env: "MERIDIAN_UPLOAD_MAX_SESSIONS_PER_REPOSITORY",
      default: 256,
      minimum: 1,
      doc: "per repository",
    }),
  }),
  scrub: section({
    bytesPerSecond: integer({
      env: "MERIDIAN_SCRUB_BYTES_PER_SECOND",
      default: 8 * 1024 * 1024,
      minimum: 1,
      doc: "how fast the scrub re-reads stored blobs (background passes and `meridian scrub run`)",
    }),
    intervalHours: number({
      env: "MERIDIAN_SCRUB_INTERVAL_HOURS",
      default: 24,
      minimum: 0,
      doc: "pause between background scrub passes (the first starts 10 minutes after start); 0: no background pass",
    }),
  }),
});

type Settings = Static<typeof NODE_SETTINGS>;
type Computed =
  | "dataDir"
  | "nats"
  | "storage"
  | "view"
  | "fetchOnMiss"
  | "tls"
  | "auth"
  | "http"
  | "ldap"
  | "oidc";

/** The node's configuration: the settings, with computed defaults filled in and files read. */
export interface NodeConfig extends Omit<Settings, Computed> {
  dataDir: string;
  nats: { servers: string[] } & NatsClientConfig;
  storage: BlobStoreConfig & { uploadMaxAgeHours: number };
  view: { dir: string };
  /** The policies read from `policiesFile` (empty without one). */
  policies: Policy[];
  /** The parsed mesh (read once at load), with `meshFile`. */
  mesh?: Mesh;
  fetchOnMiss: FetchOnMiss;
  /** HTTPS instead of HTTP: the certificate (with its chain) and key, PEM files. */
  tls?: { certFile: string; keyFile: string };
  auth: AuthConfig;
  /** Slow and greedy HTTP clients (protocol/http-limits.ts). */
  http: HttpLimits;
  ldap?: LdapConfig; // directory sign-in (node/auth/ldap-config.ts); absent: local users only
  oidc?: OidcConfig; // OIDC sign-in (node/auth/oidc-config.ts); absent: off. Holds the client secret: never log it.
}

/** Upload sessions opened on this node (node/data/registry.ts). */
export type UploadLimits = Settings["uploads"];
export type RateLimitSettings = Settings["rateLimits"];

export interface AuthConfig extends Omit<Settings["auth"], "tokenKeyFile"> {
  tokenKeyFile: string;
}

export type NodeConfigInput = DeepPartial<Settings>;

export { ConfigError };

export function loadNodeConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: NodeConfigInput;
}): Readonly<NodeConfig> {
  const problems: string[] = [];
  const settings = resolveSettings(NODE_SETTINGS, sources, problems, readFileSync);
  const { region } = settings;
  const dataDir = resolve(settings.dataDir ?? join(".meridian", region));
  const { tls: _tls, ldap: _ldap, oidc: oidcSettingsRead, ...rest } = settings;
  const config: NodeConfig = {
    ...rest,
    dataDir,
    nats: { servers: settings.nats.servers, ...checkNatsClient(settings.nats, problems) },
    storage: {
      ...blobStoreConfig(
        settings.storage,
        resolve(settings.storage.root ?? join(dataDir, "store")),
        problems,
      ),
      uploadMaxAgeHours: settings.storage.uploadMaxAgeHours,
    },
    view: { dir: resolve(settings.view.dir ?? join(dataDir, "view")) },
    policies: [],
    fetchOnMiss: settings.fetchOnMiss ?? (settings.meshFile === undefined ? "off" : "proxy"),
    auth: {
      ...settings.auth,
      tokenKeyFile: resolve(settings.auth.tokenKeyFile ?? join(dataDir, "token-key.pem")),
      retiredKeyFiles: settings.auth.retiredKeyFiles.map((f) => resolve(f)),
      adminPasswordFile:
        settings.auth.adminPasswordFile === undefined ? undefined : resolve(settings.auth.adminPasswordFile),
    },
  };
  if (settings.meshFile !== undefined) {
    config.meshFile = resolve(settings.meshFile);
    try {
      config.mesh = parseMesh(JSON.parse(readFileSync(config.meshFile, "utf8")));
      if (!config.mesh.regions.some((r) => r.name === config.region))
        problems.push(`meshFile ${settings.meshFile}: region "${config.region}" is not in it`);
    } catch (err) {
      const detail = err instanceof MeshConfigError ? err.problems : [(err as Error).message];
      for (const problem of detail) problems.push(`meshFile ${settings.meshFile}: ${problem}`);
    }
  }
  if (config.fetchOnMiss !== "off" && settings.meshFile === undefined)
    problems.push(`fetchOnMiss ${config.fetchOnMiss}: needs meshFile (the other regions)`);
  for (const proxy of config.trustedProxies)
    if (
      isIP(proxy.split("/")[0]!) === 0 ||
      (proxy.includes("/") &&
        !(
          /^\d{1,3}$/.test(proxy.split("/")[1]!) &&
          Number(proxy.split("/")[1]) <= (isIP(proxy.split("/")[0]!) === 6 ? 128 : 32)
        ))
    )
      problems.push(`trustedProxies: "${proxy}" is not an address or CIDR`);
  if (config.auth.enabled) {
    if (settings.meshFile !== undefined && !existsSync(config.auth.tokenKeyFile))
      problems.push(
        `auth.tokenKeyFile ${config.auth.tokenKeyFile}: missing; every region of a mesh needs the same key (\`meridian up --auth\` makes one)`,
      );
    for (const f of config.auth.retiredKeyFiles)
      if (!existsSync(f)) problems.push(`auth.retiredKeyFiles: ${f} does not exist`);
    if (config.auth.adminPasswordFile !== undefined && !existsSync(config.auth.adminPasswordFile))
      problems.push(`auth.adminPasswordFile ${config.auth.adminPasswordFile}: does not exist`);
  }
  const { certFile, keyFile } = settings.tls;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push("tls: certFile and keyFile go together (both or neither)");
  } else if (certFile !== undefined && keyFile !== undefined) {
    config.tls = { certFile: resolve(certFile), keyFile: resolve(keyFile) };
    for (const [name, file] of Object.entries(config.tls))
      if (!existsSync(file)) problems.push(`tls.${name} ${file}: does not exist`);
  }
  if (settings.policiesFile !== undefined) {
    config.policiesFile = resolve(settings.policiesFile);
    try {
      config.policies = parsePolicies(readFileSync(config.policiesFile, "utf8"));
    } catch (err) {
      const detail = (err as { detail?: { errors?: string[] } }).detail?.errors;
      for (const problem of detail ?? [(err as Error).message])
        problems.push(`policiesFile ${settings.policiesFile}: ${problem}`);
    }
  }
  if (config.nats.servers.length === 0 || config.nats.servers.some((s) => !/^(nats|tls):\/\/[^\s]+$/.test(s)))
    problems.push("nats.servers: each must be a nats:// or tls:// URL");
  problems.push(...httpLimitsProblems(config.http, "http"), ...checkVerificationKeys(config.verification));
  if (config.http.idleTimeoutMs <= config.syncTimeoutMs)
    problems.push(
      "http.idleTimeoutMs: must exceed syncTimeoutMs (a sync(k) push sends nothing while it waits)",
    );
  const ldap = checkLdap(settings.ldap, config.auth.enabled, problems);
  if (ldap !== undefined) config.ldap = ldap;
  config.oidc = checkOidc(oidcSettingsRead, config.auth.enabled, problems);
  for (const a of config.auth.adminWriteAddresses)
    if (a !== "*" && isIP(a) === 0)
      problems.push(`auth.adminWriteAddresses: ${JSON.stringify(a)} is not an IP address (or "*")`);
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}
