/**
 * MetadataView: the node's local materialization of the region's log in a
 * `level` database. It is derived state: `meridian rebuild` deletes it and
 * replays the log into an identical one.
 *
 * The view is a coordinator over three projections that share its database
 * and its write batch (node/data/projections/):
 *   - `content` (content.ts, content-reads.ts, repo-configs.ts): repositories,
 *     blob links, manifests, tags and their history, referrers, conflicts,
 *     repository configurations — registers merged the same way in every
 *     region, whatever order their writes arrive in;
 *   - `admin` (replication-admin.ts): replication policies, runs, alerts,
 *     delete-breaker resets;
 *   - `identity` (identity.ts): users, robots, projects, memberships;
 *   - `quotas` (quotas.ts): storage usage and quota per project, kept from
 *     every change of a content register the content projection reports.
 *   - `retention` (retention.ts): retention rules and the last pull of each manifest.
 *   - `endpoints` (endpoints.ts): external registries (issue 17), file paths, no secret.
 *   - `pullPolicies` (pull-policies.ts): block-pull policies per project (issue 18).
 *   - `proxies` (proxies.ts): projects that are pull-through caches of an endpoint (issue 17), in memory too.
 *   - `oidc` (oidc-users.ts): users signed in through OIDC and their CLI secrets (issue 18).
 *   - `activity` (activity.ts): an index of recent conflicts, alerts, runs
 *     and failovers, told every applied event after its projection applied it.
 * Each projection owns its key prefixes (drawn in its header) and applies
 * the event types it lists in its `handlers`; an event type belongs to
 * exactly one projection. The view owns the rest:
 *
 *   m!seq              last applied log sequence
 *   m!schema           layout version (a mismatch clears the view for a replay)
 *   e!<eventId>        applied event (de-duplication)  seq
 *   o!<origin>         highest origin-stream sequence applied from a replica
 *
 * Events are applied strictly in log order, one level batch per `apply`
 * call, every projection's writes and the applied sequence in the same
 * batch: a crash leaves the view at a batch boundary and the next start
 * resumes from there. After the batch commits, each applied event is
 * published to the subscribers of `applied` (the node's clock, the
 * replication worker), in log order.
 *
 * With an `authority` (authentication on), identity and policy events are
 * checked when applied (protocol/event-authority.ts): an event without a
 * valid proof by the mesh's key, or whose actor could not have made it, is
 * recorded as applied (so the log moves on) but changes nothing, and
 * `onRefused` hears of it.
 *
 * Callers read through `view.content`, `view.admin` and `view.identity`
 * (each projection's read interface); the view itself answers only for
 * what spans them: open/close, apply, waitFor, the applied sequence and
 * origins, and the dump the layout test pins.
 */
import { Level } from "level";
import { AUTHORITY_TYPES, authorizeEvent } from "../../protocol/event-authority.js";
import { type RegistryEvent, writeIdOf } from "../../protocol/events.js";
import { compareHlc } from "../../protocol/hlc.js";
import type {
  BlobRegister,
  ManifestRecord,
  ManifestRegister,
  RepoState,
  TagRecord,
  Write,
} from "../../protocol/registers.js";
import type { TagMergeRule } from "../../protocol/tag-merge.js";
import type { LoggedEvent } from "./event-log.js";
import { ActivityIndex, type ActivityReads } from "./projections/activity.js";
import { AppliedEvents } from "./projections/applied-events.js";
import {
  type ConflictRecord,
  ContentProjection,
  type ReferrerRecord,
  type TagHistoryEntry,
} from "./projections/content.js";
import type { ContentReads } from "./projections/content-reads.js";
import { EndpointProjection, type EndpointReads } from "./projections/endpoints.js";
import { type GcRunReads, GcRunsProjection } from "./projections/gc-runs.js";
import {
  IdentityProjection,
  type IdentityReads,
  type RobotRecord,
  type UserRecord,
} from "./projections/identity.js";
import { OidcUserProjection, type OidcUserReads } from "./projections/oidc-users.js";
import { PromotionProjection, type PromotionReads } from "./projections/promotions.js";
import { ProxyProjection, type ProxyReads } from "./projections/proxies.js";
import { PullPolicyProjection, type PullPolicyReads } from "./projections/pull-policies.js";
import {
  type ProjectQuota,
  type ProjectUsage,
  QuotaProjection,
  type QuotaReads,
} from "./projections/quotas.js";
import {
  type AlertRecord,
  ReplicationAdminProjection,
  type ReplicationAdminReads,
  type RunRecord,
} from "./projections/replication-admin.js";
import type { RepoConfig } from "./projections/repo-configs.js";
import { RetentionProjection, type RetentionReads } from "./projections/retention.js";
import { type ApplyHandler, Batch, END, type Page, type Projection } from "./projections/store.js";
import { WebhookProjection, type WebhookReads } from "./projections/webhooks.js";

