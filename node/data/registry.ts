/**
 * Registry: a region's data operations — the blob store, the event log and the
 * view composed into what the OCI API needs. It has one commit step
 * (`#commit`): every metadata change is built as an event, appended to the log,
 * applied to this node's view, and only then reported done (read-your-writes
 * on this node). Bytes always reach the blob store before their event, so an
 * event never names content that is not there; bytes without an event are
 * invisible (and collectable).
 *
 * No HTTP here: the HTTP layer (node/http) maps requests onto these methods and
 * their domain errors onto OCI responses.
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { algorithmOf, type Digest, digestOf, parseDigest } from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  DigestMismatchError,
  FailoverRefusedError,
  LogConflictError,
  LogUnavailableError,
  ManifestNotFoundError,
  ManifestReferenceError,
  ManifestTooLargeError,
  RegionFencedError,
  ReplicationPendingError,
  RepositoryNotFoundError,
  TagImmutableError,
  UndeleteError,
  UnsupportedError,
  UploadNotFoundError,
} from "../../protocol/errors.js";
import { AUTHORITY_TYPES } from "../../protocol/event-authority.js";
import {
  type EventBody,
  type ManifestPushed,
  makeEvent,
  parseDurability,
  type RegistryEvent,
  subjectFor,
} from "../../protocol/events.js";
import { HybridClock } from "../../protocol/hlc.js";
import { parseManifest } from "../../protocol/manifest.js";
import { parseTag } from "../../protocol/names.js";
import type { BlobStore, ByteRange, UploadState } from "./blob-store.js";
import type { EventLog, LoggedEvent } from "./event-log.js";
import { type UploadSessionLimits, UploadSessions } from "./upload-sessions.js";
import type { ManifestRecord, MetadataView, Page, ReferrerRecord } from "./view.js";

export interface RegistryOptions {
  region: string;
  store: BlobStore;
  log: EventLog;
  view: MetadataView;
  logger: Logger;
  /** Largest manifest accepted, in bytes (larger → ManifestTooLargeError). */
  maxManifestBytes: number;
  /** How long a write waits for this node's view to apply its event. */
  applyTimeoutMs?: number;
  clock?: HybridClock;
  /** How long deleted content stays restorable with `undelete` (default 7 days). */
  undeleteWindowMs?: number;
  /**
   * With authentication: the proof an identity or policy event carries
   * (protocol/event-authority.ts), made by the mesh's token key in the commit step.
   */
  signEvent?: (event: RegistryEvent) => Promise<string>;
  /** The rest of the mesh (node/mesh-link.ts); absent for a region on its own. */
  mesh?: RegionLink;
  /** How long a push to a `sync(k)` repository waits for k other regions (default 30 s). */
  syncTimeoutMs?: number;
  /** How many other regions the mesh has (0 for a region on its own). */
  otherRegions?: number;
  /** Caps on the upload sessions this node opens (./upload-sessions.ts); uncapped without. */
  uploadLimits?: UploadSessionLimits;
}

/** What the registry needs from the other regions. */
export interface RegionLink {
  /** Why writes as a repository's home are refused now; "" when they are not. */
  fence(): string;
  /** Wait until `copies` other regions hold the manifest, or `timeoutMs`. */
  waitReplicated(
    repo: string,
    digest: Digest,
    copies: number,
    timeoutMs: number,
  ): Promise<{ regions: string[]; satisfied: boolean }>;
  /** How the region's peer sees the other regions, and this region's lease; undefined before it answered. */
  peerView():
    | { leaseMs: number; peers: Array<{ region: string; up: boolean; lastSeenAtMs: number }> }
    | undefined;
}

/** What to restore: a whole repository, one tag, or one manifest. */
export type UndeleteTarget = { tag: string } | { digest: Digest } | Record<string, never>;

export interface ResolvedManifest {
  digest: Digest;
  record: ManifestRecord;
  bytes: Buffer;
}

/** A reference in a manifest URL: a tag or a digest. */
export type Reference = { tag: string } | { digest: Digest };

export function parseReference(value: string): Reference {
  return value.includes(":") ? { digest: parseDigest(value) } : { tag: parseTag(value) };
}

