/**
 * The append stage of a source's pipeline (source-consumer.ts): a replicated
 * event whose content is already here is appended to the local log, with the
 * tag conflict it makes against this region's own writes (reconcile.ts
 * `conflictHere`), and retried until durable or the worker stops.
 *
 * Appends are pipelined: `append` calls `issued` as soon as the append is
 * handed to the log, so the consumer issues the next event's append while
 * this one's acknowledgement is awaited. A conflict check must see this
 * worker's own last write to the tag even while it is still in flight:
 * `#tagAppends` keeps, per "repo:tag", the sequence of that write or its
 * pending acknowledgement, and the check waits for the view to apply it.
 */
import type { Logger } from "pino";
import type { Outcome } from "../node/data/durable-subscription.js";
import { type RegistryEvent, writeIdOf } from "../protocol/events.js";
import { backoffMs, sleep } from "./backoff.js";
import { conflictHere, type TagConflictBody } from "./reconcile.js";
import type { WorkerOptions } from "./worker-options.js";

export interface ReplicaAppenderOptions {
  worker: WorkerOptions;
  /** The worker's: aborts when it stops (an append then answers `retry-later`). */
  stopped: AbortSignal;
  /** The delay of the `retry-later` outcome when the worker stops first (the source's ack wait). */
  retryLaterMs: number;
  /** This worker appended `seq` to the local log. */
  appended(seq: number): void;
  recordConflict(conflict: TagConflictBody): Promise<void>;
}

export class ReplicaAppender {
  readonly #o: ReplicaAppenderOptions;
  readonly #w: WorkerOptions;
  /**
   * This worker's last append per "repo:tag" not yet known applied (conflict
   * checks wait on it): its sequence, or its acknowledgement while in flight.
   */
  readonly #tagAppends = new Map<string, number | Promise<number>>();

  constructor(options: ReplicaAppenderOptions) {
    this.#o = options;
    this.#w = options.worker;
  }

  /**
   * Append a prepared event's replica (and the conflict it makes) here.
   * `issued` is called as soon as the append is handed to the log (after the
   * conflict check), so the consumer (source-consumer.ts) lets the next
   * event's append go while this one's acknowledgement is awaited: appends
   * of one source are pipelined,
   * issued in stream order on one connection, and the server stores a
   * connection's messages in that order. Resolves `ack` once the replica (and
   * its conflict record) are durably in the local log, retrying with backoff
   * (a retry is de-duplicated by the event's id, so an append that was stored
   * but not acknowledged is not stored twice); `retry-later` when the worker
   * stops first.
   *
   * If an append fails while later ones go through (a connection lost
   * mid-batch), its retry lands after them: the local log then holds this
   * source's events slightly out of order (as after a restart, before and
   * after pipelining: JetStream delivers the events never delivered before
   * those left undone at the stop). The view merges every piece of
   * content as a register, whatever order its writes arrive in
   * (node/data/projections/content.ts), and every event's content was copied
   * before any append was issued, so no tag is visible before its closure
   * either way.
   */
  async append(
    p: { event: RegistryEvent; outgoing: RegistryEvent },
    srcSeq: number,
    log: Logger,
    issued: () => void,
  ): Promise<Outcome> {
    const stopped = this.#o.stopped;
    const later: Outcome = { outcome: "retry-later", delayMs: this.#o.retryLaterMs };
    const min = this.#w.retryMinMs ?? 250;
    const max = this.#w.retryMaxMs ?? 5_000;
    let pending = this.#appendOnce(p.outgoing, srcSeq, issued);
    for (let attempt = 0; ; attempt++) {
      try {
        await pending;
        return { outcome: "ack" };
      } catch (err) {
        if (stopped.aborted) return later;
        log.warn({ err, eventId: p.event.id, seq: srcSeq, attempt }, "appending a replicated event failed");
        await sleep(backoffMs(attempt, min, max), stopped);
        if (stopped.aborted) return later;
        pending = this.#appendOnce(p.outgoing, srcSeq, issued);
      }
    }
  }

  /** If `event` writes a tag concurrently with this region's own write there, the conflict to record. */
  async #conflictWith(event: RegistryEvent): Promise<TagConflictBody | undefined> {
    if (event.type !== "tag.set" && event.type !== "tag.deleted" && event.type !== "manifest.pushed")
      return undefined;
    if (event.tag === undefined) return undefined;
    const digest = event.type === "tag.deleted" ? null : event.digest;
    // The register must include this worker's own last write to the tag, if any (not every append).
    const view = this.#w.view;
    const key = `${event.repo}:${event.tag}`;
    const entry = this.#tagAppends.get(key);
    if (entry !== undefined) {
      // Issued but perhaps not acknowledged yet (appends are pipelined): its sequence first.
      const mine = typeof entry === "number" ? entry : await entry.catch(() => undefined);
      if (mine !== undefined && mine > view.appliedSeq)
        await view.waitFor(mine, 5_000).catch(() => undefined);
      if (this.#tagAppends.get(key) === entry) this.#tagAppends.delete(key);
    }
    return conflictHere(view, this.#w.region, event.repo, event.tag, {
      digest: digest ?? undefined,
      hlc: event.hlc,
      origin: event.origin,
      eventId: writeIdOf(event),
      epoch: event.epoch,
      prev: event.prev,
    });
  }

  /**
   * Append a replicated event here (its content is present), recording a
   * conflict it makes. Both appends are handed to the log (EventLog.append
   * sends before its first await) before `issued` is called; resolves once
   * both are durable.
   */
  async #appendOnce(event: RegistryEvent, srcSeq: number, issued: () => void): Promise<void> {
    const conflict = await this.#conflictWith(event);
    const appended = this.#w.log.append({ ...event, cause: event.id, srcSeq }).then(({ seq }) => {
      this.#o.appended(seq);
      return seq;
    });
    const recorded = conflict === undefined ? undefined : this.#o.recordConflict(conflict);
    issued();
    if (
      (event.type === "tag.set" || event.type === "tag.deleted" || event.type === "manifest.pushed") &&
      event.tag
    ) {
      const key = `${event.repo}:${event.tag}`;
      this.#tagAppends.set(key, appended);
      appended.then(
        (seq) => {
          if (this.#tagAppends.get(key) === appended) this.#tagAppends.set(key, seq);
        },
        () => {
          if (this.#tagAppends.get(key) === appended) this.#tagAppends.delete(key);
        },
      );
      if (this.#tagAppends.size > 10_000) {
        const applied = this.#w.view.appliedSeq;
        for (const [k, v] of this.#tagAppends)
          if (typeof v === "number" && v <= applied) this.#tagAppends.delete(k);
      }
    }
    // Both awaited even if one fails, so neither is left an unhandled rejection.
    const [a, r] = await Promise.allSettled([appended, recorded]);
    if (a.status === "rejected") throw a.reason;
    if (r.status === "rejected") throw r.reason;
  }
}
