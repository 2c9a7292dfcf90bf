/**
 * Copying content by digest from peers into the local blob store.
 *
 * A blob copy is an upload session of the local store (so it is hashed as it
 * streams and committed only when its digest verifies). The session id is
 * recorded under `<stateDir>/partials/<algorithm>-<encoded>` so that a worker
 * killed mid-copy resumes from the bytes already on disk instead of from zero.
 * Copies of one digest share one flight per process, so a blob referenced by
 * many manifests or repositories crosses the link once. A manifest's closure
 * is walked once per digest and within `ClosureLimits` (issue 10: indexes
 * sharing children made a walk by paths exponential).
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { PeerClient } from "../mesh-client/peer-client.js";
import type { BlobStore } from "../node/data/blob-store.js";
import { algorithmOf, type Digest, encodedOf } from "../protocol/digest.js";
import {
  BlobNotFoundError,
  MeridianError,
  PeerUnavailableError,
  UploadNotFoundError,
} from "../protocol/errors.js";
import { parseManifest } from "../protocol/manifest.js";
import { isIndexType } from "../protocol/media-types.js";

/**
 * Which of two peers' failures to report for a copy none could make: one
 * that may pass (a peer unreachable now: it may hold the content) before a
 * terminal one (a peer refused or failed for good: the event is given up),
 * before a plain "not here"; the later of equals.
 */
function graver(earlier: unknown, later: unknown): unknown {
  const rank = (err: unknown) =>
    err === undefined ? -1 : !(err instanceof MeridianError) || err.recoverable ? 2 : err.terminal ? 1 : 0;
  return rank(earlier) > rank(later) ? earlier : later;
}

/**
 * Blobs up to this size are copied whole, like a monolithic push
 * (`#copyWhole`); larger ones through a resumable upload session.
 */
export const WHOLE_COPY_MAX_BYTES = 4 * 1024 * 1024;

/** Blobs of one manifest copied at once. */
const BLOB_FANOUT = 8;

/** Upload sessions of copies belong to no repository a client can name. */
const COPY_REPO = "_replication";

/** What a copy needs of a region's peer (a PeerClient). */
export type CopySource = Pick<PeerClient, "region" | "blobSizes" | "fetchBlob">;

/**
 * Bounds on one manifest's closure, so that one push cannot hold a copy (and
 * the stream waiting on it) for long: `maxItems` distinct digests (the
 * manifest, its blobs, every child manifest and their blobs, each counted
 * once however many paths lead to it) and `maxDepth` levels of index nesting
 * below the manifest (an image manifest is 0 deep; a multi-platform index is
 * 1; an index of such indexes 2).
 */
export interface ClosureLimits {
  maxItems: number;
  maxDepth: number;
}

/**
 * Generous for real images: a multi-platform index with attestations has a
 * few hundred digests, and indexes rarely nest more than two deep.
 */
export const DEFAULT_CLOSURE_LIMITS: Readonly<ClosureLimits> = Object.freeze({
  maxItems: 10_000,
  maxDepth: 16,
});

/**
 * A manifest's closure is over the limits: the same however often it is
 * tried, so the worker records the event as failed at once (never retried).
 */
export class ClosureLimitError extends MeridianError {
  override readonly code = "CLOSURE_LIMIT";
}

export interface CopierOptions {
  store: BlobStore;
  stateDir: string;
  logger: Logger;
  /** Called with every byte count received (metrics). */
  onBytes?: (src: string, bytes: number) => void;
  /** Bounds of a manifest's closure (default DEFAULT_CLOSURE_LIMITS). */
  limits?: Partial<ClosureLimits>;
}

/** One copy of a digest, shared by every caller asking for it meanwhile. */
interface Flight {
  done: Promise<void>;
  abort: AbortController;
  /** Callers still waiting; the copy is cancelled when the last one gives up. */
  waiting: number;
}

export class Copier {
  readonly #flights = new Map<string, Flight>();
  readonly limits: Readonly<ClosureLimits>;
  constructor(private readonly options: CopierOptions) {
    this.limits = Object.freeze({ ...DEFAULT_CLOSURE_LIMITS, ...options.limits });
  }

