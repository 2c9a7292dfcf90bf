/**
 * Online, mesh-aware garbage collection of one region's blob store (issue
 * 15 item 1): mark what anything alive needs, sweep the rest, while the
 * registry keeps serving pushes and pulls (no read-only window).
 *
 * A stored blob (layer, config or a manifest's bytes) is kept when:
 *   - a live manifest of any repository of the region references it (its
 *     own bytes, layers, config, index children and their closure, its
 *     subject: a live referrer holds its subject);
 *   - a deleted manifest or link names it and was deleted within the
 *     undelete window (node/data/undelete.ts needs the bytes);
 *   - a live link to it is younger than the grace period: a push that has
 *     linked its blob (`blob.pushed`) but not yet committed its manifest;
 *   - its bytes are younger than the grace period: an upload committing now,
 *     or bytes whose event is being appended (bytes always reach the store
 *     before their event, registry.ts). Upload sessions live outside the
 *     blob namespace (uploads/) and are never swept here (purgeStale is);
 *   - an event of this region's stream past the lowest position any durable
 *     consumer acknowledged names it (`EventLog.durableFloor`): the other
 *     regions' replication workers read this stream through durables, so a
 *     peer that has not yet copied a push may still fetch its blobs here.
 *     A peer that is down keeps its durable's position, and so holds GC of
 *     what it has not seen (conservative: nothing it will ask for is gone).
 * Everything else older than the grace is collected: blobs whose links are
 * older than the grace with no live manifest referencing them
 * ("unreferenced"), content deleted before the undelete window ("deleted"),
 * and bytes no event ever linked ("orphan").
 *
 * Links and the other regions: a collection marks the region's stale links
 * dead with their write unchanged (projections/content.ts), so anti-entropy,
 * which compares writes, neither copies them back nor deletes them
 * elsewhere; until the other regions collect the same links, per-repository
 * summaries (protocol/summary.ts counts live links) differ in exactly those.
 *
 * Why the grace (default 1 hour) is enough for an in-flight push: clients
 * push a manifest right after its blobs (seconds), and a push that takes
 * longer than the grace between linking a layer and committing the manifest
 * fails cleanly (MANIFEST_BLOB_UNKNOWN: its link was dropped) and is retried
 * by the client — never acknowledged and then lost.
 *
 * Racing writers, without a lock shared by every node of the region: the
 * sweep is two-phase.
 *   1. For each candidate, `gc.collected` is committed first (it marks the
 *      stale links the run saw dead, by write id: a link written since is
 *      kept), then the bytes are set aside (fs: one rename; S3: copy then
 *      delete), so readers see the blob absent but nothing is gone yet.
 *   2. After `settleMs` (default 30 s: longer than a writer's step between
 *      checking a link or the bytes and committing its event — a node's
 *      manifest push checks links, then appends (5 s bound) and applies (10
 *      s bound); a replication worker stats the blobs it holds, copies the
 *      rest, then appends), the view is caught up with the log and
 *      everything is marked again. A blob some write needed meanwhile (a manifest committed
 *      against a link the run dropped, a blob pushed or mounted again, new
 *      bytes stored) is put back — and re-linked where a live manifest
 *      needs it — instead of being dropped. Only then are the aside bytes
 *      deleted for good.
 * A push racing the sweep therefore never loses its blob: either its event
 * is seen by the second mark, or it came after the link was dropped and so
 * stored the bytes anew (a client that finds no link uploads again). The
 * one assumption is the settle bound: a writer that saw the bytes before
 * they were set aside and commits more than `settleMs` later (a stalled
 * replication worker holding a stat across a long closure copy) could name
 * bytes that are gone; its event's blob is then missing in this region
 * only, and fetch on miss or anti-entropy copies it back from a region that
 * has it.
 */
import type { Logger } from "pino";
import type { Digest } from "../../protocol/digest.js";
import type { EventBody, RegistryEvent } from "../../protocol/events.js";
import type { BlobStore, StoredBlob } from "./blob-store.js";
import type { CommitStep } from "./commit-step.js";
import type { EventLog } from "./event-log.js";
import type { MetadataView } from "./view.js";

