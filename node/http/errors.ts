/**
 * The one place domain errors become HTTP responses: the OCI error envelope
 * `{"errors":[{code,message,detail}]}` with the status bound in
 * protocol/errors.ts. Unexpected errors are 500s that never echo their message.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import {
  type ErrorClass,
  isStorageFull,
  ociBindingOf,
  ociErrorFor,
  RangeNotSatisfiableError,
  StorageFullError,
  type UploadRangeError,
} from "../../protocol/errors.js";
import { answerClientError, ociErrorBody } from "../../protocol/oci-errors.js";

export { ociErrorBody };

/**
 * The envelope `handleError` would send for an error of class `cls`, sent
 * without an error being built and thrown: for the misses clients expect
 * (the HEAD before every blob push), where the throw, its stack trace and
 * fastify's error path cost more than the lookup itself.
 */
export function sendOciError(
  reply: FastifyReply,
  cls: ErrorClass,
  message: string,
  detail?: unknown,
): FastifyReply {
  const binding = ociBindingOf(cls);
  return reply
    .status(binding.status)
    .type("application/json")
    .send(ociErrorBody(binding.code, message, detail));
}

/**
 * A full disk anywhere under the request (the blob store's write, a
 * temporary file; protocol/errors.ts isStorageFull) not already turned into
 * StorageFullError below: 507 with a message saying why instead of a bare
 * 500. Only on the error path; undefined otherwise.
 */
export function storageFull(err: unknown): StorageFullError | undefined {
  if (!isStorageFull(err)) return undefined;
  return new StorageFullError("storage full: the region cannot store this now; retry once space is freed", {
    cause: err,
  });
}

export function handleError(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  if (ociErrorFor(err) === undefined) err = storageFull(err) ?? err;
  const binding = ociErrorFor(err);
  if (binding !== undefined) {
    const e = err as Error & { detail?: unknown };
    if (err instanceof RangeNotSatisfiableError) reply.header("content-range", `bytes */${err.size}`);
    const offset = (e.detail as { offset?: number } | undefined)?.offset;
    if ((err as UploadRangeError).code === "UPLOAD_RANGE" && offset !== undefined) {
      reply.header("range", `0-${Math.max(0, offset - 1)}`);
    }
    if (binding.status >= 500) request.log.warn({ err }, "request failed");
    reply
      .status(binding.status)
      .type("application/json")
      .send(ociErrorBody(binding.code, e.message, e.detail));
    return;
  }
  // Errors raised by fastify itself for malformed requests carry a 4xx statusCode.
  const status = (err as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = status === 413 ? "SIZE_INVALID" : "UNSUPPORTED";
    reply.status(status).type("application/json").send(ociErrorBody(code, err.message));
    return;
  }
  request.log.error({ err }, "request failed");
  reply.status(500).type("application/json").send(ociErrorBody("UNKNOWN", "internal server error"));
}

/**
 * Requests Node's HTTP parser rejects before fastify sees them (headers over
 * Node's limit, malformed requests, header timeouts) are answered like every
 * other error, in the OCI envelope (protocol/oci-errors.ts, shared with the
 * front door); fastify's option `clientErrorHandler`.
 */
export const ociClientError = answerClientError;
