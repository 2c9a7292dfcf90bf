/**
 * How every Meridian process signs in to NATS: the credential and TLS
 * settings of one client (`NatsClientConfig`), read like the rest of a
 * process's configuration (`natsClientSettings` + `checkNatsClient`), and
 * turned into nats.js connect options (`natsConnectOptions`).
 *
 * The `nats.*` settings (credentials, inbox prefix, TLS, liveness) are the
 * schema fragment `natsClientSettings`, which every process's schema
 * includes (protocol/config-schema.ts; the README's reference lists them).
 *
 * Liveness (issue 11, a frozen region): every Meridian NATS connection
 * (node, peer, worker, audit; the worker's to other regions too) pings its
 * server, so one that stops answering without closing the connection
 * (SIGSTOP, a frozen VM, a blackholed link) is noticed within
 * pingIntervalMs × (maxPingOut + 1) — 6 s by default, where nats.js's own
 * default is 2 min × 3 — and dropped; each re-dial is given up after
 * connectTimeoutMs (nats.js: 20 s), so a server that answers again is
 * reached within about connectTimeoutMs + the caller's reconnect wait.
 *
 * At most one of seedFile, credsFile, user+passwordFile; none connects
 * anonymously (a server `meridian up` starts refuses that). Secrets are only
 * ever read from files, when connecting (so a rotated file is picked up on
 * the next connection), and never logged: logs carry the file names at most.
 * `inboxPrefix` must match the identity's subscribe permission: servers
 * `meridian up` starts let identity I subscribe to `_INBOX_I.>` only
 * (cli/nats-auth.ts), so that one identity cannot read another's replies.
 * Any TLS file (or a tls:// server URL) turns TLS on.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  credsAuthenticator,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  usernamePasswordAuthenticator,
} from "@nats-io/transport-node";
import { configSchema, fromEnv, Setting } from "../../protocol/config-schema.js";

export interface NatsClientConfig {
  seedFile?: string;
  credsFile?: string;
  user?: string;
  passwordFile?: string;
  inboxPrefix?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /**
   * Replicas of the streams this process creates when missing (the region's
   * event stream, the audit stream): 1 on a single nats-server, 3 on a
   * three-server JetStream cluster (README: Operations, durability). Default 1.
   */
  replicas?: number;
  /** Liveness (see above; defaults NATS_LIVENESS). */
  pingIntervalMs?: number;
  maxPingOut?: number;
  connectTimeoutMs?: number;
}

/** Default liveness of every NATS connection: a silent server is dropped within 6 s, a dial within 5 s. */
export const NATS_LIVENESS = { pingIntervalMs: 2_000, maxPingOut: 2, connectTimeoutMs: 5_000 } as const;

/** How long a connection may go on with a server that stopped answering (ms), for `config`. Pure. */
export function natsSilenceBoundMs(config: NatsClientConfig | undefined): number {
  const ping = config?.pingIntervalMs ?? NATS_LIVENESS.pingIntervalMs;
  return ping * ((config?.maxPingOut ?? NATS_LIVENESS.maxPingOut) + 1);
}

type Input = { [K in keyof NatsClientConfig]?: NatsClientConfig[K] };

