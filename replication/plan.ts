/**
 * Anti-entropy planning: what a destination must do so that, for what one
 * policy selects, it holds the writes the source holds. A pure function of
 * the policy and both regions' registers (protocol/registers.ts): the
 * replication worker executes the plan, `meridian policy plan` prints it.
 *
 * Nothing is invented: every action replays a write the source already has,
 * with its original identity and clock, so the destination's view merges it
 * exactly as if the event had arrived through the stream (and a write the
 * destination already merged is never replayed). Content comes before what
 * points at it: children before their index, a manifest before its tag.
 *
 * What a policy selects in a repository:
 *   - unfiltered (no tag, signature or platform filter): every live manifest,
 *     every blob link and every selected tag;
 *   - filtered: the manifests that selected live tags point at (signed ones
 *     only with `signedOnly`), with their children (only the selected
 *     platforms of an index) and their referrers (signatures, SBOMs,
 *     attestations travel with their subject).
 * Deletions (tag tombstones, manifest and blob deletions, the repository's
 * deletion barrier) are planned only when the policy carries deletes.
 * `override: off` keeps a tag the destination shows pointing elsewhere.
 *
 * Only writes the source region originated are planned (tags, deletions, the
 * manifests and blobs chosen as roots); content they need comes along
 * whatever its origin. Every region's writes reach the others from their
 * origin, so a policy between two regions cannot be side-stepped through a
 * third that mirrors more. The one exception: writes the destination itself
 * originated and no longer holds (it was rebuilt empty after losing its
 * data) come back from any source that copied them.
 * `holdTagsForReferrers` holds a tag back until its manifest has referrers
 * of each listed artifact type (they are copied in the same plan).
 */
import {
  isFiltered,
  isSignatureReferrer,
  type Policy,
  selectsKind,
  selectsPlatform,
  selectsTag,
} from "../protocol/policy.js";
import type { ManifestRecord, RepoState, Write } from "../protocol/registers.js";
import { compareWrites, type TagWrite } from "../protocol/tag-merge.js";

export type Action =
  | { kind: "copy-manifest"; digest: string; record: ManifestRecord; w: Write }
  | { kind: "link-blob"; digest: string; size: number; w: Write }
  | { kind: "set-tag"; tag: string; digest: string; w: Write; prev?: string }
  | { kind: "delete-tag"; tag: string; w: Write; prev?: string }
  | { kind: "delete-manifest"; digest: string; w: Write }
  | { kind: "delete-blob"; digest: string; w: Write }
  | { kind: "delete-repository"; w: Write }
  | { kind: "hold-tag"; tag: string; digest: string; missing: string[] }
  | { kind: "keep-tag"; tag: string; digest: string; reason: string };

export interface Plan {
  repo: string;
  actions: Action[];
  /** Tags the destination shows now (among those the policy selects). */
  visibleTags: number;
  /** How many of them the plan's deletions would remove or hide (the delete breaker's measure). */
  tagsRemoved: number;
}

