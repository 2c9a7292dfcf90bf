/**
 * Reads of the content projection (content.ts applies the events; the key
 * layout is drawn there). Every read sees committed state only. "Visible"
 * means what a client of the OCI API sees: live manifests, live blob links,
 * tags whose manifest is live.
 */
import type { Digest } from "../../../protocol/digest.js";
import type {
  BlobRegister,
  ManifestRecord,
  ManifestRegister,
  RepoState,
  TagRecord,
  Write,
} from "../../../protocol/registers.js";
import { type RepoDigest, summarizeRepository } from "../../../protocol/summary.js";
import type { ConflictRecord, ReferrerRecord, TagHistoryEntry } from "./content.js";
import type { ImmutabilityReads } from "./immutability.js";
import type { RepoConfig, RepoConfigs } from "./repo-configs.js";
import { Batch, cacheHotKeys, END, getJson, type Page, readCommitted, type ViewDb } from "./store.js";

/** What the content projection answers; undefined means absent (never written, or deleted). */
export interface ContentReads {
  /** True when the repository has visible content (a live manifest or blob link). */
  repositoryExists(repo: string): Promise<boolean>;
  /** A live blob link; `size` -1 when linked only through a manifest (the blob store knows it). */
  blobLink(repo: string, digest: Digest): Promise<{ size: number } | undefined>;
  /** A live manifest's record. */
  manifest(repo: string, digest: Digest): Promise<ManifestRecord | undefined>;
  /** A manifest's register, deleted ones included. */
  manifestRegister(repo: string, digest: Digest): Promise<ManifestRegister | undefined>;
  /** The tag's register, including a deletion (digest null). */
  tagRecord(repo: string, tag: string): Promise<TagRecord | undefined>;
  /** The digest a tag shows: its register's, while that manifest is live. */
  visibleTag(repo: string, tag: string): Promise<Digest | undefined>;
  /** Every write a tag has seen, in clock order. */
  tagHistory(repo: string, tag: string): Promise<TagHistoryEntry[]>;
  /** Every tag of a repository that was ever written (deleted ones included), sorted. */
  historicTags(repo: string): Promise<string[]>;
  /** Recorded conflicts on a tag (or every tag of the repository). */
  conflicts(repo: string, tag?: string): Promise<ConflictRecord[]>;
  /** Live tags of a repository in lexical order, after `last`, at most `n`. */
  tags(repo: string, n: number, last?: string): Promise<Page<string>>;
  /** Repositories with visible content in lexical order, after `last`, at most `n`. */
  repositories(n: number, last?: string): Promise<Page<string>>;
  /** Repositories ever written whose names start with `prefix`, in lexical order. */
  repositoriesUnder(prefix: string): Promise<string[]>;
  /** Every visible tag of `repo` with the digest it points at, in lexical order of tag. */
  liveTags(repo: string): Promise<Array<{ tag: string; digest: Digest }>>;
  /** Digests of every live manifest in `repo`, in lexical order. */
  manifestDigests(repo: string): Promise<Digest[]>;
  /** Digests of every live blob link in `repo`, in lexical order. */
  blobDigests(repo: string): Promise<Digest[]>;
  /** The repository's summary (protocol/summary.ts) over its visible state. */
  summarize(repo: string): Promise<RepoDigest>;
  /** Every register of a repository, deletions included. */
  repoState(repo: string): Promise<RepoState>;
  /** Manifests in `repo` whose subject is `digest`, optionally of one artifact type. */
  referrers(repo: string, digest: Digest, artifactType?: string): Promise<ReferrerRecord[]>;
  /** The tag rule and home table in force for a repository (the longest matching scope). Synchronous. */
  configFor(repo: string): RepoConfig;
  /** Every configured scope. Synchronous. */
  configs(): RepoConfig[];
  /** Immutable-tag rules (./immutability.ts). */
  readonly immutability: ImmutabilityReads;
  /** Garbage collections of a blob, in any region (why a blob is missing), oldest region name first. */
  collections(digest: Digest): Promise<CollectionRecord[]>;
}

/** A blob's collection by a GC run (content.ts applies `gc.collected`). */
export interface CollectionRecord {
  digest: Digest;
  region: string;
  runId: string;
  reason: string;
  size: number;
  /** The repositories whose links the collection dropped. */
  repos: string[];
  at: string;
  actor: string;
}