export type { AppliedListener } from "./projections/applied-events.js";
export type {
  AlertRecord,
  BlobRegister,
  ConflictRecord,
  ContentReads,
  IdentityReads,
  ManifestRecord,
  ManifestRegister,
  Page,
  ProjectQuota,
  ProjectUsage,
  QuotaReads,
  ReferrerRecord,
  ReplicationAdminReads,
  RepoConfig,
  RepoState,
  RetentionReads,
  RobotRecord,
  RunRecord,
  TagHistoryEntry,
  TagRecord,
  UserRecord,
  Write,
};

/** Layout version of every projection's keys; bump when a value's shape changes. */
const VIEW_SCHEMA = "4";

/**
 * The check of identity and policy events (protocol/event-authority.ts):
 * whether an event's proof was made by the mesh's key (current or retired).
 */
export interface EventAuthority {
  verify(event: RegistryEvent): Promise<boolean>;
}

export class MetadataView {
  readonly #db: Level<string, string>;
  readonly #authority: EventAuthority | undefined;
  /** The projections' reads (what callers see); their apply handlers stay with the view. */
  readonly content: ContentReads;
  readonly admin: ReplicationAdminReads;
  readonly identity: IdentityReads;
  readonly quotas: QuotaReads;
  readonly retention: RetentionReads;
  /** External endpoints (projections/endpoints.ts). */
  readonly endpoints: EndpointReads;
  /** Promotion gates and promotions (projections/promotions.ts). */
  readonly promotions: PromotionReads;
  /** Block-pull policies (projections/pull-policies.ts). */
  readonly pullPolicies: PullPolicyReads;
  /** Pull-through cache projects (projections/proxies.ts). */
  readonly proxies: ProxyReads;
  /** Garbage-collection runs (projections/gc-runs.ts). */
  readonly gc: GcRunReads;
  /** Webhook subscriptions (projections/webhooks.ts). */
  readonly webhooks: WebhookReads;
  /** Users signed in through OIDC, and their CLI secrets (projections/oidc-users.ts, issue 18). */
  readonly oidc: OidcUserReads;
  /** Recent conflicts, alerts, runs and failovers, newest first (projections/activity.ts). */
  readonly activity: ActivityReads;
  readonly #activity: ActivityIndex;
  readonly #identity: IdentityProjection;
  readonly #projections: Projection[];
  /** Which projection applies each event type. */
  readonly #routes = new Map<string, ApplyHandler>();
  #applied = 0;
  #chain: Promise<void> = Promise.resolve();
  /**
   * originSeqs() as last read from the database, until a batch changes an
   * `o!` key: every heartbeat (Status) asks for it several times a second,
   * and at rest it never changes (issue 14, cost at rest). `#originsRead`
   * counts invalidations, so a read that raced a commit is not kept.
   */
  #origins: Readonly<Record<string, number>> | undefined;
  #originsRead = 0;
  readonly #waiters = new Set<{ seq: number; resolve: () => void }>();
  /** Each applied event, after its batch committed, in log order; any number of subscribers. */
  readonly applied = new AppliedEvents();
  /** Called with each identity or policy event refused by the authority check, and why. */
  onRefused: ((event: RegistryEvent, seq: number, reason: string) => void) | undefined;

