/**
 * The worker's links to external endpoints (issue 17; protocol/policy.ts's
 * header says how a policy names one). Per (policy, endpoint, direction)
 * this region's worker runs (`endpointLinks`):
 *   - exports (this region among the policy's sources): on-push, following
 *     this region's log as the worker's view applies it (every content
 *     event of a selected repository and kind — this region's pushes and
 *     the replicas it received — asks for a run of that repository,
 *     coalesced for 100 ms; a tag deletion is carried only with `deletes`);
 *   - imports (this region among the destinations): never on-push;
 *   - both: at start (backfill), every `antiEntropyIntervalMs`, on the
 *     policy's cron, when the policy or the endpoint is set (a policy naming
 *     an endpoint defined later catches up then), and on `policy.run`
 *     requests naming this region, whose result is appended as
 *     `policy.run.finished` — manual policies only then.
 * Runs of one link happen one at a time; requests arriving meanwhile are
 * merged into the next. A run that fails (the endpoint unreachable, a TLS
 * or credentials problem, 401) is recorded on the link with its reason and
 * retried with backoff (1 s doubling to 60 s, while the link stays in
 * force), with every request merged into it, so nothing asked is lost while
 * the endpoint is down; an endpoint that is not defined is recorded and
 * retried when it is set. An endpoint link never holds a source stream
 * between regions: it has its own queue, and nothing of region replication
 * waits on it.
 *
 * Credentials are read from the endpoint's `credentialsFile` on this host,
 * at every run (a rotated file is picked up); TLS trusts its `caFile`, or
 * skips verification with `insecure`. Bytes read from the source side are
 * charged to the link's budget (the smallest `bandwidth` of the policies
 * carrying it: mesh-client/bandwidth.ts).
 */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry as MetricsRegistry } from "prom-client";
import { LinkBudgets } from "../mesh-client/bandwidth.js";
import { readCredentialsFile } from "../mesh-client/oci-credentials.js";
import { OciRegistryClient } from "../mesh-client/oci-registry-client.js";
import type { Registry } from "../node/data/registry.js";
import type { MetadataView } from "../node/data/view.js";
import type { EventBody, RegistryEvent } from "../protocol/events.js";
import {
  type EndpointLink,
  endpointLinkBandwidth,
  endpointLinks,
  nextRun,
  type Policy,
  selectsKind,
  selectsRepository,
} from "../protocol/policy.js";
import { backoffMs, sleep } from "./backoff.js";
import { type EndpointLinkSnapshot, EndpointLinkStatus, linkKey } from "./endpoint-status.js";
import { runEndpointLink, type TagDeletion, type TransferResult } from "./endpoint-transfer.js";
import type { PolicyCache } from "./policy-cache.js";
import { RegionRegistry } from "./region-registry.js";

export type { EndpointLinkSnapshot };

interface Request {
  repos: "all" | Set<string>;
  deletions: TagDeletion[];
  reason: string;
  runId?: string;
  /** When the oldest part of this request was asked for (ms): the link's oldest pending age. */
  since: number;
  done: Array<(result: TransferResult | Error) => void>;
}

