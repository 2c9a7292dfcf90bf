/**
 * The quota projection (issue 15, quotas): each project's storage usage in
 * this region, and its quota, as the region's log leaves them.
 *
 * What is counted. A project's usage is the bytes of the DISTINCT content its
 * repositories hold live in this region: a blob linked into two repositories
 * of one project, or twice into one, counts once (the store keeps it once);
 * a manifest counts its own bytes (the store keeps them under their digest
 * too). A repository's project is its first path component
 * (protocol/access.ts `projectOf`). The same digest in two projects counts in
 * both (each project pays for what it holds; deleting it from one project
 * does not free it in the other).
 *
 * How. The content projection (./content.ts) is the only writer of blob link
 * (`b!`) and manifest (`M!`) registers, and tells this projection of every
 * change of one (`holderChanged`: before and after, live and size), inside the
 * same batch. Every live register is one "holder" of its digest; this
 * projection keeps, per project and digest, how many holders are live and the
 * size, and per project the sum over digests with at least one live holder.
 * It is a pure function of the log (a view rebuild recomputes it, and every
 * node of the region, applying the same log, holds the same numbers),
 * whatever event moved the register: a push (blob.pushed, manifest.pushed and
 * the blobs it links), a deletion (blob.deleted, manifest.deleted), a
 * repository deletion (its barrier voids every older register), an undelete
 * (a newer push), a replicated push (it writes the same registers).
 *
 * Across regions each region counts what ITS log holds, which is what it
 * stores: its own pushes and whatever replication copied in. A quota is
 * enforced per region on that region's count (a project may hold its quota in
 * each region it replicates to); replicated content is never refused (the
 * regions would diverge), so a destination can exceed a quota through
 * replication, after which pushes there are refused until usage drops.
 *
 * Deleted but not yet collected. When a digest's last live holder in a project
 * goes, its bytes leave the usage at once (the quota is freed by the deletion,
 * as in Harbor, not by the garbage collection) but stay on disk until a
 * collection removes them: the project's `reclaimableBytes` counts them, and
 * `qx!<digest>!<project>` indexes them by digest. A collection event (a
 * `gc.collected {digest}` from the region's GC, node/data/gc.ts) calls `collected`:
 * every project's entry for that digest with no live holder is dropped and
 * its bytes leave `reclaimableBytes`. GC collects only what nothing live
 * needs, so a collection never changes `usedBytes`; a digest pushed again
 * after its collection is counted afresh.
 *
 * A size not known yet (a manifest's event naming a blob before that blob's
 * own event reached the region: the register's size is -1) counts 0 until an
 * event teaches it; the content projection reports that as a change too.
 *
 * Keys (values are JSON):
 *   qd!<project>!<digest>   {n, size}              live holders, size (-1 unknown)
 *   qx!<digest>!<project>   ""                     no live holder, bytes not collected yet
 *   qu!<project>            ProjectUsage           the project's totals
 *   ql!<project>            {value: {limitBytes} | null, w}  the quota (last writer wins)
 *
 * The quotas are also held in memory (`limitOf`, read on every push without
 * awaiting), reloaded from the database at open and after a failed batch.
 */
import { projectOf } from "../../../protocol/access.js";
import type { Digest } from "../../../protocol/digest.js";
import { Batch, END, getJson, type Handlers, type Projection, putRegister, type ViewDb } from "./store.js";

/** A register's standing as a holder of its digest: live or not, and the size it knows (-1: unknown). */
export interface Held {
  live: boolean;
  size: number;
}

export interface ProjectUsage {
  /** Bytes of distinct content live in the project in this region. */
  usedBytes: number;
  /** How many distinct digests (blobs and manifests) that is. */
  blobs: number;
  /** Bytes no longer live in the project but not yet collected from the store. */
  reclaimableBytes: number;
}

export interface ProjectQuota extends ProjectUsage {
  project: string;
  /** The quota; null when none is set. */
  limitBytes: number | null;
}

/** Reads of the quota projection (committed state). */
export interface QuotaReads {
  /** A project's quota, from memory (no IO): undefined when none is set. */
  limitOf(project: string): number | undefined;
  /** A project's usage in this region (zeros when it holds nothing). */
  usage(project: string): Promise<ProjectUsage>;
  /** Is `digest` held live by some repository of `project`? */
  holds(project: string, digest: Digest): Promise<boolean>;
  /** Every project that has a quota or has held content, by name. */
  all(): Promise<ProjectQuota[]>;
}

interface Entry {
  n: number;
  size: number;
}

const ZERO: ProjectUsage = { usedBytes: 0, blobs: 0, reclaimableBytes: 0 };

