/**
 * How every Meridian process signs in to NATS: the credential and TLS
 * settings of one client (`NatsClientConfig`), read like the rest of a
 * process's configuration (`natsClientFromEnv` + `checkNatsClient`), and
 * turned into nats.js connect options (`natsConnectOptions`).
 *
 * | setting              | env                            | meaning                                   |
 * |----------------------|--------------------------------|-------------------------------------------|
 * | nats.seedFile        | MERIDIAN_NATS_SEED_FILE        | NKEY user seed (challenge-response; the seed never leaves the host) |
 * | nats.credsFile       | MERIDIAN_NATS_CREDS_FILE       | a `.creds` file (user JWT + seed; operator/JWT mode servers) |
 * | nats.user            | MERIDIAN_NATS_USER             | user name, with passwordFile             |
 * | nats.passwordFile    | MERIDIAN_NATS_PASSWORD_FILE    | the password (first line), with user     |
 * | nats.inboxPrefix     | MERIDIAN_NATS_INBOX_PREFIX     | reply subjects' prefix (default `_INBOX`) |
 * | nats.tls.caFile      | MERIDIAN_NATS_TLS_CA_FILE      | CA that signed the server's certificate  |
 * | nats.tls.certFile    | MERIDIAN_NATS_TLS_CERT_FILE    | client certificate (mutual TLS), with keyFile |
 * | nats.tls.keyFile     | MERIDIAN_NATS_TLS_KEY_FILE     | client key (mutual TLS), with certFile   |
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
}

type Input = { [K in keyof NatsClientConfig]?: NatsClientConfig[K] };

/** The `nats.*` client settings, as every process's schema includes them (protocol/config-schema.ts). */
export function natsClientSettings() {
  const { string, optional, section } = Setting;
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
  };
}

const NATS_CLIENT = configSchema(natsClientSettings());

/** The settings above from MERIDIAN_NATS_* variables (absent where unset, for merging). */
export function natsClientFromEnv(env: Record<string, string | undefined>): Input {
  const value = fromEnv(NATS_CLIENT, env, []) as Input;
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
 * nats.js options for `config` (spread into `connect({...})`). The
 * authenticator reads its file on every (re)connection.
 */
export function natsConnectOptions(config: NatsClientConfig | undefined): Partial<NodeConnectionOptions> {
  if (config === undefined) return {};
  const out: Partial<NodeConnectionOptions> = {};
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
