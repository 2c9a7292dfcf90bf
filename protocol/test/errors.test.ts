import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as errors from "../errors.js";
import {
  boundErrorClasses,
  MeridianError,
  type OciCode,
  ociErrorFor,
  RangeNotSatisfiableError,
} from "../errors.js";

type AnyErrorClass = new (message: string, ...rest: never[]) => MeridianError;

/** Builds an instance of any catalogue class (RangeNotSatisfiableError takes a size). */
function instance(cls: unknown, message = "boom"): MeridianError {
  const C = cls as new (message: string, extra?: unknown) => MeridianError;
  return cls === RangeNotSatisfiableError ? new C(message, 10) : new C(message, {});
}

const OCI_CODES: ReadonlySet<OciCode> = new Set<OciCode>([
  "STORAGE_FULL",
  "BLOB_UNKNOWN",
  "BLOB_UPLOAD_INVALID",
  "BLOB_UPLOAD_UNKNOWN",
  "DIGEST_INVALID",
  "MANIFEST_BLOB_UNKNOWN",
  "MANIFEST_INVALID",
  "MANIFEST_UNKNOWN",
  "NAME_INVALID",
  "NAME_UNKNOWN",
  "SIZE_INVALID",
  "UNAUTHORIZED",
  "DENIED",
  "UNSUPPORTED",
  "TOOMANYREQUESTS",
  "UNAVAILABLE",
  "PAGINATION_NUMBER_INVALID",
  "RANGE_INVALID",
]);

/** Every MeridianError subclass the catalogue exports. */
const EXPORTED_CLASSES = Object.entries(errors).filter(
  ([, v]) => typeof v === "function" && v.prototype instanceof MeridianError,
) as [string, AnyErrorClass][];

/** Classes deliberately left unbound: they reach a client only as a 500. */
const UNBOUND = new Set(["EventInvalidError", "PeerInternalError"]);

/** The binding each class must have (OCI Distribution Spec v1.1, CNCF Distribution where silent). */
const EXPECTED: Record<string, { code: OciCode; status: number }> = {
  BlobNotFoundError: { code: "BLOB_UNKNOWN", status: 404 },
  UploadNotFoundError: { code: "BLOB_UPLOAD_UNKNOWN", status: 404 },
  UploadInvalidError: { code: "BLOB_UPLOAD_INVALID", status: 400 },
  UploadRangeError: { code: "BLOB_UPLOAD_INVALID", status: 416 },
  DigestInvalidError: { code: "DIGEST_INVALID", status: 400 },
  DigestMismatchError: { code: "DIGEST_INVALID", status: 400 },
  ManifestNotFoundError: { code: "MANIFEST_UNKNOWN", status: 404 },
  ManifestInvalidError: { code: "MANIFEST_INVALID", status: 400 },
  ManifestReferenceError: { code: "MANIFEST_BLOB_UNKNOWN", status: 400 },
  ManifestTooLargeError: { code: "SIZE_INVALID", status: 413 },
  NameInvalidError: { code: "NAME_INVALID", status: 400 },
  RepositoryNotFoundError: { code: "NAME_UNKNOWN", status: 404 },
  TagInvalidError: { code: "MANIFEST_INVALID", status: 400 },
  SizeInvalidError: { code: "SIZE_INVALID", status: 400 },
  RangeNotSatisfiableError: { code: "RANGE_INVALID", status: 416 },
  PaginationInvalidError: { code: "PAGINATION_NUMBER_INVALID", status: 400 },
  UnsupportedError: { code: "UNSUPPORTED", status: 400 },
  MethodNotAllowedError: { code: "UNSUPPORTED", status: 405 },
  RouteNotFoundError: { code: "UNSUPPORTED", status: 404 },
  LogUnavailableError: { code: "UNAVAILABLE", status: 503 },
  LogConflictError: { code: "UNAVAILABLE", status: 503 },
  PeerUnavailableError: { code: "UNAVAILABLE", status: 503 },
  StorageUnavailableError: { code: "UNAVAILABLE", status: 503 },
  StorageFullError: { code: "STORAGE_FULL", status: 507 },
  RequestAbortedError: { code: "SIZE_INVALID", status: 400 },
  PolicyInvalidError: { code: "UNSUPPORTED", status: 400 },
  PolicyNotFoundError: { code: "NAME_UNKNOWN", status: 404 },
  TagImmutableError: { code: "DENIED", status: 403 },
  UndeleteError: { code: "DENIED", status: 403 },
  RegionFencedError: { code: "UNAVAILABLE", status: 503 },
  ReplicationPendingError: { code: "UNAVAILABLE", status: 503 },
  FailoverRefusedError: { code: "DENIED", status: 403 },
  UnauthorizedError: { code: "UNAUTHORIZED", status: 401 },
  AccessDeniedError: { code: "DENIED", status: 403 },
  TooManyLoginsError: { code: "TOOMANYREQUESTS", status: 429 },
  RateLimitedError: { code: "TOOMANYREQUESTS", status: 429 },
  DirectoryUnavailableError: { code: "UNAVAILABLE", status: 503 },
  UploadLimitError: { code: "TOOMANYREQUESTS", status: 429 },
  QuotaExceededError: { code: "DENIED", status: 403 },
  PromotionRefusedError: { code: "DENIED", status: 403 },
  PromotionCopyError: { code: "UNAVAILABLE", status: 503 },
  UpstreamError: { code: "UNAVAILABLE", status: 503 },
  OidcSignInError: { code: "UNSUPPORTED", status: 400 },
  IdentityProviderUnavailableError: { code: "UNAVAILABLE", status: 503 },
};

