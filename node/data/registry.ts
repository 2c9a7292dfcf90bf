/**
 * Registry: a region's data operations — the blob store, the event log and the
 * view composed into what the OCI API needs. It has one commit step
 * (./commit-step.ts): every metadata change is built as an event, appended to
 * the log, applied to this node's view, and only then reported done
 * (read-your-writes on this node). Bytes always reach the blob store before their event, so an
 * event never names content that is not there; bytes without an event are
 * invisible (and collectable).
 *
 * Its parts, one file each: reads and blob/tag writes here; manifest pushes
 * in ./manifest-push.ts; upload sessions in ./uploads.ts (`registry.uploads`);
 * undelete in ./undelete.ts;
 * failover in ./failover.ts; following the log in ./log-follow.ts.
 *
 * No HTTP here: the HTTP layer (node/http) maps requests onto these methods and
 * their domain errors onto OCI responses.
 */

import type { Readable } from "node:stream";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { algorithmOf, type Digest, digestOf } from "../../protocol/digest.js";
import { BlobNotFoundError, ManifestNotFoundError, RepositoryNotFoundError } from "../../protocol/errors.js";
import type { EventBody, RegistryEvent } from "../../protocol/events.js";
import { HybridClock } from "../../protocol/hlc.js";
import type { BlobStore, ByteRange } from "./blob-store.js";
import { CommitStep } from "./commit-step.js";
import type { EventLog } from "./event-log.js";
import { failover } from "./failover.js";
import { GcRuns } from "./gc-runner.js";
import { refuseProtectedDelete } from "./immutability-guard.js";
import { CatchUpOnMiss, materialize } from "./log-follow.js";
import { type ManifestPushContext, pushManifest } from "./manifest-push.js";
import { PullRecord } from "./pull-record.js";
import { QuotaGate } from "./quota-gate.js";
import { QuotaRefusals } from "./quota-refusals.js";
import { type UndeleteTarget, undelete } from "./undelete.js";
import { type UploadSessionLimits, UploadSessions } from "./upload-sessions.js";
import { Uploads } from "./uploads.js";
import type { MetadataView, Page, ReferrerRecord } from "./view.js";

/** Where the view follows the log, and what undelete takes: re-exported for the callers of old. */
export { catchUp, followLog } from "./log-follow.js";
export type { UndeleteTarget };

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
  /** How often pulls seen are recorded in the log for retention (./pull-record.ts); never without. */
  pullFlushMs?: number;
  /** Garbage collection (./gc.ts): grace (default 1 hour) and settle (default 30 s). */
  gc?: { graceMs: number; settleMs: number };
}

import type { Reference, RegionLink, ResolvedManifest } from "./registry-types.js";

export { parseReference, type Reference, type RegionLink, type ResolvedManifest } from "./registry-types.js";

