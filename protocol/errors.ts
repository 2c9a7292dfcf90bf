/**
 * The error catalogue: every failure a Meridian component can report, as one
 * `MeridianError` subclass each, and the one table binding each to its OCI
 * code and HTTP status. Stores, logs and workers throw these; only the HTTP
 * layer (node/http) turns them into responses, through `ociErrorFor`.
 *
 * `recoverable` marks failures a caller may retry unchanged (the log was
 * down, a peer timed out). Everything else is the request's fault or final.
 * `terminal` marks the final ones a loop that retries an operation until it
 * succeeds (the replication worker copying an event's content) must give up
 * on at once: the request is invalid, or the peer failed unexpectedly serving
 * it, and asking again the same way meets the same answer. Neither (a blob
 * not found, a digest mismatch): retrying later or elsewhere may succeed.
 */

/** OCI Distribution error codes (spec §"Error Codes"), plus two extensions. */
export type OciCode =
  | "BLOB_UNKNOWN"
  | "BLOB_UPLOAD_INVALID"
  | "BLOB_UPLOAD_UNKNOWN"
  | "DIGEST_INVALID"
  | "MANIFEST_BLOB_UNKNOWN"
  | "MANIFEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "SIZE_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED"
  | "TOOMANYREQUESTS"
  // Extensions, as CNCF Distribution uses them: a dependency is down (503),
  // and a pagination parameter is malformed (400).
  | "UNAVAILABLE"
  | "PAGINATION_NUMBER_INVALID"
  // Extension: a Range header on a blob GET that cannot be served (416).
  | "RANGE_INVALID"
  // Extension: the region's disk is full (507 Insufficient Storage): StorageFullError.
  | "STORAGE_FULL";

export interface MeridianErrorOptions {
  cause?: unknown;
  /** Structured detail for the OCI envelope's `detail` field. */
  detail?: unknown;
}

export class MeridianError extends Error {
  /** Stable machine-readable name of the failure (the class's identity). */
  readonly code: string = "INTERNAL";
  /** True when retrying the same operation later may succeed. */
  readonly recoverable: boolean = false;
  /** True when retrying the same operation can never succeed (see the header); never with `recoverable`. */
  readonly terminal: boolean = false;
  readonly detail: unknown;

  constructor(message: string, options: MeridianErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.detail = options.detail;
  }
}

export class BlobNotFoundError extends MeridianError {
  override readonly code = "BLOB_NOT_FOUND";
}
export class UploadNotFoundError extends MeridianError {
  override readonly code = "UPLOAD_NOT_FOUND";
}
/** An upload cannot proceed: a chunk out of order, a length that does not add up. */
export class UploadInvalidError extends MeridianError {
  override readonly code = "UPLOAD_INVALID";
}
/** A chunk's Content-Range does not start at the upload's current offset. */
export class UploadRangeError extends MeridianError {
  override readonly code = "UPLOAD_RANGE";
}
export class DigestInvalidError extends MeridianError {
  override readonly code = "DIGEST_INVALID";
  override readonly terminal = true;
}
/** Content did not hash to the digest it was sent or stored under. */
export class DigestMismatchError extends MeridianError {
  override readonly code = "DIGEST_MISMATCH";
}
export class ManifestNotFoundError extends MeridianError {
  override readonly code = "MANIFEST_NOT_FOUND";
}
export class ManifestInvalidError extends MeridianError {
  override readonly code = "MANIFEST_INVALID";
  override readonly terminal = true;
}
/** A manifest refers to blobs or child manifests the repository does not hold. */
export class ManifestReferenceError extends MeridianError {
  override readonly code = "MANIFEST_REFERENCE_UNKNOWN";
}
export class ManifestTooLargeError extends MeridianError {
  override readonly code = "MANIFEST_TOO_LARGE";
}
export class NameInvalidError extends MeridianError {
  override readonly code = "NAME_INVALID";
  override readonly terminal = true;
}
export class RepositoryNotFoundError extends MeridianError {
  override readonly code = "REPOSITORY_NOT_FOUND";
}
export class TagInvalidError extends MeridianError {
  override readonly code = "TAG_INVALID";
  override readonly terminal = true;
}
export class SizeInvalidError extends MeridianError {
  override readonly code = "SIZE_INVALID";
}
export class RangeNotSatisfiableError extends MeridianError {
  override readonly code = "RANGE_NOT_SATISFIABLE";
  override readonly terminal = true;
  constructor(
    message: string,
    /** Size of the entity, for the `Content-Range: bytes *\/size` reply. */
    readonly size: number,
    options: MeridianErrorOptions = {},
  ) {
    super(message, options);
  }
}
export class PaginationInvalidError extends MeridianError {
  override readonly code = "PAGINATION_INVALID";
}
export class UnsupportedError extends MeridianError {
  override readonly code = "UNSUPPORTED";
  override readonly terminal = true;
}
export class MethodNotAllowedError extends MeridianError {
  override readonly code = "METHOD_NOT_ALLOWED";
}
export class RouteNotFoundError extends MeridianError {
  override readonly code = "ROUTE_NOT_FOUND";
}
/** The regional event log cannot take writes right now. */
export class LogUnavailableError extends MeridianError {
  override readonly code = "LOG_UNAVAILABLE";
  override readonly recoverable = true;
}
/** A compare-and-set append lost to a concurrent writer; re-read and retry. */
export class LogConflictError extends MeridianError {
  override readonly code = "LOG_CONFLICT";
  override readonly recoverable = true;
}
export class EventInvalidError extends MeridianError {
  override readonly code = "EVENT_INVALID";
}
/**
 * The region's blob store (an S3 service) refused, failed (5xx) or did not
 * answer within its bounds (node/data/s3-client.ts): the bytes are not
 * reachable right now; retrying later may succeed.
 */
