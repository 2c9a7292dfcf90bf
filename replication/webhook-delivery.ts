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
 * The receiver's name is resolved once per attempt, every address checked
 * (link-local/cloud metadata 169.254.169.254, unspecified, multicast never;
 * loopback only with `allowLoopback`), and the connection made to the
 * checked address (./webhook-http.ts): a name re-resolving between check
 * and connection (DNS rebinding) cannot reach a refused address.
 *
 * SIEM subscriptions (`siem: true`, protocol/siem.ts) are delivered by the
 * same loop from the region's audit stream (`AUDIT_<region>`) through a
 * durable `siem-<name>`: one POST per stored audit message, a CloudEvents
 * batch of its records (up to 256), same signature, retries, delivery log
 * and replay (from a sequence of the audit stream). A new durable starts
 * at the first stored record (DeliverPolicy.All): a new SIEM gets the
 * retained audit history, as a new webhook gets the stream's.
 *
 * Orphans: `delete` removes a subscription's durable; `removeOrphans`
 * (called once the worker's caught-up view's subscriptions run,
 * ./webhooks-follow.ts) deletes every `webhook-*` durable on the region's
 * stream and `siem-*` durable on its audit stream that no subscription
 * has: those deleted while the worker was down.
 *
 * The secret is held in memory only, never logged nor put in a record.
 * Every attempt goes into the subscription's bounded delivery log (the last
 * `historySize`): event id, sequence, HTTP status or error, duration.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { ACK, type Delivery, type Outcome, subscribeDurable } from "../node/data/durable-subscription.js";
import { decodeEvent, streamName } from "../protocol/events.js";
import { auditCloudEvents, auditStreamName, SIEM_CONTENT_TYPE } from "../protocol/siem.js";
import {
  cloudEventFor,
  signWebhook,
  type WebhookSubscription,
  webhookBackoffMs,
} from "../protocol/webhook.js";
import { postPinned, type Resolver } from "./webhook-http.js";

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
  /** Resolves receivers' names (default: the system's; tests inject one). */
  resolve?: Resolver;
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

