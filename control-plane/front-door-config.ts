/**
 * The front door's configuration: one typed object with defaults, read from
 * an optional JSON file, then `MERIDIAN_*` environment variables, then
 * explicit overrides; validated with every problem listed at once; frozen and
 * passed down. Nothing else in the front door reads the environment.
 *
 * | setting               | env                                   | default                                  |
 * |-----------------------|---------------------------------------|------------------------------------------|
 * | meshFile              | MERIDIAN_MESH                         | (required) path of mesh.json             |
 * | listen.host           | MERIDIAN_FRONT_DOOR_HOST              | 127.0.0.1                                |
 * | listen.port           | MERIDIAN_FRONT_DOOR_PORT              | 0 (any free port; printed at start)      |
 * | clientRegions         | MERIDIAN_CLIENT_REGIONS               | {} (CIDR → region)                       |
 * | defaultRegion         | MERIDIAN_FRONT_DOOR_DEFAULT_REGION    | the mesh's first region                  |
 * | regionHeader          | MERIDIAN_FRONT_DOOR_REGION_HEADER     | Meridian-Client-Region                   |
 * | heartbeat.intervalMs  | MERIDIAN_HEARTBEAT_INTERVAL_MS        | 1000 (probe period and probe deadline)   |
 * | rywWaitMs             | MERIDIAN_RYW_WAIT_MS                  | 2000                                     |
 * | rulesRefreshMs        | MERIDIAN_RULES_REFRESH_MS             | 2000 (home regions re-read)              |
 * | responseTimeouts.readMs | MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS | 5000 (GET/HEAD: first response byte)     |
 * | responseTimeouts.writeMs | MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS | 45000 (other methods: first byte after the body) |
 * | tls.identity          | MERIDIAN_FRONT_DOOR_IDENTITY          | front-door (`<mesh.tls.dir>/NAME.crt/.key`) |
 * | tls.certFile          | MERIDIAN_TLS_CERT_FILE                | none (clients get plain HTTP)            |
 * | tls.keyFile           | MERIDIAN_TLS_KEY_FILE                 | none (clients get plain HTTP)            |
 * | auth.tokenKeyFile     | MERIDIAN_TOKEN_KEY_FILE               | none: the regions run without auth       |
 * | auth.service          | MERIDIAN_AUTH_SERVICE                 | meridian                                 |
 * | logLevel              | MERIDIAN_LOG_LEVEL                    | info                                     |
 * | http.idleTimeoutMs    | MERIDIAN_HTTP_IDLE_TIMEOUT_MS         | 60000 (a connection moving no byte this long is cut) |
 * | http.headersTimeoutMs | MERIDIAN_HTTP_HEADERS_TIMEOUT_MS      | 20000 (request line and headers)         |
 * | http.keepAliveTimeoutMs | MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS | 65000 (idle keep-alive connection)       |
 * | http.maxConnectionsPerClient | MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT | 256 (per source address)    |
 * | http.exempt           | MERIDIAN_HTTP_CONNECTION_LIMIT_EXEMPT | none (addresses/CIDRs not capped)        |
 *
 * `http` bounds slow and greedy clients (protocol/http-limits.ts): no total
 * request deadline (a 10 GiB upload that keeps moving passes), but a client
 * connection on which nothing moves for `idleTimeoutMs` is cut, and with it
 * the request to the region it was proxied to. It must exceed the regions'
 * `syncTimeoutMs` (a `sync(k)` push is silent while it waits). A load
 * balancer in front of the front door (all clients from its addresses)
 * belongs in `http.exempt`.
 *
 * `responseTimeouts` bound every proxied request to a region that accepts
 * connections but does not answer (a frozen process, a blackholed link):
 * the first byte of the response (headers and the first body byte, or the
 * end of a bodiless answer) must arrive within `readMs` of a GET/HEAD being
 * sent, within `writeMs` of the whole body of any other request (manifest
 * PUT, upload POST/PATCH/PUT, admin writes) being sent. `writeMs` must
 * exceed the regions' `syncTimeoutMs` (30 s by default: a `sync(k)` push is
 * silent while it waits). Past the bound a read is retried once on the next
 * healthy region; a write is answered 504 (front-door.ts).
 *
 * MERIDIAN_CLIENT_REGIONS is a JSON object (`{"10.1.0.0/16":"a"}`) or
 * `cidr=region,cidr=region`. The number of missed probes that takes a region
 * down is not a setting: it is 2, so that a region stops getting traffic
 * within 3 heartbeat intervals of going dark (front-door.ts).
 *
 * `tls.identity` is what the front door presents to the regions' peers
 * (gRPC, mutual TLS). `tls.certFile` + `tls.keyFile` (both or neither, PEM)
 * make its own listener HTTPS; SIGHUP re-reads them. Regions whose mesh.json
 * `registry` URL is https:// are trusted under the mesh CA
 * (./registry-http.ts), whatever the listener serves.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  ConfigError,
  type DeepPartial,
  deepFreeze,
  envNumber,
  httpLimitsFromEnv,
  LOG_LEVELS,
  mergeConfig,
} from "../protocol/config-sources.js";
import { type HttpLimits, httpLimitsProblems } from "../protocol/http-limits.js";
import { type Mesh, MeshConfigError, parseMesh } from "../protocol/mesh.js";
import { parseCidr } from "./front-door-routing.js";

export interface FrontDoorConfig {
  meshFile: string;
  /** The parsed mesh (read once at load). */
  mesh: Mesh;
  listen: { host: string; port: number };
  /** CIDR → region: which region a client's address belongs to (longest prefix wins). */
  clientRegions: Record<string, string>;
  /** The region of a client no CIDR covers (and that sends no override header). */
  defaultRegion: string;
  /** Request header naming the client's region, overriding its address. */
  regionHeader: string;
  heartbeat: { intervalMs: number };
  /** How long a read-your-writes read waits for a region to apply its token before a 503. */
  rywWaitMs: number;
  /** How often the repositories' home regions are re-read from the regions. */
  rulesRefreshMs: number;
  /** Time to a region's first response byte: GET/HEAD, and everything else once its body is sent. */
  responseTimeouts: { readMs: number; writeMs: number };
  /**
   * `identity`: the certificate the front door presents to the regions' peers.
   * `certFile`/`keyFile`: its listener's certificate (with its chain) and key; HTTP without.
   */
  tls: { identity: string; certFile?: string; keyFile?: string };
  /** With the nodes' token key, the front door signs in to their admin API to read home rules (./service-token.ts). */
  auth: { tokenKeyFile?: string; service: string };
  /** Slow and greedy clients (protocol/http-limits.ts). */
  http: HttpLimits;
  logLevel: string;
}

