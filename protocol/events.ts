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
 *             `user.*`, `robot.*`, `project.set`, `member.set`; and
 *             `quota.set` (a project's storage quota).
 * Both replicate to every region the same way, so every region knows the
 * policies, rules and alerts.
 *
 * This file is the log schema's public entry point: the types are in
 * ./event-types.ts, validation (`validateEvent`, `decodeEvent`) in
 * ./event-validation.ts, streams and subjects in ./event-subjects.ts; it
 * re-exports them all, and owns how an event is made (`makeEvent`, the one
 * envelope builder, and `derivedId`).
 */
import { createHash } from "node:crypto";
import {
  type Envelope,
  EVENT_SCHEMA_VERSION,
  type EventBody,
  type EventType,
  type RegistryEvent,
} from "./event-types.js";

export {
  parseRegion,
  REGION_PATTERN,
  streamName,
  streamSubjects,
  subjectFor,
  tagKey,
} from "./event-subjects.js";
export type {
  AdminEvent,
  AlertRaised,
  BlobDeleted,
  BlobPushed,
  BreakerReset,
  ConflictSide,
  ContentEvent,
  Envelope,
  EventBody,
  EventType,
  ImmutabilityDeleted,
  ImmutabilitySet,
  ManifestDeleted,
  ManifestPushed,
  MemberSet,
  PolicyDeleted,
  PolicyRun,
  PolicyRunFinished,
  PolicySet,
  ProjectSet,
  PullsRecorded,
  QuotaSet,
  RegistryEvent,
  RepositoryConfigured,
  RepositoryDeleted,
  RetentionDeleted,
  RetentionSet,
  RobotDeleted,
  RobotSet,
  TagConflict,
  TagDeleted,
  TagSet,
  TokensRevoked,
  UserDeleted,
  UserSet,
} from "./event-types.js";
export {
  EVENT_SCHEMA_VERSION,
  EVENT_TYPES,
  isContentEvent,
  MAX_PULLS_PER_EVENT,
  PROJECT_NAME,
  REBUILD_RUN,
  ROBOT_NAME,
  USER_NAME,
  writeIdOf,
} from "./event-types.js";
export { decodeEvent, encodeEvent, parseDurability, parseScope, validateEvent } from "./event-validation.js";

/** The event a body of type T makes: the member of RegistryEvent whose `type` is T. */
export type EventOf<T extends EventType> = Extract<RegistryEvent, { type: T }>;

/** The body of each event type, by type. */
type BodyOf = { [T in EventType]: EventBody<EventOf<T>> };

/**
 * What the maker of an event says about it: everything in the envelope but
 * the schema version (always EVENT_SCHEMA_VERSION). `at` defaults to now;
 * the optional fields are set only when given (absent, not undefined).
 */
export type EnvelopeFields = Omit<Envelope, "v" | "at"> & { at?: string };

/**
 * The one envelope builder: `body` with its envelope, typed by the body's
 * `type` (a `tag.set` body makes a `TagSet`; a body typed `EventBody` makes
 * a `RegistryEvent`), so no caller casts. The body's fields cannot name an
 * envelope field (EventBody omits them). It does not validate: the log's
 * reader does (`validateEvent`), and a writer's bodies are typed.
 */
export function makeEvent<T extends EventType>(
  body: BodyOf[T] & { type: T },
  envelope: EnvelopeFields,
): EventOf<T> {
  const { id, origin, hlc, actor, at, cause, srcSeq, epoch, proof } = envelope;
  const event: Envelope = {
    id,
    v: EVENT_SCHEMA_VERSION,
    origin,
    hlc,
    actor,
    at: at ?? new Date().toISOString(),
  };
  Object.assign(event, body);
  if (cause !== undefined) event.cause = cause;
  if (srcSeq !== undefined) event.srcSeq = srcSeq;
  if (epoch !== undefined) event.epoch = epoch;
  if (proof !== undefined) event.proof = proof;
  // The one cast: `body`'s type says which member of the union this is.
  return event as EventOf<T>;
}

/**
 * A deterministic id in UUID form from its parts: the same parts give the same
 * id in every region (JetStream and the views then de-duplicate it).
 */
export function derivedId(...parts: string[]): string {
  const h = createHash("sha256").update(parts.join("\u0000")).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
