import assert from "node:assert/strict";
import { test } from "node:test";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  BlobNotFoundError,
  DigestInvalidError,
  LogUnavailableError,
  ManifestNotFoundError,
  PeerUnavailableError,
  UnsupportedError,
} from "../errors.js";
import { fromGrpcError, toGrpcStatus } from "../grpc-errors.js";

function serviceError(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new Metadata() });
}

test("domain errors map to gRPC status and back to the same kind", () => {
  const cases: Array<[Error, status, new (...a: never[]) => Error]> = [
    [new BlobNotFoundError("x"), status.NOT_FOUND, BlobNotFoundError],
    [new ManifestNotFoundError("x"), status.NOT_FOUND, ManifestNotFoundError],
    [new DigestInvalidError("x"), status.INVALID_ARGUMENT, DigestInvalidError],
    [new LogUnavailableError("x"), status.UNAVAILABLE, PeerUnavailableError],
    [new UnsupportedError("x"), status.INVALID_ARGUMENT, UnsupportedError],
  ];
  for (const [err, code, back] of cases) {
    const s = toGrpcStatus(err);
    assert.equal(s.code, code, err.name);
    assert.ok(fromGrpcError(serviceError(s.code, s.details), "thing") instanceof back, err.name);
  }
});

test("unexpected errors are INTERNAL without their message; transport failures are recoverable", () => {
  const s = toGrpcStatus(new Error("secret path /etc/x"));
  assert.equal(s.code, status.INTERNAL);
  assert.doesNotMatch(s.details, /secret/);
  for (const code of [status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED, status.INTERNAL]) {
    const err = fromGrpcError(serviceError(code, "x"), "blob");
    assert.ok(err instanceof PeerUnavailableError);
    assert.equal(err.recoverable, true);
  }
});
