/**
 * When anti-entropy runs (replication/reconcile.ts), per (policy, source):
 *   - at start (a new region backfills) and every `antiEntropyIntervalMs`
 *     (default 10 minutes; 0: only at start and on demand), for every
 *     policy that is not manual;
 *   - on each schedule policy's cron (checked every second);
 *   - when the worker asks (`antiEntropy`: a policy set or deleted; `request`:
 *     a reconcile of some repositories for an event only filtered policies
 *     select);
 *   - on a `policy.run` request naming this region (`manualRun`), whose
 *     result is appended as `policy.run.finished`.
 * Requests for one (policy, source) run one at a time; those arriving
 * meanwhile are merged into the next run (a burst of on-push requests is
 * coalesced for 100 ms).
 */
import type { Logger } from "pino";
import type { PeerClient } from "../mesh-client/peer-client.js";
import { type EventBody, REBUILD_RUN } from "../protocol/events.js";
import { coversLink, nextRun, type Policy } from "../protocol/policy.js";
import { inStartupGrace } from "../protocol/startup-grace.js";
import { backoffMs, sleep } from "./backoff.js";
import type { PolicyCache } from "./policy-cache.js";
import type { ReconcileResult, Reconciler } from "./reconcile.js";

/** A queued anti-entropy request: all repositories, or some; callers waiting for its result. */
export interface RunRequest {
  repos: "all" | Set<string>;
  reason: string;
  runId?: string;
  /**
   * The source stream position of the event that asked for the run: the
   * source's peer must have applied it before its registers are read, or the
   * run would plan from a state older than the event (a signature pushed last
   * would be missed, and nothing would ask again).
   */
  sourceSeq?: number;
  done: Array<(result: ReconcileResult | Error) => void>;
}

export interface SchedulerOptions {
  /** The destination region (this worker's). */
  region: string;
  /** The other regions. */
  sources: string[];
  /** Peer clients of the other regions, by region name. */
  peers: Map<string, PeerClient>;
  policies: PolicyCache;
  reconciler: Reconciler;
  logger: Logger;
  /** Full anti-entropy every this many ms (0: only at start and on demand). */
  antiEntropyIntervalMs: number;
  /** Refusals by sources this long after start are start-up (protocol/startup-grace.ts). */
  startupGraceMs?: number;
  /** The worker's: aborts when it stops. */
  stopped: AbortSignal;
  /** A signal of one task's own, aborted when the worker stops; release() when the task ends. */
  taskSignal(): { signal: AbortSignal; release: () => void };
  /** When the worker started (ms). */
  startedAtMs(): number;
  /** Peers to copy from, nearest healthy first. */
  peersFor(): PeerClient[];
  /** Whether an operator's reset lets `repo`'s deletes under `policy` through once. */
  breakerOpen(policy: string, repo: string): Promise<boolean>;
  /** Raise the delete-breaker alert of a run that halted. */
  raiseBreaker(
    policy: string,
    repo: string,
    source: string,
    counts: { removed: number; visible: number },
  ): Promise<unknown>;
  /** Append an event this region originates. */
  appendOwn(body: EventBody): Promise<void>;
}

export class Scheduler {
  readonly #o: SchedulerOptions;
  /** Serialized anti-entropy work per (policy, source): one run at a time, requests coalesced. */
  readonly #queues = new Map<string, { running: Promise<void> | undefined; next: RunRequest | undefined }>();
  readonly #timers: NodeJS.Timeout[] = [];

  constructor(options: SchedulerOptions) {
    this.#o = options;
  }

