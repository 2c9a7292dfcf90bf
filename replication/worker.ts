/**
 * The replication worker of one region (the destination): a durable consumer
 * on every other region's stream, copying what each event needs by digest and
 * then appending the event to the local log.
 *
 * Per source region, events are committed strictly in order: up to
 * PIPELINE_DEPTH of them are prepared (their content copied) at once, and
 * each is appended here only after every earlier one; an event that cannot be
 * completed yet (a peer is unreachable) is retried with backoff and holds
 * back that source only, so a later tag never overtakes the manifest it
 * points to. Deletions are judged by the delete breaker one at a time, once
 * everything before them is committed. An event is acknowledged at the source only after
 * its replica is durably in the local log. Only events that originated in the
 * source region are taken from it (each region's own stream carries its own
 * writes; the others' arrive from their own streams).
 *
 * A replicated event keeps its origin's id, origin, clock and time, and gets
 * `cause` = the origin id and `srcSeq` = its sequence in the origin's stream
 * (what the peer's Status reports per source): the id is the JetStream message id (a redelivery is
 * de-duplicated by the local stream) and the view's de-duplication key.
 * Before a `manifest.pushed` (and a `tag.set`) is appended, the manifest's
 * whole closure — bytes, blobs, child manifests — is present locally, so a tag
 * is never visible in a region before everything it points to can be pulled.
 *
 * Every event's copying has a deadline (`eventDeadlineMs`, default 15
 * minutes), and a manifest's closure is walked once per digest within
 * `closureLimits` (replication/copy.ts): an event whose content cannot be
 * copied in time, or whose closure is over the limits (at once: that does
 * not change by retrying), is recorded as failed — an `alert.raised` of kind
 * "replication-failed" (one per event and region, shown by `meridian alerts`
 * and `meridian replication status`) — and terminated at the source, so the
 * stream moves on and a redelivery does not redo the work. Its content comes
 * later only through anti-entropy, or a later event needing the same
 * content, each under the same bounds.
 *
 * Policies (protocol/policy.ts, read from this worker's own view of the local
 * log) decide what each source event becomes here:
 *   - admin events (policies, rules, alerts, conflicts) always replicate;
 *   - an event an unfiltered on-push policy selects replicates as above
 *     (without its tag when the policy leaves tags out);
 *   - an event only filtered policies select schedules a reconcile of its
 *     repository under each of them (replication/reconcile.ts): filters
 *     are judged on the repository's whole state, not on one event;
 *   - anything else is skipped.
 * Deletions pass the delete breaker first: one that would take the share of
 * a repository's tags removed within the window over the limit raises an
 * alert and stops this source's stream until an operator resets the breaker.
 *
 * Anti-entropy runs (every selected repository whose summary differs) happen
 * at start (a new region backfills), every `antiEntropyIntervalMs`, on each
 * schedule policy's cron, when an on-push policy is set (events this worker
 * judged before its view knew the policy would otherwise wait for the next
 * periodic run), for the default mirror on every link it governs whenever a
 * policy is set or deleted (removing an exclusive policy brings the mirror
 * back to its link: what the policy held back arrives at once), and on every `policy.run` request naming this region as a
 * destination; a requested run's result is appended as `policy.run.finished`.
 *
 * Stalls (issue 11): every link's truth — how far behind, the oldest
 * pending event's age, the last success, the recent lag — is kept by
 * `links` (replication/links.ts) and served on /metrics and /links. After a
 * frozen region resumes or a link heals, replication resumes within about
 * 8 s + 5 s (every NATS connection and peer channel notices a silent peer
 * and redials within those bounds: node/data/nats-connect.ts,
 * mesh-client/peer-client.ts) and the region serves it within 5 s more
 * (node/data/jetstream-log.ts tail); replication/README.md has the figures.
 *
 * Conflicts: when a replicated tag write loses the merge here to a write this
 * region made, this region appends a `tag.conflict` naming both (its id is
 * derived from the two writes, so it is recorded once however often seen).
 */
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry as MetricsRegistry } from "prom-client";
import type { PeerClient } from "../mesh-client/peer-client.js";
import type { BlobStore } from "../node/data/blob-store.js";
import type { EventLog } from "../node/data/event-log.js";
import { type NatsClientConfig, natsConnectOptions } from "../node/data/nats-connect.js";
import type { MetadataView } from "../node/data/view.js";
import { isTerminal, PeerUnavailableError } from "../protocol/errors.js";
import {
  type ContentEvent,
  decodeEvent,
  derivedId,
  EVENT_SCHEMA_VERSION,
  type EventBody,
  isContentEvent,
  REBUILD_RUN,
  type RegistryEvent,
  streamName,
  writeIdOf,
} from "../protocol/events.js";
import { HybridClock } from "../protocol/hlc.js";
import type { Mesh, RegionEndpoints } from "../protocol/mesh.js";
import {
  coversLink,
  DEFAULT_POLICY,
  type EventKind,
  effectivePolicies,
  isFiltered,
  nextRun,
  type Policy,
  parsePolicy,
  selectsKind,
  selectsRepository,
} from "../protocol/policy.js";
import { nearestFirst, type RegionHealth } from "../protocol/routing.js";
import { inStartupGrace, STARTUP_GRACE_MS } from "../protocol/startup-grace.js";
import { ClosureLimitError, type ClosureLimits, Copier } from "./copy.js";
import { LinkMonitor } from "./links.js";
import { type BreakerLimits, breakerTrips, DEFAULT_BREAKER } from "./plan.js";
import { conflictHere, type ReconcileResult, Reconciler, type TagConflictBody } from "./reconcile.js";

