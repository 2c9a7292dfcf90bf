/**
 * MetadataView: the node's local materialization of the region's log in a
 * `level` database — repositories, blob links, manifests, tags, the referrers
 * index, and the admin objects (merge rules, policies, runs, alerts). It is
 * derived state: `meridian rebuild` deletes it and replays the log into an
 * identical one.
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
 *
 *   m!seq                          last applied log sequence
 *   m!schema                       layout version (a mismatch clears the view for a replay)
 *   r!<repo>                       repository has had content
 *   b!<repo>!<digest>              blob link register         BlobRegister
 *   M!<repo>!<digest>              manifest register          ManifestRegister
 *   L!<repo>!<digest>              manifest is live (index for tag listings)  ""
 *   t!<repo>!<tag>                 tag register               TagRecord (digest null = deleted)
 *   h!<repo>!<tag>!<hlc>!<origin>!<id>  every write to the tag  TagHistoryEntry
 *   R!<repo>!<subject>!<digest>    referrer of subject (live) ReferrerRecord
 *   Z!<repo>                       repository tombstone       {w: Write}
 *   c!<repo>!<tag>!<loser id>      a recorded tag conflict    ConflictRecord
 *   C!<scope>                      tag rule of a scope        {tagMerge, durability?, w}
 *   H!<scope>!<epoch>              home region at an epoch    {home, w}
 *   P!<name>                       replication policy         {policy | null, w}
 *   Q!<name>!<runId>               a policy run               RunRecord
 *   A!<hlc>!<id>                   an alert                   AlertRecord
 *   B!<policy>                     last delete-breaker reset  {w}
 *   u!<user>                       a user                     {value: UserRecord | null, w}
 *   x!<robot>                      a robot account            {value: RobotRecord | null, w}
 *   j!<project>                    a project's visibility     {value: {public}, w}
 *   g!<project>!<user>             a membership               {value: {role} | null, w}
 *   D!<user>                       the user's latest deletion {w}: memberships older than it are void
 *   e!<eventId>                    applied event (de-duplication)  seq
 *   o!<origin>                     highest origin-stream sequence applied from a replica
 *
 * A user's deletion removes their memberships (finding 11): it nulls every
 * membership register older than it and stays as a barrier (D!), so a
 * membership written before the deletion that arrives after it (another
 * region's stream) is void too, and a user re-created under the same name
 * starts with no roles. Deterministic: the outcome depends on the writes'
 * order, not their arrival order.
 *
 * With an `authority` (authentication on), identity and policy events are
 * checked when applied (protocol/event-authority.ts): an event without a
 * valid proof by the mesh's key, or whose actor could not have made it, is
 * recorded as applied (so the log moves on) but changes nothing, and
 * `onRefused` hears of it.
 *
 * Events are applied strictly in log order, one batch per level write, with
 * the applied sequence stored in the same batch: a crash leaves the view at a
 * batch boundary and the next start resumes from there.
 */
import { Level } from "level";
import type { RobotGrant, Role } from "../../protocol/access.js";
import type { Digest } from "../../protocol/digest.js";
import { AUTHORITY_TYPES, authorizeEvent, type EventFacts } from "../../protocol/event-authority.js";
import {
  type ConflictSide,
  type RegistryEvent,
  type RepositoryConfigured,
  writeIdOf,
} from "../../protocol/events.js";
import { compareHlc, type Hlc } from "../../protocol/hlc.js";
import type {
  BlobRegister,
  ManifestRecord,
  ManifestRegister,
  RepoState,
  TagRecord,
  Write,
} from "../../protocol/registers.js";
import { type RepoDigest, summarizeRepository } from "../../protocol/summary.js";
import {
  compareWrites,
  foldWrites,
  type HomeTable,
  type TagMergeRule,
  type TagWrite,
} from "../../protocol/tag-merge.js";
import type { LoggedEvent } from "./event-log.js";

export type { BlobRegister, ManifestRecord, ManifestRegister, RepoState, TagRecord, Write };

