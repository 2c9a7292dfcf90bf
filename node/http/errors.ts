/**
 * The one place domain errors become HTTP responses: the OCI error envelope
 * `{"errors":[{code,message,detail}]}` with the status bound in
 * protocol/errors.ts. Unexpected errors are 500s that never echo their message.
 */
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ociErrorFor, RangeNotSatisfiableError, type UploadRangeError } from "../../protocol/errors.js";

export function ociErrorBody(code: string, message: string, detail?: unknown): string {
  return JSON.stringify({ errors: [{ code, message, detail: detail ?? null }] });
}

export function handleError(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
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
 * Node's HTTP parser rejects some requests before fastify sees them (headers
 * over Node's limit, malformed requests, header timeouts): answered like
 * every other error, in the OCI envelope (fastify's own handler sends its own
 * JSON shape), then the connection is closed (the parser cannot resume).
 * For any server facing registry clients (the node's fastify option
 * `clientErrorHandler`; a plain server's 'clientError' event, e.g. the front door's).
 */
export function ociClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "request header fields too large"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "request headers not received in time"]
        : [400, "malformed HTTP request"];
  const body = ociErrorBody("UNSUPPORTED", message);
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\ndocker-distribution-api-version: registry/2.0\r\nconnection: close\r\n\r\n${body}`,
    );
  socket.destroy(err);
}
