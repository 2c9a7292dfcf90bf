/**
 * The replication-admin projection: replication policies, their runs, alerts
 * and delete-breaker resets, as the log's policy.*, alert.raised and
 * breaker.reset events leave them.
 *
 * Keys (values are JSON):
 *   P!<name>            replication policy        {policy | null, w}  last writer wins
 *   Q!<name>!<runId>    a policy run              RunRecord (each region's result merged in)
 *   A!<hlc>!<id>        an alert                  AlertRecord (clock order)
 *   B!<policy>          last delete-breaker reset {w}                 last writer wins
 */
import type { Write } from "../../../protocol/registers.js";
import {
  Batch,
  END,
  getJson,
  type Handlers,
  hlcKey,
  olderWrite,
  type Projection,
  type ViewDb,
} from "./store.js";

export interface RunRecord {
  name: string;
  runId: string;
  requested?: { at: string; actor: string; origin: string };
  results: Record<string, { outcome: string; stats: Record<string, number>; error?: string; at: string }>;
}

export interface AlertRecord {
  kind: string;
  message: string;
  policy?: string;
  repo?: string;
  detail?: Record<string, unknown>;
  origin: string;
  at: string;
  id: string;
}

/** Reads of the replication-admin projection (committed state). */
export interface ReplicationAdminReads {
  /** Replication policies (their normalized JSON), live ones only, by name. */
  policies(): Promise<Array<{ name: string; policy: Record<string, unknown>; w: Write }>>;
  /** Runs of a policy, oldest request first (by run id order within equal times). */
  runs(name: string): Promise<RunRecord[]>;
  /** One run; undefined if never requested nor reported. */
  run(name: string, runId: string): Promise<RunRecord | undefined>;
  /** Alerts in clock order (oldest first). */
  alerts(): Promise<AlertRecord[]>;
  /** When the policy's delete breaker was last reset (undefined: never). */
  breakerReset(policy: string): Promise<Write | undefined>;
}

export class ReplicationAdminProjection implements Projection, ReplicationAdminReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "policy.set": (batch, e, w) => this.#setPolicy(batch, e.name, e.policy, w),
    "policy.deleted": (batch, e, w) => this.#setPolicy(batch, e.name, null, w),
    "policy.run": async (batch, e) => {
      const run = await this.#runIn(batch, e.name, e.runId);
      run.requested = { at: e.at, actor: e.actor, origin: e.origin };
      batch.put(`Q!${e.name}!${e.runId}`, JSON.stringify(run));
    },
    "policy.run.finished": async (batch, e) => {
      const run = await this.#runIn(batch, e.name, e.runId);
      run.results[e.region] = { outcome: e.outcome, stats: e.stats, error: e.error, at: e.at };
      batch.put(`Q!${e.name}!${e.runId}`, JSON.stringify(run));
    },
    "alert.raised": async (batch, e, w) => {
      const alert: AlertRecord = {
        kind: e.kind,
        message: e.message,
        policy: e.policy,
        repo: e.repo,
        detail: e.detail,
        origin: e.origin,
        at: e.at,
        id: w.id,
      };
      batch.put(`A!${hlcKey(e.hlc)}!${w.id}`, JSON.stringify(alert));
    },
    "breaker.reset": async (batch, e, w) => {
      const key = `B!${e.name}`;
      const current = await getJson<{ w: Write }>(batch, key);
      if (current === undefined || olderWrite(current.w, w)) batch.put(key, JSON.stringify({ w }));
    },
  };

  async #setPolicy(batch: Batch, name: string, policy: unknown, w: Write): Promise<void> {
    const key = `P!${name}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ policy, w }));
  }

  async #runIn(batch: Batch, name: string, runId: string): Promise<RunRecord> {
    return (await getJson<RunRecord>(batch, `Q!${name}!${runId}`)) ?? { name, runId, results: {} };
  }

  async policies(): Promise<Array<{ name: string; policy: Record<string, unknown>; w: Write }>> {
    const out: Array<{ name: string; policy: Record<string, unknown>; w: Write }> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder("P!")) {
      const { policy, w } = JSON.parse(raw) as { policy: Record<string, unknown> | null; w: Write };
      if (policy !== null) out.push({ name, policy, w });
    }
    return out;
  }

  async runs(name: string): Promise<RunRecord[]> {
    const out: RunRecord[] = [];
    for (const [, raw] of await new Batch(this.#db).entriesUnder(`Q!${name}!`)) out.push(JSON.parse(raw));
    return out.sort((a, b) => (a.requested?.at ?? "").localeCompare(b.requested?.at ?? ""));
  }

  async run(name: string, runId: string): Promise<RunRecord | undefined> {
    return getJson<RunRecord>(this.#db, `Q!${name}!${runId}`);
  }

  async alerts(): Promise<AlertRecord[]> {
    const out: AlertRecord[] = [];
    for await (const raw of this.#db.values({ gt: "A!", lt: `A!${END}` })) out.push(JSON.parse(raw));
    return out;
  }

  async breakerReset(policy: string): Promise<Write | undefined> {
    return (await getJson<{ w: Write }>(this.#db, `B!${policy}`))?.w;
  }
}
