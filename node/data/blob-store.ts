/**
 * BlobStore: content-addressed bytes (layers, configs, manifests) and the
 * upload sessions that produce them. Implementations: `FsBlobStore` (a data
 * directory). Every implementation passes `node/test/blob-store.test.ts`.
 *
 * Contract for every method:
 * - absence is `undefined` where the method says so, else a typed error;
 * - nothing is visible under a digest until all of its bytes are stored and
 *   verified (no partial blob, ever);
 * - an aborted `signal` stops the work and rejects with the signal's reason,
 *   leaving no partial blob behind (an upload keeps what it had before the call
 *   plus at most the bytes of the aborted chunk, which `uploadState` reports).
 */
import type { Readable } from "node:stream";
import type { Digest } from "../../protocol/digest.js";

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface UploadState {
  id: string;
  repo: string;
  /** Bytes received so far (the next chunk must start here). */
  offset: number;
  startedAt: string;
}

/** A committed blob as a listing sees it (garbage collection: node/data/gc.ts; the scrub's walk: node/scrub.ts). */
export interface StoredBlob {
  digest: Digest;
  size: number;
  /** When its bytes were last written (ms since the epoch): fs mtime, S3 LastModified. */
  modifiedMs: number;
}

export interface BlobStore {
  /** Size of a stored blob, or undefined when absent. */
  stat(digest: Digest, signal?: AbortSignal): Promise<number | undefined>;

  /** A stream of the blob's bytes (a range of them if given); BlobNotFoundError when absent. */
  read(digest: Digest, range?: ByteRange, signal?: AbortSignal): Promise<Readable>;

  /**
   * Optional: a short-lived URL the client can GET the blob's bytes from
   * directly (S3 with `redirect`: a presigned URL), instead of through the
   * node. Absent on stores that serve bytes only themselves.
   */
  directUrl?(digest: Digest): Promise<string>;

  /**
   * Optional: whether the store's backend answers, as of its last call
   * (S3: `ok: false` with the error and since when after a timeout or 5xx;
   * /healthz shows it). Absent on stores with no remote backend.
   */
  health?(): { ok: boolean; error?: string; since?: string };

  /** A whole small blob (a manifest) in memory; BlobNotFoundError when absent. */
  readAll(digest: Digest, signal?: AbortSignal): Promise<Buffer>;

  /**
   * Store a blob from a stream, hashing as it arrives. With `expected`, the
   * bytes must hash to it (DigestMismatchError otherwise, nothing stored); with
   * `expectedSize`, they must be exactly that long (SizeInvalidError).
   */
  write(
    source: Readable,
    expected: Digest | undefined,
    expectedSize?: number,
    signal?: AbortSignal,
  ): Promise<{ digest: Digest; size: number }>;

  /** Store bytes already in memory under their digest (a manifest). Idempotent. */
  writeAll(bytes: Uint8Array, digest: Digest, signal?: AbortSignal): Promise<void>;

  /**
   * Optional (both stores have it; the scrub and garbage collection need
   * it, node/scrub.ts and node/data/gc.ts): every committed blob,
   * in no particular order. A blob committed or removed during the walk may
   * or may not be listed. Names under `blobs/` that are not a digest are
   * skipped.
   */
  listBlobs?(signal?: AbortSignal): AsyncIterable<StoredBlob>;

  /**
   * Optional (both stores have it): move a blob's bytes aside, out of the
   * digest's place, so nothing serves them again (the scrub found they do not
   * hash to their digest). They are kept under `quarantine/` for an operator
   * to look at, never read by Meridian. False when the blob was not there.
   * Afterwards the digest is absent until it is written again (a repair, or
   * a fetch on miss: both verify what they store).
   */
  quarantine?(digest: Digest, signal?: AbortSignal): Promise<boolean>;

  /** Remove a blob's bytes; absent is not an error. */
  delete(digest: Digest, signal?: AbortSignal): Promise<void>;

  /** Open an upload session for a repository. */
  startUpload(repo: string, signal?: AbortSignal): Promise<UploadState>;

  /** A session's state; UploadNotFoundError when unknown (or the id is malformed). */
  uploadState(id: string, signal?: AbortSignal): Promise<UploadState>;

  /**
   * Append a chunk. `start`, when given, must equal the current offset
   * (UploadRangeError otherwise); `length`, when given, must match the bytes
   * received (SizeInvalidError). Chunks to one session are serialized.
   */
  appendUpload(
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    signal?: AbortSignal,
  ): Promise<UploadState>;

  /**
   * Verify the session's bytes against `digest` and make them the blob. On a
   * mismatch the session is cancelled and DigestMismatchError thrown.
   */
  commitUpload(id: string, digest: Digest, signal?: AbortSignal): Promise<{ digest: Digest; size: number }>;

  /** Drop a session and its bytes; UploadNotFoundError when unknown. */
  cancelUpload(id: string, signal?: AbortSignal): Promise<void>;

  /**
   * Remove upload sessions started before `before`, or (with `idleBefore`)
   * that received no bytes since `idleBefore` (abandoned by their clients),
   * and leftovers of writes interrupted by a crash. Returns counts.
   */
  purgeStale(
    before: Date,
    options?: { idleBefore?: Date; signal?: AbortSignal },
  ): Promise<{ uploads: number; leftovers: number }>;

  /**
   * Optional (garbage collection): move a blob's bytes aside under `key` (a
   * run id), so reads see it absent while it can still be put back.
   * Resolves with what was moved; undefined when the blob is absent.
   */
  setAside?(digest: Digest, key: string, signal?: AbortSignal): Promise<StoredBlob | undefined>;

  /**
   * Optional: put bytes set aside back, unless the blob is there again (a
   * push stored it meanwhile: the same bytes, by digest). True when they
   * were put back; the aside copy is gone either way.
   */
  putBack?(digest: Digest, key: string, signal?: AbortSignal): Promise<boolean>;

  /** Optional: drop bytes set aside for good; absent is not an error. */
  dropAside?(digest: Digest, key: string, signal?: AbortSignal): Promise<void>;
}
