/**
 * The event log's types: the envelope every event carries and the body of
 * each event type (the schema itself is described in ./events.ts's header,
 * the public entry point that re-exports this file). Pure types and
 * constants; validation is ./event-validation.ts, subjects and stream names
 * ./event-subjects.ts, building an event ./events.ts's `makeEvent`.
 */
import type { RobotGrant, Role } from "./access.js";
import type { Digest } from "./digest.js";
import type {
  EndpointDeleted,
  EndpointSet,
  GateDeleted,
  GateSet,
  PromotionRecorded,
  ProxyDeleted,
  ProxySet,
  WebhookDeleted,
  WebhookReplay,
  WebhookSet,
} from "./event-types-integrations.js";
import type { FailoverRecorded, QuotaExceeded } from "./event-types-records.js";
import type { Hlc } from "./hlc.js";
import type { OidcEvent } from "./oidc.js";
import type { PullPolicyDeleted, PullPolicySet } from "./pull-policy.js";
import type { TagMergeRule } from "./tag-merge.js";

export * from "./event-types-integrations.js";
export * from "./event-types-records.js";

export const EVENT_SCHEMA_VERSION = 1;

export interface Envelope {
  /** UUID; also the JetStream message id (de-duplication). */
  id: string;
  v: number;
  /** Region where the change was first accepted. */
  origin: string;
  hlc: Hlc;
  /** Who made the change (user, robot, or `system`). */
  actor: string;
  /** ISO-8601 time of the commit at the origin. */
  at: string;
  /** For replicated events: the origin event's id. */
  cause?: string;
  /** For replicated events: the event's sequence in its origin region's stream. */
  srcSeq?: number;
  /** The repository's failover epoch the origin wrote at (home-region merge); 0 when absent. */
  epoch?: number;
  /**
   * With authentication on, identity and policy events carry a detached
   * ES256 JWS by the mesh's token key over `proofPayload(event)`
   * (protocol/event-authority.ts): only a holder of that key (a node, a
   * peer) can have made them. Replicas copy it verbatim.
   */
  proof?: string;
}

export interface BlobPushed extends Envelope {
  type: "blob.pushed";
  repo: string;
  digest: Digest;
  size: number;
}
export interface ManifestPushed extends Envelope {
  type: "manifest.pushed";
  repo: string;
  digest: Digest;
  mediaType: string;
  size: number;
  blobs: Digest[];
  manifests: Digest[];
  subject?: Digest;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** For an index: each child's platform ("os/architecture[/variant]"), for platform filters. */
  platforms?: Record<string, string>;
  /** Set when the manifest was pushed by tag: the tag is set in the same event. */
  tag?: string;
  /** With `tag`: the write the tag's register held when this one was made (see TagSet.prev). */
  prev?: string;
}
export interface TagSet extends Envelope {
  type: "tag.set";
  repo: string;
  tag: string;
  digest: Digest;
  /**
   * The write the tag's register held where and when this write was made
   * (absent: none). A write that replaces one it did not know of is
   * concurrent with it: that is how conflicts are told from plain updates.
   */
  prev?: string;
}
export interface TagDeleted extends Envelope {
  type: "tag.deleted";
  repo: string;
  tag: string;
  prev?: string;
}
export interface ManifestDeleted extends Envelope {
  type: "manifest.deleted";
  repo: string;
  digest: Digest;
}
export interface BlobDeleted extends Envelope {
  type: "blob.deleted";
  repo: string;
  digest: Digest;
}

/** Everything in the repository written before this event is deleted (a tombstone over the whole repository). */
export interface RepositoryDeleted extends Envelope {
  type: "repository.deleted";
  repo: string;
}

/** One side of a tag conflict: a write, and what it set the tag to (null: deleted). */
export interface ConflictSide {
  id: string;
  origin: string;
  digest: Digest | null;
  hlc: Hlc;
}
/** A write to a tag lost the merge to a concurrent write (recorded by the winner's origin). */
export interface TagConflict extends Envelope {
  type: "tag.conflict";
  repo: string;
  tag: string;
  winner: ConflictSide;
  loser: ConflictSide;
  /** The immutable-tag rule that rejected the loser (protocol/immutable-tags.ts); absent: the merge rule. */
  rule?: string;
}

/**
 * The tag merge rule (and, for `home-region`, the home at an epoch) of every
 * repository named `scope`, or under it when `scope` ends in "/". The longest
 * matching scope wins; the mesh's default rule applies where none matches.
 */
export interface RepositoryConfigured extends Envelope {
  type: "repository.configured";
  scope: string;
  tagMerge: TagMergeRule;
  home?: string;
  /** `async` (absent) or `sync(k)`: see ./event-validation.ts's `parseDurability`. */
  durability?: string;
}

/** A replication policy created or replaced (`policy` is protocol/policy.ts's normalized form). */
export interface PolicySet extends Envelope {
  type: "policy.set";
  name: string;
  policy: Record<string, unknown>;
}
export interface PolicyDeleted extends Envelope {
  type: "policy.deleted";
  name: string;
}
/** Run the policy now (anti-entropy over everything it selects), in each of its destinations. */
export interface PolicyRun extends Envelope {
  type: "policy.run";
  /** A policy's name, or REBUILD_RUN. */
  name: string;
  runId: string;
  /** Only this region's workers run it (absent: every destination of the policy). */
  region?: string;
}

