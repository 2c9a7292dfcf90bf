/**
 * Repository names and tags, by the OCI Distribution Spec grammar. A name that
 * passes `parseRepository` contains only `[a-z0-9._/-]` in spec form, so it can
 * never escape a directory or a key prefix.
 */
import { NameInvalidError, TagInvalidError } from "./errors.js";

const COMPONENT = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** CNCF Distribution's limit on a whole name; the spec asks clients to stay under 255 with the host. */
export const MAX_NAME_LENGTH = 255;

export function parseRepository(name: string): string {
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_LENGTH || !NAME.test(name)) {
    throw new NameInvalidError(`invalid repository name: ${String(name).slice(0, MAX_NAME_LENGTH)}`);
  }
  return name;
}

export function parseTag(tag: string): string {
  // RegExp.test would coerce a non-string (undefined, null, 1) to a valid-looking tag.
  if (!isTag(tag)) throw new TagInvalidError(`invalid tag: ${String(tag).slice(0, 140)}`);
  return tag;
}

export function isTag(value: string): boolean {
  return typeof value === "string" && TAG.test(value);
}
