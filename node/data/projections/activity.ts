/**
 * The recent-activity index: one small record per event an operator looks for
 * in a list of what happened lately (the dashboard's "recent activity",
 * `GET /admin/v1/activity`, mesh-client/activity.ts): tag conflicts, alerts
 * (a replication given up on among them), finished policy runs and GC runs,
 * failovers, promotions (passed or refused, with each gate's reason). It is an index, not a projection: those events belong to the
 * projections that apply them (content, replication-admin, gc-runs); the
 * view (../view.ts) also tells each applied event to `note`, in the same
 * batch, so the index is committed with what it points at.
 *
 * Keys (values are JSON):
 *   a!<hlc>!<write id>   ActivityRecord   clock order, so the newest are read last-first
 *
 * Keyed by the origin's clock and write id (a replica carries its origin's
 * id as `cause`): the same record in every region, whatever order events
 * arrive in, and once however many times an event is replicated. Records
 * are a few hundred bytes and the events are rare (no pushes or pulls), so
 * the index is kept whole, as alerts are; reads are bounded by their limit.
 */
import type { RegistryEvent } from "../../../protocol/events.js";
import { writeIdOf } from "../../../protocol/events.js";
import { promotionSummary } from "../../../protocol/promotion.js";
import { type Batch, END, hlcKey, type ViewDb } from "./store.js";

export type ActivityKind =
  | "conflict"
  | "alert"
  | "replication-failed"
  | "policy-run"
  | "gc-run"
  | "failover"
  | "promotion";
export const ACTIVITY_KINDS: readonly ActivityKind[] = [
  "conflict",
  "alert",
  "replication-failed",
  "policy-run",
  "gc-run",
  "failover",
  "promotion",
];

export interface ActivityRecord {
  /** The event's write id (its origin's id, the same in every region). */
  id: string;
  kind: ActivityKind;
  /** The region it happened in (the run's region; the origin of a conflict, alert or failover). */
  region: string;
  /** ISO-8601 time at the origin. */
  at: string;
  /** One line for a list. */
  summary: string;
  detail?: Record<string, unknown>;
}

/** Reads of the activity index (committed state). */
export interface ActivityReads {
  /**
   * The newest records first, at most `limit`; with `kinds`, only those
   * (at most `SCAN_LIMIT` records are looked at to find them).
   */
  recent(limit: number, kinds?: readonly ActivityKind[]): Promise<ActivityRecord[]>;
}

/** Records a filtered read looks at, at most: a read never walks the whole index. */
const SCAN_LIMIT = 5_000;

export class ActivityIndex implements ActivityReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  /** Stage the event's record in `batch` when it is one the index keeps. */
  note(batch: Batch, e: RegistryEvent): void {
    const record = activityOf(e);
    if (record !== undefined) batch.put(`a!${hlcKey(e.hlc)}!${record.id}`, JSON.stringify(record));
  }

  async recent(limit: number, kinds?: readonly ActivityKind[]): Promise<ActivityRecord[]> {
    const wanted = kinds === undefined || kinds.length === 0 ? undefined : new Set(kinds);
    const out: ActivityRecord[] = [];
    let seen = 0;
    for await (const raw of this.#db.values({ gt: "a!", lt: `a!${END}`, reverse: true })) {
      if (out.length >= limit || ++seen > SCAN_LIMIT) break;
      const record = JSON.parse(raw) as ActivityRecord;
      if (wanted === undefined || wanted.has(record.kind)) out.push(record);
    }
    return out;
  }
}

/** The record an event leaves in the index, if any. Pure. */
export function activityOf(e: RegistryEvent): ActivityRecord | undefined {
  const what = describe(e);
  return what === undefined ? undefined : { id: writeIdOf(e), ...what };
}

function describe(e: RegistryEvent): Omit<ActivityRecord, "id"> | undefined {
  switch (e.type) {
    case "tag.conflict": {
      const side = (s: { origin: string; digest: string | null }) =>
        `${s.origin}'s ${s.digest === null ? "delete" : short(s.digest)}`;
      return {
        kind: "conflict",
        region: e.origin,
        at: e.at,
        summary: `${e.repo}:${e.tag}: ${side(e.winner)} won over ${side(e.loser)}${e.rule === undefined ? "" : ` (immutable by ${e.rule})`}`,
        detail: {
          repo: e.repo,
          tag: e.tag,
          winner: e.winner,
          loser: e.loser,
          ...(e.rule === undefined ? {} : { rule: e.rule }),
        },
      };
    }
    case "alert.raised":
      return {
        kind: e.kind === "replication-failed" ? "replication-failed" : "alert",
        region: e.origin,
        at: e.at,
        summary: e.message,
        detail: {
          alert: e.kind,
          ...(e.policy === undefined ? {} : { policy: e.policy }),
          ...(e.repo === undefined ? {} : { repo: e.repo }),
          ...(e.detail ?? {}),
        },
      };
    case "policy.run.finished":
      return {
        kind: "policy-run",
        region: e.region,
        at: e.at,
        summary: `policy ${e.name} run ${e.outcome} in ${e.region}${e.error === undefined ? "" : `: ${e.error}`}`,
        detail: {
          name: e.name,
          runId: e.runId,
          outcome: e.outcome,
          stats: e.stats,
          ...(e.error === undefined ? {} : { error: e.error }),
        },
      };
    case "gc.finished":
      return {
        kind: "gc-run",
        region: e.region,
        at: e.at,
        summary: `GC run ${e.outcome} in ${e.region}${e.error === undefined ? "" : `: ${e.error}`}`,
        detail: {
          runId: e.runId,
          outcome: e.outcome,
          stats: e.stats,
          ...(e.error === undefined ? {} : { error: e.error }),
        },
      };
    case "repository.configured":
      // A home at a failover epoch (node/data/failover.ts; `meridian tag rule --epoch`).
      if (e.home === undefined || e.epoch === undefined || e.epoch <= 0) return undefined;
      return {
        kind: "failover",
        region: e.origin,
        at: e.at,
        summary: `${e.scope === "" ? "every repository" : e.scope} homed in ${e.home} at epoch ${e.epoch}`,
        detail: { scope: e.scope, home: e.home, epoch: e.epoch, actor: e.actor },
      };
    case "promotion.recorded":
      return {
        kind: "promotion",
        region: e.origin,
        at: e.at,
        summary: `${promotionSummary(e)} by ${e.actor}`,
        detail: {
          promotionId: e.promotionId,
          outcome: e.outcome,
          source: e.source,
          destination: e.destination,
          gates: e.gates,
          actor: e.actor,
        },
      };
    default:
      return undefined;
  }
}

function short(digest: string): string {
  return digest.slice(0, "sha256:".length + 12);
}
