/**
 * BlobStore on an S3-compatible object store (AWS S3, MinIO, Ceph RGW,
 * Cloudflare R2; s3rver in tests). Every object lives under `prefix`:
 *
 *   <prefix>blobs/<algorithm>/<first two hex>/<encoded>   committed bytes, named by digest
 *   <prefix>tmp/<uuid>                                   monolithic writes in flight
 *   <prefix>gc/<run id>/<algorithm>/<encoded>            blobs a GC run set aside (node/data/gc.ts)
 *   <prefix>uploads/<uuid>/state.json                    an upload session (s3-uploads.ts)
 *   <prefix>uploads/<uuid>/tail-<uuid>                   its bytes not yet in a part
 *   <prefix>uploads/<uuid>/data                          its multipart upload's key
 *   <prefix>quarantine/<algorithm>/<encoded>.<ms>        bytes the scrub found corrupt, moved aside
 *
 * How a commit stays atomic without rename: S3 makes an object visible only
 * whole, at the end of the single request that creates it (PutObject,
 * CopyObject or CompleteMultipartUpload); readers never see part of one. The
 * store writes the bytes somewhere that is not a digest key (tmp/ or the
 * session's multipart upload), hashes them while they stream, and only once
 * the digest and size are known to match issues the one CopyObject (or, for
 * bytes already verified in memory, PutObject) that creates the digest key.
 * A crash before that request leaves only tmp/ or uploads/ objects, which
 * `purgeStale` removes; a crash during it leaves the key absent or complete.
 * So a half-written or unverified blob is never visible under its digest.
 * A monolithic `write` whose digest is known up front skips the staging: it
 * streams to the digest's key, and the hash is checked when the source ends,
 * before the final PutObject / CompleteMultipartUpload is sent (an error then
 * aborts the multipart upload; its parts were never an object). With its
 * size known too (Content-Length) and at least a part, each part's
 * UploadPart is fed as the bytes arrive (s3-parts.ts streamParts), not
 * buffered first.
 *
 * The cost of a session's commit is one server-side copy (no bytes through
 * the node, but the S3 server reads and writes the whole blob once more).
 * The two-request monolithic form (empty POST, then PUT with the whole body)
 * does not pay it: node/data/uploads.ts `finish` sends an empty session's
 * body to `write` with its digest, so it costs what a plain multipart upload
 * costs. Measured (benchmarks/README.md, "S3 store (issue 13)"): on the
 * local s3rver that form (0.96×) and pulls (1.04×) run at the plain SDK
 * client's speed; chunked pushes pay the completion and the copy, which
 * s3rver does by reading and writing the whole blob twice in its one Node
 * process (five passes over the bytes against the plain upload's three),
 * and stay near 0.6× of the plain client: that is the physical limit on
 * this 2-core machine (the S3 server's CPU and disk), not the node's work.
 * CopyObject takes objects up to 5 GiB; larger blobs are refused at commit
 * (a multipart copy would lift that, not needed by any image seen so far).
 *
 * Reads: `stat` is HeadObject; `read` with a range does a HeadObject for the
 * size (the contract's RangeNotSatisfiable needs it: S3 silently truncates a
 * range past the end) and a ranged GetObject. Assumed of the service: strong
 * read-after-write consistency (AWS since 2020, MinIO, RGW, R2), multipart
 * upload, CopyObject and ranged GET.
 */

import type { Hash } from "node:crypto";
import { randomUUID } from "node:crypto";
import { addAbortSignal, type Readable, Transform } from "node:stream";
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import {
  algorithmOf,
  type Digest,
  type DigestAlgorithm,
  digestOf,
  encodedOf,
  newHash,
} from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  DigestMismatchError,
  RangeNotSatisfiableError,
  SizeInvalidError,
  StorageUnavailableError,
} from "../../protocol/errors.js";
import type { BlobStore, ByteRange, StoredBlob, UploadState } from "./blob-store.js";
import {
  isNotFound,
  makeS3Client,
  S3Health,
  S3Keys,
  type S3StoreSettings,
  type StoreHealth,
  storeError,
} from "./s3-client.js";
import { asideKey, listS3Blobs, putBackObject, setAsideObject } from "./s3-gc.js";
import { HashingCounter, streamParts } from "./s3-parts.js";
import { S3Uploads } from "./s3-uploads.js";

