/**
 * The tag register merge (DESIGN.md §"Tags converge deterministically"): one
 * pure function deciding, from two writes to the same tag, which one stands.
 * Every region applies it to every write it sees, in whatever order, and so
 * ends with the same answer. A deletion is a write too (a tombstone), so a
 * delete and a concurrent set are ordered like two sets.
 */
import { compareHlc, type Hlc } from "./hlc.js";

export interface TagWrite {
  /** Target manifest digest; undefined for a deletion (tombstone). */
  digest: string | undefined;
  hlc: Hlc;
  origin: string;
  /** Event id, the final tie-breaker (two writes never share one). */
  eventId: string;
}

export type TagMergeRule = "lww" | "first-write";

/** Total order on writes: (hlc, origin, eventId). */
export function compareWrites(a: TagWrite, b: TagWrite): number {
  return compareHlc(a.hlc, b.hlc) || cmp(a.origin, b.origin) || cmp(a.eventId, b.eventId);
}

/**
 * The write that stands after both `current` and `incoming` are seen.
 * `lww`: the greatest write wins. `first-write`: the least write wins (a tag
 * once set is immutable: a later set or delete of it loses).
 * Commutative, associative and idempotent for each rule.
 */
export function mergeTag(rule: TagMergeRule, current: TagWrite | undefined, incoming: TagWrite): TagWrite {
  if (current === undefined) return incoming;
  const c = compareWrites(current, incoming);
  if (rule === "first-write") return c <= 0 ? current : incoming;
  return c >= 0 ? current : incoming;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
