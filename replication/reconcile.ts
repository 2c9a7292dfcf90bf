/**
 * Anti-entropy execution: compare this region's summaries with a source
 * region's, plan each differing repository the policy selects
 * (replication/plan.ts), and carry the plan out — content first, copied by
 * digest and verified, then the replayed writes appended to the local log.
 *
 * A replayed event is a new log entry (its id is derived from the write and
 * the action, so a retried or repeated run appends nothing new: JetStream and
 * the views de-duplicate it) carrying the original write's identity in
 * `cause` and its origin, clock and time, so every view merges it as the
 * original.
 *
 * The delete breaker: a repository whose plan would remove more than the
 * allowed share of its tags is not touched; the run stops there and reports
 * `halted` with the repository, so the caller can raise an alert.
 */
import type { Logger } from "pino";
import type { PeerClient } from "../mesh-client/peer-client.js";
import type { EventLog } from "../node/data/event-log.js";
import type { MetadataView } from "../node/data/view.js";
import type { Digest } from "../protocol/digest.js";
import { RepositoryNotFoundError } from "../protocol/errors.js";
import { derivedId, type EventBody, makeEvent } from "../protocol/events.js";
import { immutableConflict, protectingRule } from "../protocol/immutable-tags.js";
import { type Policy, selectsRepository } from "../protocol/policy.js";
import type { RepoState, Write } from "../protocol/registers.js";
import { differingRepositories, isEmpty, type RepoDigest } from "../protocol/summary.js";
import { type CausalWrite, conflictBetween, type TagWrite } from "../protocol/tag-merge.js";
import type { Copier } from "./copy.js";
import { type Action, type BreakerLimits, breakerTrips, type Plan, planRepository } from "./plan.js";

export interface ReconcileOptions {
  /** Plan only: change nothing. */
  dryRun?: boolean;
  /** Repositories to look at; default: those whose summaries differ. */
  repos?: string[];
  /** True when an operator has let this repository's deletes through the breaker. */
  breakerOpen?: (repo: string) => Promise<boolean>;
}

export interface ReconcileResult {
  plans: Plan[];
  stats: Record<string, number>;
  /** Set when the delete breaker stopped the run at a repository. */
  halted?: { repo: string; removed: number; visible: number };
}

export class Reconciler {
  constructor(
    private readonly o: {
      log: EventLog;
      view: MetadataView;
      copier: Copier;
      breaker: BreakerLimits;
      logger: Logger;
      /** This (the destination) region. */
      region: string;
      /** Record a conflict between a replayed tag write and this region's own. */
      recordConflict?: (conflict: TagConflictBody) => Promise<void>;
    },
  ) {}

  /** Summaries of this region's repositories (those with anything visible). */
  async localSummaries(): Promise<RepoDigest[]> {
    const out: RepoDigest[] = [];
    for (const repo of await this.o.view.content.repositoriesUnder("")) {
      const summary = await this.o.view.content.summarize(repo);
      if (!isEmpty(summary)) out.push(summary);
    }
    return out;
  }

  /**
   * Bring what `policy` selects from `source` here. `peers` are the regions
   * to copy content from, nearest first (the source among them).
   */
  async reconcile(
    policy: Policy,
    source: PeerClient,
    peers: PeerClient[],
    signal: AbortSignal,
    options: ReconcileOptions = {},
  ): Promise<ReconcileResult> {
    let repos = options.repos;
    if (repos === undefined) {
      const theirs = await source.summarize("");
      repos = differingRepositories(await this.localSummaries(), theirs.repos);
    }
    const result: ReconcileResult = { plans: [], stats: {} };
    const count = (key: string, n = 1) => {
      result.stats[key] = (result.stats[key] ?? 0) + n;
    };
    for (const repo of repos.filter((r) => selectsRepository(policy, r))) {
      if (signal.aborted) break;
      const theirs = await this.#remoteState(source, repo);
      const plan = planRepository(
        policy,
        theirs,
        await this.o.view.content.repoState(repo),
        source.region,
        this.o.region,
      );
      if (plan.actions.length === 0) continue;
      result.plans.push(plan);
      if (
        breakerTrips(plan.tagsRemoved, plan.visibleTags, this.o.breaker) &&
        !(await options.breakerOpen?.(repo))
      ) {
        result.halted = { repo, removed: plan.tagsRemoved, visible: plan.visibleTags };
        break;
      }
      count("repositories");
      for (const action of plan.actions) {
        count(action.kind);
        if (!options.dryRun) await this.#execute(repo, action, peers, signal);
      }
    }
    return result;
  }

