/**
 * Where events live in JetStream: a region's stream and its subjects
 * (./events.ts's header draws the layout), and the region names they are
 * built from.
 */
import { createHash } from "node:crypto";
import { EventInvalidError } from "./errors.js";
import type { EventBody, RegistryEvent } from "./event-types.js";

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
