/**
 * The event log's schema (DESIGN.md §"The log is the source of truth").
 *
 * Every metadata change in a region is one event in that region's JetStream
 * stream `MERIDIAN_<REGION>`, on a subject under `meridian.<region>.`:
 *
 *   meridian.<region>.tag.<key>          tag.set, tag.deleted, and manifest.pushed
 *                                        carrying a tag          (key = tagKey(repo, tag))
 *   meridian.<region>.ev.<type>          every other event type
 *
 * Tag events get one subject per tag so a writer can append with an
 * expected-last-subject-sequence check: tag writes within a region are
 * linearized by the log itself, not by clocks. A push by tag of a manifest
 * the repository does not hold yet is ONE event (`manifest.pushed` with `tag`),
 * so a crash can never leave the manifest without its tag or the reverse.
 *
 * The envelope's `id` is also the JetStream message id, so a retried append is
 * de-duplicated by the server; views de-duplicate by `id` as well (a replicated
 * event keeps its origin's id in `cause`).
 *
 * A *write* is what a register merge compares: its identity is `writeIdOf(e)`
 * (the origin event's id: `cause` when set, else `id`), with the origin's
 * `hlc`, `origin` and `epoch`. An event replayed by anti-entropy carries a
 * derived `id` (it is a new log entry) but the original write's identity in
 * `cause`, so every region merges the same writes however they arrived.
 *
 * Two families of events share the log:
 *   content   blob/manifest/tag pushes and deletions, `repository.deleted`,
 *             and `tag.conflict` (a record of a write that lost a merge);
 *   admin     `repository.configured` (merge rule, home region and
 *             durability of a repository or a prefix), `policy.*` (replication policies and
 *             their runs), `alert.raised`, `breaker.reset`, and identities:
 *             `user.*`, `robot.*`, `project.set`, `member.set`.
 * Both replicate to every region the same way, so every region knows the
 * policies, rules and alerts.
 */
import { createHash } from "node:crypto";
import { ACTIONS, ROLES, type RobotGrant, type Role } from "./access.js";
import { type Digest, parseDigest } from "./digest.js";
import { EventInvalidError } from "./errors.js";
import { type Hlc, isHlc } from "./hlc.js";
import { parseRepository, parseTag } from "./names.js";
import { TAG_MERGE_RULES, type TagMergeRule } from "./tag-merge.js";

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
  /** `async` (absent) or `sync(k)`: see `parseDurability`. */
  durability?: string;
}

/**
 * A repository's durability: `async` (the default) acknowledges a push once
 * its own region's log holds it; `sync(k)` only once k other regions also
 * hold the manifest and everything it references. Returns k (0 for async);
 * undefined when the text is neither.
 */
export function parseDurability(text: string | undefined): number | undefined {
  if (text === undefined || text === "async") return 0;
  const m = /^sync\(([1-9][0-9]?)\)$/.exec(text);
  return m === null ? undefined : Number(m[1]);
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
  | ProjectSet
  | MemberSet;
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
  "project.set",
  "member.set",
];

/** The identity of the write an event carries (the origin event's id). */
export function writeIdOf(event: Pick<Envelope, "id" | "cause">): string {
  return event.cause ?? event.id;
}

/** True for events about one repository's content (they carry `repo`). */
export function isContentEvent(event: RegistryEvent): event is ContentEvent {
  return REPO_TYPES.has(event.type);
}

/**
 * A deterministic id in UUID form from its parts: the same parts give the same
 * id in every region (JetStream and the views then de-duplicate it).
 */