export interface GcContext {
  region: string;
  store: BlobStore;
  log: EventLog;
  view: MetadataView;
  commits: Pick<CommitStep, "commit">;
  logger: Logger;
}

export interface GcOptions {
  runId: string;
  dryRun: boolean;
  /** How old bytes and unreferenced links must be before they are collected. */
  graceMs: number;
  /** Deleted content younger than this is kept (undelete). */
  undeleteWindowMs: number;
  /** Wait between setting bytes aside and the second mark (see the header). */
  settleMs: number;
  actor: string;
  /** "manual" or "scheduled". */
  trigger: string;
  /** Progress, as the run goes (phase and counts so far). */
  onProgress?: (progress: GcProgress) => void;
  signal?: AbortSignal;
}

export interface GcProgress {
  phase: "mark" | "sweep" | "settle" | "verify" | "done";
  scanned: number;
  candidates: number;
  collected: number;
}

export interface GcResult {
  runId: string;
  dryRun: boolean;
  /** Blobs in the store when listed. */
  scanned: number;
  /** What the run found collectable (a dry run: what it would collect). */
  candidates: number;
  candidateBytes: number;
  /** Deleted for good. */
  collected: number;
  collectedBytes: number;
  /** Set aside, then put back because a write needed them meanwhile. */
  restored: number;
  durationMs: number;
  /** Each candidate, with why (dry runs list what would go). */
  items: Array<{ digest: Digest; size: number; reason: string }>;
}

/** How long a whole mark may wait for the view to hold what the log holds. */
const CATCH_UP_MS = 30_000;
/** Candidates handled at once (each: one append, one store move). */
const SWEEP_WIDTH = 8;

interface Mark {
  /** Digests nothing may collect, with why. */
  keep: Map<Digest, string>;
  /** Live links older than the grace, per digest: repository and the link's write id. */
  staleLinks: Map<Digest, Array<{ repo: string; write: string }>>;
  /** Digests deleted (manifest or link) before the undelete window. */
  deleted: Set<Digest>;
  /** Repositories whose live manifests reference each digest as a blob (for re-linking). */
  neededBy: Map<Digest, Set<string>>;
}

/** Run one collection; the caller has committed nothing yet (gc.run and gc.finished are committed here). */
export async function collectGarbage(ctx: GcContext, o: GcOptions): Promise<GcResult> {
  const started = Date.now();
  const result: GcResult = {
    runId: o.runId,
    dryRun: o.dryRun,
    scanned: 0,
    candidates: 0,
    candidateBytes: 0,
    collected: 0,
    collectedBytes: 0,
    restored: 0,
    durationMs: 0,
    items: [],
  };
  const progress = (phase: GcProgress["phase"]) =>
    o.onProgress?.({
      phase,
      scanned: result.scanned,
      candidates: result.candidates,
      collected: result.collected,
    });
  const base = { runId: o.runId, region: ctx.region };
  await ctx.commits.commit(
    {
      type: "gc.run",
      ...base,
      dryRun: o.dryRun,
      graceMs: o.graceMs,
      undeleteWindowMs: o.undeleteWindowMs,
      trigger: o.trigger,
    },
    o.actor,
  );
  const finish = (outcome: "ok" | "failed", error?: string) => {
    result.durationMs = Date.now() - started;
    const stats = {
      scanned: result.scanned,
      candidates: result.candidates,
      candidateBytes: result.candidateBytes,
      collected: result.collected,
      collectedBytes: result.collectedBytes,
      restored: result.restored,
      durationMs: result.durationMs,
    };
    const body: EventBody = { type: "gc.finished", ...base, outcome, stats };
    if (error !== undefined) (body as { error?: string }).error = error.slice(0, 1024);
    return ctx.commits.commit(body, o.actor);
  };
  try {
    await sweepRun(ctx, o, started, result, progress);
  } catch (err) {
    await finish("failed", (err as Error).message).catch(() => undefined);
    throw err;
  }
  await finish("ok");
  progress("done");
  return result;
}

