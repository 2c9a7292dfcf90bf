/**
 * The peer's byte channel for bulk blob data (issue 14, item 4): the bytes of
 * a blob as one HTTPS/1.1 response, on the peer's own port beside gRPC.
 *
 * Why beside gRPC: FetchBlob sends a blob as 1 MiB protobuf messages, which
 * HTTP/2 cuts into 16 KiB DATA frames (Node's nghttp2 never sends larger
 * ones, whatever the peer's SETTINGS), each framed, flow-controlled and
 * handed to JavaScript on both ends, and each message encoded into a fresh
 * buffer and framed again into another: a 256 MiB copy cost the serving peer
 * and the copying worker about 8 CPU-ms per MiB each, half of it garbage
 * collection, against ~1–2 ms for the TLS alone. Here a blob is a plain TLS
 * byte stream: the peer reads the file into two reused buffers
 * (node/data/file-body.ts `writeTo`) and writes them to the socket.
 *
 * One port. The peer listens with a node:tls server (`listenPeer`) that
 * completes the mutual-TLS handshake itself — the same mesh CA, the same
 * server certificate, a client certificate of the mesh CA required — and
 * hands each connection on by the protocol the client chose (ALPN): "h2"
 * (every gRPC client) to the grpc.Server through its connection injector,
 * "http/1.1" to this channel, anything else is closed. So the byte channel
 * needs no port, no mesh.json entry and no proxy of its own: whatever
 * reaches or cuts a peer's gRPC (a chaos proxy, a firewall rule) does the
 * same to its bulk bytes. On a plaintext mesh (`"insecure": true`) there is
 * no ALPN; the peer binds gRPC alone and copies use FetchBlob.
 *
 * Upgrades: a new peer serves both FetchBlob and the byte channel, so old
 * workers keep copying; a new worker asks only the byte channel, which an
 * old peer refuses at the handshake (no "http/1.1" among its ALPN
 * protocols): its copies fail as retryable until that peer is upgraded.
 * Upgrade the peers first.
 *
 * The request (mesh-client/blob-channel.ts sends it):
 *
 *   GET /blobs/<digest>?from=<region>[&repo=<name>]   [Range: bytes=<offset>-]
 *
 * - 200 with the whole blob, or 206 with `Content-Range: bytes <o>-<size-1>/<size>`
 *   from offset o on; `Content-Length` always. A resume at the blob's end
 *   (o = size) is 416 with `Content-Range: bytes *\/<size>` (nothing left).
 * - Authorization as FetchBlob's (peer-access.ts `peerMayCall`): only a
 *   region's identity (its certificate's CN); any other certificate of the
 *   mesh CA (the front door's) is refused 403. No certificate, or one of
 *   another CA, never completes the handshake.
 * - Failures carry the gRPC status FetchBlob would have answered, in the
 *   `grpc-status` and `meridian-error-code` headers (protocol/grpc-errors.ts,
 *   one table for both channels), with the HTTP status of the same meaning.
 * - The link whose bandwidth budget applies (control-plane/bandwidth.ts) is
 *   the caller's identity, its certificate's region (`from` is only a
 *   fallback; FetchBlob trusts its `from_region` as sent). With a budget,
 *   bytes leave in pieces of at most a quarter second's worth, so the
 *   channel's idle bounds never see a budget's wait.
 * - Bounded: one blob per request, only GET, a request line and headers
 *   within Node's limits, and a connection idle for `idleMs` (no byte read
 *   or accepted either way: a client that stopped reading, a slowloris) is
 *   destroyed.
 */
import { once } from "node:events";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server as HttpServer } from "node:http";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { BlobStore } from "../node/data/blob-store.js";
import { FileBody } from "../node/data/file-body.js";
import type { MetadataView } from "../node/data/view.js";
import { parseDigest } from "../protocol/digest.js";
import {
  BlobNotFoundError,
  DigestInvalidError,
  PeerUnavailableError,
  RangeNotSatisfiableError,
} from "../protocol/errors.js";
import { ERROR_CODE_KEY, toGrpcStatus } from "../protocol/grpc-errors.js";
import type { Mesh } from "../protocol/mesh.js";
import { parseRepository } from "../protocol/names.js";
import { BLOB_CHANNEL_ALPN, BLOB_CHANNEL_PATH, DEADLINES } from "../protocol/peer.js";
import type { LinkBudgets } from "./bandwidth.js";
import { peerMayCall } from "./peer-access.js";
import { unavailableNow } from "./peer-service.js";

/** HTTP status of each gRPC status a failed blob request answers with (others: 500). */
const HTTP_STATUS: ReadonlyMap<number, number> = new Map([
  [grpc.status.INVALID_ARGUMENT, 400],
  [grpc.status.NOT_FOUND, 404],
  [grpc.status.PERMISSION_DENIED, 403],
  [grpc.status.OUT_OF_RANGE, 416],
  [grpc.status.UNAVAILABLE, 503],
  [grpc.status.DEADLINE_EXCEEDED, 503],
]);

