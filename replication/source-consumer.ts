/**
 * The worker's consumer of every other region's stream (worker.ts has what
 * replication means): one connection per source region, through the
 * process's connection manager (node/data/nats-connection.ts), and one
 * durable subscription on it (node/data/durable-subscription.ts, the same
 * contract as `EventLog.subscribe`), whose handler returns each event's
 * outcome.
 *
 * Per source, events are committed strictly in order: up to PIPELINE_DEPTH
 * of them are prepared (`#prepare`: decoded, judged under the policies and
 * the delete breaker, their content copied) at once, and each is committed
 * (appended here, then acknowledged) after every earlier one: its append is
 * issued once the previous event's was, and the acknowledgements are awaited
 * side by side (pipelined, replica-append.ts), so a later tag never overtakes
 * the manifest it points to, and 1000 events do not cost 1000 round trips
 * one after the other; an event
 * whose content cannot be copied yet is retried with backoff and holds back
 * that source only. Deletions are judged one at a time, once everything
 * before them is committed. An event is acknowledged only after its replica
 * is durably in the local log; one given up on (its deadline passed, its
 * closure over the limits) is recorded (failures.ts) and terminated, so a
 * redelivery does not redo the work; one the worker stops on is left to be
 * redelivered (retry-later after the ack wait). A redelivered event is
 * de-duplicated by the local stream (its id is the message id).
 *
 * Every delivery and commit is told to `links` (links.ts), and the source's
 * server is asked where the durable stands every 2 s (pending, lag).
 */

import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import type { PeerClient } from "../mesh-client/peer-client.js";
import { type Delivery, type Outcome, subscribeDurable } from "../node/data/durable-subscription.js";
import type { ManagedConnection } from "../node/data/nats-connection.js";
import { isTerminal, PeerUnavailableError } from "../protocol/errors.js";
import {
  type ContentEvent,
  decodeEvent,
  isContentEvent,
  type RegistryEvent,
  streamName,
} from "../protocol/events.js";
import { natsServersOf, type RegionEndpoints } from "../protocol/mesh.js";
import { type EventKind, isFiltered, selectsKind, selectsRepository } from "../protocol/policy.js";
import { inStartupGrace, STARTUP_GRACE_MS } from "../protocol/startup-grace.js";
import { backoffMs, sleep } from "./backoff.js";
import { ClosureLimitError, type Copier } from "./copy.js";
import type { FailureLog, GivenUp } from "./failures.js";
import type { LinkMonitor } from "./links.js";
import type { WorkerMetrics } from "./metrics.js";
import type { PolicyCache } from "./policy-cache.js";
import type { TagConflictBody } from "./reconcile.js";
import { ReplicaAppender } from "./replica-append.js";
import type { Scheduler } from "./scheduler.js";
import { DEFAULT_EVENT_DEADLINE_MS, type WorkerOptions } from "./worker-options.js";

/**
 * How long the source waits for an ack before redelivering: a crashed
 * worker's event, or one lost in flight when a link broke (the long
 * convergence run showed heals waiting a whole ack_wait for such an event,
 * hence short). A long copy keeps its event alive (the subscription calls
 * working() until its outcome).
 */
const ACK_WAIT_MS = 4_000;
/** Events of one source prepared (content being copied) at once. */
const PIPELINE_DEPTH = 16;

/** The durable consumer through which region `destination` reads every other region's stream. */
export function durableName(destination: string): string {
  return `replicate-to-${destination}`;
}

/** An event after its preparation, waiting for its turn to be committed. */
type Prepared =
  | { kind: "commit"; event: RegistryEvent; outgoing: RegistryEvent }
  | { kind: "skip"; outcome: "skipped" | "filtered" }
  | { kind: "invalid" }
  | ({ kind: "failed" } & GivenUp)
  | { kind: "stopped" };

export interface SourceConsumerOptions {
  worker: WorkerOptions;
  copier: Copier;
  metrics: WorkerMetrics;
  links: LinkMonitor;
  /** Last source sequence committed, per source (for status). */
  applied: Map<string, number>;
  failures: FailureLog;
  policies: PolicyCache;
  scheduler: Scheduler;
  /** The worker's: aborts when it stops. */
  stopped: AbortSignal;
  /** What must end when the worker stops (one listener on `stopped` calls them all). */
  onStop: Set<() => void>;
  startedAtMs(): number;
  /** Peers to copy from, nearest healthy first. */
  peersFor(): PeerClient[];
  /** Hold a deletion until the delete breaker lets it through (worker.ts). */
  breakerGate(policy: string, source: string, event: ContentEvent): Promise<void>;
  /** This worker appended `seq` to the local log. */
  appended(seq: number): void;
  recordConflict(conflict: TagConflictBody): Promise<void>;
}

