/**
 * EventLog on NATS JetStream: one stream per region (`streamName(region)`),
 * file storage, message-id de-duplication over a two-minute window, and
 * expected-last-subject-sequence checks for compare-and-set appends.
 *
 * The connection (nats-connection.ts) is made in the background and retried forever, so a node can
 * start and serve reads while NATS is down; `writable` tells whether appends
 * can go through right now, and `append` fails fast with LogUnavailableError
 * instead of queueing while disconnected.
 */

import { setTimeout as sleep } from "node:timers/promises";
import {
  DeliverPolicy,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { nanos, RequestError, TimeoutError } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { LogConflictError, LogUnavailableError } from "../../protocol/errors.js";
import {
  decodeEvent,
  encodeEvent,
  type RegistryEvent,
  streamName,
  streamSubjects,
  subjectFor,
} from "../../protocol/events.js";
import { type DeliveryHandler, type SubscribeOptions, subscribeDurable } from "./durable-subscription.js";
import type { AppendOptions, EventLog, LoggedEvent } from "./event-log.js";
import { describeNatsClient, type NatsClientConfig } from "./nats-connect.js";
import { type ManagedConnection, NatsConnectionManager } from "./nats-connection.js";

export interface JetStreamLogOptions {
  servers: string[];
  region: string;
  /** Connection name shown by the server (process role). */
  name: string;
  /** Credentials, inbox prefix and TLS (nats-connect.ts); none: anonymous. Ignored with `connections`. */
  nats?: NatsClientConfig;
  /**
   * The process's connection manager (nats-connection.ts), which then owns
   * the client configuration; none: the log makes one of its own.
   */
  connections?: NatsConnectionManager;
  /** How long an append may wait for the server's acknowledgement. */
  appendTimeoutMs?: number;
  /** Replicas of the stream when this log creates it; default the client configuration's `replicas`, else 1. */
  replicas?: number;
  logger: Logger;
}

const WRONG_LAST_SEQUENCE = 10071;
const NO_MESSAGE_FOUND = 10037;

/**
 * How long one pull of `tail` waits on the server (its idle heartbeat is half
 * of it; two missed heartbeats make the client ask again, recreating its
 * consumer when the server dropped it). The tail's ordered consumer is an
 * ephemeral one the server deletes after 5 minutes without a pull: after a
 * freeze of the region longer than that (SIGSTOP, a frozen VM; the server's
 * clock runs on while it is stopped) the server deletes it as it resumes.
 * With nats.js's default (30 s, heartbeats every 15 s) the view then stood
 * still for 30 s to two minutes while the log went on (issue 11: a node did
 * not serve what its worker had replicated for 75 s); with 5 s, within
 * about 5 s plus a consumer's creation.
 */
export const TAIL_PULL_EXPIRES_MS = 5_000;
/**
 * A tail that receives nothing for this long while the stream has events
 * past it drops its consumer and starts a new one from where it stands
 * (checked every half of it with one stream info): whatever stalls a
 * consumer — dropped by the server, a pull lost in a reconnection — the view
 * moves again within about this long of the server answering.
 */
export const TAIL_STALL_MS = 3_000;

const JETSTREAM_UNAVAILABLE = 10008;
const INSUFFICIENT_RESOURCES = 10023;
const NO_SUITABLE_PEERS = 10005;

/**
 * Run `step` (a stream check or creation) again while a JetStream cluster is
 * still forming — no meta leader yet ("temporarily unavailable", 503, or
 * no answer before the request's timeout), or
 * not enough servers known yet to place every replica — for at most
 * `withinMs`: a region's servers and its processes start together, and
 * the first seconds of a cluster are its election. Any other error, or the
 * same one past the bound, is thrown.
 */
export async function whileJetStreamForms<T>(step: () => Promise<T>, withinMs = 20_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await step();
    } catch (err) {
      // No answer at all (a timeout, no responders) is what a server gives while it has no meta leader.
      const forming =
        err instanceof TimeoutError ||
        (err instanceof RequestError && err.isNoResponders()) ||
        (err instanceof JetStreamApiError &&
          (err.status === 503 ||
            [JETSTREAM_UNAVAILABLE, INSUFFICIENT_RESOURCES, NO_SUITABLE_PEERS].includes(err.code)));
      if (!forming || Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

export class JetStreamLog implements EventLog {
  readonly #options: JetStreamLogOptions;
  readonly #stream: string;
  readonly #connection: ManagedConnection;
  /** The connection manager this log made for itself (closed with it), if it was given none. */
  readonly #ownManager: NatsConnectionManager | undefined;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #connected = false;
  #replicasWarned = false;
  #ready: Promise<void>;

  private constructor(options: JetStreamLogOptions) {
    this.#options = options;
    this.#stream = streamName(options.region);
    if (options.connections === undefined) this.#ownManager = new NatsConnectionManager(options.nats);
    const log = options.logger;
    this.#connection = (options.connections ?? this.#ownManager)!.open({
      servers: options.servers,
      name: options.name,
      reconnectTimeWaitMs: 250,
      onDisconnect: () => {
        this.#connected = false;
        log.warn("log disconnected");
      },
      onReconnect: () => {
        this.#ensureStream().then(
          () => {
            this.#connected = true;
            log.info("log reconnected");
          },
          (err) => log.error({ err }, "log stream check failed"),
        );
      },
    });
    this.#ready = this.#connect();
  }

  /** Start connecting; the returned log is usable at once (appends fail until connected). */
  static open(options: JetStreamLogOptions): JetStreamLog {
    return new JetStreamLog(options);
  }

  /** Resolves once connected and the stream exists (tests and one-shot commands wait on it). */
  ready(): Promise<void> {
    return this.#ready;
  }

  get writable(): boolean {
    return this.#connected && this.#js !== undefined;
  }

  async #connect(): Promise<void> {
    const nc = await this.#connection.connected;
    if (nc === undefined) return; // closed first
    this.#jsm = await whileJetStreamForms(() => jetstreamManager(nc));
    await this.#ensureStream();
    this.#js = jetstream(nc, { timeout: this.#options.appendTimeoutMs ?? 5_000 });
    this.#connected = true;
    const config = this.#options.connections?.config ?? this.#options.nats;
    this.#options.logger.info(
      { servers: this.#options.servers, as: describeNatsClient(config) },
      "log connected",
    );
  }

  async #ensureStream(): Promise<void> {
    const jsm = this.#jsm!;
    const config = this.#options.connections?.config ?? this.#options.nats;
    const replicas = this.#options.replicas ?? config?.replicas ?? 1;
    await whileJetStreamForms(async () => {
      try {
        const info = await jsm.streams.info(this.#stream);
        // An existing stream keeps its replicas (only the operator may update a stream under
        // `up`; `nats stream edit --replicas` scales it): say so rather than pretend.
        if (info.config.num_replicas !== replicas && !this.#replicasWarned) {
          this.#replicasWarned = true;
          this.#options.logger.warn(
            { stream: this.#stream, replicas: info.config.num_replicas, configured: replicas },
            "the event stream exists with other replicas than nats.replicas; it keeps its own",
          );
        }
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
        await jsm.streams.add({
          name: this.#stream,
          subjects: [streamSubjects(this.#options.region)],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          duplicate_window: nanos(120_000),
          allow_direct: true,
          num_replicas: replicas,
        });
      }
    });
  }

  async append(
    event: RegistryEvent,
    options: AppendOptions = {},
  ): Promise<{ seq: number; duplicate: boolean }> {
    const js = this.#js;
    if (!this.#connected || js === undefined) throw new LogUnavailableError("event log unavailable");
    const subject = subjectFor(this.#options.region, event);
    try {
      const ack = await js.publish(subject, encodeEvent(event), {
        msgID: event.id,
        expect:
          options.expectLastSubjectSeq === undefined
            ? undefined
            : { lastSubjectSequence: options.expectLastSubjectSeq },
      });
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        throw new LogConflictError("concurrent write to the same subject", { cause: err });
      }
      throw new LogUnavailableError("event log unavailable", { cause: err });
    }
  }

  /**
   * The last event on `subject`, from the stream's leader (STREAM.MSG.GET).
   * When JetStream answers "temporarily unavailable" (10008: the server the
   * client is on sees no meta leader, as for many seconds after a frozen
   * meta leader is thawed and disrupts the group that replaced it, while the
   * stream itself takes appends), it is read with a direct get instead
   * (DIRECT.GET, `allow_direct`, answered by any current replica without the
   * meta layer). A replica may answer a little behind the leader: the read
   * only seeds a compare-and-set append, which the leader checks, so a stale
   * answer costs one LogConflictError and a retry (commit-step.ts), never a
   * lost write.
   */
  async lastOnSubject(subject: string): Promise<LoggedEvent | undefined> {
    const jsm = this.#jsm;
    if (!this.#connected || jsm === undefined) throw new LogUnavailableError("event log unavailable");
    try {
      const m = await jsm.streams.getMessage(this.#stream, { last_by_subj: subject });
      if (m === null) return undefined;
      return { seq: m.seq, event: decodeEvent(m.data) };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === NO_MESSAGE_FOUND) return undefined;
      if (!(err instanceof JetStreamApiError && err.code === JETSTREAM_UNAVAILABLE)) {
        throw new LogUnavailableError("event log unavailable", { cause: err });
      }
    }
    try {
      const m = await jsm.direct.getMessage(this.#stream, { last_by_subj: subject });
      if (m === null) return undefined;
      return { seq: m.seq, event: decodeEvent(m.data) };
    } catch (err) {
      throw new LogUnavailableError("event log unavailable", { cause: err });
    }
  }

  async lastSeq(): Promise<number> {
    await this.#ready;
    try {
      const info = await this.#jsm!.streams.info(this.#stream);
      return info.state.last_seq;
    } catch (err) {
      throw new LogUnavailableError("event log unavailable", { cause: err });
    }
  }

  async *tail(fromSeq: number, signal: AbortSignal): AsyncIterable<LoggedEvent> {
    await this.#ready;
    let next = Math.max(1, fromSeq);
    while (!signal.aborted) {
      try {
        const consumer = await this.#js!.consumers.get(this.#stream, {
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: next,
        });
        const messages = await consumer.consume({ max_messages: 1024, expires: TAIL_PULL_EXPIRES_MS });
        const stop = () => messages.stop();
        signal.addEventListener("abort", stop, { once: true });
        // The watchdog: the log has events past `next` and none came for
        // TAIL_STALL_MS — whatever the consumer's trouble, start a new one from `next`.
        let progressAt = Date.now();
        const watchdog = setInterval(() => {
          if (Date.now() - progressAt < TAIL_STALL_MS) return;
          this.lastSeq().then(
            (last) => {
              if (last < next)
                progressAt = Date.now(); // caught up: nothing to wait for
              else if (Date.now() - progressAt >= TAIL_STALL_MS) {
                this.#options.logger.warn({ seq: next, last }, "log tail stalled; restarted");
                messages.stop();
              }
            },
            () => undefined, // the server does not answer: the connection's own liveness handles it
          );
        }, TAIL_STALL_MS / 2);
        try {
          for await (const m of messages) {
            progressAt = Date.now();
            if (m.seq < next) continue;
            next = m.seq + 1;
            let event: RegistryEvent;
            try {
              event = decodeEvent(m.data);
            } catch (err) {
              // A malformed event cannot be applied; skipping it keeps the view moving.
              this.#options.logger.error({ err, seq: m.seq }, "log event invalid");
              continue;
            }
            yield { seq: m.seq, event };
          }
        } finally {
          clearInterval(watchdog);
          signal.removeEventListener("abort", stop);
          messages.stop();
        }
      } catch (err) {
        if (signal.aborted) break;
        this.#options.logger.warn({ err, seq: next }, "log tail interrupted");
      }
      if (!signal.aborted) await delay(250, signal);
    }
  }

  /**
   * The lowest position every durable consumer of this region's stream has
   * acknowledged (the other regions' replication workers read this stream
   * through durables, as do this region's own subscribers); undefined when
   * it has none. Garbage collection keeps what events past it name
   * (node/data/gc.ts). LogUnavailableError when the server does not answer.
   */
  async durableFloor(): Promise<number | undefined> {
    await this.#ready;
    try {
      let floor: number | undefined;
      for await (const c of this.#jsm!.consumers.list(this.#stream)) {
        if (c.config.durable_name === undefined) continue;
        const acked = c.ack_floor.stream_seq;
        floor = floor === undefined ? acked : Math.min(floor, acked);
      }
      return floor;
    } catch (err) {
      throw new LogUnavailableError("event log unavailable", { cause: err });
    }
  }

  async subscribe(durable: string, handler: DeliveryHandler, options: SubscribeOptions): Promise<void> {
    await this.#ready;
    await subscribeDurable(this.#js!, this.#jsm!, this.#stream, durable, handler, options);
  }

  async close(): Promise<void> {
    this.#connected = false;
    await this.#connection.close();
    await this.#ownManager?.close();
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
