/**
 * Promotion gates and promotions (issue 17, item 2; protocol/promotion.ts):
 * gate configurations as `gate.set` / `gate.deleted` leave them, and every
 * `promotion.recorded`.
 *
 * Keys (values are JSON):
 *   gate!<scope>!<name>                  {gates | null, w}      last writer wins
 *   pro!<promotion id>                   {record, w}            the latest record of that id (by write order)
 *   prt!<repo>!<tag>!<hlc>!<write id>    {record, w}            one per record and tag it touched: the
 *                                                               source tag, and the destination tag when it
 *                                                               is in the mesh (region or repository)
 *
 * Gates merge as every admin object (last writer by write order: the same
 * everywhere whatever order events arrive in). A promotion id names the same
 * promotion every time (a retry, a refusal then a pass): `pro!` keeps the
 * latest record, `prt!` keeps them all, in clock order, for `tag history`.
 */
import type { GateConfig } from "../../../protocol/gates.js";
import type { GateScope, GateScopeKind, PromotionRecord } from "../../../protocol/promotion.js";
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

export interface StoredGates {
  scope: GateScope;
  gates: GateConfig;
  w: Write;
}

export interface StoredPromotion {
  record: PromotionRecord;
  w: Write;
}

export interface PromotionReads {
  /** Every live gate configuration, in scope order. */
  gates(): Promise<StoredGates[]>;
  /** One scope's configuration, or undefined. */
  gate(scope: GateScope): Promise<StoredGates | undefined>;
  /** The latest record of a promotion id, or undefined. */
  promotion(id: string): Promise<StoredPromotion | undefined>;
  /** Every record that touched `repo:tag` (as source or destination), oldest first. */
  promotionsOfTag(repo: string, tag: string): Promise<StoredPromotion[]>;
}

export class PromotionProjection implements Projection, PromotionReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "gate.set": (batch, e, w) => this.#setGates(batch, e.scope, e.name, e.gates, w),
    "gate.deleted": (batch, e, w) => this.#setGates(batch, e.scope, e.name, null, w),
    "promotion.recorded": async (batch, e, w) => {
      const record: PromotionRecord = {
        promotionId: e.promotionId,
        source: e.source,
        destination: e.destination,
        gates: e.gates,
        outcome: e.outcome,
      };
      const value = JSON.stringify({ record, w });
      const key = `pro!${e.promotionId}`;
      const current = await getJson<{ w: Write }>(batch, key);
      if (current === undefined || olderWrite(current.w, w)) batch.put(key, value);
      const at = `${hlcKey(w.hlc)}!${w.id}`;
      batch.put(`prt!${e.source.repository}!${e.source.tag}!${at}`, value);
      const d = e.destination;
      if (d.kind !== "endpoint" && !(d.repository === e.source.repository && d.tag === e.source.tag))
        batch.put(`prt!${d.repository}!${d.tag}!${at}`, value);
    },
  };

  async #setGates(
    batch: Batch,
    scope: GateScopeKind,
    name: string,
    gates: GateConfig | null,
    w: Write,
  ): Promise<void> {
    const key = `gate!${scope}!${name}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ gates, w }));
  }

  async gates(): Promise<StoredGates[]> {
    const out: StoredGates[] = [];
    for (const [key, raw] of await new Batch(this.#db).entriesUnder("gate!")) {
      const v = JSON.parse(raw) as { gates: GateConfig | null; w: Write };
      const [kind, name] = key.split("!") as [GateScopeKind, string]; // entriesUnder drops the prefix
      if (v.gates !== null) out.push({ scope: { kind, name }, gates: v.gates, w: v.w });
    }
    return out;
  }

  async gate(scope: GateScope): Promise<StoredGates | undefined> {
    const v = await getJson<{ gates: GateConfig | null; w: Write }>(
      this.#db,
      `gate!${scope.kind}!${scope.name}`,
    );
    return v === undefined || v.gates === null ? undefined : { scope, gates: v.gates, w: v.w };
  }

  promotion(id: string): Promise<StoredPromotion | undefined> {
    return getJson<StoredPromotion>(this.#db, `pro!${id}`);
  }

  async promotionsOfTag(repo: string, tag: string): Promise<StoredPromotion[]> {
    const prefix = `prt!${repo}!${tag}!`;
    const out: StoredPromotion[] = [];
    for await (const raw of this.#db.values({ gt: prefix, lt: prefix + END })) out.push(JSON.parse(raw));
    return out;
  }
}
