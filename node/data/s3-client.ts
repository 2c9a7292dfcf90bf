/**
 * The S3 client of the S3 blob store, and the small helpers every S3 call
 * shares (not-found detection, body draining, key layout).
 *
 * Client choices, for S3-compatible services rather than AWS only:
 * - checksums only WHEN_REQUIRED: the SDK's default (CRC32 trailers on every
 *   PutObject/UploadPart since 3.729) is refused by s3rver, older MinIO and
 *   Ceph RGW, and the store verifies the content digest itself anyway;
 * - path-style addressing when `forcePathStyle` (MinIO, s3rver, most
 *   on-premise services); AWS and R2 work either way;
 * - credentials from `credentialsFile` (JSON {accessKeyId, secretAccessKey,
 *   sessionToken?}) when given, else the SDK's default chain (environment,
 *   ~/.aws, instance or pod roles).
 *
 * `AWS_CA_BUNDLE`: the JavaScript SDK v3 does not read it (only the CLI and
 * the Python/Go SDKs do), so it neither helps nor breaks plain-http endpoints
 * such as a local s3rver. For an https endpoint with a private CA, start the
 * process with NODE_EXTRA_CA_CERTS=<bundle>.
 */
import { readFileSync } from "node:fs";
import { S3Client } from "@aws-sdk/client-s3";
import { algorithmOf, type Digest, encodedOf } from "../../protocol/digest.js";

export interface S3StoreSettings {
  bucket: string;
  /** Key prefix for everything the store writes ("" or ending in "/"). */
  prefix?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentialsFile?: string;
  /** Answer blob GETs with a 307 to a presigned URL (off by default). */
  redirect?: boolean;
}

export function makeS3Client(settings: S3StoreSettings): S3Client {
  let credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  if (settings.credentialsFile) {
    const parsed = JSON.parse(readFileSync(settings.credentialsFile, "utf8")) as Record<string, unknown>;
    if (typeof parsed.accessKeyId !== "string" || typeof parsed.secretAccessKey !== "string") {
      throw new Error(`${settings.credentialsFile}: needs string accessKeyId and secretAccessKey`);
    }
    credentials = {
      accessKeyId: parsed.accessKeyId,
      secretAccessKey: parsed.secretAccessKey,
      sessionToken: typeof parsed.sessionToken === "string" ? parsed.sessionToken : undefined,
    };
  }
  const client = new S3Client({
    region: settings.region ?? "us-east-1",
    endpoint: settings.endpoint,
    forcePathStyle: settings.forcePathStyle ?? false,
    credentials,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  // SigV4 signs a payload's sha256 unless the request says UNSIGNED-PAYLOAD
  // (accepted by AWS S3, MinIO, RGW, R2 and s3rver): for every part and
  // object the SDK would hash the bytes a second time, next to the store's own
  // digest. The store verifies its content digest itself; TLS (https
  // endpoints) protects the bytes in transit. Measured: about 2 ms of the
  // node's CPU per MiB written (benchmarks/README.md, "S3 store (issue 13)").
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown };
      if (request.headers !== undefined && request.body !== undefined) {
        request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    },
    { step: "build", name: "meridianUnsignedPayload" },
  );
  return client;
}

/** Object keys of the store under its prefix. */
export class S3Keys {
  constructor(readonly prefix: string) {}
  blob(digest: Digest): string {
    const encoded = encodedOf(digest);
    return `${this.prefix}blobs/${algorithmOf(digest)}/${encoded.slice(0, 2)}/${encoded}`;
  }
  get blobs(): string {
    return `${this.prefix}blobs/`;
  }
  get tmp(): string {
    return `${this.prefix}tmp/`;
  }
  get uploads(): string {
    return `${this.prefix}uploads/`;
  }
  upload(id: string): string {
    return `${this.prefix}uploads/${id}/`;
  }
}

/** True for the SDK's "no such key / bucket entry" errors (GET's NoSuchKey, HEAD's bare 404). */
export function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchKey" || e?.name === "NotFound" || e?.$metadata?.httpStatusCode === 404;
}

export function isNoSuchUpload(err: unknown): boolean {
  return (err as { name?: string })?.name === "NoSuchUpload";
}
