/**
 * MetadataView: the node's local materialization of the region's log in a
 * `level` database — repositories, blob links, manifests, tags, the referrers
 * index. It is derived state: `meridian rebuild` deletes it and replays the
 * log into an identical one.
 *
 * Keys (values are JSON; `!` cannot occur in names, tags or digests, and sorts
 * before every character that can, so prefix scans never bleed into `repo/sub`):
 *
 *   m!seq                          last applied log sequence
 *   r!<repo>                       repository exists
 *   b!<repo>!<digest>              blob linked into repo      {size}
 *   M!<repo>!<digest>              manifest in repo           ManifestRecord
 *   t!<repo>!<tag>                 tag register               TagRecord (digest null = deleted)
 *   d!<repo>!<digest>!<tag>        reverse tag index          ""
 *   R!<repo>!<subject>!<digest>    referrer of subject        ReferrerRecord
 *   e!<eventId>                    applied event (de-duplication)  seq
 *   o!<origin>                     highest origin-stream sequence applied from a replica
 *
 * Events are applied strictly in log order, one batch per level write, with
 * the applied sequence stored in the same batch: a crash leaves the view at a
 * batch boundary and the next start resumes from there.
 */
import { Level } from "level";
import type { Digest } from "../../protocol/digest.js";
import type { RegistryEvent } from "../../protocol/events.js";
import type { Hlc } from "../../protocol/hlc.js";
import { mergeTag, type TagMergeRule, type TagWrite } from "../../protocol/tag-merge.js";
import type { LoggedEvent } from "./event-log.js";

export interface ManifestRecord {
  mediaType: string;
  size: number;
  blobs: Digest[];
  manifests: Digest[];
  subject?: Digest;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface TagRecord {
  digest: Digest | null;
  hlc: Hlc;
  origin: string;
  eventId: string;
  seq: number;
}

export interface ReferrerRecord {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface Page<T> {
  items: T[];
  /** True when more items follow the last one returned. */
  more: boolean;
}

const END = "\xff";

export class MetadataView {
  readonly #db: Level<string, string>;
  readonly #tagRule: TagMergeRule;
  #applied = 0;
  #chain: Promise<void> = Promise.resolve();
  readonly #waiters = new Set<{ seq: number; resolve: () => void }>();
  /** Called with each applied event (the node's clock observes remote timestamps). */
  onApplied: ((event: RegistryEvent) => void) | undefined;

  constructor(location: string, options: { tagRule?: TagMergeRule } = {}) {
    this.#db = new Level<string, string>(location);
    this.#tagRule = options.tagRule ?? "lww";
  }

  async open(): Promise<void> {
    await this.#db.open();
    this.#applied = Number((await this.#db.get("m!seq")) ?? 0);
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#db.close();
  }

  /** Sequence of the last applied event. */
  get appliedSeq(): number {
    return this.#applied;
  }