  async #remoteState(source: PeerClient, repo: string): Promise<RepoState> {
    try {
      return await source.repoState(repo);
    } catch (err) {
      if (err instanceof RepositoryNotFoundError) return { repo, tags: [], manifests: [], blobs: [] };
      throw err;
    }
  }

  async #execute(repo: string, action: Action, peers: PeerClient[], signal: AbortSignal): Promise<void> {
    switch (action.kind) {
      case "copy-manifest": {
        await this.o.copier.ensureManifest(action.digest as Digest, peers, signal, { children: false });
        const r = action.record;
        const body: EventBody = {
          type: "manifest.pushed",
          repo,
          digest: action.digest as Digest,
          mediaType: r.mediaType,
          size: r.size,
          blobs: r.blobs,
          manifests: r.manifests,
        };
        if (r.subject !== undefined) body.subject = r.subject;
        if (r.artifactType !== undefined) body.artifactType = r.artifactType;
        if (r.annotations !== undefined) body.annotations = r.annotations;
        if (r.platforms !== undefined) body.platforms = r.platforms;
        return this.#replay(action.w, body, action.digest);
      }
      case "link-blob":
        await this.o.copier.ensureBlob(action.digest as Digest, peers, signal);
        return this.#replay(
          action.w,
          { type: "blob.pushed", repo, digest: action.digest as Digest, size: action.size },
          action.digest,
        );
      case "set-tag":
        return this.#replay(
          action.w,
          { type: "tag.set", repo, tag: action.tag, digest: action.digest as Digest },
          action.tag,
        );
      case "delete-tag":
        return this.#replay(action.w, { type: "tag.deleted", repo, tag: action.tag }, action.tag);
      case "delete-manifest":
        return this.#replay(
          action.w,
          { type: "manifest.deleted", repo, digest: action.digest as Digest },
          action.digest,
        );
      case "delete-blob":
        return this.#replay(
          action.w,
          { type: "blob.deleted", repo, digest: action.digest as Digest },
          action.digest,
        );
      case "delete-repository":
        return this.#replay(action.w, { type: "repository.deleted", repo }, repo);
      case "hold-tag":
      case "keep-tag":
        return;
    }
  }

  async #replay(w: Write, body: EventBody, key: string): Promise<void> {
    const event = makeEvent(body, {
      id: derivedId("replay", body.type, w.id, key),
      origin: w.origin,
      hlc: w.hlc,
      actor: w.actor,
      at: w.at,
      cause: w.id,
      epoch: w.epoch,
    });
    await this.o.log.append(event);
  }
}

export type TagConflictBody = Extract<EventBody, { type: "tag.conflict" }>;

/**
 * The conflict an incoming write to a tag makes with this region's own write
 * standing in the tag's register here, if the two are concurrent: recorded by
 * this region (the other side may record it too; the event id is derived from
 * the pair, so it is kept once).
 */
export async function conflictHere(
  view: MetadataView,
  region: string,
  repo: string,
  tag: string,
  incoming: CausalWrite,
): Promise<TagConflictBody | undefined> {
  const { tagMerge, homes } = view.content.configFor(repo);
  if (tagMerge !== "first-write" && view.content.immutability.everCovers(repo, tag)) {
    // Immutable tags: a rejected write is a conflict whichever region's write stands.
    const rules = view.content.immutability.histories();
    const history = (await view.content.tagHistory(repo, tag)).map(
      (h): TagWrite => ({
        digest: h.digest ?? undefined,
        hlc: h.w.hlc,
        origin: h.w.origin,
        eventId: h.w.id,
        epoch: h.w.epoch,
      }),
    );
    const found = immutableConflict(
      tagMerge,
      history,
      incoming,
      (w) => protectingRule(rules, repo, tag, w),
      homes,
    );
    if (found !== undefined)
      return {
        type: "tag.conflict",
        repo,
        tag,
        winner: sideOf(found.winner),
        loser: sideOf(found.loser),
        rule: found.rule,
      };
  }
  const current = await view.content.tagRecord(repo, tag);
  if (current === undefined || current.origin !== region) return undefined;
  const mine: CausalWrite = {
    digest: current.digest ?? undefined,
    hlc: current.hlc,
    origin: current.origin,
    eventId: current.eventId,
    epoch: current.epoch,
    prev: current.prev,
  };
  const found = conflictBetween(tagMerge, mine, incoming, homes);
  if (found === undefined) return undefined;
  return { type: "tag.conflict", repo, tag, winner: sideOf(found.winner), loser: sideOf(found.loser) };
}

function sideOf(w: TagWrite) {
  return { id: w.eventId, origin: w.origin, digest: (w.digest ?? null) as Digest | null, hlc: w.hlc };
}