  /** The start-up backfill, then the periodic runs and the cron of schedule policies. */
  start(): void {
    // Backfill: whatever the policies select and this region lacks, from every source.
    void this.antiEntropy("start", (p) => p.trigger.type !== "manual");
    const every = this.#o.antiEntropyIntervalMs;
    if (every > 0) {
      this.#timers.push(
        setInterval(() => void this.antiEntropy("interval", (p) => p.trigger.type !== "manual"), every),
      );
    }
    let lastTick = new Date();
    this.#timers.push(
      setInterval(() => {
        const now = new Date();
        void this.#fireSchedules(lastTick, now);
        lastTick = now;
      }, 1_000),
    );
  }

  /** Stop the timers (the worker's signal ends the runs); resolves once the runs under way ended. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    await Promise.allSettled([...this.#queues.values()].map((q) => q.running));
  }

  /** Queue a full anti-entropy run for every (policy, source) that `which` picks. */
  async antiEntropy(reason: string, which: (p: Policy) => boolean): Promise<void> {
    for (const source of this.#o.sources) {
      for (const policy of await this.#o.policies.linkPolicies(source)) {
        if (which(policy)) this.request(policy, source, { repos: "all", reason, done: [] });
      }
    }
  }

  async #fireSchedules(from: Date, to: Date): Promise<void> {
    for (const source of this.#o.sources) {
      for (const policy of await this.#o.policies.linkPolicies(source)) {
        const next = nextRun(policy, from);
        if (next !== undefined && next <= to) {
          const runId = `schedule-${next.toISOString()}`;
          this.request(policy, source, { repos: "all", reason: "schedule", runId, done: [] });
        }
      }
    }
  }

  /**
   * A `policy.run` request: run it from every source it covers, then record
   * the outcome here. A REBUILD_RUN runs every policy into this region from
   * every source (manual ones too): everything this region should hold.
   */
  async manualRun(name: string, runId: string): Promise<void> {
    const runs: Array<{ policy: Policy; source: string }> = [];
    if (name === REBUILD_RUN) {
      for (const source of this.#o.sources)
        for (const policy of await this.#o.policies.linkPolicies(source)) runs.push({ policy, source });
    } else {
      // The request may overtake the policy itself (they can come from different regions).
      let policy: Policy | undefined;
      for (let waited = 0; waited <= 30_000 && !this.#o.stopped.aborted; waited += 500) {
        policy = (await this.#o.policies.policies()).find((p) => p.name === name);
        if (policy !== undefined) break;
        await sleep(500, this.#o.stopped);
      }
      if (policy === undefined) return;
      for (const source of this.#o.sources)
        if (coversLink(policy, source, this.#o.region)) runs.push({ policy, source });
    }
    if (runs.length === 0 && name !== REBUILD_RUN) return;
    const results = await Promise.all(
      runs.map(
        ({ policy, source }) =>
          new Promise<ReconcileResult | Error>((resolve) =>
            this.request(policy, source, { repos: "all", reason: "manual", runId, done: [resolve] }),
          ),
      ),
    );
    const stats: Record<string, number> = {};
    let outcome: "ok" | "failed" | "halted" = "ok";
    let error: string | undefined;
    for (const r of results) {
      if (r instanceof Error) {
        outcome = "failed";
        error = r.message;
        continue;
      }
      if (r.halted !== undefined && outcome === "ok") {
        outcome = "halted";
        error = `delete breaker: ${r.halted.repo} would lose ${r.halted.removed} of ${r.halted.visible} tags`;
      }
      for (const [k, v] of Object.entries(r.stats)) stats[k] = (stats[k] ?? 0) + v;
    }
    await this.#o.appendOwn({
      type: "policy.run.finished",
      name,
      runId,
      region: this.#o.region,
      outcome,
      stats,
      ...(error === undefined ? {} : { error }),
    });
  }

  /**
   * Ask for anti-entropy of `policy` from `source`: whole ("all") or some
   * repositories. Requests for one (policy, source) run one at a time; those
   * arriving meanwhile are merged into the next run.
   */
  request(policy: Policy, source: string, request: RunRequest): void {
    const key = `${policy.name}\u0000${source}`;
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = { running: undefined, next: undefined };
      this.#queues.set(key, queue);
    }
    queue.next = mergeRequests(queue.next, request);
    if (queue.running !== undefined) return;
    const q = queue;
    q.running = (async () => {
      // One signal per queue, not the worker's: queues are policies × sources, each waiting on it.
      const task = this.#o.taskSignal();
      try {
        while (q.next !== undefined && !task.signal.aborted) {
          const next = q.next;
          q.next = undefined;
          // Coalesce a burst of on-push requests into one pass.
          if (next.repos !== "all" && next.reason === "on-push") await sleep(100, task.signal);
          const merged = mergeRequests(next, q.next);
          q.next = undefined;
          await this.#runOnce(policy, source, merged, task.signal);
        }
      } finally {
        task.release();
      }
    })().finally(() => {
      q.running = undefined;
    });
  }

  /** One run; `signal` aborts when the worker stops. */
  async #runOnce(policy: Policy, source: string, request: RunRequest, signal: AbortSignal): Promise<void> {
    const peer = this.#o.peers.get(source);
    const log = this.#o.logger.child({ src: source, policy: policy.name, reason: request.reason });
    if (peer === undefined) return;
    const peers = [peer, ...this.#o.peersFor().filter((p) => p !== peer)];
    for (let attempt = 0; ; attempt++) {
      try {
        if (request.sourceSeq !== undefined)
          await this.#sourceApplied(peer, source, request.sourceSeq, signal);
        const result = await this.#o.reconciler.reconcile(policy, peer, peers, signal, {
          repos: request.repos === "all" ? undefined : [...request.repos],
          breakerOpen: (repo) => this.#o.breakerOpen(policy.name, repo),
        });
        if (result.halted !== undefined)
          await this.#o.raiseBreaker(policy.name, result.halted.repo, source, result.halted);
        if (result.plans.length > 0)
          log.info({ stats: result.stats, halted: result.halted }, "anti-entropy run");
        for (const done of request.done) done(result);
        return;
      } catch (err) {
        // A source still starting refuses (its peer is not listening yet): during the
        // start-up grace that is retried quietly, so the start-up backfill is not lost.
        const starting =
          (err as { recoverable?: boolean }).recoverable === true &&
          inStartupGrace(this.#o.startedAtMs(), Date.now(), this.#o.startupGraceMs);
        if (starting && !this.#o.stopped.aborted) {
          log.debug({ err, attempt }, "anti-entropy source not up yet; retrying");
          await sleep(backoffMs(attempt, 250, 5_000), signal);
          if (!signal.aborted) continue;
        }
        if (!this.#o.stopped.aborted) log.warn({ err, attempts: attempt + 1 }, "anti-entropy run failed");
        for (const done of request.done) done(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
  }

  /** Wait (10 s at most) until the source's peer has applied its own stream up to `seq`. */
  async #sourceApplied(peer: PeerClient, source: string, seq: number, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!signal.aborted && Date.now() < deadline) {
      const status = await peer.status(this.#o.region).catch(() => undefined);
      if (status !== undefined && Number(status.applied[source] ?? 0) >= seq) return;
      await sleep(25, signal);
    }
  }
}

/** One request covering both (either may be absent, not both). */
function mergeRequests(a: RunRequest | undefined, b: RunRequest | undefined): RunRequest {
  if (a === undefined || b === undefined) return (a ?? b)!;
  const repos = a.repos === "all" || b.repos === "all" ? "all" : new Set([...a.repos, ...b.repos]);
  const reason = a.reason === "on-push" ? b.reason : a.reason;
  const sourceSeq = Math.max(a.sourceSeq ?? 0, b.sourceSeq ?? 0);
  return {
    repos,
    reason,
    runId: a.runId ?? b.runId,
    ...(sourceSeq > 0 ? { sourceSeq } : {}),
    done: [...a.done, ...b.done],
  };
}