export type FrontDoorConfigInput = Omit<DeepPartial<FrontDoorConfig>, "mesh" | "clientRegions"> & {
  clientRegions?: Record<string, string>;
};

export class FrontDoorConfigError extends ConfigError {}

/** MERIDIAN_CLIENT_REGIONS: a JSON object, or `cidr=region,…`; a string describing the problem otherwise. */
export function parseClientRegionsEnv(text: string): Record<string, string> | string {
  const trimmed = text.trim();
  if (trimmed === "") return {};
  if (trimmed.startsWith("{")) {
    try {
      const value = JSON.parse(trimmed);
      if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
      return value as Record<string, string>;
    } catch (err) {
      return (err as Error).message;
    }
  }
  const out: Record<string, string> = {};
  for (const pair of trimmed.split(",")) {
    const eq = pair.indexOf("=");
    if (eq < 0) return `"${pair.trim()}": want cidr=region`;
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

export function loadFrontDoorConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: FrontDoorConfigInput;
}): Readonly<FrontDoorConfig> {
  const problems: string[] = [];
  let fromFile: FrontDoorConfigInput = {};
  if (sources.file !== undefined) {
    try {
      fromFile = JSON.parse(readFileSync(sources.file, "utf8"));
    } catch (err) {
      problems.push(`config file ${sources.file}: ${(err as Error).message}`);
    }
  }
  const env = sources.env ?? {};
  let envRegions: Record<string, string> | undefined;
  if (env.MERIDIAN_CLIENT_REGIONS !== undefined) {
    const parsed = parseClientRegionsEnv(env.MERIDIAN_CLIENT_REGIONS);
    if (typeof parsed === "string") problems.push(`MERIDIAN_CLIENT_REGIONS: ${parsed}`);
    else envRegions = parsed;
  }
  const fromEnv: FrontDoorConfigInput = {
    meshFile: env.MERIDIAN_MESH,
    listen: { host: env.MERIDIAN_FRONT_DOOR_HOST, port: envNumber(env.MERIDIAN_FRONT_DOOR_PORT) },
    clientRegions: envRegions,
    defaultRegion: env.MERIDIAN_FRONT_DOOR_DEFAULT_REGION,
    regionHeader: env.MERIDIAN_FRONT_DOOR_REGION_HEADER,
    heartbeat: { intervalMs: envNumber(env.MERIDIAN_HEARTBEAT_INTERVAL_MS) },
    rywWaitMs: envNumber(env.MERIDIAN_RYW_WAIT_MS),
    rulesRefreshMs: envNumber(env.MERIDIAN_RULES_REFRESH_MS),
    responseTimeouts: {
      readMs: envNumber(env.MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS),
      writeMs: envNumber(env.MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS),
    },
    tls: {
      identity: env.MERIDIAN_FRONT_DOOR_IDENTITY,
      certFile: env.MERIDIAN_TLS_CERT_FILE,
      keyFile: env.MERIDIAN_TLS_KEY_FILE,
    },
    auth: { tokenKeyFile: env.MERIDIAN_TOKEN_KEY_FILE, service: env.MERIDIAN_AUTH_SERVICE },
    http: httpLimitsFromEnv(env),
    logLevel: env.MERIDIAN_LOG_LEVEL,
  };
  for (const [k, v] of [
    ["MERIDIAN_FRONT_DOOR_PORT", env.MERIDIAN_FRONT_DOOR_PORT],
    ["MERIDIAN_HEARTBEAT_INTERVAL_MS", env.MERIDIAN_HEARTBEAT_INTERVAL_MS],
    ["MERIDIAN_RYW_WAIT_MS", env.MERIDIAN_RYW_WAIT_MS],
    ["MERIDIAN_RULES_REFRESH_MS", env.MERIDIAN_RULES_REFRESH_MS],
    ["MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS", env.MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS],
    ["MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS", env.MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS],
    ["MERIDIAN_HTTP_IDLE_TIMEOUT_MS", env.MERIDIAN_HTTP_IDLE_TIMEOUT_MS],
    ["MERIDIAN_HTTP_HEADERS_TIMEOUT_MS", env.MERIDIAN_HTTP_HEADERS_TIMEOUT_MS],
    ["MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS", env.MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS],
    ["MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT", env.MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT],
  ] as const) {
    if (v !== undefined && envNumber(v) === undefined) problems.push(`${k}: not a number`);
  }
  // Client regions replace each other whole (a table from a later source is the table).
  const merged = mergeConfig(
    mergeConfig({ ...fromFile, clientRegions: undefined }, { ...fromEnv, clientRegions: undefined }),
    { ...(sources.overrides ?? {}), clientRegions: undefined },
  );
  const clientRegions =
    sources.overrides?.clientRegions ?? fromEnv.clientRegions ?? fromFile.clientRegions ?? {};

  let mesh: Mesh | undefined;
  const meshFile = merged.meshFile === undefined ? undefined : resolve(merged.meshFile);
  if (meshFile === undefined) {
    problems.push("meshFile: required (MERIDIAN_MESH, the path of mesh.json)");
  } else {
    try {
      mesh = parseMesh(JSON.parse(readFileSync(meshFile, "utf8")));
    } catch (err) {
      if (err instanceof MeshConfigError) problems.push(...err.problems.map((p) => `mesh ${meshFile}: ${p}`));
      else problems.push(`mesh ${meshFile}: ${(err as Error).message}`);
    }
  }
  const regionNames = mesh?.regions.map((r) => r.name) ?? [];

  const config: FrontDoorConfig = {
    meshFile: meshFile ?? "",
    mesh: mesh ?? { regions: [] },
    listen: { host: merged.listen?.host ?? "127.0.0.1", port: merged.listen?.port ?? 0 },
    clientRegions: { ...clientRegions },
    defaultRegion: merged.defaultRegion ?? regionNames[0] ?? "",
    regionHeader: merged.regionHeader ?? "Meridian-Client-Region",
    heartbeat: { intervalMs: merged.heartbeat?.intervalMs ?? 1_000 },
    rywWaitMs: merged.rywWaitMs ?? 2_000,
    rulesRefreshMs: merged.rulesRefreshMs ?? 2_000,
    responseTimeouts: {
      readMs: merged.responseTimeouts?.readMs ?? 5_000,
      writeMs: merged.responseTimeouts?.writeMs ?? 45_000,
    },
    tls: { identity: merged.tls?.identity ?? "front-door" },
    auth: {
      tokenKeyFile: merged.auth?.tokenKeyFile === undefined ? undefined : resolve(merged.auth.tokenKeyFile),
      service: merged.auth?.service ?? "meridian",
    },
    http: {
      idleTimeoutMs: merged.http?.idleTimeoutMs ?? 60_000,
      headersTimeoutMs: merged.http?.headersTimeoutMs ?? 20_000,
      keepAliveTimeoutMs: merged.http?.keepAliveTimeoutMs ?? 65_000,
      maxConnectionsPerClient: merged.http?.maxConnectionsPerClient ?? 256,
      exempt: (merged.http?.exempt as string[] | undefined) ?? [],
    },
    logLevel: merged.logLevel ?? "info",
  };
  problems.push(...httpLimitsProblems(config.http, "http"));
  if (config.auth.tokenKeyFile !== undefined && !existsSync(config.auth.tokenKeyFile))
    problems.push(`auth.tokenKeyFile ${config.auth.tokenKeyFile}: does not exist`);

  if (typeof clientRegions !== "object" || clientRegions === null || Array.isArray(clientRegions)) {
    problems.push("clientRegions: an object of CIDR → region");
    config.clientRegions = {};
  }
  for (const [cidr, region] of Object.entries(config.clientRegions)) {
    if (parseCidr(cidr) === undefined)
      problems.push(`clientRegions "${cidr}": not a CIDR (a.b.c.d/n or x::/n)`);
    if (mesh !== undefined && !regionNames.includes(region as string)) {
      problems.push(`clientRegions "${cidr}": region "${region}" is not in the mesh`);
    }
  }
  if (mesh !== undefined && !regionNames.includes(config.defaultRegion)) {
    problems.push(`defaultRegion "${config.defaultRegion}": not in the mesh`);
  }
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(config.regionHeader)) {
    problems.push(`regionHeader "${config.regionHeader}": not an HTTP header name`);
  }
  if (!Number.isInteger(config.listen.port) || config.listen.port < 0 || config.listen.port > 65535) {
    problems.push(`listen.port ${config.listen.port}: must be 0-65535`);
  }
  if (!Number.isInteger(config.heartbeat.intervalMs) || config.heartbeat.intervalMs < 10) {
    problems.push("heartbeat.intervalMs: an integer of at least 10");
  }
  if (!Number.isInteger(config.rywWaitMs) || config.rywWaitMs < 0) {
    problems.push("rywWaitMs: a non-negative integer");
  }
  if (!Number.isInteger(config.rulesRefreshMs) || config.rulesRefreshMs < 10) {
    problems.push("rulesRefreshMs: an integer of at least 10");
  }
  for (const name of ["readMs", "writeMs"] as const) {
    const v = config.responseTimeouts[name];
    if (!Number.isInteger(v) || v < 100)
      problems.push(`responseTimeouts.${name}: an integer of at least 100`);
  }
  if (!/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/.test(config.tls.identity)) {
    problems.push(`tls.identity "${config.tls.identity}": lower-case letters, digits and dashes`);
  } else if (mesh?.tls !== undefined) {
    for (const ext of ["crt", "key"]) {
      const file = join(mesh.tls.dir, `${config.tls.identity}.${ext}`);
      if (!existsSync(file)) problems.push(`tls.identity: ${file} does not exist`);
    }
  }
  const { certFile, keyFile } = merged.tls ?? {};
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push("tls: certFile and keyFile go together (both or neither)");
  } else if (certFile !== undefined && keyFile !== undefined) {
    config.tls.certFile = resolve(certFile);
    config.tls.keyFile = resolve(keyFile);
    for (const name of ["certFile", "keyFile"] as const)
      if (!existsSync(config.tls[name]!)) problems.push(`tls.${name} ${config.tls[name]}: does not exist`);
  }
  if (!LOG_LEVELS.includes(config.logLevel)) problems.push(`logLevel: one of ${LOG_LEVELS.join(", ")}`);
  if (problems.length > 0) throw new FrontDoorConfigError(problems);
  return deepFreeze(config);
}
