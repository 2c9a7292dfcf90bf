/**
 * The node's configuration: one typed object with defaults, read from an
 * optional JSON file, then `MERIDIAN_*` environment variables, then explicit
 * overrides (command-line flags); validated with every problem listed at once;
 * frozen and passed down. Nothing else in the node reads the environment.
 *
 * | setting            | env                       | default                      |
 * |--------------------|---------------------------|------------------------------|
 * | region             | MERIDIAN_REGION           | local                        |
 * | dataDir            | MERIDIAN_DATA_DIR         | ./.meridian/<region>         |
 * | listen.host        | MERIDIAN_LISTEN_HOST      | 127.0.0.1                    |
 * | listen.port        | MERIDIAN_LISTEN_PORT      | 5000                         |
 * | nats.servers       | MERIDIAN_NATS_SERVERS     | nats://127.0.0.1:4222        |
 * | nats.seedFile      | MERIDIAN_NATS_SEED_FILE   | none (anonymous): NKEY seed file |
 * | nats.credsFile     | MERIDIAN_NATS_CREDS_FILE  | none: a .creds (JWT) file    |
 * | nats.user          | MERIDIAN_NATS_USER        | none: with nats.passwordFile |
 * | nats.passwordFile  | MERIDIAN_NATS_PASSWORD_FILE | none: password (first line) |
 * | nats.inboxPrefix   | MERIDIAN_NATS_INBOX_PREFIX | _INBOX                      |
 * | nats.tls.caFile    | MERIDIAN_NATS_TLS_CA_FILE | none: CA of the NATS server  |
 * | nats.tls.certFile  | MERIDIAN_NATS_TLS_CERT_FILE | none: client cert (mutual TLS) |
 * | nats.tls.keyFile   | MERIDIAN_NATS_TLS_KEY_FILE | none: client key (mutual TLS) |
 * | nats.pingIntervalMs | MERIDIAN_NATS_PING_INTERVAL_MS | 2000: a silent server is dropped after (maxPingOut + 1) of these |
 * | nats.maxPingOut    | MERIDIAN_NATS_MAX_PING_OUT | 2                            |
 * | nats.connectTimeoutMs | MERIDIAN_NATS_CONNECT_TIMEOUT_MS | 5000: one dial's bound |
 * | storage.root       | MERIDIAN_STORAGE_ROOT     | <dataDir>/store              |
 * | storage.fsync      | MERIDIAN_STORAGE_FSYNC    | true                         |
 * | storage.uploadMaxAgeHours | MERIDIAN_UPLOAD_MAX_AGE_HOURS | 168 (a week, as Distribution) |
 * | view.dir           | MERIDIAN_VIEW_DIR         | <dataDir>/view               |
 * | maxManifestBytes   | MERIDIAN_MAX_MANIFEST_BYTES | 4194304 (4 MiB, the spec's floor) |
 * | undeleteWindowHours | MERIDIAN_UNDELETE_WINDOW_HOURS | 168 (deleted content stays restorable a week) |
 * | logLevel           | MERIDIAN_LOG_LEVEL        | info                         |
 * | policiesFile       | MERIDIAN_POLICIES_FILE    | none                         |
 * | meshFile           | MERIDIAN_MESH             | none (a region on its own)   |
 * | fetchOnMiss        | MERIDIAN_FETCH_ON_MISS    | proxy (with a mesh), else off |
 * | syncTimeoutMs      | MERIDIAN_SYNC_TIMEOUT_MS  | 30000                        |
 * | peerPollMs         | MERIDIAN_PEER_POLL_MS     | 250                          |
 * | startupGraceMs     | MERIDIAN_STARTUP_GRACE_MS | 30000 (protocol/startup-grace.ts) |
 * | tls.certFile       | MERIDIAN_TLS_CERT_FILE    | none (plain HTTP)            |
 * | tls.keyFile        | MERIDIAN_TLS_KEY_FILE     | none (plain HTTP)            |
 * | trustedProxies     | MERIDIAN_TRUSTED_PROXIES  | none (trust no proxy)        |
 * | auth.enabled       | MERIDIAN_AUTH             | false                        |
 * | auth.tokenKeyFile  | MERIDIAN_TOKEN_KEY_FILE   | <dataDir>/token-key.pem      |
 * | auth.retiredKeyFiles | MERIDIAN_TOKEN_RETIRED_KEY_FILES | none (comma-separated) |
 * | auth.service       | MERIDIAN_AUTH_SERVICE     | meridian                     |
 * | auth.realm         | MERIDIAN_AUTH_REALM       | <a trusted proxy's URL, else the node's address>/auth/token |
 * | auth.tokenTtlSeconds | MERIDIAN_TOKEN_TTL_SECONDS | 300                       |
 * | auth.adminPasswordFile | MERIDIAN_ADMIN_PASSWORD_FILE | none                  |
 * | auth.loginFailures | MERIDIAN_LOGIN_FAILURES   | 5 (per minute, per user and per address) |
 * | auth.allowUnauthenticated | MERIDIAN_NO_AUTH  | false: refuse to start without auth once the data has identities |
 * | auth.adminWriteAddresses | MERIDIAN_ADMIN_WRITE_ADDRESSES | 127.0.0.1, ::1, ::ffff:127.0.0.1 (without auth; "*": anyone) |
 * | http.idleTimeoutMs | MERIDIAN_HTTP_IDLE_TIMEOUT_MS | 60000 (a connection moving no byte this long is cut) |
 * | http.headersTimeoutMs | MERIDIAN_HTTP_HEADERS_TIMEOUT_MS | 20000 (request line and headers) |
 * | http.keepAliveTimeoutMs | MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS | 75000 (idle keep-alive connection) |
 * | http.maxConnectionsPerClient | MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT | 256 (per source address) |
 * | http.exempt        | MERIDIAN_HTTP_CONNECTION_LIMIT_EXEMPT | 127.0.0.1,::1 (the front door of `meridian up`) |
 * | uploads.idleMinutes | MERIDIAN_UPLOAD_IDLE_MINUTES | 60 (a session receiving nothing this long is removed) |
 * | uploads.maxSessions | MERIDIAN_UPLOAD_MAX_SESSIONS | 4096 (open sessions started on this node) |
 * | uploads.maxSessionsPerClient | MERIDIAN_UPLOAD_MAX_SESSIONS_PER_CLIENT | 256 (per identity; per address when anonymous) |
 * | uploads.maxSessionsPerRepository | MERIDIAN_UPLOAD_MAX_SESSIONS_PER_REPOSITORY | 256 |
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
 * With `meshFile` (protocol/mesh.ts) the node talks to its own region's
 * control-plane peer (node/mesh-link.ts) for three things:
 * - fetch on miss: a manifest or blob this region does not hold is fetched
 *   from the nearest healthy region that does, relayed to the client
 *   (`proxy`), or the client is sent there with a 307 (`redirect`); `off`
 *   answers 404 as a lone region would;
 * - `sync(k)` durability: a push to such a repository is acknowledged only
 *   once k other regions hold it, waiting at most `syncTimeoutMs`;
 * - fencing: writes as a repository's home are refused while the peer says
 *   the region must not make them (polled every `peerPollMs`).
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
  ConfigError,
  type DeepPartial,
  deepFreeze,
  envBoolean,
  envList,
  envNumber,
  httpLimitsFromEnv,
  LOG_LEVELS,
  mergeConfig,
} from "../protocol/config-sources.js";
import { type HttpLimits, httpLimitsProblems } from "../protocol/http-limits.js";
import { type Mesh, MeshConfigError, parseMesh } from "../protocol/mesh.js";
import { type Policy, parsePolicies } from "../protocol/policy.js";
import { STARTUP_GRACE_MS } from "../protocol/startup-grace.js";
import { checkNatsClient, type NatsClientConfig, natsClientFromEnv } from "./data/nats-connect.js";

export interface NodeConfig {
  region: string;
  dataDir: string;
  listen: { host: string; port: number };
  nats: { servers: string[] } & NatsClientConfig;
  storage: { root: string; fsync: boolean; uploadMaxAgeHours: number };
  view: { dir: string };
  maxManifestBytes: number;
  /** How long deleted content stays restorable with `undelete`, in hours. */
  undeleteWindowHours: number;
  logLevel: string;
  policiesFile?: string;
  /** The policies read from `policiesFile` (empty without one). */
  policies: Policy[];
  meshFile?: string;
  /** The parsed mesh (read once at load), with `meshFile`. */
  mesh?: Mesh;
  fetchOnMiss: FetchOnMiss;
  syncTimeoutMs: number;
  peerPollMs: number;
  /** A fence set this long after start is start-up, logged at info (protocol/startup-grace.ts). */
  startupGraceMs: number;
  /** HTTPS instead of HTTP: the certificate (with its chain) and key, PEM files. */
  tls?: { certFile: string; keyFile: string };
  trustedProxies: string[];
  auth: AuthConfig;
  /** Slow and greedy HTTP clients (protocol/http-limits.ts). */
  http: HttpLimits;
  uploads: UploadLimits;
}

