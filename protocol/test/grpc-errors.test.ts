import assert from "node:assert/strict";
import { test } from "node:test";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  BlobNotFoundError,
  DigestInvalidError,
  DigestMismatchError,
  isTerminal,
  LogUnavailableError,
  ManifestNotFoundError,
  type MeridianError,
  NameInvalidError,
  PeerInternalError,
  PeerUnavailableError,
  RangeNotSatisfiableError,
  RegionFencedError,
  TagInvalidError,
  UnsupportedError,
} from "../errors.js";
import { ERROR_CODE_KEY, fromGrpcError, grpcBindings, toGrpcStatus } from "../grpc-errors.js";

/** What a caller sees of a status: code, details and (from a peer's service) the trailing metadata. */
function serviceError(code: status, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata });
}

/** One instance of any class of the table (RangeNotSatisfiableError takes a size). */
function instance(cls: unknown, message: string): MeridianError {
  const C = cls as new (message: string, extra?: unknown) => MeridianError;
  return cls === RangeNotSatisfiableError ? new C(message, 10) : new C(message, {});
}

/** A status as the service sends it, as the caller receives it. */
function roundTrip(err: unknown, what = "thing"): MeridianError {
  const s = toGrpcStatus(err);
  return fromGrpcError(serviceError(s.code, s.details, s.metadata), what);
}

test("the table, both ways: every class leaves with its status and its code, and comes back as itself", () => {
  const expected = new Map<unknown, status>([
    [BlobNotFoundError, status.NOT_FOUND],
    [ManifestNotFoundError, status.NOT_FOUND],
    [DigestInvalidError, status.INVALID_ARGUMENT],
    [NameInvalidError, status.INVALID_ARGUMENT],
    [TagInvalidError, status.INVALID_ARGUMENT],
    [UnsupportedError, status.INVALID_ARGUMENT],
    [RangeNotSatisfiableError, status.INVALID_ARGUMENT],
    [DigestMismatchError, status.DATA_LOSS],
    [PeerUnavailableError, status.UNAVAILABLE],
    [PeerInternalError, status.INTERNAL],
  ]);
  assert.deepEqual(new Map(grpcBindings()), expected);
  for (const [cls, code] of grpcBindings()) {
    const err = instance(cls, "boom");
    const s = toGrpcStatus(err);
    assert.equal(s.code, code, cls.name);
    assert.deepEqual(s.metadata.get(ERROR_CODE_KEY), [err.code], cls.name);
    const back = fromGrpcError(serviceError(s.code, s.details, s.metadata), "blob x");
    assert.equal(back.constructor, cls, cls.name);
    assert.equal(back.code, err.code);
    assert.equal(back.terminal, err.terminal, cls.name);
    assert.equal(back.recoverable, err.recoverable, cls.name);
    assert.match(back.message, /^blob x: .*boom/);
  }
});

test("the code travels, not the details: the same status comes back as different classes", () => {
  const manifest = toGrpcStatus(new ManifestNotFoundError("gone"));
  const blob = toGrpcStatus(new BlobNotFoundError("gone"));
  assert.equal(manifest.code, blob.code);
  // Details saying otherwise do not matter: only the metadata's code does.
  const misleading = serviceError(manifest.code, "BLOB_NOT_FOUND: gone", manifest.metadata);
  assert.ok(fromGrpcError(misleading, "m") instanceof ManifestNotFoundError);
  assert.ok(
    fromGrpcError(serviceError(blob.code, "MANIFEST", blob.metadata), "b") instanceof BlobNotFoundError,
  );
});

test("recoverable errors outside the table leave as UNAVAILABLE and come back as a peer unavailable", () => {
  for (const err of [new LogUnavailableError("log down"), new RegionFencedError("fenced")]) {
    const s = toGrpcStatus(err);
    assert.equal(s.code, status.UNAVAILABLE);
    const back = roundTrip(err);
    assert.ok(back instanceof PeerUnavailableError, err.name);
    assert.equal(back.recoverable, true);
    assert.equal(isTerminal(back), false);
  }
});

test("unexpected errors are INTERNAL without their message, and terminal for the caller", () => {
  const s = toGrpcStatus(new Error("secret path /etc/x"));
  assert.equal(s.code, status.INTERNAL);
  assert.doesNotMatch(s.details, /secret/);
  const back = roundTrip(new Error("secret path /etc/x"), "blob sha256:ab");
  assert.ok(back instanceof PeerInternalError);
  assert.doesNotMatch(back.message, /secret/);
  assert.equal(isTerminal(back), true);
  assert.equal(back.recoverable, false);
});

test("validation failures are terminal, transient ones are not", () => {
  for (const err of [
    new DigestInvalidError("x"),
    new NameInvalidError("x"),
    new TagInvalidError("x"),
    new UnsupportedError("x"),
  ]) {
    assert.equal(isTerminal(roundTrip(err)), true, err.name);
  }
  for (const err of [
    new BlobNotFoundError("x"),
    new DigestMismatchError("x"),
    new PeerUnavailableError("x"),
  ]) {
    assert.equal(isTerminal(roundTrip(err)), false, err.name);
  }
});

test("without the metadata (grpc-js raised it) the status decides, and transport failures stay retryable", () => {
  for (const code of [
    status.UNAVAILABLE,
    status.DEADLINE_EXCEEDED,
    status.CANCELLED,
    status.INTERNAL,
    status.UNKNOWN,
    status.RESOURCE_EXHAUSTED,
    status.PERMISSION_DENIED,
    status.UNIMPLEMENTED,
  ]) {
    const err = fromGrpcError(serviceError(code, "x"), "blob");
    assert.ok(err instanceof PeerUnavailableError, status[code]);
    assert.equal(err.recoverable, true);
    assert.equal(isTerminal(err), false, status[code]);
  }
  assert.ok(fromGrpcError(serviceError(status.NOT_FOUND, "x"), "b") instanceof BlobNotFoundError);
  assert.ok(fromGrpcError(serviceError(status.INVALID_ARGUMENT, "x"), "b") instanceof DigestInvalidError);
  assert.ok(fromGrpcError(serviceError(status.DATA_LOSS, "x"), "b") instanceof DigestMismatchError);
  // A plain Error (no status at all) and an unknown code in the metadata fall back too.
  assert.ok(fromGrpcError(new Error("boom"), "b") instanceof PeerUnavailableError);
  const unknown = new Metadata();
  unknown.set(ERROR_CODE_KEY, "FROM_A_NEWER_PEER");
  assert.ok(fromGrpcError(serviceError(status.INTERNAL, "x", unknown), "b") instanceof PeerUnavailableError);
});
