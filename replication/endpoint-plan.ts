/**
 * Anti-entropy with an external endpoint, planned (issue 17): what one run
 * of a policy must copy between this region and an endpoint for one
 * repository, from both sides' tags. Pure: the tags (with the digest each
 * shows) in, the actions out; replication/endpoint-transfer.ts reads the
 * tags and carries the plan out, `meridian policy plan` prints it.
 *
 * An external registry has no registers or write history, so unlike the
 * planner between regions (./plan.ts) this compares what each side shows
 * now, tag by tag:
 *  - a selected tag the destination lacks, or shows at another digest, is
 *    copied (the tag's whole closure, referrers included) — unless
 *    `override` is off and the destination's tag points elsewhere: kept;
 *  - a tag at the same digest on both sides is `in-step`: its referrers
 *    are compared by the executor (a signature pushed after the image
 *    still travels);
 *  - `signedOnly`: a tag whose digest has no signature referrer at the
 *    source is left out;
 *  - tags of the referrers tag schema (`sha256-<hex>`, kept by registries
 *    without a Referrers API) are never copied as tags: each side keeps its
 *    own (the copy writes them where needed);
 *  - nothing is ever deleted by a run: the endpoint has tags of its own that
 *    were never this region's. Deletions travel on an export's on-push
 *    events only (and only with `deletes`).
 */
import { type Policy, selectsTag } from "../protocol/policy.js";

export type EndpointAction =
  | { kind: "copy"; tag: string; digest: string; replaces?: string }
  | { kind: "keep"; tag: string; digest: string; reason: string }
  | { kind: "in-step"; tag: string; digest: string };

export interface EndpointPlan {
  repo: string;
  actions: EndpointAction[];
}

/** A tag of the source side, with the digest it shows and whether that manifest is signed. */
export interface SourceTag {
  tag: string;
  digest: string;
  signed: boolean;
}

/** The referrers tag schema's tags (`<alg>-<hex>`). */
const REFERRERS_TAG = /^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})$/;

/** Tags of `tags` that the policy may copy (its tag filters, never a referrers-schema tag). */
export function candidateTags(policy: Policy, tags: readonly string[]): string[] {
  return tags.filter((t) => !REFERRERS_TAG.test(t) && selectsTag(policy, t));
}

/** Plan one repository: `source` tags against the destination's (tag → digest shown). */
export function planEndpointRepository(
  policy: Policy,
  repo: string,
  source: readonly SourceTag[],
  destination: ReadonlyMap<string, string>,
): EndpointPlan {
  const actions: EndpointAction[] = [];
  const selected = new Set(
    candidateTags(
      policy,
      source.map((s) => s.tag),
    ),
  );
  for (const { tag, digest, signed } of [...source].sort((a, b) => (a.tag < b.tag ? -1 : 1))) {
    if (!selected.has(tag)) continue;
    if (policy.signedOnly && !signed) continue;
    const there = destination.get(tag);
    if (there === digest) actions.push({ kind: "in-step", tag, digest });
    else if (there !== undefined && !policy.override)
      actions.push({ kind: "keep", tag, digest, reason: `override is off (the tag there is ${there})` });
    else actions.push({ kind: "copy", tag, digest, ...(there === undefined ? {} : { replaces: there }) });
  }
  return { repo, actions };
}

/** Counts of plans' actions by kind. */
export function endpointPlanStats(plans: readonly EndpointPlan[]): Record<string, number> {
  const stats: Record<string, number> = {};
  for (const p of plans) for (const a of p.actions) stats[a.kind] = (stats[a.kind] ?? 0) + 1;
  return stats;
}
