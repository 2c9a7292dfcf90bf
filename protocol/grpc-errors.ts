/**
 * The one table between domain errors and gRPC status codes, both ways: a
 * peer's service maps what its stores throw to a status with `toGrpcStatus`;
 * a caller maps a failed call back to a domain error with `fromGrpcError`.
 * `recoverable` on the result drives retries and the per-peer breaker.
 */
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import {
  BlobNotFoundError,
  DigestInvalidError,
  DigestMismatchError,
  ManifestNotFoundError,
  MeridianError,
  NameInvalidError,
  PeerUnavailableError,
  RangeNotSatisfiableError,
  TagInvalidError,
  UnsupportedError,
} from "./errors.js";

export function toGrpcStatus(err: unknown): { code: GrpcStatus; details: string } {
  if (err instanceof BlobNotFoundError || err instanceof ManifestNotFoundError) {
    return { code: GrpcStatus.NOT_FOUND, details: `${err.code}: ${err.message}` };
  }
  if (
    err instanceof DigestInvalidError ||
    err instanceof NameInvalidError ||
    err instanceof TagInvalidError ||
    err instanceof RangeNotSatisfiableError ||
    err instanceof UnsupportedError
  ) {
    return { code: GrpcStatus.INVALID_ARGUMENT, details: `${err.code}: ${err.message}` };
  }
  if (err instanceof MeridianError && err.recoverable) {
    return { code: GrpcStatus.UNAVAILABLE, details: `${err.code}: ${err.message}` };
  }
  // Never echo an unexpected error's message to another region.
  return { code: GrpcStatus.INTERNAL, details: "internal error" };
}

/** The domain error for a failed call; `what` names the thing asked for. */
export function fromGrpcError(err: ServiceError | Error, what: string): MeridianError {
  const code = (err as ServiceError).code;
  const details = (err as ServiceError).details ?? err.message;
  switch (code) {
    case GrpcStatus.NOT_FOUND:
      return details.startsWith("MANIFEST")
        ? new ManifestNotFoundError(`${what}: not found at peer`, { cause: err })
        : new BlobNotFoundError(`${what}: not found at peer`, { cause: err });
    case GrpcStatus.INVALID_ARGUMENT:
      if (details.startsWith("UNSUPPORTED")) {
        return new UnsupportedError(`${what}: rejected by peer: ${details}`, { cause: err });
      }
      return new DigestInvalidError(`${what}: rejected by peer: ${details}`, { cause: err });
    case GrpcStatus.DATA_LOSS:
      return new DigestMismatchError(`${what}: corrupt at peer`, { cause: err });
    default:
      // UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, INTERNAL, …: try elsewhere or later.
      return new PeerUnavailableError(`${what}: peer unavailable (${GrpcStatus[code] ?? code})`, {
        cause: err,
      });
  }
}
