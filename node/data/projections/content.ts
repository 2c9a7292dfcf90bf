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
 *   I!…                            immutable-tag rules        (immutability.ts)
 *
 * A tag some immutable-tag rule ever covered is folded whole from its history
 * (protocol/immutable-tags.ts `foldTag`), as home-region tags are: whether a
 * write is rejected depends on the rule in force at its place in the order
 * and on what stood before it, not on arrival. A rule event refolds every
 * tag any version of the rule covers, in every repository it covers.
 *
 * Every write of a `b!` or `M!` register is also told to `holders` (the quota
 * projection, ./quotas.ts: storage usage per project), before and after, in
 * the same batch.
 */
import type { Digest } from "../../../protocol/digest.js";
import type { ConflictSide } from "../../../protocol/events.js";
import { foldTag, protectingRule, ruleMatches } from "../../../protocol/immutable-tags.js";
import type {
  BlobRegister,
  ManifestRecord,
  ManifestRegister,
  TagRecord,
  Write,
} from "../../../protocol/registers.js";
import { foldWrites, type TagMergeRule, type TagWrite } from "../../../protocol/tag-merge.js";
import { type CollectionRecord, ContentReadsImpl } from "./content-reads.js";
import { ImmutabilityRules } from "./immutability.js";
import type { Held } from "./quotas.js";
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
  /** The immutable-tag rule that rejected the loser (absent: the tag merge rule decided). */
  rule?: string;
  /** Region that recorded it, and when. */
  origin: string;
  at: string;
}

/** Who hears of every change of a blob link or manifest register, and of collections (./quotas.ts). */
export interface HolderListener {
  holderChanged(
    batch: Batch,
    repo: string,
    digest: string,
    before: Held | undefined,
    after: Held,
  ): Promise<void>;
  /** The region's garbage collection removed `digest`'s bytes from the store (`gc.collected`). */
  collected?(batch: Batch, digest: string): Promise<void>;
}

export class ContentProjection extends ContentReadsImpl implements Projection {
  readonly #configs: RepoConfigs;
  readonly #rules: ImmutabilityRules;
  readonly #holders: HolderListener | undefined;

  constructor(db: ViewDb, defaultRule: TagMergeRule, holders?: HolderListener) {
    const configs = new RepoConfigs(db, defaultRule);
    const rules = new ImmutabilityRules(db);
    super(db, configs, rules);
    this.#configs = configs;
    this.#rules = rules;
    this.#holders = holders;
  }

  async load(): Promise<void> {
    await this.#configs.load();
    await this.#rules.load();
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
      if (e.rule !== undefined) record.rule = e.rule;
      batch.put(`c!${e.repo}!${e.tag}!${e.loser.id}`, JSON.stringify(record));
    },
    "immutability.set": (batch, e, w, seq) => this.#ruleChanged(batch, e, w, seq),
    "immutability.deleted": (batch, e, w, seq) => this.#ruleChanged(batch, e, w, seq),
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
        if (current?.live === true && current.w.id === write) {
          const next = { ...current, live: false } satisfies BlobRegister;
          batch.put(key, JSON.stringify(next));
          // The quota projection hears of it as of any link's end (the project's usage drops)…
          await this.#holders?.holderChanged(batch, repo, e.digest, current, next);
        }
      }
      // …and of the bytes leaving the store (no longer reclaimable in any project).
      await this.#holders?.collected?.(batch, e.digest);
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

  /** An immutable-tag rule set or deleted: refold every tag any version of it covers. */
  async #ruleChanged(
    batch: Batch,
    e: Parameters<ImmutabilityRules["apply"]>[1],
    w: Write,
    seq: number,
  ): Promise<void> {
    const versions = this.#rules.apply(batch, e, w);
    // Through the batch: a repository first written earlier in this same batch counts too.
    for (const repo of await batch.keysUnder("r!")) {
      if (!ImmutabilityRules.coversRepository(versions, repo)) continue;
      const tags = new Set((await batch.keysUnder(`h!${repo}!`)).map((k) => k.slice(0, k.indexOf("!"))));
      for (const tag of tags)
        if (versions.some((r) => ruleMatches(r, repo, tag))) await this.#recomputeTag(batch, repo, tag, seq);
    }
  }

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
      if (current.size < 0 && size !== undefined) {
        batch.put(key, JSON.stringify({ ...current, size }));
        await this.#holders?.holderChanged(batch, repo, digest, current, { live: current.live, size });
      }
      return;
    }
    batch.put(`r!${repo}`, "{}");
    const next = { size: size ?? current?.size ?? -1, live, w } satisfies BlobRegister;
    batch.put(key, JSON.stringify(next));
    await this.#holders?.holderChanged(batch, repo, digest, current, next);
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
      if (current.record === null && known !== null) {
        batch.put(key, JSON.stringify({ ...current, record: known }));
        await this.#holders?.holderChanged(batch, repo, digest, heldManifest(current), {
          live: current.live,
          size: known.size,
        });
      }
      return;
    }
    batch.put(`r!${repo}`, "{}");
    batch.put(key, JSON.stringify({ record: known, live, w } satisfies ManifestRegister));
    await this.#holders?.holderChanged(batch, repo, digest, heldManifest(current), {
      live,
      size: known?.size ?? -1,
    });
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
    if (config.tagMerge === "home-region" || this.#rules.everCovers(repo, tag)) {
      // Which writes count depends on the home table or the rules in force, not on arrival: fold the whole history.
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
    const writes = survivors.map(historyToWrite);
    let winner: TagWrite | undefined;
    if (this.#rules.everCovers(repo, tag)) {
      const rules = this.#rules.histories();
      const protect = (x: TagWrite) => protectingRule(rules, repo, tag, x);
      winner = foldTag(config.tagMerge, writes, protect, config.homes).winner;
    } else winner = foldWrites(config.tagMerge, writes, config.homes);
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
      await this.#holders?.holderChanged(batch, repo, suffix, heldManifest(register), {
        live: false,
        size: register.record?.size ?? -1,
      });
      batch.del(`L!${repo}!${suffix}`);
      if (register.record?.subject !== undefined) batch.del(`R!${repo}!${register.record.subject}!${suffix}`);
    }
    for (const [suffix, raw] of await batch.entriesUnder(`b!${repo}!`)) {
      const register = JSON.parse(raw) as BlobRegister;
      if (!olderWrite(register.w, w)) continue;
      batch.put(`b!${repo}!${suffix}`, JSON.stringify({ ...register, live: false, w }));
      await this.#holders?.holderChanged(batch, repo, suffix, register, { live: false, size: register.size });
    }
    for (const tag of await batch.keysUnder(`t!${repo}!`)) await this.#recomputeTag(batch, repo, tag, seq);
  }
}

function heldManifest(register: ManifestRegister | undefined): Held | undefined {
  return register === undefined ? undefined : { live: register.live, size: register.record?.size ?? -1 };
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