export function planRepository(
  policy: Policy,
  source: RepoState,
  destination: RepoState,
  sourceRegion?: string,
  destinationRegion?: string,
): Plan {
  const repo = source.repo;
  // The source's own writes, and the destination's own that it no longer has
  // (a region rebuilt empty gets its history back from the regions that copied it).
  const ours = (w: { origin: string }) =>
    sourceRegion === undefined || w.origin === sourceRegion || w.origin === destinationRegion;
  const actions: Action[] = [];
  const deletes = selectsKind(policy, "delete");
  const filtered = isFiltered(policy);

  const srcManifests = new Map(source.manifests.map((m) => [m.digest, m.register]));
  const dstManifests = new Map(destination.manifests.map((m) => [m.digest, m.register]));
  const dstBlobs = new Map(destination.blobs.map((b) => [b.digest, b.register]));
  const dstTags = new Map(destination.tags.map((t) => [t.tag, t.record]));
  const srcLive = (d: string) =>
    srcManifests.get(d as never)?.live === true && srcManifests.get(d as never)?.record;
  const dstLive = (d: string) => dstManifests.get(d as never)?.live === true;
  const dstVisible = (tag: string) => {
    const r = dstTags.get(tag);
    return r?.digest ? (dstLive(r.digest) ? r.digest : undefined) : undefined;
  };
  /** The destination already holds this write, or a later one, for the register. */
  const dstHas = (dst: { w: Write } | undefined, w: Write) =>
    dst !== undefined && compareWrites(asTagWrite(dst.w), asTagWrite(w)) >= 0;

  // Referrers of each subject in the source, live ones.
  const referrers = new Map<string, Array<{ digest: string; record: ManifestRecord }>>();
  for (const { digest, register } of source.manifests) {
    const subject = register.record?.subject;
    if (!register.live || register.record === null || subject === undefined) continue;
    referrers.set(subject, [...(referrers.get(subject) ?? []), { digest, record: register.record }]);
  }
  const signed = (d: string) =>
    (referrers.get(d) ?? []).some((r) => isSignatureReferrer(r.record.artifactType, r.record.mediaType));

  // ---- the repository's deletion barrier first: it voids older writes here
  if (
    deletes &&
    source.deleted !== undefined &&
    !dstHas(destination.deleted && { w: destination.deleted }, source.deleted)
  ) {
    actions.push({ kind: "delete-repository", w: source.deleted });
  }

  // ---- which manifests the destination should hold
  const selectedTags = source.tags.filter((t) => selectsTag(policy, t.tag) && ours(t.record));
  const roots: string[] = [];
  if (!filtered) {
    for (const { digest, register } of source.manifests)
      if (register.live && ours(register.w)) roots.push(digest);
  }
  // What the selected tags point at, whoever pushed it: a tag never travels without its content.
  for (const { record } of selectedTags) {
    if (record.digest === null || !srcLive(record.digest)) continue;
    if (policy.signedOnly && !signed(record.digest)) continue;
    roots.push(record.digest);
  }
  // Depth first, children before their index and referrers after their
  // subject, each manifest once: with an explicit stack, as a chain of
  // nested indexes is as deep as a repository is large (recursion would
  // overflow the call stack on a long one and fail every run after it).
  const planned = new Set<string>();
  const visit = (root: string) => {
    const stack: Array<{ digest: string; expanded: boolean }> = [{ digest: root, expanded: false }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const digest = top.digest;
      const register = srcManifests.get(digest as never);
      if (!top.expanded) {
        if (planned.has(digest)) {
          stack.pop();
          continue;
        }
        planned.add(digest);
        if (register === undefined || !register.live || register.record === null) {
          stack.pop();
          continue;
        }
        top.expanded = true;
        const record = register.record;
        const children = record.manifests.filter((child) => {
          const platform = record.platforms?.[child];
          return platform === undefined || selectsPlatform(policy, parsePlatform(platform));
        });
        for (let i = children.length - 1; i >= 0; i--) stack.push({ digest: children[i]!, expanded: false });
        continue;
      }
      stack.pop();
      if (!dstHas(dstManifests.get(digest as never), register!.w)) {
        actions.push({ kind: "copy-manifest", digest, record: register!.record!, w: register!.w });
      }
      const refs = referrers.get(digest) ?? [];
      for (let i = refs.length - 1; i >= 0; i--) stack.push({ digest: refs[i]!.digest, expanded: false });
    }
  };
  for (const root of roots) visit(root);

  // ---- blob links of their own (pushed without a manifest): unfiltered policies only
  if (!filtered) {
    for (const { digest, register } of source.blobs) {
      if (!register.live || register.size < 0 || !ours(register.w)) continue;
      if (!dstHas(dstBlobs.get(digest), register.w))
        actions.push({ kind: "link-blob", digest, size: register.size, w: register.w });
    }
  }

  // ---- tags
  let tagsRemoved = 0;
  const removed = new Set<string>();
  for (const { tag, record } of selectedTags) {
    const w: Write = {
      id: record.eventId,
      origin: record.origin,
      hlc: record.hlc,
      at: record.at ?? new Date(record.hlc.wall).toISOString(),
      actor: record.actor ?? "system",
    };
    if (record.epoch !== undefined) w.epoch = record.epoch;
    const dst = dstTags.get(tag);
    if (dst?.eventId === record.eventId) continue;
    if (record.digest === null) {
      if (!deletes) continue;
      actions.push({
        kind: "delete-tag",
        tag,
        w,
        ...(record.prev === undefined ? {} : { prev: record.prev }),
      });
      if (dstVisible(tag) !== undefined && !removed.has(tag)) {
        removed.add(tag);
        tagsRemoved++;
      }
      continue;
    }
    if (!planned.has(record.digest) || !srcLive(record.digest)) continue; // not selected (unsigned, …)
    const shown = dstVisible(tag);
    if (!policy.override && shown !== undefined && shown !== record.digest) {
      actions.push({ kind: "keep-tag", tag, digest: record.digest, reason: "override is off" });
      continue;
    }
    const have = new Set((referrers.get(record.digest) ?? []).map((r) => r.record.artifactType));
    const missing = policy.holdTagsForReferrers.filter((type) => !have.has(type));
    if (missing.length > 0) {
      actions.push({ kind: "hold-tag", tag, digest: record.digest, missing });
      continue;
    }
    actions.push({
      kind: "set-tag",
      tag,
      digest: record.digest,
      w,
      ...(record.prev === undefined ? {} : { prev: record.prev }),
    });
  }

  // ---- manifest and blob deletions
  if (deletes) {
    for (const { digest, register } of source.manifests) {
      if (
        register.live ||
        !ours(register.w) ||
        !dstLive(digest) ||
        dstHas(dstManifests.get(digest), register.w)
      )
        continue;
      if (filtered && !destinationTagged(destination, digest, policy)) continue;
      actions.push({ kind: "delete-manifest", digest, w: register.w });
      for (const { tag, record } of destination.tags) {
        if (record.digest === digest && selectsTag(policy, tag) && !removed.has(tag)) {
          removed.add(tag);
          tagsRemoved++;
        }
      }
    }
    if (!filtered) {
      for (const { digest, register } of source.blobs) {
        const dst = dstBlobs.get(digest);
        if (register.live || !ours(register.w) || dst?.live !== true || dstHas(dst, register.w)) continue;
        actions.push({ kind: "delete-blob", digest, w: register.w });
      }
    }
  }
  let visibleTags = 0;
  for (const { tag } of destination.tags)
    if (selectsTag(policy, tag) && dstVisible(tag) !== undefined) visibleTags++;
  if (actions.some((a) => a.kind === "delete-repository")) {
    for (const { tag } of destination.tags) {
      const r = dstTags.get(tag)!;
      const older =
        source.deleted !== undefined &&
        compareWrites(asTagWrite(recordWrite(r)), asTagWrite(source.deleted)) < 0;
      if (selectsTag(policy, tag) && dstVisible(tag) !== undefined && older && !removed.has(tag)) {
        removed.add(tag);
        tagsRemoved++;
      }
    }
  }
  return { repo, actions, visibleTags, tagsRemoved };
}

