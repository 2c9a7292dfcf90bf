/**
 * Where `meridian backup` writes and `meridian restore` reads (./backup.ts):
 * a directory, or `s3://BUCKET[/PREFIX]` on any S3-compatible service.
 *
 * A target holds the blobs by digest in a blob store of Meridian's own
 * layout (FsBlobStore under DIR/blobs, S3BlobStore under PREFIX/blobs/), so
 * every blob written to it was verified against its digest on the way in and
 * a later backup skips what is already there (incremental by digest); and a
 * few small named files (the snapshot's description and its events), each
 * replaced whole (a temporary file renamed into place; one PUT on S3).
 *
 * A directory target is private (0700, files 0600): the events carry the
 * region's identity events (password hashes, robot secrets' hashes).
 */
import { mkdirSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { BlobStore } from "../node/data/blob-store.js";
import { FsBlobStore } from "../node/data/fs-blob-store.js";
import { BUCKET_NAME } from "../node/data/open-blob-store.js";
import type { S3StoreSettings } from "../node/data/s3-client.js";

export interface BackupTarget {
  /** Where it is, as the user named it (for messages). */
  readonly location: string;
  readonly blobs: BlobStore;
  /** Replace the named file with `bytes`, whole or not at all. */
  put(name: string, bytes: Buffer): Promise<void>;
  /** The named file, or undefined when it does not exist. */
  get(name: string): Promise<Buffer | undefined>;
}

/** The S3 connection settings of an `s3://` target (its bucket and prefix come from the URL). */
export type TargetS3Settings = Omit<S3StoreSettings, "bucket" | "prefix">;

/** A location: a directory path, or `s3://BUCKET[/PREFIX]` (then `s3` says how to reach the service). */
export async function openTarget(location: string, s3: TargetS3Settings = {}): Promise<BackupTarget> {
  if (location.startsWith("s3://")) return openS3Target(location, s3);
  const dir = resolve(location);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const blobs = new FsBlobStore(join(dir, "blobs"), { fsync: true });
  await blobs.init();
  return {
    location,
    blobs,
    async put(name, bytes) {
      const path = join(dir, name);
      const tmp = `${path}.tmp-${process.pid}`;
      await writeFile(tmp, bytes, { mode: 0o600, flush: true });
      await rename(tmp, path);
    },
    async get(name) {
      try {
        return await readFile(join(dir, name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    },
  };
}

async function openS3Target(location: string, s3: TargetS3Settings): Promise<BackupTarget> {
  const [bucket = "", ...rest] = location.slice("s3://".length).split("/");
  if (!BUCKET_NAME.test(bucket))
    throw new Error(`${location}: not s3://BUCKET[/PREFIX] (a bucket name of 3-63 characters)`);
  const raw = rest.join("/");
  const prefix = raw === "" || raw.endsWith("/") ? raw : `${raw}/`;
  // Loaded only for an S3 target, as the stores do (open-blob-store.ts).
  const { S3BlobStore } = await import("../node/data/s3-blob-store.js");
  const { GetObjectCommand, PutObjectCommand } = await import("@aws-sdk/client-s3");
  const { isNotFound } = await import("../node/data/s3-client.js");
  const blobs = new S3BlobStore({ ...s3, bucket, prefix: `${prefix}blobs/` });
  await blobs.init();
  const client = blobs.client;
  return {
    location,
    blobs,
    async put(name, bytes) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${name}`, Body: bytes }));
    },
    async get(name) {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${name}` }));
        return Buffer.from(await out.Body!.transformToByteArray());
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
  };
}