  /**
   * Make `digest` present locally, fetching it from the first of `peers` that
   * has it. Resolves when the verified bytes are committed; rejects with the
   * abort reason when `signal` aborts. Callers share one copy per digest; it
   * goes on while any of them waits, and stops (its bytes kept for a resume)
   * when every one of them has aborted. `size`, when the caller knows it (an
   * event's), lets a small blob be fetched without asking the peer first.
   */
  async ensureBlob(digest: Digest, peers: CopySource[], signal: AbortSignal, size?: number): Promise<void> {
    signal.throwIfAborted();
    let flight = this.#flights.get(digest);
    if (flight === undefined) {
      const abort = new AbortController();
      const started: Flight = { abort, waiting: 0, done: Promise.resolve() };
      started.done = this.#ensureBlob(digest, peers, abort.signal, size).finally(() => {
        if (this.#flights.get(digest) === started) this.#flights.delete(digest);
      });
      // Nobody may be waiting when it fails (every caller gave up): not an unhandled rejection.
      started.done.catch(() => undefined);
      this.#flights.set(digest, started);
      flight = started;
    }
    const f = flight;
    f.waiting++;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        f.done,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(signal.reason);
          signal.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
    } finally {
      if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
      f.waiting--;
      if (f.waiting === 0 && signal.aborted) {
        f.abort.abort(signal.reason);
        if (this.#flights.get(digest) === f) this.#flights.delete(digest);
      }
    }
  }

  /**
   * Make a manifest and its whole closure present locally: its bytes, its
   * blobs, and for an index every child manifest with its blobs. Each digest
   * is visited once (indexes may share children: a walk by paths would be
   * exponential), breadth first, so a digest is counted at its shallowest
   * depth. Rejects with ClosureLimitError as soon as the closure is seen to
   * exceed `limits` (default: the copier's). With `children: false`, an
   * index's children are left to the caller (a policy may select only some
   * platforms). A manifest's blobs are copied up to BLOB_FANOUT at once.
   * `size`: the manifest's own, when the caller knows it (ensureBlob).
   */
  async ensureManifest(
    digest: Digest,
    peers: CopySource[],
    signal: AbortSignal,
    options: { children?: boolean; limits?: Partial<ClosureLimits>; size?: number } = {},
  ): Promise<void> {
    const { maxItems, maxDepth } = { ...this.limits, ...options.limits };
    const seen = new Set<Digest>([digest]);
    const tooMany = () =>
      new ClosureLimitError(`closure of ${digest} has more than ${maxItems} manifests and blobs`, {
        detail: { digest, maxItems },
      });
    const queue: Array<{ digest: Digest; depth: number }> = [{ digest, depth: 0 }];
    // An index, not a shifting array: shift() on a long queue is quadratic.
    for (let next = 0; next < queue.length; next++) {
      signal.throwIfAborted();
      const { digest: current, depth } = queue[next]!;
      // Manifest bytes live in the blob store under their digest, written before
      // their event: fetch them like a blob, not through the source peer's view
      // (which may not have applied the event yet).
      await this.ensureBlob(current, peers, signal, current === digest ? options.size : undefined);
      const parsed = parseManifest(await this.options.store.readAll(current, signal), undefined);
      const blobs: Digest[] = [];
      for (const blob of parsed.blobs) {
        if (seen.has(blob)) continue;
        seen.add(blob);
        if (seen.size > maxItems) throw tooMany();
        blobs.push(blob);
      }
      // Independent of each other: copied side by side (an image's config and layers).
      let nextBlob = 0;
      await Promise.all(
        Array.from({ length: Math.min(BLOB_FANOUT, blobs.length) }, async () => {
          while (nextBlob < blobs.length) await this.ensureBlob(blobs[nextBlob++]!, peers, signal);
        }),
      );
      if (!isIndexType(parsed.mediaType) || options.children === false) continue;
      for (const child of parsed.manifests) {
        if (seen.has(child)) continue;
        if (depth + 1 > maxDepth)
          throw new ClosureLimitError(`closure of ${digest} nests indexes more than ${maxDepth} deep`, {
            detail: { digest, maxDepth },
          });
        seen.add(child);
        if (seen.size > maxItems) throw tooMany();
        queue.push({ digest: child, depth: depth + 1 });
      }
    }
  }

  async #ensureBlob(digest: Digest, peers: CopySource[], signal: AbortSignal, known?: number): Promise<void> {
    const { store } = this.options;
    if ((await store.stat(digest)) !== undefined) return;
    // A small size the caller knows spares a round trip per copy: the fetch is asked at once,
    // and a peer without the blob fails it with BlobNotFoundError, as HasBlobs would say no.
    const told = known !== undefined && known <= WHOLE_COPY_MAX_BYTES ? known : undefined;
    let last: unknown;
    for (const peer of peers) {
      try {
        if (told !== undefined) {
          // The digest verifies the bytes; a size told wrong is no reason to refuse them.
          await this.#copyWhole(peer, digest, undefined, signal);
          return;
        }
        const [size] = await peer.blobSizes([digest]);
        if (size === undefined) {
          last = graver(last, new BlobNotFoundError(`blob ${digest} not at ${peer.region}`));
          continue;
        }
        if (size <= WHOLE_COPY_MAX_BYTES) await this.#copyWhole(peer, digest, size, signal);
        else await this.#copyFrom(peer, digest, signal);
        return;
      } catch (err) {
        if (signal.aborted) throw err;
        last = graver(last, err);
        // The next peer is tried; when none has it, the caller reports the attempt's failure.
        this.options.logger.debug({ err, digest, peer: peer.region }, "blob copy failed");
      }
    }
    throw last instanceof MeridianError
      ? last
      : new PeerUnavailableError(`no peer has blob ${digest}`, { cause: last });
  }

  /**
   * A small blob (a manifest, a config, a small layer) is written the way a
   * monolithic push is (BlobStore.write: streamed to a temporary file, hashed,
   * size and digest verified, flushed, renamed): no upload session and no
   * resume marker, about a dozen file-system calls fewer, each of which
   * queued behind other copies' flushes on a busy disk (issue 14: they were
   * most of a small image's replication lag). Cut short, it starts again from
   * zero, which for at most WHOLE_COPY_MAX_BYTES costs little.
   */
  async #copyWhole(
    peer: CopySource,
    digest: Digest,
    size: number | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const source = peer.fetchBlob(digest, 0, signal, (n) => this.options.onBytes?.(peer.region, n));
    await this.options.store.write(source, digest, size, signal);
  }

  async #copyFrom(peer: CopySource, digest: Digest, signal: AbortSignal): Promise<void> {
    const { store } = this.options;
    const dir = join(this.options.stateDir, "partials");
    const marker = join(dir, `${algorithmOf(digest)}-${encodedOf(digest)}`);
    let id: string | undefined;
    let offset = 0;
    try {
      id = (await readFile(marker, "utf8")).trim();
      offset = (await store.uploadState(id)).offset;
    } catch (err) {
      if (!(err instanceof UploadNotFoundError) && (err as NodeJS.ErrnoException).code !== "ENOENT")
        throw err;
      id = undefined;
    }
    if (id === undefined) {
      id = (await store.startUpload(COPY_REPO)).id;
      await mkdir(dir, { recursive: true });
      await writeFile(marker, id);
    } else if (offset > 0) {
      this.options.logger.info({ digest, peer: peer.region, offset }, "blob copy resumed");
    }
    const source = peer.fetchBlob(digest, offset, signal, (n) => this.options.onBytes?.(peer.region, n));
    await store.appendUpload(id, source, offset, undefined, signal);
    try {
      await store.commitUpload(id, digest, signal);
    } finally {
      // Committed, or cancelled on a digest mismatch: either way the session is gone.
      await rm(marker, { force: true });
    }
  }
}
