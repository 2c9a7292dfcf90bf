/**
 * Immutable tags (issue 15, item 3): rules naming repositories and tags by
 * glob, and the pure tag fold that honours them, evaluated the same way in
 * every region (no clock read, no IO), like ./tag-merge.ts which it extends.
 *
 * A rule is `{name, repositories, tags}`: two globs (picomatch syntax, `*`
 * within a path segment, `**` across segments, matched on
 * ./linear-regex.ts's automaton, so a client-chosen name costs linear time).
 * `prod/*` + `v*` protects every tag starting with "v" in every repository
 * directly under `prod/`. Rules are admin events (`immutability.set` /
 * `immutability.deleted`) replicated like policies; a rule's history is
 * kept, since which rule was in force when a write was made decides.
 *
 * The rule in force for a write. Every rule event and every tag write has a
 * place in one total order, (hlc, origin, event id) (`compareWrites`). A
 * rule name's event that is the latest before a write in that order is the
 * one in force for it: the write is protected when that event is a set
 * whose globs match the write's repository and tag. So a rule protects a
 * tag from the moment it was made (its HLC) until the moment it was deleted,
 * in every region alike, whatever order the events arrive in.
 *
 * The fold (`foldTag`). The writes of one tag are replayed in the merge
 * rule's order (lww: ascending (hlc, origin, id); home-region: epoch first);
 * a write is rejected when it is protected AND the tag stands set (not
 * absent, not deleted) to a different digest at that point of the replay.
 * Otherwise it replaces the standing write as the merge rule says. Hence:
 *   - the first push of a protected tag stands; re-pushing the same digest
 *     is accepted (idempotent); moving it or deleting it is rejected;
 *   - two regions writing a protected tag concurrently: the first write by
 *     (hlc, origin, id) stands everywhere, the other is rejected (recorded
 *     as a `tag.conflict`);
 *   - a rule made after some writes: those writes merge as before (a tag
 *     moved before the rule keeps its latest value), and the value standing
 *     at the rule's moment is frozen. A write made in another region that
 *     had not heard of the rule yet (later in the order than the rule) is
 *     rejected when the rule arrives there, and the tag goes back to the
 *     frozen value: the rule wins over a write that did not know it;
 *   - a rule deleted: writes made after the deletion merge as before. Writes
 *     rejected while the rule was in force stay rejected (they were made
 *     while the tag was immutable), so deleting a rule never resurrects a
 *     losing write: only new writes move the tag.
 * Deleting the manifest a protected tag points at, or its repository, is
 * refused where it is asked (node/data/immutability-guard.ts); the fold
 * itself orders tag writes only.
 * The first-write merge rule already keeps the first write of every tag:
 * under it a rule changes nothing and the fold is tag-merge's.
 *
 * The fold is a function of the SET of writes and rule events (sorted
 * before replay, duplicates by event id ignored): commutative, associative
 * and idempotent, like mergeTag (protocol/test/immutable-tags.test.ts).
 */
import picomatch from "picomatch";
import type { Hlc } from "./hlc.js";
import { globMatch } from "./policy-match.js";
import { MAX_PATTERN_LENGTH, PICOMATCH } from "./policy-types.js";
import {
  compareWrites,
  counts,
  type HomeTable,
  mergeTag,
  type TagMergeRule,
  type TagWrite,
} from "./tag-merge.js";

export interface ImmutabilityRule {
  /** The rule's name (its identity: a set replaces the rule of that name). */
  name: string;
  /** Glob over repository names, e.g. `prod/*` or `prod/**`. */
  repositories: string;
  /** Glob over tags, e.g. `v*` or `release-*`. */
  tags: string;
}

/** One event of a rule name: a set (`rule`), or a deletion (`rule` null), at its place in the order. */
export interface RuleWrite {
  rule: ImmutabilityRule | null;
  hlc: Hlc;
  origin: string;
  eventId: string;
}

/** Rule names: lower-case letters, digits and `._-`, at most 63 (as policy names). */
export const RULE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Problems with a rule as written (empty: fine). */
export function ruleProblems(rule: Partial<Record<keyof ImmutabilityRule, unknown>>): string[] {
  const problems: string[] = [];
  if (typeof rule.name !== "string" || !RULE_NAME.test(rule.name))
    problems.push("name: lower-case letters, digits and ._- (at most 63), starting with a letter or digit");
  for (const field of ["repositories", "tags"] as const) {
    const glob = rule[field];
    if (typeof glob !== "string" || glob.length === 0) problems.push(`${field}: a non-empty glob`);
    else if (glob.length > MAX_PATTERN_LENGTH)
      problems.push(`${field}: longer than ${MAX_PATTERN_LENGTH} characters`);
    else if (!isGlob(glob)) problems.push(`${field}: invalid glob ${JSON.stringify(glob)}`);
  }
  return problems;
}

function isGlob(pattern: string): boolean {
  try {
    // picomatch compiles a malformed glob ("a{", "[z-a]") to a regex that never matches.
    return picomatch.makeRe(pattern, PICOMATCH).source !== "$^";
  } catch {
    return false;
  }
}

/** Does the rule cover this repository and tag? */
export function ruleMatches(rule: ImmutabilityRule, repo: string, tag: string): boolean {
  return globMatch(rule.repositories, repo) && globMatch(rule.tags, tag);
}

/** Could the rule cover some tag of this repository? */
export function ruleCoversRepository(rule: ImmutabilityRule, repo: string): boolean {
  return globMatch(rule.repositories, repo);
}