export function derivedId(...parts: string[]): string {
  const h = createHash("sha256").update(parts.join("\u0000")).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Payload of an event, without its envelope. */
export type EventBody<E extends RegistryEvent = RegistryEvent> = E extends RegistryEvent
  ? Omit<E, keyof Envelope>
  : never;

/** A region's name: lower-case letters, digits and dashes, at most 32 (a configuration's `region` too). */
export const REGION_PATTERN = "^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$";
const REGION = new RegExp(REGION_PATTERN);

export function parseRegion(name: string): string {
  if (!REGION.test(name)) throw new EventInvalidError(`invalid region name: ${name.slice(0, 40)}`);
  return name;
}

export function streamName(region: string): string {
  return `MERIDIAN_${region.toUpperCase().replaceAll("-", "_")}`;
}

export function streamSubjects(region: string): string {
  return `meridian.${region}.>`;
}

/** A fixed-length subject token for one (repo, tag): names may hold dots, subjects may not. */
export function tagKey(repo: string, tag: string): string {
  return createHash("sha256").update(`${repo}:${tag}`).digest("hex").slice(0, 32);
}

export function subjectFor(region: string, event: EventBody | RegistryEvent): string {
  if (event.type === "tag.set" || event.type === "tag.deleted" || event.type === "manifest.pushed") {
    if (event.tag !== undefined) return `meridian.${region}.tag.${tagKey(event.repo, event.tag)}`;
  }
  return `meridian.${region}.ev.${event.type}`;
}

export function encodeEvent(event: RegistryEvent): Uint8Array {
  return Buffer.from(JSON.stringify(event));
}

/** Decode and validate an event read from the log; throws EventInvalidError. */
export function decodeEvent(data: Uint8Array): RegistryEvent {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch (err) {
    throw new EventInvalidError("event is not JSON", { cause: err });
  }
  return validateEvent(value);
}

/** Check an event's shape; returns it typed, or throws EventInvalidError naming the field. */
export function validateEvent(value: unknown): RegistryEvent {
  const e = value as Record<string, unknown>;
  if (typeof e !== "object" || e === null) throw new EventInvalidError("event is not an object");
  const need = (cond: boolean, field: string) => {
    if (!cond) throw new EventInvalidError(`event field invalid: ${field}`);
  };
  need(typeof e.id === "string" && e.id.length > 0 && e.id.length <= 64, "id");
  need(e.v === EVENT_SCHEMA_VERSION, "v");
  need(typeof e.origin === "string" && REGION.test(e.origin), "origin");
  need(isHlc(e.hlc), "hlc");
  need(typeof e.actor === "string", "actor");
  need(typeof e.at === "string" && !Number.isNaN(Date.parse(e.at)), "at");
  need(e.cause === undefined || typeof e.cause === "string", "cause");
  need(e.srcSeq === undefined || (Number.isSafeInteger(e.srcSeq) && (e.srcSeq as number) > 0), "srcSeq");
  need(e.epoch === undefined || (Number.isSafeInteger(e.epoch) && (e.epoch as number) >= 0), "epoch");
  need(e.proof === undefined || (typeof e.proof === "string" && e.proof.length <= 1024), "proof");
  need(EVENT_TYPES.includes(e.type as EventType), "type");
  const type = e.type as EventType;
  if (REPO_TYPES.has(type) || (type === "alert.raised" && e.repo !== undefined)) {
    need(typeof e.repo === "string", "repo");
    wrap("repo", () => parseRepository(e.repo as string));
  }
  const text = (field: string, max = 256) =>
    need(
      typeof e[field] === "string" && (e[field] as string).length > 0 && (e[field] as string).length <= max,
      field,
    );
  switch (type) {
    case "blob.pushed":
      wrap("digest", () => parseDigest(e.digest as string));
      need(Number.isSafeInteger(e.size) && (e.size as number) >= 0, "size");
      break;
    case "manifest.pushed":
      wrap("digest", () => parseDigest(e.digest as string));
      need(typeof e.mediaType === "string", "mediaType");
      need(Number.isSafeInteger(e.size) && (e.size as number) >= 0, "size");
      need(Array.isArray(e.blobs), "blobs");
      need(Array.isArray(e.manifests), "manifests");
      for (const d of [...(e.blobs as string[]), ...(e.manifests as string[])])
        wrap("references", () => parseDigest(d));
      if (e.subject !== undefined) wrap("subject", () => parseDigest(e.subject as string));
      need(e.artifactType === undefined || typeof e.artifactType === "string", "artifactType");
      need(e.annotations === undefined || isStringMap(e.annotations), "annotations");
      need(e.platforms === undefined || isStringMap(e.platforms), "platforms");
      if (e.tag !== undefined) wrap("tag", () => parseTag(e.tag as string));
      need(e.prev === undefined || (typeof e.prev === "string" && e.tag !== undefined), "prev");
      break;
    case "tag.set":
      wrap("tag", () => parseTag(e.tag as string));
      wrap("digest", () => parseDigest(e.digest as string));
      need(e.prev === undefined || typeof e.prev === "string", "prev");
      break;
    case "tag.deleted":
      wrap("tag", () => parseTag(e.tag as string));
      need(e.prev === undefined || typeof e.prev === "string", "prev");
      break;
    case "manifest.deleted":
    case "blob.deleted":
      wrap("digest", () => parseDigest(e.digest as string));
      break;
    case "repository.deleted":
      break;
    case "tag.conflict":
      wrap("tag", () => parseTag(e.tag as string));
      need(isConflictSide(e.winner), "winner");
      need(isConflictSide(e.loser), "loser");
      break;
    case "repository.configured":
      need(typeof e.scope === "string", "scope");
      wrap("scope", () => parseScope(e.scope as string));
      need(TAG_MERGE_RULES.includes(e.tagMerge as TagMergeRule), "tagMerge");
      need(e.home === undefined || (typeof e.home === "string" && REGION.test(e.home)), "home");
      need(e.tagMerge !== "home-region" || e.home !== undefined, "home");
      need(e.durability === undefined || parseDurability(e.durability as string) !== undefined, "durability");
      break;
    case "policy.set":
      text("name", 63);
      need(typeof e.policy === "object" && e.policy !== null && !Array.isArray(e.policy), "policy");
      need((e.policy as Record<string, unknown>).name === e.name, "policy.name");
      break;
    case "policy.deleted":
      text("name", 63);
      break;
    case "policy.run":
      text("name", 63);
      text("runId", 64);
      need(e.region === undefined || (typeof e.region === "string" && REGION.test(e.region)), "region");
      break;
    case "policy.run.finished":
      text("name", 63);
      text("runId", 64);
      need(typeof e.region === "string" && REGION.test(e.region), "region");
      need(["ok", "failed", "halted"].includes(e.outcome as string), "outcome");
      need(
        typeof e.stats === "object" &&
          e.stats !== null &&
          Object.values(e.stats).every((n) => typeof n === "number" && Number.isFinite(n)),
        "stats",
      );
      need(e.error === undefined || typeof e.error === "string", "error");
      break;
    case "alert.raised":
      text("kind", 64);
      text("message", 1024);
      need(e.policy === undefined || typeof e.policy === "string", "policy");
      need(e.detail === undefined || (typeof e.detail === "object" && e.detail !== null), "detail");
      break;
    case "breaker.reset":
      text("name", 63);
      break;
    case "user.set":
      need(typeof e.name === "string" && USER_NAME.test(e.name), "name");
      need(typeof e.passwordHash === "string" && e.passwordHash.startsWith("scrypt$"), "passwordHash");
      need(typeof e.systemAdmin === "boolean", "systemAdmin");
      break;
    case "user.deleted":
      need(typeof e.name === "string" && USER_NAME.test(e.name), "name");
      break;
    case "robot.set":
      need(typeof e.name === "string" && ROBOT_NAME.test(e.name), "name");
      need(typeof e.secretHash === "string" && e.secretHash.startsWith("scrypt$"), "secretHash");
      need(typeof e.expiresAt === "string" && !Number.isNaN(Date.parse(e.expiresAt)), "expiresAt");
      need(Array.isArray(e.grants) && (e.grants as unknown[]).every(isRobotGrant), "grants");
      break;
    case "robot.deleted":
      need(typeof e.name === "string" && ROBOT_NAME.test(e.name), "name");
      break;
    case "project.set":
      need(typeof e.name === "string" && PROJECT_NAME.test(e.name), "name");
      need(typeof e.public === "boolean", "public");
      break;
    case "member.set":
      need(typeof e.project === "string" && PROJECT_NAME.test(e.project), "project");
      need(typeof e.user === "string" && USER_NAME.test(e.user), "user");
      need(e.role === null || ROLES.includes(e.role as Role), "role");
      break;
  }
  return e as unknown as RegistryEvent;
}

const REPO_TYPES: ReadonlySet<EventType> = new Set<EventType>(CONTENT_TYPES);

/** A configuration scope: a repository name, or a prefix of names ending in "/" ("" = every repository). */
export function parseScope(scope: string): string {
  if (scope === "") return scope;
  parseRepository(scope.endsWith("/") ? scope.slice(0, -1) : scope);
  return scope;
}

function isConflictSide(value: unknown): boolean {
  const v = value as ConflictSide;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.id === "string" &&
    typeof v.origin === "string" &&
    REGION.test(v.origin) &&
    (v.digest === null || (typeof v.digest === "string" && isDigest(v.digest))) &&
    isHlc(v.hlc)
  );
}

function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

function isStringMap(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === "string")
  );
}

function wrap(field: string, check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new EventInvalidError(`event field invalid: ${field}`, { cause: err });
  }
}

function isRobotGrant(value: unknown): boolean {
  const g = value as Partial<RobotGrant>;
  return (
    typeof g === "object" &&
    g !== null &&
    typeof g.project === "string" &&
    PROJECT_NAME.test(g.project) &&
    typeof g.repositories === "string" &&
    g.repositories.length > 0 &&
    g.repositories.length <= 255 &&
    Array.isArray(g.actions) &&
    g.actions.length > 0 &&
    g.actions.every((a) => ACTIONS.includes(a))
  );
}