const MiB = 1 << 20;
/** S3's smallest part (every part but the last). */
export const MIN_PART_SIZE = 5 * MiB;
/**
 * Life of a presigned blob URL (`redirect`): the client follows a 307 at once,
 * so a minute is plenty, and a URL that leaks (logs, a proxy) is useless soon
 * after. It carries a signature, never the secret key; it names one object.
 */
export const REDIRECT_EXPIRY_SECONDS = 60;
/** CopyObject's largest source. */
const MAX_COPY = 5 * 1024 * MiB;

export interface S3BlobStoreOptions extends S3StoreSettings {
  /** Part size of multipart uploads (default 8 MiB, at least 5 MiB). */
  partSize?: number;
  /** An existing client (tests); else one is made from the settings. */
  client?: S3Client;
}

export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly keys: S3Keys;
  readonly #partSize: number;
  readonly #uploads: S3Uploads;
  readonly #health = new S3Health();

  /** Present only with `redirect`: the node answers blob GETs with a 307 to this URL. */
  readonly directUrl?: (digest: Digest) => Promise<string>;

  constructor(options: S3BlobStoreOptions) {
    this.client = options.client ?? makeS3Client(options, this.#health);
    this.bucket = options.bucket;
    const prefix = options.prefix ?? "";
    this.keys = new S3Keys(prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`);
    this.#partSize = Math.max(MIN_PART_SIZE, options.partSize ?? 8 * MiB);
    this.#uploads = new S3Uploads(this, this.#partSize);
    if (options.redirect === true) {
      this.directUrl = (digest) =>
        getSignedUrl(
          this.client,
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: this.keys.blob(digest),
            ResponseContentType: "application/octet-stream",
          }),
          { expiresIn: REDIRECT_EXPIRY_SECONDS },
        );
    }
  }

  /** The outcome of the last S3 call (/healthz): whether the bucket answers. */
  health(): StoreHealth {
    return this.#health.status;
  }

  /** Nothing to create: the bucket must exist (a deployment's job, like its lifecycle rules). */
  async init(): Promise<void> {}

  async stat(digest: Digest, signal?: AbortSignal): Promise<number | undefined> {
    return this.objectSize(this.keys.blob(digest), signal);
  }

  async read(digest: Digest, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    const key = this.keys.blob(digest);
    if (range !== undefined) {
      const size = await this.objectSize(key, signal);
      if (size === undefined) throw new BlobNotFoundError("blob unknown");
      if (range.start > range.end || range.end >= size) {
        throw new RangeNotSatisfiableError("range not satisfiable", size);
      }
    }
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range === undefined ? undefined : `bytes=${range.start}-${range.end}`,
        }),
        { abortSignal: signal },
      );
      let body = res.Body as Readable;
      if (range !== undefined) {
        // A server that sent more than the range (s3rver answers bytes=0-0 with
        // the whole object, or one ignoring Range): cut it rather than serve wrong bytes.
        const sent = /^bytes (\d+)-(\d+)\//.exec(res.ContentRange ?? "");
        const from = sent === null ? 0 : Number(sent[1]);
        const to = sent === null ? Number.POSITIVE_INFINITY : Number(sent[2]);
        if (from > range.start || to < range.end) {
          body.destroy();
          throw new Error(`S3 sent bytes ${res.ContentRange} for ${range.start}-${range.end}`);
        }
        if (from !== range.start || to !== range.end) body = body.pipe(sliceOf(body, range, from));
      }
      if (signal !== undefined) addAbortSignal(signal, body);
      return body;
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError("blob unknown", { cause: err });
      throw err;
    }
  }

  async readAll(digest: Digest, signal?: AbortSignal): Promise<Buffer> {
    const bytes = await this.getBytes(this.keys.blob(digest), signal);
    if (bytes === undefined) throw new BlobNotFoundError("blob unknown");
    return bytes;
  }

  async write(
    source: Readable,
    expected: Digest | undefined,
    expectedSize?: number,
    signal?: AbortSignal,
  ): Promise<{ digest: Digest; size: number }> {
    signal?.throwIfAborted();
    const algorithm: DigestAlgorithm = expected ? algorithmOf(expected) : "sha256";
    // With the digest known, the bytes go straight to its key: the hasher checks
    // digest and size when the source ends, before lib-storage has its last
    // chunk, so a mismatch fails the upload before the PutObject or the
    // CompleteMultipartUpload that would create the key (it aborts the parts).
    // Without it, they are staged under tmp/ and copied once hashed.
    const tmp = expected === undefined ? `${this.keys.tmp}${randomUUID()}` : undefined;
    const hasher = new HashingCounter(newHash(algorithm), algorithm, (digest, bytes) => {
      if (expectedSize !== undefined && bytes !== expectedSize) {
        return new SizeInvalidError(`received ${bytes} bytes, expected ${expectedSize}`);
      }
      if (expected !== undefined && digest !== expected) {
        return new DigestMismatchError("content does not match digest", {
          detail: { expected, actual: digest },
        });
      }
      return undefined;
    });
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const key = tmp ?? this.keys.blob(expected as Digest);
    // Digest and a size of at least a part known: parts stream as the bytes
    // arrive (#streamParts). Otherwise lib-storage, which buffers at most
    // queueSize × partSize (a bounded window, not the blob) and sends a body
    // under one part as one PutObject once the source has ended.
    const streamed = expected !== undefined && expectedSize !== undefined && expectedSize >= this.#partSize;
    const upload = streamed
      ? undefined
      : new Upload({
          client: this.client,
          params: { Bucket: this.bucket, Key: key, Body: hasher },
          partSize: this.#partSize,
          queueSize: 2,
          leavePartsOnError: false,
          abortController: abort,
        });
    source.once("error", (err) => hasher.destroy(err));
    if (signal !== undefined) addAbortSignal(signal, source);
    source.pipe(hasher);
    let unavailable = false;
    try {
      try {
        await (upload === undefined
          ? streamParts(
              this.client,
              this.bucket,
              key,
              this.#partSize,
              hasher,
              expectedSize as number,
              abort.signal,
            )
          : upload.done());
      } catch (err) {
        source.unpipe(hasher);
        source.destroy();
        const failure = signal?.aborted ? signal.reason : storeError(hasher.failure ?? err);
        unavailable = failure instanceof StorageUnavailableError;
        throw failure;
      }
      const digest = hasher.digest;
      if (digest === undefined) throw new Error("upload finished before its source ended");
      if (tmp !== undefined) {
        signal?.throwIfAborted();
        await this.commitObject(tmp, digest, hasher.bytes);
      }
      return { digest, size: hasher.bytes };
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // After an outage the delete would meet it too: not awaited then (the
      // request's bound is one call's), purgeStale removes what it misses.
      const removed = tmp === undefined ? undefined : this.deleteObject(tmp).catch(() => undefined);
      if (!unavailable) await removed;
    }
  }

  async writeAll(bytes: Uint8Array, digest: Digest, signal?: AbortSignal): Promise<void> {
    const actual = digestOf(bytes, algorithmOf(digest));
    if (actual !== digest) {
      throw new DigestMismatchError("content does not match digest", {
        detail: { expected: digest, actual },
      });
    }
    if ((await this.stat(digest, signal)) === bytes.byteLength) return;
    // Verified in memory: the one PutObject is the commit.
    await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: this.keys.blob(digest), Body: bytes }),
      { abortSignal: signal },
    );
  }

  async delete(digest: Digest, signal?: AbortSignal): Promise<void> {
    await this.deleteObject(this.keys.blob(digest), signal);
  }

  // ---------------------------------------------------------------- garbage collection (gc.ts)

  listBlobs(signal?: AbortSignal): AsyncIterable<StoredBlob> {
    return listS3Blobs(this, signal);
  }

  async setAside(digest: Digest, key: string, signal?: AbortSignal): Promise<StoredBlob | undefined> {
    return setAsideObject(this, digest, key, MAX_COPY, signal);
  }

  async putBack(digest: Digest, key: string, signal?: AbortSignal): Promise<boolean> {
    return putBackObject(this, digest, key, signal);
  }

  async dropAside(digest: Digest, key: string, signal?: AbortSignal): Promise<void> {
    return this.deleteObject(asideKey(this, digest, key), signal);
  }

  startUpload(repo: string, signal?: AbortSignal): Promise<UploadState> {
    return this.#uploads.start(repo, signal);
  }

  uploadState(id: string, signal?: AbortSignal): Promise<UploadState> {
    return this.#uploads.state(id, signal);
  }

  appendUpload(
    id: string,
    source: Readable,
    start: number | undefined,
    length: number | undefined,
    signal?: AbortSignal,
  ): Promise<UploadState> {
    return this.#uploads.append(id, source, start, length, signal);
  }

  commitUpload(id: string, digest: Digest, signal?: AbortSignal): Promise<{ digest: Digest; size: number }> {
    return this.#uploads.commit(id, digest, signal);
  }

  cancelUpload(id: string, signal?: AbortSignal): Promise<void> {
    return this.#uploads.cancel(id, signal);
  }

  purgeStale(
    before: Date,
    options: { idleBefore?: Date; signal?: AbortSignal } = {},
  ): Promise<{ uploads: number; leftovers: number }> {
    return this.#uploads.purge(before, options);
  }

  // -------------------------------------------------------------------------
  // object helpers shared with s3-uploads.ts

  /** The commit: the one request that makes `digest`'s key exist, from verified bytes at `from`. */
  async commitObject(
    from: string | undefined,
    digest: Digest,
    size: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const Key = this.keys.blob(digest);
    if (from === undefined || size === 0) {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: new Uint8Array(0) }), {
        abortSignal: signal,
      });
      return;
    }
    if (size > MAX_COPY)
      throw new SizeInvalidError(`blobs over 5 GiB are not supported on S3 (${size} bytes)`);
    await this.client.send(
      new CopyObjectCommand({
        Bucket: this.bucket,
        Key,
        CopySource: `${this.bucket}/${encodeURIComponent(from).replaceAll("%2F", "/")}`,
      }),
      { abortSignal: signal },
    );
  }

  async objectSize(key: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      return head.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async getBytes(key: string, signal?: AbortSignal): Promise<Buffer | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      const bytes = await (
        res.Body as { transformToByteArray(): Promise<Uint8Array> }
      ).transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storeError(err); // a body cut mid-way comes after the client's middleware
    }
  }

  /** Hash an object's bytes as they stream (a session continued by another process). */
  async hashObject(key: string | undefined, algorithm: DigestAlgorithm, signal?: AbortSignal): Promise<Hash> {
    const hash = newHash(algorithm);
    if (key === undefined) return hash;
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      abortSignal: signal,
    });
    try {
      for await (const chunk of res.Body as Readable) hash.update(chunk as Buffer);
    } catch (err) {
      throw storeError(err);
    }
    return hash;
  }

  async putBytes(key: string, body: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body }), {
      abortSignal: signal,
    });
  }

  async quarantine(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    // No rename in S3: copy aside, then delete the digest's key (a crash between leaves both, and
    // the next scrub finds the digest's key corrupt again and finishes the move).
    const key = this.keys.blob(digest);
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          CopySource: `${this.bucket}/${encodeURIComponent(key).replaceAll("%2F", "/")}`,
          Key: `${this.keys.prefix}quarantine/${algorithmOf(digest)}/${encodedOf(digest)}.${Date.now()}`,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      if (isNotFound(err)) return false;
      throw storeError(err);
    }
    await this.deleteObject(key, signal);
    return true;
  }

  async deleteObject(key: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/** The bytes of `range` of a whole-object stream; the source is destroyed once they are out. */
function sliceOf(source: Readable, range: ByteRange, first: number): Transform {
  let position = first;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const from = Math.max(0, range.start - position);
      const to = Math.min(chunk.length, range.end + 1 - position);
      position += chunk.length;
      if (to > from) this.push(chunk.subarray(from, to));
      if (position > range.end) {
        this.push(null);
        source.unpipe(this);
        source.destroy();
      }
      done();
    },
  });
}
