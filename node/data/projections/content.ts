/**
 * The content projection: repositories, blob links, manifests, tags, the
 * referrers index, tag conflicts and repository configurations, as the log's
 * blob.*, manifest.*, tag.*, repository.* events leave them. Its reads
 * (summaries included) are content-reads.ts; this file applies events.
 *
 * Every piece of content is a register merged the same way in every region,
 * whatever order its writes arrive in (events from different origins reach a
 * region through different streams):
 *   - a tag is merged by the repository's tag rule (protocol/tag-merge.ts),
 *     every write it ever saw kept in its history;
 *   - a manifest's and a blob link's presence are last-writer-wins registers
 *     by (hlc, origin, write id): a push and a concurrent delete of the same
 *     digest end the same everywhere;
 *   - a repository deletion is a barrier: every write in the repository older
 *     than it is void, wherever and whenever it arrives.
 * A tag is visible only while the manifest it points at is live, so deleting
 * a manifest hides its tags (as CNCF Distribution deletes them) and restoring
 * it brings them back, deterministically.
 *
 * Keys (values are JSON; `!` cannot occur in names, tags or digests, and sorts
 * before every character that can, so prefix scans never bleed into `repo/sub`):
 *   r!<repo>                       repository has had content
 *   b!<repo>!<digest>              blob link register         BlobRegister
 *   M!<repo>!<digest>              manifest register          ManifestRegister
 *   L!<repo>!<digest>              manifest is live (index for tag listings)  ""
 *   t!<repo>!<tag>                 tag register               TagRecord (digest null = deleted)
 *   h!<repo>!<tag>!<hlc>!<origin>!<id>  every write to the tag  TagHistoryEntry
 *   R!<repo>!<subject>!<digest>    referrer of subject (live) ReferrerRecord
 *   Z!<repo>                       repository tombstone       {w: Write}
 *   c!<repo>!<tag>!<loser id>      a recorded tag conflict    ConflictRecord
 *   G!<digest>!<region>            its last GC collection there  CollectionRecord
 *   C!…, H!…                       repository configurations  (repo-configs.ts)
 */
import type { Digest } from "../../../protocol/digest.js";
import type { ConflictSide } from "../../../protocol/events.js";
import type {
  BlobRegister,
  ManifestRecord,
  ManifestRegister,
  TagRecord,
  Write,
} from "../../../protocol/registers.js";
import { foldWrites, type TagMergeRule, type TagWrite } from "../../../protocol/tag-merge.js";
import { type CollectionRecord, ContentReadsImpl } from "./content-reads.js";
import { RepoConfigs } from "./repo-configs.js";
import {
  type Batch,
  getJson,
  type Handlers,
  hlcKey,
  olderWrite,
  type Projection,
  type ViewDb,
} from "./store.js";

export interface TagHistoryEntry {
  digest: Digest | null;
  w: Write;
  /** The write the origin's register held when this one was made. */
  prev?: string;
  /** The event type that made the write (tag.set, tag.deleted, manifest.pushed). */
  via: string;
}

export interface ReferrerRecord {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ConflictRecord {
  repo: string;
  tag: string;
  winner: ConflictSide;
  loser: ConflictSide;
  /** Region that recorded it, and when. */
  origin: string;
  at: string;
}

export class ContentProjection extends ContentReadsImpl implements Projection {
  readonly #configs: RepoConfigs;

  constructor(db: ViewDb, defaultRule: TagMergeRule) {
    const configs = new RepoConfigs(db, defaultRule);
    super(db, configs);
    this.#configs = configs;
  }

  load(): Promise<void> {
    return this.#configs.load();
  }