/** Delete-breaker decision: would removing `removed` of `visible` tags be too many? */
export function breakerTrips(removed: number, visible: number, limits: BreakerLimits): boolean {
  return removed > 0 && visible >= limits.minTags && removed / visible > limits.maxShare;
}

export interface BreakerLimits {
  /** Largest share of a repository's tags one run (or one window of events) may delete. */
  maxShare: number;
  /** Repositories with fewer tags than this are never held back. */
  minTags: number;
}

export const DEFAULT_BREAKER: BreakerLimits = { maxShare: 0.5, minTags: 4 };

/** Counts of a plan's actions by kind (for run results and `policy plan`). */
export function planStats(plans: readonly Plan[]): Record<string, number> {
  const stats: Record<string, number> = {};
  for (const plan of plans) for (const a of plan.actions) stats[a.kind] = (stats[a.kind] ?? 0) + 1;
  return stats;
}

function destinationTagged(destination: RepoState, digest: string, policy: Policy): boolean {
  return destination.tags.some((t) => t.record.digest === digest && selectsTag(policy, t.tag));
}

function parsePlatform(text: string): { os: string; architecture: string; variant?: string } {
  const [os = "", architecture = "", variant] = text.split("/");
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

function asTagWrite(w: Write): TagWrite {
  return { digest: undefined, hlc: w.hlc, origin: w.origin, eventId: w.id };
}

function recordWrite(r: { hlc: Write["hlc"]; origin: string; eventId: string }): Write {
  return { id: r.eventId, origin: r.origin, hlc: r.hlc, at: "", actor: "" };
}