export class Registry {
  readonly region: string;
  /** How many other regions the mesh has (the most a `sync(k)` can ask for). */
  readonly otherRegions: number;
  readonly store: BlobStore;
  readonly view: MetadataView;
  /** Upload sessions (./uploads.ts): start, append, complete, cancel, purge. */
  readonly uploads: Uploads;
  /** Pulls seen by this node, recorded coarsely for retention (./pull-record.ts); absent: not tracked. */
  readonly pulls: PullRecord | undefined;
  /** Garbage collection runs of this node (./gc.ts). */
  readonly gc: GcRuns;
  readonly #log: EventLog;
  readonly #logger: Logger;
  readonly #clock: HybridClock;
  readonly #commits: CommitStep;
  readonly #maxManifestBytes: number;
  readonly #undeleteWindowMs: number;
  readonly #mesh: RegionLink | undefined;
  /** What the manifest push (./manifest-push.ts) works with. */
  readonly #push: ManifestPushContext;
  /** Project quotas, checked at push (./quota-gate.ts). */
  readonly #quota: QuotaGate;
  /** Immutable manifest bytes by digest (never stale): 32 MiB, none over 4 MiB, least recently used out first. */
  readonly #manifestCache = new LRUCache<string, Buffer>({
    maxSize: 32 << 20,
    maxEntrySize: 4 << 20,
    sizeCalculation: (b) => b.byteLength,
  });
  /** Misses look again once the view has what the log holds (other nodes of the region write too). */
  readonly #catchUp: CatchUpOnMiss;
  /**
   * Told of a manifest whose stored bytes were found not to match their
   * digest on read (already quarantined): the node's scrub repairs it
   * (node/server.ts sets it; node/scrub.ts `repairReported`).
   */
  onCorrupt: ((repo: string, digest: Digest, actual: Digest, size: number) => void) | undefined;
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
    this.#undeleteWindowMs = options.undeleteWindowMs ?? 7 * 24 * 3600_000;
    this.#mesh = options.mesh;
    this.otherRegions = options.otherRegions ?? 0;
    this.#commits = new CommitStep({
      region: this.region,
      log: this.#log,
      view: this.view,
      logger: this.#logger,
      clock: this.#clock,
      applyTimeoutMs: options.applyTimeoutMs ?? 10_000,
      signEvent: options.signEvent,
      fence: () => this.#mesh?.fence() ?? "",
    });
    const limits = options.uploadLimits === undefined ? undefined : new UploadSessions(options.uploadLimits);
    const refusals = new QuotaRefusals({
      commit: (body) => this.#commits.commit(body, "system"),
      region: this.region,
      logger: this.#logger,
    });
    this.#quota = new QuotaGate(this.view.quotas, (repo, r) => refusals.refused(repo, r));
    this.uploads = new Uploads(
      this.store,
      limits,
      (repo, digest, size, actor) => this.#link(repo, digest, size, actor),
      (repo, digest, size) => this.#quota.check(repo, digest, size),
    );
    this.view.applied.subscribe((event) => this.#clock.observe(event.hlc));
    this.#catchUp = new CatchUpOnMiss(this.#log, this.view);
    this.pulls =
      options.pullFlushMs === undefined
        ? undefined
        : new PullRecord({
            commit: (body) => this.#commits.commit(body, "system"),
            lastRecorded: (repo, digest) => this.view.retention.pulledAt(repo, digest),
            flushMs: options.pullFlushMs,
            logger: this.#logger,
          });
    this.gc = new GcRuns(
      {
        region: this.region,
        store: this.store,
        log: this.#log,
        view: this.view,
        commits: this.#commits,
        logger: this.#logger.child({ component: "gc" }),
      },
      {
        graceMs: options.gc?.graceMs ?? 3_600_000,
        settleMs: options.gc?.settleMs ?? 30_000,
        undeleteWindowMs: this.#undeleteWindowMs,
      },
    );
    this.#push = {
      region: this.region,
      store: this.store,
      view: this.view,
      commits: this.#commits,
      catchUp: this.#catchUp,
      maxManifestBytes: this.#maxManifestBytes,
      mesh: this.#mesh,
      syncTimeoutMs: options.syncTimeoutMs ?? 30_000,
      quota: this.#quota,
    };
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
    this.pulls?.start();
  }

  async stop(): Promise<void> {
    this.pulls?.stop();
    await this.gc.stop();
    this.#tailAbort?.abort();
    await this.#tailDone;
  }

  // ---------------------------------------------------------------- reads

  /**
   * The manifest `reference` names in `repo`; on a miss, looked up again once
   * the view has caught up with the log (another node of the region may have
   * just acknowledged it: ./log-follow.ts CatchUpOnMiss).
   */
  async resolveManifest(repo: string, reference: Reference): Promise<ResolvedManifest> {
    try {
      return await this.#resolveManifest(repo, reference);
    } catch (err) {
      if (!(err instanceof ManifestNotFoundError)) throw err;
      await this.#catchUp.request();
      return this.#resolveManifest(repo, reference);
    }
  }

  async #resolveManifest(repo: string, reference: Reference): Promise<ResolvedManifest> {
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
      bytes = await this.#readManifest(repo, digest);
      this.#manifestCache.set(digest, bytes);
    }
    return { digest, record, bytes };
  }

  /**
   * A manifest's stored bytes, verified before they enter the cache (once per
   * cache fill, never on a cached GET): bytes that no longer hash to their
   * digest are quarantined (node/scrub.ts does the repair) and, like bytes
   * this region lacks (quarantined earlier), answered as a miss, so the
   * caller's fetch on miss serves the manifest from another region.
   */
  async #readManifest(repo: string, digest: Digest): Promise<Buffer> {
    let bytes: Buffer;
    try {
      bytes = await this.store.readAll(digest);
    } catch (err) {
      if (!(err instanceof BlobNotFoundError)) throw err;
      throw new ManifestNotFoundError("manifest unknown", { cause: err, detail: { digest } });
    }
    const actual = digestOf(bytes, algorithmOf(digest));
    if (actual === digest) return bytes;
    this.#logger.error({ repo, digest, actual }, "stored manifest does not match its digest: quarantined");
    const moved = await this.store
      .quarantine?.(digest)
      .catch((err) => this.#logger.warn({ err, digest }, "quarantine failed"));
    if (moved === true) this.onCorrupt?.(repo, digest, actual, bytes.byteLength);
    throw new ManifestNotFoundError("manifest unknown", { detail: { digest } });
  }

  /** Size of a blob linked into `repo`; BlobNotFoundError otherwise. */
  async blobSize(repo: string, digest: Digest): Promise<number> {
    const size = await this.linkedBlobSize(repo, digest);
    if (size === undefined) throw new BlobNotFoundError("blob unknown", { detail: { digest } });
    return size;
  }

  /**
   * Size of a blob linked into `repo`, undefined when it is not: the HEAD a
   * client sends before every blob push is usually a miss, answered without
   * building an error (node/http/oci/blobs.ts).
   */
  async linkedBlobSize(repo: string, digest: Digest): Promise<number | undefined> {
    const link = await this.view.content.blobLink(repo, digest);
    if (link === undefined) return undefined;
    return link.size >= 0 ? link.size : this.store.stat(digest);
  }

  /** True when blob GETs are answered with a redirect to the store (`blobUrl`). */
  get redirectsBlobs(): boolean {
    return this.store.directUrl !== undefined;
  }

  /** blobSize, looked up again after catching up with the log on a miss (GETs: see resolveManifest). */
  async #blobSizeCaughtUp(repo: string, digest: Digest): Promise<number> {
    try {
      return await this.blobSize(repo, digest);
    } catch (err) {
      if (!(err instanceof BlobNotFoundError)) throw err;
      await this.#catchUp.request();
      return this.blobSize(repo, digest);
    }
  }

  /** The store's direct URL of a blob linked into `repo`; BlobNotFoundError otherwise. */
  async blobUrl(repo: string, digest: Digest): Promise<string> {
    await this.#blobSizeCaughtUp(repo, digest);
    if (this.store.directUrl === undefined) throw new Error("the blob store hands out no direct URLs");
    return this.store.directUrl(digest);
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
    const size = await this.#blobSizeCaughtUp(repo, digest);
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
   * `manifest.pushed` (unless already present) and, by tag, `tag.set`
   * (./manifest-push.ts).
   */
  putManifest(
    repo: string,
    reference: Reference,
    bytes: Buffer,
    contentType: string | undefined,
    actor: string,
  ): Promise<{ digest: Digest; subject?: Digest; seq: number }> {
    return pushManifest(this.#push, repo, reference, bytes, contentType, actor);
  }

  /** Delete by digest (the manifest and the tags on it) or by tag (the tag only). */
  /** Returns the sequence of the deletion in this region's log (for `Meridian-Seq`). */
  async deleteManifest(repo: string, reference: Reference, actor: string): Promise<number> {
    if ("tag" in reference) {
      // A tag whose manifest was deleted is not shown, so it cannot be deleted either.
      if ((await this.view.content.visibleTag(repo, reference.tag)) === undefined)
        throw new ManifestNotFoundError("manifest unknown", { detail: { tag: reference.tag } });
      return this.#commits.commitTag({ type: "tag.deleted", repo, tag: reference.tag }, actor);
    }
    if ((await this.view.content.manifest(repo, reference.digest)) === undefined) {
      throw new ManifestNotFoundError("manifest unknown", { detail: { digest: reference.digest } });
    }
    await refuseProtectedDelete(this.view, repo, reference.digest);
    return this.#commits.commit({ type: "manifest.deleted", repo, digest: reference.digest }, actor);
  }

  async deleteBlob(repo: string, digest: Digest, actor: string): Promise<number> {
    await this.blobSize(repo, digest);
    return this.#commits.commit({ type: "blob.deleted", repo, digest }, actor);
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
    // A declared length over the quota is refused before a byte is stored (no IO without a quota).
    if (length !== undefined) await this.#quota.check(repo, digest, length);
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
   * Link a blob into a repository; the sequence of the link (this view's
   * position when already linked). Every new link passes the project's quota
   * first (QuotaExceededError, nothing appended).
   */
  async #link(repo: string, digest: Digest, size: number, actor: string): Promise<number> {
    if ((await this.view.content.blobLink(repo, digest)) !== undefined) return this.view.appliedSeq;
    const release = await this.#quota.admit(repo, digest, size);
    try {
      return await this.#commits.commit({ type: "blob.pushed", repo, digest, size }, actor);
    } finally {
      release();
    }
  }

  /**
   * Delete a repository: one `repository.deleted` event, a barrier voiding
   * every write made in it before (in every region it replicates to).
   */
  async deleteRepository(repo: string, actor: string): Promise<number> {
    if (!(await this.view.content.repositoryExists(repo))) {
      throw new RepositoryNotFoundError("repository name not known to registry", { detail: { name: repo } });
    }
    await refuseProtectedDelete(this.view, repo);
    return this.#commits.commit({ type: "repository.deleted", repo }, actor);
  }

  /** Restore deleted content within the undelete window (./undelete.ts). */
  undelete(
    repo: string,
    target: UndeleteTarget,
    actor: string,
    now = Date.now(),
  ): Promise<{ restored: string[] }> {
    const ctx = {
      store: this.store,
      view: this.view,
      commits: this.#commits,
      undeleteWindowMs: this.#undeleteWindowMs,
    };
    return undelete(ctx, repo, target, actor, now);
  }

  /**
   * Append an admin event (policies, rules, runs, breaker resets) made in
   * this region, and apply it here. `epoch` goes on the envelope (a
   * `repository.configured` naming the home at a failover epoch).
   */
  commitAdmin(body: EventBody, actor: string, epoch?: number): Promise<number> {
    return this.#commits.commit(body, actor, undefined, epoch);
  }

  /** Fail over from one region to another (./failover.ts). */
  failover(
    from: string,
    to: string,
    force: boolean,
    actor: string,
  ): Promise<{ from: string; to: string; epoch: number; scopes: string[] }> {
    const ctx = {
      region: this.region,
      view: this.view,
      commits: this.#commits,
      logger: this.#logger,
      mesh: this.#mesh,
    };
    return failover(ctx, from, to, force, actor);
  }
}
