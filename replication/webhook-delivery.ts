/**
 * Webhook delivery (issue 17, item 5): announces the region's own log as
 * CloudEvents (protocol/webhook.ts has what is announced and how it is
 * signed). It belongs to the replication worker, the process that already
 * follows the region's log and is never on a request's path: a slow or dead
 * receiver can only hold back its own subscription's deliveries, never a
 * push (the push is committed to the log before anything here sees it).
 *
 * Per subscription: one JetStream durable consumer on the region's stream
 * (`webhook-<name>`), so its position survives restarts; deliveries are at
 * least once with the log event's id as the CloudEvent id. A delivery is a
 * POST with a timeout (default 10 s); a non-2xx answer, a timeout or a
 * refused address is retried by a nak with exponential backoff and jitter
 * (1 s doubling to 5 min; `webhookBackoffMs`), the position unmoved for that
 * event only: later events keep flowing, at most `maxInFlight` unacknowledged
 * per subscription (the durable's max ack pending). Subscriptions are
 * independent consumers, so one never blocks another.
 *
 * The receiver's name is resolved before each delivery and refused when an
 * address is link-local, unspecified or multicast (cloud metadata,
 * 169.254.169.254: SSRF), or loopback unless `allowLoopback`
 * (`receiverAddressAllowed`). The resolution and the connection are two
 * lookups, so a name that re-resolves between them is not caught (DNS
 * rebinding; a pinned-address agent is left for later).
 *
 * The secret is held in memory only, never logged nor put in a record.
 * Every attempt goes into the subscription's bounded delivery log (the last
 * `historySize`): event id, sequence, HTTP status or error, duration.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { ACK, type Delivery, type Outcome, subscribeDurable } from "../node/data/durable-subscription.js";
import { decodeEvent, streamName } from "../protocol/events.js";
import {
  cloudEventFor,
  receiverAddressAllowed,
  signWebhook,
  type WebhookSubscription,
  webhookBackoffMs,
} from "../protocol/webhook.js";

export interface WebhookTarget {
  subscription: WebhookSubscription;
  /** The HMAC key (read from the subscription's secret by the caller). */
  secret: Buffer;
}

/** One attempt, as the delivery log keeps it. */
export interface DeliveryAttempt {
  eventId: string;
  seq: number;
  type: string;
  at: string;
  /** The receiver's HTTP status; absent when no answer came. */
  status?: number;
  /** Why it failed (fixed short strings and the cause's message; never the secret). */
  error?: string;
  durationMs: number;
  attempt: number;
}

export interface WebhookDelivererOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  region: string;
  logger: Logger;
  /** Per-delivery timeout, ms (default 10 s). */
  timeoutMs?: number;
  /** Unacknowledged deliveries per subscription (default 64). */
  maxInFlight?: number;
  /** Attempts kept per subscription (default 100). */
  historySize?: number;
  /** Allow receivers on loopback addresses (tests, single-host labs); default false. */
  allowLoopback?: boolean;
  /** Scales the backoff (tests: 0.05 makes 1 s into 50 ms); default 1. */
  backoffScale?: number;
}

interface Running {
  target: WebhookTarget;
  abort: AbortController;
  done: Promise<void>;
  attempts: Map<string, number>;
}