/** The `nats.*` client settings, as every process's schema includes them (protocol/config-schema.ts). */
export function natsClientSettings() {
  const { string, integer, optional, section } = Setting;
  return {
    seedFile: optional(
      string({
        env: "MERIDIAN_NATS_SEED_FILE",
        defaultText: "none (anonymous)",
        doc: "an NKEY user seed file; `meridian up` gives each node, peer and worker its own",
      }),
    ),
    credsFile: optional(
      string({ env: "MERIDIAN_NATS_CREDS_FILE", doc: "a NATS `.creds` file (user JWT and seed)" }),
    ),
    user: optional(string({ env: "MERIDIAN_NATS_USER", doc: "a NATS user, with passwordFile" })),
    passwordFile: optional(
      string({
        env: "MERIDIAN_NATS_PASSWORD_FILE",
        doc: "a file holding the user's password (at most one of seed, creds, user)",
      }),
    ),
    inboxPrefix: optional(
      string({
        env: "MERIDIAN_NATS_INBOX_PREFIX",
        defaultText: "`_INBOX`",
        doc: "the prefix of reply subjects; `up` gives identity I `_INBOX_I`",
      }),
    ),
    tls: section({
      caFile: optional(string({ env: "MERIDIAN_NATS_TLS_CA_FILE", doc: "TLS to NATS: the server's CA" })),
      certFile: optional(
        string({ env: "MERIDIAN_NATS_TLS_CERT_FILE", doc: "mutual TLS: the client certificate" }),
      ),
      keyFile: optional(string({ env: "MERIDIAN_NATS_TLS_KEY_FILE", doc: "mutual TLS: the client key" })),
    }),
    replicas: optional(
      integer({
        env: "MERIDIAN_NATS_REPLICAS",
        minimum: 1,
        maximum: 5,
        defaultText: "`1`",
        doc: "replicas of the streams a process creates (3 on a three-server JetStream cluster)",
      }),
    ),
    pingIntervalMs: optional(
      integer({
        env: "MERIDIAN_NATS_PING_INTERVAL_MS",
        minimum: 100,
        defaultText: `\`${NATS_LIVENESS.pingIntervalMs}\``,
        doc: "the client pings its server this often; a silent server is dropped after maxPingOut + 1 of these",
      }),
    ),
    maxPingOut: optional(
      integer({
        env: "MERIDIAN_NATS_MAX_PING_OUT",
        minimum: 1,
        defaultText: `\`${NATS_LIVENESS.maxPingOut}\``,
        doc: "pings unanswered before the connection is dropped",
      }),
    ),
    connectTimeoutMs: optional(
      integer({
        env: "MERIDIAN_NATS_CONNECT_TIMEOUT_MS",
        minimum: 100,
        defaultText: `\`${NATS_LIVENESS.connectTimeoutMs}\``,
        doc: "one dial (TCP, INFO, CONNECT/PONG) is given up after this",
      }),
    ),
  };
}

const NATS_CLIENT = configSchema(natsClientSettings());

/** The settings above from MERIDIAN_NATS_* variables (absent where unset); a variable that is not a number is pushed to `problems`. */
export function natsClientFromEnv(env: Record<string, string | undefined>, problems: string[] = []): Input {
  const value = fromEnv(NATS_CLIENT, env, problems) as Input;
  return { ...value, tls: value.tls ?? {} };
}

/**
 * Validate merged settings: paths made absolute, every problem pushed to
 * `problems` (prefixed with `where`, e.g. "nats"). Files must exist now.
 */
