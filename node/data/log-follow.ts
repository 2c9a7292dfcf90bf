/**
 * How a view follows its region's log: `catchUp` at start (never answer from
 * a view older than what was acknowledged before the process started),
 * `followLog` for processes that read a view without writing through a
 * Registry (the control-plane peer, the replication worker), and
 * `materialize`, the tail both use (the Registry too, ./registry.ts `start`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { EventLog, LoggedEvent } from "./event-log.js";
import type { MetadataView } from "./view.js";

/**
 * Bring a view up to the log's end as it is now, so a process never answers
 * (or decides) from a view older than what was acknowledged before it
 * started. If the log is unreachable, go on after a few seconds with the view
 * as it is (reads keep working; writes answer 503 until the log returns).
 */
export async function catchUp(
  log: EventLog & { ready(): Promise<unknown> },
  view: MetadataView,
  logger: Logger,
): Promise<void> {
  const connected = await Promise.race([
    log.ready().then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 5_000).unref()),
  ]);
  if (!connected) {
    logger.warn("log unreachable at start; going on with the view as it is");
    return;
  }
  try {
    await view.waitFor(await log.lastSeq(), 60_000);
  } catch (err) {
    logger.warn({ err }, "view catch-up incomplete at start");
  }
}

/**
 * Keep a view following the log, for processes that read a region's view
 * but do not write through a Registry (the control-plane peer, the
 * replication worker). `stop()` ends it after the batch in hand.
 */
export function followLog(log: EventLog, view: MetadataView, logger: Logger): { stop(): Promise<void> } {
  const abort = new AbortController();
  const done = materialize(log, view, abort.signal, logger);
  return {
    stop: async () => {
      abort.abort();
      await done;
    },
  };
}

/** Tail the log into the view until `signal` aborts, in batches. */
export async function materialize(
  log: EventLog,
  view: MetadataView,
  signal: AbortSignal,
  logger: Logger,
): Promise<void> {
  const queue: LoggedEvent[] = [];
  let flushing: Promise<void> | undefined;
  const flush = async () => {
    while (queue.length > 0) {
      const batch = queue.splice(0, 1024);
      try {
        await view.apply(batch);
      } catch (err) {
        logger.error({ err, seq: batch[0]?.seq }, "view apply failed");
        queue.unshift(...batch);
        await sleep(500);
        if (signal.aborted) return;
      }
    }
  };
  for await (const entry of log.tail(view.appliedSeq + 1, signal)) {
    queue.push(entry);
    flushing ??= flush().finally(() => {
      flushing = undefined;
    });
    if (queue.length >= 4096) await flushing;
  }
  await flushing;
}

/**
 * "Look again after catching up" for a node whose region has other writers
 * (issue 13: several stateless nodes behind one load balancer or the front
 * door). A node's own writes are in its view before it answers them, but a
 * write another node of the region acknowledged a moment ago may still be on
 * its way to this view: a manifest PUT naming a blob pushed through the
 * other node, a pull right after a push. On such a miss the caller asks
 * `request()`, which brings the view up to the log's end as it is now (the
 * log's last sequence asked after the miss) and looks again once.
 *
 * Bounded: at most `timeoutMs` (default 2 s) in all, nothing when the log is
 * known to be down (the view answers as it is, as reads do during an
 * outage), and at most one last-sequence request to the log in flight for
 * the whole node: misses that arrive while one is in flight share the next
 * one, asked when it returns (so every caller's answer is from a request
 * made after its miss, and a flood of misses costs the log one request at a
 * time). Used on misses only; hits never pay for it. Blob HEADs do not ask
 * (a client takes a 404 there as "upload it", which is harmless).
 */
export class CatchUpOnMiss {
  readonly #log: Pick<EventLog, "lastSeq" | "writable">;
  readonly #view: Pick<MetadataView, "waitFor">;
  readonly #timeoutMs: number;
  #current: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(
    log: Pick<EventLog, "lastSeq" | "writable">,
    view: Pick<MetadataView, "waitFor">,
    timeoutMs = 2_000,
  ) {
    this.#log = log;
    this.#view = view;
    this.#timeoutMs = timeoutMs;
  }

  /** Resolves once the view holds what the log held after this call (or the bound passed); never rejects. */
  request(): Promise<void> {
    if (!this.#log.writable) return Promise.resolve();
    if (this.#next !== undefined) return this.#next;
    if (this.#current === undefined) return this.#start();
    // One is in flight, asked before this miss: queue the next, shared by every miss until it starts.
    const next = this.#current.then(() => {
      this.#next = undefined;
      return this.#start();
    });
    this.#next = next;
    return next;
  }

  #start(): Promise<void> {
    const run = this.#run().finally(() => {
      if (this.#current === run) this.#current = undefined;
    });
    this.#current = run;
    return run;
  }

  async #run(): Promise<void> {
    const deadline = Date.now() + this.#timeoutMs;
    const abort = new AbortController();
    // lastSeq may wait for a reconnect: the race, not the log, keeps the bound.
    const bound = sleep(this.#timeoutMs, undefined, { signal: abort.signal }).then(() => undefined);
    try {
      const seq = await Promise.race([this.#log.lastSeq(abort.signal), bound]);
      if (seq !== undefined) await this.#view.waitFor(seq, Math.max(1, deadline - Date.now()));
    } catch {
      // The log did not say in time, or the view did not get there: answer from the view as it is.
    } finally {
      abort.abort();
    }
  }
}