  readonly handlers: Handlers = {
    "blob.pushed": (batch, e, w) => this.#writeBlob(batch, e.repo, e.digest, e.size, true, w),
    "manifest.pushed": async (batch, e, w, seq) => {
      const record: ManifestRecord = {
        mediaType: e.mediaType,
        size: e.size,
        blobs: e.blobs,
        manifests: e.manifests,
        subject: e.subject,
        artifactType: e.artifactType,
        annotations: e.annotations,
      };
      if (e.platforms !== undefined) record.platforms = e.platforms;
      await this.#writeManifest(batch, e.repo, e.digest, record, true, w);
      // A manifest links what it references: its blobs are pullable through the repository.
      for (const blob of e.blobs) await this.#writeBlob(batch, e.repo, blob, undefined, true, w);
      if (e.tag !== undefined) await this.#writeTag(batch, e.repo, e.tag, e.digest, w, seq, e.type, e.prev);
    },
    "tag.set": (batch, e, w, seq) => this.#writeTag(batch, e.repo, e.tag, e.digest, w, seq, e.type, e.prev),
    "tag.deleted": (batch, e, w, seq) => this.#writeTag(batch, e.repo, e.tag, null, w, seq, e.type, e.prev),
    "manifest.deleted": (batch, e, w) => this.#writeManifest(batch, e.repo, e.digest, null, false, w),
    "blob.deleted": (batch, e, w) => this.#writeBlob(batch, e.repo, e.digest, undefined, false, w),
    "repository.deleted": (batch, e, w, seq) => this.#deleteRepository(batch, e.repo, w, seq),
    "tag.conflict": async (batch, e) => {
      const record: ConflictRecord = {
        repo: e.repo,
        tag: e.tag,
        winner: e.winner,
        loser: e.loser,
        origin: e.origin,
        at: e.at,
      };
      batch.put(`c!${e.repo}!${e.tag}!${e.loser.id}`, JSON.stringify(record));
    },
    // A GC collection (node/data/gc.ts) in the region that wrote it (a replica carries `cause`:
    // another region's links are its own): each stale link the run saw becomes dead with its
    // write unchanged, so anti-entropy sees the same write on both sides and copies nothing back;
    // a link written since (another write id) is left alone.
    "gc.collected": async (batch, e) => {
      const record: CollectionRecord = {
        digest: e.digest,
        region: e.region,
        runId: e.runId,
        reason: e.reason,
        size: e.size,
        repos: e.links.map((l) => l.repo),
        at: e.at,
        actor: e.actor,
      };
      batch.put(`G!${e.digest}!${e.region}`, JSON.stringify(record));
      if (e.cause !== undefined) return;
      for (const { repo, write } of e.links) {
        const key = `b!${repo}!${e.digest}`;
        const current = await getJson<BlobRegister>(batch, key);
        if (current?.live === true && current.w.id === write)
          batch.put(key, JSON.stringify({ ...current, live: false } satisfies BlobRegister));
      }
    },
    "repository.configured": async (batch, e, w, seq) => {
      if (!(await this.#configs.apply(batch, e, w))) return;
      // Every tag under the scope is refolded under the rule now in force.
      const repos =
        e.scope.endsWith("/") || e.scope === "" ? await this.repositoriesUnder(e.scope) : [e.scope];
      for (const repo of repos) {
        // Every tag written has history (a tag whose writes were all ignored has no register yet).
        const tags = new Set((await batch.keysUnder(`h!${repo}!`)).map((k) => k.slice(0, k.indexOf("!"))));
        for (const tag of tags) await this.#recomputeTag(batch, repo, tag, seq);
      }
    },
  };

  /**
   * The repository deletion that voids `w`, if one newer than it was seen. A
   * voided push or delete becomes "deleted by that repository deletion", so
   * every region holds the same register whether the write arrived before
   * the deletion or after it.
   */
  async #barrier(batch: Batch, repo: string, w: Write): Promise<Write | undefined> {
    const z = await getJson<{ w: Write }>(batch, `Z!${repo}`);
    return z !== undefined && olderWrite(w, z.w) ? z.w : undefined;
  }

  async #writeBlob(
    batch: Batch,
    repo: string,
    digest: Digest,
    size: number | undefined,
    live: boolean,
    w: Write,
  ): Promise<void> {
    const z = await this.#barrier(batch, repo, w);
    if (z !== undefined) [live, w] = [false, z];
    const key = `b!${repo}!${digest}`;
    const current = await getJson<BlobRegister>(batch, key);
    if (current !== undefined && !olderWrite(current.w, w)) {
      // An older write still teaches the size when the register lacks it.
      if (current.size < 0 && size !== undefined) batch.put(key, JSON.stringify({ ...current, size }));
      return;
    }
    batch.put(`r!${repo}`, "{}");
    batch.put(key, JSON.stringify({ size: size ?? current?.size ?? -1, live, w } satisfies BlobRegister));
  }

  async #writeManifest(
    batch: Batch,
    repo: string,
    digest: Digest,
    record: ManifestRecord | null,
    live: boolean,
    w: Write,
  ): Promise<void> {
    const z = await this.#barrier(batch, repo, w);
    if (z !== undefined) [live, w] = [false, z];
    const key = `M!${repo}!${digest}`;
    const current = await getJson<ManifestRegister>(batch, key);
    const known = record ?? current?.record ?? null;
    if (current !== undefined && !olderWrite(current.w, w)) {
      if (current.record === null && known !== null)
        batch.put(key, JSON.stringify({ ...current, record: known }));
      return;
    }
    batch.put(`r!${repo}`, "{}");
    batch.put(key, JSON.stringify({ record: known, live, w } satisfies ManifestRegister));
    if (live) batch.put(`L!${repo}!${digest}`, "");
    else batch.del(`L!${repo}!${digest}`);
    if (known?.subject !== undefined) {
      const referrerKey = `R!${repo}!${known.subject}!${digest}`;
      if (!live) batch.del(referrerKey);
      else {
        const referrer: ReferrerRecord = {
          mediaType: known.mediaType,
          digest,
          size: known.size,
          artifactType: known.artifactType,
          annotations: known.annotations,
        };
        batch.put(referrerKey, JSON.stringify(referrer));
      }
    }
  }