  /**
   * Apply events read from the log, in order. Events at or below the applied
   * sequence are skipped, so redelivery is harmless. With `contiguous`, an
   * event that does not directly follow the applied sequence stops the batch
   * (the writer's fast path; the log tail fills any gap).
   */
  apply(entries: LoggedEvent[], contiguous = false): Promise<void> {
    const run = this.#chain.then(() => this.#applyNow(entries, contiguous));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once the view has applied `seq`; rejects after `timeoutMs`. */
  waitFor(seq: number, timeoutMs: number): Promise<void> {
    if (this.#applied >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        seq,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`view did not reach sequence ${seq} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  async #applyNow(entries: LoggedEvent[], contiguous: boolean): Promise<void> {
    const batch = new Batch(this.#db);
    let applied = this.#applied;
    const done: RegistryEvent[] = [];
    for (const { seq, event } of entries) {
      if (seq <= applied) continue;
      if (contiguous && seq !== applied + 1) break;
      applied = seq;
      if ((await batch.get(`e!${event.id}`)) !== undefined) continue;
      batch.put(`e!${event.id}`, String(seq));
      await this.#applyEvent(batch, seq, event);
      if (event.srcSeq !== undefined) {
        const key = `o!${event.origin}`;
        if (Number((await batch.get(key)) ?? 0) < event.srcSeq) batch.put(key, String(event.srcSeq));
      }
      done.push(event);
    }
    if (applied === this.#applied) return;
    batch.put("m!seq", String(applied));
    await batch.write();
    this.#applied = applied;
    for (const event of done) this.onApplied?.(event);
    for (const w of this.#waiters) {
      if (w.seq <= applied) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
  }

  async #applyEvent(batch: Batch, seq: number, e: RegistryEvent): Promise<void> {
    switch (e.type) {
      case "blob.pushed":
        batch.put(`r!${e.repo}`, "{}");
        batch.put(`b!${e.repo}!${e.digest}`, JSON.stringify({ size: e.size }));
        return;
      case "manifest.pushed": {
        const record: ManifestRecord = {
          mediaType: e.mediaType,
          size: e.size,
          blobs: e.blobs,
          manifests: e.manifests,
          subject: e.subject,
          artifactType: e.artifactType,
          annotations: e.annotations,
        };
        batch.put(`r!${e.repo}`, "{}");
        batch.put(`M!${e.repo}!${e.digest}`, JSON.stringify(record));
        if (e.subject !== undefined) {
          const referrer: ReferrerRecord = {
            mediaType: e.mediaType,
            digest: e.digest,
            size: e.size,
            artifactType: e.artifactType,
            annotations: e.annotations,
          };
          batch.put(`R!${e.repo}!${e.subject}!${e.digest}`, JSON.stringify(referrer));
        }
        if (e.tag !== undefined) {
          await this.#writeTag(batch, e.repo, e.tag, {
            digest: e.digest,
            hlc: e.hlc,
            origin: e.origin,
            eventId: e.id,
            seq,
          });
        }
        return;
      }
      case "tag.set":
      case "tag.deleted": {
        const digest = e.type === "tag.set" ? e.digest : null;
        await this.#writeTag(batch, e.repo, e.tag, {
          digest,
          hlc: e.hlc,
          origin: e.origin,
          eventId: e.id,
          seq,
        });
        return;
      }
      case "manifest.deleted": {
        const key = `M!${e.repo}!${e.digest}`;
        const raw = await batch.get(key);
        if (raw === undefined) return;
        const record = JSON.parse(raw) as ManifestRecord;
        batch.del(key);
        if (record.subject !== undefined) batch.del(`R!${e.repo}!${record.subject}!${e.digest}`);
        // Deleting a manifest deletes the tags that point at it (as CNCF Distribution does).
        for (const tag of await batch.keysUnder(`d!${e.repo}!${e.digest}!`)) {
          await this.#writeTag(batch, e.repo, tag, {
            digest: null,
            hlc: e.hlc,
            origin: e.origin,
            eventId: e.id,
            seq,
          });
        }
        return;
      }
      case "blob.deleted":
        batch.del(`b!${e.repo}!${e.digest}`);
        return;
    }
  }

  async #writeTag(batch: Batch, repo: string, tag: string, incoming: TagRecord): Promise<void> {
    const key = `t!${repo}!${tag}`;
    const raw = await batch.get(key);
    const current = raw === undefined ? undefined : (JSON.parse(raw) as TagRecord);
    const winner = mergeTag(this.#tagRule, current && toWrite(current), toWrite(incoming));
    if (winner.eventId !== incoming.eventId) return;
    if (current?.digest) batch.del(`d!${repo}!${current.digest}!${tag}`);
    if (incoming.digest) batch.put(`d!${repo}!${incoming.digest}!${tag}`, "");
    batch.put(key, JSON.stringify(incoming));
  }

  // ---- reads ----