/** Layout version of the keys above; bump when a value's shape changes. */
const VIEW_SCHEMA = "3";

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

export interface RunRecord {
  name: string;
  runId: string;
  requested?: { at: string; actor: string; origin: string };
  results: Record<string, { outcome: string; stats: Record<string, number>; error?: string; at: string }>;
}

export interface AlertRecord {
  kind: string;
  message: string;
  policy?: string;
  repo?: string;
  detail?: Record<string, unknown>;
  origin: string;
  at: string;
  id: string;
}

export interface RepoConfig {
  scope: string;
  tagMerge: TagMergeRule;
  homes: HomeTable;
  /** `async` or `sync(k)` (protocol/events.ts parseDurability). */
  durability: string;
}

interface StoredConfig {
  tagMerge: TagMergeRule;
  durability: string;
  w: Write;
  homes: Record<number, string>;
}

export interface Page<T> {
  items: T[];
  /** True when more items follow the last one returned. */
  more: boolean;
}

const END = "\xff";

export class MetadataView {
  readonly #db: Level<string, string>;
  readonly #defaultRule: TagMergeRule;
  readonly #authority: EventAuthority | undefined;
  #applied = 0;
  #chain: Promise<void> = Promise.resolve();
  readonly #waiters = new Set<{ seq: number; resolve: () => void }>();
  /** Tag rules by scope (all of them: there are few), kept in step with C!/H!. */
  #configs = new Map<string, StoredConfig>();
  /** Called with each applied event (the node's clock observes remote timestamps). */
  onApplied: ((event: RegistryEvent, seq: number) => void) | undefined;
  /** Called with each identity or policy event refused by the authority check, and why. */
  onRefused: ((event: RegistryEvent, seq: number, reason: string) => void) | undefined;

  constructor(location: string, options: { tagRule?: TagMergeRule; authority?: EventAuthority } = {}) {
    this.#db = new Level<string, string>(location);
    this.#defaultRule = options.tagRule ?? "lww";
    this.#authority = options.authority;
  }

