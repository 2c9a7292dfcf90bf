/**
 * One HTTP exchange with another OCI registry (the transport under
 * `OciRegistryClient`): node:http/node:https with a CA file or TLS
 * verification off, a deadline for the response's headers and an idle bound
 * on the body, and failures as `ExternalRegistryError` (the OCI envelope's
 * code and the HTTP status when the registry answered one).
 *
 * Contract: `exchange` resolves once the status line and headers arrived
 * (within `deadlineMs`, else it rejects with TIMEOUT and destroys the socket);
 * the body is then the response stream, which errors when no byte arrives for
 * `idleMs`. Every caller consumes or destroys it.
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";
import { MeridianError } from "../protocol/errors.js";

export class ExternalRegistryError extends MeridianError {
  override readonly code = "EXTERNAL_REGISTRY";
  /** The OCI error code from the registry's envelope, or a transport reason (TIMEOUT, CONNECT, DIGEST_MISMATCH). */
  readonly ociCode: string;
  /** The HTTP status the registry answered, 0 when it answered none. */
  readonly status: number;
  override readonly recoverable: boolean;
  constructor(message: string, ociCode: string, status: number, cause?: unknown) {
    super(message, cause === undefined ? {} : { cause });
    this.ociCode = ociCode;
    this.status = status;
    this.recoverable = status === 0 || status === 429 || status >= 500;
  }
}

export interface TransportOptions {
  /** PEM bytes of the CA to trust (in addition to nothing: only this CA) for https. */
  ca?: string | Buffer;
  /** Skip TLS verification (labs only). */
  insecure?: boolean;
  /** Bound on the wait for a response's headers (ms). */
  deadlineMs: number;
  /** Bound on the silence within a response body (ms). */
  idleMs: number;
}

export interface Exchange {
  status: number;
  headers: IncomingMessage["headers"];
  body: IncomingMessage;
}

export function httpsAgent(options: TransportOptions): HttpsAgent {
  return new HttpsAgent({
    keepAlive: true,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    rejectUnauthorized: options.insecure !== true,
  });
}

/** Send one request; `body` a Buffer or a stream (its length in content-length). */
export function exchange(
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body: Buffer | Readable | undefined,
  options: TransportOptions,
  agent: HttpsAgent | undefined,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(url, {
      method,
      headers,
      ...(agent !== undefined && url.protocol === "https:" ? { agent } : {}),
    });
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      req.destroy();
      // A streamed body (another registry's blob) is not left open behind a failed request.
      if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
      reject(
        err instanceof ExternalRegistryError
          ? err
          : new ExternalRegistryError(
              `${method} ${url.pathname}: ${(err as Error).message}`,
              "CONNECT",
              0,
              err,
            ),
      );
    };
    // The answer's deadline counts from the end of the request: a streamed body (a blob of
    // gigabytes) may take longer to send than any answer should take to come; while it is
    // sent, the socket's silence is bounded by idleMs instead.
    let deadline: NodeJS.Timeout | undefined;
    const startDeadline = () => {
      if (settled) return;
      deadline = setTimeout(
        () =>
          fail(
            new ExternalRegistryError(
              `${method} ${url.host}${url.pathname}: no answer within ${options.deadlineMs} ms`,
              "TIMEOUT",
              0,
            ),
          ),
        options.deadlineMs,
      );
    };
    const streamed = body !== undefined && !Buffer.isBuffer(body);
    if (streamed) {
      req.once("finish", startDeadline);
      req.setTimeout(options.idleMs, () =>
        fail(
          new ExternalRegistryError(
            `${method} ${url.host}${url.pathname}: sending idle ${options.idleMs} ms`,
            "TIMEOUT",
            0,
          ),
        ),
      );
    } else startDeadline();
    req.on("error", fail);
    req.on("response", (res) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      clearTimeout(deadline);
      res.setTimeout(options.idleMs, () =>
        res.destroy(
          new ExternalRegistryError(
            `${method} ${url.pathname}: body idle ${options.idleMs} ms`,
            "TIMEOUT",
            0,
          ),
        ),
      );
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else {
      body.on("error", (err) => fail(err));
      body.pipe(req);
    }
  });
}

/** Read a whole (small) body, at most `limit` bytes. */
export async function readBody(res: IncomingMessage, limit = 16 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.destroy();
      throw new ExternalRegistryError(`response over ${limit} bytes`, "SIZE_INVALID", 0);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The error for a non-success answer: the first code of the OCI envelope, else the status. */
export async function answerError(what: string, ex: Exchange): Promise<ExternalRegistryError> {
  let code = `HTTP_${ex.status}`;
  let message = "";
  try {
    const parsed = JSON.parse((await readBody(ex.body, 64 * 1024)).toString("utf8")) as {
      errors?: { code?: string; message?: string }[];
    };
    const first = parsed.errors?.[0];
    if (typeof first?.code === "string") code = first.code;
    if (typeof first?.message === "string") message = first.message;
  } catch {
    ex.body.destroy();
  }
  return new ExternalRegistryError(
    `${what}: ${ex.status} ${code}${message === "" ? "" : ` (${message})`}`,
    code,
    ex.status,
  );
}

/** A `WWW-Authenticate` challenge: its scheme and parameters. */
export function parseChallenge(header: string | undefined): {
  scheme: string;
  params: Record<string, string>;
} {
  if (header === undefined) return { scheme: "", params: {} };
  const space = header.indexOf(" ");
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)="([^"]*)"/g;
  for (let m = re.exec(header); m !== null; m = re.exec(header)) params[m[1]!.toLowerCase()] = m[2]!;
  return { scheme, params };
}

/** The `rel="next"` target of a Link header, resolved against `base`. */
export function nextLink(link: string | undefined, base: URL): URL | undefined {
  if (link === undefined) return undefined;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
  return m === null ? undefined : new URL(m[1]!, base);
}
