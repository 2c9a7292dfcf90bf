/**
 * The replication worker of one region (the destination): a durable consumer
 * on every other region's stream, copying what each event needs by digest and
 * then appending the event to the local log.
 *
 * Per source region, events are committed strictly in order: up to
 * PIPELINE_DEPTH of them are prepared (their content copied) at once, and
 * each one's append is issued here only after every earlier one's (their
 * acknowledgements awaited side by side); an event that cannot be
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
 *
 * The worker is in parts (replication/README.md): this file wires them and
 * keeps what they share (start/stop, the delete breaker's IO, this region's
 * own appends, the order peers are tried in); source-consumer.ts consumes
 * each source's stream (prepare, commit, ordered pipelining) on
 * node/data/durable-subscription.ts; scheduler.ts runs anti-entropy;
 * delete-breaker.ts decides on deletions; policy-cache.ts, failures.ts and
 * metrics.ts keep the policies in force, the failed events and the metrics.
 */
import type { PeerClient } from "../mesh-client/peer-client.js";
import { StatusWatch } from "../mesh-client/status-watch.js";
import { Registry } from "../node/data/registry.js";
import { type ContentEvent, derivedId, type EventBody, makeEvent } from "../protocol/events.js";
import { HybridClock } from "../protocol/hlc.js";
import { DEFAULT_POLICY } from "../protocol/policy.js";
import { nearestFirst, type RegionHealth } from "../protocol/routing.js";
import { sleep } from "./backoff.js";
import { Copier } from "./copy.js";
import { judgeDeletion, resetLetsThrough, type WindowEntry } from "./delete-breaker.js";
import { EndpointReplicator } from "./endpoint-links.js";
import { FailureLog } from "./failures.js";
import { LinkMonitor } from "./links.js";
import { WorkerMetrics } from "./metrics.js";
import { DEFAULT_BREAKER } from "./plan.js";
import { PolicyCache } from "./policy-cache.js";
import { Reconciler, type TagConflictBody } from "./reconcile.js";
import { Scheduler } from "./scheduler.js";
import { SourceConsumer } from "./source-consumer.js";
import type { WorkerOptions } from "./worker-options.js";

/** How often the local peer re-sends its status (round trips) on the worker's stream; up/down comes at once. */
const HEALTH_KEEPALIVE_MS = 5_000;

export { backoffMs } from "./backoff.js";
export { failedAlertId, failureKey, REPLICATION_FAILED } from "./failures.js";
export { durableName } from "./source-consumer.js";
export { DEFAULT_EVENT_DEADLINE_MS, type WorkerOptions } from "./worker-options.js";

export class ReplicationWorker {
  readonly #o: WorkerOptions;
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
  /** Each link's truth (behind by, oldest pending age, last success, recent lag): replication/links.ts. */
  readonly links: LinkMonitor;
  /** Last source sequence replicated, per source (for status). */
  readonly applied = new Map<string, number>();
  /** The control plane's latest view of the other regions. */
  #health: RegionHealth[] = [];
  #healthWatch: StatusWatch | undefined;
  /** Ends this worker's subscription to the view's applied events (stop). */
  #unsubscribeApplied: (() => void) | undefined;
  readonly #clock = new HybridClock();
  readonly #policies: PolicyCache;
  readonly #failures: FailureLog;
  readonly #scheduler: Scheduler;
  readonly #consumer: SourceConsumer;
  /** Deletions let through per repository recently, for the stream breaker's window. */
  readonly #deleteWindow = new Map<string, WindowEntry[]>();
  /** Breaker resets already used (reset id + repository): a reset lets one batch through. */
  readonly #resetsUsed = new Set<string>();
  /** Sequence of this worker's last append to the local log (its view is waited on up to it). */
  #lastAppended = 0;
  readonly #metrics: WorkerMetrics;
  /** Links to external endpoints (issue 17): exports from and imports into this region. */
  readonly endpoints: EndpointReplicator;

