/**
 * A caller of one region's peer service (protocol/proto/peer.proto), for the
 * replication workers, the CLI and a region's own nodes: every call has a deadline, every failure comes
 * back as a domain error (protocol/grpc-errors.ts), and a blob arrives as a
 * byte stream that resumes from an offset.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import type { Digest } from "../protocol/digest.js";
import { PeerUnavailableError } from "../protocol/errors.js";
import type { BlobChunk__Output } from "../protocol/generated/meridian/peer/v1/BlobChunk.js";
import type { HasBlobsReply__Output } from "../protocol/generated/meridian/peer/v1/HasBlobsReply.js";
import type { PeerClient as GeneratedPeerClient } from "../protocol/generated/meridian/peer/v1/Peer.js";
import type { StatusReply__Output } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import { fromGrpcError } from "../protocol/grpc-errors.js";
import type { Mesh } from "../protocol/mesh.js";
import { DEADLINES, deadline, PEER_FLOW_CONTROL_WINDOW } from "../protocol/peer.js";
import { type RepoState, repoStateFromWire } from "../protocol/registers.js";
import type { RepoDigest } from "../protocol/summary.js";
import { BlobChannel, type BlobChannelTls } from "./blob-channel.js";
import { peerPackage } from "./proto.js";
import { StatusPings } from "./status-pings.js";

/**
 * Credentials for calling other peers as `region`: mutual TLS under the mesh
 * CA, presenting `<dir>/<region>.crt` + `.key` (the server side is
 * control-plane/tls.ts); plaintext only when the mesh says `"insecure": true`.
 */
export function peerCredentials(mesh: Mesh, region: string): grpc.ChannelCredentials {
  if (mesh.tls === undefined) {
    if (mesh.insecure !== true) throw new Error("mesh has neither tls nor insecure: true");
    return grpc.credentials.createInsecure();
  }
  return grpc.credentials.createSsl(
    readFileSync(mesh.tls.ca),
    readFileSync(join(mesh.tls.dir, `${region}.key`)),
    readFileSync(join(mesh.tls.dir, `${region}.crt`)),
  );
}

/** Per call: a deadline other than the RPC's default, and cancellation. */
export interface CallOptions {
  /** Deadline of this call in ms (default: the RPC's entry in DEADLINES). */
  timeoutMs?: number;
  /** Cancels the call; it then rejects with PeerUnavailableError. */
  signal?: AbortSignal;
}

/**
 * Liveness of every peer channel (issue 11, a frozen region), whoever opens
 * it (workers, peers' heartbeats, nodes' mesh link, the front door, the
 * CLI): an HTTP/2 PING every `keepaliveMs`, even with no call open, and a
 * connection whose PING is not answered within `keepaliveTimeoutMs` is
 * dropped — a peer that stops answering without closing (SIGSTOP, a frozen
 * VM, a blackholed link) is noticed within keepaliveMs + keepaliveTimeoutMs
 * (8 s). Re-connections back off from `initialBackoffMs` to at most
 * `maxBackoffMs` (grpc-js's default grows to 120 s: after a long outage a
 * channel would wait up to two minutes before trying the healed peer
 * again), so a peer that answers again is reached within about
 * maxBackoffMs. Constructor options may lower these (heartbeats do).
 */
export const PEER_CHANNEL_LIVENESS = {
  keepaliveMs: 5_000,
  keepaliveTimeoutMs: 3_000,
  initialBackoffMs: 500,
  maxBackoffMs: 3_000,
} as const;

/** Channel options carrying PEER_CHANNEL_LIVENESS. */
export function livenessChannelOptions(): grpc.ChannelOptions {
  return {
    "grpc.keepalive_time_ms": PEER_CHANNEL_LIVENESS.keepaliveMs,
    "grpc.keepalive_timeout_ms": PEER_CHANNEL_LIVENESS.keepaliveTimeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": PEER_CHANNEL_LIVENESS.initialBackoffMs,
    "grpc.max_reconnect_backoff_ms": PEER_CHANNEL_LIVENESS.maxBackoffMs,
  };
}

export class PeerClient {
  readonly #client: GeneratedPeerClient;
  #pings: StatusPings | undefined;
  /** The peer's byte channel, when the caller copies blobs through it (see fetchBlob). */
  readonly #blobs: BlobChannel | undefined;

