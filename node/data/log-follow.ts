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