/**
 * The project a rule belongs to: the first component of its repositories
 * glob when that is a plain name followed by "/" (`prod/*` → `prod`), so
 * every repository it can match is in that project; undefined for a rule
 * that can reach several projects (`*\/app`, `**`), which only a system
 * admin may make (protocol/event-authority.ts).
 */
export function ruleProject(repositories: string): string | undefined {
  const cut = repositories.indexOf("/");
  if (cut <= 0) return undefined;
  const first = repositories.slice(0, cut);
  return /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(first) ? first : undefined;
}

/** The rule of one name in force at `at`: its latest event strictly before `at` in the order, if a set. */
export function ruleInForce(
  events: Iterable<RuleWrite>,
  at: Pick<TagWrite, "hlc" | "origin" | "eventId">,
): ImmutabilityRule | undefined {
  let latest: RuleWrite | undefined;
  for (const e of events)
    if (
      compareWrites(asWrite(e), asWrite(at)) < 0 &&
      (latest === undefined || compareWrites(asWrite(latest), asWrite(e)) < 0)
    )
      latest = e;
  return latest?.rule ?? undefined;
}

/**
 * The name of the rule protecting `repo:tag` for a write made at `at`
 * (the least name when several do), or undefined. `rules`: each name's events.
 */
export function protectingRule(
  rules: Iterable<Iterable<RuleWrite>>,
  repo: string,
  tag: string,
  at: Pick<TagWrite, "hlc" | "origin" | "eventId">,
): string | undefined {
  let found: string | undefined;
  for (const events of rules) {
    const rule = ruleInForce(events, at);
    if (rule !== undefined && ruleMatches(rule, repo, tag) && (found === undefined || rule.name < found))
      found = rule.name;
  }
  return found;
}

/** The name of the rule in force now (each name's latest event) protecting `repo:tag`, or undefined. */
export function protectingRuleNow(
  rules: Iterable<Iterable<RuleWrite>>,
  repo: string,
  tag: string,
): string | undefined {
  let found: string | undefined;
  for (const events of rules) {
    let latest: RuleWrite | undefined;
    for (const e of events)
      if (latest === undefined || compareWrites(asWrite(latest), asWrite(e)) < 0) latest = e;
    const rule = latest?.rule ?? undefined;
    if (rule !== undefined && ruleMatches(rule, repo, tag) && (found === undefined || rule.name < found))
      found = rule.name;
  }
  return found;
}

/** A write the fold rejected: the rule that protected the tag and the write standing then. */
export interface Rejection {
  write: TagWrite;
  rule: string;
  standing: TagWrite;
}

/**
 * The tag register after every write in `writes`, under the merge rule and
 * the immutability rules (`protect` names the rule protecting a write, as
 * `protectingRule` answers for this tag), and the writes it rejected. Any
 * order of `writes` gives the same answer.
 */
export function foldTag(
  merge: TagMergeRule,
  writes: Iterable<TagWrite>,
  protect: (w: TagWrite) => string | undefined,
  homes: HomeTable = {},
): { winner: TagWrite | undefined; rejected: Rejection[] } {
  const unique = new Map<string, TagWrite>();
  for (const w of writes) if (counts(merge, w, homes)) unique.set(w.eventId, w);
  const sorted = [...unique.values()].sort(
    merge === "home-region"
      ? (a, b) => (a.epoch ?? 0) - (b.epoch ?? 0) || compareWrites(a, b)
      : compareWrites,
  );
  const rejected: Rejection[] = [];
  let winner: TagWrite | undefined;
  for (const w of sorted) {
    if (merge !== "first-write" && winner?.digest !== undefined && winner.digest !== w.digest) {
      const rule = protect(w);
      if (rule !== undefined) {
        rejected.push({ write: w, rule, standing: winner });
        continue;
      }
    }
    winner = mergeTag(merge, winner, w, homes);
  }
  return { winner, rejected };
}

function asWrite(w: Pick<TagWrite, "hlc" | "origin" | "eventId">): TagWrite {
  return { digest: undefined, hlc: w.hlc, origin: w.origin, eventId: w.eventId };
}

/**
 * The conflict an incoming write makes under the immutability rules: the
 * incoming write rejected (it tried to move a tag that stood set), or the
 * write standing before it rejected now that the incoming one, earlier in
 * the order, is known (two regions set the tag concurrently). `history`:
 * every write the tag has seen here (the incoming one may be among them).
 * Undefined when neither write is rejected: tag-merge's `conflictBetween`
 * decides then. Either region may detect it; both name the same pair.
 */
export function immutableConflict(
  merge: TagMergeRule,
  history: readonly TagWrite[],
  incoming: TagWrite,
  protect: (w: TagWrite) => string | undefined,
  homes: HomeTable = {},
): { winner: TagWrite; loser: TagWrite; rule: string } | undefined {
  const others = history.filter((w) => w.eventId !== incoming.eventId);
  const before = foldTag(merge, others, protect, homes).winner;
  const after = foldTag(merge, [...others, incoming], protect, homes);
  const lost = after.rejected.find((r) => r.write.eventId === incoming.eventId);
  if (lost !== undefined) return { winner: lost.standing, loser: incoming, rule: lost.rule };
  const displaced = after.rejected.find((r) => r.write.eventId === before?.eventId);
  if (displaced !== undefined)
    return { winner: displaced.standing, loser: displaced.write, rule: displaced.rule };
  return undefined;
}