async function sweepRun(
  ctx: GcContext,
  o: GcOptions,
  started: number,
  result: GcResult,
  progress: (phase: GcProgress["phase"]) => void,
): Promise<void> {
  const store = ctx.store;
  if (store.listBlobs === undefined || store.setAside === undefined)
    throw new Error("this blob store cannot be garbage collected");
  progress("mark");
  await caughtUp(ctx, o.signal);
  const first = await mark(ctx, o, started);
  const candidates: Array<{
    blob: StoredBlob;
    reason: string;
    links: Array<{ repo: string; write: string }>;
  }> = [];
  for await (const blob of store.listBlobs(o.signal)) {
    result.scanned++;
    if (first.keep.has(blob.digest) || started - blob.modifiedMs < o.graceMs) continue;
    const links = first.staleLinks.get(blob.digest) ?? [];
    const reason = first.deleted.has(blob.digest) ? "deleted" : links.length > 0 ? "unreferenced" : "orphan";
    candidates.push({ blob, reason, links });
    result.candidates++;
    result.candidateBytes += blob.size;
    result.items.push({ digest: blob.digest, size: blob.size, reason });
  }
  progress("sweep");
  if (o.dryRun || candidates.length === 0) return;

  // Phase 1: record, drop the stale links, set the bytes aside.
  const aside: StoredBlob[] = [];
  const dropped = new Set<string>();
  for (const c of candidates) for (const l of c.links) dropped.add(`${l.repo}\n${c.blob.digest}\n${l.write}`);
  try {
    await setAsideAll(ctx, o, candidates, aside);
  } catch (err) {
    // Stopped half-way: nothing set aside may stay aside (links dropped are re-made by the next push).
    for (const blob of aside) await store.putBack!(blob.digest, o.runId).catch(() => undefined);
    throw err;
  }
  // Phase 2: let writers that saw the blob before it moved commit, then look again.
  progress("settle");
  await sleep(o.settleMs, o.signal).catch(() => undefined);
  progress("verify");
  await caughtUp(ctx);
  const second = await mark(ctx, { ...o, signal: undefined }, started, dropped);
  await inWaves(aside, async (blob) => {
    const needed = second.keep.has(blob.digest) || second.staleLinks.has(blob.digest);
    // Bytes written after the run started were stored again by a push (fs keeps the mtime).
    if (needed || blob.modifiedMs >= started) {
      await store.putBack!(blob.digest, o.runId);
      result.restored++;
      for (const repo of second.neededBy.get(blob.digest) ?? []) {
        if ((await ctx.view.content.blobLink(repo, blob.digest)) === undefined)
          await ctx.commits.commit(
            { type: "blob.pushed", repo, digest: blob.digest, size: blob.size },
            o.actor,
          );
      }
      ctx.logger.info({ digest: blob.digest, runId: o.runId }, "gc put back a blob a write needed");
      return;
    }
    await store.dropAside!(blob.digest, o.runId);
    result.collected++;
    result.collectedBytes += blob.size;
    progress("sweep");
  });
}

async function setAsideAll(
  ctx: GcContext,
  o: GcOptions,
  candidates: Array<{ blob: StoredBlob; reason: string; links: Array<{ repo: string; write: string }> }>,
  aside: StoredBlob[],
): Promise<void> {
  await inWaves(candidates, async (c) => {
    o.signal?.throwIfAborted();
    await ctx.commits.commit(
      {
        type: "gc.collected",
        runId: o.runId,
        region: ctx.region,
        digest: c.blob.digest,
        size: c.blob.size,
        reason: c.reason,
        links: c.links,
      },
      o.actor,
    );
    const moved = await ctx.store.setAside!(c.blob.digest, o.runId, o.signal);
    if (moved !== undefined) aside.push(moved);
  });
}

