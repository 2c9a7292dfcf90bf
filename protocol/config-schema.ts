/**
 * Every process's settings are described once, as a JSON Schema built with
 * TypeBox: type, range, default, the `MERIDIAN_*` variable that overrides it
 * and a line saying what it is for. From that one description come
 *
 * - the environment overrides (`fromEnv`: each leaf naming an `env` variable
 *   is read from it, converted by the leaf's type);
 * - the checks: an unknown or misspelt key is an error naming the key and
 *   where it came from (`additionalProperties: false` at every level); a
 *   value of the wrong type or out of range names the setting, or the
 *   variable it came from;
 * - the static defaults (`default`); defaults computed from other settings
 *   (a directory under `dataDir`) stay in the process's loader, which the
 *   schema documents with `defaultText`;
 * - the configuration reference in the README (`configReference`), which a
 *   test keeps from going stale.
 *
 * Pure: no file is read here (each loader reads its file and hands over the
 * text). The loaders then add what a schema cannot say (two settings that go
 * together, a file that must exist, a mesh that must name the region).
 */
import Type, { type Static, type TSchema } from "typebox";
import Value from "typebox/value";
import { REGION_PATTERN } from "./events.js";
import { STARTUP_GRACE_MS } from "./startup-grace.js";

export type { Static };

/** What every setting says about itself, beyond its type. */
export type SettingDoc = {
  /** The environment variable that overrides it; none: files and flags only. */
  env?: string;
  /** What it is for, one line (the README's reference shows it). */
  doc: string;
  /** The default in words, when it is computed from other settings. */
  defaultText?: string;
};

type Bounds = { minimum?: number; maximum?: number; exclusiveMinimum?: number };

/** Leaf and section builders; a leaf with a `default` is always present once loaded. */
export const Setting = {
  string: (d: SettingDoc & { default?: string; pattern?: string; minLength?: number }) => Type.String(d),
  integer: (d: SettingDoc & Bounds & { default?: number }) => Type.Integer(d),
  number: (d: SettingDoc & Bounds & { default?: number }) => Type.Number(d),
  boolean: (d: SettingDoc & { default?: boolean }) => Type.Boolean(d),
  /** A list; from the environment, comma-separated. */
  list: (d: SettingDoc & { default?: string[] }) => Type.Array(Type.String(), d),
  oneOf: <const T extends string[]>(values: [...T], d: SettingDoc & { default?: T[number] }) =>
    Type.Enum(values, d),
  /** A string → string table (from the environment: a JSON object, or `key=value,…`). */
  table: (d: SettingDoc & { default?: Record<string, string> }) =>
    Type.Record(Type.String(), Type.String(), d),
  optional: Type.Optional,
  /** A group of settings; absent, it is made of its members' defaults. */
  section: <P extends Record<string, TSchema>>(properties: P) =>
    Type.Object(properties, { additionalProperties: false, default: {} }),
};

/**
 * Defaults of the S3 client's bounds (node/data/s3-client.ts): one S3 call
 * ends within maxAttempts × (connectTimeoutMs + idleTimeoutMs) plus a short
 * backoff when the service stops answering.
 */
export const S3_BOUNDS = { connectTimeoutMs: 3_000, idleTimeoutMs: 10_000, maxAttempts: 2 } as const;