/**
 * The `policy.run` name of a region rebuild (`meridian rebuild-region`): the
 * named region's workers run every policy into it (manual ones too) from
 * every source, and record the outcome as a run of this name. Policy names
 * cannot start with "@", so it never collides with one.
 */
export const REBUILD_RUN = "@rebuild";
export interface PolicyRunFinished extends Envelope {
  type: "policy.run.finished";
  name: string;
  runId: string;
  /** The destination region that ran it. */
  region: string;
  outcome: "ok" | "failed" | "halted";
  stats: Record<string, number>;
  error?: string;
}
/** Something an operator must look at; `kind` "delete-breaker": a policy's deletes were halted. */
export interface AlertRaised extends Envelope {
  type: "alert.raised";
  kind: string;
  message: string;
  policy?: string;
  repo?: string;
  detail?: Record<string, unknown>;
}
/** Let a policy's halted deletes through again (clears its delete breaker). */
export interface BreakerReset extends Envelope {
  type: "breaker.reset";
  /** The policy's name. */
  name: string;
}

/**
 * Identities (issue 6) are admin events like policies, so every region knows
 * every user and a failed region's users log in elsewhere. Secrets travel
 * only as KDF hashes (node/auth/passwords.ts), never in clear.
 */
export interface UserSet extends Envelope {
  type: "user.set";
  name: string;
  passwordHash: string;
  systemAdmin: boolean;
  /**
   * A read-only operator (issue 16): may read every admin API route (the
   * dashboard's data included), never change anything. Absent: false.
   */
  operator?: boolean;
}
export interface UserDeleted extends Envelope {
  type: "user.deleted";
  name: string;
}
/** A robot account: a hashed secret, explicit grants, an expiry (ISO-8601). */
export interface RobotSet extends Envelope {
  type: "robot.set";
  name: string;
  secretHash: string;
  expiresAt: string;
  grants: RobotGrant[];
}
export interface RobotDeleted extends Envelope {
  type: "robot.deleted";
  name: string;
}
/**
 * Token revocation (issue 18): every token of the user or robot `name`
 * issued at or before `before` (ISO-8601, the revoking node's clock) is
 * refused from the moment a node applies this event, in every region. The
 * projection keeps the latest `before` per name (a maximum: arrival order
 * does not matter). Tokens carry their issue time in whole seconds, so a
 * token issued in the same second as `before` is refused too (a client logs
 * in again a second later). Passwords and secrets keep working: to end
 * those, change them or delete the account.
 */
export interface TokensRevoked extends Envelope {
  type: "tokens.revoked";
  name: string;
  before: string;
}
/** A project (a repository's first path component) and whether anyone may pull from it. */
export interface ProjectSet extends Envelope {
  type: "project.set";
  name: string;
  public: boolean;
}
/** A user's role in a project; `role: null` removes the membership. */
export interface MemberSet extends Envelope {
  type: "member.set";
  project: string;
  user: string;
  role: Role | null;
}

/**
 * An immutable-tag rule created or replaced (protocol/immutable-tags.ts):
 * tags matching `tags` in repositories matching `repositories` cannot be
 * moved or deleted once set, from this event's place in the order on.
 */
export interface ImmutabilitySet extends Envelope {
  type: "immutability.set";
  name: string;
  repositories: string;
  tags: string;
}
/** The immutable-tag rule `name` no longer protects writes made after this event. */
export interface ImmutabilityDeleted extends Envelope {
  type: "immutability.deleted";
  name: string;
}
/**
 * A project's storage quota (issue 15, quotas): the most bytes of distinct
 * content the project may hold in each region (node/data/projections/quotas.ts
 * counts them); `limitBytes: null` removes the quota. A system admin's change.
 */
export interface QuotaSet extends Envelope {
  type: "quota.set";
  project: string;
  limitBytes: number | null;
}
/**
 * Retention rules (issue 15, item 2; protocol/retention.ts): `rule` is the
 * normalized RetentionRule, named `name`. Replicated like policies, so every
 * region holds the same rules.
 */
export interface RetentionSet extends Envelope {
  type: "retention.set";
  name: string;
  rule: Record<string, unknown>;
}
export interface RetentionDeleted extends Envelope {
  type: "retention.deleted";
  name: string;
}
/**
 * Pulls a node saw, coarsely (node/data/pull-record.ts): the last pull of
 * each manifest since the node's previous record, at most one event per
 * flush interval per node, so retention's `pulledDays` sees pulls in every
 * region without a write per pull.
 */
export interface PullsRecorded extends Envelope {
  type: "pulls.recorded";
  pulls: Array<{ repo: string; digest: Digest; at: string }>;
}
/** Most pulls one `pulls.recorded` carries. */
export const MAX_PULLS_PER_EVENT = 500;
/**
 * Garbage collection (issue 15, node/data/gc.ts): records of what one
 * region's collector did, not commands (no region acts on another's). They
 * replicate like other admin events, so every region's audit can explain a
 * missing blob; only the `gc.collected` in the stream it was written to (no
 * `cause`) drops that region's stale links.
 */
