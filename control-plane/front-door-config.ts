/**
 * The front door's configuration: one typed object with defaults, read from
 * an optional JSON file, then `MERIDIAN_*` environment variables, then
 * explicit overrides; validated with every problem listed at once; frozen and
 * passed down. Nothing else in the front door reads the environment.
 *
 * The settings, their `MERIDIAN_*` variables, defaults and ranges are the
 * schema below (`FRONT_DOOR_SETTINGS`, protocol/config-schema.ts); the
 * README's configuration reference is generated from it.
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
  CommonSettings,
  ConfigError,
  configSchema,
  type DeepPartial,
  deepFreeze,
  parseTable,
  resolveSettings,
  Setting,
  type Static,
} from "../protocol/config-schema.js";
import { type HttpLimits, httpLimitSettings, httpLimitsProblems } from "../protocol/http-limits.js";
import { type Mesh, MeshConfigError, parseMesh } from "../protocol/mesh.js";
import { parseCidr } from "./front-door-routing.js";

const { string, integer, table, optional, section } = Setting;

/** Every setting of the front door, once. */
export const FRONT_DOOR_SETTINGS = configSchema({
  meshFile: CommonSettings.requiredMeshFile(),
  listen: section({
    host: string({
      env: "MERIDIAN_FRONT_DOOR_HOST",
      default: "127.0.0.1",
      doc: "address the front door listens on",
    }),
    port: integer({
      env: "MERIDIAN_FRONT_DOOR_PORT",
      default: 0,
      minimum: 0,
      maximum: 65535,
      doc: "its port (0: any free port, printed at start)",
    }),
  }),
  clientRegions: table({
    env: "MERIDIAN_CLIENT_REGIONS",
    default: {},
    doc: "CIDR → region: which region a client's address belongs to (longest prefix wins); from the environment a JSON object or `cidr=region,…`",
  }),
  defaultRegion: optional(
    string({
      env: "MERIDIAN_FRONT_DOOR_DEFAULT_REGION",
      defaultText: "the mesh's first region",
      doc: "the region of a client no CIDR covers",
    }),
  ),
  regionHeader: string({
    env: "MERIDIAN_FRONT_DOOR_REGION_HEADER",
    default: "Meridian-Client-Region",
    pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
    doc: "request header naming the client's region, overriding its address",
  }),
  heartbeat: section({
    intervalMs: integer({
      env: "MERIDIAN_HEARTBEAT_INTERVAL_MS",
      default: 1_000,
      minimum: 10,
      doc: "how often every region is probed (and each probe's deadline); two misses take a region down",
    }),
  }),
  rywWaitMs: integer({
    env: "MERIDIAN_RYW_WAIT_MS",
    default: 2_000,
    minimum: 0,
    doc: "how long a read carrying `Meridian-Seq` waits for a region to apply it before a 503",
  }),
  rulesRefreshMs: integer({
    env: "MERIDIAN_RULES_REFRESH_MS",
    default: 2_000,
    minimum: 10,
    doc: "how often the repositories' home regions are re-read",
  }),
  responseTimeouts: section({
    readMs: integer({
      env: "MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS",
      default: 5_000,
      minimum: 100,
      doc: "a GET/HEAD's first response byte must come within this, else it is retried once on the next healthy region and the region is marked down",
    }),
    writeMs: integer({
      env: "MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS",
      default: 45_000,
      minimum: 100,
      doc: "any other request's first response byte must come within this of its body being sent, else 503 (never replayed); must exceed the nodes' `syncTimeoutMs`",
    }),
  }),
  tls: section({
    identity: string({
      env: "MERIDIAN_FRONT_DOOR_IDENTITY",
      default: "front-door",
      pattern: "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
      doc: "the certificate (`<mesh.tls.dir>/NAME.crt/.key`) presented to the regions' peers",
    }),
    certFile: optional(
      string({
        env: "MERIDIAN_TLS_CERT_FILE",
        doc: "HTTPS for clients: the certificate with its chain (PEM)",
      }),
    ),
    keyFile: optional(string({ env: "MERIDIAN_TLS_KEY_FILE", doc: "HTTPS for clients: the key (PEM)" })),
  }),
  auth: section({
    tokenKeyFile: optional(
      string({
        env: "MERIDIAN_TOKEN_KEY_FILE",
        defaultText: "none: the regions run without auth",
        doc: "the nodes' token key: the front door signs in to their admin API to read home rules",
      }),
    ),
    service: CommonSettings.authService(),
  }),
  http: section(httpLimitSettings({ keepAliveTimeoutMs: 65_000, exempt: [] })),
  logLevel: CommonSettings.logLevel(),
});

