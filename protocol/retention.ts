/**
 * Retention rules (issue 15, item 2): which manifests of a repository a
 * retention run keeps and which it deletes. Pure: the rule's parser and the
 * plan are functions of their inputs (no clock read, no IO), so every region
 * that holds the same rules and the same view computes the same plan.
 *
 * A rule (stored in `retention.set` events, normalized by
 * `parseRetentionRule`):
 *
 *   name          /^[a-z0-9][a-z0-9._-]{0,62}$/, unique within a mesh
 *   repositories  picomatch globs over the full repository name (`team/**`)
 *   region        the region that decides (runs) the rule's deletions
 *   keepLast      keep the N most recently pushed images
 *   keepTags      keep images with a tag matching one of these matchers,
 *                 written as replication policies' tags are: a glob (`v*`),
 *                 `regex:…`, or `semver:RANGE` (npm's `semver`; a tag
 *                 counts only when it is a strict semver, `v` allowed)
 *   untaggedDays  untagged images expire once pushed more than D days ago
 *                 (fractions allowed: 0.5 is 12 hours)
 *   pulledDays    keep images pulled in the last D days
 *
 * What a run judges: the repository's *images*, i.e. its live manifests
 * that are neither a child of a live index nor a referrer of a live
 * manifest. Children and referrers follow their parents: one is deleted
 * when every live manifest holding it (an index listing it, its subject) is
 * deleted, and it carries no tag of its own.
 *
 * An image is kept when any rule matching its repository keeps it (the
 * rules' keeps are a union, so adding a rule never deletes more). One rule
 * keeps an image when
 *   - it is among the rule's `keepLast` most recently pushed images, or
 *   - one of its tags matches `keepTags`, or
 *   - it was pulled within `pulledDays`, or
 *   - it is untagged and the rule has no `untaggedDays`, or was pushed
 *     within them (untagged images are deleted only by `untaggedDays`), or
 *   - it is tagged and the rule has neither `keepLast` nor `keepTags` (a
 *     rule about untagged images only leaves tagged ones alone).
 *
 * Deciding region: every region holds the rules (they replicate like
 * policies), but only one decides each repository: the `region` of the
 * first rule, by name, whose globs match it. A run elsewhere plans the same
 * (shown as decided by that region) and deletes nothing; the deciding
 * region's deletions are ordinary `manifest.deleted` events that replicate
 * to the others like any deletion (policies' `deletes`, each region's
 * delete breaker), so no two regions ever race different answers.
 */
import { PolicyInvalidError } from "./errors.js";
import { parseRegion } from "./event-subjects.js";
import { globMatch, tagMatches } from "./policy-match.js";
import { checkGlob, tagMatcher } from "./policy-parse.js";
import { matcherText, type TagMatcher } from "./policy-types.js";

export const RETENTION_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const DAY_MS = 86_400_000;
/** Most globs or tag matchers one rule lists. */
const MAX_LIST = 64;

export interface RetentionRule {
  name: string;
  /** picomatch globs over the full repository name; never empty. */
  repositories: string[];
  /** The region that decides (runs) the deletions of the repositories this rule matches first. */
  region: string;
  keepLast?: number;
  keepTags?: TagMatcher[];
  untaggedDays?: number;
  pulledDays?: number;
}

const KEYS = ["name", "repositories", "region", "keepLast", "keepTags", "untaggedDays", "pulledDays"];

/**
 * Read a rule (from JSON, the admin API's body or a stored event), listing
 * every problem at once: PolicyInvalidError with `detail.errors`.
 */