/** What the region needs now (see the header), from the view and the log. */
async function mark(ctx: GcContext, o: GcOptions, now: number, dropped = new Set<string>()): Promise<Mark> {
  const m: Mark = { keep: new Map(), staleLinks: new Map(), deleted: new Set(), neededBy: new Map() };
  const keep = (digest: Digest | undefined, why: string) => {
    if (digest !== undefined && !m.keep.has(digest)) m.keep.set(digest, why);
  };
  const recent = (at: string, window: number) => now - Date.parse(at) < window;
  let last: string | undefined;
  for (let page = 0; page < 1_000_000; page++) {
    const { items, more } = await ctx.view.content.repositories(1000, last);
    for (const repo of items) {
      o.signal?.throwIfAborted();
      const state = await ctx.view.content.repoState(repo);
      const registers = new Map(state.manifests.map((x) => [x.digest, x.register]));
      // A manifest's closure: its bytes, blobs, subject, children (and theirs).
      const hold = (root: Digest, why: string, live: boolean) => {
        const stack = [root];
        const seen = new Set<Digest>();
        while (stack.length > 0) {
          const digest = stack.pop()!;
          if (seen.has(digest)) continue;
          seen.add(digest);
          keep(digest, why);
          const record = registers.get(digest)?.record;
          if (record === null || record === undefined) continue;
          for (const blob of record.blobs) {
            keep(blob, why);
            if (live) {
              const set = m.neededBy.get(blob) ?? new Set<string>();
              set.add(repo);
              m.neededBy.set(blob, set);
            }
          }
          keep(record.subject, why);
          stack.push(...record.manifests);
        }
      };
      for (const { digest, register } of state.manifests) {
        if (register.live) hold(digest, "live manifest", true);
        else if (recent(register.w.at, o.undeleteWindowMs)) hold(digest, "undelete window", false);
        else m.deleted.add(digest);
      }
      for (const { digest, register } of state.blobs) {
        if (register.live) {
          if (recent(register.w.at, o.graceMs)) keep(digest, "in-flight push");
          else {
            const links = m.staleLinks.get(digest) ?? [];
            links.push({ repo, write: register.w.id });
            m.staleLinks.set(digest, links);
          }
        } else if (dropped.has(`${repo}\n${digest}\n${register.w.id}`)) {
          // This run's own drop, not a deletion the undelete window protects.
        } else if (recent(register.w.at, o.undeleteWindowMs)) keep(digest, "undelete window");
        else m.deleted.add(digest);
      }
    }
    if (!more || items.length === 0) break;
    last = items.at(-1);
  }
  for (const digest of await pendingReplication(ctx, o.signal)) keep(digest, "pending replication");
  return m;
}

/** Digests named by events of this region's stream some durable consumer has not acknowledged yet. */
async function pendingReplication(ctx: GcContext, signal?: AbortSignal): Promise<Set<Digest>> {
  const named = new Set<Digest>();
  if (ctx.log.durableFloor === undefined) return named;
  const floor = await ctx.log.durableFloor(signal);
  if (floor === undefined) return named;
  const last = await ctx.log.lastSeq(signal);
  if (last <= floor) return named;
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const { seq, event } of ctx.log.tail(floor + 1, stop.signal)) {
      for (const digest of namedBy(event)) named.add(digest);
      if (seq >= last) break;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    stop.abort();
  }
  return named;
}

function namedBy(event: RegistryEvent): Digest[] {
  switch (event.type) {
    case "blob.pushed":
      return [event.digest];
    case "manifest.pushed":
      return [event.digest, ...event.blobs, ...event.manifests, ...(event.subject ? [event.subject] : [])];
    case "tag.set":
      return [event.digest];
    default:
      return [];
  }
}

/** Bring the view up to what the log holds now; rejects (the run fails, nothing swept) past the bound. */
async function caughtUp(ctx: GcContext, signal?: AbortSignal): Promise<void> {
  const last = await ctx.log.lastSeq(signal);
  await ctx.view.waitFor(last, CATCH_UP_MS);
}

async function inWaves<T>(items: T[], step: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += SWEEP_WIDTH)
    await Promise.all(items.slice(i, i + SWEEP_WIDTH).map(step));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
