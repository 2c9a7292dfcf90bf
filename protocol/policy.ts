/**
 * Replication policies (DESIGN.md §"Replication"): which content goes from
 * which region to which, when, and how fast. A policy is an admin object,
 * replicated to every region inside events, so its normalized form (`Policy`)
 * is plain JSON and is itself valid input: `parsePolicy(parsePolicy(x))`
 * equals `parsePolicy(x)`.
 *
 * This file is the public entry point (it re-exports the others) and owns
 * the link rule below and the schedule; the policy's model and defaults are
 * ./policy-types.ts, parsing ./policy-parse.ts (reading fields:
 * ./policy-fields.ts), YAML and display text ./policy-format.ts, filter
 * matching ./policy-match.ts. All of it is pure: no clock, no IO.
 *
 * Which policies apply to a link (source region → destination region), the
 * rule `effectivePolicies` implements (issue 11, finding 4: a `prod/**`
 * policy used to stop everything else on its link, silently):
 *  - every enabled policy naming both ends (or "*") covers it;
 *  - the default full mirror (DEFAULT_POLICY: everything, deletes included)
 *    stays on every link unless a policy naming that link says
 *    `exclusive: true`; adding a policy never takes anything away by itself.
 *    While the mirror is on, it carries everything any non-exclusive policy
 *    would select, so the link is governed by the mirror alone (a
 *    non-exclusive policy's filters, trigger and `deletes: false` narrow
 *    nothing; its bandwidth budget still applies to the link);
 *  - a link some policy names with `exclusive: true` carries only what its
 *    enabled covering policies select; everything else on it stops (and
 *    `meridian policy apply` / `policy plan` say so, link by link);
 *  - an exclusive policy that is disabled still keeps the mirror off its
 *    link: disabling pauses that traffic, it never widens it to everything;
 *  - a stored policy without `exclusive` (written before it existed) is not
 *    exclusive. Removing an exclusive policy (or making it non-exclusive)
 *    brings the mirror back, and the replication worker runs its catch-up
 *    at once (replication/worker.ts), not at the next periodic anti-entropy.
 *
 * External endpoints (issue 17; protocol/endpoints.ts) as sources or
 * destinations, written `endpoint:NAME` (NAME as ENDPOINT_NAME):
 *  - `source: a, destination: endpoint:onprem` is an export: region a's
 *    replication worker pushes what the policy selects in a to the endpoint
 *    (on-push: following a's log; schedule, manual and the start-up backfill:
 *    comparing a's tags with the endpoint's). `sources: ["*"]` has every
 *    region export what it holds (idempotent: content the endpoint has is
 *    not sent again);
 *  - `source: endpoint:onprem, destination: b` is an import: region b's
 *    worker lists the endpoint's repositories (`/v2/_catalog`) and tags and
 *    copies what is selected and missing into b through b's own write path,
 *    so it replicates on by b's region policies like any push. An import is
 *    never on-push (refused when parsed: an external registry has no event
 *    stream); it runs on its schedule, when run by hand, and at the
 *    worker's start;
 *  - an endpoint is never on both sides of one policy (Meridian never relays
 *    between two external registries), and "*" never includes an endpoint;
 *  - region links are unaffected: endpoint entries never name a region link
 *    (`namesLink`), so `exclusive` and the default mirror concern regions only;
 *  - a policy naming an endpoint that does not exist (yet) is valid; the
 *    worker reports the link as failing ("endpoint NAME not defined") in its
 *    /links and /failures, and `policy plan` says so;
 *  - the filters apply as between regions (repositories, tags, signedOnly,
 *    events, deletes, override), with two readings: `platforms` narrows
 *    nothing (an index travels with every child, since a registry refuses
 *    an index whose children it lacks), and `deletes` on an export removes
 *    the endpoint's tag by deleting its manifest there, only when no other
 *    tag of the region's repository points at that manifest.
 *  - `bandwidth` budgets the endpoint link (the smallest among the policies
 *    carrying it), applied where the worker reads the bytes.
 */
import { cmp } from "./policy-fields.js";
import { selectsRepository } from "./policy-match.js";
import { cronOf, DEFAULT_POLICY, endpointOf, type Policy } from "./policy-types.js";

export { formatBytesPerSecond, policyToYaml } from "./policy-format.js";
export {
  isFiltered,
  isSignatureReferrer,
  selectsKind,
  selectsPlatform,
  selectsRepository,
  selectsTag,
} from "./policy-match.js";
export { parsePolicies, parsePolicy, validPolicies } from "./policy-parse.js";
export type { EventKind, Policy, TagMatcher, Trigger } from "./policy-types.js";
export {
  DEFAULT_POLICY,
  ENDPOINT_PREFIX,
  EVENT_KINDS,
  endpointOf,
  MAX_PATTERN_LENGTH,
  SIGNATURE_ARTIFACT_TYPES,
} from "./policy-types.js";

/** The policy carries traffic from `source` to `destination`: enabled, distinct ends, both named (or "*"). */
export function coversLink(policy: Policy, source: string, destination: string): boolean {
  return policy.enabled && namesLink(policy, source, destination);
}

/** Both ends are named by the policy (or "*"), enabled or not. */
export function namesLink(policy: Policy, source: string, destination: string): boolean {
  return (
    source !== destination &&
    (policy.sources.includes("*") || policy.sources.includes(source)) &&
    (policy.destinations.includes("*") || policy.destinations.includes(destination))
  );
}

/** The configured policies covering a link, sorted by name. */
export function policiesForLink(policies: readonly Policy[], source: string, destination: string): Policy[] {
  return policies.filter((p) => coversLink(p, source, destination)).sort((a, b) => cmp(a.name, b.name));
}

