/**
 * The one table between domain errors and gRPC status codes, both ways: a
 * peer's service maps what its stores throw to a status with `toGrpcStatus`;
 * a caller maps a failed call back to a domain error with `fromGrpcError`.
 *
 * The domain error's code (`MeridianError.code`) travels structured, in the
 * status's trailing metadata under `meridian-error-code`, never parsed out
 * of the human-readable details (which still read "CODE: message", as peers
 * of earlier versions expect them). The caller rebuilds the class bound to that
 * code. Without the metadata (grpc-js raised the status itself: a deadline, a
 * refused connection, a reset stream, a cancellation; or a peer of an older
 * version) only the status is known, and `FALLBACK` decides: INTERNAL then
 * stays a retryable PeerUnavailableError (grpc-js reports some transport
 * failures as INTERNAL), while an INTERNAL the peer's service sent itself
 * (with the code) is a PeerInternalError, terminal for the event asking.
 *
 * A peer's error that is recoverable but not in the table (its log is down,
 * it is fenced) means, for the caller, that the peer is unavailable now:
 * UNAVAILABLE with PeerUnavailableError's code. Anything else unexpected is
 * INTERNAL with PeerInternalError's code, and its message stays home.
 *
 * `recoverable` on the result drives retries and the per-peer breaker;
 * `terminal` (protocol/errors.ts) makes the replication worker give up on
 * the event at once instead of retrying it until its deadline.
 */
import { status as GrpcStatus, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  BlobNotFoundError,
  DigestInvalidError,
  DigestMismatchError,
  ManifestNotFoundError,
  MeridianError,
  type MeridianErrorOptions,
  NameInvalidError,
  PeerInternalError,
  PeerUnavailableError,
  RangeNotSatisfiableError,
  TagInvalidError,
  UnsupportedError,
} from "./errors.js";

/** The trailing metadata key carrying the domain error's code. */
export const ERROR_CODE_KEY = "meridian-error-code";

type ErrorClass = abstract new (...args: never[]) => MeridianError;

interface GrpcBinding {
  status: GrpcStatus;
  /** The same error on the caller's side, from the call's message. */
  rebuild: (message: string, options: MeridianErrorOptions) => MeridianError;
}

/** The one table, keyed by error class: the gRPC status each leaves a peer with, and how it comes back. */
const GRPC_TABLE: ReadonlyMap<ErrorClass, GrpcBinding> = new Map<ErrorClass, GrpcBinding>([
  [BlobNotFoundError, { status: GrpcStatus.NOT_FOUND, rebuild: (m, o) => new BlobNotFoundError(m, o) }],
  [
    ManifestNotFoundError,
    { status: GrpcStatus.NOT_FOUND, rebuild: (m, o) => new ManifestNotFoundError(m, o) },
  ],
  [
    DigestInvalidError,
    { status: GrpcStatus.INVALID_ARGUMENT, rebuild: (m, o) => new DigestInvalidError(m, o) },
  ],
  [NameInvalidError, { status: GrpcStatus.INVALID_ARGUMENT, rebuild: (m, o) => new NameInvalidError(m, o) }],
  [TagInvalidError, { status: GrpcStatus.INVALID_ARGUMENT, rebuild: (m, o) => new TagInvalidError(m, o) }],
  [UnsupportedError, { status: GrpcStatus.INVALID_ARGUMENT, rebuild: (m, o) => new UnsupportedError(m, o) }],
  [
    RangeNotSatisfiableError,
    // The entity's size does not travel: a caller learns only that its offset was refused.
    { status: GrpcStatus.INVALID_ARGUMENT, rebuild: (m, o) => new RangeNotSatisfiableError(m, 0, o) },
  ],
  [DigestMismatchError, { status: GrpcStatus.DATA_LOSS, rebuild: (m, o) => new DigestMismatchError(m, o) }],
  [
    PeerUnavailableError,
    { status: GrpcStatus.UNAVAILABLE, rebuild: (m, o) => new PeerUnavailableError(m, o) },
  ],
  [PeerInternalError, { status: GrpcStatus.INTERNAL, rebuild: (m, o) => new PeerInternalError(m, o) }],
]);

/** The table the other way: a code from the metadata to its binding. */
const BY_CODE: ReadonlyMap<string, GrpcBinding> = new Map(
  [...GRPC_TABLE.values()].map((binding) => [binding.rebuild("", {}).code, binding]),
);

/**
 * A status that came without Meridian's code (see the header): what grpc-js
 * never raises itself keeps its meaning; everything else, INTERNAL included,
 * is the peer being unreachable or failing, to retry later or elsewhere.
 */
const FALLBACK: ReadonlyMap<GrpcStatus, ErrorClass> = new Map<GrpcStatus, ErrorClass>([
  [GrpcStatus.NOT_FOUND, BlobNotFoundError],
  [GrpcStatus.INVALID_ARGUMENT, DigestInvalidError],
  [GrpcStatus.DATA_LOSS, DigestMismatchError],
]);

/** What a peer's service answers a failed call with. */
export interface GrpcErrorStatus {
  code: GrpcStatus;
  details: string;
  /** Trailing metadata carrying the domain error's code (ERROR_CODE_KEY). */
  metadata: Metadata;
}

function statusOf(code: GrpcStatus, errorCode: string, details: string): GrpcErrorStatus {
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_KEY, errorCode);
  return { code, details, metadata };
}

export function toGrpcStatus(err: unknown): GrpcErrorStatus {
  const binding = err instanceof MeridianError ? GRPC_TABLE.get(err.constructor as ErrorClass) : undefined;
  if (binding !== undefined) {
    const e = err as MeridianError;
    return statusOf(binding.status, e.code, `${e.code}: ${e.message}`);
  }
  if (err instanceof MeridianError && err.recoverable) {
    return statusOf(GrpcStatus.UNAVAILABLE, new PeerUnavailableError("").code, `${err.code}: ${err.message}`);
  }
  // Never echo an unexpected error's message to another region.
  return statusOf(GrpcStatus.INTERNAL, new PeerInternalError("").code, "internal error");
}

/** The domain error for a failed call; `what` names the thing asked for. */
export function fromGrpcError(err: ServiceError | Error, what: string): MeridianError {
  const code = (err as Partial<ServiceError>).code ?? GrpcStatus.UNKNOWN;
  const details = (err as Partial<ServiceError>).details ?? err.message;
  const [errorCode] = (err as Partial<ServiceError>).metadata?.get(ERROR_CODE_KEY) ?? [];
  const binding = typeof errorCode === "string" ? BY_CODE.get(errorCode) : undefined;
  if (binding !== undefined) return binding.rebuild(`${what}: ${details}`, { cause: err });
  const fallback = FALLBACK.get(code);
  if (fallback !== undefined) {
    const binding = GRPC_TABLE.get(fallback)!;
    return binding.rebuild(`${what}: ${details} (${GrpcStatus[code]})`, { cause: err });
  }
  // UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, INTERNAL from grpc-js, …: try elsewhere or later.
  return new PeerUnavailableError(`${what}: peer unavailable (${GrpcStatus[code] ?? code})`, {
    cause: err,
  });
}

/** Every class in the table with its status, for the test that checks each binding both ways. */
export function grpcBindings(): Array<[ErrorClass, GrpcStatus]> {
  return [...GRPC_TABLE].map(([cls, binding]) => [cls, binding.status]);
}