/** Upload sessions opened on this node (node/data/registry.ts). */
export interface UploadLimits {
  idleMinutes: number;
  maxSessions: number;
  /** Per identity; per address for anonymous clients. */
  maxSessionsPerClient: number;
  maxSessionsPerRepository: number;
}

export interface AuthConfig {
  enabled: boolean;
  tokenKeyFile: string;
  retiredKeyFiles: string[];
  service: string;
  /** The token endpoint clients are sent to (the public URL); undefined: a trusted proxy's, else the node's address. */
  realm?: string;
  tokenTtlSeconds: number;
  adminPasswordFile?: string;
  /** Failed logins allowed per user and per address in a minute before more are refused (429). */
  loginFailures: number;
  /**
   * Start with authentication off even though this node's data has identities
   * (users in the view, or the token key file): issue 11, finding 9. Without
   * it such a start is refused; with it the start is logged at warn and audited.
   */
  allowUnauthenticated: boolean;
  /**
   * Without authentication: the socket addresses (never forwarded headers)
   * admin writes are accepted from; "*" accepts anyone. Default: loopback.
   */
  adminWriteAddresses: string[];
}

/** The addresses a loopback client connects from (IPv4, IPv6, IPv4-mapped IPv6). */
export const LOOPBACK: readonly string[] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];