/** Settings several processes have, described the same way in each (one place to change them). */
export const CommonSettings = {
  region: () =>
    Setting.string({
      env: "MERIDIAN_REGION",
      default: "local",
      pattern: REGION_PATTERN,
      doc: "the region's name: lower-case letters, digits and dashes, at most 32",
    }),
  /** The mesh file of a process that cannot run without one (the loader reports it missing). */
  requiredMeshFile: () =>
    Setting.optional(
      Setting.string({ env: "MERIDIAN_MESH", defaultText: "(required)", doc: "the path of mesh.json" }),
    ),
  dataDir: (whose: string) =>
    Setting.optional(
      Setting.string({
        env: "MERIDIAN_DATA_DIR",
        defaultText: "`.meridian/<region>`",
        doc: `${whose} data directory`,
      }),
    ),
  /** The region's blob store, for a process other than its nodes. */
  sharedStoreRoot: () =>
    Setting.optional(
      Setting.string({
        env: "MERIDIAN_STORAGE_ROOT",
        defaultText: "`<dataDir>/store`",
        doc: "the region's blob store, shared with its nodes",
      }),
    ),
  /** Which blob store a process opens (node/data/open-blob-store.ts); the same in every process of a region. */
  storageType: () =>
    Setting.oneOf(["fs", "s3"], {
      env: "MERIDIAN_STORAGE_TYPE",
      default: "fs",
      doc: "the blob store: `fs` (a directory, `root`) or `s3` (a bucket, `s3.*`)",
    }),
  /** The S3 blob store's bucket and client (node/data/s3-client.ts); read when `storage.type` is `s3`. */
  s3: () =>
    Setting.section({
      bucket: Setting.optional(
        Setting.string({
          env: "MERIDIAN_S3_BUCKET",
          defaultText: "(required for s3)",
          doc: "the bucket (it must exist)",
        }),
      ),
      prefix: Setting.string({
        env: "MERIDIAN_S3_PREFIX",
        default: "",
        defaultText: "none",
        doc: "key prefix of every object the store writes (several registries in one bucket)",
      }),
      endpoint: Setting.optional(
        Setting.string({
          env: "MERIDIAN_S3_ENDPOINT",
          defaultText: "AWS's, from `region`",
          doc: "the S3 service URL (MinIO, Ceph RGW, R2, s3rver: http(s)://host:port)",
        }),
      ),
      region: Setting.string({ env: "MERIDIAN_S3_REGION", default: "us-east-1", doc: "the bucket's region" }),
      forcePathStyle: Setting.boolean({
        env: "MERIDIAN_S3_FORCE_PATH_STYLE",
        default: false,
        doc: "path-style URLs (host/bucket/key): MinIO, s3rver and most on-premise services need it",
      }),
      credentialsFile: Setting.optional(
        Setting.string({
          env: "MERIDIAN_S3_CREDENTIALS_FILE",
          defaultText: "the SDK's default chain (environment, ~/.aws, instance role)",
          doc: "a JSON file with `accessKeyId` and `secretAccessKey` (and optionally `sessionToken`)",
        }),
      ),
      redirect: Setting.boolean({
        env: "MERIDIAN_S3_REDIRECT",
        default: false,
        doc: "answer blob GETs with a 307 to a short-lived presigned URL instead of streaming the bytes",
      }),
      connectTimeoutMs: Setting.integer({
        env: "MERIDIAN_S3_CONNECT_TIMEOUT_MS",
        default: S3_BOUNDS.connectTimeoutMs,
        minimum: 100,
        doc: "a connection to the S3 service within this, ms",
      }),
      idleTimeoutMs: Setting.integer({
        env: "MERIDIAN_S3_IDLE_TIMEOUT_MS",
        default: S3_BOUNDS.idleTimeoutMs,
        minimum: 100,
        doc: "an S3 request that moves no byte for this long is cut, ms (no total deadline: a long transfer that moves is never cut)",
      }),
      maxAttempts: Setting.integer({
        env: "MERIDIAN_S3_MAX_ATTEMPTS",
        default: S3_BOUNDS.maxAttempts,
        minimum: 1,
        maximum: 10,
        doc: "tries of one S3 call, the first included; then the request fails with 503 UNAVAILABLE",
      }),
    }),
  metrics: () =>
    Setting.section({
      host: Setting.string({
        env: "MERIDIAN_METRICS_HOST",
        default: "127.0.0.1",
        doc: "address of /metrics",
      }),
      port: Setting.integer({
        env: "MERIDIAN_METRICS_PORT",
        default: 0,
        minimum: 0,
        maximum: 65535,
        doc: "its port (0: any free port, printed at start)",
      }),
    }),
  /** protocol/startup-grace.ts; `doc` says what the process treats as start-up. */
  startupGraceMs: (doc: string) =>
    Setting.integer({ env: "MERIDIAN_STARTUP_GRACE_MS", default: STARTUP_GRACE_MS, minimum: 0, doc }),
  authService: () =>
    Setting.string({ env: "MERIDIAN_AUTH_SERVICE", default: "meridian", doc: "the token service name" }),
  logLevel: () =>
    Setting.oneOf([...LOG_LEVELS] as string[], {
      env: "MERIDIAN_LOG_LEVEL",
      default: "info",
      doc: "log level",
    }),
};

/** A process's whole schema: a section whose keys are the top-level settings. */
export const configSchema = Setting.section;

/** One leaf of a schema, by its dotted path. */
export interface Leaf {
  path: string;
  schema: Record<string, unknown> & Partial<SettingDoc>;
}

export function leaves(schema: TSchema, prefix = ""): Leaf[] {
  const s = schema as Record<string, unknown>;
  if (s.type === "object" && s.properties !== undefined && s.additionalProperties === false) {
    return Object.entries(s.properties as Record<string, TSchema>).flatMap(([k, v]) =>
      leaves(v, prefix === "" ? k : `${prefix}.${k}`),
    );
  }
  return [{ path: prefix, schema: s }];
}

