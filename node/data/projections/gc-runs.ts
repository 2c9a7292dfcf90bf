/**
 * The GC-runs projection: each garbage-collection run of any region
 * (node/data/gc.ts), as its `gc.run` and `gc.finished` events leave it, so
 * `meridian gc run` can read a run's summary from whichever node answers
 * and audit can list runs. (`gc.collected`, which drops stale links, is the
 * content projection's: it owns the links.)
 *
 * Keys (values are JSON):
 *   gc!<runId>          a GC run             GcRunRecord
 */
import { getJson, type Handlers, type Projection, type ViewDb } from "./store.js";

export interface GcRunRecord {
  runId: string;
  region: string;
  dryRun: boolean;
  graceMs: number;
  undeleteWindowMs: number;
  trigger: string;
  actor: string;
  at: string;
  finished?: { outcome: string; stats: Record<string, number>; error?: string; at: string };
}

/** Reads of the GC-runs projection (committed state). */
export interface GcRunReads {
  /** One run; undefined when neither its start nor its end was seen. */
  gcRun(runId: string): Promise<GcRunRecord | undefined>;
}

export class GcRunsProjection implements Projection, GcRunReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "gc.run": async (batch, e) => {
      const current = await getJson<GcRunRecord>(batch, `gc!${e.runId}`);
      const run: GcRunRecord = {
        runId: e.runId,
        region: e.region,
        dryRun: e.dryRun,
        graceMs: e.graceMs,
        undeleteWindowMs: e.undeleteWindowMs,
        trigger: e.trigger,
        actor: e.actor,
        at: e.at,
        finished: current?.finished,
      };
      batch.put(`gc!${e.runId}`, JSON.stringify(run));
    },
    "gc.finished": async (batch, e) => {
      const run = (await getJson<GcRunRecord>(batch, `gc!${e.runId}`)) ?? {
        runId: e.runId,
        region: e.region,
        dryRun: false,
        graceMs: 0,
        undeleteWindowMs: 0,
        trigger: "",
        actor: e.actor,
        at: e.at,
      };
      run.finished = { outcome: e.outcome, stats: e.stats, error: e.error, at: e.at };
      batch.put(`gc!${e.runId}`, JSON.stringify(run));
    },
  };

  gcRun(runId: string): Promise<GcRunRecord | undefined> {
    return getJson<GcRunRecord>(this.#db, `gc!${runId}`);
  }
}