export function parseRetentionRule(value: unknown): RetentionRule {
  const problems: string[] = [];
  const bad = (field: string, problem: string) => problems.push(`${field}: ${problem}`);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalid(["rule: want a mapping"]);
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) if (!KEYS.includes(key)) bad(key, "unknown key");
  if (typeof v.name !== "string" || !RETENTION_NAME.test(v.name))
    bad("name", "want lower-case letters, digits and ._- (at most 63)");
  const repositories: string[] = [];
  const repos = typeof v.repositories === "string" ? [v.repositories] : v.repositories;
  if (!Array.isArray(repos) || repos.length === 0 || repos.length > MAX_LIST)
    bad("repositories", `want a glob or a list of 1 to ${MAX_LIST} globs`);
  else
    repos.forEach((g, i) => {
      if (typeof g !== "string") bad(`repositories[${i}]`, "want a string");
      else if (checkGlob(g, `repositories[${i}]`, bad)) repositories.push(g);
    });
  if (typeof v.region !== "string") bad("region", "want the name of the deciding region");
  else
    try {
      parseRegion(v.region);
    } catch {
      bad("region", `invalid region name ${JSON.stringify(v.region).slice(0, 70)}`);
    }
  const rule: RetentionRule = { name: v.name as string, repositories, region: v.region as string };
  if (v.keepLast !== undefined) {
    if (!Number.isSafeInteger(v.keepLast) || (v.keepLast as number) < 0 || (v.keepLast as number) > 1e6)
      bad("keepLast", "want an integer from 0 to 1000000");
    else rule.keepLast = v.keepLast as number;
  }
  if (v.keepTags !== undefined) {
    const list = Array.isArray(v.keepTags) ? v.keepTags : [v.keepTags];
    if (list.length === 0 || list.length > MAX_LIST) bad("keepTags", `want 1 to ${MAX_LIST} matchers`);
    const matchers: TagMatcher[] = [];
    list.forEach((raw, i) => {
      const m = tagMatcher(raw, Array.isArray(v.keepTags) ? `keepTags[${i}]` : "keepTags", bad);
      if (m !== undefined) matchers.push(m);
    });
    rule.keepTags = matchers;
  }
  for (const field of ["untaggedDays", "pulledDays"] as const) {
    const d = v[field];
    if (d === undefined) continue;
    if (typeof d !== "number" || !Number.isFinite(d) || d <= 0 || d > 36_500)
      bad(field, "want a number of days above 0 (at most 36500)");
    else rule[field] = d;
  }
  if (problems.length > 0) throw invalid(problems);
  return rule;
}

function invalid(errors: string[]): PolicyInvalidError {
  return new PolicyInvalidError(errors.join("; "), { detail: { errors } });
}

/** The rule as one line (CLI tables). */
export function ruleSummary(rule: RetentionRule): string {
  const parts: string[] = [];
  if (rule.keepLast !== undefined) parts.push(`keep last ${rule.keepLast}`);
  if (rule.keepTags !== undefined) parts.push(`keep tags ${rule.keepTags.map(matcherText).join(", ")}`);
  if (rule.untaggedDays !== undefined) parts.push(`untagged expire after ${rule.untaggedDays}d`);
  if (rule.pulledDays !== undefined) parts.push(`keep pulled within ${rule.pulledDays}d`);
  return parts.length === 0 ? "keeps everything" : parts.join("; ");
}

/** Whether a repository glob (`meridian retention plan --repo`) selects `repo`. */
export function repoGlobMatches(glob: string, repo: string): boolean {
  return globMatch(glob, repo);
}

/** The problems of a repository glob (empty when it is valid). */
export function repoGlobProblems(glob: string, field = "repo"): string[] {
  const problems: string[] = [];
  checkGlob(glob, field, (f, problem) => problems.push(`${f}: ${problem}`));
  return problems;
}

export function ruleMatches(rule: RetentionRule, repo: string): boolean {
  return rule.repositories.some((g) => globMatch(g, repo));
}

/** The rules matching `repo` (sorted by name) and the region deciding it; undefined region: none match. */
export function rulesFor(
  rules: readonly RetentionRule[],
  repo: string,
): { rules: RetentionRule[]; region: string | undefined } {
  const matching = rules
    .filter((r) => ruleMatches(r, repo))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { rules: matching, region: matching[0]?.region };
}

/** A live manifest of the repository, as the plan sees it. */
export interface PlanManifest {
  digest: string;
  /** When its push was made (ms since the epoch, the origin's clock). */
  pushedAtMs: number;
  /** Total order of pushes, the same in every region: the push's clock, then its write id. */
  pushOrder: { wall: number; logical: number; id: string };
  /** Tags shown on it. */
  tags: string[];
  /** Child manifests it lists (an index). */
  manifests: string[];
  subject?: string;
  /** Last pull known anywhere in the mesh (ms), if any. */
  pulledAtMs?: number;
}

export interface PlanDecision {
  digest: string;
  tags: string[];
  /** Why it is kept (one reason per rule keeping it), or why it goes. */
  reasons: string[];
  /** For a child or referrer: the manifest it follows. */
  follows?: string;
}

export interface RepoPlan {
  repo: string;
  /** The deciding region (see the header). */
  decidedBy: string;
  rules: string[];
  keep: PlanDecision[];
  /** In the order a run deletes them: images first, then what follows them. */
  delete: PlanDecision[];
}

