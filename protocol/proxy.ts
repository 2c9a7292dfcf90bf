/**
 * Pull-through cache (issue 17, item 3): a project that is a proxy of an
 * upstream registry, named by an external endpoint (./endpoints.ts). An
 * admin object kept by `proxy.set` / `proxy.deleted` events, keyed by
 * project, replicated like every admin object (so every region serves the
 * project from the same upstream).
 *
 * Contracts:
 * - `project`: a project name (the first path component of its
 *   repositories, ./access.ts `projectOf`).
 * - `endpoint`: the name of an external endpoint; its URL, CA and
 *   credentials file are read where the cache runs (the node's host). A
 *   proxy naming an endpoint that is deleted later serves only what it
 *   cached (a miss is MANIFEST_UNKNOWN / BLOB_UNKNOWN, logged).
 * - `upstreamPrefix`: optional; the upstream repository of `P/rest` is
 *   `rest`, or `prefix/rest` with a prefix. So project `hub` with no
 *   prefix maps `hub/library/nginx` to Docker Hub's `library/nginx`, and
 *   with prefix `library` maps `hub/nginx` to `library/nginx`. The project
 *   itself (a repository named only `P`) maps to `prefix` alone, or to
 *   nothing (no upstream repository: never fetched).
 * - `freshnessSeconds`: how long a cached tag is served without asking
 *   upstream; older, the next pull HEADs the upstream tag (bounded) and
 *   moves the tag when upstream moved it. 0: every pull by tag asks.
 *   Digests never need asking (content-addressed).
 */

import { ENDPOINT_NAME } from "./endpoints.js";
import { PROJECT_NAME } from "./event-types.js";

export const PROXY_PREFIX =
  /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
/** Longest freshness interval accepted (a week): a tag asked less often is effectively pinned. */
export const MAX_FRESHNESS_SECONDS = 7 * 24 * 3600;
/** Freshness when none is given. */
export const DEFAULT_FRESHNESS_SECONDS = 300;

export interface ProxyConfig {
  project: string;
  endpoint: string;
  upstreamPrefix?: string;
  freshnessSeconds: number;
}

/** Every problem of a proxy configuration's fields ("field: why"); empty when valid. */
export function proxyProblems(p: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (typeof p.project !== "string" || !PROJECT_NAME.test(p.project))
    problems.push(`project: want a project name, got ${JSON.stringify(String(p.project).slice(0, 64))}`);
  if (typeof p.endpoint !== "string" || !ENDPOINT_NAME.test(p.endpoint))
    problems.push(`endpoint: want an endpoint name, got ${JSON.stringify(String(p.endpoint).slice(0, 64))}`);
  const prefix = p.upstreamPrefix;
  if (
    prefix !== undefined &&
    (typeof prefix !== "string" || prefix.length > 200 || !PROXY_PREFIX.test(prefix))
  )
    problems.push(
      `upstreamPrefix: want repository path components (lowercase, "/" between), got ${JSON.stringify(String(prefix).slice(0, 64))}`,
    );
  const f = p.freshnessSeconds;
  if (typeof f !== "number" || !Number.isSafeInteger(f) || f < 0 || f > MAX_FRESHNESS_SECONDS)
    problems.push(`freshnessSeconds: want whole seconds from 0 to ${MAX_FRESHNESS_SECONDS}`);
  return problems;
}

/** The upstream repository of `repo` in a proxy project; undefined when it maps to none. */
export function upstreamRepository(repo: string, proxy: ProxyConfig): string | undefined {
  const slash = repo.indexOf("/");
  const rest = slash < 0 ? "" : repo.slice(slash + 1);
  const prefix = proxy.upstreamPrefix;
  if (prefix === undefined) return rest === "" ? undefined : rest;
  return rest === "" ? prefix : `${prefix}/${rest}`;
}

/** Is a tag last confirmed at `checkedAtMs` due for a check with upstream at `nowMs`? */
export function tagIsStale(checkedAtMs: number, nowMs: number, proxy: ProxyConfig): boolean {
  return nowMs - checkedAtMs >= proxy.freshnessSeconds * 1000;
}

/** A duration as the CLI takes it (`90`, `90s`, `5m`, `2h`, `1d`) in whole seconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,7})(s|m|h|d)?$/.exec(text.trim());
  if (m === null) return undefined;
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(m[2] ?? "s") as "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}