/** The schema with nothing required: what one source (a file, the environment) may give. */
function partial(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema), (k, v) => (k === "required" && Array.isArray(v) ? undefined : v));
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let at = target;
  for (const k of keys.slice(0, -1)) {
    at[k] ??= {};
    at = at[k] as Record<string, unknown>;
  }
  at[keys[keys.length - 1]!] = value;
}

/** The part of a configuration the environment gives, converted by each leaf's type; problems name the variable. */
export function fromEnv(
  schema: TSchema,
  env: Record<string, string | undefined>,
  problems: string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { path, schema: leaf } of leaves(schema)) {
    const name = leaf.env;
    const raw = name === undefined ? undefined : env[name];
    if (name === undefined || raw === undefined) continue;
    const value = convert(leaf, raw);
    if (value instanceof Error) problems.push(`${name}: ${value.message}`);
    else setPath(out, path, value);
  }
  return out;
}

function convert(leaf: Record<string, unknown>, raw: string): unknown {
  switch (leaf.type) {
    case "integer":
    case "number": {
      const n = raw.trim() === "" ? Number.NaN : Number(raw);
      return Number.isNaN(n) ? new Error("not a number") : n;
    }
    case "boolean":
      if (raw === "true" || raw === "1") return true;
      if (raw === "false" || raw === "0") return false;
      return new Error("true or false");
    case "array":
      return raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
    case "object":
      return parseTable(raw);
    default:
      return raw;
  }
}