export interface GcRun extends Envelope {
  type: "gc.run";
  runId: string;
  /** The region collecting. */
  region: string;
  dryRun: boolean;
  /** The grace and undelete window in force for this run (`--now`: both 0). */
  graceMs: number;
  undeleteWindowMs: number;
  /** How it was started: "manual" (admin API) or "scheduled". */
  trigger: string;
}
/** One blob (or manifest's bytes) collected by a run, with why it was garbage. */
export interface GcCollected extends Envelope {
  type: "gc.collected";
  runId: string;
  region: string;
  digest: Digest;
  size: number;
  /** Why nothing needed it: "unreferenced" (links, no live manifest), "orphan" (no link at all), "deleted" (past the undelete window). */
  reason: string;
  /**
   * The stale links this collection drops: each repository's link register
   * as the run saw it (its write id). A link written since is not touched.
   */
  links: Array<{ repo: string; write: string }>;
}
export interface GcFinished extends Envelope {
  type: "gc.finished";
  runId: string;
  region: string;
  outcome: "ok" | "failed";
  stats: Record<string, number>;
  error?: string;
}

/** User names: lower-case letters, digits and `._-`, at most 63. */
export const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Robot names carry the `robot$` prefix (as Harbor's), so no user can be mistaken for one. */
export const ROBOT_NAME = /^robot\$[a-z0-9][a-z0-9._+-]{0,63}$/;
/** Project names: a repository path component, at most 63 characters. */
export const PROJECT_NAME = /^(?=.{1,63}$)[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

export type ContentEvent =
  | BlobPushed
  | ManifestPushed
  | TagSet
  | TagDeleted
  | ManifestDeleted
  | BlobDeleted
  | RepositoryDeleted
  | TagConflict;
export type AdminEvent =
  | RepositoryConfigured
  | PolicySet
  | PolicyDeleted
  | PolicyRun
  | PolicyRunFinished
  | AlertRaised
  | BreakerReset
  | UserSet
  | UserDeleted
  | RobotSet
  | RobotDeleted
  | TokensRevoked
  | ProjectSet
  | MemberSet
  | ImmutabilitySet
  | ImmutabilityDeleted
  | QuotaSet
  | RetentionSet
  | RetentionDeleted
  | EndpointSet
  | EndpointDeleted
  | GateSet
  | GateDeleted
  | PullPolicySet
  | PullPolicyDeleted
  | PromotionRecorded
  | ProxySet
  | ProxyDeleted
  | PullsRecorded
  | GcRun
  | GcCollected
  | GcFinished
  | WebhookSet
  | WebhookDeleted
  | WebhookReplay
  | FailoverRecorded
  | QuotaExceeded
  | OidcEvent;
export type RegistryEvent = ContentEvent | AdminEvent;
export type EventType = RegistryEvent["type"];
/** Event types about one repository's content (they carry `repo`). */
const CONTENT_TYPES: readonly ContentEvent["type"][] = [
  "blob.pushed",
  "manifest.pushed",
  "tag.set",
  "tag.deleted",
  "manifest.deleted",
  "blob.deleted",
  "repository.deleted",
  "tag.conflict",
];
export const EVENT_TYPES: readonly EventType[] = [
  ...CONTENT_TYPES,
  "repository.configured",
  "policy.set",
  "policy.deleted",
  "policy.run",
  "policy.run.finished",
  "alert.raised",
  "breaker.reset",
  "user.set",
  "user.deleted",
  "robot.set",
  "robot.deleted",
  "tokens.revoked",
  "project.set",
  "member.set",
  "immutability.set",
  "immutability.deleted",
  "quota.set",
  "retention.set",
  "retention.deleted",
  "endpoint.set",
  "endpoint.deleted",
  "gate.set",
  "gate.deleted",
  "pull-policy.set",
  "pull-policy.deleted",
  "promotion.recorded",
  "proxy.set",
  "proxy.deleted",
  "pulls.recorded",
  "gc.run",
  "gc.collected",
  "gc.finished",
  "webhook.set",
  "webhook.deleted",
  "webhook.replay",
  "failover.recorded",
  "quota.exceeded",
  "oidc.user.set",
  "oidc.secret.set",
];

/** The content event types as a set (validation and `isContentEvent`). */
export const REPO_TYPES: ReadonlySet<EventType> = new Set<EventType>(CONTENT_TYPES);

/** The identity of the write an event carries (the origin event's id). */
export function writeIdOf(event: Pick<Envelope, "id" | "cause">): string {
  return event.cause ?? event.id;
}

/** True for events about one repository's content (they carry `repo`). */
export function isContentEvent(event: RegistryEvent): event is ContentEvent {
  return REPO_TYPES.has(event.type);
}

/** Payload of an event, without its envelope. */
export type EventBody<E extends RegistryEvent = RegistryEvent> = E extends RegistryEvent
  ? Omit<E, keyof Envelope>
  : never;