export interface WorkerOptions {
  /** The destination region (this worker's). */
  region: string;
  mesh: Mesh;
  store: BlobStore;
  /** The local region's log. */
  log: EventLog;
  /**
   * How to sign in to the other regions' NATS (node/data/nats-connect.ts):
   * the worker's one credential, which every region's server knows, read only
   * there (cli/nats-auth.ts). None: anonymous.
   */
  nats?: NatsClientConfig;
  /** Peer clients of the other regions, by region name. */
  peers: Map<string, PeerClient>;
  /**
   * This region's own peer: its Status says how the control plane sees the
   * other regions (up, RTT), which orders the regions a copy is tried from.
   */
  localPeer?: PeerClient;
  /** Where copy state (resumable partial copies) is kept. */
  stateDir: string;
  logger: Logger;
  metrics: MetricsRegistry;
  /** Retry backoff bounds, ms. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /**
   * This worker's own view of the local region's log, kept up to date by the
   * caller: policies, tag registers (conflicts, the breaker's counts), and
   * `policy.run` requests come from it.
   */
  view: MetadataView;
  /** Delete breaker limits (default: more than half of a repository's tags, 4 tags or more). */
  breaker?: BreakerLimits;
  /** Window over which a stream's deletions add up for the breaker, ms (default 10 minutes). */
  breakerWindowMs?: number;
  /** Full anti-entropy from every source, ms (default 10 minutes; 0 = only at start and on demand). */
  antiEntropyIntervalMs?: number;
  /** Bounds of a manifest's closure (default replication/copy.ts DEFAULT_CLOSURE_LIMITS). */
  closureLimits?: Partial<ClosureLimits>;
  /**
   * How long an event's content may take to copy, retries included, before
   * the event is recorded as failed and the stream moves on (default
   * DEFAULT_EVENT_DEADLINE_MS).
   */
  eventDeadlineMs?: number;
  /** Refusals by sources this long after start() are start-up (default STARTUP_GRACE_MS, protocol/startup-grace.ts). */
  startupGraceMs?: number;
}

/** Default `eventDeadlineMs`: 15 minutes (a multi-GiB layer over a slow link fits; a stuck event does not block for longer). */
export const DEFAULT_EVENT_DEADLINE_MS = 15 * 60_000;
/** Kind of the alert recording an event given up on. */
export const REPLICATION_FAILED = "replication-failed";

/** Backoff before attempt `n` (0-based): doubling from `min`, capped at `max`. Pure. */
export function backoffMs(n: number, min: number, max: number): number {
  return Math.min(max, min * 2 ** Math.min(n, 30));
}

/**
 * How long the source waits for an ack before redelivering: a crashed
 * worker's event, or one lost in flight when a link broke (the long
 * convergence run showed heals waiting a whole ack_wait for such an event,
 * hence short). A long copy keeps its event alive with working().
 */
const ACK_WAIT_MS = 4_000;
/** Events of one source prepared (content being copied) at once. */
const PIPELINE_DEPTH = 16;

/** An event after its preparation, waiting for its turn to be committed. */
type Prepared =
  | { kind: "commit"; event: RegistryEvent; outgoing: RegistryEvent }
  | { kind: "skip"; outcome: "skipped" | "filtered" }
  | { kind: "invalid" }
  | { kind: "failed"; event: RegistryEvent; reason: string; attempts: number }
  | { kind: "stopped" };

export function durableName(destination: string): string {
  return `replicate-to-${destination}`;
}

export class ReplicationWorker {
  readonly #o: WorkerOptions;
  readonly #copier: Copier;
  readonly #abort = new AbortController();
  /**
   * What must end when the worker stops, each event's preparation and each
   * source's consumer: called by one listener on the stop signal, not one
   * listener each (those grow with the pipelines, 16 events per source, and
   * tripped Node's MaxListenersExceededWarning on the shared signal).
   */
  readonly #onStop = new Set<() => void>();
  /** When start() ran: refusals by sources within the start-up grace are expected (protocol/startup-grace.ts). */
  #startedAtMs = Date.now();
  readonly #runs: Promise<void>[] = [];
  readonly #connections: NatsConnection[] = [];
  readonly #lag: Histogram<"src" | "dst">;
  /** Each link's truth (behind by, oldest pending age, last success, recent lag): replication/links.ts. */
  readonly links: LinkMonitor;
  readonly #bytes: Counter<"src" | "dst">;
  readonly #events: Counter<"src" | "dst" | "outcome">;
  /** Last source sequence replicated, per source (for status). */
  readonly applied = new Map<string, number>();
  /** The control plane's latest view of the other regions. */
  #health: RegionHealth[] = [];
  #healthTimer: NodeJS.Timeout | undefined;
  /** Ends this worker's subscription to the view's applied events (stop). */
  #unsubscribeApplied: (() => void) | undefined;
  readonly #reconciler: Reconciler;
  readonly #clock = new HybridClock();
  /** Serialized anti-entropy work per (policy, source): one run at a time, requests coalesced. */
  readonly #queues = new Map<string, { running: Promise<void> | undefined; next: RunRequest | undefined }>();
  /** Deletions let through per repository recently, for the stream breaker's window. */
  readonly #deleteWindow = new Map<string, Array<{ atMs: number; removed: number }>>();
  /** Breaker resets already used (reset id + repository): a reset lets one batch through. */
  readonly #resetsUsed = new Set<string>();
  #timers: NodeJS.Timeout[] = [];
  /** Sequence of this worker's last append to the local log (its view is waited on up to it). */
  #lastAppended = 0;
  /** Sequence of this worker's last append per "repo:tag" not yet known applied (conflict checks wait on it). */
  readonly #tagAppends = new Map<string, number>();
  /**
   * Events this worker is retrying, by "repo@digest" (or "repo:tag"): the
   * latest failure's reason, for `meridian replication status`.
   */
  readonly failures = new Map<
    string,
    { source: string; eventId: string; reason: string; attempts: number; at: string }
  >();
  /** Ids of events recorded as failed by this process (a redelivery is terminated at once). */
  readonly #failed = new Set<string>();

