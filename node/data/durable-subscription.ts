/**
 * A durable, explicitly acknowledged JetStream consumer with ordered
 * outcomes: what `EventLog.subscribe` (jetstream-log.ts) and the replication
 * worker's consumer of every source region's stream (replication/
 * source-consumer.ts) are built on.
 *
 * The handler is called for each delivery, up to `depth` of them at once,
 * and returns its outcome explicitly:
 *   - `ack`: done; the source forgets it;
 *   - `retry-later`: not done; redelivered after `delayMs` (a nak with delay);
 *   - `give-up`: never to be done; terminated with its reason (the handler
 *     records why before it returns this: the source forgets it).
 * A handler that throws acknowledges nothing (`onError` hears of it): the
 * delivery comes again after the ack wait.
 *
 * Ordering: outcomes are applied strictly in stream order, each only after
 * every earlier delivery's; `delivery.earlier` resolves at that point, so a
 * handler may overlap its slow part (copying content) with others and await
 * `earlier` before its ordered part (appending). From delivery to its
 * outcome a message is kept alive (`working()` every third of the ack wait),
 * so one waiting for its turn is not redelivered; only `depth` are pulled at
 * once (each one's ack wait runs from its delivery).
 *
 * The durable is created, or its ack wait and max ack pending brought up to
 * date; pulls expire every `expiresMs` (5 s), so a pull lost to a broken
 * link is renewed within seconds of the heal. A consumer that fails (the
 * stream not there yet, the server unreachable) is set up again 500 ms
 * later (`onInterrupted` hears why), until `signal` aborts; then the pull
 * stops, the outcomes under way are applied, and `subscribe` resolves.
 * Every 2 s the server is asked where the durable stands (`onPending`).
 */

import { setTimeout as sleep } from "node:timers/promises";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

/** What became of one delivery (see the header). */
export type Outcome =
  | { outcome: "ack" }
  | { outcome: "retry-later"; delayMs: number }
  | { outcome: "give-up"; reason?: string };

export const ACK: Outcome = { outcome: "ack" };

export interface Delivery {
  /** Its sequence in the stream. */
  seq: number;
  data: Uint8Array;
  /** Delivered before (and not acknowledged). */
  redelivered: boolean;
  /** When the stream stored it (ms since the epoch). */
  storedAtMs: number;
  /** Messages of the stream after this one not yet delivered to the durable. */
  pending: number;
  /** Resolves once every earlier delivery's outcome is applied (never rejects). */
  earlier: Promise<void>;
}

export type DeliveryHandler = (delivery: Delivery) => Promise<Outcome>;

/** Where a durable stands at its server. */
export interface DurablePosition {
  deliveredSeq: number;
  ackFloorSeq: number;
  numPending: number;
}

export interface SubscribeOptions {
  /** Ends the subscription. */
  signal: AbortSignal;
  /** Deliveries handled at once (default 1). */
  depth?: number;
  /** How long the server waits for an outcome before redelivering, ms (default 4 s). */
  ackWaitMs?: number;
  /** Unacknowledged deliveries the server allows (default 256). */
  maxAckPending?: number;
  /** A handler threw (the delivery is not acknowledged). */
  onError?: (err: unknown, seq: number) => void;
  /** The consumer failed and is set up again shortly. */
  onInterrupted?: (err: unknown) => void;
  /** The server's answer about the durable, every 2 s. */
  onPending?: (position: DurablePosition) => void;
}

const DEFAULT_ACK_WAIT_MS = 4_000;
/** Pull requests expire this often (not the client's default 30 s). */
const PULL_EXPIRES_MS = 5_000;
const RESTART_MS = 500;
const PENDING_EVERY_MS = 2_000;

/** Consume `stream` through the durable `durable` until `options.signal` aborts (see the header). */
export async function subscribeDurable(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  handler: DeliveryHandler,
  options: SubscribeOptions,
): Promise<void> {
  const { signal } = options;
  const pendingTimer =
    options.onPending === undefined
      ? undefined
      : setInterval(() => {
          jsm.consumers.info(stream, durable).then(
            (info) =>
              options.onPending?.({
                deliveredSeq: info.delivered.stream_seq,
                ackFloorSeq: info.ack_floor.stream_seq,
                numPending: info.num_pending,
              }),
            () => undefined, // unanswered: the caller keeps what it was told last
          );
        }, PENDING_EVERY_MS);
  try {
    while (!signal.aborted) {
      try {
        await consumeOnce(js, jsm, stream, durable, handler, options);
      } catch (err) {
        if (!signal.aborted) options.onInterrupted?.(err);
      }
      if (!signal.aborted) await sleep(RESTART_MS, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    clearInterval(pendingTimer);
  }
}

async function consumeOnce(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  handler: DeliveryHandler,
  options: SubscribeOptions,
): Promise<void> {
  const { signal } = options;
  const depth = Math.max(1, options.depth ?? 1);
  const ackWaitMs = options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
  const config = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    max_ack_pending: options.maxAckPending ?? 256,
  };
  try {
    await jsm.consumers.add(stream, config);
  } catch (err) {
    // The durable exists with older settings: bring them up to date.
    const info = await jsm.consumers.info(stream, durable).catch(() => undefined);
    if (info === undefined) throw err;
    await jsm.consumers.update(stream, durable, {
      ack_wait: config.ack_wait,
      max_ack_pending: config.max_ack_pending,
    });
  }
  const consumer = await js.consumers.get(stream, durable);
  const messages = await consumer.consume({ max_messages: depth, expires: PULL_EXPIRES_MS });
  const stop = () => messages.stop();
  signal.addEventListener("abort", stop, { once: true });
  let applied: Promise<void> = Promise.resolve();
  let inFlight = 0;
  let slotFreed: (() => void) | undefined;
  try {
    for await (const m of messages) {
      // Kept alive from delivery to its outcome: one waiting for its turn must not be redelivered.
      const keepAlive = setInterval(() => m.working(), ackWaitMs / 3);
      const earlier = applied;
      const outcome = handler({
        seq: m.seq,
        data: m.data,
        redelivered: m.redelivered,
        storedAtMs: m.info.timestampNanos / 1e6,
        pending: m.info.pending,
        earlier,
      });
      // Handled below once its turn comes; marked handled now, so one failing early is no unhandled rejection.
      outcome.catch(() => undefined);
      inFlight++;
      applied = earlier
        .then(() => outcome)
        .then((o) => settle(m, o))
        .catch((err) => options.onError?.(err, m.seq))
        .finally(() => {
          clearInterval(keepAlive);
          inFlight--;
          slotFreed?.();
        });
      while (inFlight >= depth && !signal.aborted)
        await new Promise<void>((resolve) => {
          slotFreed = resolve;
        });
      if (signal.aborted) break;
    }
  } finally {
    signal.removeEventListener("abort", stop);
    messages.stop();
    await applied;
  }
}

function settle(m: JsMsg, o: Outcome): void {
  switch (o.outcome) {
    case "ack":
      m.ack();
      return;
    case "retry-later":
      m.nak(o.delayMs);
      return;
    case "give-up":
      m.term(o.reason?.slice(0, 200));
      return;
  }
}