export class ContentReadsImpl implements ContentReads {
  readonly #db: ViewDb;
  readonly #repoConfigs: RepoConfigs;
  readonly immutability: ImmutabilityReads;

  constructor(db: ViewDb, configs: RepoConfigs, immutability: ImmutabilityReads) {
    this.#db = db;
    this.#repoConfigs = configs;
    this.immutability = immutability;
    // Blob link registers and repository tombstones: read by every blob push up to three times.
    cacheHotKeys(db, ["b!", "Z!"]);
  }

  configFor(repo: string): RepoConfig {
    return this.#repoConfigs.configFor(repo);
  }

  configs(): RepoConfig[] {
    return this.#repoConfigs.configs();
  }

  async repositoryExists(repo: string): Promise<boolean> {
    if ((await this.#db.get(`r!${repo}`)) === undefined) return false;
    // Visible content: a live manifest (every visible tag points at one) or a live blob link.
    for await (const _ of this.#db.keys({ gt: `L!${repo}!`, lt: `L!${repo}!${END}`, limit: 1 })) return true;
    for await (const raw of this.#db.values({ gt: `b!${repo}!`, lt: `b!${repo}!${END}` }))
      if ((JSON.parse(raw) as BlobRegister).live) return true;
    return false;
  }

  async blobLink(repo: string, digest: Digest): Promise<{ size: number } | undefined> {
    const raw = await readCommitted(this.#db, `b!${repo}!${digest}`);
    const register = raw === undefined ? undefined : (JSON.parse(raw) as BlobRegister);
    return register?.live ? { size: register.size } : undefined;
  }

  async manifest(repo: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const register = await this.manifestRegister(repo, digest);
    return register?.live && register.record !== null ? register.record : undefined;
  }

  manifestRegister(repo: string, digest: Digest): Promise<ManifestRegister | undefined> {
    return getJson<ManifestRegister>(this.#db, `M!${repo}!${digest}`);
  }

  tagRecord(repo: string, tag: string): Promise<TagRecord | undefined> {
    return getJson<TagRecord>(this.#db, `t!${repo}!${tag}`);
  }

  async visibleTag(repo: string, tag: string): Promise<Digest | undefined> {
    const record = await this.tagRecord(repo, tag);
    if (!record?.digest) return undefined;
    return (await this.manifest(repo, record.digest)) === undefined ? undefined : record.digest;
  }

  async tagHistory(repo: string, tag: string): Promise<TagHistoryEntry[]> {
    const prefix = `h!${repo}!${tag}!`;
    const out: TagHistoryEntry[] = [];
    for await (const raw of this.#db.values({ gt: prefix, lt: prefix + END })) out.push(JSON.parse(raw));
    return out;
  }

  async historicTags(repo: string): Promise<string[]> {
    const prefix = `h!${repo}!`;
    const tags = new Set<string>();
    for await (const key of this.#db.keys({ gt: prefix, lt: prefix + END })) {
      const rest = key.slice(prefix.length);
      tags.add(rest.slice(0, rest.indexOf("!")));
    }
    return [...tags].sort();
  }

  async conflicts(repo: string, tag?: string): Promise<ConflictRecord[]> {
    const prefix = tag === undefined ? `c!${repo}!` : `c!${repo}!${tag}!`;
    const out: ConflictRecord[] = [];
    for await (const raw of this.#db.values({ gt: prefix, lt: prefix + END })) out.push(JSON.parse(raw));
    return out;
  }

  async tags(repo: string, n: number, last?: string): Promise<Page<string>> {
    const prefix = `t!${repo}!`;
    const items: string[] = [];
    const it = this.#db.iterator({ gt: prefix + (last ?? ""), lt: prefix + END });
    try {
      // In batches: one lookup of the batch's manifests' liveness, not one per tag.
      for (let entries = await it.nextv(256); entries.length > 0; entries = await it.nextv(256)) {
        const tags = entries.map(([key, value]) => ({
          tag: key.slice(prefix.length),
          digest: (JSON.parse(value) as TagRecord).digest,
        }));
        const live = await this.#liveAmong(
          repo,
          tags.map((t) => t.digest),
        );
        for (const { tag, digest } of tags) {
          if (digest === null || !live.has(digest)) continue;
          if (items.length === n) return { items, more: true };
          items.push(tag);
        }
      }
    } finally {
      await it.close();
    }
    return { items, more: false };
  }

  /** Which of these digests are live manifests of `repo`. */
  async #liveAmong(repo: string, digests: Array<Digest | null>): Promise<Set<Digest>> {
    const unique = [...new Set(digests.filter((d): d is Digest => d !== null))];
    const found = await this.#db.getMany(unique.map((d) => `L!${repo}!${d}`));
    return new Set(unique.filter((_, i) => found[i] !== undefined));
  }

  async repositories(n: number, last?: string): Promise<Page<string>> {
    const items: string[] = [];
    for await (const key of this.#db.keys({ gt: `r!${last ?? ""}`, lt: `r!${END}` })) {
      const repo = key.slice(2);
      if (!(await this.repositoryExists(repo))) continue;
      if (items.length === n) return { items, more: true };
      items.push(repo);
    }
    return { items, more: false };
  }

  async repositoriesUnder(prefix: string): Promise<string[]> {
    const items: string[] = [];
    for await (const key of this.#db.keys({ gte: `r!${prefix}`, lt: `r!${prefix}${END}` }))
      items.push(key.slice(2));
    return items;
  }

  async liveTags(repo: string): Promise<Array<{ tag: string; digest: Digest }>> {
    const prefix = `t!${repo}!`;
    const out: Array<{ tag: string; digest: Digest }> = [];
    const live = new Set(await this.manifestDigests(repo));
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + END })) {
      const { digest } = JSON.parse(value) as TagRecord;
      if (digest !== null && live.has(digest)) out.push({ tag: key.slice(prefix.length), digest });
    }
    return out;
  }

  async manifestDigests(repo: string): Promise<Digest[]> {
    const prefix = `L!${repo}!`;
    const out: Digest[] = [];
    for await (const key of this.#db.keys({ gt: prefix, lt: prefix + END }))
      out.push(key.slice(prefix.length) as Digest);
    return out;
  }

  async blobDigests(repo: string): Promise<Digest[]> {
    const prefix = `b!${repo}!`;
    const out: Digest[] = [];
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + END })) {
      if ((JSON.parse(value) as BlobRegister).live) out.push(key.slice(prefix.length) as Digest);
    }
    return out;
  }

  async summarize(repo: string): Promise<RepoDigest> {
    return summarizeRepository(repo, {
      tags: await this.liveTags(repo),
      manifests: await this.manifestDigests(repo),
      blobs: await this.blobDigests(repo),
    });
  }

  async repoState(repo: string): Promise<RepoState> {
    const state: RepoState = { repo, tags: [], manifests: [], blobs: [] };
    for (const [tag, raw] of await new Batch(this.#db).entriesUnder(`t!${repo}!`))
      state.tags.push({ tag, record: JSON.parse(raw) });
    for (const [digest, raw] of await new Batch(this.#db).entriesUnder(`M!${repo}!`))
      state.manifests.push({ digest: digest as Digest, register: JSON.parse(raw) });
    for (const [digest, raw] of await new Batch(this.#db).entriesUnder(`b!${repo}!`))
      state.blobs.push({ digest: digest as Digest, register: JSON.parse(raw) });
    state.deleted = (await getJson<{ w: Write }>(this.#db, `Z!${repo}`))?.w;
    return state;
  }

  async referrers(repo: string, digest: Digest, artifactType?: string): Promise<ReferrerRecord[]> {
    const prefix = `R!${repo}!${digest}!`;
    const out: ReferrerRecord[] = [];
    for await (const value of this.#db.values({ gt: prefix, lt: prefix + END })) {
      const r = JSON.parse(value) as ReferrerRecord;
      if (artifactType === undefined || r.artifactType === artifactType) out.push(r);
    }
    return out;
  }

  async collections(digest: Digest): Promise<CollectionRecord[]> {
    const prefix = `G!${digest}!`;
    const out: CollectionRecord[] = [];
    for await (const value of this.#db.values({ gt: prefix, lt: prefix + END })) out.push(JSON.parse(value));
    return out;
  }
}
