/**
 * Streams of the S3 blob store's writes (s3-blob-store.ts `write`):
 * HashingCounter, which hashes and counts the bytes on their way and fails
 * the stream at its end when digest or size do not match, and streamParts,
 * a multipart upload fed as the bytes arrive.
 */
import type { Hash } from "node:crypto";
import { once } from "node:events";
import { PassThrough, Transform, type TransformCallback } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { type Digest, type DigestAlgorithm, digestFromHash } from "../../protocol/digest.js";
import { SizeInvalidError } from "../../protocol/errors.js";

/** Parts of one streamed write awaiting S3's answer while the next one streams. */
const PARTS_IN_FLIGHT = 3;

/**
 * A multipart upload to `key` of exactly `size` bytes from `hasher`, each
 * part's UploadPart started when its first byte arrives and fed as the
 * bytes come (receiving and sending overlap, nothing is buffered beyond the
 * streams' own windows); up to PARTS_IN_FLIGHT parts await S3's answer
 * while the next one streams. The hasher ends only once the digest and size
 * have checked out, and CompleteMultipartUpload, which makes the key exist,
 * is sent only after that; any failure aborts the upload (its parts were
 * never an object).
 */
export async function streamParts(
  client: S3Client,
  Bucket: string,
  key: string,
  partSize: number,
  hasher: HashingCounter,
  size: number,
  signal: AbortSignal,
): Promise<void> {
  const created = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: key }), {
    abortSignal: signal,
  });
  const UploadId = created.UploadId;
  const parts: { PartNumber: number; ETag: string }[] = [];
  const window: Promise<{ PartNumber: number; ETag: string }>[] = [];
  let current:
    | { body: PassThrough; left: number; done: Promise<unknown>; abort: AbortController }
    | undefined;
  let sent = 0;
  try {
    for await (const chunk of hasher as AsyncIterable<Buffer>) {
      let rest = chunk;
      while (rest.length > 0) {
        if (current === undefined) {
          if (sent >= size) throw new SizeInvalidError(`more than the ${size} bytes announced`);
          const PartNumber = parts.length + window.length + 1;
          const ContentLength = Math.min(partSize, size - sent);
          const body = new PassThrough();
          const ac = new AbortController();
          const done = client
            .send(
              new UploadPartCommand({ Bucket, Key: key, UploadId, PartNumber, Body: body, ContentLength }),
              {
                abortSignal: AbortSignal.any([signal, ac.signal]),
              },
            )
            .then((res) => ({ PartNumber, ETag: res.ETag ?? "" }));
          done.catch(() => undefined); // awaited below, in order
          window.push(done);
          current = { body, left: ContentLength, done, abort: ac };
        }
        const take = Math.min(rest.length, current.left);
        const ok = current.body.write(take === rest.length ? rest : rest.subarray(0, take));
        current.left -= take;
        sent += take;
        rest = rest.subarray(take);
        if (current.left === 0) {
          current.body.end();
          current = undefined;
          if (window.length >= PARTS_IN_FLIGHT)
            parts.push(await (window.shift() as Promise<(typeof parts)[0]>));
        } else if (!ok) {
          await Promise.race([once(current.body, "drain"), current.done]);
        }
      }
    }
    // The hasher ended: digest and size checked out (so no part is left open).
    while (window.length > 0) {
      parts.push(await (window[0] as Promise<(typeof parts)[0]>));
      window.shift();
    }
    await client.send(
      new CompleteMultipartUploadCommand({ Bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }),
      { abortSignal: signal },
    );
  } catch (err) {
    current?.abort.abort(err);
    current?.body.destroy();
    await Promise.allSettled(window);
    await client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId })).catch(() => undefined);
    throw err;
  }
}

/**
 * Passes bytes through unchanged, hashing and counting them; when the source
 * ends, `check` sees the digest and size and may fail the stream (before its
 * last bytes are released downstream).
 */
export class HashingCounter extends Transform {
  bytes = 0;
  digest: Digest | undefined;
  failure: Error | undefined;
  constructor(
    readonly hash: Hash,
    readonly algorithm: DigestAlgorithm,
    readonly check: (digest: Digest, bytes: number) => Error | undefined,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    const digest = digestFromHash(this.hash, this.algorithm);
    const failure = this.check(digest, this.bytes);
    if (failure !== undefined) {
      this.failure = failure;
      done(failure);
      return;
    }
    this.digest = digest;
    done();
  }
  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    if (err) this.failure ??= err;
    done(err);
  }
}