const TAG_WRITE_ATTEMPTS = 8;

/** The events that write a tag (and so go through the tag's compare-and-set). */
type TagBody = Extract<EventBody, { type: "tag.set" | "tag.deleted" | "manifest.pushed" }> & { tag: string };

export class Registry {
  readonly region: string;
  /** How many other regions the mesh has (the most a `sync(k)` can ask for). */
  readonly otherRegions: number;
  readonly store: BlobStore;
  readonly view: MetadataView;
  readonly #log: EventLog;
  readonly #logger: Logger;
  readonly #clock: HybridClock;
  readonly #maxManifestBytes: number;
  readonly #applyTimeoutMs: number;
  readonly #undeleteWindowMs: number;
  readonly #signEvent: RegistryOptions["signEvent"];
  readonly #mesh: RegionLink | undefined;
  readonly #syncTimeoutMs: number;
  readonly #sessions: UploadSessions | undefined;
  /** Immutable manifest bytes by digest (never stale): 32 MiB, none over 4 MiB, least recently used out first. */
  readonly #manifestCache = new LRUCache<string, Buffer>({
    maxSize: 32 << 20,
    maxEntrySize: 4 << 20,
    sizeCalculation: (b) => b.byteLength,
  });
  #tailAbort: AbortController | undefined;
  #tailDone: Promise<void> | undefined;

  constructor(options: RegistryOptions) {
    this.region = options.region;
    this.store = options.store;
    this.view = options.view;
    this.#log = options.log;
    this.#logger = options.logger;
    this.#clock = options.clock ?? new HybridClock();
    this.#maxManifestBytes = options.maxManifestBytes;
    this.#applyTimeoutMs = options.applyTimeoutMs ?? 10_000;
    this.#undeleteWindowMs = options.undeleteWindowMs ?? 7 * 24 * 3600_000;
    this.#signEvent = options.signEvent;
    this.#mesh = options.mesh;
    this.otherRegions = options.otherRegions ?? 0;
    this.#syncTimeoutMs = options.syncTimeoutMs ?? 30_000;
    this.#sessions =
      options.uploadLimits === undefined ? undefined : new UploadSessions(options.uploadLimits);
    this.view.applied.subscribe((event) => this.#clock.observe(event.hlc));
  }

  get maxManifestBytes(): number {
    return this.#maxManifestBytes;
  }

  /** True while writes can be accepted (the log is reachable). */
  get writable(): boolean {
    return this.#log.writable;
  }

  /** Start materializing the log into the view (other nodes' writes arrive this way). */
  start(): void {
    const abort = new AbortController();
    this.#tailAbort = abort;
    this.#tailDone = materialize(this.#log, this.view, abort.signal, this.#logger);
  }

  async stop(): Promise<void> {
    this.#tailAbort?.abort();
    await this.#tailDone;
  }

  // ---------------------------------------------------------------- reads

  async resolveManifest(repo: string, reference: Reference): Promise<ResolvedManifest> {
    let digest: Digest;
    if ("tag" in reference) {
      const tag = await this.view.content.tagRecord(repo, reference.tag);
      if (!tag?.digest)
        throw new ManifestNotFoundError("manifest unknown", { detail: { tag: reference.tag } });
      digest = tag.digest;
    } else {
      digest = reference.digest;
    }
    const record = await this.view.content.manifest(repo, digest);
    if (record === undefined) throw new ManifestNotFoundError("manifest unknown", { detail: { digest } });
    let bytes = this.#manifestCache.get(digest);
    if (bytes === undefined) {
      bytes = await this.store.readAll(digest);
      this.#manifestCache.set(digest, bytes);
    }
    return { digest, record, bytes };
  }

  /** Size of a blob linked into `repo`; BlobNotFoundError otherwise. */
  async blobSize(repo: string, digest: Digest): Promise<number> {
    const link = await this.view.content.blobLink(repo, digest);
    const size = link === undefined ? undefined : link.size >= 0 ? link.size : await this.store.stat(digest);
    if (size === undefined) throw new BlobNotFoundError("blob unknown", { detail: { digest } });
    return size;
  }

  /**
   * Open a blob linked into `repo` for reading: one view lookup gives the size,
   * `rangeFor` turns it into the range to read (or undefined for all of it).
   */
  async openBlob(
    repo: string,
    digest: Digest,
    rangeFor: (size: number) => ByteRange | undefined,
    signal?: AbortSignal,
  ): Promise<{ size: number; range: ByteRange | undefined; stream: Readable }> {
    const size = await this.blobSize(repo, digest);
    const range = rangeFor(size);
    return { size, range, stream: await this.store.read(digest, range, signal) };
  }

  async tags(repo: string, n: number, last?: string): Promise<Page<string>> {
    const page = await this.view.content.tags(repo, n, last);
    // A tag shown proves the repository; only an empty page needs the check.
    if (page.items.length === 0 && !(await this.view.content.repositoryExists(repo))) {
      throw new RepositoryNotFoundError("repository name not known to registry", { detail: { name: repo } });
    }
    return page;
  }

  repositories(n: number, last?: string): Promise<Page<string>> {
    return this.view.content.repositories(n, last);
  }

  referrers(repo: string, digest: Digest, artifactType?: string): Promise<ReferrerRecord[]> {
    return this.view.content.referrers(repo, digest, artifactType);
  }

  // ---------------------------------------------------------------- writes

  /**
   * Accept a manifest: verify its digest, validate it, check that everything
   * it references is in the repository, store its exact bytes, then commit
   * `manifest.pushed` (unless already present) and, by tag, `tag.set`.
   */
  async putManifest(
    repo: string,
    reference: Reference,
    bytes: Buffer,
    contentType: string | undefined,
    actor: string,
  ): Promise<{ digest: Digest; subject?: Digest; seq: number }> {
    if (bytes.byteLength > this.#maxManifestBytes) {
      throw new ManifestTooLargeError(`manifest larger than ${this.#maxManifestBytes} bytes`);
    }
    const digest =
      "digest" in reference ? digestOf(bytes, algorithmOf(reference.digest)) : digestOf(bytes, "sha256");
    if ("digest" in reference && digest !== reference.digest) {
      throw new DigestMismatchError("manifest does not match digest", {
        detail: { expected: reference.digest, actual: digest },
      });
    }
    const parsed = parseManifest(bytes, contentType);
    const missing: Digest[] = [];
    for (const blob of parsed.blobs) {
      if ((await this.view.content.blobLink(repo, blob)) === undefined) missing.push(blob);
    }
    for (const child of parsed.manifests) {
      if ((await this.view.content.manifest(repo, child)) === undefined) missing.push(child);
    }
    if (missing.length > 0) {
      throw new ManifestReferenceError("manifest references unknown blobs or manifests", {
        detail: { missing },
      });
    }
    await this.store.writeAll(bytes, digest);
    const tag = "tag" in reference ? reference.tag : undefined;
    let seq = this.view.appliedSeq;
    if ((await this.view.content.manifest(repo, digest)) === undefined) {
      const body: EventBody<ManifestPushed> = {
        type: "manifest.pushed",
        repo,
        digest,
        mediaType: parsed.mediaType,
        size: bytes.byteLength,
        blobs: parsed.blobs,
        manifests: parsed.manifests,
        subject: parsed.subject,
        artifactType: parsed.artifactType,
        annotations: parsed.annotations,
        platforms: parsed.platforms,
        tag,
      };
      // By tag, manifest and tag are one event (on the tag's subject): never one without the other.
      seq =
        tag === undefined ? await this.#commit(body, actor) : await this.#commitTag({ ...body, tag }, actor);
    } else if (tag !== undefined) {
      seq = await this.#commitTag({ type: "tag.set", repo, tag, digest }, actor);
    }
    await this.#awaitDurability(repo, digest);
    return { digest, subject: parsed.subject, seq };
  }

  /**
   * For a `sync(k)` repository, return only once k other regions hold the
   * manifest (and so everything it references). Runs on every push,
   * including a repeated one, so a client retrying after a timeout is
   * acknowledged exactly when the condition holds.
   */
  async #awaitDurability(repo: string, digest: Digest): Promise<void> {
    const copies = parseDurability(this.view.content.configFor(repo).durability) ?? 0;
    if (copies === 0) return;
    if (this.#mesh === undefined) {
      throw new ReplicationPendingError(`${repo} is sync(${copies}) but this region has no mesh to copy to`, {
        detail: { repo, digest, required: copies, held: [] },
      });
    }
    const { regions, satisfied } = await this.#mesh.waitReplicated(repo, digest, copies, this.#syncTimeoutMs);
    if (!satisfied) {
      throw new ReplicationPendingError(
        `${repo}@${digest} is stored in region ${this.region} but ${regions.length} of the ${copies} other regions sync(${copies}) requires hold it after ${this.#syncTimeoutMs} ms; not acknowledged, retry the push`,
        { detail: { repo, digest, required: copies, held: regions } },
      );
    }
  }

  /** Delete by digest (the manifest and the tags on it) or by tag (the tag only). */
  /** Returns the sequence of the deletion in this region's log (for `Meridian-Seq`). */
  async deleteManifest(repo: string, reference: Reference, actor: string): Promise<number> {
    if ("tag" in reference) {
      // A tag whose manifest was deleted is not shown, so it cannot be deleted either.
      if ((await this.view.content.visibleTag(repo, reference.tag)) === undefined)
        throw new ManifestNotFoundError("manifest unknown", { detail: { tag: reference.tag } });
      return this.#commitTag({ type: "tag.deleted", repo, tag: reference.tag }, actor);
    }
    if ((await this.view.content.manifest(repo, reference.digest)) === undefined) {
      throw new ManifestNotFoundError("manifest unknown", { detail: { digest: reference.digest } });
    }
    return this.#commit({ type: "manifest.deleted", repo, digest: reference.digest }, actor);
  }

  async deleteBlob(repo: string, digest: Digest, actor: string): Promise<number> {
    await this.blobSize(repo, digest);
    return this.#commit({ type: "blob.deleted", repo, digest }, actor);
  }

  /** Store a whole blob sent in one request and link it into `repo`. */
  async pushBlob(
    repo: string,
    source: Readable,
    digest: Digest,
    length: number | undefined,
    actor: string,
    signal?: AbortSignal,
  ): Promise<number> {
    const { size } = await this.store.write(source, digest, length, signal);
    return this.#link(repo, digest, size, actor);
  }

  /** Link a blob held by `from` into `repo`; undefined (nothing done) when `from` lacks it, else the sequence. */
  async mountBlob(repo: string, from: string, digest: Digest, actor: string): Promise<number | undefined> {
    if ((await this.view.content.blobLink(from, digest)) === undefined) return undefined;
    const size = await this.store.stat(digest);
    if (size === undefined) return undefined;
    return this.#link(repo, digest, size, actor);
  }

  /** Link a blob already in the store into `repo` (fetch on miss adopted it); undefined when the store lacks it. */
  async linkStored(repo: string, digest: Digest, actor: string): Promise<number | undefined> {
    const size = await this.store.stat(digest);
    return size === undefined ? undefined : this.#link(repo, digest, size, actor);
  }

  /**
   * Open an upload session for `repo` on behalf of `owner` (who is counted
   * against the caps: an identity, or an address for anonymous clients);
   * UploadLimitError when a cap is reached.
   */
  async startUpload(repo: string, owner = "anonymous"): Promise<UploadState> {
    const sessions = this.#sessions;
    if (sessions === undefined) return this.store.startUpload(repo);
    sessions.check(repo, owner);
    // Reserved before the store's await, so a burst of concurrent starts cannot overshoot a cap.
    const slot = `pending:${randomUUID()}`;
    sessions.add(slot, repo, owner);
    try {
      const state = await this.store.startUpload(repo);
      sessions.add(state.id, repo, owner);
      return state;
    } finally {
      sessions.remove(slot);
    }
  }

  /**
   * Remove upload sessions that received nothing since `idleBefore` or began
   * before `startedBefore` (and crash leftovers), and stop counting sessions
   * that are gone from the store.
   */
  async purgeUploads(idleBefore: Date, startedBefore: Date): Promise<{ uploads: number; leftovers: number }> {
    const purged = await this.store.purgeStale(startedBefore, { idleBefore });
    await this.#sessions?.reconcile((id) =>
      this.store.uploadState(id).then(
        () => true,
        (err) => !(err instanceof UploadNotFoundError),
      ),
    );
    return purged;
  }

  /** An upload session of `repo`; UploadNotFoundError for an unknown id or another repository's. */
  async upload(repo: string, id: string): Promise<UploadState> {
    const state = await this.store.uploadState(id);
    if (state.repo !== repo) throw new UploadNotFoundError("blob upload unknown");
    return state;
  }

  async appendUpload(
    repo: string,
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    signal?: AbortSignal,
  ): Promise<UploadState> {
    await this.upload(repo, id);
    return this.store.appendUpload(id, source, start, length, signal);
  }

  /** Finish an upload: verify against `digest`, make it a blob, link it into `repo`. */
  async completeUpload(repo: string, id: string, digest: Digest, actor: string): Promise<number> {
    await this.upload(repo, id);
    let size: number;
    try {
      ({ size } = await this.store.commitUpload(id, digest));
    } catch (err) {
      // A digest mismatch discards the session's bytes: the session is over.
      if (err instanceof DigestMismatchError) this.#sessions?.remove(id);
      throw err;
    }
    this.#sessions?.remove(id);
    return this.#link(repo, digest, size, actor);
  }

  async cancelUpload(repo: string, id: string): Promise<void> {
    await this.upload(repo, id);
    await this.store.cancelUpload(id);
    this.#sessions?.remove(id);
  }

  /** Link a blob into a repository; the sequence of the link (this view's position when already linked). */
  async #link(repo: string, digest: Digest, size: number, actor: string): Promise<number> {
    if ((await this.view.content.blobLink(repo, digest)) !== undefined) return this.view.appliedSeq;
    return this.#commit({ type: "blob.pushed", repo, digest, size }, actor);
  }

  /**
   * Delete a repository: one `repository.deleted` event, a barrier voiding
   * every write made in it before (in every region it replicates to).
   */
  async deleteRepository(repo: string, actor: string): Promise<number> {
    if (!(await this.view.content.repositoryExists(repo))) {
      throw new RepositoryNotFoundError("repository name not known to registry", { detail: { name: repo } });
    }
    return this.#commit({ type: "repository.deleted", repo }, actor);
  }

  /**
   * Restore deleted content within the undelete window, as new writes (so
   * they replicate, and win over the deletion everywhere): a manifest (its
   * tags come back with it), a tag (at the digest it last had, its manifest
   * too if that was deleted), or a repository (everything its deletion
   * removed). The bytes must still be in the blob store.
   */
  async undelete(
    repo: string,
    target: UndeleteTarget,
    actor: string,
    now = Date.now(),
  ): Promise<{ restored: string[] }> {
    const restored: string[] = [];
    const recent = (at: string) => now - Date.parse(at) <= this.#undeleteWindowMs;
    const restoreManifest = async (digest: Digest) => {
      const register = await this.view.content.manifestRegister(repo, digest);
      if (register === undefined || register.live) return;
      if (register.record === null || (await this.store.stat(digest)) === undefined)
        throw new UndeleteError(`manifest ${digest} cannot be restored: its content is gone`);
      if (!recent(register.w.at))
        throw new UndeleteError(`manifest ${digest} was deleted outside the undelete window`);
      for (const blob of register.record.blobs) {
        const size = await this.store.stat(blob);
        if (size === undefined)
          throw new UndeleteError(`manifest ${digest} cannot be restored: blob ${blob} is gone`);
        if ((await this.view.content.blobLink(repo, blob)) === undefined)
          await this.#commit({ type: "blob.pushed", repo, digest: blob, size }, actor);
      }
      for (const child of register.record.manifests) await restoreManifest(child);
      const r = register.record;
      const body: EventBody<ManifestPushed> = {
        type: "manifest.pushed",
        repo,
        digest,
        mediaType: r.mediaType,
        size: r.size,
        blobs: r.blobs,
        manifests: r.manifests,
        subject: r.subject,
        artifactType: r.artifactType,
        annotations: r.annotations,
        platforms: r.platforms,
      };
      await this.#commit(body, actor);
      restored.push(`manifest ${digest}`);
    };
    const restoreTag = async (tag: string, deletedAfter?: string) => {
      if ((await this.view.content.visibleTag(repo, tag)) !== undefined) return;
      const history = await this.view.content.tagHistory(repo, tag);
      const record = await this.view.content.tagRecord(repo, tag);
      // The deletion: the tombstone standing now, else the repository's barrier.
      const deletion = record?.digest === null ? record.at : deletedAfter;
      const last = history
        .filter((h) => h.digest !== null && (deletion === undefined || h.w.at <= deletion))
        .at(-1);
      if (last === undefined || last.digest === null)
        throw new UndeleteError(`tag ${tag} has no earlier value to restore`);
      if (deletion !== undefined && !recent(deletion))
        throw new UndeleteError(`tag ${tag} was deleted outside the undelete window`);
      await restoreManifest(last.digest);
      if ((await this.view.content.visibleTag(repo, tag)) === last.digest) return;
      await this.#commitTag({ type: "tag.set", repo, tag, digest: last.digest }, actor);
      restored.push(`tag ${tag} → ${last.digest}`);
    };
    if ("tag" in target) await restoreTag(target.tag as string);
    else if ("digest" in target) await restoreManifest(target.digest as Digest);
    else {
      const state = await this.view.content.repoState(repo);
      const barrier = state.deleted;
      if (barrier === undefined) throw new UndeleteError(`repository ${repo} was not deleted`);
      if (!recent(barrier.at))
        throw new UndeleteError(`repository ${repo} was deleted outside the undelete window`);
      for (const m of state.manifests)
        if (!m.register.live && m.register.w.id === barrier.id) await restoreManifest(m.digest);
      const tags = new Set(state.tags.map((t) => t.tag));
      for (const raw of await this.view.content.historicTags(repo)) tags.add(raw);
      for (const tag of tags) await restoreTag(tag, barrier.at).catch(() => undefined);
    }
    if (restored.length === 0) throw new UndeleteError("nothing to restore");
    return { restored };
  }

  /**
   * Append an admin event (policies, rules, runs, breaker resets) made in
   * this region, and apply it here. `epoch` goes on the envelope (a
   * `repository.configured` naming the home at a failover epoch).
   */
  commitAdmin(body: EventBody, actor: string, epoch?: number): Promise<number> {
    return this.#commit(body, actor, undefined, epoch);
  }

  /**
   * Fail over: every scope whose home is `from` now is re-homed to `to` at a
   * new failover epoch (one more than the highest any scope has), by one
   * `repository.configured` each, appended in this region. The merge rule
   * then counts only the new home's writes at the new epoch above the old
   * home's, and the old home, on return, sees the higher epoch and refuses
   * home writes until it has caught up (control-plane/fence.ts).
   *
   * Refused (FailoverRefusedError) unless `force`, when this region's peer
   * sees `from` up, or saw it less than a lease ago: until its lease lapses
   * the old home may still be accepting writes, and two homes must never
   * both accept them. `force` is for an operator who knows `from` is dead
   * (or accepts losing what it acknowledges meanwhile).
   */
  async failover(
    from: string,
    to: string,
    force: boolean,
    actor: string,
  ): Promise<{ from: string; to: string; epoch: number; scopes: string[] }> {
    if (from === to) throw new UnsupportedError("failover: --from and --to name the same region");
    const view = this.#mesh?.peerView();
    if (this.#mesh !== undefined && view === undefined && !force)
      throw new FailoverRefusedError(
        "this region's control-plane peer has not answered yet; retry in a moment",
      );
    if (view !== undefined) {
      const known = new Set([this.region, ...view.peers.map((p) => p.region)]);
      for (const r of [from, to])
        if (!known.has(r))
          throw new UnsupportedError(`failover: no region ${r} in the mesh`, { detail: { region: r } });
      if (!force) {
        if (from === this.region)
          throw new FailoverRefusedError(
            `region ${from} is the one answering this request, so it is up; fail over from another region`,
          );
        const old = view.peers.find((p) => p.region === from)!;
        const since = Date.now() - old.lastSeenAtMs;
        if (old.up)
          throw new FailoverRefusedError(
            `region ${from} is up (answered ${(since / 1000).toFixed(1)} s ago); failing over now would let two regions write as home. Use --force only if it is known dead.`,
            { detail: { from, up: true } },
          );
        if (old.lastSeenAtMs > 0 && since < view.leaseMs)
          throw new FailoverRefusedError(
            `region ${from} was last seen ${(since / 1000).toFixed(1)} s ago; its lease (${(view.leaseMs / 1000).toFixed(1)} s) has not lapsed, so it may still accept writes. Retry in ${((view.leaseMs - since) / 1000).toFixed(1)} s.`,
            { detail: { from, lastSeenAgoMs: since, leaseMs: view.leaseMs } },
          );
      }
    }
    const configs = this.view.content.configs();
    const epochOf = (homes: Record<number, string>) => Math.max(0, ...Object.keys(homes).map(Number));
    const epoch = Math.max(0, ...configs.map((c) => epochOf(c.homes))) + 1;
    const scopes: string[] = [];
    for (const c of configs) {
      if (c.homes[epochOf(c.homes)] !== from) continue;
      const body = {
        type: "repository.configured",
        scope: c.scope,
        tagMerge: c.tagMerge,
        home: to,
        ...(c.durability === "async" ? {} : { durability: c.durability }),
      } as EventBody;
      await this.#commit(body, actor, undefined, epoch);
      scopes.push(c.scope);
    }
    this.#logger.warn({ from, to, epoch, scopes, force }, "failover");
    return { from, to, epoch, scopes };
  }

  // ---------------------------------------------------------------- the commit step

  #envelope(body: EventBody, actor: string, epoch?: number): RegistryEvent {
    return makeEvent(body, { id: randomUUID(), origin: this.region, hlc: this.#clock.now(), actor, epoch });
  }

  /** Append an event, apply it here, and return its sequence. */
  async #commit(
    body: EventBody,
    actor: string,
    expectLastSubjectSeq?: number,
    epoch?: number,
  ): Promise<number> {
    const event = this.#envelope(body, actor, epoch);
    if (this.#signEvent !== undefined && AUTHORITY_TYPES.has(event.type))
      event.proof = await this.#signEvent(event);
    const { seq } = await this.#log.append(event, { expectLastSubjectSeq });
    await this.#applied({ seq, event });
    return seq;
  }

  /**
   * Tag writes are compare-and-set on the tag's subject: read the last write,
   * move this node's clock past it, append expecting it to still be last. So
   * within a region the log order of a tag's writes is also their clock order,
   * and the merge rule agrees with what clients saw acknowledged.
   */
  async #commitTag(body: TagBody, actor: string): Promise<number> {
    const subject = subjectFor(this.region, body);
    for (let attempt = 0; attempt < TAG_WRITE_ATTEMPTS; attempt++) {
      const last = await this.#log.lastOnSubject(subject);
      if (last !== undefined) {
        this.#clock.observe(last.event.hlc);
        // The view must know that write before the rule is checked against it.
        await this.view.waitFor(last.seq, this.#applyTimeoutMs).catch(() => undefined);
      }
      const epoch = await this.#checkTagRule(body);
      if (epoch === "unchanged") return this.view.appliedSeq;
      const prev = (await this.view.content.tagRecord(body.repo, body.tag))?.eventId;
      try {
        return await this.#commit(
          prev === undefined ? body : { ...body, prev },
          actor,
          last?.seq ?? 0,
          epoch,
        );
      } catch (err) {
        if (!(err instanceof LogConflictError)) throw err;
        this.#logger.debug({ attempt, subject }, "tag write conflict");
      }
    }
    throw new LogConflictError("tag is being written concurrently; retry");
  }

  /**
   * The repository's tag rule, enforced where the write is made so a client
   * hears "no" instead of seeing its write lose the merge later:
   * `first-write` refuses to move or delete a tag that was ever written
   * (setting it to the digest it already has is a no-op), `home-region`
   * refuses writes outside the repository's current home and stamps the
   * current epoch on those it accepts.
   */
  async #checkTagRule(body: TagBody): Promise<number | undefined | "unchanged"> {
    const { tagMerge, homes } = this.view.content.configFor(body.repo);
    const digest = body.type === "tag.deleted" ? null : body.digest;
    if (tagMerge === "first-write") {
      const current = await this.view.content.tagRecord(body.repo, body.tag);
      if (current === undefined) return undefined;
      if (current.digest === digest) return "unchanged";
      throw new TagImmutableError(`tag ${body.tag} is immutable in ${body.repo}`, {
        detail: { repo: body.repo, tag: body.tag, digest: current.digest },
      });
    }
    if (tagMerge === "home-region") {
      const epochs = Object.keys(homes).map(Number);
      const epoch = epochs.length === 0 ? 0 : Math.max(...epochs);
      const home = homes[epoch];
      if (home !== this.region) {
        throw new TagImmutableError(`${body.repo} is homed in region ${home} (epoch ${epoch}); write there`, {
          detail: { repo: body.repo, home, epoch },
        });
      }
      const fence = this.#mesh?.fence() ?? "";
      if (fence !== "") {
        throw new RegionFencedError(
          `region ${this.region} does not accept writes as home of ${body.repo} now: ${fence}`,
          { detail: { repo: body.repo, region: this.region, epoch, fence } },
        );
      }
      return epoch;
    }
    return undefined;
  }

  async #applied(entry: LoggedEvent): Promise<void> {
    await this.view.apply([entry], true);
    try {
      await this.view.waitFor(entry.seq, this.#applyTimeoutMs);
    } catch (err) {
      // Durable in the log but not yet visible here: the client may retry safely.
      throw new LogUnavailableError("write accepted by the log but not yet applied", { cause: err });
    }
  }
}

