/**
 * Matching content against a policy's filters: pure (no clock, no IO).
 * Compiled globs, regexes and semver ranges are memoized by pattern text,
 * so a policy may be matched against many repositories and tags cheaply.
 * Globs and regexes run on ./linear-regex.ts's automaton (polynomial time:
 * the names matched are chosen by clients).
 */
import { LRUCache } from "lru-cache";
import picomatch from "picomatch";
import semver from "semver";
import { linearRegex } from "./linear-regex.js";
import {
  type EventKind,
  PICOMATCH,
  type Policy,
  SIGNATURE_ARTIFACT_TYPES,
  type TagMatcher,
} from "./policy-types.js";

export function selectsRepository(policy: Policy, repo: string): boolean {
  const { include, exclude } = policy.repositories;
  return include.some((g) => globMatch(g, repo)) && !exclude.some((g) => globMatch(g, repo));
}

/**
 * Any include matches (or there is none) and no exclude does. A semver
 * matcher matches only a tag that is a strict semver, with an optional
 * leading "v", satisfying the range; as npm ranges do, a pre-release
 * (1.3.0-rc.1) satisfies a range only when the range names a pre-release of
 * the same major.minor.patch.
 */
export function selectsTag(policy: Policy, tag: string): boolean {
  const { include, exclude } = policy.tags;
  return (
    (include.length === 0 || include.some((m) => tagMatches(m, tag))) &&
    !exclude.some((m) => tagMatches(m, tag))
  );
}

/**
 * Platform filter for a manifest (a child of an index): an empty list selects
 * every platform and a manifest without a platform is always selected.
 * "linux/arm64" matches every variant of linux/arm64; "linux/arm64/v8" only
 * that variant (a manifest that states no variant does not match it).
 */
export function selectsPlatform(
  policy: Policy,
  platform: { os: string; architecture: string; variant?: string } | undefined,
): boolean {
  if (policy.platforms.length === 0 || platform === undefined) return true;
  return policy.platforms.some((p) => {
    const [os, arch, variant] = p.split("/");
    return (
      os === platform.os &&
      arch === platform.architecture &&
      (variant === undefined || variant === platform.variant)
    );
  });
}

/** The kind is listed in `events`; a delete travels only when `deletes` is on as well. */
export function selectsKind(policy: Policy, kind: EventKind): boolean {
  return policy.events.includes(kind) && (kind !== "delete" || policy.deletes);
}

/**
 * The policy narrows content beyond repositories and event kinds, so it
 * cannot replicate event by event: it reconciles repositories instead.
 */
export function isFiltered(policy: Policy): boolean {
  return (
    policy.tags.include.length > 0 ||
    policy.tags.exclude.length > 0 ||
    policy.platforms.length > 0 ||
    policy.signedOnly ||
    !policy.override ||
    policy.holdTagsForReferrers.length > 0
  );
}

/**
 * A referrer is a signature: its artifact type (the manifest's artifactType,
 * else its config media type) or, when that is absent, its own media type is
 * one of SIGNATURE_ARTIFACT_TYPES.
 */
export function isSignatureReferrer(artifactType: string | undefined, mediaType: string): boolean {
  return SIGNATURE_ARTIFACT_TYPES.includes(artifactType ?? mediaType);
}

type Test = (s: string) => boolean;
const MAX_COMPILED = 4096;
/** Least recently used matchers go first once MAX_COMPILED are held. */
const COMPILED = new LRUCache<string, Test>({ max: MAX_COMPILED });

/** Memoized by key: compiling is the cost, matching is cheap. */
function compiled(key: string, build: () => Test): Test {
  let t = COMPILED.get(key);
  if (t === undefined) {
    t = build();
    COMPILED.set(key, t);
  }
  return t;
}

/**
 * Globs and regexes are matched against names a client chose (a pushed
 * repository or tag), so they run on ./linear-regex.ts's automaton, not
 * V8's backtracking (issue 10, finding 9): picomatch's regex for
 * `*a*a*a*a*a*a*a*a*b` took 5 s against 48 characters. The answers are
 * picomatch's and RegExp's; a source the automaton does not support keeps
 * the RegExp (its length is capped by MAX_PATTERN_LENGTH).
 */
export function globMatch(pattern: string, s: string): boolean {
  return compiled(`glob:${pattern}`, () => {
    const re = picomatch.makeRe(pattern, PICOMATCH);
    const linear = linearRegex(re.source, re.flags);
    // picomatch's own test: never the empty string; the glob itself always; else its regex.
    if (linear !== undefined) return (s) => s !== "" && (s === pattern || linear(s));
    return picomatch(pattern, PICOMATCH);
  })(s);
}

/** One tag matcher (glob, regex or semver; see selectsTag) against a tag. */
export function tagMatches(m: TagMatcher, tag: string): boolean {
  if (m.kind === "glob") return globMatch(m.pattern, tag);
  if (m.kind === "regex") {
    return compiled(`regex:${m.pattern}`, () => {
      const linear = linearRegex(m.pattern);
      if (linear !== undefined) return linear;
      const re = new RegExp(m.pattern);
      return (s) => re.test(s);
    })(tag);
  }
  return compiled(`semver:${m.range}`, () => {
    const range = new semver.Range(m.range);
    return (s) => {
      // Strict semver with at most one leading "v" (semver.parse allows exactly that).
      const v = semver.parse(s);
      return v !== null && range.test(v);
    };
  })(tag);
}