/** The durable consumer name of subscription `name`. */
export function webhookDurable(name: string): string {
  return `webhook-${name.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
}

export class WebhookDeliverer {
  readonly #o: Required<Omit<WebhookDelivererOptions, "js" | "jsm" | "logger">> & WebhookDelivererOptions;
  readonly #running = new Map<string, Running>();
  readonly #history = new Map<string, DeliveryAttempt[]>();

  constructor(options: WebhookDelivererOptions) {
    this.#o = {
      timeoutMs: 10_000,
      maxInFlight: 64,
      historySize: 100,
      allowLoopback: false,
      backoffScale: 1,
      ...options,
    };
  }

  /** Start (or restart with new settings) delivering to `target`. */
  async set(target: WebhookTarget): Promise<void> {
    await this.#stop(target.subscription.name);
    this.#start(target);
  }

  /** Stop delivering to `name`; its durable position is deleted (a subscription deleted). */
  async delete(name: string): Promise<void> {
    await this.#stop(name);
    this.#history.delete(name);
    await this.#o.jsm.consumers.delete(streamName(this.#o.region), webhookDurable(name)).catch(() => false);
  }

  /** Deliver again every event from `fromSeq` on (same ids): the durable is recreated there. */
  async replay(name: string, fromSeq: number): Promise<void> {
    const running = this.#running.get(name);
    if (running === undefined) throw new Error(`no webhook ${name}`);
    await this.#stop(name);
    const stream = streamName(this.#o.region);
    await this.#o.jsm.consumers.delete(stream, webhookDurable(name)).catch(() => false);
    await this.#o.jsm.consumers.add(stream, {
      ...this.#consumerConfig(name),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, fromSeq),
    });
    this.#start(running.target);
  }

  /** The last attempts of `name`, oldest first (empty: none or unknown). */
  deliveries(name: string): DeliveryAttempt[] {
    return [...(this.#history.get(name) ?? [])];
  }

  /** The last attempts of every subscription that made one, by name. */
  allDeliveries(): Record<string, DeliveryAttempt[]> {
    return Object.fromEntries([...this.#history].map(([name, list]) => [name, [...list]]));
  }

  /** Stop every subscription (their durables stay). */
  async close(): Promise<void> {
    await Promise.all([...this.#running.keys()].map((name) => this.#stop(name)));
  }

  #consumerConfig(name: string) {
    return {
      durable_name: webhookDurable(name),
      ack_policy: "explicit" as const,
      ack_wait: (this.#o.timeoutMs + 5_000) * 1_000_000,
      max_ack_pending: this.#o.maxInFlight,
    };
  }

  #start(target: WebhookTarget): void {
    const name = target.subscription.name;
    const abort = new AbortController();
    const running: Running = { target, abort, attempts: new Map(), done: Promise.resolve() };
    const log = this.#o.logger.child({ webhook: name });
    running.done = subscribeDurable(
      this.#o.js,
      this.#o.jsm,
      streamName(this.#o.region),
      webhookDurable(name),
      (d) => this.#handle(running, d),
      {
        signal: abort.signal,
        depth: Math.min(8, this.#o.maxInFlight),
        ackWaitMs: this.#o.timeoutMs + 5_000,
        maxAckPending: this.#o.maxInFlight,
        onError: (err, seq) => log.warn({ err, seq }, "webhook handler failed"),
        onInterrupted: (err) => log.debug({ err }, "webhook consumer interrupted"),
      },
    );
    this.#running.set(name, running);
  }

  async #stop(name: string): Promise<void> {
    const running = this.#running.get(name);
    if (running === undefined) return;
    this.#running.delete(name);
    running.abort.abort();
    await running.done;
  }

  async #handle(running: Running, d: Delivery): Promise<Outcome> {
    const { subscription, secret } = running.target;
    let event: ReturnType<typeof decodeEvent>;
    try {
      event = decodeEvent(d.data);
    } catch {
      return ACK; // not an event this version reads: nothing to announce
    }
    const ce = cloudEventFor(subscription, event, this.#o.region);
    if (ce === undefined) return ACK;
    const attempt = (running.attempts.get(ce.id) ?? 0) + 1;
    const body = JSON.stringify(ce);
    const started = performance.now();
    const record: DeliveryAttempt = {
      eventId: ce.id,
      seq: d.seq,
      type: ce.type,
      at: new Date().toISOString(),
      durationMs: 0,
      attempt,
    };
    try {
      await this.#checkReceiver(subscription.url);
      const timestamp = Math.floor(Date.now() / 1000);
      const signal = AbortSignal.any([running.abort.signal, AbortSignal.timeout(this.#o.timeoutMs)]);
      const res = await fetch(subscription.url, {
        method: "POST",
        headers: {
          "content-type": "application/cloudevents+json; charset=utf-8",
          "x-meridian-timestamp": String(timestamp),
          // No key (no secretFile, or unreadable here): unsigned, so a checking receiver refuses it.
          ...(secret.length > 0 ? { "x-meridian-signature": signWebhook(secret, timestamp, body) } : {}),
        },
        body,
        redirect: "manual",
        signal,
      });
      await res.body?.cancel().catch(() => undefined);
      record.status = res.status;
      if (res.status < 200 || res.status > 299) record.error = `receiver answered ${res.status}`;
    } catch (err) {
      record.error = errorText(err);
    }
    record.durationMs = Math.round(performance.now() - started);
    this.#remember(subscription.name, record);
    if (record.error === undefined) {
      running.attempts.delete(ce.id);
      return ACK;
    }
    running.attempts.set(ce.id, attempt);
    const delayMs = Math.max(
      10,
      Math.round(webhookBackoffMs(attempt - 1, Math.random()) * this.#o.backoffScale),
    );
    return { outcome: "retry-later", delayMs };
  }

  async #checkReceiver(url: string): Promise<void> {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
    const addresses = isIP(host) !== 0 ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
    for (const address of addresses)
      if (!receiverAddressAllowed(address, this.#o.allowLoopback))
        throw new Error(`receiver address ${address} refused`);
  }

  #remember(name: string, record: DeliveryAttempt): void {
    let list = this.#history.get(name);
    if (list === undefined) {
      list = [];
      this.#history.set(name, list);
    }
    list.push(record);
    if (list.length > this.#o.historySize) list.splice(0, list.length - this.#o.historySize);
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return "timed out";
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
  }
  return String(err);
}
