/**
 * Quota refusals as log events (issue 17, item 5): when ./quota-gate.ts
 * refuses a push, the node records a `quota.exceeded` event (project,
 * repository, limit, usage, what the push needed), which a webhook announces
 * as `io.meridian.quota.exceeded` (protocol/webhook.ts) and replays like
 * any log event.
 *
 * Rate: at most one per (project, repository) per node per
 * QUOTA_EXCEEDED_WINDOW_MS (one minute), so a client retrying a refused push
 * in a loop writes one event a minute, not one per attempt; the first
 * refusal of a window is the one recorded. A mesh of N nodes writes at most
 * N a minute per repository. The window's memory is bounded (MAX_TRACKED
 * keys; past it the oldest are forgotten, which can only let one more event
 * through for a forgotten key).
 *
 * Off the push's critical path: `refused` returns at once; the append runs
 * in the background and its failure is logged, never thrown. Nothing
 * acknowledged depends on it: the push is refused (403 DENIED) whether or
 * not the record is written, and the record is written after the refusal
 * was decided, so a slow log delays only the record. A record lost to a
 * node dying first is a missed announcement, never a wrong answer.
 */
import type { Logger } from "pino";
import { projectOf } from "../../protocol/access.js";
import { QUOTA_EXCEEDED_WINDOW_MS } from "../../protocol/event-types.js";
import type { EventBody } from "../../protocol/events.js";

/** What the gate knew when it refused. */
export interface QuotaRefusal {
  limitBytes: number;
  usedBytes: number;
  requestedBytes: number;
}

const MAX_TRACKED = 10_000;

export class QuotaRefusals {
  readonly #commit: (body: EventBody) => Promise<unknown>;
  readonly #region: string;
  readonly #logger: Logger;
  readonly #windowMs: number;
  readonly #now: () => number;
  /** project/repository → when its last record was written (ms). */
  readonly #last = new Map<string, number>();

  constructor(options: {
    commit: (body: EventBody) => Promise<unknown>;
    region: string;
    logger: Logger;
    windowMs?: number;
    now?: () => number;
  }) {
    this.#commit = options.commit;
    this.#region = options.region;
    this.#logger = options.logger;
    this.#windowMs = options.windowMs ?? QUOTA_EXCEEDED_WINDOW_MS;
    this.#now = options.now ?? Date.now;
  }

  /** A push to `repo` was refused: record it unless one was this window. Never throws, never waits. */
  refused(repo: string, refusal: QuotaRefusal): void {
    const now = this.#now();
    const last = this.#last.get(repo);
    if (last !== undefined && now - last < this.#windowMs) return;
    this.#last.delete(repo);
    this.#last.set(repo, now);
    if (this.#last.size > MAX_TRACKED) {
      const oldest = this.#last.keys().next().value;
      if (oldest !== undefined) this.#last.delete(oldest);
    }
    const body = {
      type: "quota.exceeded",
      project: projectOf(repo),
      repo,
      region: this.#region,
      limitBytes: refusal.limitBytes,
      usedBytes: refusal.usedBytes,
      requestedBytes: refusal.requestedBytes,
    } as EventBody;
    void this.#commit(body).catch((err) =>
      this.#logger.warn({ repo, err: (err as Error).message }, "quota refusal not recorded"),
    );
  }
}