export function checkNatsClient(
  input: Input | undefined,
  problems: string[],
  where = "nats",
): NatsClientConfig {
  const out: NatsClientConfig = {};
  const file = (name: string, value: string | undefined): string | undefined => {
    if (value === undefined) return undefined;
    const path = resolve(value);
    try {
      readFileSync(path);
    } catch (err) {
      problems.push(`${where}.${name} ${path}: ${(err as NodeJS.ErrnoException).code ?? "unreadable"}`);
    }
    return path;
  };
  const seedFile = file("seedFile", input?.seedFile);
  const credsFile = file("credsFile", input?.credsFile);
  const passwordFile = file("passwordFile", input?.passwordFile);
  if (seedFile !== undefined) out.seedFile = seedFile;
  if (credsFile !== undefined) out.credsFile = credsFile;
  if (input?.user !== undefined) out.user = input.user;
  if (passwordFile !== undefined) out.passwordFile = passwordFile;
  if ((out.user === undefined) !== (out.passwordFile === undefined))
    problems.push(`${where}: user and passwordFile go together (both or neither)`);
  const kinds = [out.seedFile, out.credsFile, out.user].filter((v) => v !== undefined).length;
  if (kinds > 1) problems.push(`${where}: one of seedFile, credsFile or user+passwordFile, not several`);
  if (input?.inboxPrefix !== undefined) {
    if (!/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(input.inboxPrefix))
      problems.push(`${where}.inboxPrefix: subject tokens without wildcards or spaces`);
    out.inboxPrefix = input.inboxPrefix;
  }
  const count = (name: "replicas" | "pingIntervalMs" | "maxPingOut" | "connectTimeoutMs", min: number) => {
    const raw = input?.[name];
    if (raw === undefined || (raw as unknown) === "") return;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < min) problems.push(`${where}.${name} "${raw}": an integer ≥ ${min}`);
    else out[name] = n;
  };
  count("replicas", 1);
  if (out.replicas !== undefined && out.replicas > 5)
    problems.push(`${where}.replicas ${out.replicas}: JetStream allows at most 5`);
  count("pingIntervalMs", 100);
  count("maxPingOut", 1);
  count("connectTimeoutMs", 100);
  const tls = {
    caFile: file("tls.caFile", input?.tls?.caFile),
    certFile: file("tls.certFile", input?.tls?.certFile),
    keyFile: file("tls.keyFile", input?.tls?.keyFile),
  };
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined))
    problems.push(`${where}.tls: certFile and keyFile go together (both or neither)`);
  if (tls.caFile !== undefined || tls.certFile !== undefined) {
    out.tls = {};
    if (tls.caFile !== undefined) out.tls.caFile = tls.caFile;
    if (tls.certFile !== undefined) out.tls.certFile = tls.certFile;
    if (tls.keyFile !== undefined) out.tls.keyFile = tls.keyFile;
  }
  return out;
}

/**
 * nats.js options for `config` (spread into `connect({...})`, before the
 * caller's own: liveness included, so a caller should not set pingInterval,
 * maxPingOut or timeout itself). The authenticator reads its file on every
 * (re)connection.
 */
export function natsConnectOptions(config: NatsClientConfig | undefined): Partial<NodeConnectionOptions> {
  const out: Partial<NodeConnectionOptions> = {
    pingInterval: config?.pingIntervalMs ?? NATS_LIVENESS.pingIntervalMs,
    maxPingOut: config?.maxPingOut ?? NATS_LIVENESS.maxPingOut,
    timeout: config?.connectTimeoutMs ?? NATS_LIVENESS.connectTimeoutMs,
    // Else every request (each append, each JetStream API call) builds an Error with a stack
    // trace up front, for the case it fails: a visible share of a worker's and a node's CPU
    // in the issue 14 profiles. A failure still says what failed (callers wrap it as `cause`).
    noAsyncTraces: true,
  };
  if (config === undefined) return out;
  if (config.seedFile !== undefined) {
    const file = config.seedFile;
    out.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(firstLine(file)));
  } else if (config.credsFile !== undefined) {
    const file = config.credsFile;
    out.authenticator = credsAuthenticator(() => new Uint8Array(readFileSync(file)));
  } else if (config.user !== undefined && config.passwordFile !== undefined) {
    const file = config.passwordFile;
    out.authenticator = usernamePasswordAuthenticator(config.user, () => firstLine(file));
  }
  if (config.inboxPrefix !== undefined) out.inboxPrefix = config.inboxPrefix;
  if (config.tls !== undefined) out.tls = { ...config.tls };
  return out;
}

/** What a log may say about `config`: which kind of credential, never its content. */
export function describeNatsClient(config: NatsClientConfig | undefined): string {
  if (config?.seedFile !== undefined) return `nkey ${config.seedFile}`;
  if (config?.credsFile !== undefined) return `creds ${config.credsFile}`;
  if (config?.user !== undefined) return `user ${config.user}`;
  return "anonymous";
}

/** True when `err` (or one of its causes) is the server refusing a subject to this identity. */
export function isPermissionViolation(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++)
    if (e.name === "PermissionViolationError") return true;
  return false;
}

/** The reply-subject prefix of NATS identity `name` in a `meridian up` mesh (cli/nats-auth.ts). */
export function inboxPrefixOf(name: string): string {
  return `_INBOX_${name}`;
}

function firstLine(file: string): string {
  return readFileSync(file, "utf8").split(/\r?\n/, 1)[0]!.trim();
}
