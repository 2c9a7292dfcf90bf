/**
 * What garbage collection (./gc.ts) needs of the S3 store
 * (./s3-blob-store.ts, whose layout draws `<prefix>gc/<run id>/`): the
 * listing of committed blobs, and setting a blob aside by copy then delete
 * — not one atomic step as the filesystem's rename, but content-addressed:
 * a push that stores the digest again between the two loses its object to
 * the delete, and gc.ts puts the aside copy (the same bytes) back once that
 * push's link is seen. Blobs over CopyObject's 5 GiB are left in place
 * (reported absent: the run keeps them).
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  CopyObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from "@aws-sdk/client-s3";
import { algorithmOf, type Digest, encodedOf, isDigest } from "../../protocol/digest.js";
import type { StoredBlob } from "./blob-store.js";
import { isNotFound, type S3Keys } from "./s3-client.js";

/** The parts of the S3 store these use. */
export interface S3Objects {
  readonly client: S3Client;
  readonly bucket: string;
  readonly keys: S3Keys;
  objectSize(key: string, signal?: AbortSignal): Promise<number | undefined>;
  deleteObject(key: string, signal?: AbortSignal): Promise<void>;
}

export async function* listS3Blobs(store: S3Objects, signal?: AbortSignal): AsyncIterable<StoredBlob> {
  const prefix = store.keys.blobs;
  let token: string | undefined;
  for (let page = 0; page < 1_000_000; page++) {
    const res = await store.client.send(
      new ListObjectsV2Command({ Bucket: store.bucket, Prefix: prefix, ContinuationToken: token }),
      { abortSignal: signal },
    );
    for (const o of res.Contents ?? []) {
      // <algorithm>/<two hex>/<encoded>
      const parts = (o.Key ?? "").slice(prefix.length).split("/");
      const digest = `${parts[0]}:${parts[2]}`;
      if (parts.length !== 3 || !isDigest(digest)) continue;
      yield { digest: digest as Digest, size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 };
    }
    token = res.NextContinuationToken;
    if (!res.IsTruncated || token === undefined) return;
  }
}

/** Where a run (`key`) sets a blob aside. */
export function asideKey(store: S3Objects, digest: Digest, key: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(key)) throw new Error(`bad set-aside key ${key}`);
  return `${store.keys.prefix}gc/${key}/${algorithmOf(digest)}/${encodedOf(digest)}`;
}

/** Copies to set a blob aside, in all, and the pause before the next (times the attempt). */
const COPY_TRIES = 3;
const COPY_PAUSE_MS = 250;

function copy(store: S3Objects, from: string, to: string, signal?: AbortSignal): Promise<unknown> {
  return store.client.send(
    new CopyObjectCommand({
      Bucket: store.bucket,
      Key: to,
      CopySource: `${store.bucket}/${encodeURIComponent(from).replaceAll("%2F", "/")}`,
    }),
    { abortSignal: signal },
  );
}

export async function setAsideObject(
  store: S3Objects,
  digest: Digest,
  key: string,
  maxCopy: number,
  signal?: AbortSignal,
): Promise<StoredBlob | undefined> {
  const from = store.keys.blob(digest);
  let head: { ContentLength?: number; LastModified?: Date };
  try {
    head = await store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: from }), {
      abortSignal: signal,
    });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  const size = head.ContentLength ?? 0;
  if (size > maxCopy) return undefined;
  // A copy racing a write of the same key (a push of the same blob overwriting it) can fail
  // with a 5xx on some S3 servers (s3rver reads a file being replaced); the SDK's own retry
  // comes too soon. Tried again after a pause, up to COPY_TRIES times, while the source is
  // still there; a source gone meanwhile is nothing to set aside.
  for (let attempt = 1; ; attempt++) {
    try {
      await copy(store, from, asideKey(store, digest, key), signal);
      break;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (attempt >= COPY_TRIES || signal?.aborted === true) throw err;
      await sleep(COPY_PAUSE_MS * attempt, undefined, { signal });
      if ((await store.objectSize(from, signal)) === undefined) return undefined;
    }
  }
  await store.deleteObject(from, signal);
  return { digest, size, modifiedMs: head.LastModified?.getTime() ?? 0 };
}

export async function putBackObject(
  store: S3Objects,
  digest: Digest,
  key: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const aside = asideKey(store, digest, key);
  let restored = false;
  if ((await store.objectSize(store.keys.blob(digest), signal)) === undefined) {
    try {
      await copy(store, aside, store.keys.blob(digest), signal);
      restored = true;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  await store.deleteObject(aside, signal);
  return restored;
}
