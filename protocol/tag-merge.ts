/**
 * The tag register merge (DESIGN.md §"Tags converge deterministically"): one
 * pure function deciding, from two writes to the same tag, which one stands.
 * Every region applies it to every write it sees, in whatever order, and so
 * ends with the same answer. A deletion is a write too (a tombstone), so a
 * delete and a concurrent set are ordered like two sets.
 *
 * Rules, per repository (see `repository.configured` in events.ts):
 *   lww          the greatest write by (hlc, origin, id) wins (default);
 *   first-write  the least write wins: a tag once set is immutable;
 *   home-region  only writes made by the repository's home region at the
 *                epoch they carry count; among those, the greatest by
 *                (epoch, hlc, origin, id) wins. A write from a region that
 *                was not home at its epoch (a fenced, returning region) is
 *                ignored as if never made.
 */
import { compareHlc, type Hlc } from "./hlc.js";

export interface TagWrite {
  /** Target manifest digest; undefined for a deletion (tombstone). */
  digest: string | undefined;
  hlc: Hlc;
  origin: string;
  /** The write's identity (the origin event's id), the final tie-breaker. */
  eventId: string;
  /** The repository's failover epoch the write was made at (0 when absent). */
  epoch?: number;
}

export type TagMergeRule = "lww" | "first-write" | "home-region";
export const TAG_MERGE_RULES: readonly TagMergeRule[] = ["lww", "first-write", "home-region"];

/** Home region of a repository at each failover epoch. */
export type HomeTable = Readonly<Record<number, string>>;

/** The home region at `epoch`: the entry of the greatest epoch not above it. */
export function homeAt(homes: HomeTable, epoch: number): string | undefined {
  let best: number | undefined;
  for (const key of Object.keys(homes)) {
    const e = Number(key);
    if (e <= epoch && (best === undefined || e > best)) best = e;
  }
  return best === undefined ? undefined : homes[best];
}

/** Whether a write counts under the rule (only home-region ever discards one). */
export function counts(rule: TagMergeRule, write: TagWrite, homes: HomeTable = {}): boolean {
  return rule !== "home-region" || homeAt(homes, write.epoch ?? 0) === write.origin;
}

/** Total order on writes: (hlc, origin, eventId). */
export function compareWrites(a: TagWrite, b: TagWrite): number {
  return compareHlc(a.hlc, b.hlc) || cmp(a.origin, b.origin) || cmp(a.eventId, b.eventId);
}

/**
 * The write that stands after both `current` and `incoming` are seen, or
 * undefined when neither counts. Commutative, associative and idempotent for
 * each rule (for one home table).
 */
export function mergeTag(
  rule: TagMergeRule,
  current: TagWrite | undefined,
  incoming: TagWrite,
  homes: HomeTable = {},
): TagWrite | undefined {
  const cur = current !== undefined && counts(rule, current, homes) ? current : undefined;
  if (!counts(rule, incoming, homes)) return cur;
  if (cur === undefined) return incoming;
  if (rule === "first-write") return compareWrites(cur, incoming) <= 0 ? cur : incoming;
  if (rule === "home-region") {
    const c = (cur.epoch ?? 0) - (incoming.epoch ?? 0) || compareWrites(cur, incoming);
    return c >= 0 ? cur : incoming;
  }
  return compareWrites(cur, incoming) >= 0 ? cur : incoming;
}

/** The register after seeing every write in `writes` (any order gives the same answer). */
export function foldWrites(
  rule: TagMergeRule,
  writes: Iterable<TagWrite>,
  homes: HomeTable = {},
): TagWrite | undefined {
  let winner: TagWrite | undefined;
  for (const w of writes) winner = mergeTag(rule, winner, w, homes);
  return winner;
}

/**
 * What the tag pointed to at time `atMs` (ms since the epoch): the merge of
 * the writes made at or before it (by their clocks). Undefined when no write
 * counted yet; a winner with digest undefined means the tag was deleted.
 */
export function registerAt(
  rule: TagMergeRule,
  writes: Iterable<TagWrite>,
  atMs: number,
  homes: HomeTable = {},
): TagWrite | undefined {
  const before: TagWrite[] = [];
  for (const w of writes) if (w.hlc.wall <= atMs) before.push(w);
  return foldWrites(rule, before, homes);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A write with what its origin's register held when it was made (for conflict detection). */
export interface CausalWrite extends TagWrite {
  prev?: string;
}

/**
 * The conflict between the register's current write and an incoming one, if
 * they are concurrent (neither was made knowing the other: the later one's
 * `prev` is not the earlier one) and set the tag differently: which won the
 * merge and which lost. Either region may detect it (the one whose write
 * loses, or the one whose write wins); both name the same pair.
 */
export function conflictBetween(
  rule: TagMergeRule,
  current: CausalWrite,
  incoming: CausalWrite,
  homes: HomeTable = {},
): { winner: CausalWrite; loser: CausalWrite } | undefined {
  if (current.eventId === incoming.eventId || current.digest === incoming.digest) return undefined;
  if (incoming.prev === current.eventId || current.prev === incoming.eventId) return undefined;
  if (!counts(rule, current, homes) || !counts(rule, incoming, homes)) return undefined;
  const winner = mergeTag(rule, current, incoming, homes);
  if (winner === undefined) return undefined;
  return winner.eventId === current.eventId
    ? { winner: current, loser: incoming }
    : { winner: incoming, loser: current };
}
