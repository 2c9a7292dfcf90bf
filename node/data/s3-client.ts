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
 * Bounds, for a service that stops answering without closing anything (a
 * frozen process, a blackholed link; chaos/test/s3-frozen.test.ts): a
 * connection is established within `connectTimeoutMs`, and a request that
 * moves no byte either way for `idleTimeoutMs` (waiting for the first byte
 * of an answer, or mid-body in either direction) is cut. There is no total
 * deadline: a long part upload or blob download that keeps moving is never
 * cut for being long. A cut or refused call is tried `maxAttempts` times in
 * all (the SDK's standard retry, a short jittered backoff), so one S3 call
 * ends within maxAttempts × (connectTimeoutMs + idleTimeoutMs) plus that
 * backoff (and 3 s per try: smithy arms an idle timer of 6 s or more 3 s
 * into a request; defaults: about 30 s), and every failure that means "the service is not there right
 * now" (a timeout, a refused or reset connection, a 5xx) leaves the client
 * as `StorageUnavailableError` (503 UNAVAILABLE), by a middleware around
 * every call, the multipart calls of lib-storage included. The first such
 * failure ends the request: the store never tries a second call after one
 * timed out, so the bound of one call is the bound of the request.
 * `S3Health` keeps the outcome of the last call for /healthz.
 *
 * `AWS_CA_BUNDLE`: the JavaScript SDK v3 does not read it (only the CLI and
 * the Python/Go SDKs do), so it neither helps nor breaks plain-http endpoints
 * such as a local s3rver. For an https endpoint with a private CA, start the
 * process with NODE_EXTRA_CA_CERTS=<bundle>.
 */
import { readFileSync } from "node:fs";
import { S3Client } from "@aws-sdk/client-s3";
import { S3_BOUNDS } from "../../protocol/config-schema.js";
import { algorithmOf, type Digest, encodedOf } from "../../protocol/digest.js";
import { MeridianError, StorageUnavailableError } from "../../protocol/errors.js";

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
  /** A TCP connection to the service within this, ms (S3_BOUNDS). */
  connectTimeoutMs?: number;
  /** A request that moves no byte for this long is cut, ms (S3_BOUNDS). */
  idleTimeoutMs?: number;
  /** Tries of one call in all, the first included (S3_BOUNDS). */
  maxAttempts?: number;
}

/** What /healthz says of the store: the outcome of its last S3 call. */
export interface StoreHealth {
  ok: boolean;
  /** With !ok: why the last call failed, and since when calls fail (ISO time). */
  error?: string;
  since?: string;
}

/** The outcome of the last S3 call of a client (set by its middleware). */
export class S3Health {
  #failure: { error: string; since: string } | undefined;
  succeeded(): void {
    this.#failure = undefined;
  }
  failed(err: Error): void {
    this.#failure ??= { error: err.message, since: new Date().toISOString() };
    this.#failure.error = err.message;
  }
  get status(): StoreHealth {
    return this.#failure === undefined ? { ok: true } : { ok: false, ...this.#failure };
  }
}

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNABORTED",
  "UND_ERR_SOCKET",
]);

/**
 * `err` as the store reports it: a timeout, an unreachable service or a 5xx
 * becomes StorageUnavailableError (503); anything else (not found, a
 * caller's abort, a 4xx, a Meridian error) is returned unchanged.
 */
export function storeError(err: unknown): unknown {
  if (err instanceof MeridianError || !(err instanceof Error)) return err;
  const e = err as Error & { code?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === "AbortError") return err;
  const status = e.$metadata?.httpStatusCode;
  const unreachable =
    e.name === "TimeoutError" ||
    (e.code !== undefined && UNREACHABLE_CODES.has(e.code)) ||
    (status !== undefined && status >= 500);
  if (!unreachable) return err;
  const what =
    e.name === "TimeoutError" ? "did not answer in time" : `failed (${e.code ?? status ?? e.name})`;
  return new StorageUnavailableError(`the blob store (S3) ${what}`, { cause: err });
}

export function makeS3Client(settings: S3StoreSettings, health?: S3Health): S3Client {
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
    maxAttempts: settings.maxAttempts ?? S3_BOUNDS.maxAttempts,
    // socketTimeout is smithy's idle timeout (no byte either way, either
    // direction, mid-body included); its requestTimeout would be a deadline
    // to the response headers, which a long part upload must not have.
    requestHandler: {
      connectionTimeout: settings.connectTimeoutMs ?? S3_BOUNDS.connectTimeoutMs,
      socketTimeout: settings.idleTimeoutMs ?? S3_BOUNDS.idleTimeoutMs,
    },
  });
  // Outside the retries (initialize step): one verdict per call, after its last attempt.
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        const out = await next(args);
        health?.succeeded();
        return out;
      } catch (err) {
        const mapped = storeError(err);
        if (mapped instanceof StorageUnavailableError) health?.failed(mapped);
        else if ((err as { $metadata?: unknown }).$metadata !== undefined) health?.succeeded();
        throw mapped;
      }
    },
    { step: "initialize", name: "meridianStoreErrors" },
  );
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