  constructor(location: string, options: { tagRule?: TagMergeRule; authority?: EventAuthority } = {}) {
    this.#db = new Level<string, string>(location);
    this.#authority = options.authority;
    const quotas = new QuotaProjection(this.#db);
    const content = new ContentProjection(this.#db, options.tagRule ?? "lww", quotas);
    const admin = new ReplicationAdminProjection(this.#db);
    this.#identity = new IdentityProjection(this.#db);
    const retention = new RetentionProjection(this.#db);
    const gc = new GcRunsProjection(this.#db);
    [this.content, this.admin, this.identity, this.quotas, this.retention, this.gc] = [
      content,
      admin,
      this.#identity,
      quotas,
      retention,
      gc,
    ];
    const endpoints = new EndpointProjection(this.#db);
    this.endpoints = endpoints;
    const proxies = new ProxyProjection(this.#db);
    this.proxies = proxies;
    const webhooks = new WebhookProjection(this.#db);
    this.webhooks = webhooks;
    const promotions = new PromotionProjection(this.#db);
    this.promotions = promotions;
    const pullPolicies = new PullPolicyProjection(this.#db);
    this.pullPolicies = pullPolicies;
    const oidc = new OidcUserProjection(this.#db);
    this.oidc = oidc;
    this.#projections = [
      content,
      admin,
      this.#identity,
      quotas,
      retention,
      gc,
      endpoints,
      webhooks,
      promotions,
      pullPolicies,
      proxies,
      oidc,
    ];
    this.#activity = new ActivityIndex(this.#db);
    this.activity = this.#activity;
    for (const projection of this.#projections) {
      for (const [type, handler] of Object.entries(projection.handlers)) {
        if (this.#routes.has(type)) throw new Error(`two projections apply ${type}`);
        this.#routes.set(type, handler as ApplyHandler);
      }
    }
  }

  /** The event types some projection applies (the contract test checks every type is). */
  get routedTypes(): string[] {
    return [...this.#routes.keys()];
  }

  async open(): Promise<void> {
    await this.#db.open();
    if ((await this.#db.get("m!schema")) !== VIEW_SCHEMA) {
      // An older layout: start over; the caller replays the log from the start.
      await this.#db.clear();
      this.#forgetOrigins();
      await this.#db.put("m!schema", VIEW_SCHEMA);
    }
    this.#applied = Number((await this.#db.get("m!seq")) ?? 0);
    for (const projection of this.#projections) await projection.load?.();
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#db.close();
  }

  /** Sequence of the last applied event. */
  get appliedSeq(): number {
    return this.#applied;
  }

  /**
   * Apply events read from the log, in order. Events at or below the applied
   * sequence are skipped, so redelivery is harmless. With `contiguous`, an
   * event that does not directly follow the applied sequence stops the batch
   * (the writer's fast path; the log tail fills any gap).
   */
  apply(entries: LoggedEvent[], contiguous = false): Promise<void> {
    const run = this.#chain.then(() => this.#applyNow(entries, contiguous));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once the view has applied `seq`; rejects after `timeoutMs`. */
  waitFor(seq: number, timeoutMs: number): Promise<void> {
    if (this.#applied >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        seq,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`view did not reach sequence ${seq} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  async #applyNow(entries: LoggedEvent[], contiguous: boolean): Promise<void> {
    const batch = new Batch(this.#db);
    let applied = this.#applied;
    const done: LoggedEvent[] = [];
    let originsChanged = false;
    for (const entry of entries) {
      const { seq, event } = entry;
      if (seq <= applied) continue;
      if (contiguous && seq !== applied + 1) break;
      applied = seq;
      if ((await batch.get(`e!${event.id}`)) !== undefined) continue;
      const refusal = await this.#refusal(batch, event);
      if (refusal !== undefined) {
        // Not recorded under its id: a forgery carrying a real event's id must not shadow it.
        this.onRefused?.(event, seq, refusal);
        continue;
      }
      batch.put(`e!${event.id}`, String(seq));
      await this.#routes.get(event.type)?.(batch, event, writeOf(event), seq);
      this.#activity.note(batch, event);
      if (event.srcSeq !== undefined) {
        const key = `o!${event.origin}`;
        if (Number((await batch.get(key)) ?? 0) < event.srcSeq) {
          batch.put(key, String(event.srcSeq));
          originsChanged = true;
        }
      }
      done.push(entry);
    }
    if (applied === this.#applied) return;
    batch.put("m!seq", String(applied));
    try {
      await batch.write();
    } catch (err) {
      this.#forgetOrigins();
      // Undo what the handlers cached from the batch that did not commit.
      for (const projection of this.#projections) await projection.load?.();
      throw err;
    }
    if (originsChanged) this.#forgetOrigins();
    this.#applied = applied;
    let failure: unknown;
    for (const { event, seq } of done) {
      const err = this.applied.publish(event, seq);
      failure ??= err;
    }
    for (const w of this.#waiters) {
      if (w.seq <= applied) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** Why an identity or policy event must not change the view (undefined: apply it). */
  async #refusal(batch: Batch, e: RegistryEvent): Promise<string | undefined> {
    if (this.#authority === undefined || !AUTHORITY_TYPES.has(e.type)) return undefined;
    if (e.proof === undefined) return "no proof";
    if (!(await this.#authority.verify(e))) return "invalid proof";
    const facts = await this.#identity.authorityFacts(batch, e);
    if (e.type === "immutability.set" || e.type === "immutability.deleted") {
      const rule = this.content.immutability.rule(e.name);
      if (rule !== undefined) facts.targetRule = { repositories: rule.repositories };
    }
    const decision = authorizeEvent(e, facts);
    return decision.allowed ? undefined : decision.reason;
  }

  /** Highest sequence of each other region's stream applied here through replicas, by origin. */
  async originSeqs(): Promise<Record<string, number>> {
    if (this.#origins !== undefined) return { ...this.#origins };
    const read = this.#originsRead;
    const out: Record<string, number> = {};
    for await (const [key, value] of this.#db.iterator({ gt: "o!", lt: `o!${END}` }))
      out[key.slice(2)] = Number(value);
    if (read === this.#originsRead) this.#origins = { ...out };
    return out;
  }

  #forgetOrigins(): void {
    this.#origins = undefined;
    this.#originsRead++;
  }

  /** Every key and value, in order (tests compare views with it). */
  async dump(): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    for await (const entry of this.#db.iterator()) out.push(entry);
    return out;
  }
}

export function writeOf(e: RegistryEvent): Write {
  const w: Write = { id: writeIdOf(e), origin: e.origin, hlc: e.hlc, at: e.at, actor: e.actor };
  if (e.epoch !== undefined) w.epoch = e.epoch;
  return w;
}

/** Order of two writes' clocks only (for callers comparing times). */
export function compareWriteTimes(a: Write, b: Write): number {
  return compareHlc(a.hlc, b.hlc);
}