export class StorageUnavailableError extends MeridianError {
  override readonly code = "STORAGE_UNAVAILABLE";
  override readonly recoverable = true;
}
/**
 * The region's disk (the blob store's directory, or the view's) is full
 * (ENOSPC, EDQUOT): 507 Insufficient Storage (RFC 4918), the status made for
 * "the server cannot store what this request needs", with the extension code
 * STORAGE_FULL (the OCI spec has none for it; clients treat a 5xx as a failed
 * push and may retry). Not 503 UNAVAILABLE: an operator's alert on status 507
 * tells a full disk from a log that is down. Nothing partial became visible (every write commits
 * by one rename or one event, after its bytes are all stored), pulls go on,
 * and pushes succeed again as soon as space is freed: nothing is latched.
 */
export class StorageFullError extends MeridianError {
  override readonly code = "STORAGE_FULL";
  override readonly recoverable = true;
}
/**
 * Is `err` (or one of its causes) a full disk: ENOSPC or EDQUOT, as an errno
 * code or in a message (LevelDB wraps it in its own error)? Pure; for the
 * error paths that turn it into StorageFullError.
 */
export function isStorageFull(err: unknown): boolean {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e.code === "ENOSPC" || e.code === "EDQUOT") return true;
    if (/no space left on device|disk quota exceeded/i.test(String(e.message))) return true;
    e = e.cause as typeof e;
  }
  return false;
}
/** A peer region could not be reached or did not answer in time. */
export class PeerUnavailableError extends MeridianError {
  override readonly code = "PEER_UNAVAILABLE";
  override readonly recoverable = true;
}
/**
 * A peer failed unexpectedly serving a call (gRPC INTERNAL, sent by its
 * service: protocol/grpc-errors.ts): a corrupt record, a bug. Its message is
 * not sent across regions. Asking again meets the same fault: terminal.
 */
export class PeerInternalError extends MeridianError {
  override readonly code = "PEER_INTERNAL";
  override readonly terminal = true;
}
/** A request body ended before the length it announced, or the client went away. */
export class RequestAbortedError extends MeridianError {
  override readonly code = "REQUEST_ABORTED";
}

/** A replication policy (or its YAML) is malformed; the message names the field. */
export class PolicyInvalidError extends MeridianError {
  override readonly code = "POLICY_INVALID";
}
/** No policy (or other admin object) by that name. */
export class PolicyNotFoundError extends MeridianError {
  override readonly code = "POLICY_NOT_FOUND";
}
/** A tag write refused by the repository's merge rule (immutable tag, not the home region). */
export class TagImmutableError extends MeridianError {
  override readonly code = "TAG_IMMUTABLE";
}
/** Deleted content can no longer be restored: the undelete window has passed, or nothing was deleted. */
export class UndeleteError extends MeridianError {
  override readonly code = "UNDELETE_IMPOSSIBLE";
}

/**
 * A write this region must not accept as the repository's home right now:
 * it is cut off from every other region past its lease, or another region
 * reports a later failover epoch (control-plane/fence.ts). Retry elsewhere
 * (the front door knows the current home) or once the region has caught up.
 */
export class RegionFencedError extends MeridianError {
  override readonly code = "REGION_FENCED";
  override readonly recoverable = true;
}
/**
 * A push to a `sync(k)` repository is stored in this region but fewer than k
 * other regions held it within the wait: not acknowledged. Retrying the same
 * push is safe (it waits again, and usually succeeds at once).
 */
export class ReplicationPendingError extends MeridianError {
  override readonly code = "REPLICATION_PENDING";
  override readonly recoverable = true;
}
/** A failover that would let two regions write as one repository's home (the old home is still up). */
export class FailoverRefusedError extends MeridianError {
  override readonly code = "FAILOVER_REFUSED";
}