  async open(): Promise<void> {
    await this.#db.open();
    if ((await this.#db.get("m!schema")) !== VIEW_SCHEMA) {
      // An older layout: start over; the caller replays the log from the start.
      await this.#db.clear();
      await this.#db.put("m!schema", VIEW_SCHEMA);
    }
    this.#applied = Number((await this.#db.get("m!seq")) ?? 0);
    await this.#loadConfigs();
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
    const done: LoggedEvent[] = [];
    let configsChanged = false;
    for (const entry of entries) {
      const { seq, event } = entry;
      if (seq <= applied) continue;
      if (contiguous && seq !== applied + 1) break;
      applied = seq;
      if ((await batch.get(`e!${event.id}`)) !== undefined) continue;
      const refusal = await this.#refusal(batch, event);
      if (refusal !== undefined) {
        // Not recorded under its id: a forgery carrying a real event's id must not shadow it.
        this.onRefused?.(event, seq, refusal);
        continue;
      }
      batch.put(`e!${event.id}`, String(seq));
      if (event.type === "repository.configured") configsChanged = true;
      await this.#applyEvent(batch, seq, event);
      if (event.srcSeq !== undefined) {
        const key = `o!${event.origin}`;
        if (Number((await batch.get(key)) ?? 0) < event.srcSeq) batch.put(key, String(event.srcSeq));
      }
      done.push(entry);
    }
    if (applied === this.#applied) return;
    batch.put("m!seq", String(applied));
    try {
      await batch.write();
    } catch (err) {
      if (configsChanged) await this.#loadConfigs();
      throw err;
    }
    this.#applied = applied;
    for (const { event, seq } of done) this.onApplied?.(event, seq);
    for (const w of this.#waiters) {
      if (w.seq <= applied) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** Why an identity or policy event must not change the view (undefined: apply it). */
  async #refusal(batch: Batch, e: RegistryEvent): Promise<string | undefined> {
    if (this.#authority === undefined || !AUTHORITY_TYPES.has(e.type)) return undefined;
    if (e.proof === undefined) return "no proof";
    if (!(await this.#authority.verify(e))) return "invalid proof";
    const facts: EventFacts = {};
    const actor = await getJson<{ value: UserRecord | null }>(batch, `u!${e.actor}`);
    if (actor?.value != null)
      facts.actorUser = { systemAdmin: actor.value.systemAdmin, roles: await rolesIn(batch, e.actor) };
    if (e.type === "user.set") {
      const target = await getJson<{ value: UserRecord | null; w: Write }>(batch, `u!${e.name}`);
      if (target?.value != null) facts.targetUser = { systemAdmin: target.value.systemAdmin };
      if (target !== undefined) facts.targetWrittenBy = target.w.actor;
    }
    if (e.type === "robot.set" || e.type === "robot.deleted") {
      const robot = await getJson<{ value: RobotRecord | null }>(batch, `x!${e.name}`);
      if (robot?.value != null) facts.targetRobot = { grants: robot.value.grants };
    }
    const decision = authorizeEvent(e, facts);
    return decision.allowed ? undefined : decision.reason;
  }

  async #applyEvent(batch: Batch, seq: number, e: RegistryEvent): Promise<void> {
    const w = writeOf(e);
    switch (e.type) {
      case "blob.pushed":
        await this.#writeBlob(batch, e.repo, e.digest, e.size, true, w);
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
        if (e.platforms !== undefined) record.platforms = e.platforms;
        await this.#writeManifest(batch, e.repo, e.digest, record, true, w);
        // A manifest links what it references: its blobs are pullable through the repository.
        for (const blob of e.blobs) await this.#writeBlob(batch, e.repo, blob, undefined, true, w);
        if (e.tag !== undefined) await this.#writeTag(batch, e.repo, e.tag, e.digest, w, seq, e.type, e.prev);
        return;
      }
      case "tag.set":
        await this.#writeTag(batch, e.repo, e.tag, e.digest, w, seq, e.type, e.prev);
        return;
      case "tag.deleted":
        await this.#writeTag(batch, e.repo, e.tag, null, w, seq, e.type, e.prev);
        return;
      case "manifest.deleted":
        await this.#writeManifest(batch, e.repo, e.digest, null, false, w);
        return;
      case "blob.deleted":
        await this.#writeBlob(batch, e.repo, e.digest, undefined, false, w);
        return;
      case "repository.deleted":
        await this.#deleteRepository(batch, e.repo, w, seq);
        return;
      case "tag.conflict": {
        const record: ConflictRecord = {
          repo: e.repo,
          tag: e.tag,
          winner: e.winner,
          loser: e.loser,
          origin: e.origin,
          at: e.at,
        };
        batch.put(`c!${e.repo}!${e.tag}!${e.loser.id}`, JSON.stringify(record));
        return;
      }
      case "repository.configured":
        await this.#configure(batch, e, w, seq);
        return;
      case "policy.set":
      case "policy.deleted": {
        const key = `P!${e.name}`;
        const current = await getJson<{ w: Write }>(batch, key);
        if (current !== undefined && compareWrites(toTagWrite(current.w), toTagWrite(w)) >= 0) return;
        batch.put(key, JSON.stringify({ policy: e.type === "policy.set" ? e.policy : null, w }));
        return;
      }
      case "policy.run":
      case "policy.run.finished": {
        const key = `Q!${e.name}!${e.runId}`;
        const run = (await getJson<RunRecord>(batch, key)) ?? { name: e.name, runId: e.runId, results: {} };
        if (e.type === "policy.run") run.requested = { at: e.at, actor: e.actor, origin: e.origin };
        else run.results[e.region] = { outcome: e.outcome, stats: e.stats, error: e.error, at: e.at };
        batch.put(key, JSON.stringify(run));
        return;
      }
      case "alert.raised": {
        const alert: AlertRecord = {
          kind: e.kind,
          message: e.message,
          policy: e.policy,
          repo: e.repo,
          detail: e.detail,
          origin: e.origin,
          at: e.at,
          id: w.id,
        };
        batch.put(`A!${hlcKey(e.hlc)}!${w.id}`, JSON.stringify(alert));
        return;
      }
      case "breaker.reset": {
        const key = `B!${e.name}`;
        const current = await getJson<{ w: Write }>(batch, key);
        if (current === undefined || compareWrites(toTagWrite(current.w), toTagWrite(w)) < 0)
          batch.put(key, JSON.stringify({ w }));
        return;
      }
      // Identities: last-writer-wins registers, a deletion being a write of null.
      case "user.set":
      case "user.deleted":
        await putRegister(batch, `u!${e.name}`, w, () =>
          e.type === "user.set" ? { passwordHash: e.passwordHash, systemAdmin: e.systemAdmin } : null,
        );
        if (e.type === "user.deleted") await this.#deleteMemberships(batch, e.name, w);
        return;
      case "robot.set":
      case "robot.deleted":
        await putRegister(batch, `x!${e.name}`, w, () =>
          e.type === "robot.set"
            ? { secretHash: e.secretHash, expiresAt: e.expiresAt, grants: e.grants }
            : null,
        );
        return;
      case "project.set":
        await putRegister(batch, `j!${e.name}`, w, () => ({ public: e.public }));
        return;
      case "member.set": {
        // A membership older than the user's deletion died with that user.
        const deleted = await getJson<{ w: Write }>(batch, `D!${e.user}`);
        const voided = deleted !== undefined && compareWrites(toTagWrite(w), toTagWrite(deleted.w)) < 0;
        await putRegister(batch, `g!${e.project}!${e.user}`, voided ? deleted.w : w, () =>
          e.role === null || voided ? null : { role: e.role },
        );
        return;
      }
    }
  }

  /** A user's deletion: a barrier for their memberships, and every older one removed. */
  async #deleteMemberships(batch: Batch, user: string, w: Write): Promise<void> {
    const key = `D!${user}`;
    const current = await getJson<{ w: Write }>(batch, key);
    if (current !== undefined && compareWrites(toTagWrite(current.w), toTagWrite(w)) >= 0) return;
    batch.put(key, JSON.stringify({ w }));
    for (const [suffix, raw] of await batch.entriesUnder("g!")) {
      if (suffix.slice(suffix.lastIndexOf("!") + 1) !== user) continue;
      const member = JSON.parse(raw) as { value: unknown; w: Write };
      if (compareWrites(toTagWrite(member.w), toTagWrite(w)) < 0)
        batch.put(`g!${suffix}`, JSON.stringify({ value: null, w }));
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
    return z !== undefined && compareWrites(toTagWrite(w), toTagWrite(z.w)) < 0 ? z.w : undefined;
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
    if (current !== undefined && compareWrites(toTagWrite(current.w), toTagWrite(w)) >= 0) {
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
    if (current !== undefined && compareWrites(toTagWrite(current.w), toTagWrite(w)) >= 0) {
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
    const config = this.configFor(repo);
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
    const survivors = entries.filter(
      (h) => z === undefined || compareWrites(toTagWrite(h.w), toTagWrite(z.w)) > 0,
    );
    const config = this.configFor(repo);
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
    if (z !== undefined && compareWrites(toTagWrite(z.w), toTagWrite(w)) >= 0) return;
    batch.put(zKey, JSON.stringify({ w }));
    batch.put(`r!${repo}`, "{}");
    const older = (other: Write) => compareWrites(toTagWrite(other), toTagWrite(w)) < 0;
    for (const [suffix, raw] of await batch.entriesUnder(`M!${repo}!`)) {
      const register = JSON.parse(raw) as ManifestRegister;
      if (!older(register.w)) continue;
      batch.put(`M!${repo}!${suffix}`, JSON.stringify({ ...register, live: false, w }));
      batch.del(`L!${repo}!${suffix}`);
      if (register.record?.subject !== undefined) batch.del(`R!${repo}!${register.record.subject}!${suffix}`);
    }
    for (const [suffix, raw] of await batch.entriesUnder(`b!${repo}!`)) {
      const register = JSON.parse(raw) as BlobRegister;
      if (older(register.w))
        batch.put(`b!${repo}!${suffix}`, JSON.stringify({ ...register, live: false, w }));
    }
    for (const tag of await batch.keysUnder(`t!${repo}!`)) await this.#recomputeTag(batch, repo, tag, seq);
  }

  async #configure(batch: Batch, e: RepositoryConfigured, w: Write, seq: number): Promise<void> {
    let changed = false;
    const ruleKey = `C!${e.scope}`;
    const current = await getJson<{ tagMerge: TagMergeRule; w: Write }>(batch, ruleKey);
    if (current === undefined || compareWrites(toTagWrite(current.w), toTagWrite(w)) < 0) {
      batch.put(ruleKey, JSON.stringify({ tagMerge: e.tagMerge, durability: e.durability, w }));
      changed = true;
    }
    if (e.home !== undefined) {
      const homeKey = `H!${e.scope}!${String(e.epoch ?? 0).padStart(12, "0")}`;
      const home = await getJson<{ home: string; w: Write }>(batch, homeKey);
      if (home === undefined || compareWrites(toTagWrite(home.w), toTagWrite(w)) < 0) {
        batch.put(homeKey, JSON.stringify({ home: e.home, w }));
        changed = true;
      }
    }
    if (!changed) return;
    await this.#loadConfigs(batch);
    // Every tag under the scope is refolded under the rule now in force.
    const repos = e.scope.endsWith("/") || e.scope === "" ? await this.repositoriesUnder(e.scope) : [e.scope];
    for (const repo of repos) {
      // Every tag written has history (a tag whose writes were all ignored has no register yet).
      const tags = new Set((await batch.keysUnder(`h!${repo}!`)).map((k) => k.slice(0, k.indexOf("!"))));
      for (const tag of tags) await this.#recomputeTag(batch, repo, tag, seq);
    }
  }

  async #loadConfigs(source: Batch | Level<string, string> = this.#db): Promise<void> {
    const configs = new Map<string, StoredConfig>();
    const batch = source instanceof Batch ? source : new Batch(source);
    for (const [scope, raw] of await batch.entriesUnder("C!")) {
      const { tagMerge, durability, w } = JSON.parse(raw) as Omit<StoredConfig, "homes">;
      configs.set(scope, { tagMerge, durability: durability ?? "async", w, homes: {} });
    }
    for (const [suffix, raw] of await batch.entriesUnder("H!")) {
      const cut = suffix.lastIndexOf("!");
      const scope = suffix.slice(0, cut);
      const epoch = Number(suffix.slice(cut + 1));
      const config = configs.get(scope);
      if (config !== undefined) config.homes[epoch] = (JSON.parse(raw) as { home: string }).home;
    }
    this.#configs = configs;
  }

  /** The tag rule and home table in force for a repository (the longest matching scope). */
  configFor(repo: string): RepoConfig {
    let best: string | undefined;
    for (const scope of this.#configs.keys()) {
      const matches = scope === repo || scope === "" || (scope.endsWith("/") && repo.startsWith(scope));
      if (matches && (best === undefined || scope.length > best.length)) best = scope;
    }
    if (best === undefined) return { scope: "", tagMerge: this.#defaultRule, homes: {}, durability: "async" };
    const c = this.#configs.get(best)!;
    return { scope: best, tagMerge: c.tagMerge, homes: c.homes, durability: c.durability };
  }

  /** Every configured scope. */
  configs(): RepoConfig[] {
    return [...this.#configs].map(([scope, c]) => ({
      scope,
      tagMerge: c.tagMerge,
      homes: c.homes,
      durability: c.durability,
    }));
  }

  // ---- reads ----

  async repositoryExists(repo: string): Promise<boolean> {
    if ((await this.#db.get(`r!${repo}`)) === undefined) return false;
    // Visible content: a live manifest (every visible tag points at one) or a live blob link.
    for await (const _ of this.#db.keys({ gt: `L!${repo}!`, lt: `L!${repo}!${END}`, limit: 1 })) return true;
    for await (const raw of this.#db.values({ gt: `b!${repo}!`, lt: `b!${repo}!${END}` }))
      if ((JSON.parse(raw) as BlobRegister).live) return true;
    return false;
  }

  /**
   * A live blob link. `size` is -1 when the blob was linked only through a
   * manifest that references it (replicated by policy without its own
   * blob.pushed): the blob store knows the size.
   */
  async blobLink(repo: string, digest: Digest): Promise<{ size: number } | undefined> {
    const register = await getJson<BlobRegister>(this.#db, `b!${repo}!${digest}`);
    return register?.live ? { size: register.size } : undefined;
  }

  /** A live manifest's record; undefined when absent or deleted. */
  async manifest(repo: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const register = await this.manifestRegister(repo, digest);
    return register?.live && register.record !== null ? register.record : undefined;
  }

  /** A manifest's register, deleted ones included. */
  manifestRegister(repo: string, digest: Digest): Promise<ManifestRegister | undefined> {
    return getJson<ManifestRegister>(this.#db, `M!${repo}!${digest}`);
  }

  /** The tag's register, including a deletion (digest null); undefined if never written. */
  tagRecord(repo: string, tag: string): Promise<TagRecord | undefined> {
    return getJson<TagRecord>(this.#db, `t!${repo}!${tag}`);
  }

  /** The digest a tag shows: its register's, while that manifest is live. */
  async visibleTag(repo: string, tag: string): Promise<Digest | undefined> {
    const record = await this.tagRecord(repo, tag);
    if (!record?.digest) return undefined;
    return (await this.manifest(repo, record.digest)) === undefined ? undefined : record.digest;
  }

  /** Every write a tag has seen, in clock order. */
  async tagHistory(repo: string, tag: string): Promise<TagHistoryEntry[]> {
    const prefix = `h!${repo}!${tag}!`;
    const out: TagHistoryEntry[] = [];
    for await (const raw of this.#db.values({ gt: prefix, lt: prefix + END })) out.push(JSON.parse(raw));
    return out;
  }

  /** Every tag of a repository that was ever written (deleted ones included). */
  async historicTags(repo: string): Promise<string[]> {
    const prefix = `h!${repo}!`;
    const tags = new Set<string>();
    for await (const key of this.#db.keys({ gt: prefix, lt: prefix + END })) {
      const rest = key.slice(prefix.length);
      tags.add(rest.slice(0, rest.indexOf("!")));
    }
    return [...tags].sort();
  }

  /** Recorded conflicts on a tag (or every tag of the repository). */
  async conflicts(repo: string, tag?: string): Promise<ConflictRecord[]> {
    const prefix = tag === undefined ? `c!${repo}!` : `c!${repo}!${tag}!`;
    const out: ConflictRecord[] = [];
    for await (const raw of this.#db.values({ gt: prefix, lt: prefix + END })) out.push(JSON.parse(raw));
    return out;
  }

  /** Live tags of a repository in lexical order, after `last`, at most `n`. */
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

  /** Repositories with visible content in lexical order, after `last`, at most `n`. */
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

  /** Repositories ever written whose names start with `prefix`, in lexical order (every one of them). */
  async repositoriesUnder(prefix: string): Promise<string[]> {
    const items: string[] = [];
    for await (const key of this.#db.keys({ gte: `r!${prefix}`, lt: `r!${prefix}${END}` })) {
      items.push(key.slice(2));
    }
    return items;
  }

  /** Every visible tag of `repo` with the digest it points at, in lexical order of tag. */
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

  /** Digests of every live manifest in `repo`, in lexical order. */
  async manifestDigests(repo: string): Promise<Digest[]> {
    const prefix = `L!${repo}!`;
    const out: Digest[] = [];
    for await (const key of this.#db.keys({ gt: prefix, lt: prefix + END }))
      out.push(key.slice(prefix.length) as Digest);
    return out;
  }

  /** Digests of every live blob link in `repo`, in lexical order. */
  async blobDigests(repo: string): Promise<Digest[]> {
    const prefix = `b!${repo}!`;
    const out: Digest[] = [];
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + END })) {
      if ((JSON.parse(value) as BlobRegister).live) out.push(key.slice(prefix.length) as Digest);
    }
    return out;
  }

  /** The repository's summary (protocol/summary.ts) over its visible state. */
  async summarize(repo: string): Promise<RepoDigest> {
    return summarizeRepository(repo, {
      tags: await this.liveTags(repo),
      manifests: await this.manifestDigests(repo),
      blobs: await this.blobDigests(repo),
    });
  }

  /** Every register of a repository, deletions included. */
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

  /** Replication policies (their normalized JSON), live ones only, by name. */
  async policies(): Promise<Array<{ name: string; policy: Record<string, unknown>; w: Write }>> {
    const out: Array<{ name: string; policy: Record<string, unknown>; w: Write }> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder("P!")) {
      const { policy, w } = JSON.parse(raw) as { policy: Record<string, unknown> | null; w: Write };
      if (policy !== null) out.push({ name, policy, w });
    }
    return out;
  }

  /** Runs of a policy, oldest request first (by run id order within equal times). */
  async runs(name: string): Promise<RunRecord[]> {
    const out: RunRecord[] = [];
    for (const [, raw] of await new Batch(this.#db).entriesUnder(`Q!${name}!`)) out.push(JSON.parse(raw));
    return out.sort((a, b) => (a.requested?.at ?? "").localeCompare(b.requested?.at ?? ""));
  }

  async run(name: string, runId: string): Promise<RunRecord | undefined> {
    return getJson<RunRecord>(this.#db, `Q!${name}!${runId}`);
  }

  /** Alerts in clock order (oldest first). */
  async alerts(): Promise<AlertRecord[]> {
    const out: AlertRecord[] = [];
    for await (const raw of this.#db.values({ gt: "A!", lt: `A!${END}` })) out.push(JSON.parse(raw));
    return out;
  }

  /** When the policy's delete breaker was last reset (undefined: never). */
  async breakerReset(policy: string): Promise<Write | undefined> {
    return (await getJson<{ w: Write }>(this.#db, `B!${policy}`))?.w;
  }

  // ---- identities (issue 6)

  async user(name: string): Promise<UserRecord | undefined> {
    return (await getJson<{ value: UserRecord | null }>(this.#db, `u!${name}`))?.value ?? undefined;
  }

  /** Every user, by name. */
  async users(): Promise<Array<{ name: string } & UserRecord>> {
    const out: Array<{ name: string } & UserRecord> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder("u!")) {
      const { value } = JSON.parse(raw) as { value: UserRecord | null };
      if (value !== null) out.push({ name, ...value });
    }
    return out;
  }

  async robot(name: string): Promise<RobotRecord | undefined> {
    return (await getJson<{ value: RobotRecord | null }>(this.#db, `x!${name}`))?.value ?? undefined;
  }

  /** Every robot account, by name. */
  async robots(): Promise<Array<{ name: string } & RobotRecord>> {
    const out: Array<{ name: string } & RobotRecord> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder("x!")) {
      const { value } = JSON.parse(raw) as { value: RobotRecord | null };
      if (value !== null) out.push({ name, ...value });
    }
    return out;
  }

  /** Every configured project, by name. */
  async projects(): Promise<Array<{ name: string; public: boolean }>> {
    const out: Array<{ name: string; public: boolean }> = [];
    for (const [name, raw] of await new Batch(this.#db).entriesUnder("j!")) {
      const { value } = JSON.parse(raw) as { value: { public: boolean } };
      out.push({ name, public: value.public });
    }
    return out;
  }

  /** A project's settings; undefined for a project never configured (private). */
  async project(name: string): Promise<{ public: boolean } | undefined> {
    return (await getJson<{ value: { public: boolean } }>(this.#db, `j!${name}`))?.value;
  }

  /** A user's roles, by project. */
  async rolesOf(user: string): Promise<Record<string, Role>> {
    return rolesIn(new Batch(this.#db), user);
  }

  /** A project's members and their roles. */
  async members(project: string): Promise<Array<{ user: string; role: Role }>> {
    const out: Array<{ user: string; role: Role }> = [];
    for (const [user, raw] of await new Batch(this.#db).entriesUnder(`g!${project}!`)) {
      const { value } = JSON.parse(raw) as { value: { role: Role } | null };
      if (value !== null) out.push({ user, role: value.role });
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

export function writeOf(e: RegistryEvent): Write {
  const w: Write = { id: writeIdOf(e), origin: e.origin, hlc: e.hlc, at: e.at, actor: e.actor };
  if (e.epoch !== undefined) w.epoch = e.epoch;
  return w;
}

function toTagWrite(w: Write): TagWrite {
  return { digest: undefined, hlc: w.hlc, origin: w.origin, eventId: w.id, epoch: w.epoch };
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

function hlcKey(hlc: Hlc): string {
  return `${String(hlc.wall).padStart(15, "0")}.${String(hlc.logical).padStart(9, "0")}`;
}

/** Order of two writes' clocks only (for callers comparing times). */
export function compareWriteTimes(a: Write, b: Write): number {
  return compareHlc(a.hlc, b.hlc);
}

async function getJson<T>(
  source: { get(key: string): Promise<string | undefined> },
  key: string,
): Promise<T | undefined> {
  const raw = await source.get(key);
  return raw === undefined ? undefined : (JSON.parse(raw) as T);
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
  /** Live (suffix, value) pairs under a prefix, pending writes included, in key order. */
  async entriesUnder(prefix: string): Promise<Array<[string, string]>> {
    const found = new Map<string, string>();
    for await (const [key, value] of this.db.iterator({ gte: prefix, lt: prefix + END }))
      found.set(key, value);
    for (const [key, value] of this.#pending) {
      if (!key.startsWith(prefix)) continue;
      if (value === undefined) found.delete(key);
      else found.set(key, value);
    }
    return [...found]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => [k.slice(prefix.length), v] as [string, string]);
  }
  async keysUnder(prefix: string): Promise<string[]> {
    return (await this.entriesUnder(prefix)).map(([k]) => k);
  }
  async valuesUnder(prefix: string): Promise<string[]> {
    return (await this.entriesUnder(prefix)).map(([, v]) => v);
  }
  async write(): Promise<void> {
    await this.db.batch(
      [...this.#pending].map(([key, value]) =>
        value === undefined ? { type: "del" as const, key } : { type: "put" as const, key, value },
      ),
    );
  }
}

/** A user's roles, by project, as `source` holds them. */
async function rolesIn(source: Batch, user: string): Promise<Record<string, Role>> {
  // Memberships are keyed by project first (listing a project's members is a prefix scan).
  const out: Record<string, Role> = {};
  for (const [suffix, raw] of await source.entriesUnder("g!")) {
    const cut = suffix.lastIndexOf("!");
    if (suffix.slice(cut + 1) !== user) continue;
    const { value } = JSON.parse(raw) as { value: { role: Role } | null };
    if (value !== null) out[suffix.slice(0, cut)] = value.role;
  }
  return out;
}

/**
 * The check of identity and policy events (protocol/event-authority.ts):
 * whether an event's proof was made by the mesh's key (current or retired).
 */
export interface EventAuthority {
  verify(event: RegistryEvent): Promise<boolean>;
}

/** Write `value()` under `key` as a last-writer-wins register, unless a later write is there. */
async function putRegister(batch: Batch, key: string, w: Write, value: () => unknown): Promise<void> {
  const current = await getJson<{ w: Write }>(batch, key);
  if (current !== undefined && compareWrites(toTagWrite(current.w), toTagWrite(w)) >= 0) return;
  batch.put(key, JSON.stringify({ value: value(), w }));
}

export interface UserRecord {
  passwordHash: string;
  systemAdmin: boolean;
}

export interface RobotRecord {
  secretHash: string;
  expiresAt: string;
  grants: RobotGrant[];
}