export class QuotaProjection implements Projection, QuotaReads {
  readonly #db: ViewDb;
  readonly #limits = new Map<string, number>();

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "quota.set": async (batch, e, w) => {
      const key = `ql!${e.project}`;
      await putRegister(batch, key, w, () => (e.limitBytes === null ? null : { limitBytes: e.limitBytes }));
      const held = await getJson<{ value: { limitBytes: number } | null }>(batch, key);
      if (held?.value == null) this.#limits.delete(e.project);
      else this.#limits.set(e.project, held.value.limitBytes);
    },
  };

  async load(): Promise<void> {
    this.#limits.clear();
    for await (const [key, raw] of this.#db.iterator({ gt: "ql!", lt: `ql!${END}` })) {
      const { value } = JSON.parse(raw) as { value: { limitBytes: number } | null };
      if (value !== null) this.#limits.set(key.slice(3), value.limitBytes);
    }
  }

  /**
   * A blob link or manifest register of `repo` for `digest` changed from
   * `before` (undefined: it did not exist) to `after`, in `batch`. Called
   * by the content projection for every write of one.
   */
  async holderChanged(
    batch: Batch,
    repo: string,
    digest: string,
    before: Held | undefined,
    after: Held,
  ): Promise<void> {
    // The same standing, no size it did not know: nothing can change (a manifest re-linking
    // blobs its repository holds, the common case), so no read on the apply path.
    if (before !== undefined && before.live === after.live && after.size <= before.size) return;
    const project = projectOf(repo);
    const key = `qd!${project}!${digest}`;
    const current = await getJson<Entry>(batch, key);
    // A register that never was live makes no entry (a deletion arriving before its push).
    if (current === undefined && !after.live) return;
    const old: Entry = current ?? { n: 0, size: -1 };
    const next: Entry = {
      n: Math.max(0, old.n + (after.live ? 1 : 0) - (before?.live ? 1 : 0)),
      size: Math.max(old.size, after.size, before?.size ?? -1),
    };
    if (current !== undefined && next.n === old.n && next.size === old.size) return;
    batch.put(key, JSON.stringify(next));
    if (next.n === 0) batch.put(`qx!${digest}!${project}`, "");
    else if (current !== undefined && old.n === 0) batch.del(`qx!${digest}!${project}`);
    await this.#adjust(batch, project, current === undefined ? undefined : old, next);
  }

  /**
   * The region's garbage collection removed `digest`'s bytes from the store
   * (the content projection's `gc.collected` handler calls this, in its batch):
   * every project that held it without a live holder stops counting it as
   * reclaimable. A project still holding it live is untouched (GC never
   * collects live content; were it to, the usage would still say what the
   * log says is live).
   */
  async collected(batch: Batch, digest: string): Promise<void> {
    for (const project of await batch.keysUnder(`qx!${digest}!`)) {
      const key = `qd!${project}!${digest}`;
      const entry = await getJson<Entry>(batch, key);
      batch.del(`qx!${digest}!${project}`);
      if (entry === undefined || entry.n > 0) continue;
      batch.del(key);
      await this.#adjust(batch, project, entry, undefined);
    }
  }

  /** Move the project's totals from what `old` contributed to what `next` does. */
  async #adjust(
    batch: Batch,
    project: string,
    old: Entry | undefined,
    next: Entry | undefined,
  ): Promise<void> {
    const usage = (await getJson<ProjectUsage>(batch, `qu!${project}`)) ?? { ...ZERO };
    const used = (e: Entry | undefined) => (e !== undefined && e.n > 0 ? Math.max(0, e.size) : 0);
    const count = (e: Entry | undefined) => (e !== undefined && e.n > 0 ? 1 : 0);
    const held = (e: Entry | undefined) => (e !== undefined && e.n === 0 ? Math.max(0, e.size) : 0);
    usage.usedBytes += used(next) - used(old);
    usage.blobs += count(next) - count(old);
    usage.reclaimableBytes += held(next) - held(old);
    batch.put(`qu!${project}`, JSON.stringify(usage));
  }

  limitOf(project: string): number | undefined {
    return this.#limits.get(project);
  }

  async usage(project: string): Promise<ProjectUsage> {
    return (await getJson<ProjectUsage>(this.#db, `qu!${project}`)) ?? { ...ZERO };
  }

  async holds(project: string, digest: Digest): Promise<boolean> {
    return ((await getJson<Entry>(this.#db, `qd!${project}!${digest}`))?.n ?? 0) > 0;
  }

  async all(): Promise<ProjectQuota[]> {
    const out = new Map<string, ProjectQuota>();
    for (const [project, raw] of await new Batch(this.#db).entriesUnder("qu!"))
      out.set(project, { project, limitBytes: null, ...(JSON.parse(raw) as ProjectUsage) });
    for (const [project, limitBytes] of this.#limits)
      out.set(project, { ...(out.get(project) ?? { project, ...ZERO }), limitBytes });
    return [...out.values()].sort((a, b) => (a.project < b.project ? -1 : a.project > b.project ? 1 : 0));
  }
}