/**
 * The policies that govern a link: the covering ones when some policy naming
 * the link (enabled or not) is exclusive; else DEFAULT_POLICY alone (the full
 * mirror carries everything a non-exclusive policy would). See the header.
 */
export function effectivePolicies(
  policies: readonly Policy[],
  source: string,
  destination: string,
): Policy[] {
  if (source === destination) return [];
  if (!isExclusiveLink(policies, source, destination)) return [DEFAULT_POLICY];
  return policiesForLink(policies, source, destination);
}

/** Some policy naming the link (enabled or not) is exclusive: the default mirror is off it. */
export function isExclusiveLink(policies: readonly Policy[], source: string, destination: string): boolean {
  return policies.some((p) => p.exclusive && namesLink(p, source, destination));
}

/**
 * For `meridian policy apply` / `policy plan`: what the policies mean for one
 * link, in words. Exclusive: "replication of everything else stops
 * (exclusive)", naming what still flows; else the full mirror stays.
 */
export function linkEffect(policies: readonly Policy[], source: string, destination: string): string {
  if (source === destination) return "";
  const link = `${source}→${destination}`;
  if (!isExclusiveLink(policies, source, destination))
    return `${link}: the full mirror stays (no exclusive policy on this link); everything still replicates`;
  const covering = policiesForLink(policies, source, destination);
  const by = policies
    .filter((p) => p.exclusive && namesLink(p, source, destination))
    .map((p) => p.name)
    .sort(cmp);
  const selected = (p: Policy) =>
    `${p.name} (${[...p.repositories.include, ...p.repositories.exclude.map((g) => `!${g}`)].join(", ")})`;
  const only =
    covering.length === 0
      ? "nothing replicates (its policies are disabled)"
      : `only ${covering.map(selected).join(", ")} replicates`;
  return `${link}: replication of everything else stops (exclusive: ${by.join(", ")}); ${only}`;
}

/** Repositories (of `repos`) that no policy governing the link selects: what does not replicate on it. */
export function unselectedRepositories(
  policies: readonly Policy[],
  source: string,
  destination: string,
  repos: readonly string[],
): string[] {
  const effective = effectivePolicies(policies, source, destination);
  return repos.filter((r) => !effective.some((p) => selectsRepository(p, r)));
}

/** The link's budget: the smallest among the policies covering it; undefined when none sets one. */
export function linkBandwidth(
  policies: readonly Policy[],
  source: string,
  destination: string,
): number | undefined {
  let min: number | undefined;
  for (const p of policiesForLink(policies, source, destination)) {
    const b = p.bandwidthBytesPerSecond;
    if (b !== undefined && (min === undefined || b < min)) min = b;
  }
  return min;
}

/**
 * The next scheduled run strictly after `after` (cron in UTC), or undefined
 * for a policy that is not scheduled, is disabled, or whose cron never fires again.
 */
export function nextRun(policy: Policy, after: Date): Date | undefined {
  if (!policy.enabled || policy.trigger.type !== "schedule") return undefined;
  return cronOf(policy.trigger.cron).nextRun(after) ?? undefined;
}

/** One direction of traffic between a region and an external endpoint, as one policy carries it. */
export interface EndpointLink {
  policy: Policy;
  region: string;
  endpoint: string;
  /** export: region → endpoint (run by the region's worker); import: endpoint → region (likewise). */
  direction: "export" | "import";
}

/** The endpoint names among `ends` (a policy's sources or destinations). */
export function endpointsIn(ends: readonly string[]): string[] {
  return ends.map(endpointOf).filter((e): e is string => e !== undefined);
}

/** The policy names some endpoint (on either side). */
export function namesEndpoint(policy: Policy): boolean {
  return endpointsIn(policy.sources).length > 0 || endpointsIn(policy.destinations).length > 0;
}

/**
 * The endpoint links `region`'s worker runs: exports of the enabled policies
 * naming it (or "*") among their sources, imports of those naming it (or
 * "*") among their destinations; sorted by policy, then endpoint.
 */
export function endpointLinks(policies: readonly Policy[], region: string): EndpointLink[] {
  const out: EndpointLink[] = [];
  const names = (ends: readonly string[]) => ends.includes("*") || ends.includes(region);
  for (const policy of [...policies].sort((a, b) => cmp(a.name, b.name))) {
    if (!policy.enabled) continue;
    if (names(policy.sources))
      for (const endpoint of endpointsIn(policy.destinations))
        out.push({ policy, region, endpoint, direction: "export" });
    if (names(policy.destinations))
      for (const endpoint of endpointsIn(policy.sources))
        out.push({ policy, region, endpoint, direction: "import" });
  }
  return out;
}

/** An endpoint link's budget: the smallest among the policies carrying it; undefined when none sets one. */
export function endpointLinkBandwidth(
  policies: readonly Policy[],
  region: string,
  endpoint: string,
  direction: EndpointLink["direction"],
): number | undefined {
  let min: number | undefined;
  for (const link of endpointLinks(policies, region)) {
    if (link.endpoint !== endpoint || link.direction !== direction) continue;
    const b = link.policy.bandwidthBytesPerSecond;
    if (b !== undefined && (min === undefined || b < min)) min = b;
  }
  return min;
}

/** The regions (of `regions`) whose workers run some endpoint link of `policy` (`policy run --wait` waits for them). */
export function endpointRunners(policy: Policy, regions: readonly string[]): string[] {
  return regions.filter((r) => endpointLinks([policy], r).length > 0);
}