export type FetchOnMiss = "proxy" | "redirect" | "off";
const FETCH_ON_MISS: readonly FetchOnMiss[] = ["proxy", "redirect", "off"];

export type NodeConfigInput = Omit<DeepPartial<NodeConfig>, "mesh" | "tls"> & {
  tls?: { certFile?: string; keyFile?: string };
};

export { ConfigError };

export function loadNodeConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: NodeConfigInput;
}): Readonly<NodeConfig> {
  const problems: string[] = [];
  let fromFile: NodeConfigInput = {};
  if (sources.file !== undefined) {
    try {
      fromFile = JSON.parse(readFileSync(sources.file, "utf8"));
    } catch (err) {
      problems.push(`config file ${sources.file}: ${(err as Error).message}`);
    }
  }
  const env = sources.env ?? {};
  const fromEnv: NodeConfigInput = {
    region: env.MERIDIAN_REGION,
    dataDir: env.MERIDIAN_DATA_DIR,
    listen: { host: env.MERIDIAN_LISTEN_HOST, port: envNumber(env.MERIDIAN_LISTEN_PORT) },
    nats: { servers: env.MERIDIAN_NATS_SERVERS?.split(",").map((s) => s.trim()), ...natsClientFromEnv(env) },
    storage: {
      root: env.MERIDIAN_STORAGE_ROOT,
      fsync: envBoolean(env.MERIDIAN_STORAGE_FSYNC),
      uploadMaxAgeHours: envNumber(env.MERIDIAN_UPLOAD_MAX_AGE_HOURS),
    },
    view: { dir: env.MERIDIAN_VIEW_DIR },
    maxManifestBytes: envNumber(env.MERIDIAN_MAX_MANIFEST_BYTES),
    undeleteWindowHours: envNumber(env.MERIDIAN_UNDELETE_WINDOW_HOURS),
    logLevel: env.MERIDIAN_LOG_LEVEL,
    policiesFile: env.MERIDIAN_POLICIES_FILE,
    meshFile: env.MERIDIAN_MESH,
    fetchOnMiss: env.MERIDIAN_FETCH_ON_MISS as FetchOnMiss | undefined,
    syncTimeoutMs: envNumber(env.MERIDIAN_SYNC_TIMEOUT_MS),
    peerPollMs: envNumber(env.MERIDIAN_PEER_POLL_MS),
    startupGraceMs: envNumber(env.MERIDIAN_STARTUP_GRACE_MS),
    tls: { certFile: env.MERIDIAN_TLS_CERT_FILE, keyFile: env.MERIDIAN_TLS_KEY_FILE },
    trustedProxies: envList(env.MERIDIAN_TRUSTED_PROXIES),
    auth: {
      enabled: envBoolean(env.MERIDIAN_AUTH),
      tokenKeyFile: env.MERIDIAN_TOKEN_KEY_FILE,
      retiredKeyFiles: envList(env.MERIDIAN_TOKEN_RETIRED_KEY_FILES),
      service: env.MERIDIAN_AUTH_SERVICE,
      realm: env.MERIDIAN_AUTH_REALM,
      tokenTtlSeconds: envNumber(env.MERIDIAN_TOKEN_TTL_SECONDS),
      adminPasswordFile: env.MERIDIAN_ADMIN_PASSWORD_FILE,
      loginFailures: envNumber(env.MERIDIAN_LOGIN_FAILURES),
      allowUnauthenticated: envBoolean(env.MERIDIAN_NO_AUTH),
      adminWriteAddresses: envList(env.MERIDIAN_ADMIN_WRITE_ADDRESSES),
    },
    http: httpLimitsFromEnv(env),
    uploads: {
      idleMinutes: envNumber(env.MERIDIAN_UPLOAD_IDLE_MINUTES),
      maxSessions: envNumber(env.MERIDIAN_UPLOAD_MAX_SESSIONS),
      maxSessionsPerClient: envNumber(env.MERIDIAN_UPLOAD_MAX_SESSIONS_PER_CLIENT),
      maxSessionsPerRepository: envNumber(env.MERIDIAN_UPLOAD_MAX_SESSIONS_PER_REPOSITORY),
    },
  };
  const merged = mergeConfig(mergeConfig(fromFile, fromEnv), sources.overrides ?? {});
  const region = merged.region ?? "local";
  const dataDir = resolve(merged.dataDir ?? join(".meridian", region));
  const config: NodeConfig = {
    region,
    dataDir,
    listen: { host: merged.listen?.host ?? "127.0.0.1", port: merged.listen?.port ?? 5000 },
    nats: {
      servers: (merged.nats?.servers as string[] | undefined) ?? ["nats://127.0.0.1:4222"],
      ...checkNatsClient(merged.nats, problems),
    },
    storage: {
      root: resolve(merged.storage?.root ?? join(dataDir, "store")),
      fsync: merged.storage?.fsync ?? true,
      uploadMaxAgeHours: merged.storage?.uploadMaxAgeHours ?? 168,
    },
    view: { dir: resolve(merged.view?.dir ?? join(dataDir, "view")) },
    maxManifestBytes: merged.maxManifestBytes ?? 4 * 1024 * 1024,
    undeleteWindowHours: merged.undeleteWindowHours ?? 168,
    logLevel: merged.logLevel ?? "info",
    policies: [],
    fetchOnMiss: merged.fetchOnMiss ?? (merged.meshFile === undefined ? "off" : "proxy"),
    syncTimeoutMs: merged.syncTimeoutMs ?? 30_000,
    peerPollMs: merged.peerPollMs ?? 250,
    startupGraceMs: merged.startupGraceMs ?? STARTUP_GRACE_MS,
    trustedProxies: (merged.trustedProxies as string[] | undefined) ?? [],
    auth: {
      enabled: merged.auth?.enabled ?? false,
      tokenKeyFile: resolve(merged.auth?.tokenKeyFile ?? join(dataDir, "token-key.pem")),
      retiredKeyFiles: (merged.auth?.retiredKeyFiles ?? []).map((f) => resolve(f as string)),
      service: merged.auth?.service ?? "meridian",
      realm: merged.auth?.realm,
      tokenTtlSeconds: merged.auth?.tokenTtlSeconds ?? 300,
      adminPasswordFile:
        merged.auth?.adminPasswordFile === undefined ? undefined : resolve(merged.auth.adminPasswordFile),
      loginFailures: merged.auth?.loginFailures ?? 5,
      allowUnauthenticated: merged.auth?.allowUnauthenticated ?? false,
      adminWriteAddresses: (merged.auth?.adminWriteAddresses as string[] | undefined) ?? [...LOOPBACK],
    },
    http: {
      idleTimeoutMs: merged.http?.idleTimeoutMs ?? 60_000,
      headersTimeoutMs: merged.http?.headersTimeoutMs ?? 20_000,
      keepAliveTimeoutMs: merged.http?.keepAliveTimeoutMs ?? 75_000,
      maxConnectionsPerClient: merged.http?.maxConnectionsPerClient ?? 256,
      exempt: (merged.http?.exempt as string[] | undefined) ?? ["127.0.0.1", "::1"],
    },
    uploads: {
      idleMinutes: merged.uploads?.idleMinutes ?? 60,
      maxSessions: merged.uploads?.maxSessions ?? 4096,
      maxSessionsPerClient: merged.uploads?.maxSessionsPerClient ?? 256,
      maxSessionsPerRepository: merged.uploads?.maxSessionsPerRepository ?? 256,
    },
  };
  if (merged.meshFile !== undefined) {
    config.meshFile = resolve(merged.meshFile);
    try {
      config.mesh = parseMesh(JSON.parse(readFileSync(config.meshFile, "utf8")));
      if (!config.mesh.regions.some((r) => r.name === config.region))
        problems.push(`meshFile ${merged.meshFile}: region "${config.region}" is not in it`);
    } catch (err) {
      const detail = err instanceof MeshConfigError ? err.problems : [(err as Error).message];
      for (const problem of detail) problems.push(`meshFile ${merged.meshFile}: ${problem}`);
    }
  }
  if (!FETCH_ON_MISS.includes(config.fetchOnMiss))
    problems.push(`fetchOnMiss: one of ${FETCH_ON_MISS.join(", ")}`);
  else if (config.fetchOnMiss !== "off" && merged.meshFile === undefined)
    problems.push(`fetchOnMiss ${config.fetchOnMiss}: needs meshFile (the other regions)`);
  if (
    !(Number.isInteger(config.syncTimeoutMs) && config.syncTimeoutMs > 0 && config.syncTimeoutMs <= 300_000)
  )
    problems.push("syncTimeoutMs: an integer from 1 to 300000");
  if (!(Number.isInteger(config.peerPollMs) && config.peerPollMs >= 10))
    problems.push("peerPollMs: an integer of at least 10");
  if (!(Number.isSafeInteger(config.startupGraceMs) && config.startupGraceMs >= 0))
    problems.push("startupGraceMs: an integer of at least 0");
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
    if (merged.meshFile !== undefined && !existsSync(config.auth.tokenKeyFile))
      problems.push(
        `auth.tokenKeyFile ${config.auth.tokenKeyFile}: missing; every region of a mesh needs the same key (\`meridian up --auth\` makes one)`,
      );
    for (const f of config.auth.retiredKeyFiles)
      if (!existsSync(f)) problems.push(`auth.retiredKeyFiles: ${f} does not exist`);
    if (config.auth.adminPasswordFile !== undefined && !existsSync(config.auth.adminPasswordFile))
      problems.push(`auth.adminPasswordFile ${config.auth.adminPasswordFile}: does not exist`);
    const ttl = config.auth.tokenTtlSeconds;
    if (!(Number.isInteger(ttl) && ttl >= 10 && ttl <= 86_400))
      problems.push("auth.tokenTtlSeconds: an integer from 10 to 86400");
    if (!(Number.isInteger(config.auth.loginFailures) && config.auth.loginFailures >= 1))
      problems.push("auth.loginFailures: a positive integer");
    if (!/^[\x21-\x7e]{1,128}$/.test(config.auth.service) || config.auth.service.includes('"'))
      problems.push("auth.service: printable ASCII without spaces or quotes");
    if (config.auth.realm !== undefined && !/^https?:\/\/[^\s"]+$/.test(config.auth.realm))
      problems.push("auth.realm: an http(s) URL");
  }
  const { certFile, keyFile } = merged.tls ?? {};
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push("tls: certFile and keyFile go together (both or neither)");
  } else if (certFile !== undefined && keyFile !== undefined) {
    config.tls = { certFile: resolve(certFile), keyFile: resolve(keyFile) };
    for (const [name, file] of Object.entries(config.tls))
      if (!existsSync(file)) problems.push(`tls.${name} ${file}: does not exist`);
  }
  if (merged.policiesFile !== undefined) {
    config.policiesFile = resolve(merged.policiesFile);
    try {
      config.policies = parsePolicies(readFileSync(config.policiesFile, "utf8"));
    } catch (err) {
      const detail = (err as { detail?: { errors?: string[] } }).detail?.errors;
      for (const problem of detail ?? [(err as Error).message])
        problems.push(`policiesFile ${merged.policiesFile}: ${problem}`);
    }
  }

  if (!/^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/.test(config.region)) {
    problems.push(`region "${config.region}": lower-case letters, digits and dashes, at most 32`);
  }
  if (!Number.isInteger(config.listen.port) || config.listen.port < 0 || config.listen.port > 65535) {
    problems.push(`listen.port ${config.listen.port}: must be 0-65535`);
  }
  if (
    config.nats.servers.length === 0 ||
    config.nats.servers.some((s) => !/^(nats|tls):\/\/[^\s]+$/.test(s))
  ) {
    problems.push(`nats.servers: each must be a nats:// or tls:// URL`);
  }
  if (!Number.isInteger(config.maxManifestBytes) || config.maxManifestBytes < 4 * 1024 * 1024) {
    problems.push("maxManifestBytes: an integer of at least 4194304 (the OCI spec's minimum)");
  }
  if (!(config.storage.uploadMaxAgeHours > 0)) problems.push("storage.uploadMaxAgeHours: a positive number");
  if (!(config.undeleteWindowHours > 0)) problems.push("undeleteWindowHours: a positive number");
  problems.push(...httpLimitsProblems(config.http, "http"));
  if (config.http.idleTimeoutMs <= config.syncTimeoutMs)
    problems.push(
      "http.idleTimeoutMs: must exceed syncTimeoutMs (a sync(k) push sends nothing while it waits)",
    );
  if (!(config.uploads.idleMinutes > 0)) problems.push("uploads.idleMinutes: a positive number");
  for (const name of ["maxSessions", "maxSessionsPerClient", "maxSessionsPerRepository"] as const)
    if (!(Number.isInteger(config.uploads[name]) && config.uploads[name] >= 1))
      problems.push(`uploads.${name}: a positive integer`);
  if (!LOG_LEVELS.includes(config.logLevel)) problems.push(`logLevel: one of ${LOG_LEVELS.join(", ")}`);
  for (const [k, v] of [
    ["MERIDIAN_LISTEN_PORT", env.MERIDIAN_LISTEN_PORT],
    ["MERIDIAN_MAX_MANIFEST_BYTES", env.MERIDIAN_MAX_MANIFEST_BYTES],
    ["MERIDIAN_UPLOAD_MAX_AGE_HOURS", env.MERIDIAN_UPLOAD_MAX_AGE_HOURS],
    ["MERIDIAN_UNDELETE_WINDOW_HOURS", env.MERIDIAN_UNDELETE_WINDOW_HOURS],
    ["MERIDIAN_SYNC_TIMEOUT_MS", env.MERIDIAN_SYNC_TIMEOUT_MS],
    ["MERIDIAN_PEER_POLL_MS", env.MERIDIAN_PEER_POLL_MS],
    ["MERIDIAN_STARTUP_GRACE_MS", env.MERIDIAN_STARTUP_GRACE_MS],
    ["MERIDIAN_TOKEN_TTL_SECONDS", env.MERIDIAN_TOKEN_TTL_SECONDS],
    ["MERIDIAN_LOGIN_FAILURES", env.MERIDIAN_LOGIN_FAILURES],
    ["MERIDIAN_HTTP_IDLE_TIMEOUT_MS", env.MERIDIAN_HTTP_IDLE_TIMEOUT_MS],
    ["MERIDIAN_HTTP_HEADERS_TIMEOUT_MS", env.MERIDIAN_HTTP_HEADERS_TIMEOUT_MS],
    ["MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS", env.MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS],
    ["MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT", env.MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT],
    ["MERIDIAN_UPLOAD_IDLE_MINUTES", env.MERIDIAN_UPLOAD_IDLE_MINUTES],
    ["MERIDIAN_UPLOAD_MAX_SESSIONS", env.MERIDIAN_UPLOAD_MAX_SESSIONS],
    ["MERIDIAN_UPLOAD_MAX_SESSIONS_PER_CLIENT", env.MERIDIAN_UPLOAD_MAX_SESSIONS_PER_CLIENT],
    ["MERIDIAN_UPLOAD_MAX_SESSIONS_PER_REPOSITORY", env.MERIDIAN_UPLOAD_MAX_SESSIONS_PER_REPOSITORY],
  ] as const) {
    if (v !== undefined && envNumber(v) === undefined) problems.push(`${k}: not a number`);
  }
  if (env.MERIDIAN_AUTH !== undefined && envBoolean(env.MERIDIAN_AUTH) === undefined) {
    problems.push("MERIDIAN_AUTH: true or false");
  }
  if (env.MERIDIAN_STORAGE_FSYNC !== undefined && envBoolean(env.MERIDIAN_STORAGE_FSYNC) === undefined) {
    problems.push("MERIDIAN_STORAGE_FSYNC: true or false");
  }
  // A typo here must not read as "refuse" or, worse, go unnoticed: say so.
  if (env.MERIDIAN_NO_AUTH !== undefined && envBoolean(env.MERIDIAN_NO_AUTH) === undefined) {
    problems.push("MERIDIAN_NO_AUTH: true or false");
  }
  for (const a of config.auth.adminWriteAddresses)
    if (a !== "*" && isIP(a) === 0)
      problems.push(`auth.adminWriteAddresses: ${JSON.stringify(a)} is not an IP address (or "*")`);
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}
