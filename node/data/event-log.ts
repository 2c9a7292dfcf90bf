/**
 * EventLog: the region's append-only stream of registry events, the source of
 * truth (DESIGN.md §"The log is the source of truth"). Implementation:
 * `JetStreamLog` (NATS JetStream).
 *
 * - `append` resolves only once the log has durably accepted the event;
 *   LogUnavailableError when it cannot (the caller answers 503), and
 *   LogConflictError when an `expectLastSubjectSeq` check fails.
 * - `tail` yields every event from a sequence on, in order, forever; it rides
 *   out disconnections by itself and ends only when the signal aborts.
 * - `subscribe` consumes the log through a named durable consumer whose
 *   position the log keeps: each delivery's handler returns its outcome
 *   (ack / retry-later / give-up), applied in log order, each after every
 *   earlier one's (durable-subscription.ts has the whole contract). A
 *   delivery not acknowledged comes again; one given up never does.
 */
import type { RegistryEvent } from "../../protocol/events.js";
import type { DeliveryHandler, SubscribeOptions } from "./durable-subscription.js";

export interface LoggedEvent {
  seq: number;
  event: RegistryEvent;
}

export interface AppendOptions {
  /**
   * Compare-and-set: the append succeeds only if the last event on the
   * event's subject has this sequence (0 = the subject has none).
   */
  expectLastSubjectSeq?: number;
  signal?: AbortSignal;
}

export interface EventLog {
  /** Append one event; resolves with its sequence (the original one for a de-duplicated retry). */
  append(event: RegistryEvent, options?: AppendOptions): Promise<{ seq: number; duplicate: boolean }>;

  /** The last event on a subject, or undefined when it has none. */
  lastOnSubject(subject: string, signal?: AbortSignal): Promise<LoggedEvent | undefined>;

  /** Sequence of the last event in the log (0 when empty). */
  lastSeq(signal?: AbortSignal): Promise<number>;

  /** Every event with sequence ≥ `fromSeq`, in order, until `signal` aborts. */
  tail(fromSeq: number, signal: AbortSignal): AsyncIterable<LoggedEvent>;

  /**
   * Deliver every event not yet acknowledged through the durable consumer
   * `durable` to `handler`, until `options.signal` aborts (then resolves);
   * rides out disconnections by itself.
   */
  subscribe(durable: string, handler: DeliveryHandler, options: SubscribeOptions): Promise<void>;

  /**
   * Optional: the lowest sequence every durable consumer of the stream has
   * acknowledged (undefined: there is none). Garbage collection keeps the
   * content named past it, which other regions may still fetch from here.
   */
  durableFloor?(signal?: AbortSignal): Promise<number | undefined>;
  /** True while the log can take appends (connected). */
  readonly writable: boolean;

  close(): Promise<void>;
}
