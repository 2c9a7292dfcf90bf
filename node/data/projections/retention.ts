/**
 * The retention projection (issue 15, item 2): retention rules as the log's
 * retention.set / retention.deleted events leave them, and the last pull of
 * each manifest anywhere in the mesh as pulls.recorded events report it.
 *
 * Keys (values are JSON):
 *   ret!<name>              a retention rule      {rule | null, w}   last writer wins
 *   pull!<repo>!<digest>    last pull known       {at}               the latest time wins
 *
 * Both merges are commutative and idempotent (last writer by write order;
 * maximum of times), so every region ends with the same state whatever
 * order the events reach it in.
 */
import type { Write } from "../../../protocol/registers.js";
import { parseRetentionRule, type RetentionRule } from "../../../protocol/retention.js";
import { Batch, getJson, type Handlers, olderWrite, type Projection, type ViewDb } from "./store.js";

/** Reads of the retention projection (committed state). */
export interface RetentionReads {
  /** Live rules by name order, each with the write that set it. */
  rules(): Promise<Array<{ rule: RetentionRule; w: Write }>>;
  /** The last known pull (ms) of each manifest of `repo` that was ever pulled, by digest. */
  pulls(repo: string): Promise<Map<string, number>>;
  /** The last known pull (ms) of one manifest; undefined: never recorded. */
  pulledAt(repo: string, digest: string): Promise<number | undefined>;
}

export class RetentionProjection implements Projection, RetentionReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "retention.set": (batch, e, w) => this.#setRule(batch, e.name, e.rule, w),
    "retention.deleted": (batch, e, w) => this.#setRule(batch, e.name, null, w),
    "pulls.recorded": async (batch, e) => {
      for (const p of e.pulls) {
        const key = `pull!${p.repo}!${p.digest}`;
        const at = Date.parse(p.at);
        const current = await getJson<{ at: number }>(batch, key);
        if (current === undefined || current.at < at) batch.put(key, JSON.stringify({ at }));
      }
    },
  };

  async #setRule(batch: Batch, name: string, rule: unknown, w: Write): Promise<void> {
    const key = `ret!${name}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ rule, w }));
  }

  async rules(): Promise<Array<{ rule: RetentionRule; w: Write }>> {
    const out: Array<{ rule: RetentionRule; w: Write }> = [];
    for (const [, raw] of await new Batch(this.#db).entriesUnder("ret!")) {
      const { rule, w } = JSON.parse(raw) as { rule: unknown; w: Write };
      // Checked when the event was validated; read again so a stored rule is always the normalized shape.
      if (rule !== null) out.push({ rule: parseRetentionRule(rule), w });
    }
    return out;
  }

  async pulledAt(repo: string, digest: string): Promise<number | undefined> {
    return (await getJson<{ at: number }>(this.#db, `pull!${repo}!${digest}`))?.at;
  }

  async pulls(repo: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const [digest, raw] of await new Batch(this.#db).entriesUnder(`pull!${repo}!`))
      out.set(digest, (JSON.parse(raw) as { at: number }).at);
    return out;
  }
}
