/**
 * The one place a process opens its region's blob store (nodes, peers and
 * replication workers all do), from the `storage` settings they share
 * (protocol/config-schema.ts CommonSettings.storageType and .s3):
 *
 * - `fs` (default): FsBlobStore on `storage.root`;
 * - `s3`: S3BlobStore on `storage.s3` (the AWS SDK is loaded only then, so
 *   a filesystem mesh does not pay for importing it).
 *
 * Every process of a region must use the same store: the peer serves blobs
 * the nodes wrote, the worker writes blobs the nodes serve.
 */
import { resolve } from "node:path";
import type { BlobStore } from "./blob-store.js";
import { FsBlobStore } from "./fs-blob-store.js";
import type { S3StoreSettings } from "./s3-client.js";

export interface BlobStoreConfig {
  type: "fs" | "s3";
  /** The filesystem store's directory (also resolved, unused, for s3). */
  root: string;
  fsync: boolean;
  /** With type s3: the bucket and client settings, checked by `blobStoreConfig`. */
  s3?: S3StoreSettings;
}

/** What S3 accepts as a bucket name (3-63 lower-case letters, digits, dots, dashes). */
export const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** The `storage.s3` section as the schema loads it. */
export interface S3Section {
  bucket?: string;
  prefix: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  credentialsFile?: string;
  redirect: boolean;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxAttempts: number;
}

/** The store's configuration from a process's loaded `storage` settings; problems are appended. */
export function blobStoreConfig(
  storage: { type?: string; fsync?: boolean; s3?: S3Section },
  root: string,
  problems: string[],
): BlobStoreConfig {
  const type = storage.type === "s3" ? "s3" : "fs";
  const config: BlobStoreConfig = { type, root, fsync: storage.fsync ?? true };
  if (type !== "s3") return config;
  const s3 = storage.s3;
  if (s3?.bucket === undefined) {
    problems.push("storage.s3.bucket: required when storage.type is s3 (MERIDIAN_S3_BUCKET)");
    return config;
  }
  if (!BUCKET_NAME.test(s3.bucket)) {
    problems.push(
      `storage.s3.bucket: "${s3.bucket}" is not a bucket name (3-63 lower-case letters, digits, dots, dashes)`,
    );
  }
  config.s3 = {
    ...s3,
    bucket: s3.bucket,
    credentialsFile: s3.credentialsFile === undefined ? undefined : resolve(s3.credentialsFile),
  };
  return config;
}

export async function openBlobStore(config: BlobStoreConfig): Promise<BlobStore> {
  if (config.type === "s3") {
    if (config.s3 === undefined) throw new Error("storage.type s3 without storage.s3 settings");
    const { S3BlobStore } = await import("./s3-blob-store.js");
    const store = new S3BlobStore(config.s3);
    await store.init();
    return store;
  }
  const store = new FsBlobStore(config.root, { fsync: config.fsync });
  await store.init();
  return store;
}