  constructor(options: WorkerOptions) {
    this.#o = options;
    this.#abort.signal.addEventListener(
      "abort",
      () => {
        for (const stop of this.#onStop) stop();
      },
      { once: true },
    );
    const registers = [options.metrics];
    this.#lag = new Histogram({
      name: "meridian_replication_lag_seconds",
      help: "Time from an event's commit at its origin to its replica's commit here",
      labelNames: ["src", "dst"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.links = new LinkMonitor({
      region: options.region,
      sources: options.mesh.regions.map((r) => r.name).filter((r) => r !== options.region),
      metrics: options.metrics,
    });
    this.#bytes = new Counter({
      name: "meridian_replication_bytes_total",
      help: "Blob bytes copied from the source region",
      labelNames: ["src", "dst"],
      registers,
    });
    this.#events = new Counter({
      name: "meridian_replication_events_total",
      help: "Source events handled, by outcome (replicated, skipped, filtered, failed)",
      labelNames: ["src", "dst", "outcome"],
      registers,
    });
    this.#copier = new Copier({
      store: options.store,
      stateDir: options.stateDir,
      logger: options.logger.child({ component: "copy" }),
      onBytes: (src, n) => this.#bytes.inc({ src, dst: options.region }, n),
      ...(options.closureLimits === undefined ? {} : { limits: options.closureLimits }),
    });
    this.#reconciler = new Reconciler({
      log: options.log,
      view: options.view,
      copier: this.#copier,
      breaker: options.breaker ?? DEFAULT_BREAKER,
      logger: options.logger.child({ component: "reconcile" }),
      region: options.region,
      recordConflict: (conflict) => this.#recordConflict(conflict),
    });
  }

  /**
   * A signal of one task's own, aborted when the worker stops (through
   * #onStop: the worker's signal keeps one listener however many tasks wait);
   * release() when the task ends.
   */
  #taskSignal(): { signal: AbortSignal; release: () => void } {
    const task = new AbortController();
    const stop = () => task.abort(this.#abort.signal.reason);
    if (this.#abort.signal.aborted) stop();
    this.#onStop.add(stop);
    return { signal: task.signal, release: () => this.#onStop.delete(stop) };
  }

  start(): void {
    this.#startedAtMs = Date.now();
    const local = this.#o.localPeer;
    if (local !== undefined) {
      const refresh = () =>
        local.status(this.#o.region).then(
          (reply) => {
            this.#health = reply.peers.map((p) => ({ region: p.region, up: p.up, rttMs: p.rttMs }));
          },
          () => undefined, // keep the last view; the order falls back to names
        );
      void refresh();
      this.#healthTimer = setInterval(refresh, 1_000);
    }
    for (const source of this.#o.mesh.regions) {
      if (source.name === this.#o.region) continue;
      this.#runs.push(this.#runSource(source));
    }
    this.#unsubscribeApplied = this.#o.view.applied.subscribe((event) => {
      this.#clock.observe(event.hlc);
      if (event.type === "policy.set" || event.type === "policy.deleted") {
        this.#policies = undefined;
        // Events this worker judged before it knew the policy are brought in now, and a link the
        // change gave back to the default mirror (an exclusive policy deleted, disabled-to-
        // non-exclusive, …) catches up at once rather than at the next periodic run: the
        // mirror's run on a link that already has everything compares summaries and stops.
        const name = event.name;
        void this.#antiEntropy(
          event.type,
          (p) => p.trigger.type === "on-push" && (p === DEFAULT_POLICY || p.name === name),
        );
      }
      if (event.type === "policy.run" && (event.region ?? this.#o.region) === this.#o.region)
        void this.#manualRun(event.name, event.runId);
    });
    // Backfill: whatever the policies select and this region lacks, from every source.
    void this.#antiEntropy("start", (p) => p.trigger.type !== "manual");
    const every = this.#o.antiEntropyIntervalMs ?? 600_000;
    if (every > 0) {
      this.#timers.push(
        setInterval(() => void this.#antiEntropy("interval", (p) => p.trigger.type !== "manual"), every),
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

  async stop(): Promise<void> {
    clearInterval(this.#healthTimer);
    this.#unsubscribeApplied?.();
    for (const t of this.#timers) clearInterval(t);
    this.#abort.abort();
    await Promise.allSettled(this.#runs);
    await Promise.allSettled([...this.#queues.values()].map((q) => q.running));
    await Promise.allSettled(this.#connections.map((nc) => nc.close()));
  }

  // ---------------------------------------------------------------- policies

  /**
   * Policies in force (every region's, from the view); malformed ones are
   * logged and left out. Parsed once and kept until a policy event is applied.
   */
  async policies(): Promise<Policy[]> {
    this.#policies ??= this.#loadPolicies();
    return this.#policies;
  }
  #policies: Promise<Policy[]> | undefined;

  async #loadPolicies(): Promise<Policy[]> {
    const out: Policy[] = [];
    for (const { name, policy } of await this.#o.view.policies()) {
      try {
        out.push(parsePolicy(policy));
      } catch (err) {
        this.#o.logger.error({ err, policy: name }, "stored policy invalid; ignored");
      }
    }
    return out;
  }

  /** Policies deciding what flows from `source` to this region (the default mirror when none name the link). */
  async #linkPolicies(source: string): Promise<Policy[]> {
    return effectivePolicies(await this.policies(), source, this.#o.region);
  }

  #sources(): string[] {
    return this.#o.mesh.regions.map((r) => r.name).filter((r) => r !== this.#o.region);
  }

  /** Queue a full anti-entropy run for every (policy, source) that `which` picks. */
  async #antiEntropy(reason: string, which: (p: Policy) => boolean): Promise<void> {
    for (const source of this.#sources()) {
      for (const policy of await this.#linkPolicies(source)) {
        if (which(policy)) this.#request(policy, source, { repos: "all", reason, done: [] });
      }
    }
  }

  async #fireSchedules(from: Date, to: Date): Promise<void> {
    for (const source of this.#sources()) {
      for (const policy of await this.#linkPolicies(source)) {
        const next = nextRun(policy, from);
        if (next !== undefined && next <= to) {
          const runId = `schedule-${next.toISOString()}`;
          this.#request(policy, source, { repos: "all", reason: "schedule", runId, done: [] });
        }
      }
    }
  }

  /**
   * A `policy.run` request: run it from every source it covers, then record
   * the outcome here. A REBUILD_RUN runs every policy into this region from
   * every source (manual ones too): everything this region should hold.
   */
  async #manualRun(name: string, runId: string): Promise<void> {
    const runs: Array<{ policy: Policy; source: string }> = [];
    if (name === REBUILD_RUN) {
      for (const source of this.#sources())
        for (const policy of await this.#linkPolicies(source)) runs.push({ policy, source });
    } else {
      // The request may overtake the policy itself (they can come from different regions).
      let policy: Policy | undefined;
      for (let waited = 0; waited <= 30_000 && !this.#abort.signal.aborted; waited += 500) {
        policy = (await this.policies()).find((p) => p.name === name);
        if (policy !== undefined) break;
        await sleep(500, this.#abort.signal);
      }
      if (policy === undefined) return;
      for (const source of this.#sources())
        if (coversLink(policy, source, this.#o.region)) runs.push({ policy, source });
    }
    if (runs.length === 0 && name !== REBUILD_RUN) return;
    const results = await Promise.all(
      runs.map(
        ({ policy, source }) =>
          new Promise<ReconcileResult | Error>((resolve) =>
            this.#request(policy, source, { repos: "all", reason: "manual", runId, done: [resolve] }),
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
    await this.#appendOwn({
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
  #request(policy: Policy, source: string, request: RunRequest): void {
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
      const task = this.#taskSignal();
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
    const peers = [peer, ...this.#peersFor().filter((p) => p !== peer)];
    for (let attempt = 0; ; attempt++) {
      try {
        if (request.sourceSeq !== undefined)
          await this.#sourceApplied(peer, source, request.sourceSeq, signal);
        const result = await this.#reconciler.reconcile(policy, peer, peers, signal, {
          repos: request.repos === "all" ? undefined : [...request.repos],
          breakerOpen: (repo) => this.#breakerOpen(policy.name, repo),
        });
        if (result.halted !== undefined)
          await this.#raiseBreaker(policy.name, result.halted.repo, source, result.halted);
        if (result.plans.length > 0)
          log.info({ stats: result.stats, halted: result.halted }, "anti-entropy run");
        for (const done of request.done) done(result);
        return;
      } catch (err) {
        // A source still starting refuses (its peer is not listening yet): during the
        // start-up grace that is retried quietly, so the start-up backfill is not lost.
        const starting =
          (err as { recoverable?: boolean }).recoverable === true &&
          inStartupGrace(this.#startedAtMs, Date.now(), this.#o.startupGraceMs);
        if (starting && !this.#abort.signal.aborted) {
          log.debug({ err, attempt }, "anti-entropy source not up yet; retrying");
          await sleep(backoffMs(attempt, 250, 5_000), signal);
          if (!signal.aborted) continue;
        }
        if (!this.#abort.signal.aborted) log.warn({ err, attempts: attempt + 1 }, "anti-entropy run failed");
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

  // ---------------------------------------------------------------- the delete breaker

  /**
   * Whether an operator's reset lets `repo`'s deletes under `policy` through
   * once: a `breaker.reset` made after the repository's last breaker alert
   * here, not used yet by this worker.
   */
  async #breakerOpen(policy: string, repo: string): Promise<boolean> {
    const reset = await this.#o.view.breakerReset(policy);
    if (reset === undefined) return false;
    const last = (await this.#o.view.alerts())
      .filter((a) => a.kind === "delete-breaker" && a.policy === policy && a.repo === repo)
      .filter((a) => a.detail?.destination === this.#o.region)
      .at(-1);
    if (last === undefined || Date.parse(reset.at) < Date.parse(last.at)) return false;
    const key = `${reset.id}\u0000${repo}`;
    if (this.#resetsUsed.has(key)) return false;
    this.#resetsUsed.add(key);
    return true;
  }

  async #raiseBreaker(
    policy: string,
    repo: string,
    source: string,
    counts: { removed: number; visible: number },
  ): Promise<string> {
    const id = derivedId(
      "breaker",
      this.#o.region,
      policy,
      repo,
      String(counts.removed),
      String(counts.visible),
    );
    await this.#appendOwn(
      {
        type: "alert.raised",
        kind: "delete-breaker",
        message: `deletes from ${source} would remove ${counts.removed} of ${counts.visible} tags of ${repo} in ${this.#o.region}; halted until the breaker of policy ${policy} is reset`,
        policy,
        repo,
        detail: { source, destination: this.#o.region, ...counts },
      },
      id,
    );
    this.#o.logger.warn({ policy, repo, src: source, ...counts }, "delete breaker tripped");
    return id;
  }

  /**
   * Hold a deletion from the stream until it is within the breaker's limits
   * or an operator resets the breaker (polling the view for the reset).
   */
  async #breakerGate(policy: string, source: string, event: ContentEvent): Promise<void> {
    // The view must include what this worker already let through, or the window counts it twice.
    await this.#caughtUp();
    // One read of the tags shown here, so the share is computed on one snapshot.
    const live = await this.#o.view.liveTags(event.repo);
    const removed = tagsRemovedBy(event, live);
    if (removed === 0) return;
    const windowMs = this.#o.breakerWindowMs ?? 600_000;
    const now = Date.now();
    const recent = (this.#deleteWindow.get(event.repo) ?? []).filter((d) => now - d.atMs < windowMs);
    const before = recent.reduce((n, d) => n + d.removed, 0);
    const visible = live.length + before;
    const limits = this.#o.breaker ?? DEFAULT_BREAKER;
    if (breakerTrips(before + removed, visible, limits)) {
      const resetBefore = (await this.#o.view.breakerReset(policy))?.id;
      await this.#raiseBreaker(policy, event.repo, source, { removed: before + removed, visible });
      while (!this.#abort.signal.aborted) {
        const reset = (await this.#o.view.breakerReset(policy))?.id;
        if (reset !== undefined && reset !== resetBefore) break;
        await sleep(500, this.#abort.signal);
      }
      recent.length = 0; // the operator accepted this batch: count afresh
    }
    recent.push({ atMs: now, removed });
    this.#deleteWindow.set(event.repo, recent);
  }

  #recordFailure(source: string, event: RegistryEvent, err: unknown, attempt: number): void {
    if (!isContentEvent(event)) return;
    this.failures.set(failureKey(event), {
      source,
      eventId: event.id,
      reason: err instanceof Error ? err.message : String(err),
      attempts: attempt + 1,
      at: new Date().toISOString(),
    });
  }

  /**
   * Record that `event` from `source` will not be replicated here: an alert
   * (its id derived from the region and the event, so recorded once however
   * often this runs), kept in the status map too.
   */
  async #recordFailed(
    source: string,
    { event, reason, attempts }: { event: RegistryEvent; reason: string; attempts: number },
    seq: number,
  ): Promise<void> {
    if (this.#failed.has(event.id)) return; // recorded already (a redelivery)
    const region = this.#o.region;
    const content = isContentEvent(event) ? event : undefined;
    const what =
      content === undefined ? event.type : `${event.type} ${content.repo}${artifactOf(content) ?? ""}`;
    await this.#appendOwn(
      {
        type: "alert.raised",
        kind: REPLICATION_FAILED,
        message: `${what} from ${source} not replicated to ${region}: ${reason}`.slice(0, 1024),
        ...(content === undefined ? {} : { repo: content.repo }),
        detail: {
          source,
          destination: region,
          eventId: event.id,
          seq,
          reason: reason.slice(0, 512),
          ...("digest" in event ? { digest: event.digest } : {}),
        },
      },
      failedAlertId(region, event.id),
    );
    this.#failed.add(event.id);
    if (this.#failed.size > 10_000) this.#failed.delete(this.#failed.values().next().value!);
    if (content !== undefined)
      this.failures.set(failureKey(content), {
        source,
        eventId: event.id,
        reason,
        attempts,
        at: new Date().toISOString(),
      });
  }

  /** Whether `eventId` was recorded as failed here (by this process, or before a restart: the view's alerts). */
  async #recordedFailed(eventId: string): Promise<boolean> {
    if (this.#failed.has(eventId)) return true;
    const id = failedAlertId(this.#o.region, eventId);
    if (!(await this.#o.view.alerts()).some((a) => a.id === id)) return false;
    this.#failed.add(eventId);
    return true;
  }

  /** Wait (briefly) until this worker's view has applied its own last append. */
  async #caughtUp(): Promise<void> {
    await this.#o.view.waitFor(this.#lastAppended, 5_000).catch(() => undefined);
  }

  #recordConflict(conflict: TagConflictBody): Promise<void> {
    return this.#appendOwn(conflict, derivedId("conflict", conflict.loser.id, conflict.winner.id));
  }

  /** Append an event this region originates (alerts, run results, conflicts). */
  async #appendOwn(body: EventBody, id?: string): Promise<void> {
    const event = {
      id: id ?? derivedId("own", this.#o.region, String(Date.now()), String(Math.random())),
      v: EVENT_SCHEMA_VERSION,
      origin: this.#o.region,
      hlc: this.#clock.now(),
      actor: "system",
      at: new Date().toISOString(),
      ...body,
    } as RegistryEvent;
    const { seq } = await this.#o.log.append(event);
    this.#lastAppended = Math.max(this.#lastAppended, seq);
  }

  /**
   * Peers to copy from, nearest healthy first (protocol/routing.ts) by the
   * control plane's heartbeats; each is asked whether it has the content
   * before a copy starts, and the source region always has it.
   */
  #peersFor(): PeerClient[] {
    const order = nearestFirst([...this.#o.peers.keys()], this.#health);
    return order.map((r) => this.#o.peers.get(r)!);
  }

  async #runSource(source: RegionEndpoints): Promise<void> {
    const signal = this.#abort.signal;
    const log = this.#o.logger.child({ src: source.name });
    // The source's nats-server may still be starting (connect waits quietly); still not
    // reachable when the start-up grace ends is a fault.
    const graceLeft = (this.#o.startupGraceMs ?? STARTUP_GRACE_MS) - (Date.now() - this.#startedAtMs);
    const stillDown = setTimeout(
      () => log.warn({ nats: source.nats }, "source still unreachable after start-up"),
      Math.max(0, graceLeft),
    );
    stillDown.unref();
    const quiet = () => clearTimeout(stillDown);
    this.#onStop.add(quiet);
    const nc = await connect({
      ...natsConnectOptions(this.#o.nats),
      servers: [source.nats],
      name: `meridian-worker-${this.#o.region}<-${source.name}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
    quiet();
    this.#onStop.delete(quiet);
    this.#connections.push(nc);
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const pendingTimer = setInterval(() => void this.#reportPending(jsm, source.name), 2_000);
    try {
      while (!signal.aborted) {
        try {
          await this.#consume(js, jsm, source, log);
        } catch (err) {
          // Until the source's node has started, its stream does not exist (StreamNotFoundError)
          // or its JetStream does not answer yet: expected during the start-up grace, retried.
          if (!signal.aborted) {
            if (inStartupGrace(this.#startedAtMs, Date.now(), this.#o.startupGraceMs))
              log.debug({ err }, "source consumer not ready yet; retrying");
            else log.warn({ err }, "source consumer interrupted");
          }
        }
        if (!signal.aborted) await sleep(500, signal);
      }
    } finally {
      clearInterval(pendingTimer);
    }
  }

  async #consume(
    js: JetStreamClient,
    jsm: JetStreamManager,
    source: RegionEndpoints,
    log: Logger,
  ): Promise<void> {
    const stream = streamName(source.name);
    const durable = durableName(this.#o.region);
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      // Short, so a crashed worker's in-flight event is redelivered soon; a
      // long copy keeps its event alive with working() (see #prepare).
      ack_wait: nanos(ACK_WAIT_MS),
      max_ack_pending: 256,
    };
    try {
      await jsm.consumers.add(stream, config);
    } catch (err) {
      // The durable exists with older settings: bring them up to date.
      const info = await jsm.consumers.info(stream, durable).catch(() => undefined);
      if (info === undefined) throw err;
      await jsm.consumers.update(stream, durable, {
        ack_wait: config.ack_wait,
        max_ack_pending: config.max_ack_pending,
      });
    }
    const consumer = await js.consumers.get(stream, durable);
    // Pull requests expire every 5 s (not the client's default 30 s): a pull
    // lost to a broken link is noticed and renewed within seconds of the heal.
    // Few messages buffered: each one's ack_wait runs from its delivery, not its handling.
    const messages = await consumer.consume({ max_messages: PIPELINE_DEPTH, expires: 5_000 });
    const stop = () => messages.stop();
    this.#onStop.add(stop);
    // Events are prepared (content copied) up to PIPELINE_DEPTH at once and
    // committed (appended here, acknowledged) one at a time in stream order:
    // copies overlap, and the log, `applied` and the read-your-writes
    // positions derived from it still follow the source's order.
    let committed: Promise<void> = Promise.resolve();
    let inFlight = 0;
    let slotFreed: (() => void) | undefined;
    try {
      for await (const m of messages) {
        this.links.delivered(source.name, m.seq, m.info.timestampNanos / 1e6, m.info.pending);
        // Kept alive from delivery to acknowledgement: an event waiting for its turn must not be redelivered.
        const keepAlive = setInterval(() => m.working(), ACK_WAIT_MS / 3);
        // What came before this event, committed (a deletion's breaker check waits for it).
        const earlier = committed;
        const prepared = this.#prepare(source.name, m, log, earlier);
        inFlight++;
        committed = committed
          .then(() => prepared)
          .then((p) => this.#commit(source.name, m, p, log))
          .catch((err) => {
            if (!this.#abort.signal.aborted) log.error({ err, seq: m.seq }, "replication of an event failed");
          })
          .finally(() => {
            clearInterval(keepAlive);
            inFlight--;
            slotFreed?.();
          });
        while (inFlight >= PIPELINE_DEPTH && !this.#abort.signal.aborted)
          await new Promise<void>((resolve) => {
            slotFreed = resolve;
          });
        if (this.#abort.signal.aborted) break;
      }
    } finally {
      this.#onStop.delete(stop);
      messages.stop();
      await committed;
    }
  }

  /**
   * The part of handling an event that may overlap with others: decode it,
   * decide what this region takes of it (policies, the delete breaker), and
   * copy the content it needs, retrying until that succeeds, the event's
   * deadline passes or its closure is found over the limits (then it is
   * "failed"), or the worker stops. (The consume loop keeps the message
   * alive until it is acknowledged.)
   */
  async #prepare(source: string, m: JsMsg, log: Logger, earlier?: Promise<void>): Promise<Prepared> {
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
    if (m.redelivered && (await this.#recordedFailed(event.id)))
      return { kind: "failed", event: outgoing, reason: "recorded as failed before", attempts: 0 };
    const deadlineMs = this.#o.eventDeadlineMs ?? DEFAULT_EVENT_DEADLINE_MS;
    // Aborted by the deadline or the worker's stop; its timer and listener go with the event.
    const expiry = new AbortController();
    const deadline = expiry.signal;
    const timer = setTimeout(() => expiry.abort(new Error("event deadline passed")), deadlineMs);
    const onStop = () => expiry.abort(this.#abort.signal.reason);
    this.#onStop.add(onStop);
    try {
      return await this.#copyContent(source, m, log, event, outgoing, deadline, deadlineMs);
    } finally {
      clearTimeout(timer);
      this.#onStop.delete(onStop);
    }
  }

  /** Copy an event's content, retrying with backoff until it is there, `deadline` aborts, or it cannot be. */
  async #copyContent(
    source: string,
    m: JsMsg,
    log: Logger,
    event: RegistryEvent,
    outgoing: RegistryEvent,
    deadline: AbortSignal,
    deadlineMs: number,
  ): Promise<Prepared> {
    const min = this.#o.retryMinMs ?? 250;
    const max = this.#o.retryMaxMs ?? 5_000;
    let last = "";
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#fetchContent(outgoing, deadline);
        return { kind: "commit", event, outgoing };
      } catch (err) {
        if (this.#abort.signal.aborted) return { kind: "stopped" };
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
          inStartupGrace(this.#startedAtMs, Date.now(), this.#o.startupGraceMs);
        log[starting ? "info" : "warn"](
          { err, eventId: event.id, seq: m.seq, attempt },
          "replication attempt failed",
        );
        this.#recordFailure(source, outgoing, err, attempt);
        await sleep(backoffMs(attempt, min, max), deadline);
        if (this.#abort.signal.aborted) return { kind: "stopped" };
      }
    }
  }

  /** Commit a prepared event, in stream order: append it here, acknowledge it, record it. */
  async #commit(source: string, m: JsMsg, p: Prepared, log: Logger): Promise<void> {
    const labels = { src: source, dst: this.#o.region };
    if (p.kind === "stopped") return; // not acked: redelivered after a restart
    if (p.kind === "invalid") {
      m.term();
      return;
    }
    if (p.kind === "skip") {
      this.#events.inc({ ...labels, outcome: p.outcome });
      m.ack();
      this.applied.set(source, m.seq);
      this.links.committed(source, m.seq);
      return;
    }
    const min = this.#o.retryMinMs ?? 250;
    const max = this.#o.retryMaxMs ?? 5_000;
    if (p.kind === "failed") {
      // Recorded durably before the source forgets it: the alert, then term (never redelivered).
      for (let attempt = 0; ; attempt++) {
        try {
          await this.#recordFailed(source, p, m.seq);
          break;
        } catch (err) {
          if (this.#abort.signal.aborted) return;
          log.warn({ err, eventId: p.event.id, seq: m.seq, attempt }, "recording a failed event failed");
          await sleep(backoffMs(attempt, min, max), this.#abort.signal);
          if (this.#abort.signal.aborted) return;
        }
      }
      m.term(p.reason.slice(0, 200));
      this.applied.set(source, m.seq);
      this.links.committed(source, m.seq);
      this.#events.inc({ ...labels, outcome: "failed" });
      return;
    }
    const { event, outgoing } = p;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#append(outgoing, m.seq);
        break;
      } catch (err) {
        if (this.#abort.signal.aborted) return;
        log.warn({ err, eventId: event.id, seq: m.seq, attempt }, "appending a replicated event failed");
        await sleep(backoffMs(attempt, min, max), this.#abort.signal);
        if (this.#abort.signal.aborted) return;
      }
    }
    m.ack();
    this.applied.set(source, m.seq);
    if (isContentEvent(outgoing)) this.failures.delete(failureKey(outgoing));
    this.#events.inc({ ...labels, outcome: "replicated" });
    const lag = Math.max(0, (Date.now() - Date.parse(event.at)) / 1000);
    this.#lag.observe(labels, lag);
    this.links.committed(source, m.seq, lag);
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
    const policies = (await this.#linkPolicies(source)).filter(
      (p) => p.trigger.type === "on-push" && selectsRepository(p, event.repo),
    );
    const kinds = kindsOf(event);
    const exact = policies.filter((p) => !isFiltered(p) && kinds.some((k) => selectsKind(p, k)));
    if (exact.length === 0) {
      for (const p of policies.filter(isFiltered))
        this.#request(p, source, {
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
      await this.#breakerGate(policy.name, source, event);
    }
    return out;
  }

  /** If `event` writes a tag concurrently with this region's own write there, the conflict to record. */
  async #conflictWith(event: RegistryEvent): Promise<TagConflictBody | undefined> {
    if (event.type !== "tag.set" && event.type !== "tag.deleted" && event.type !== "manifest.pushed")
      return undefined;
    if (event.tag === undefined) return undefined;
    const digest = event.type === "tag.deleted" ? null : event.digest;
    // The register must include this worker's own last write to the tag, if any (not every append).
    const key = `${event.repo}:${event.tag}`;
    const mine = this.#tagAppends.get(key);
    if (mine !== undefined) {
      if (mine > this.#o.view.appliedSeq) await this.#o.view.waitFor(mine, 5_000).catch(() => undefined);
      this.#tagAppends.delete(key);
    }
    return conflictHere(this.#o.view, this.#o.region, event.repo, event.tag, {
      digest: digest ?? undefined,
      hlc: event.hlc,
      origin: event.origin,
      eventId: writeIdOf(event),
      epoch: event.epoch,
      prev: event.prev,
    });
  }

  /** Copy what an event needs here (a manifest's whole closure, a blob) before it is appended. */
  async #fetchContent(event: RegistryEvent, signal: AbortSignal): Promise<void> {
    const peers = this.#peersFor();
    switch (event.type) {
      case "blob.pushed":
        await this.#copier.ensureBlob(event.digest, peers, signal);
        break;
      case "manifest.pushed":
      case "tag.set":
        // A manifest live here had its closure checked when it became live: a tag on it needs no copy.
        if ((await this.#o.view.manifest(event.repo, event.digest)) === undefined)
          await this.#copier.ensureManifest(event.digest, peers, signal);
        break;
      default:
        break; // deletions carry no content
    }
  }

  /** Append a replicated event here (its content is present), recording a conflict it makes. */
  async #append(event: RegistryEvent, srcSeq: number): Promise<void> {
    const conflict = await this.#conflictWith(event);
    const { seq } = await this.#o.log.append({ ...event, cause: event.id, srcSeq });
    this.#lastAppended = Math.max(this.#lastAppended, seq);
    if (
      (event.type === "tag.set" || event.type === "tag.deleted" || event.type === "manifest.pushed") &&
      event.tag
    ) {
      this.#tagAppends.set(`${event.repo}:${event.tag}`, seq);
      if (this.#tagAppends.size > 10_000) {
        const applied = this.#o.view.appliedSeq;
        for (const [k, v] of this.#tagAppends) if (v <= applied) this.#tagAppends.delete(k);
      }
    }
    if (conflict !== undefined) await this.#recordConflict(conflict);
  }

  /**
   * Ask the source's server where this worker's durable stands (replication/
   * links.ts). Unanswered (the source unreachable, the durable not made yet):
   * the link keeps what it was told last, its ages keep growing, and its
   * "source checked" time says how old that is.
   */
  async #reportPending(jsm: JetStreamManager, source: string): Promise<void> {
    try {
      const info = await jsm.consumers.info(streamName(source), durableName(this.#o.region));
      this.links.sourceAnswered(source, {
        deliveredSeq: info.delivered.stream_seq,
        ackFloorSeq: info.ack_floor.stream_seq,
        numPending: info.num_pending,
      });
    } catch {
      // see above
    }
  }
}

/** A queued anti-entropy request: all repositories, or some; callers waiting for its result. */
interface RunRequest {
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

/** Id of the alert recording that `eventId` failed to replicate to `region`. */
export function failedAlertId(region: string, eventId: string): string {
  return derivedId(REPLICATION_FAILED, region, eventId);
}

/** "@digest" or ":tag" of a content event, if it names one. */
function artifactOf(event: ContentEvent): string | undefined {
  if ("digest" in event) return `@${event.digest}`;
  if ("tag" in event) return `:${event.tag}`;
  return undefined;
}

/** Key of a content event's artifact in `failures`: repo@digest, or repo:tag for a tag deletion. */
export function failureKey(event: ContentEvent): string {
  if ("digest" in event) return `${event.repo}@${event.digest}`;
  if ("tag" in event) return `${event.repo}:${event.tag}`;
  return event.repo;
}

/** How many of the tags shown (`live`) a deletion event would remove or hide. */
function tagsRemovedBy(event: ContentEvent, live: ReadonlyArray<{ tag: string; digest: string }>): number {
  switch (event.type) {
    case "tag.deleted":
      return live.some((t) => t.tag === event.tag) ? 1 : 0;
    case "manifest.deleted":
      return live.filter((t) => t.digest === event.digest).length;
    case "repository.deleted":
      return live.length;
    default:
      return 0;
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

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
