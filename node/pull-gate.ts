/**
 * Block-pull policies enforced (issue 18, item 3; protocol/pull-policy.ts):
 * a manifest GET in a project with a pull policy is answered only when the
 * manifest passes the policy's gates (protocol/gates.ts, fed by ./evidence.ts
 * from this node's store: the same verification promotions use), or the
 * caller is exempt. A refusal is 403 DENIED naming the project's policy and
 * every failed gate's reason; the audit log records it with that reason.
 *
 * What is judged: the manifest the GET answers. A child of an index (a
 * platform's image, fetched by digest after the index) passes when it
 * passes itself or when an index of the repository that lists it passes:
 * signatures and reports are usually attached to the index a tag names
 * (`cosign sign` of a multi-arch tag signs the index). HEAD is not judged
 * (it answers a digest, no content) and neither are blobs: without the
 * manifest a client cannot name an image's layers, and whoever already knows
 * their digests already had them.
 *
 * Costs: the policy of a project is read from the view at most every
 * POLICY_CACHE_MS; a decision is kept DECISION_CACHE_MS per (repository,
 * digest, policy write), so a pull storm of one image verifies its
 * signature once per node per window, and a signature or report attached
 * later is seen within that window. A project without a policy costs one
 * cached map lookup.
 *
 * Content served from another region (fetch on miss, relayed) is judged
 * from what this region's store holds: when its signature has not arrived
 * here yet the pull is refused (the policy fails closed); a redirect sends
 * the client to a region that judges it with the same policy.
 */
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import type { Digest } from "../protocol/digest.js";
import { AccessDeniedError } from "../protocol/errors.js";
import { evaluateGates, type GateResult } from "../protocol/gates.js";
import { exemption, type Puller, type PullPolicy } from "../protocol/pull-policy.js";
import type { Identity } from "./auth/identity.js";
import type { Registry } from "./data/registry.js";
import { annotationsAndLabels, findReports, findSignatures } from "./evidence.js";

export const POLICY_CACHE_MS = 1_000;
export const DECISION_CACHE_MS = 30_000;
/** Indexes of a repository looked through for the parents of a refused child. */
export const MAX_PARENT_SCAN = 1_024;

const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);

interface Decision {
  ok: boolean;
  failed: GateResult[];
}

export interface PullGateOptions {
  registry: Registry;
  keys: ReadonlyMap<string, string>;
  metrics?: MetricsRegistry;
  logger: Logger;
  now?: () => number;
}

export class PullGate {
  readonly #o: PullGateOptions;
  readonly #policies = new LRUCache<
    string,
    { at: number; policy: Promise<{ policy: PullPolicy; w: string } | undefined> }
  >({
    max: 10_000,
  });
  readonly #decisions = new LRUCache<string, { at: number; decision: Promise<Decision> }>({ max: 10_000 });
  readonly #refused: Counter<"reason"> | undefined;

  constructor(o: PullGateOptions) {
    this.#o = o;
    this.#refused =
      o.metrics === undefined
        ? undefined
        : new Counter({
            name: "meridian_pulls_refused_total",
            help: "manifest pulls refused by a project's block-pull policy, by the first gate that failed",
            labelNames: ["reason"] as const,
            registers: [o.metrics],
          });
  }

  /**
   * Throws AccessDeniedError when `who` may not pull `digest` of `repo` under
   * its project's policy; resolves otherwise. `onRefused` hears the reason
   * (for the audit record) before the throw.
   */
  async check(
    who: Identity,
    repo: string,
    digest: Digest,
    onRefused?: (reason: string) => void,
  ): Promise<void> {
    const project = repo.slice(0, repo.indexOf("/") === -1 ? repo.length : repo.indexOf("/"));
    const stored = await this.#policy(project);
    if (stored === undefined) return;
    if (exemption(stored.policy, puller(who)) !== undefined) return;
    let decision = await this.#decide(stored, repo, digest);
    if (!decision.ok) {
      const parents = await this.#parents(repo, digest);
      for (const parent of parents) {
        const d = await this.#decide(stored, repo, parent);
        if (d.ok) {
          decision = d;
          break;
        }
      }
    }
    if (decision.ok) return;
    const reasons = decision.failed.map((r) => r.reason).join("; ");
    const reason = `pull refused by the pull policy of project ${project}: ${reasons}`;
    this.#refused?.inc({ reason: decision.failed[0]?.gate ?? "unknown" });
    onRefused?.(reason);
    throw new AccessDeniedError(reason, { detail: { project, gates: decision.failed } });
  }

  #policy(project: string) {
    const now = this.#now();
    const hit = this.#policies.get(project);
    if (hit !== undefined && now - hit.at < POLICY_CACHE_MS) return hit.policy;
    const policy = this.#o.registry.view.pullPolicies
      .pullPolicy(project)
      .then((p) => (p === undefined ? undefined : { policy: p.policy, w: p.w.id }));
    this.#policies.set(project, { at: now, policy });
    policy.catch(() => this.#policies.delete(project));
    return policy;
  }

  #decide(stored: { policy: PullPolicy; w: string }, repo: string, digest: Digest): Promise<Decision> {
    const key = `${stored.w}|${repo}@${digest}`;
    const now = this.#now();
    const hit = this.#decisions.get(key);
    if (hit !== undefined && now - hit.at < DECISION_CACHE_MS) return hit.decision;
    const decision = this.#evaluate(stored.policy, repo, digest);
    this.#decisions.set(key, { at: now, decision });
    decision.catch(() => this.#decisions.delete(key));
    return decision;
  }

  async #evaluate(policy: PullPolicy, repo: string, digest: Digest): Promise<Decision> {
    const reg = this.#o.registry;
    const gates = policy.gates;
    const manifest = await reg.resolveManifest(repo, { digest });
    const types = gates.vulnerabilities?.artifactTypes ?? [];
    const { annotations, labels } =
      gates.annotations === undefined
        ? { annotations: {}, labels: {} }
        : await annotationsAndLabels(reg, repo, manifest.bytes);
    const { results } = evaluateGates(gates, {
      subject: digest,
      signatures: gates.signature === undefined ? [] : await findSignatures(reg, repo, digest),
      keys: this.#o.keys,
      reports: types.length > 0 ? await findReports(reg, repo, digest, types) : [],
      annotations,
      labels,
      now: this.#now(),
    });
    const failed = results.filter((r) => !r.ok);
    return { ok: failed.length === 0, failed };
  }

  /** The live indexes of `repo` that list `digest` (bounded scan). */
  async #parents(repo: string, digest: Digest): Promise<Digest[]> {
    const content = this.#o.registry.view.content;
    const out: Digest[] = [];
    for (const d of (await content.manifestDigests(repo)).slice(0, MAX_PARENT_SCAN)) {
      if (d === digest) continue;
      const record = await content.manifest(repo, d);
      if (record === undefined || !INDEX_TYPES.has(record.mediaType)) continue;
      if (record.manifests?.includes(digest) === true) out.push(d);
    }
    return out;
  }

  #now(): number {
    return this.#o.now?.() ?? Date.now();
  }
}

function puller(who: Identity): Puller {
  const s = who.subject;
  return {
    kind: who.kind,
    name: who.name,
    systemAdmin: s.kind === "user" && s.systemAdmin === true,
  };
}
