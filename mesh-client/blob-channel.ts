/**
 * The client of a peer's byte channel for blob data (control-plane/
 * blob-channel.ts has the protocol): a blob's bytes from an offset as one
 * HTTPS/1.1 response over the mesh's mutual TLS, on the peer's gRPC port
 * (ALPN "http/1.1"). What PeerClient.fetchBlob uses for workers' copies when
 * the mesh has TLS: the same contract as FetchBlob's stream (a Readable of
 * the bytes from `offset`, failing with the same domain errors), at the cost
 * of a TLS stream rather than of gRPC's framing.
 *
 * Bounds: the response must begin within DEADLINES.fetchFirstChunk (connect,
 * handshake, headers: a blackholed link or a frozen peer fails the copy
 * there), and then no gap between bytes may exceed DEADLINES.blobChannelIdle
 * (a peer frozen mid-blob); a response shorter than its Content-Length, or
 * cut, fails. The caller verifies the digest (the copy is an upload session
 * of its store, committed only when the digest matches).
 */
import { readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import type { Digest } from "../protocol/digest.js";
import { PeerUnavailableError } from "../protocol/errors.js";
import { ERROR_CODE_KEY, fromGrpcError } from "../protocol/grpc-errors.js";
import type { Mesh } from "../protocol/mesh.js";
import { BLOB_CHANNEL_ALPN, BLOB_CHANNEL_PATH, DEADLINES } from "../protocol/peer.js";

/** The mesh CA and the caller's own certificate pair. */
export interface BlobChannelTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The caller's TLS material for byte channels, or undefined on a plaintext mesh (no byte channel there). */
export function blobChannelTls(mesh: Mesh, region: string): BlobChannelTls | undefined {
  if (mesh.tls === undefined) return undefined;
  return {
    ca: readFileSync(mesh.tls.ca),
    cert: readFileSync(join(mesh.tls.dir, `${region}.crt`)),
    key: readFileSync(join(mesh.tls.dir, `${region}.key`)),
  };
}

/** Bytes received between two calls of a fetch's `onBytes`. */
const REPORT_BYTES = 1 << 20;
/** Largest error body read (the peer's details line). */
const MAX_ERROR_BODY = 4096;

export class BlobChannel {
  readonly #agent: Agent;
  readonly #host: string;
  readonly #port: number;

  /** `address` is the peer's host:port (its gRPC address); `from`, the caller's region (its link's budget). */
  constructor(
    readonly region: string,
    address: string,
    tls: BlobChannelTls,
    readonly from: string,
  ) {
    const at = address.lastIndexOf(":");
    this.#host = address.slice(0, at).replace(/^\[|\]$/g, "");
    this.#port = Number(address.slice(at + 1));
    this.#agent = new Agent({
      ...tls,
      // Certificates name the region and localhost; the address may be a proxy's (as gRPC's override).
      servername: "localhost",
      ALPNProtocols: [BLOB_CHANNEL_ALPN],
      keepAlive: true,
      // A kept connection is dropped before the peer's keep-alive (5 s) can close it under a request.
      timeout: 4_000,
      maxSockets: 16,
    });
  }

  /**
   * The bytes of `digest` from `offset` on (see the header). Fails with
   * BlobNotFoundError when the peer does not hold it (with `repo`: not
   * linked there), PeerUnavailableError when it cannot be reached or stalls;
   * cancelled when `signal` aborts or the consumer destroys the stream.
   */
  fetch(
    digest: Digest,
    offset: number,
    signal?: AbortSignal,
    onBytes?: (n: number) => void,
    repo = "",
  ): Readable {
    const what = `blob ${digest}`;
    let timer: NodeJS.Timeout | undefined;
    let response: import("node:http").IncomingMessage | undefined;
    // Object mode: each piece as the socket gave it. In byte mode every read() of a consumer
    // (for await) concatenated all that was buffered into a fresh buffer: a copy and garbage per
    // read, a tenth of a copying worker's CPU.
    const out = new Readable({
      objectMode: true,
      // Pieces (~16 KiB each, one TLS record): about 4 MiB buffered.
      highWaterMark: 256,
      read() {
        // The idle bound counts only time spent waiting for the peer: while a slow consumer (a
        // disk) held the response paused, no byte could come.
        if (response?.isPaused()) lastByteAt = performance.now();
        response?.resume();
      },
      destroy(err, done) {
        clearTimeout(timer);
        req.destroy();
        done(err);
      },
    });
    // A failure before the consumer attaches must not kill the process; the error stays on the stream.
    out.on("error", () => undefined);
    const fail = (err: Error) => {
      if (!out.destroyed) out.destroy(err);
    };
    // One timer, not one per piece (re-arming a timer for every 16 KiB was a tenth of a worker's
    // CPU): when it fires it looks at when the last byte came, and waits out the rest.
    let bound: number = DEADLINES.fetchFirstChunk;
    let why = "no answer";
    let lastByteAt = performance.now();
    const check = () => {
      const quiet = performance.now() - lastByteAt;
      if (quiet >= bound) fail(new PeerUnavailableError(`${what}: ${why} within ${bound} ms`));
      else timer = setTimeout(check, bound - quiet);
    };
    timer = setTimeout(check, bound);
    const query = new URLSearchParams({ from: this.from, ...(repo === "" ? {} : { repo }) });
    const req = request({
      agent: this.#agent,
      host: this.#host,
      port: this.#port,
      method: "GET",
      path: `${BLOB_CHANNEL_PATH}${digest}?${query}`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    });
    // The agent's idle timeout is for kept connections between requests: during one, the bounds
    // above apply, and a socket timeout would re-arm a timer on every read (a few % of the CPU).
    req.once("socket", (socket) => socket.setTimeout(0));
    req.on("error", (err) => fail(new PeerUnavailableError(`${what}: ${err.message}`, { cause: err })));
    req.on("response", (res) => {
      response = res;
      const status = res.statusCode ?? 0;
      if (status !== 200 && status !== 206) {
        refused(res, what, offset).then((err) => {
          if (err !== undefined) return fail(err);
          clearTimeout(timer);
          out.push(null);
        }, fail);
        return;
      }
      const start =
        status === 206 ? Number(/^bytes (\d+)-/.exec(res.headers["content-range"] ?? "")?.[1]) : 0;
      if (start !== offset) {
        res.destroy();
        fail(new PeerUnavailableError(`${what}: asked from ${offset}, answered from ${start}`));
        return;
      }
      const length = Number(res.headers["content-length"]);
      let received = 0;
      bound = DEADLINES.blobChannelIdle;
      why = "no byte";
      lastByteAt = performance.now();
      clearTimeout(timer);
      timer = setTimeout(check, bound);
      // Bytes are reported a MiB at a time (and the rest at the end): per 16 KiB piece, the
      // caller's labelled counter was a measurable share of a copy's CPU.
      let reported = 0;
      const report = () => {
        if (received > reported) onBytes?.(received - reported);
        reported = received;
      };
      out.once("close", report);
      res.on("data", (chunk: Buffer) => {
        lastByteAt = performance.now();
        received += chunk.byteLength;
        if (received - reported >= REPORT_BYTES) report();
        if (!out.push(chunk)) res.pause();
      });
      res.on("end", () => {
        clearTimeout(timer);
        if (Number.isSafeInteger(length) && received !== length)
          fail(new PeerUnavailableError(`${what}: ${received} of ${length} bytes before the end`));
        else {
          report();
          out.push(null);
        }
      });
      res.on("error", (err) => fail(new PeerUnavailableError(`${what}: ${err.message}`, { cause: err })));
      res.on("aborted", () => fail(new PeerUnavailableError(`${what}: the peer cut the response`)));
    });
    req.end();
    if (signal !== undefined) {
      if (signal.aborted) fail(signal.reason);
      const onAbort = () => fail(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      out.once("close", () => signal.removeEventListener("abort", onAbort));
    }
    return out;
  }

  close(): void {
    this.#agent.destroy();
  }
}

/**
 * A refusal's domain error, from the gRPC status and error code the peer
 * sends in its headers (the same table as FetchBlob's: protocol/
 * grpc-errors.ts); undefined for a resume at the blob's very end (416 with
 * `bytes *\/<offset>`: nothing left to send).
 */
async function refused(
  res: import("node:http").IncomingMessage,
  what: string,
  offset: number,
): Promise<Error | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (size < MAX_ERROR_BODY) chunks.push(chunk);
    size += chunk.byteLength;
  }
  const status = res.statusCode ?? 0;
  const total = /^bytes \*\/(\d+)$/.exec(res.headers["content-range"] ?? "")?.[1];
  if (status === 416 && total !== undefined && Number(total) === offset) return undefined;
  const details = Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString("utf8");
  const grpcStatus = Number(res.headers["grpc-status"]);
  const metadata = new grpc.Metadata();
  const code = res.headers[ERROR_CODE_KEY];
  if (typeof code === "string") metadata.set(ERROR_CODE_KEY, code);
  if (!Number.isInteger(grpcStatus))
    return new PeerUnavailableError(`${what}: the peer answered HTTP ${status}`);
  return fromGrpcError(Object.assign(new Error(details), { code: grpcStatus, details, metadata }), what);
}