/** Codes the spec ties to one status: a code must not be sent with two statuses. */
const SPEC_STATUS: Partial<Record<OciCode, number>> = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  UNAUTHORIZED: 401,
  DENIED: 403,
  TOOMANYREQUESTS: 429,
  UNAVAILABLE: 503,
  RANGE_INVALID: 416,
};

describe("the OCI binding table", () => {
  const classes = boundErrorClasses();

  test("is not empty and has no duplicates", () => {
    assert.ok(classes.length >= 20);
    assert.equal(new Set(classes).size, classes.length);
  });

  for (const cls of classes) {
    test(`${cls.name} maps to an OCI code and a 4xx/5xx status`, () => {
      const err = instance(cls);
      const binding = ociErrorFor(err);
      assert.ok(binding !== undefined, `${cls.name} has no binding`);
      assert.ok(OCI_CODES.has(binding.code), `unknown OCI code ${binding.code}`);
      assert.ok(Number.isInteger(binding.status));
      assert.ok(binding.status >= 400 && binding.status <= 599, `status ${binding.status}`);
      assert.deepEqual(binding, EXPECTED[cls.name], `${cls.name} binding changed`);
      const spec = SPEC_STATUS[binding.code];
      if (spec !== undefined) assert.equal(binding.status, spec, `${binding.code} must be ${spec}`);
    });
  }

  test("every exported MeridianError subclass is bound, or listed as deliberately unbound", () => {
    const bound = new Set(classes.map((c) => c.name));
    for (const [name] of EXPORTED_CLASSES) {
      assert.ok(bound.has(name) || UNBOUND.has(name), `${name} is neither bound nor listed unbound`);
    }
    assert.ok(EXPORTED_CLASSES.length >= classes.length);
  });

  test("the expectation table covers exactly the bound classes", () => {
    assert.deepEqual(classes.map((c) => c.name).sort(), Object.keys(EXPECTED).sort());
  });

  test("only 503s (and 507, a full disk) are recoverable, and every one is", () => {
    for (const cls of classes) {
      const err = instance(cls);
      assert.equal(err.recoverable, [503, 507].includes(ociErrorFor(err)!.status), cls.name);
    }
  });
});

describe("ociErrorFor of anything else", () => {
  const others: [string, unknown][] = [
    ["a plain Error", new Error("x")],
    ["a TypeError", new TypeError("x")],
    ["a RangeError", new RangeError("x")],
    ["an AbortError", new DOMException("aborted", "AbortError")],
    ["a system error", Object.assign(new Error("ENOENT"), { code: "ENOENT" })],
    ["an object with a code", { code: "BLOB_UNKNOWN", status: 404 }],
    ["a string", "BLOB_UNKNOWN"],
    ["undefined", undefined],
    ["null", null],
    ["the base MeridianError", new MeridianError("internal")],
    ["a deliberately unbound class", new errors.EventInvalidError("bad event")],
  ];
  for (const [name, value] of others) {
    test(`${name} maps to undefined`, () => {
      assert.equal(ociErrorFor(value), undefined);
    });
  }
});

describe("MeridianError subclasses", () => {
  for (const [exportName, cls] of EXPORTED_CLASSES) {
    test(`${exportName} has its name, a distinct code and keeps its cause`, () => {
      const cause = new Error("root");
      const C = cls as unknown as new (m: string, o: unknown) => MeridianError;
      const err =
        cls === (RangeNotSatisfiableError as unknown)
          ? instance(cls, "msg")
          : new C("msg", { cause, detail: { a: 1 } });
      assert.ok(err instanceof MeridianError);
      assert.ok(err instanceof Error);
      assert.equal(err.name, exportName);
      assert.equal(err.message, "msg");
      assert.match(err.code, /^[A-Z_]+$/);
      assert.notEqual(err.code, "INTERNAL");
      if (cls !== (RangeNotSatisfiableError as unknown)) {
        assert.equal(err.cause, cause);
        assert.deepEqual(err.detail, { a: 1 });
      }
    });
  }

  test("codes are unique across classes", () => {
    const codes = EXPORTED_CLASSES.map(([, cls]) => instance(cls).code);
    assert.equal(new Set(codes).size, codes.length);
  });

  test("no cause means no cause property", () => {
    const err = new errors.BlobNotFoundError("x");
    assert.equal(err.cause, undefined);
    assert.equal("cause" in err, false);
  });

  test("RangeNotSatisfiableError carries the entity size", () => {
    const err = new RangeNotSatisfiableError("nope", 1234);
    assert.equal(err.size, 1234);
    assert.deepEqual(ociErrorFor(err), { code: "RANGE_INVALID", status: 416 });
  });

  test("LogUnavailableError, LogConflictError and PeerUnavailableError are recoverable, others not", () => {
    assert.equal(new errors.LogUnavailableError("x").recoverable, true);
    assert.equal(new errors.LogConflictError("x").recoverable, true);
    assert.equal(new errors.PeerUnavailableError("x").recoverable, true);
    assert.equal(new errors.StorageUnavailableError("x").recoverable, true);
    assert.equal(new errors.BlobNotFoundError("x").recoverable, false);
    assert.equal(new MeridianError("x").recoverable, false);
    assert.equal(new MeridianError("x").code, "INTERNAL");
  });
});