type Settings = Static<typeof FRONT_DOOR_SETTINGS>;

export interface FrontDoorConfig extends Omit<Settings, "meshFile" | "defaultRegion" | "http"> {
  meshFile: string;
  /** The parsed mesh (read once at load). */
  mesh: Mesh;
  /** The region of a client no CIDR covers (and that sends no override header). */
  defaultRegion: string;
  /** Slow and greedy clients (protocol/http-limits.ts). */
  http: HttpLimits;
}

export type FrontDoorConfigInput = Omit<DeepPartial<Settings>, "clientRegions"> & {
  clientRegions?: Record<string, string>;
};

export class FrontDoorConfigError extends ConfigError {}

/** MERIDIAN_CLIENT_REGIONS: a JSON object, or `cidr=region,…`; a string describing the problem otherwise. */
export function parseClientRegionsEnv(text: string): Record<string, string> | string {
  const parsed = parseTable(text);
  return parsed instanceof Error ? parsed.message : parsed;
}

export function loadFrontDoorConfig(sources: {
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: FrontDoorConfigInput;
}): Readonly<FrontDoorConfig> {
  const problems: string[] = [];
  const settings = resolveSettings(FRONT_DOOR_SETTINGS, sources, problems, readFileSync);

  let mesh: Mesh | undefined;
  const meshFile = settings.meshFile === undefined ? undefined : resolve(settings.meshFile);
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
  const { certFile, keyFile, identity } = settings.tls;
  const config: FrontDoorConfig = {
    ...settings,
    meshFile: meshFile ?? "",
    mesh: mesh ?? { regions: [] },
    clientRegions: { ...settings.clientRegions },
    defaultRegion: settings.defaultRegion ?? regionNames[0] ?? "",
    tls: { identity },
    auth: {
      tokenKeyFile:
        settings.auth.tokenKeyFile === undefined ? undefined : resolve(settings.auth.tokenKeyFile),
      service: settings.auth.service,
    },
  };
  problems.push(...httpLimitsProblems(config.http, "http"));
  if (config.auth.tokenKeyFile !== undefined && !existsSync(config.auth.tokenKeyFile))
    problems.push(`auth.tokenKeyFile ${config.auth.tokenKeyFile}: does not exist`);
  for (const [cidr, region] of Object.entries(config.clientRegions)) {
    if (parseCidr(cidr) === undefined)
      problems.push(`clientRegions "${cidr}": not a CIDR (a.b.c.d/n or x::/n)`);
    if (mesh !== undefined && !regionNames.includes(region)) {
      problems.push(`clientRegions "${cidr}": region "${region}" is not in the mesh`);
    }
  }
  if (mesh !== undefined && !regionNames.includes(config.defaultRegion)) {
    problems.push(`defaultRegion "${config.defaultRegion}": not in the mesh`);
  }
  if (mesh?.tls !== undefined) {
    for (const ext of ["crt", "key"]) {
      const file = join(mesh.tls.dir, `${config.tls.identity}.${ext}`);
      if (!existsSync(file)) problems.push(`tls.identity: ${file} does not exist`);
    }
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push("tls: certFile and keyFile go together (both or neither)");
  } else if (certFile !== undefined && keyFile !== undefined) {
    config.tls.certFile = resolve(certFile);
    config.tls.keyFile = resolve(keyFile);
    for (const name of ["certFile", "keyFile"] as const)
      if (!existsSync(config.tls[name]!)) problems.push(`tls.${name} ${config.tls[name]}: does not exist`);
  }
  if (problems.length > 0) throw new FrontDoorConfigError(problems);
  return deepFreeze(config);
}