  async #writeTag(
    batch: Batch,
    repo: string,
    tag: string,
    digest: Digest | null,
    w: Write,
    seq: number,
    via: string,
    prev: string | undefined,
  ): Promise<void> {
    const entry: TagHistoryEntry = { digest, w, via };
    if (prev !== undefined) entry.prev = prev;
    batch.put(historyKey(repo, tag, w), JSON.stringify(entry));
    batch.put(`r!${repo}`, "{}");
    if ((await this.#barrier(batch, repo, w)) !== undefined) return;
    const key = `t!${repo}!${tag}`;
    const current = await getJson<TagRecord>(batch, key);
    const config = this.#configs.configFor(repo);
    const incoming = historyToWrite(entry);
    if (config.tagMerge === "home-region") {
      // Which writes count depends on the home table, not on arrival: fold the whole history.
      await this.#recomputeTag(batch, repo, tag, seq);
      return;
    }
    const winner =
      current === undefined ? incoming : foldWrites(config.tagMerge, [recordToWrite(current), incoming]);
    if (winner?.eventId !== incoming.eventId || current?.eventId === incoming.eventId) return;
    batch.put(key, JSON.stringify(recordOf(digest, w, seq, prev)));
  }

  /** Set a tag's register to the fold of its history (after a rule, home or barrier change). */
  async #recomputeTag(batch: Batch, repo: string, tag: string, seq: number): Promise<void> {
    const z = await getJson<{ w: Write }>(batch, `Z!${repo}`);
    const entries: TagHistoryEntry[] = [];
    for (const raw of await batch.valuesUnder(`h!${repo}!${tag}!`)) entries.push(JSON.parse(raw));
    const survivors = entries.filter((h) => z === undefined || olderWrite(z.w, h.w));
    const config = this.#configs.configFor(repo);
    const winner = foldWrites(config.tagMerge, survivors.map(historyToWrite), config.homes);
    const key = `t!${repo}!${tag}`;
    const current = await getJson<TagRecord>(batch, key);
    if (winner === undefined) {
      if (current !== undefined) batch.del(key);
      return;
    }
    if (current?.eventId === winner.eventId) return;
    const entry = survivors.find((h) => h.w.id === winner.eventId)!;
    batch.put(key, JSON.stringify(recordOf(entry.digest, entry.w, seq, entry.prev)));
  }

  async #deleteRepository(batch: Batch, repo: string, w: Write, seq: number): Promise<void> {
    const zKey = `Z!${repo}`;
    const z = await getJson<{ w: Write }>(batch, zKey);
    if (z !== undefined && !olderWrite(z.w, w)) return;
    batch.put(zKey, JSON.stringify({ w }));
    batch.put(`r!${repo}`, "{}");
    for (const [suffix, raw] of await batch.entriesUnder(`M!${repo}!`)) {
      const register = JSON.parse(raw) as ManifestRegister;
      if (!olderWrite(register.w, w)) continue;
      batch.put(`M!${repo}!${suffix}`, JSON.stringify({ ...register, live: false, w }));
      batch.del(`L!${repo}!${suffix}`);
      if (register.record?.subject !== undefined) batch.del(`R!${repo}!${register.record.subject}!${suffix}`);
    }
    for (const [suffix, raw] of await batch.entriesUnder(`b!${repo}!`)) {
      const register = JSON.parse(raw) as BlobRegister;
      if (olderWrite(register.w, w))
        batch.put(`b!${repo}!${suffix}`, JSON.stringify({ ...register, live: false, w }));
    }
    for (const tag of await batch.keysUnder(`t!${repo}!`)) await this.#recomputeTag(batch, repo, tag, seq);
  }
}

function historyToWrite(h: TagHistoryEntry): TagWrite {
  return {
    digest: h.digest ?? undefined,
    hlc: h.w.hlc,
    origin: h.w.origin,
    eventId: h.w.id,
    epoch: h.w.epoch,
  };
}

function recordToWrite(r: TagRecord): TagWrite {
  return { digest: r.digest ?? undefined, hlc: r.hlc, origin: r.origin, eventId: r.eventId, epoch: r.epoch };
}

function recordOf(digest: Digest | null, w: Write, seq: number, prev?: string): TagRecord {
  const record: TagRecord = {
    digest,
    hlc: w.hlc,
    origin: w.origin,
    eventId: w.id,
    seq,
    at: w.at,
    actor: w.actor,
  };
  if (w.epoch !== undefined) record.epoch = w.epoch;
  if (prev !== undefined) record.prev = prev;
  return record;
}

/** A history key sorting a tag's writes by clock, then origin and id. */
function historyKey(repo: string, tag: string, w: Write): string {
  return `h!${repo}!${tag}!${hlcKey(w.hlc)}!${w.origin}!${w.id}`;
}