/**
 * The request carries no credentials where some are needed, or credentials
 * that do not check out (bad password, expired or tampered token, a token
 * without the scope asked for). The HTTP layer adds the Bearer challenge.
 */
export class UnauthorizedError extends MeridianError {
  override readonly code = "UNAUTHORIZED";
}
/** Good credentials, but their holder may not do this (node/auth, protocol/access.ts). */
export class AccessDeniedError extends MeridianError {
  override readonly code = "ACCESS_DENIED";
}
/** Too many failed logins for this user or from this address; `detail.retryAfterSeconds` says when to try again. */
export class TooManyLoginsError extends MeridianError {
  override readonly code = "TOO_MANY_LOGINS";
}

/**
 * Over a pull or push rate limit (node/rate-limits.ts, issue 18): 429
 * TOOMANYREQUESTS with `Retry-After` (`detail.retryAfterSeconds`), as Docker
 * Hub answers; clients back off and retry.
 */
export class RateLimitedError extends MeridianError {
  override readonly code = "RATE_LIMITED";
}

/**
 * The user directory (LDAP, issue 18) did not answer a sign-in in time, or
 * refused the service account: a new login cannot be checked now, which is
 * not a wrong password (503 UNAVAILABLE with Retry-After,
 * `detail.retryAfterSeconds`). Tokens already issued keep working.
 */
export class DirectoryUnavailableError extends MeridianError {
  override readonly code = "DIRECTORY_UNAVAILABLE";
  override readonly recoverable = true;
}

/**
 * Too many upload sessions open (overall, for the repository or for the
 * client): 429 TOOMANYREQUESTS, the spec's code for a client over a limit
 * (what Distribution and Docker Hub send when they throttle); the client
 * retries once sessions finish or expire.
 */
export class UploadLimitError extends MeridianError {
  override readonly code = "UPLOAD_LIMIT";
}

/**
 * A push that would take its project over its storage quota in this region
 * (node/data/quota-gate.ts): 403 DENIED "quota exceeded", as Harbor answers
 * an over-quota push (it moved from 500 to DENIED so that docker stops
 * retrying: goharbor/harbor#8688, #8802) and as the OCI spec's DENIED is
 * 403. Distribution has no quotas. `detail` holds the project, its limit,
 * its usage, what this node has admitted meanwhile and what the push adds.
 */
/**
 * A pull-through cache's upstream registry failed what a miss needed
 * (issue 17; node/pull-through.ts): unreachable, too slow, refused the
 * endpoint's credentials, answered an error, or sent bytes that are not the
 * digest asked for. 503 UNAVAILABLE (the client may retry); never a 401 to the
 * client for the upstream's 401 (its own credentials are not in question).
 */
export class UpstreamError extends MeridianError {
  override readonly code = "UPSTREAM_FAILED";
  override readonly recoverable = true;
}
export class QuotaExceededError extends MeridianError {
  override readonly code = "QUOTA_EXCEEDED";
}

/**
 * A promotion refused by its gates (node/promotion.ts): 403 DENIED, as a push
 * an immutable tag refuses; `detail` holds the promotion id and every gate's
 * result, and the message every failed gate's reason.
 */
export class PromotionRefusedError extends MeridianError {
  override readonly code = "PROMOTION_REFUSED";
}
/** A promotion whose gates passed but whose copy to the destination failed (503: try again). */
export class PromotionCopyError extends MeridianError {
  override readonly code = "PROMOTION_COPY_FAILED";
  override readonly recoverable = true;
}

/**
 * An OIDC sign-in the provider's answer does not complete (issue 18): a
 * state or nonce that does not match the one this sign-in began with, an ID
 * token of another issuer, a code the provider refuses (expired, used), the
 * provider's own error. 400: nothing is signed in; start again.
 */
export class OidcSignInError extends MeridianError {
  override readonly code = "OIDC_SIGN_IN";
}
/** The OIDC provider did not answer (discovery, token, keys) within its bound: 503, sign in later. */
export class IdentityProviderUnavailableError extends MeridianError {
  override readonly code = "IDP_UNAVAILABLE";
  override readonly recoverable = true;
}

export interface OciBinding {
  code: OciCode;
  status: number;
}

/**
 * The one table from domain error to OCI code and HTTP status. Statuses follow
 * the OCI Distribution Spec v1.1 where it names one, CNCF Distribution where it
 * does not.
 */
export type ErrorClass = abstract new (...args: never[]) => MeridianError;

