/**
 * The webhook projection (issue 17, item 5): subscriptions as the log's
 * webhook.set / webhook.deleted events leave them. It also applies (as
 * nothing) the records only webhooks announce: failover.recorded and
 * quota.exceeded.
 *
 * Keys (values are JSON):
 *   wh!<project>!<name>     a subscription        {subscription | null, w}   last writer wins
 *
 * Keyed by project, so a project admin's change can only ever reach their
 * own project's subscriptions (protocol/event-authority.ts). Last writer by
 * write order: commutative and idempotent, every region ends the same.
 */
import type { Write } from "../../../protocol/registers.js";
import { parseWebhookSubscription, type WebhookSubscription } from "../../../protocol/webhook.js";
import { Batch, getJson, type Handlers, olderWrite, type Projection, type ViewDb } from "./store.js";

/** Reads of the webhook projection (committed state). */
export interface WebhookReads {
  /** Live subscriptions by project then name, each with the write that set it. */
  subscriptions(): Promise<Array<{ subscription: WebhookSubscription; w: Write }>>;
}

export class WebhookProjection implements Projection, WebhookReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "webhook.set": (batch, e, w) =>
      this.#set(batch, String(e.subscription.project), String(e.subscription.name), e.subscription, w),
    "webhook.deleted": (batch, e, w) => this.#set(batch, e.project, e.name, null, w),
    // A request to a worker (replication/webhooks-follow.ts), which hears it as applied; no state.
    "webhook.replay": async () => undefined,
    // Records only a webhook announces (protocol/webhook.ts); they change no state.
    "failover.recorded": async () => undefined,
    "quota.exceeded": async () => undefined,
  };

  async #set(batch: Batch, project: string, name: string, subscription: unknown, w: Write): Promise<void> {
    const key = `wh!${project}!${name}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) return;
    batch.put(key, JSON.stringify({ subscription, w }));
  }

  async subscriptions(): Promise<Array<{ subscription: WebhookSubscription; w: Write }>> {
    const out: Array<{ subscription: WebhookSubscription; w: Write }> = [];
    for (const [, raw] of await new Batch(this.#db).entriesUnder("wh!")) {
      const { subscription, w } = JSON.parse(raw) as { subscription: unknown; w: Write };
      if (subscription !== null) out.push({ subscription: parseWebhookSubscription(subscription), w });
    }
    return out;
  }
}
