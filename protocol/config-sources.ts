/**
 * The mechanics every process's configuration shares (node/config.ts,
 * control-plane/config.ts): reading environment strings, layering sources
 * (file, environment, overrides) and freezing the result. Pure functions; it
 * lives in protocol/ because that is the one folder every process may import.
 */

export type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K];
};

export const LOG_LEVELS: readonly string[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** A number from an environment string; undefined when absent, blank or not a number. */
export function envNumber(v: string | undefined): number | undefined {
  return v === undefined || v.trim() === "" || Number.isNaN(Number(v)) ? undefined : Number(v);
}

/** A comma-separated environment string as its trimmed, non-empty items; undefined when absent. */
export function envList(v: string | undefined): string[] | undefined {
  return v
    ?.split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** The HTTP limits of a node or the front door (protocol/http-limits.ts) from `MERIDIAN_HTTP_*`. */
export function httpLimitsFromEnv(env: Record<string, string | undefined>) {
  return {
    idleTimeoutMs: envNumber(env.MERIDIAN_HTTP_IDLE_TIMEOUT_MS),
    headersTimeoutMs: envNumber(env.MERIDIAN_HTTP_HEADERS_TIMEOUT_MS),
    keepAliveTimeoutMs: envNumber(env.MERIDIAN_HTTP_KEEP_ALIVE_TIMEOUT_MS),
    maxConnectionsPerClient: envNumber(env.MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT),
    exempt: envList(env.MERIDIAN_HTTP_CONNECTION_LIMIT_EXEMPT),
  };
}

/** true/1 or false/0 from an environment string; undefined otherwise. */
export function envBoolean(v: string | undefined): boolean | undefined {
  return v === "true" || v === "1" ? true : v === "false" || v === "0" ? false : undefined;
}

/** `over` laid on `base`, object by object; undefined values in `over` leave `base` as it is. */
export function mergeConfig<T extends object>(base: T, over: T): T {
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