/** A table from the environment: a JSON object, or `key=value,key=value`. */
export function parseTable(text: string): Record<string, string> | Error {
  const trimmed = text.trim();
  if (trimmed === "") return {};
  if (trimmed.startsWith("{")) {
    try {
      const value = JSON.parse(trimmed);
      if (typeof value !== "object" || value === null || Array.isArray(value))
        return new Error("not a JSON object");
      return value as Record<string, string>;
    } catch (err) {
      return err as Error;
    }
  }
  const out: Record<string, string> = {};
  for (const pair of trimmed.split(",")) {
    const eq = pair.indexOf("=");
    if (eq < 0) return new Error(`"${pair.trim()}": want key=value`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

/**
 * One source's part of a configuration, checked: every problem pushed, each
 * naming its source (`config file F: unknown setting "listn"`,
 * `MERIDIAN_LISTEN_PORT (listen.port): must be <= 65535`, `listen.port: …`
 * for overrides), and the part returned without what was wrong (unknown keys
 * and bad values dropped), so that defaults stand in for them and the
 * loader's own checks still run: every problem is reported at once.
 */
export function checkSource(
  schema: TSchema,
  value: Record<string, unknown>,
  source: Source,
  problems: string[],
): Record<string, unknown> {
  const all = leaves(schema);
  const byPath = new Map(all.map((l) => [l.path, l.schema]));
  const loose = partial(schema) as TSchema;
  const copy = structuredClone(value);
  for (const e of Value.Errors(loose, value)) {
    const path = e.instancePath.slice(1).split("/").join(".");
    if (e.keyword === "boolean") continue; // the additionalProperties error says it better
    if (e.keyword === "additionalProperties") {
      const extra = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
      for (const k of extra)
        problems.push(`${source.label}unknown setting "${path === "" ? k : `${path}.${k}`}"`);
      continue;
    }
    // The setting the problem is in (a list's item is its list's problem).
    const setting = all.find((l) => path === l.path || path.startsWith(`${l.path}.`))?.path ?? path;
    const leaf = byPath.get(setting);
    const where =
      source.kind === "env" && leaf?.env !== undefined ? `${leaf.env} (${setting})` : setting || "(top)";
    const message =
      e.keyword === "pattern" && leaf?.doc !== undefined
        ? `${JSON.stringify(valueAt(value, path))} is not valid: ${leaf.doc}`
        : e.keyword === "enum" && Array.isArray(leaf?.enum)
          ? `${JSON.stringify(valueAt(value, path))}: one of ${leaf.enum.join(", ")}`
          : e.message;
    problems.push(`${source.label}${where}: ${message}`);
    if (setting !== "") deletePath(copy, setting);
  }
  return Value.Clean(loose, copy) as Record<string, unknown>;
}

function valueAt(value: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], value);
}

function deletePath(target: Record<string, unknown>, path: string): void {
  const keys = path.split(".");
  const parent = valueAt(target, keys.slice(0, -1).join("."));
  const at = keys.length === 1 ? target : parent;
  if (typeof at === "object" && at !== null) delete (at as Record<string, unknown>)[keys[keys.length - 1]!];
}

interface Source {
  kind: "file" | "env" | "overrides";
  /** Prefix of each problem. */
  label: string;
}

/** What a process's loader hands over: the file's path, the environment, flags. */
export interface ConfigSources<I> {
  /** A JSON configuration file. */
  file?: string;
  env?: Record<string, string | undefined>;
  overrides?: I;
}

/**
 * The settings from every source (file, then environment, then overrides,
 * each over the one before), checked source by source, with the schema's
 * static defaults filled in. `readFile` reads the file (the caller's IO;
 * this module does none). Problems are pushed, never thrown; what was wrong
 * is left out (its default stands in), so the settings returned are always
 * well-typed and the loader adds its own checks before throwing them all.
 */
export function resolveSettings<S extends TSchema>(
  schema: S,
  sources: ConfigSources<unknown>,
  problems: string[],
  readFile: (path: string, encoding: "utf8") => string,
): Static<S> {
  let fileValue: Record<string, unknown> = {};
  if (sources.file !== undefined) {
    const label = `config file ${sources.file}: `;
    try {
      const parsed = JSON.parse(readFile(sources.file, "utf8")) as unknown;
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
        problems.push(`${label}not a JSON object`);
      else
        fileValue = checkSource(schema, parsed as Record<string, unknown>, { kind: "file", label }, problems);
    } catch (err) {
      problems.push(`${label}${(err as Error).message}`);
    }
  }
  const envValue = checkSource(
    schema,
    fromEnv(schema, sources.env ?? {}, problems),
    { kind: "env", label: "" },
    problems,
  );
  const overrides = checkSource(
    schema,
    (sources.overrides ?? {}) as Record<string, unknown>,
    { kind: "overrides", label: "" },
    problems,
  );
  // Tables replace each other whole: a table from a later source is the table.
  const merged = mergeLayers(schema, [fileValue, envValue, overrides]);
  return Value.Default(schema, merged) as Static<S>;
}

function mergeLayers(schema: TSchema, layers: Record<string, unknown>[]): Record<string, unknown> {
  const tables = leaves(schema)
    .filter((l) => l.schema.type === "object")
    .map((l) => l.path);
  let merged: Record<string, unknown> = {};
  for (const layer of layers) merged = mergeConfig(merged, structuredClone(layer));
  for (const path of tables) {
    let table: unknown;
    for (const layer of layers) {
      const v = valueAt(layer, path);
      if (v !== undefined) table = v;
    }
    if (table !== undefined) setPath(merged, path, table);
  }
  return merged;
}

/** The reference table of one process's settings, as Markdown (the README's is generated from it). */
export function configReference(schema: TSchema): string {
  const rows = leaves(schema).map(({ path, schema: s }) => {
    const def =
      s.defaultText ??
      (s.default === undefined
        ? "none"
        : Array.isArray(s.default)
          ? s.default.length === 0
            ? "none"
            : `\`${s.default.join(",")}\``
          : typeof s.default === "object"
            ? "none"
            : `\`${String(s.default)}\``);
    const range = rangeText(s);
    const doc = `${s.doc ?? ""}${range === "" ? "" : ` (${range})`}`;
    return `| \`${path}\` | ${s.env === undefined ? "" : `\`${s.env}\``} | ${def} | ${doc.replace(/\|/g, "\\|")} |`;
  });
  return ["| setting | environment | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

function rangeText(s: Record<string, unknown>): string {
  if (Array.isArray(s.enum)) return `one of ${s.enum.map((v) => `\`${v}\``).join(", ")}`;
  const parts: string[] = [];
  if (typeof s.minimum === "number") parts.push(`≥ ${s.minimum}`);
  if (typeof s.exclusiveMinimum === "number") parts.push(`> ${s.exclusiveMinimum}`);
  if (typeof s.maximum === "number") parts.push(`≤ ${s.maximum}`);
  return parts.join(", ");
}

export type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K];
};

export const LOG_LEVELS: readonly string[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** `over` laid on `base`, object by object; undefined values in `over` leave `base` as it is. */
function mergeConfig<T extends object>(base: T, over: T): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] =
      typeof v === "object" && v !== null && !Array.isArray(v) && typeof b === "object" && b !== null
        ? mergeConfig(b as object, v as object)
        : v;
  }
  return out as T;
}

export function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** A configuration that failed validation, with every problem found. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = new.target.name;
  }
}