export interface BlobChannelOptions {
  store: BlobStore;
  view: MetadataView;
  /** The mesh's region names: only these identities may fetch (see the header). */
  regions: readonly string[];
  budgets?: LinkBudgets;
  logger?: Logger;
  /** True once the peer is shutting down: failures then answer 503 (retry elsewhere or later). */
  closing?: () => boolean;
  /** A connection idle this long is destroyed (default DEADLINES.fetchIdle). */
  idleMs?: number;
}

/** The byte channel's HTTP server (not listening: `listenPeer` hands it its connections). */
export function createBlobChannel(options: BlobChannelOptions): HttpServer {
  const server = createServer({ keepAlive: true }, (req, res) => {
    serveBlob(options, req, res).catch((err) => answerError(options, res, err));
  });
  server.timeout = options.idleMs ?? DEADLINES.fetchIdle;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 32;
  return server;
}

/** The caller's identity: its certificate's subject CN ("" without). */
function identityOf(req: IncomingMessage): string {
  const cn = (req.socket as TLSSocket).getPeerCertificate?.()?.subject?.CN as string | string[] | undefined;
  return (Array.isArray(cn) ? cn[0] : cn) ?? "";
}

/** A path segment percent-decoded; a malformed escape is an invalid digest, not a fault of the peer. */
function decodedPath(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch (err) {
    throw new DigestInvalidError("malformed digest in the path", { cause: err });
  }
}

/** The offset of a `Range: bytes=N-` header (0 without one); RangeNotSatisfiableError for any other form. */
export function rangeOffset(header: string | undefined, size: number): number {
  if (header === undefined) return 0;
  const m = /^bytes=(\d{1,15})-$/.exec(header.trim());
  if (m === null)
    throw new RangeNotSatisfiableError(`Range "${header.slice(0, 64)}": only bytes=N- is served`, size);
  return Number(m[1]);
}

async function serveBlob(
  options: BlobChannelOptions,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { store, view, budgets } = options;
  const url = new URL(req.url ?? "/", "https://peer");
  if (req.method !== "GET" || !url.pathname.startsWith(BLOB_CHANNEL_PATH)) {
    res.writeHead(req.method === "GET" ? 404 : 405, { "content-length": 0 }).end();
    return;
  }
  const identity = identityOf(req);
  if (!peerMayCall(identity, "FetchBlob", options.regions)) {
    options.logger?.warn({ identity, method: "FetchBlob" }, "peer call refused: identity may not call it");
    answerStatus(res, {
      code: grpc.status.PERMISSION_DENIED,
      details: `${identity === "" ? "a certificate without a name" : identity} may not call FetchBlob`,
      errorCode: "",
    });
    return;
  }
  const digest = parseDigest(decodedPath(url.pathname.slice(BLOB_CHANNEL_PATH.length)));
  const repoParam = url.searchParams.get("repo");
  if (repoParam !== null && repoParam !== "") {
    const repo = parseRepository(repoParam);
    if ((await view.content.blobLink(repo, digest)) === undefined)
      throw new BlobNotFoundError("blob unknown to repository", { detail: { repo, digest } });
  }
  const size = await store.stat(digest);
  if (size === undefined) throw new BlobNotFoundError("blob unknown", { detail: { digest } });
  const offset = rangeOffset(req.headers.range, size);
  if (offset >= size && size > 0) {
    throw new RangeNotSatisfiableError(`offset ${offset} at or past the end of the blob`, size);
  }
  const abort = new AbortController();
  res.once("close", () => abort.abort(new Error("blob request closed")));
  // The caller may have gone while the blob was looked up (a request delivered late): nothing to send.
  if (res.destroyed) return;
  const body = await store.read(
    digest,
    size === 0 ? undefined : { start: offset, end: size - 1 },
    abort.signal,
  );
  const headers: Record<string, string | number> = {
    "content-type": "application/octet-stream",
    "content-length": size - offset,
    "docker-content-digest": digest,
  };
  const partial = req.headers.range !== undefined && size > 0;
  if (partial) headers["content-range"] = `bytes ${offset}-${size - 1}/${size}`;
  // The link is the caller's certificate's region, not what it says it is (`from` only where no
  // certificate names one).
  const from = identity !== "" ? identity : (url.searchParams.get("from") ?? "");
  const rate = budgets?.rate(from);
  const out = rate === undefined ? res : throttled(res, budgets!, from, rate, abort.signal);
  try {
    if (body instanceof FileBody) {
      await body.writeTo(out, () => res.writeHead(partial ? 206 : 200, headers));
      return;
    }
    res.writeHead(partial ? 206 : 200, headers);
    for await (const piece of body as AsyncIterable<Buffer>) {
      if (abort.signal.aborted) return;
      if (!out.write(piece)) await once(out, "drain", { signal: abort.signal });
    }
    await new Promise<void>((resolve) => out.end(resolve));
  } finally {
    body.destroy();
  }
}