  constructor(options: WorkerOptions) {
    this.#o = options;
    this.#abort.signal.addEventListener(
      "abort",
      () => {
        for (const stop of this.#onStop) stop();
      },
      { once: true },
    );
    const metrics = new WorkerMetrics(options.region, options.metrics, this.#sources());
    this.#metrics = metrics;
    this.links = new LinkMonitor({
      region: options.region,
      sources: this.#sources(),
      metrics: options.metrics,
    });
    const copier = new Copier({
      store: options.store,
      stateDir: options.stateDir,
      logger: options.logger.child({ component: "copy" }),
      onBytes: (src, n) => metrics.copied(src, n),
      ...(options.closureLimits === undefined ? {} : { limits: options.closureLimits }),
    });
    const reconciler = new Reconciler({
      log: options.log,
      view: options.view,
      copier,
      breaker: options.breaker ?? DEFAULT_BREAKER,
      logger: options.logger.child({ component: "reconcile" }),
      region: options.region,
      recordConflict: (conflict) => this.#recordConflict(conflict),
    });
    this.#policies = new PolicyCache(options.view, options.region, options.logger);
    this.#failures = new FailureLog(options.region, options.view, (body, id) => this.#appendOwn(body, id));
    this.#scheduler = new Scheduler({
      region: options.region,
      sources: this.#sources(),
      peers: options.peers,
      policies: this.#policies,
      reconciler,
      logger: options.logger,
      antiEntropyIntervalMs: options.antiEntropyIntervalMs ?? 600_000,
      ...(options.startupGraceMs === undefined ? {} : { startupGraceMs: options.startupGraceMs }),
      stopped: this.#abort.signal,
      taskSignal: () => this.#taskSignal(),
      startedAtMs: () => this.#startedAtMs,
      peersFor: () => this.#peersFor(),
      breakerOpen: (policy, repo) => this.#breakerOpen(policy, repo),
      raiseBreaker: (policy, repo, source, counts) => this.#raiseBreaker(policy, repo, source, counts),
      appendOwn: (body) => this.#appendOwn(body),
    });
    this.endpoints = new EndpointReplicator({
      region: options.region,
      view: options.view,
      policies: this.#policies,
      // This region's write path, for imports (replication/region-registry.ts).
      registry: () =>
        new Registry({
          region: options.region,
          store: options.store,
          log: options.log,
          view: options.view,
          logger: options.logger.child({ component: "endpoint-import" }),
          maxManifestBytes: options.maxManifestBytes ?? 4 * 1024 * 1024,
        }),
      logger: options.logger.child({ component: "endpoints" }),
      metrics: options.metrics,
      antiEntropyIntervalMs: options.antiEntropyIntervalMs ?? 600_000,
      appendOwn: (body) => this.#appendOwn(body),
      ...(options.endpointRetryMaxMs === undefined ? {} : { retryMaxMs: options.endpointRetryMaxMs }),
    });
    this.#consumer = new SourceConsumer({
      worker: options,
      copier,
      metrics,
      links: this.links,
      applied: this.applied,
      failures: this.#failures,
      policies: this.#policies,
      scheduler: this.#scheduler,
      stopped: this.#abort.signal,
      onStop: this.#onStop,
      startedAtMs: () => this.#startedAtMs,
      peersFor: () => this.#peersFor(),
      breakerGate: (policy, source, event) => this.#breakerGate(policy, source, event),
      appended: (seq) => {
        this.#lastAppended = Math.max(this.#lastAppended, seq);
      },
      recordConflict: (conflict) => this.#recordConflict(conflict),
    });
  }

  /**
   * Events this worker is retrying (or gave up on), by "repo@digest" (or
   * "repo:tag"): the latest failure's reason, for `meridian replication status`.
   */
  get failures(): FailureLog["failures"] {
    return this.#failures.failures;
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
      // The other regions' health as the local peer's heartbeats see it, pushed on its status
      // stream (mesh-client/status-watch.ts) rather than polled every second: at once when a
      // region goes up or down, round trips every HEALTH_KEEPALIVE_MS. While the stream is down
      // the last view is kept; before the first status the order falls back to names.
      this.#healthWatch = new StatusWatch({
        client: local,
        from: this.#o.region,
        keepaliveMs: HEALTH_KEEPALIVE_MS,
        onStatus: (reply) => {
          this.#health = reply.peers.map((p) => ({ region: p.region, up: p.up, rttMs: p.rttMs }));
        },
      });
      this.#healthWatch.start();
    }
    for (const source of this.#o.mesh.regions) {
      if (source.name === this.#o.region) continue;
      this.#runs.push(this.#consumer.run(source));
    }
    this.#unsubscribeApplied = this.#o.view.applied.subscribe((event) => {
      this.#clock.observe(event.hlc);
      if (event.type === "policy.set" || event.type === "policy.deleted") {
        this.#policies.invalidate();
        // Events this worker judged before it knew the policy are brought in now, and a link the
        // change gave back to the default mirror (an exclusive policy deleted, disabled-to-
        // non-exclusive, …) catches up at once rather than at the next periodic run: the
        // mirror's run on a link that already has everything compares summaries and stops.
        const name = event.name;
        void this.#scheduler.antiEntropy(
          event.type,
          (p) => p.trigger.type === "on-push" && (p === DEFAULT_POLICY || p.name === name),
        );
      }
      if (event.type === "policy.run" && (event.region ?? this.#o.region) === this.#o.region)
        void this.#scheduler.manualRun(event.name, event.runId);
    });
    this.#scheduler.start();
    this.endpoints.start();
  }

  async stop(): Promise<void> {
    this.#healthWatch?.close();
    this.#unsubscribeApplied?.();
    const scheduled = this.#scheduler.stop(); // its timers now, its runs once the signal ends them
    const endpoints = this.endpoints.stop();
    this.#abort.abort();
    await Promise.allSettled(this.#runs); // each source's connection closes with its run
    await scheduled;
    await endpoints;
  }

  #sources(): string[] {
    return this.#o.mesh.regions.map((r) => r.name).filter((r) => r !== this.#o.region);
  }

  // ---------------------------------------------------------------- the delete breaker's IO

  /**
   * Whether an operator's reset lets `repo`'s deletes under `policy` through
   * once (delete-breaker.ts resetLetsThrough), not used yet by this worker.
   */
  async #breakerOpen(policy: string, repo: string): Promise<boolean> {
    const reset = await this.#o.view.admin.breakerReset(policy);
    if (reset === undefined) return false;
    const alerts = await this.#o.view.admin.alerts();
    if (!resetLetsThrough(reset, alerts, { policy, repo, region: this.#o.region })) return false;
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
    this.#metrics.breakerTripped(source);
    return id;
  }

  /**
   * Hold a deletion from the stream until it is within the breaker's limits
   * (delete-breaker.ts judgeDeletion) or an operator resets the breaker
   * (polling the view for the reset).
   */
  async #breakerGate(policy: string, source: string, event: ContentEvent): Promise<void> {
    // The view must include what this worker already let through, or the window counts it twice.
    await this.#caughtUp();
    const decision = judgeDeletion({
      event,
      // One read of the tags shown here, so the share is computed on one snapshot.
      live: await this.#o.view.content.liveTags(event.repo),
      history: this.#deleteWindow.get(event.repo) ?? [],
      nowMs: Date.now(),
      windowMs: this.#o.breakerWindowMs ?? 600_000,
      limits: this.#o.breaker ?? DEFAULT_BREAKER,
    });
    if (decision.kind === "none") return;
    if (decision.kind === "trip") {
      const resetBefore = (await this.#o.view.admin.breakerReset(policy))?.id;
      await this.#raiseBreaker(policy, event.repo, source, decision);
      this.#metrics.breakerHolding(source, true);
      try {
        while (!this.#abort.signal.aborted) {
          const reset = (await this.#o.view.admin.breakerReset(policy))?.id;
          if (reset !== undefined && reset !== resetBefore) break;
          await sleep(500, this.#abort.signal);
        }
      } finally {
        this.#metrics.breakerHolding(source, false);
      }
    }
    this.#deleteWindow.set(event.repo, decision.history);
  }

  // ---------------------------------------------------------------- this region's own appends

  /** Wait (briefly) until this worker's view has applied its own last append. */
  async #caughtUp(): Promise<void> {
    await this.#o.view.waitFor(this.#lastAppended, 5_000).catch(() => undefined);
  }

  #recordConflict(conflict: TagConflictBody): Promise<void> {
    return this.#appendOwn(conflict, derivedId("conflict", conflict.loser.id, conflict.winner.id));
  }

  /** Append an event this region originates (alerts, run results, conflicts). */
  async #appendOwn(body: EventBody, id?: string): Promise<void> {
    const event = makeEvent(body, {
      id: id ?? derivedId("own", this.#o.region, String(Date.now()), String(Math.random())),
      origin: this.#o.region,
      hlc: this.#clock.now(),
      actor: "system",
    });
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
}
