/**
 * A replication policy's model (./policy.ts's header says what a policy
 * means): the normalized `Policy` every region stores in `policy.set`
 * events, its defaults (DEFAULT_POLICY, the full mirror) and the few
 * readings that parsing, matching and planning share: how a tag matcher is
 * written, how picomatch reads a glob, how a trigger's cron is read.
 */
import { Cron } from "croner";
import type picomatch from "picomatch";
import { ENDPOINT_NAME } from "./endpoints.js";

export type EventKind = "push" | "tag" | "delete";
export type Trigger = { type: "on-push" } | { type: "schedule"; cron: string } | { type: "manual" };
export type TagMatcher =
  | { kind: "glob"; pattern: string }
  | { kind: "regex"; pattern: string }
  | { kind: "semver"; range: string };

export interface Policy {
  /** /^[a-z0-9][a-z0-9._-]{0,62}$/, unique within a mesh. */
  name: string;
  /**
   * Region names, sorted and unique, or ["*"] for every region; and external
   * endpoints as `endpoint:NAME` (after "*" when both are given). See ./policy.ts.
   */
  sources: string[];
  /** As `sources`. An endpoint is never on both sides, and "*" never includes one. */
  destinations: string[];
  /** picomatch globs over the full repository name; include is never empty (default ["**"]). */
  repositories: { include: string[]; exclude: string[] };
  /** An empty include selects every tag; an exclude always wins. */
  tags: { include: TagMatcher[]; exclude: TagMatcher[] };
  /** "os/arch" or "os/arch/variant", sorted and unique; empty selects every platform. */
  platforms: string[];
  /** Replicate only manifests that carry a signature referrer. */
  signedOnly: boolean;
  /** Event kinds replicated, sorted and unique; "delete" travels only when `deletes` is on too. */
  events: EventKind[];
  /** Deletions travel only when asked (default false). */
  deletes: boolean;
  /** A destination tag already pointing elsewhere may be moved (default true). */
  override: boolean;
  /** When replication runs (default on-push). */
  trigger: Trigger;
  /** Budget for the region link, shared by everything on it; undefined = unlimited. */
  bandwidthBytesPerSecond: number | undefined;
  /** Artifact types that must be present in the destination before a tag there moves; sorted, unique. */
  holdTagsForReferrers: string[];
  /** A disabled policy covers no link (an exclusive one still keeps the default mirror off it). */
  enabled: boolean;
  /**
   * Only what the link's policies select replicates on the links this policy
   * names: the default full mirror is off there (default false: the mirror
   * stays, and this policy narrows nothing).
   */
  exclusive: boolean;
}

/** How a policy names an external endpoint (protocol/endpoints.ts) among its sources or destinations. */
export const ENDPOINT_PREFIX = "endpoint:";

/** The endpoint's name when `end` is `endpoint:NAME` with a valid name; else undefined. */
export function endpointOf(end: string): string | undefined {
  if (!end.startsWith(ENDPOINT_PREFIX)) return undefined;
  const name = end.slice(ENDPOINT_PREFIX.length);
  return ENDPOINT_NAME.test(name) ? name : undefined;
}

export const EVENT_KINDS: readonly EventKind[] = ["delete", "push", "tag"];

/** Artifact types of signatures: cosign (OCI 1.1 referrers) and notation. */
export const SIGNATURE_ARTIFACT_TYPES: readonly string[] = Object.freeze([
  "application/vnd.dev.cosign.artifact.sig.v1+json",
  "application/vnd.cncf.notary.signature",
]);

/**
 * The policy that applies to a link only when no configured policy names that
 * link: a mesh with no policies mirrors everything, deletes included, as
 * before policies existed. See `effectivePolicies`.
 */
export const DEFAULT_POLICY: Policy = deepFreeze({
  name: "default",
  sources: ["*"],
  destinations: ["*"],
  repositories: { include: ["**"], exclude: [] },
  tags: { include: [], exclude: [] },
  platforms: [],
  signedOnly: false,
  events: [...EVENT_KINDS],
  deletes: true,
  override: true,
  trigger: { type: "on-push" },
  bandwidthBytesPerSecond: undefined,
  holdTagsForReferrers: [],
  enabled: true,
  exclusive: false,
});

/** Longest glob, regex or semver range accepted (bounds compile time and regex backtracking). */
export const MAX_PATTERN_LENGTH = 256;

/** Glob options: repository and tag names use "/" and are never Windows paths. */
export const PICOMATCH: picomatch.PicomatchOptions = { windows: false };

/** A matcher as written in a policy: `regex:…`, `semver:…`, or a glob (`glob:` when it needs the prefix). */
export function matcherText(m: TagMatcher): string {
  if (m.kind === "regex") return `regex:${m.pattern}`;
  if (m.kind === "semver") return `semver:${m.range}`;
  return /^(?:glob|regex|semver):/.test(m.pattern) ? `glob:${m.pattern}` : m.pattern;
}

/** The one reading of a trigger's cron (UTC; 5 fields, or 6 with seconds first): a croner job with no callback. */
export function cronOf(pattern: string): Cron {
  return new Cron(pattern, { timezone: "UTC", mode: "5-or-6-parts" });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