export class SourceConsumer {
  readonly #o: SourceConsumerOptions;
  readonly #w: WorkerOptions;
  readonly #appender: ReplicaAppender;
  /**
   * Per source: resolves once the previous delivery's append was issued (or,
   * for anything but an append, its outcome decided): the next append's turn.
   */
  readonly #turns = new Map<string, Promise<void>>();

  constructor(options: SourceConsumerOptions) {
    this.#o = options;
    this.#w = options.worker;
    this.#appender = new ReplicaAppender({
      worker: options.worker,
      stopped: options.stopped,
      retryLaterMs: ACK_WAIT_MS,
      appended: (seq) => options.appended(seq),
      recordConflict: (conflict) => options.recordConflict(conflict),
    });
  }

  /** Replicate from `source` until the worker stops: connect, subscribe, ride out interruptions. */
  async run(source: RegionEndpoints): Promise<void> {
    const signal = this.#o.stopped;
    const log = this.#w.logger.child({ src: source.name });
    // The source's nats-server may still be starting (the connection keeps dialing quietly);
    // still not reachable when the start-up grace ends is a fault.
    const graceLeft = (this.#w.startupGraceMs ?? STARTUP_GRACE_MS) - (Date.now() - this.#o.startedAtMs());
    const stillDown = setTimeout(
      () => log.warn({ nats: source.nats }, "source still unreachable after start-up"),
      Math.max(0, graceLeft),
    );
    stillDown.unref();
    const connection: ManagedConnection = this.#w.connections.open({
      servers: natsServersOf(source),
      name: `meridian-worker-${this.#w.region}<-${source.name}`,
      reconnectTimeWaitMs: 500,
    });
    // Stopped while still dialing: give up the dial (once connected, the connection closes
    // after the subscription applied the outcomes under way).
    const close = () => {
      if (connection.current === undefined) void connection.close();
    };
    this.#o.onStop.add(close);
    try {
      const nc = await connection.connected;
      clearTimeout(stillDown);
      if (nc === undefined) return; // stopped before the source answered
      // No API check at connect: a source whose JetStream cluster is still forming (`up
      // --nats-cluster 3` starts its regions one after the other) times it out, and that
      // rejection, outside the subscription's retries, stopped the worker. The subscription
      // below meets the same state as an interruption and retries it.
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const js = jetstream(nc);
      await subscribeDurable(
        js,
        jsm,
        streamName(source.name),
        durableName(this.#w.region),
        (d) => this.#handle(source.name, d, log),
        {
          signal,
          depth: PIPELINE_DEPTH,
          ackWaitMs: ACK_WAIT_MS,
          maxAckPending: 256,
          onError: (err, seq) => {
            if (!signal.aborted) log.error({ err, seq }, "replication of an event failed");
          },
          // Until the source's node has started, its stream does not exist (StreamNotFoundError)
          // or its JetStream does not answer yet: expected during the start-up grace, retried.
          onInterrupted: (err) => {
            if (inStartupGrace(this.#o.startedAtMs(), Date.now(), this.#w.startupGraceMs))
              log.debug({ err }, "source consumer not ready yet; retrying");
            else log.warn({ err }, "source consumer interrupted");
          },
          // Unanswered (the source unreachable, the durable not made yet): the link keeps
          // what it was told last, its ages keep growing, and its "source checked" time says how old.
          onPending: (position) => this.#o.links.sourceAnswered(source.name, position),
        },
      );
    } finally {
      clearTimeout(stillDown);
      this.#o.onStop.delete(close);
      await connection.close();
    }
  }

  /**
   * One delivery: prepared alongside others; its append issued once the
   * previous delivery's was (or, for anything but an append, once every
   * earlier outcome is applied); its outcome applied after every earlier one.
   */
  async #handle(source: string, d: Delivery, log: Logger): Promise<Outcome> {
    this.#o.links.delivered(source, d.seq, d.storedAtMs, d.pending);
    // Handlers are called in stream order, so this chain is in stream order too.
    const turn = this.#turns.get(source) ?? Promise.resolve();
    let next!: () => void;
    this.#turns.set(source, new Promise<void>((resolve) => (next = resolve)));
    try {
      const prepared = await this.#prepare(source, d, log, d.earlier);
      if (prepared.kind !== "commit") {
        await d.earlier;
        return await this.#commit(source, d, prepared, log);
      }
      await turn;
      const outcome = await this.#appender.append(prepared, d.seq, log, next);
      await d.earlier;
      if (outcome.outcome === "ack") this.#replicated(source, d.seq, prepared);
      return outcome;
    } finally {
      next();
    }
  }

  /**
   * The part of handling an event that may overlap with others: decode it,
   * decide what this region takes of it (policies, the delete breaker), and
   * copy the content it needs, retrying until that succeeds, the event's
   * deadline passes or its closure is found over the limits (then it is
   * "failed"), or the worker stops.
   */
  async #prepare(source: string, m: Delivery, log: Logger, earlier?: Promise<void>): Promise<Prepared> {
    let event: RegistryEvent;
    try {
      event = decodeEvent(m.data);
    } catch (err) {
      log.error({ err, seq: m.seq }, "source event invalid; skipped");
      return { kind: "invalid" };
    }
    if (event.origin !== source) return { kind: "skip", outcome: "skipped" };
    let outgoing: RegistryEvent | undefined = event;
    if (isContentEvent(event) && event.type !== "tag.conflict") {
      outgoing = await this.#select(source, event, m.seq, earlier);
      if (outgoing === undefined) return { kind: "skip", outcome: "filtered" };
    }
    if (m.redelivered && (await this.#o.failures.recordedBefore(event.id)))
      return { kind: "failed", event: outgoing, reason: "recorded as failed before", attempts: 0 };
    const deadlineMs = this.#w.eventDeadlineMs ?? DEFAULT_EVENT_DEADLINE_MS;
    // Aborted by the deadline or the worker's stop; its timer and listener go with the event.
    const expiry = new AbortController();
    const deadline = expiry.signal;
    const timer = setTimeout(() => expiry.abort(new Error("event deadline passed")), deadlineMs);
    const onStop = () => expiry.abort(this.#o.stopped.reason);
    this.#o.onStop.add(onStop);
    try {
      return await this.#copyContent(source, m, log, event, outgoing, deadline, deadlineMs);
    } finally {
      clearTimeout(timer);
      this.#o.onStop.delete(onStop);
    }
  }

  /** Copy an event's content, retrying with backoff until it is there, `deadline` aborts, or it cannot be. */
  async #copyContent(
    source: string,
    m: Delivery,
    log: Logger,
    event: RegistryEvent,
    outgoing: RegistryEvent,
    deadline: AbortSignal,
    deadlineMs: number,
  ): Promise<Prepared> {
    const min = this.#w.retryMinMs ?? 250;
    const max = this.#w.retryMaxMs ?? 5_000;
    let last = "";
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#fetchContent(outgoing, deadline);
        return { kind: "commit", event, outgoing };
      } catch (err) {
        if (this.#o.stopped.aborted) return { kind: "stopped" };
        if (err instanceof ClosureLimitError || isTerminal(err) || deadline.aborted) {
          const reason =
            err instanceof ClosureLimitError || isTerminal(err)
              ? err.message
              : `content not copied within ${deadlineMs} ms${last === "" ? "" : ` (last error: ${last})`}`;
          log.error({ eventId: event.id, seq: m.seq, attempt, reason }, "replication of an event failed");
          return { kind: "failed", event: outgoing, reason, attempts: attempt + 1 };
        }
        last = err instanceof Error ? err.message : String(err);
        // A peer refusing while the mesh starts is expected (protocol/startup-grace.ts).
        const starting =
          err instanceof PeerUnavailableError &&
          inStartupGrace(this.#o.startedAtMs(), Date.now(), this.#w.startupGraceMs);
        log[starting ? "info" : "warn"](
          { err, eventId: event.id, seq: m.seq, attempt },
          "replication attempt failed",
        );
        this.#o.failures.retrying(source, outgoing, err, attempt);
        await sleep(backoffMs(attempt, min, max), deadline);
        if (this.#o.stopped.aborted) return { kind: "stopped" };
      }
    }
  }

  /**
   * The outcome of an event that is not appended here (skipped, filtered,
   * invalid, given up on: recorded first; stopped), in stream order.
   */
  async #commit(
    source: string,
    m: Delivery,
    p: Exclude<Prepared, { kind: "commit" }>,
    log: Logger,
  ): Promise<Outcome> {
    const stopped = this.#o.stopped;
    // Not done: redelivered after a restart, as an unacknowledged event would be after the ack wait.
    const later: Outcome = { outcome: "retry-later", delayMs: ACK_WAIT_MS };
    if (p.kind === "stopped") return later;
    if (p.kind === "invalid") return { outcome: "give-up" };
    if (p.kind === "skip") {
      this.#o.metrics.handled(source, p.outcome);
      this.#committed(source, m.seq);
      return { outcome: "ack" };
    }
    const min = this.#w.retryMinMs ?? 250;
    const max = this.#w.retryMaxMs ?? 5_000;
    // Given up on: recorded durably before the source forgets it: the alert, then term (never redelivered).
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#o.failures.record(source, p, m.seq);
        break;
      } catch (err) {
        if (stopped.aborted) return later;
        log.warn({ err, eventId: p.event.id, seq: m.seq, attempt }, "recording a failed event failed");
        await sleep(backoffMs(attempt, min, max), stopped);
        if (stopped.aborted) return later;
      }
    }
    this.#committed(source, m.seq);
    this.#o.metrics.handled(source, "failed");
    return { outcome: "give-up", reason: p.reason };
  }

  /** Bookkeeping of an event whose replica is in the local log (in stream order). */
  #replicated(source: string, seq: number, p: Extract<Prepared, { kind: "commit" }>): void {
    this.#o.failures.replicated(p.outgoing);
    this.#o.metrics.handled(source, "replicated");
    const lag = Math.max(0, (Date.now() - Date.parse(p.event.at)) / 1000);
    this.#o.metrics.lag(source, lag);
    this.#committed(source, seq, lag);
  }

  #committed(source: string, seq: number, lagSeconds?: number): void {
    this.#o.applied.set(source, seq);
    this.#o.links.committed(source, seq, lagSeconds);
  }

  /**
   * What a content event becomes here under the link's on-push policies: the
   * event (perhaps without its tag) when an unfiltered policy selects it,
   * else undefined — after queueing a reconcile of its repository under each
   * filtered policy that selects the repository. Deletions pass the breaker.
   */
  async #select(
    source: string,
    event: ContentEvent,
    seq = 0,
    earlier?: Promise<void>,
  ): Promise<RegistryEvent | undefined> {
    const policies = (await this.#o.policies.linkPolicies(source)).filter(
      (p) => p.trigger.type === "on-push" && selectsRepository(p, event.repo),
    );
    const kinds = kindsOf(event);
    const exact = policies.filter((p) => !isFiltered(p) && kinds.some((k) => selectsKind(p, k)));
    if (exact.length === 0) {
      for (const p of policies.filter(isFiltered))
        this.#o.scheduler.request(p, source, {
          repos: new Set([event.repo]),
          reason: "on-push",
          sourceSeq: seq,
          done: [],
        });
      return undefined;
    }
    let out: RegistryEvent = event;
    if (
      event.type === "manifest.pushed" &&
      event.tag !== undefined &&
      !exact.some((p) => selectsKind(p, "tag"))
    ) {
      const { tag: _, ...untagged } = event;
      out = untagged;
    }
    if (kinds.includes("delete")) {
      const policy = exact.find((p) => selectsKind(p, "delete"))!;
      // Deletions are judged one at a time, after every earlier event of this source is
      // committed and in the view: judged side by side in the pipeline, each would count
      // the others both as still shown and as removed, and a mass deletion would pass.
      await earlier;
      await this.#o.breakerGate(policy.name, source, event);
    }
    return out;
  }

  /** Copy what an event needs here (a manifest's whole closure, a blob) before it is appended. */
  async #fetchContent(event: RegistryEvent, signal: AbortSignal): Promise<void> {
    const peers = this.#o.peersFor();
    switch (event.type) {
      case "blob.pushed":
        await this.#o.copier.ensureBlob(event.digest, peers, signal, event.size);
        break;
      case "manifest.pushed":
      case "tag.set":
        // A manifest live here had its closure checked when it became live: a tag on it needs no copy.
        if ((await this.#w.view.content.manifest(event.repo, event.digest)) === undefined)
          await this.#o.copier.ensureManifest(event.digest, peers, signal, {
            ...(event.type === "manifest.pushed" ? { size: event.size } : {}),
          });
        break;
      default:
        break; // deletions carry no content
    }
  }
}

/** The policy event kinds a content event falls under. */
function kindsOf(event: ContentEvent): EventKind[] {
  switch (event.type) {
    case "blob.pushed":
      return ["push"];
    case "manifest.pushed":
      return event.tag === undefined ? ["push"] : ["push", "tag"];
    case "tag.set":
      return ["tag"];
    default:
      return ["delete"];
  }
}
