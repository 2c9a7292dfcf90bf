/**
 * Pull times for retention's `pulledDays` (issue 15, item 2), tracked
 * cheaply: a pull costs one synchronous Map update in this node's memory (no
 * await, no write, no view read on the GET path); every `flushMs` (default
 * 10 minutes, node config `retention.pullFlushSeconds`) the node commits what
 * it saw as one `pulls.recorded` event (several past MAX_PULLS_PER_EVENT
 * manifests), which replicates to every region like other admin events, so
 * the region deciding a repository's retention knows its pulls everywhere.
 *
 * Precision: a pull is known to the mesh at most one flush interval after
 * it happened (plus replication), its time rounded down to the minute; a
 * manifest pulled again within `resolutionMs` (default 1 hour) of its last
 * recorded pull is not recorded again, so each manifest costs the log at
 * most one entry per hour per node however often it is pulled. A node that
 * stops loses at most the pulls of its last interval (no flush at stop: the
 * log may already be closing). Retention's days are far coarser than
 * either bound. GETs count, HEADs do not (a client checking whether it has
 * an image is not using it).
 */
import type { Logger } from "pino";
import type { Digest } from "../../protocol/digest.js";
import { type EventBody, MAX_PULLS_PER_EVENT, type PullsRecorded } from "../../protocol/events.js";

const MINUTE_MS = 60_000;

export interface PullRecordOptions {
  /** Commit a pulls.recorded body (the registry's commit step). */
  commit: (body: EventBody<PullsRecorded>) => Promise<unknown>;
  /** The last recorded pull of a manifest in the view (ms), if any. */
  lastRecorded: (repo: string, digest: Digest) => Promise<number | undefined>;
  flushMs: number;
  resolutionMs?: number;
  logger: Logger;
  now?: () => number;
}

export class PullRecord {
  readonly #o: PullRecordOptions;
  /** Minutes since the epoch of the last pull, by repository then digest (small integers: no allocation). */
  #seen = new Map<string, Map<string, number>>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(options: PullRecordOptions) {
    this.#o = options;
  }

  /** A GET of a manifest was answered from this region. Synchronous, cheap. */
  pulled(repo: string, digest: string): void {
    const minute = Math.floor((this.#o.now?.() ?? Date.now()) / MINUTE_MS);
    let digests = this.#seen.get(repo);
    if (digests === undefined) {
      digests = new Map();
      this.#seen.set(repo, digests);
    }
    if (digests.get(digest) !== minute) digests.set(digest, minute);
  }

  start(): void {
    this.#timer = setInterval(() => void this.flush(), this.#o.flushMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Commit what was seen since the last flush (one flush at a time). */
  flush(): Promise<void> {
    const run = this.#flushing.then(() => this.#flushNow());
    this.#flushing = run.catch(() => undefined);
    return run;
  }

  async #flushNow(): Promise<void> {
    if (this.#seen.size === 0) return;
    const seen = this.#seen;
    this.#seen = new Map();
    const resolution = this.#o.resolutionMs ?? 3_600_000;
    const pulls: PullsRecorded["pulls"] = [];
    for (const [repo, digests] of seen)
      for (const [digest, minute] of digests) {
        const atMs = minute * MINUTE_MS;
        const last = await this.#o.lastRecorded(repo, digest as Digest);
        if (last !== undefined && atMs - last < resolution) continue;
        pulls.push({ repo, digest: digest as Digest, at: new Date(atMs).toISOString() });
      }
    for (let i = 0; i < pulls.length; i += MAX_PULLS_PER_EVENT) {
      const part = pulls.slice(i, i + MAX_PULLS_PER_EVENT);
      try {
        await this.#o.commit({ type: "pulls.recorded", pulls: part });
      } catch (err) {
        // The log is unavailable: keep them for the next flush (newer pulls since win).
        for (const p of pulls.slice(i)) {
          const minute = Date.parse(p.at) / MINUTE_MS;
          const digests = this.#seen.get(p.repo) ?? new Map<string, number>();
          this.#seen.set(p.repo, digests);
          if ((digests.get(p.digest) ?? 0) < minute) digests.set(p.digest, minute);
        }
        this.#o.logger.warn(
          { err, pulls: pulls.length - i },
          "pull times not recorded; kept for the next flush",
        );
        return;
      }
    }
  }
}