/**
 * Bring a view up to the log's end as it is now, so a process never answers
 * (or decides) from a view older than what was acknowledged before it
 * started. If the log is unreachable, go on after a few seconds with the view
 * as it is (reads keep working; writes answer 503 until the log returns).
 */
export async function catchUp(
  log: EventLog & { ready(): Promise<unknown> },
  view: MetadataView,
  logger: Logger,
): Promise<void> {
  const connected = await Promise.race([
    log.ready().then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 5_000).unref()),
  ]);
  if (!connected) {
    logger.warn("log unreachable at start; going on with the view as it is");
    return;
  }
  try {
    await view.waitFor(await log.lastSeq(), 60_000);
  } catch (err) {
    logger.warn({ err }, "view catch-up incomplete at start");
  }
}

/**
 * Keep a view following the log, for processes that read a region's view
 * but do not write through a Registry (the control-plane peer, the
 * replication worker). `stop()` ends it after the batch in hand.
 */
export function followLog(log: EventLog, view: MetadataView, logger: Logger): { stop(): Promise<void> } {
  const abort = new AbortController();
  const done = materialize(log, view, abort.signal, logger);
  return {
    stop: async () => {
      abort.abort();
      await done;
    },
  };
}

/** Tail the log into the view until `signal` aborts, in batches. */
async function materialize(
  log: EventLog,
  view: MetadataView,
  signal: AbortSignal,
  logger: Logger,
): Promise<void> {
  const queue: LoggedEvent[] = [];
  let flushing: Promise<void> | undefined;
  const flush = async () => {
    while (queue.length > 0) {
      const batch = queue.splice(0, 1024);
      try {
        await view.apply(batch);
      } catch (err) {
        logger.error({ err, seq: batch[0]?.seq }, "view apply failed");
        queue.unshift(...batch);
        await sleep(500);
        if (signal.aborted) return;
      }
    }
  };
  for await (const entry of log.tail(view.appliedSeq + 1, signal)) {
    queue.push(entry);
    flushing ??= flush().finally(() => {
      flushing = undefined;
    });
    if (queue.length >= 4096) await flushing;
  }
  await flushing;
}
