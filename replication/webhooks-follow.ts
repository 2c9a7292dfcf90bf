/**
 * Keeps the worker's webhook deliveries (webhook-delivery.ts) in step with
 * the subscriptions its view holds (node/data/projections/webhooks.ts): all
 * of them at start, then each webhook.set / webhook.deleted as the view
 * applies it. The HMAC key is read from the subscription's `secretFile` on
 * this host at each (re)start of its delivery; a missing file is logged
 * (path only) and the subscription delivers unsigned, so a receiver that
 * checks signatures refuses them rather than the mesh silently skipping.
 *
 * Once the subscriptions held at start run, the durables of subscriptions
 * that no longer exist (deleted while this worker was down) are removed
 * (WebhookDeliverer.removeOrphans). The worker's view has caught up with the
 * log before this starts (main.ts), so a subscription missing from it was
 * deleted, not merely not yet seen.
 *
 * A `webhook.replay` naming this region re-delivers from its sequence when
 * the view applies it, if it was made less than REPLAY_FRESH_MS ago: a view
 * rebuilt from the start of the log applies every old request again, and
 * those must not re-send history.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { MetadataView } from "../node/data/view.js";
import type { WebhookSubscription } from "../protocol/webhook.js";
import type { WebhookDeliverer } from "./webhook-delivery.js";

export interface WebhookFollower {
  /** Stop following (deliveries stop with the deliverer's close). */
  stop(): void;
  /** Resolves once the subscriptions held at start are running. */
  ready: Promise<void>;
}

/** How recent a replay request must be to be carried out when applied. */
export const REPLAY_FRESH_MS = 10 * 60_000;

export function followWebhooks(
  view: MetadataView,
  deliverer: WebhookDeliverer,
  region: string,
  logger: Logger,
): WebhookFollower {
  const running = new Map<string, string>();
  let chain: Promise<void> = Promise.resolve();
  const sync = async () => {
    const wanted = new Map<string, WebhookSubscription>();
    for (const { subscription } of await view.webhooks.subscriptions())
      wanted.set(subscription.name, subscription);
    for (const name of [...running.keys()])
      if (!wanted.has(name)) {
        running.delete(name);
        await deliverer.delete(name);
      }
    for (const [name, subscription] of wanted) {
      const text = JSON.stringify(subscription);
      if (running.get(name) === text) continue;
      running.set(name, text);
      await deliverer.set({ subscription, secret: await secretOf(subscription, logger) });
    }
  };
  const again = () => {
    chain = chain.then(sync).catch((err) => logger.warn({ err }, "webhook subscriptions not applied"));
    return chain;
  };
  const unsubscribe = view.applied.subscribe((event) => {
    if (event.type === "webhook.set" || event.type === "webhook.deleted") void again();
    if (
      event.type === "webhook.replay" &&
      event.region === region &&
      Date.now() - Date.parse(event.at) < REPLAY_FRESH_MS
    ) {
      const { name, fromSeq } = event;
      chain = chain
        .then(() => deliverer.replay(name, fromSeq))
        .then(() => logger.info({ webhook: name, seq: fromSeq }, "webhook replay"))
        .catch((err) => logger.warn({ webhook: name, err }, "webhook replay failed"));
    }
  });
  const ready = again().then(async () => {
    const keep = (await view.webhooks.subscriptions()).map((s) => s.subscription);
    await deliverer.removeOrphans(keep).catch((err) => logger.warn({ err }, "webhook orphans not removed"));
  });
  return { stop: unsubscribe, ready };
}

async function secretOf(subscription: WebhookSubscription, logger: Logger): Promise<Buffer> {
  if (subscription.secretFile === undefined) return Buffer.alloc(0);
  try {
    return Buffer.from((await readFile(subscription.secretFile, "utf8")).trim());
  } catch (err) {
    logger.warn(
      { webhook: subscription.name, path: subscription.secretFile, err: (err as Error).message },
      "webhook secret unreadable",
    );
    return Buffer.alloc(0);
  }
}
