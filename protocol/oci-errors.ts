/**
 * The OCI error envelope as bytes: `{"errors":[{code,message,detail}]}`, the
 * one shape every Meridian HTTP endpoint (the registry node and the front
 * door) answers errors in, and the raw HTTP response a server writes to a
 * socket when Node's HTTP parser refused a request before any handler saw it.
 *
 * Node's parser rejects a request on its own for three reasons, each with its
 * status: headers over the size limit (431), headers not received within
 * `headersTimeout` (408), anything else it cannot parse (400). Without a
 * 'clientError' listener Node answers those with an empty body, and fastify
 * with its own JSON shape; registry clients expect the OCI envelope. The
 * connection is always closed afterwards: the parser cannot resume.
 *
 * `clientErrorResponse` is the decision and the serialization (pure);
 * `answerClientError` is the one piece that writes, to a socket its caller's
 * server hands it (wire it as fastify's `clientErrorHandler` or a plain
 * server's 'clientError' listener).
 */
import type { Duplex } from "node:stream";
import type { OciCode } from "./errors.js";

/** `UNKNOWN`: an unexpected failure (500), as CNCF Distribution names it. */
export function ociErrorBody(code: OciCode | "UNKNOWN", message: string, detail?: unknown): string {
  return JSON.stringify({ errors: [{ code, message, detail: detail ?? null }] });
}

/** Reason phrases of the statuses written raw (no HTTP module in protocol/). */
const REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
};

/** The status and message for an error Node's HTTP parser raised (its `code`). */
export function clientErrorStatus(code: string | undefined): { status: 400 | 408 | 431; message: string } {
  if (code === "HPE_HEADER_OVERFLOW") return { status: 431, message: "request header fields too large" };
  if (code === "ERR_HTTP_REQUEST_TIMEOUT")
    return { status: 408, message: "request headers not received in time" };
  return { status: 400, message: "malformed HTTP request" };
}

/**
 * The whole HTTP/1.1 response (status line, headers, OCI body) for a request
 * the parser refused with error code `code`; it closes the connection.
 */
export function clientErrorResponse(code: string | undefined): string {
  const { status, message } = clientErrorStatus(code);
  const body = ociErrorBody("UNSUPPORTED", message);
  return (
    `HTTP/1.1 ${status} ${REASONS[status]}\r\n` +
    "content-type: application/json\r\n" +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    "docker-distribution-api-version: registry/2.0\r\n" +
    "connection: close\r\n\r\n" +
    body
  );
}

/**
 * Answer a request Node's parser refused, then close its connection. Nothing
 * is written when the client is gone (ECONNRESET, a destroyed socket) or when
 * a response on this connection has already begun (its bytes would be
 * corrupted; as Node's own default handler, it is only closed).
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (!socket.writable || inFlight?.headersSent === true) {
    socket.destroy(err);
    return;
  }
  // Half-close after the answer and read (and drop) what the client still
  // sends, for at most LINGER_MS: closing with its unread bytes (the rest of
  // an oversized header) would make the kernel reset the connection, and the
  // client could lose the answer to that reset.
  socket.end(clientErrorResponse(err.code));
  socket.on("data", () => {});
  socket.once("end", () => socket.destroy());
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** How long a refused connection is drained after its answer before it is closed outright. */
const LINGER_MS = 1_000;
