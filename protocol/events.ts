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
 */
import { createHash } from "node:crypto";
import { type Digest, parseDigest } from "./digest.js";
import { EventInvalidError } from "./errors.js";
import { type Hlc, isHlc } from "./hlc.js";
import { parseRepository, parseTag } from "./names.js";

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
  /** Set when the manifest was pushed by tag: the tag is set in the same event. */
  tag?: string;
}
export interface TagSet extends Envelope {
  type: "tag.set";
  repo: string;
  tag: string;
  digest: Digest;
}
export interface TagDeleted extends Envelope {
  type: "tag.deleted";
  repo: string;
  tag: string;
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

export type RegistryEvent = BlobPushed | ManifestPushed | TagSet | TagDeleted | ManifestDeleted | BlobDeleted;
export type EventType = RegistryEvent["type"];
export const EVENT_TYPES: readonly EventType[] = [
  "blob.pushed",
  "manifest.pushed",
  "tag.set",
  "tag.deleted",
  "manifest.deleted",
  "blob.deleted",
];

/** Payload of an event, without its envelope. */
export type EventBody<E extends RegistryEvent = RegistryEvent> = E extends RegistryEvent
  ? Omit<E, keyof Envelope>
  : never;

const REGION = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

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
  const tag =
    event.type === "tag.set" || event.type === "tag.deleted" || event.type === "manifest.pushed"
      ? event.tag
      : undefined;
  if (tag !== undefined) return `meridian.${region}.tag.${tagKey(event.repo, tag)}`;
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
  need(EVENT_TYPES.includes(e.type as EventType), "type");
  need(typeof e.repo === "string", "repo");
  wrap("repo", () => parseRepository(e.repo as string));
  switch (e.type as EventType) {
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
      if (e.tag !== undefined) wrap("tag", () => parseTag(e.tag as string));
      break;
    case "tag.set":
      wrap("tag", () => parseTag(e.tag as string));
      wrap("digest", () => parseDigest(e.digest as string));
      break;
    case "tag.deleted":
      wrap("tag", () => parseTag(e.tag as string));
      break;
    case "manifest.deleted":
    case "blob.deleted":
      wrap("digest", () => parseDigest(e.digest as string));
      break;
  }
  return e as unknown as RegistryEvent;
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