  /**
   * `region` is the peer's region; `from`, the caller's (sent with blob
   * fetches, so the serving peer can apply that link's bandwidth budget).
   * `channelOptions` override the defaults below (the peer's heartbeat
   * channel checks the server's region name and reconnects sooner).
   * With `blobChannel` (the caller's TLS material: mesh-client/
   * blob-channel.ts blobChannelTls), fetchBlob reads the peer's byte channel
   * instead of gRPC's FetchBlob (issue 14: the replication workers' copies).
   */
  constructor(
    readonly region: string,
    address: string,
    credentials: grpc.ChannelCredentials,
    readonly from = "",
    channelOptions: grpc.ChannelOptions = {},
    blobChannel?: BlobChannelTls,
  ) {
    this.#blobs = blobChannel === undefined ? undefined : new BlobChannel(region, address, blobChannel, from);
    const Peer = peerPackage().meridian.peer.v1.Peer;
    this.#client = new Peer(address, credentials, {
      // Certificates name the region and localhost; the address may be a proxy's.
      "grpc.ssl_target_name_override": "localhost",
      ...livenessChannelOptions(),
      // HTTP/2's default 64 KiB window throttles a blob stream to a few
      // dozen MiB/s; a large window lets a copy run at link speed.
      "grpc-node.flow_control_window": PEER_FLOW_CONTROL_WINDOW,
      // A repository's registers (RepoState) can run to megabytes.
      "grpc.max_receive_message_length": 64 << 20,
      // No channelz (nothing here serves or reads it): its per-call trackers and
      // timestamps were work on every heartbeat and fence poll (issue 14, cost at rest).
      "grpc.enable_channelz": 0,
      ...channelOptions,
    }) as unknown as GeneratedPeerClient;
  }

  /** One unary call with its deadline and cancellation; failures as domain errors. */
  #unary<T>(
    what: string,
    defaultMs: number,
    options: CallOptions,
    invoke: (
      callOptions: grpc.CallOptions,
      callback: (err: grpc.ServiceError | null, reply?: T) => void,
    ) => grpc.ClientUnaryCall,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted) {
        reject(new PeerUnavailableError(`${what}: cancelled`, { cause: signal.reason }));
        return;
      }
      const onAbort = () => call.cancel();
      const call = invoke({ deadline: deadline(options.timeoutMs ?? defaultMs) }, (err, reply) => {
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(fromGrpcError(err, what));
        else resolve(reply!);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  status(from: string, options: CallOptions = {}): Promise<StatusReply__Output> {
    return this.#unary("status", DEADLINES.status, options, (o, cb) =>
      this.#client.status({ fromRegion: from, sentAtMs: Date.now() }, o, cb),
    );
  }

  /**
   * The peer's Status as a ping on one long-lived PingStatus stream
   * (mesh-client/status-pings.ts): what heartbeats and health probes ask
   * every interval. Same answer, deadline and errors as `status`.
   */
  pingStatus(from: string, options: CallOptions = {}): Promise<StatusReply__Output> {
    this.#pings ??= new StatusPings(() => this.#client.pingStatus());
    return this.#pings.status(from, options);
  }

  /**
   * The peer's Status as a stream (WatchStatus): one reply at once, one on
   * every fence change, one every `keepaliveMs`. No deadline: the stream
   * lives until cancelled; mesh-client/status-watch.ts keeps one open.
   */
  watchStatus(from: string, keepaliveMs: number): grpc.ClientReadableStream<StatusReply__Output> {
    return this.#client.watchStatus({ fromRegion: from, keepaliveMs });
  }

  /** Which of `digests` the peer holds (with `repo`: holds linked in that repository). */
  hasBlobs(digests: Digest[], repo = "", options: CallOptions = {}): Promise<boolean[]> {
    return this.blobSizes(digests, repo, options).then((sizes) => sizes.map((s) => s !== undefined));
  }

  /** The size of each of `digests` the peer holds (with `repo`: linked there), undefined for the others. */
  blobSizes(digests: Digest[], repo = "", options: CallOptions = {}): Promise<Array<number | undefined>> {
    return this.#unary<HasBlobsReply__Output>("blobs", DEADLINES.hasBlobs, options, (o, cb) =>
      this.#client.hasBlobs({ digests, repo }, o, cb),
    ).then((reply) => reply.present.map((p, i) => (p ? (reply.sizes[i] ?? 0) : undefined)));
  }

  getManifest(
    repo: string,
    reference: string,
    options: CallOptions = {},
  ): Promise<{ digest: string; mediaType: string; content: Buffer }> {
    return this.#unary(`manifest ${repo}:${reference}`, DEADLINES.getManifest, options, (o, cb) =>
      this.#client.getManifest({ repo, reference }, o, cb),
    );
  }

  /**
   * A blob's bytes from `offset` on. The stream fails with a domain error
   * (PeerUnavailableError, BlobNotFoundError) if the call does; it is also
   * failed when no chunk arrives for DEADLINES.fetchIdle ms (on the byte
   * channel: DEADLINES.blobChannelIdle), and cancelled when `signal` aborts
   * or the consumer destroys it.
   */
  fetchBlob(
    digest: Digest,
    offset: number,
    signal?: AbortSignal,
    onBytes?: (n: number) => void,
    repo = "",
  ): Readable {
    if (this.#blobs !== undefined) return this.#blobs.fetch(digest, offset, signal, onBytes, repo);
    return this.#blobStream(
      this.#client.fetchBlob({ digest, offset, fromRegion: this.from, repo }),
      digest,
      offset,
      signal,
      onBytes,
    );
  }

  /**
   * A repository's blob from the nearest other region holding it, relayed by
   * this (the caller's own region's) peer: fetch on miss. Fails with
   * BlobNotFoundError when no reachable region holds it.
   */
  fetchFromMesh(repo: string, digest: Digest, offset = 0, signal?: AbortSignal): Readable {
    return this.#blobStream(
      this.#client.fetchFromMesh({ digest, offset, fromRegion: this.from, repo }),
      digest,
      offset,
      signal,
    );
  }

  /**
   * Where the nearest other region holding a repository's manifest (by tag or
   * digest) or blob is, and a manifest's bytes: fetch on miss, through the
   * caller's own region's peer. Rejects with ManifestNotFoundError /
   * BlobNotFoundError when no reachable region holds it.
   */
  locate(
    repo: string,
    reference: string,
    manifest: boolean,
  ): Promise<{
    region: string;
    registry: string;
    digest: string;
    mediaType: string;
    content: Buffer;
    size: number;
  }> {
    return new Promise((resolve, reject) => {
      this.#client.locate(
        { repo, reference, manifest },
        { deadline: deadline(DEADLINES.getManifest) },
        (err, reply) =>
          err
            ? reject(fromGrpcError(err, `${manifest ? "manifest" : "blob"} ${repo}@${reference}`))
            : resolve(reply!),
      );
    });
  }

  /**
   * Wait (up to `timeoutMs`) until `copies` other regions hold a repository's
   * manifest, through the caller's own region's peer: sync(k) durability.
   */
  waitReplicated(
    repo: string,
    digest: Digest,
    copies: number,
    timeoutMs: number,
  ): Promise<{ regions: string[]; satisfied: boolean }> {
    return new Promise((resolve, reject) => {
      this.#client.waitReplicated(
        { repo, digest, copies, timeoutMs },
        { deadline: deadline(timeoutMs + DEADLINES.status) },
        (err, reply) => (err ? reject(fromGrpcError(err, `replicas of ${repo}@${digest}`)) : resolve(reply!)),
      );
    });
  }

  #blobStream(
    call: grpc.ClientReadableStream<BlobChunk__Output>,
    digest: Digest,
    offset: number,
    signal?: AbortSignal,
    onBytes?: (n: number) => void,
  ): Readable {
    let expected = offset;
    let idle: NodeJS.Timeout | undefined;
    const out = new Readable({
      highWaterMark: 4 << 20,
      read() {
        call.resume();
      },
      destroy(err, done) {
        clearTimeout(idle);
        call.cancel();
        done(err);
      },
    });
    // The call may fail (a dead peer refuses at once) before the consumer
    // attaches: an 'error' with no listener would kill the process. The error
    // stays on the stream (out.errored), and pipeline() or iteration still
    // rejects with it.
    out.on("error", () => undefined);
    const arm = (ms: number) => {
      clearTimeout(idle);
      idle = setTimeout(
        () =>
          out.destroy(
            fromGrpcError(
              Object.assign(new Error("idle"), { code: grpc.status.DEADLINE_EXCEEDED }),
              `blob ${digest}`,
            ),
          ),
        ms,
      );
    };
    arm(DEADLINES.fetchFirstChunk);
    call.on("data", (chunk: { data: Buffer; offset: number }) => {
      arm(DEADLINES.fetchIdle);
      if (chunk.offset !== expected) {
        out.destroy(
          fromGrpcError(
            Object.assign(new Error("out of order"), { code: grpc.status.DATA_LOSS }),
            `blob ${digest}`,
          ),
        );
        return;
      }
      expected += chunk.data.length;
      onBytes?.(chunk.data.length);
      if (!out.push(chunk.data)) call.pause();
    });
    call.on("end", () => {
      clearTimeout(idle);
      out.push(null);
    });
    call.on("error", (err) => {
      if (!out.destroyed) out.destroy(fromGrpcError(err, `blob ${digest}`));
    });
    if (signal !== undefined) {
      const onAbort = () => out.destroy(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      out.once("close", () => signal.removeEventListener("abort", onAbort));
    }
    return out;
  }

  /** Summaries of the peer's repositories under `prefix` ("" = all), and their root. */
  summarize(prefix: string): Promise<{ repos: RepoDigest[]; root: string }> {
    return new Promise((resolve, reject) => {
      this.#client.summarize({ prefix }, { deadline: deadline(DEADLINES.summarize) }, (err, reply) =>
        err ? reject(fromGrpcError(err, `summaries ${prefix}`)) : resolve(reply!),
      );
    });
  }

  /** Every register of one repository in the peer's region. */
  repoState(repo: string): Promise<RepoState> {
    return new Promise((resolve, reject) => {
      this.#client.repoState({ repo }, { deadline: deadline(DEADLINES.summarize) }, (err, reply) =>
        err ? reject(fromGrpcError(err, `repository ${repo}`)) : resolve(repoStateFromWire(reply!)),
      );
    });
  }

  close(): void {
    this.#pings?.close();
    this.#client.close();
    this.#blobs?.close();
  }
}