export interface EndpointReplicatorOptions {
  region: string;
  view: MetadataView;
  policies: PolicyCache;
  /** This region's write path (made when first needed). */
  registry: () => Registry;
  logger: Logger;
  metrics: MetricsRegistry;
  antiEntropyIntervalMs: number;
  /** Append an event this region originates (`policy.run.finished`). */
  appendOwn(body: EventBody): Promise<void>;
  /** Backoff bounds of a failing link, ms (default 1 s .. 60 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** An endpoint a policy names is not defined (yet): retried once it is set. */
class EndpointUndefinedError extends Error {
  override readonly name = "EndpointUndefinedError";
}

export class EndpointReplicator {
  readonly #o: EndpointReplicatorOptions;
  readonly #abort = new AbortController();
  readonly #queues = new Map<string, { running: Promise<void> | undefined; next: Request | undefined }>();
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #status: EndpointLinkStatus;
  /** The policies as last read: budgets are looked up synchronously by LinkBudgets. */
  #policies: Policy[] = [];
  readonly #budgets: LinkBudgets;
  readonly #budgetWait: Counter<"src" | "dst">;
  readonly #budgetRate: Gauge<"src" | "dst">;
  #regionRegistry: RegionRegistry | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(options: EndpointReplicatorOptions) {
    this.#o = options;
    this.#status = new EndpointLinkStatus(options.metrics);
    this.#budgets = new LinkBudgets((key) => {
      const [, endpoint, direction] = key.split("\u0000");
      return endpointLinkBandwidth(
        this.#policies,
        options.region,
        endpoint!,
        direction as EndpointLink["direction"],
      );
    });
    this.#budgetWait = new Counter({
      name: "meridian_replication_endpoint_budget_wait_seconds_total",
      help: "Time copies on an endpoint link waited for its bandwidth budget",
      labelNames: ["src", "dst"],
      registers: [options.metrics],
    });
    this.#budgetRate = new Gauge({
      name: "meridian_replication_endpoint_budget_bytes_per_second",
      help: "The endpoint link's bandwidth budget as its last run read it (absent: none)",
      labelNames: ["src", "dst"],
      registers: [options.metrics],
    });
  }

  /** Each endpoint link's state now (the worker's /links). */
  snapshot(): EndpointLinkSnapshot[] {
    return this.#status.snapshot();
  }

  /** Failing endpoint links with their reasons (the worker's /failures). */
  failures(): Record<
    string,
    { source: string; destination: string; reason: string; attempts: number; at: string }
  > {
    return this.#status.failures();
  }

  start(): void {
    this.#safely(this.#requestAll("start", (p) => p.trigger.type !== "manual"));
    if (this.#o.antiEntropyIntervalMs > 0)
      this.#timers.push(
        setInterval(
          () => this.#safely(this.#requestAll("interval", (p) => p.trigger.type !== "manual")),
          this.#o.antiEntropyIntervalMs,
        ),
      );
    let lastTick = new Date();
    this.#timers.push(
      setInterval(() => {
        const now = new Date();
        const from = lastTick;
        lastTick = now;
        this.#safely(
          this.#requestAll("schedule", (p) => {
            const next = nextRun(p, from);
            return next !== undefined && next <= now;
          }),
        );
      }, 1_000),
    );
    this.#unsubscribe = this.#o.view.applied.subscribe((event) => void this.#applied(event));
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    for (const t of this.#timers) clearInterval(t);
    this.#abort.abort();
    await Promise.allSettled([...this.#queues.values()].map((q) => q.running));
  }

  /** A background request: its failure (the view unreadable) is logged, never unhandled. */
  #safely(work: Promise<void>): void {
    work.catch((err) => this.#o.logger.warn({ err }, "endpoint links: request failed"));
  }

  async #applied(event: RegistryEvent): Promise<void> {
    try {
      if (event.type === "policy.set" || event.type === "policy.deleted") {
        // The worker invalidates the cache on the same event; read again after it.
        this.#o.policies.invalidate();
        const name = event.name;
        return await this.#requestAll(event.type, (p) => p.name === name && p.trigger.type !== "manual");
      }
      if (event.type === "endpoint.set") {
        const name = event.name;
        return await this.#requestAll(
          event.type,
          (p, l) => l.endpoint === name && p.trigger.type !== "manual",
        );
      }
      if (event.type === "policy.run" && (event.region ?? this.#o.region) === this.#o.region)
        return await this.manualRun(event.name, event.runId);
      if (event.type !== "manifest.pushed" && event.type !== "tag.set" && event.type !== "tag.deleted")
        return;
      const kind = event.type === "manifest.pushed" ? "push" : event.type === "tag.set" ? "tag" : "delete";
      const repo = event.repo;
      for (const link of await this.#links()) {
        const p = link.policy;
        if (link.direction !== "export" || p.trigger.type !== "on-push") continue;
        if (!selectsRepository(p, repo) || !selectsKind(p, kind)) continue;
        const deletions = event.type === "tag.deleted" ? [{ repo, tag: event.tag }] : [];
        this.#request(link, {
          repos: new Set(kind === "delete" ? [] : [repo]),
          deletions,
          reason: "on-push",
          since: Date.now(),
          done: [],
        });
      }
    } catch (err) {
      this.#o.logger.warn({ err, type: event.type }, "endpoint links: event not followed");
    }
  }

  async #links(): Promise<EndpointLink[]> {
    this.#policies = await this.#o.policies.policies();
    const links = endpointLinks(this.#policies, this.#o.region);
    this.#status.inForce(links);
    return links;
  }

  async #requestAll(reason: string, which: (p: Policy, l: EndpointLink) => boolean): Promise<void> {
    for (const link of await this.#links())
      if (which(link.policy, link))
        this.#request(link, { repos: "all", deletions: [], reason, since: Date.now(), done: [] });
  }

  /**
   * A `policy.run` naming this region: run every endpoint link of the policy
   * here, then record the outcome (the first attempt's: a failing link goes
   * on retrying in the background).
   */
  async manualRun(name: string, runId: string): Promise<void> {
    const links = (await this.#links()).filter((l) => l.policy.name === name);
    if (links.length === 0) return;
    const results = await Promise.all(
      links.map(
        (link) =>
          new Promise<TransferResult | Error>((resolve) =>
            this.#request(link, {
              repos: "all",
              deletions: [],
              reason: "manual",
              runId,
              since: Date.now(),
              done: [resolve],
            }),
          ),
      ),
    );
    const stats: Record<string, number> = {};
    let error: string | undefined;
    for (const r of results) {
      if (r instanceof Error) error = r.message;
      else for (const [k, v] of Object.entries(r.stats)) stats[k] = (stats[k] ?? 0) + v;
    }
    await this.#o.appendOwn({
      type: "policy.run.finished",
      name,
      runId,
      region: this.#o.region,
      outcome: error === undefined ? "ok" : "failed",
      stats,
      ...(error === undefined ? {} : { error: error.slice(0, 512) }),
    });
  }

  #request(link: EndpointLink, request: Request): void {
    const key = linkKey(link);
    this.#status.pending(link, request.since);
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = { running: undefined, next: undefined };
      this.#queues.set(key, queue);
    }
    queue.next = merge(queue.next, request);
    if (queue.running !== undefined || this.#abort.signal.aborted) return;
    const q = queue;
    q.running = this.#drain(link, q)
      .catch((err) => this.#o.logger.warn({ err, endpoint: link.endpoint }, "endpoint link queue stopped"))
      .finally(() => {
        q.running = undefined;
      });
  }

  async #drain(first: EndpointLink, q: { next: Request | undefined }): Promise<void> {
    const signal = this.#abort.signal;
    const key = linkKey(first);
    let attempt = 0;
    while (q.next !== undefined && !signal.aborted) {
      if (q.next.reason === "on-push") await sleep(100, signal);
      const request = q.next;
      q.next = undefined;
      // The link as the policies say now: a policy deleted or disabled meanwhile ends it.
      const link = (await this.#links()).find((l) => linkKey(l) === key);
      if (link === undefined) {
        for (const done of request.done) done(new Error("the policy no longer carries this link"));
        this.#status.forget(first);
        return;
      }
      try {
        const result = await this.#runOnce(link, request, signal);
        attempt = 0;
        this.#status.succeeded(link, result.stats, queued(q)?.since);
        if (result.plans.length > 0)
          this.#o.logger.info(
            {
              policy: link.policy.name,
              endpoint: link.endpoint,
              direction: link.direction,
              stats: result.stats,
            },
            "endpoint link run",
          );
        for (const done of request.done) done(result);
      } catch (err) {
        if (signal.aborted) return;
        const error = err instanceof Error ? err : new Error(String(err));
        this.#status.failed(link, error.message, request.since);
        this.#o.logger.warn(
          {
            err: error,
            policy: link.policy.name,
            endpoint: link.endpoint,
            direction: link.direction,
            attempt,
          },
          "endpoint link run failed",
        );
        for (const done of request.done) done(error);
        if (err instanceof EndpointUndefinedError) {
          // Retried when the endpoint is set (#applied); what was asked is kept for then.
          q.next = merge({ ...request, done: [], reason: "retry" }, q.next);
          return;
        }
        await sleep(backoffMs(attempt++, this.#o.retryMinMs ?? 1_000, this.#o.retryMaxMs ?? 60_000), signal);
        q.next = merge({ ...request, done: [], reason: "retry" }, q.next);
      }
    }
  }

  async #runOnce(link: EndpointLink, request: Request, signal: AbortSignal): Promise<TransferResult> {
    const endpoint = await this.#client(link.endpoint);
    this.#regionRegistry ??= new RegionRegistry(this.#o.registry(), `endpoint:${link.endpoint}`);
    const region = this.#regionRegistry;
    const labels = this.#status.labels(link);
    const key = linkKey(link);
    const rate = this.#budgets.rate(key);
    if (rate === undefined) this.#budgetRate.remove(labels);
    else this.#budgetRate.set(labels, rate);
    return runEndpointLink(
      {
        link,
        endpoint,
        region,
        signal,
        take: async (bytes, s) => {
          const started = performance.now();
          await this.#budgets.take(key, bytes, s);
          const waited = performance.now() - started;
          if (waited >= 1) this.#budgetWait.inc(labels, waited / 1000);
        },
        onBytes: (n) => this.#status.bytes(link, n),
      },
      request.repos === "all" ? undefined : [...request.repos],
      request.deletions,
    );
  }

  /** A client of the endpoint as defined now, its credentials and CA read from their files on this host. */
  async #client(name: string): Promise<OciRegistryClient> {
    const found = await this.#o.view.endpoints.endpoint(name);
    if (found === undefined) throw new EndpointUndefinedError(`endpoint ${name} is not defined`);
    const e = found.endpoint;
    const credentials = e.credentialsFile === undefined ? undefined : readCredentialsFile(e.credentialsFile);
    let ca: Buffer | undefined;
    if (e.caFile !== undefined) {
      try {
        ca = readFileSync(e.caFile);
      } catch (err) {
        throw new Error(`endpoint ${name}: CA file ${e.caFile}: ${(err as Error).message}`, { cause: err });
      }
    }
    return new OciRegistryClient({
      url: e.url,
      ...(credentials === undefined ? {} : { credentials: credentials.credentials }),
      ...(ca === undefined ? {} : { ca }),
      insecure: e.insecure,
    });
  }
}

/** What is queued now (read after an await: the compiler would narrow `q.next` to what it was set to). */
function queued(q: { next: Request | undefined }): Request | undefined {
  return q.next;
}

/** One request covering both (either may be absent, not both). */
function merge(a: Request | undefined, b: Request | undefined): Request {
  if (a === undefined || b === undefined) return (a ?? b)!;
  return {
    repos: a.repos === "all" || b.repos === "all" ? "all" : new Set([...a.repos, ...b.repos]),
    deletions: [...a.deletions, ...b.deletions],
    reason: a.reason === "on-push" || a.reason === "retry" ? b.reason : a.reason,
    runId: a.runId ?? b.runId,
    since: Math.min(a.since, b.since),
    done: [...a.done, ...b.done],
  };
}