/** The durable consumer name of SIEM subscription `name` (on the audit stream). */
export function siemDurable(name: string): string {
  return `siem-${name.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
}

/** What one delivery sends. */
interface Outgoing {
  id: string;
  type: string;
  body: string;
  contentType: string;
}

export class WebhookDeliverer {
  readonly #o: Required<Omit<WebhookDelivererOptions, "js" | "jsm" | "logger" | "resolve">> &
    WebhookDelivererOptions;
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
    const name = target.subscription.name;
    const before = this.#running.get(name)?.target.subscription.siem === true;
    await this.#stop(name);
    // Turned from a webhook into a SIEM (or back): its position on the other stream means nothing now.
    if (before !== (target.subscription.siem === true)) {
      const old = this.#where(name, before);
      await this.#o.jsm.consumers.delete(old.stream, old.durable).catch(() => false);
    }
    this.#start(target);
  }

  /** Stop delivering to `name`; its durable position is deleted (a subscription deleted). */
  async delete(name: string): Promise<void> {
    const siem = this.#running.get(name)?.target.subscription.siem === true;
    await this.#stop(name);
    this.#history.delete(name);
    const { stream, durable } = this.#where(name, siem);
    await this.#o.jsm.consumers.delete(stream, durable).catch(() => false);
  }

  /**
   * Delete the durables no subscription in `keep` has (`webhook-*` on the
   * region's stream, `siem-*` on its audit stream); the names deleted.
   */
  async removeOrphans(keep: readonly WebhookSubscription[]): Promise<string[]> {
    const removed: string[] = [];
    for (const siem of [false, true]) {
      const { stream } = this.#where("", siem);
      const prefix = siem ? "siem-" : "webhook-";
      const wanted = new Set(
        keep.filter((s) => (s.siem === true) === siem).map((s) => this.#where(s.name, siem).durable),
      );
      let names: string[];
      try {
        names = (await this.#o.jsm.consumers.list(stream).next()).map((c) => c.name);
      } catch {
        continue; // no such stream (no audit log in this region yet): nothing to clean
      }
      for (const name of names)
        if (name.startsWith(prefix) && !wanted.has(name)) {
          await this.#o.jsm.consumers.delete(stream, name).catch(() => false);
          removed.push(name);
        }
    }
    if (removed.length > 0) this.#o.logger.info({ durables: removed }, "webhook orphan durables removed");
    return removed;
  }

  /** Deliver again every event from `fromSeq` on (same ids): the durable is recreated there. */
  async replay(name: string, fromSeq: number): Promise<void> {
    const running = this.#running.get(name);
    if (running === undefined) throw new Error(`no webhook ${name}`);
    await this.#stop(name);
    const { stream, durable } = this.#where(name, running.target.subscription.siem === true);
    await this.#o.jsm.consumers.delete(stream, durable).catch(() => false);
    await this.#o.jsm.consumers.add(stream, {
      ...this.#consumerConfig(durable),
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

  /** The stream and durable of subscription `name` (a SIEM's: the audit stream). */
  #where(name: string, siem: boolean): { stream: string; durable: string } {
    return siem
      ? { stream: auditStreamName(this.#o.region), durable: siemDurable(name) }
      : { stream: streamName(this.#o.region), durable: webhookDurable(name) };
  }

  #consumerConfig(durable: string) {
    return {
      durable_name: durable,
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
    const { stream, durable } = this.#where(name, target.subscription.siem === true);
    running.done = subscribeDurable(
      this.#o.js,
      this.#o.jsm,
      stream,
      durable,
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

  /** What delivery `d` sends to `running`'s receiver; undefined: nothing (acknowledged at once). */
  #outgoing(running: Running, d: Delivery): Outgoing | undefined {
    const { subscription } = running.target;
    if (subscription.siem === true) {
      const events = auditCloudEvents(
        Buffer.from(d.data).toString("utf8").split("\n"),
        this.#o.region,
        d.seq,
      );
      if (events.length === 0) return undefined;
      return {
        // The delivery log's id of a batch: its first record's (the rest follow from the sequence).
        id: (events[0] as { id: string }).id,
        type: `io.meridian.audit (${events.length})`,
        body: JSON.stringify(events),
        contentType: SIEM_CONTENT_TYPE,
      };
    }
    let event: ReturnType<typeof decodeEvent>;
    try {
      event = decodeEvent(d.data);
    } catch {
      return undefined; // not an event this version reads: nothing to announce
    }
    const ce = cloudEventFor(subscription, event, this.#o.region);
    if (ce === undefined) return undefined;
    return {
      id: ce.id,
      type: ce.type,
      body: JSON.stringify(ce),
      contentType: "application/cloudevents+json; charset=utf-8",
    };
  }

  async #handle(running: Running, d: Delivery): Promise<Outcome> {
    const { subscription, secret } = running.target;
    const out = this.#outgoing(running, d);
    if (out === undefined) return ACK;
    const attempt = (running.attempts.get(out.id) ?? 0) + 1;
    const started = performance.now();
    const record: DeliveryAttempt = {
      eventId: out.id,
      seq: d.seq,
      type: out.type,
      at: new Date().toISOString(),
      durationMs: 0,
      attempt,
    };
    try {
      const timestamp = Math.floor(Date.now() / 1000);
      const status = await postPinned(subscription.url, {
        headers: {
          "content-type": out.contentType,
          "x-meridian-timestamp": String(timestamp),
          // No key (no secretFile, or unreadable here): unsigned, so a checking receiver refuses it.
          ...(secret.length > 0 ? { "x-meridian-signature": signWebhook(secret, timestamp, out.body) } : {}),
        },
        body: out.body,
        timeoutMs: this.#o.timeoutMs,
        signal: running.abort.signal,
        allowLoopback: this.#o.allowLoopback,
        ...(this.#o.resolve === undefined ? {} : { resolve: this.#o.resolve }),
      });
      record.status = status;
      if (status < 200 || status > 299) record.error = `receiver answered ${status}`;
    } catch (err) {
      record.error = errorText(err);
    }
    record.durationMs = Math.round(performance.now() - started);
    this.#remember(subscription.name, record);
    if (record.error === undefined) {
      running.attempts.delete(out.id);
      return ACK;
    }
    running.attempts.set(out.id, attempt);
    const delayMs = Math.max(
      10,
      Math.round(webhookBackoffMs(attempt - 1, Math.random()) * this.#o.backoffScale),
    );
    return { outcome: "retry-later", delayMs };
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