const OCI_TABLE: ReadonlyMap<ErrorClass, OciBinding> = new Map<ErrorClass, OciBinding>([
  [BlobNotFoundError, { code: "BLOB_UNKNOWN", status: 404 }],
  [UploadNotFoundError, { code: "BLOB_UPLOAD_UNKNOWN", status: 404 }],
  [UploadInvalidError, { code: "BLOB_UPLOAD_INVALID", status: 400 }],
  [UploadRangeError, { code: "BLOB_UPLOAD_INVALID", status: 416 }],
  [DigestInvalidError, { code: "DIGEST_INVALID", status: 400 }],
  [DigestMismatchError, { code: "DIGEST_INVALID", status: 400 }],
  [ManifestNotFoundError, { code: "MANIFEST_UNKNOWN", status: 404 }],
  [ManifestInvalidError, { code: "MANIFEST_INVALID", status: 400 }],
  [ManifestReferenceError, { code: "MANIFEST_BLOB_UNKNOWN", status: 400 }],
  [ManifestTooLargeError, { code: "SIZE_INVALID", status: 413 }],
  [NameInvalidError, { code: "NAME_INVALID", status: 400 }],
  [RepositoryNotFoundError, { code: "NAME_UNKNOWN", status: 404 }],
  [TagInvalidError, { code: "MANIFEST_INVALID", status: 400 }],
  [SizeInvalidError, { code: "SIZE_INVALID", status: 400 }],
  [RangeNotSatisfiableError, { code: "RANGE_INVALID", status: 416 }],
  [PaginationInvalidError, { code: "PAGINATION_NUMBER_INVALID", status: 400 }],
  [UnsupportedError, { code: "UNSUPPORTED", status: 400 }],
  [MethodNotAllowedError, { code: "UNSUPPORTED", status: 405 }],
  [RouteNotFoundError, { code: "UNSUPPORTED", status: 404 }],
  [LogUnavailableError, { code: "UNAVAILABLE", status: 503 }],
  [LogConflictError, { code: "UNAVAILABLE", status: 503 }],
  [PeerUnavailableError, { code: "UNAVAILABLE", status: 503 }],
  [StorageUnavailableError, { code: "UNAVAILABLE", status: 503 }],
  [StorageFullError, { code: "STORAGE_FULL", status: 507 }],
  [RequestAbortedError, { code: "SIZE_INVALID", status: 400 }],
  [PolicyInvalidError, { code: "UNSUPPORTED", status: 400 }],
  [PolicyNotFoundError, { code: "NAME_UNKNOWN", status: 404 }],
  [TagImmutableError, { code: "DENIED", status: 403 }],
  [UndeleteError, { code: "DENIED", status: 403 }],
  [RegionFencedError, { code: "UNAVAILABLE", status: 503 }],
  [ReplicationPendingError, { code: "UNAVAILABLE", status: 503 }],
  [FailoverRefusedError, { code: "DENIED", status: 403 }],
  [UnauthorizedError, { code: "UNAUTHORIZED", status: 401 }],
  [AccessDeniedError, { code: "DENIED", status: 403 }],
  [TooManyLoginsError, { code: "TOOMANYREQUESTS", status: 429 }],
  [DirectoryUnavailableError, { code: "UNAVAILABLE", status: 503 }],
  [UploadLimitError, { code: "TOOMANYREQUESTS", status: 429 }],
  [RateLimitedError, { code: "TOOMANYREQUESTS", status: 429 }],
  [QuotaExceededError, { code: "DENIED", status: 403 }],
  [PromotionRefusedError, { code: "DENIED", status: 403 }],
  [PromotionCopyError, { code: "UNAVAILABLE", status: 503 }],
  [UpstreamError, { code: "UNAVAILABLE", status: 503 }],
  [OidcSignInError, { code: "UNSUPPORTED", status: 400 }],
  [IdentityProviderUnavailableError, { code: "UNAVAILABLE", status: 503 }],
]);

/** The OCI binding of a domain error, or undefined for an unexpected error (a 500). */
export function ociErrorFor(err: unknown): OciBinding | undefined {
  if (!(err instanceof MeridianError)) return undefined;
  return OCI_TABLE.get(err.constructor as ErrorClass);
}

/** The OCI binding of a domain error class (a handler answering a miss without throwing one). */
export function ociBindingOf(cls: ErrorClass): OciBinding {
  const binding = OCI_TABLE.get(cls);
  if (binding === undefined) throw new Error(`${cls.name} has no OCI binding`);
  return binding;
}

/** Every class in the table, for the test that checks each binding. */
export function boundErrorClasses(): ErrorClass[] {
  return [...OCI_TABLE.keys()];
}

/** Must a caller that retries until success give up on `err` at once? (`terminal`, see the header.) */
export function isTerminal(err: unknown): err is MeridianError {
  return err instanceof MeridianError && err.terminal;
}