/**
 * `res` behind the link's budget: each write is charged (in pieces of at
 * most a quarter second's worth) before it goes, and its callback fires once
 * `res` accepted it, so FileBody.writeTo still reuses its buffers.
 */
function throttled(
  res: ServerResponse,
  budgets: LinkBudgets,
  destination: string,
  rate: number,
  signal: AbortSignal,
): Writable {
  const piece = Math.max(16 << 10, Math.floor(rate / 4));
  const out = new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, done) {
      (async () => {
        for (let at = 0; at < chunk.byteLength; at += piece) {
          const part = chunk.subarray(at, Math.min(at + piece, chunk.byteLength));
          await budgets.take(destination, part.byteLength, signal);
          signal.throwIfAborted();
          if (!res.write(part)) await once(res, "drain", { signal });
        }
      })().then(() => done(), done);
    },
    final(done) {
      res.end(() => done());
    },
  });
  res.once("close", () => {
    if (!out.destroyed) out.destroy();
  });
  return out;
}

interface ErrorAnswer {
  code: grpc.status;
  details: string;
  errorCode: string;
}

function answerError(options: BlobChannelOptions, res: ServerResponse, err: unknown): void {
  // The caller went away (its failure is its own abort): nobody to answer, nothing to report.
  if (res.destroyed && !res.headersSent) return;
  if (res.headersSent) {
    // Mid-body: only cutting the connection tells the client the bytes are incomplete.
    res.destroy();
    return;
  }
  const unavailable = options.closing?.() === true || unavailableNow(err);
  const status = toGrpcStatus(
    unavailable ? new PeerUnavailableError("peer cannot serve now", { cause: err }) : err,
  );
  if (status.code === grpc.status.INTERNAL) options.logger?.error({ err }, "blob channel request failed");
  const [errorCode] = status.metadata.get(ERROR_CODE_KEY);
  answerStatus(res, { code: status.code, details: status.details, errorCode: String(errorCode ?? "") }, err);
}

function answerStatus(res: ServerResponse, answer: ErrorAnswer, err?: unknown): void {
  const body = Buffer.from(answer.details);
  const headers: Record<string, string | number> = {
    "content-type": "text/plain; charset=utf-8",
    "content-length": body.byteLength,
    "grpc-status": answer.code,
  };
  if (answer.errorCode !== "") headers[ERROR_CODE_KEY] = answer.errorCode;
  if (err instanceof RangeNotSatisfiableError) {
    headers["content-range"] = `bytes */${err.size}`;
    res.writeHead(416, headers).end(body);
    return;
  }
  res.writeHead(HTTP_STATUS.get(answer.code) ?? 500, headers).end(body);
}

/** The peer's listener: its address and how to stop it. */
export interface PeerListener {
  port: number;
  /** Stop accepting, then close the byte channel's connections (gRPC's are the grpc.Server's to close). */
  close(): Promise<void>;
}

/**
 * Listen on `listen` (host:port) with the mesh's mutual TLS and hand each
 * connection to gRPC ("h2") or to `blobs` ("http/1.1") by its ALPN (see the
 * header). `server` must not be bound otherwise.
 */
export async function listenPeer(
  server: grpc.Server,
  blobs: HttpServer,
  mesh: Mesh,
  region: string,
  listen: string,
  logger?: Logger,
): Promise<PeerListener> {
  if (mesh.tls === undefined) throw new Error("listenPeer needs a mesh with tls");
  // The TLS is done here: gRPC gets the decrypted connection (its auth context still sees the
  // TLSSocket and its verified peer certificate).
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const tls = createTlsServer(
    {
      ca: readFileSync(mesh.tls.ca),
      cert: readFileSync(join(mesh.tls.dir, `${region}.crt`)),
      key: readFileSync(join(mesh.tls.dir, `${region}.key`)),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ["h2", BLOB_CHANNEL_ALPN],
      // A handshake that does not complete in time is dropped (a connection that says nothing).
      handshakeTimeout: 10_000,
    },
    (socket) => {
      if (socket.alpnProtocol === "h2") injector.injectConnection(socket);
      else if (socket.alpnProtocol === BLOB_CHANNEL_ALPN) blobs.emit("connection", socket);
      else socket.destroy();
    },
  );
  tls.on("tlsClientError", (err) => logger?.debug({ err }, "peer connection refused at the handshake"));
  const at = listen.lastIndexOf(":");
  const host = listen.slice(0, at);
  const port = await new Promise<number>((resolve, reject) => {
    tls.once("error", reject);
    tls.listen(Number(listen.slice(at + 1)), host.replace(/^\[|\]$/g, ""), () => {
      tls.off("error", reject);
      const address = tls.address();
      resolve(typeof address === "object" && address !== null ? address.port : 0);
    });
  });
  return {
    port,
    close: async () => {
      // Not waiting for the close: the gRPC connections end with grpc.Server's shutdown (which
      // covers the injector's sessions too).
      tls.close();
      blobs.closeAllConnections();
    },
  };
}
