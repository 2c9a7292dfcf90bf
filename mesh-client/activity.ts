/**
 * What happened lately in the mesh, for the dashboard's "recent activity":
 * tag conflicts, alerts (a delete breaker tripped, a scrub finding),
 * replications given up on with their reason, finished policy and GC runs,
 * failovers, promotions. Each region's admin API is asked at once (`GET
 * /admin/v1/activity?limit=N`, node/http/admin/activity.ts), each within
 * `timeoutMs`; the answers are merged (an event replicated to every region
 * is listed once, by its write id), the newest first, at most `limit`.
 * Regions that did not answer are listed in `unreachable`: what they saw is
 * still in the others' answers once it replicated.
 */
import type { Mesh } from "../protocol/mesh.js";
import { adminGet } from "./admin-read.js";

export type ActivityKind =
  | "conflict"
  | "alert"
  | "replication-failed"
  | "policy-run"
  | "gc-run"
  | "failover"
  | "promotion";

export interface ActivityItem {
  kind: ActivityKind;
  /** The region it happened in (a run's region; a conflict's, alert's or failover's origin). */
  region: string;
  /** ISO-8601 time at that region. */
  at: string;
  summary: string;
  detail?: Record<string, unknown>;
  /** The event's id, the same in every region. */
  id?: string;
}

export interface ActivityOptions {
  /** The caller's `authorization` header (a system admin's or an operator's). */
  authorization?: string;
  /** Items returned at most: default DEFAULT_ACTIVITY_LIMIT, at most MAX_ACTIVITY_LIMIT. */
  limit?: number;
  /** Only these regions are asked (default: every region of the mesh); a name not in the mesh is unreachable. */
  regions?: string[];
  /** Each region's answer, at most (default 5 s). */
  timeoutMs?: number;
}

export const DEFAULT_ACTIVITY_LIMIT = 50;
export const MAX_ACTIVITY_LIMIT = 500;

export async function collectActivity(
  mesh: Mesh,
  options: ActivityOptions = {},
): Promise<{ items: ActivityItem[]; unreachable: string[] }> {
  const limit = Math.min(
    MAX_ACTIVITY_LIMIT,
    Math.max(1, Math.floor(options.limit ?? DEFAULT_ACTIVITY_LIMIT) || DEFAULT_ACTIVITY_LIMIT),
  );
  const wanted = options.regions === undefined ? undefined : new Set(options.regions);
  const asked = mesh.regions.filter((r) => wanted === undefined || wanted.has(r.name));
  const unreachable = [...(wanted ?? [])].filter((name) => !mesh.regions.some((r) => r.name === name));
  const read = { authorization: options.authorization, timeoutMs: options.timeoutMs };
  const answers = await Promise.all(
    asked.map((r) =>
      adminGet<{ items: ActivityItem[] }>(mesh, r, `/activity?limit=${limit}`, read).catch(() => undefined),
    ),
  );
  const byId = new Map<string, ActivityItem>();
  const anonymous: ActivityItem[] = [];
  for (const [i, answer] of answers.entries()) {
    if (answer === undefined || !Array.isArray(answer.items)) {
      unreachable.push(asked[i]!.name);
      continue;
    }
    for (const item of answer.items) {
      if (item.id === undefined) anonymous.push(item);
      else byId.set(item.id, item);
    }
  }
  const items = [...byId.values(), ...anonymous].sort(newestFirst).slice(0, limit);
  return { items, unreachable };
}

/** Newest first by time; equal times by id, so every caller sees one order. */
function newestFirst(a: ActivityItem, b: ActivityItem): number {
  if (a.at !== b.at) return a.at < b.at ? 1 : -1;
  const [x, y] = [a.id ?? "", b.id ?? ""];
  return x < y ? -1 : x > y ? 1 : 0;
}