  async repositoryExists(repo: string): Promise<boolean> {
    return (await this.#db.get(`r!${repo}`)) !== undefined;
  }

  async blobLink(repo: string, digest: Digest): Promise<{ size: number } | undefined> {
    const raw = await this.#db.get(`b!${repo}!${digest}`);
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  async manifest(repo: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const raw = await this.#db.get(`M!${repo}!${digest}`);
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  /** The tag's register, including a deletion (digest null); undefined if never written. */
  async tagRecord(repo: string, tag: string): Promise<TagRecord | undefined> {
    const raw = await this.#db.get(`t!${repo}!${tag}`);
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  /** Live tags of a repository in lexical order, after `last`, at most `n`. */
  async tags(repo: string, n: number, last?: string): Promise<Page<string>> {
    const prefix = `t!${repo}!`;
    const items: string[] = [];
    for await (const [key, value] of this.#db.iterator({
      gt: prefix + (last ?? ""),
      lt: prefix + END,
    })) {
      if ((JSON.parse(value) as TagRecord).digest === null) continue;
      if (items.length === n) return { items, more: true };
      items.push(key.slice(prefix.length));
    }
    return { items, more: false };
  }

  /** Repositories in lexical order, after `last`, at most `n`. */
  async repositories(n: number, last?: string): Promise<Page<string>> {
    const items: string[] = [];
    for await (const key of this.#db.keys({ gt: `r!${last ?? ""}`, lt: `r!${END}`, limit: n + 1 })) {
      items.push(key.slice(2));
    }
    const more = items.length > n;
    return { items: more ? items.slice(0, n) : items, more };
  }

  /** Repositories whose names start with `prefix`, in lexical order (every one of them). */
  async repositoriesUnder(prefix: string): Promise<string[]> {
    const items: string[] = [];
    for await (const key of this.#db.keys({ gte: `r!${prefix}`, lt: `r!${prefix}${END}` })) {
      items.push(key.slice(2));
    }
    return items;
  }

  /** Every live tag of `repo` with the digest it points at, in lexical order of tag. */
  async liveTags(repo: string): Promise<Array<{ tag: string; digest: Digest }>> {
    const prefix = `t!${repo}!`;
    const out: Array<{ tag: string; digest: Digest }> = [];
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + END })) {
      const { digest } = JSON.parse(value) as TagRecord;
      if (digest !== null) out.push({ tag: key.slice(prefix.length), digest });
    }
    return out;
  }

  /** Digests of every manifest in `repo`, in lexical order. */
  async manifestDigests(repo: string): Promise<Digest[]> {
    const prefix = `M!${repo}!`;
    const out: Digest[] = [];
    for await (const key of this.#db.keys({ gt: prefix, lt: prefix + END })) {
      out.push(key.slice(prefix.length) as Digest);
    }
    return out;
  }

  /** Manifests in `repo` whose subject is `digest`, optionally of one artifact type. */
  async referrers(repo: string, digest: Digest, artifactType?: string): Promise<ReferrerRecord[]> {
    const prefix = `R!${repo}!${digest}!`;
    const out: ReferrerRecord[] = [];
    for await (const value of this.#db.values({ gt: prefix, lt: prefix + END })) {
      const r = JSON.parse(value) as ReferrerRecord;
      if (artifactType === undefined || r.artifactType === artifactType) out.push(r);
    }
    return out;
  }

  /** Highest sequence of each other region's stream applied here through replicas, by origin. */
  async originSeqs(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for await (const [key, value] of this.#db.iterator({ gt: "o!", lt: `o!${END}` }))
      out[key.slice(2)] = Number(value);
    return out;
  }

  /** Every key and value, in order (tests compare views with it). */
  async dump(): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    for await (const entry of this.#db.iterator()) out.push(entry);
    return out;
  }
}

function toWrite(r: TagRecord): TagWrite {
  return { digest: r.digest ?? undefined, hlc: r.hlc, origin: r.origin, eventId: r.eventId };
}

/** A level batch whose reads see its own pending writes. */
class Batch {
  readonly #pending = new Map<string, string | undefined>();
  constructor(private readonly db: Level<string, string>) {}

  async get(key: string): Promise<string | undefined> {
    if (this.#pending.has(key)) return this.#pending.get(key);
    return this.db.get(key);
  }
  put(key: string, value: string): void {
    this.#pending.set(key, value);
  }
  del(key: string): void {
    this.#pending.set(key, undefined);
  }
  /** Suffixes of live keys under a prefix, pending writes included. */
  async keysUnder(prefix: string): Promise<string[]> {
    const found = new Set<string>();
    for await (const key of this.db.keys({ gt: prefix, lt: prefix + END })) found.add(key);
    for (const [key, value] of this.#pending) {
      if (!key.startsWith(prefix)) continue;
      if (value === undefined) found.delete(key);
      else found.add(key);
    }
    return [...found].sort().map((k) => k.slice(prefix.length));
  }
  async write(): Promise<void> {
    await this.db.batch(
      [...this.#pending].map(([key, value]) =>
        value === undefined ? { type: "del" as const, key } : { type: "put" as const, key, value },
      ),
    );
  }
}