/** The plan of one repository under the rules matching it (`rulesFor`), as of `nowMs`. Pure. */
export function planRepository(
  repo: string,
  rules: readonly RetentionRule[],
  decidedBy: string,
  manifests: readonly PlanManifest[],
  nowMs: number,
): RepoPlan {
  const byDigest = new Map(manifests.map((m) => [m.digest, m]));
  // Who holds each manifest: the indexes listing it and, for a referrer, its subject.
  const holders = new Map<string, string[]>();
  const hold = (held: string, by: string) => holders.set(held, [...(holders.get(held) ?? []), by]);
  for (const m of manifests) {
    for (const child of m.manifests) if (byDigest.has(child) && child !== m.digest) hold(child, m.digest);
    if (m.subject !== undefined && byDigest.has(m.subject) && m.subject !== m.digest)
      hold(m.digest, m.subject);
  }
  for (const list of holders.values()) list.sort();
  const images = manifests
    .filter((m) => !holders.has(m.digest))
    .sort((a, b) => compareOrder(b.pushOrder, a.pushOrder));
  const keep: PlanDecision[] = [];
  const gone: PlanDecision[] = [];
  const deleted = new Set<string>();
  images.forEach((m, rank) => {
    const kept: string[] = [];
    const why: string[] = [];
    for (const rule of rules) {
      const k = keepReason(rule, m, rank, nowMs);
      if (k.keep) kept.push(`${rule.name}: ${k.reason}`);
      else why.push(`${rule.name}: ${k.reason}`);
    }
    if (kept.length > 0) keep.push({ digest: m.digest, tags: m.tags, reasons: kept });
    else {
      gone.push({ digest: m.digest, tags: m.tags, reasons: why });
      deleted.add(m.digest);
    }
  });
  // Children and referrers: gone once every holder is gone and they carry no tag (to a fixpoint).
  const followers = manifests
    .filter((m) => holders.has(m.digest))
    .sort((a, b) => (a.digest < b.digest ? -1 : 1));
  let changed = true;
  while (changed) {
    changed = false;
    for (const m of followers) {
      if (deleted.has(m.digest) || m.tags.length > 0) continue;
      const by = holders.get(m.digest)!;
      if (!by.every((h) => deleted.has(h))) continue;
      deleted.add(m.digest);
      gone.push({ digest: m.digest, tags: [], reasons: [`follows ${by[0]}`], follows: by[0] });
      changed = true;
    }
  }
  for (const m of followers) {
    if (deleted.has(m.digest)) continue;
    const by = holders.get(m.digest)!;
    const holder = by.find((h) => !deleted.has(h)) ?? by[0]!;
    keep.push({
      digest: m.digest,
      tags: m.tags,
      reasons: [m.tags.length > 0 ? "tagged itself" : `held by ${holder}`],
      follows: holder,
    });
  }
  return { repo, decidedBy, rules: rules.map((r) => r.name), keep, delete: gone };
}

function keepReason(
  rule: RetentionRule,
  m: PlanManifest,
  rank: number,
  nowMs: number,
): { keep: boolean; reason: string } {
  if (rule.keepLast !== undefined && rank < rule.keepLast)
    return { keep: true, reason: `among the last ${rule.keepLast} pushed` };
  if (rule.keepTags !== undefined) {
    for (const tag of m.tags)
      for (const matcher of rule.keepTags)
        if (tagMatches(matcher, tag))
          return { keep: true, reason: `tag ${tag} matches ${matcherText(matcher)}` };
  }
  if (
    rule.pulledDays !== undefined &&
    m.pulledAtMs !== undefined &&
    nowMs - m.pulledAtMs <= rule.pulledDays * DAY_MS
  )
    return { keep: true, reason: `pulled within ${rule.pulledDays}d` };
  if (m.tags.length === 0) {
    if (rule.untaggedDays === undefined) return { keep: true, reason: "untagged (no untaggedDays)" };
    if (nowMs - m.pushedAtMs <= rule.untaggedDays * DAY_MS)
      return { keep: true, reason: `untagged, pushed within ${rule.untaggedDays}d` };
    return { keep: false, reason: `untagged for more than ${rule.untaggedDays}d` };
  }
  if (rule.keepLast === undefined && rule.keepTags === undefined)
    return { keep: true, reason: "tagged (no keepLast or keepTags)" };
  return { keep: false, reason: "tagged, but not among the last pushed nor a kept tag" };
}

function compareOrder(a: PlanManifest["pushOrder"], b: PlanManifest["pushOrder"]): number {
  if (a.wall !== b.wall) return a.wall - b.wall;
  if (a.logical !== b.logical) return a.logical - b.logical;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
