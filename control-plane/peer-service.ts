/**
 * The Peer service (protocol/proto/peer.proto) over one region's data: its
 * blob store (shared with the region's nodes) and a MetadataView the peer
 * materializes from the region's log. Read-only: nothing here writes.
 *
 * The calls that reach other regions for this region's nodes (Locate,
 * FetchFromMesh, WaitReplicated) delegate to `meshFetch`
 * (control-plane/mesh-fetch.ts); without it they answer UNIMPLEMENTED.
 * Status is the heartbeat: it reads only memory and the view's cheap
 * counters. WatchStatus pushes the same reply to the region's own nodes and
 * worker (control-plane/status-feed.ts); like every RPC but Status, only a
 * region's identity may open it.
 *
 * Who may call what (a region's identity every RPC, the front door only
 * `NON_REGION_RPCS`) is control-plane/peer-access.ts, which wraps every
 * handler here.
 *
 * Every failure leaves through `toGrpcStatus` (protocol/grpc-errors.ts), its
 * domain code in the trailing metadata, so a caller's `fromGrpcError` turns
 * it back into the same domain error; an unexpected error becomes INTERNAL
 * without its message — and INTERNAL is terminal for the replication event
 * asking (recorded as failed, never retried). So what is only a moment's
 * trouble must not become INTERNAL: once the peer is closing (`closing`), and
 * for a store that is closed or out of resources (`unavailableNow`), a
 * failure answers UNAVAILABLE, which callers retry.
 */
import { once } from "node:events";
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { BlobStore } from "../node/data/blob-store.js";
import { parseReference } from "../node/data/registry.js";
import type { MetadataView } from "../node/data/view.js";
import { type Digest, parseDigest } from "../protocol/digest.js";
import {
  BlobNotFoundError,
  ManifestNotFoundError,
  NameInvalidError,
  PeerUnavailableError,
  RangeNotSatisfiableError,
} from "../protocol/errors.js";
import type { BlobChunk } from "../protocol/generated/meridian/peer/v1/BlobChunk.js";
import type { PeerHandlers } from "../protocol/generated/meridian/peer/v1/Peer.js";
import type { StatusReply } from "../protocol/generated/meridian/peer/v1/StatusReply.js";
import type { StatusRequest__Output } from "../protocol/generated/meridian/peer/v1/StatusRequest.js";
import type { WatchStatusRequest__Output } from "../protocol/generated/meridian/peer/v1/WatchStatusRequest.js";
import { type GrpcErrorStatus, toGrpcStatus } from "../protocol/grpc-errors.js";
import { MAX_NAME_LENGTH, parseRepository } from "../protocol/names.js";
import { repoStateToWire } from "../protocol/registers.js";
import { isEmpty, type RepoDigest, summaryRoot } from "../protocol/summary.js";
import type { LinkBudgets } from "./bandwidth.js";
import { highestEpoch } from "./fence.js";
import type { MeshFetch } from "./mesh-fetch.js";
import { authorizeByIdentity } from "./peer-access.js";

/** Largest `data` in one BlobChunk. */
export const CHUNK_BYTES = 1 << 20;
/** grpc.status.INTERNAL (the grpc-js value import stays out of this module). */
const GRPC_INTERNAL = 13 as grpc.status;
/** Blobs stat'ed at once by HasBlobs. */
const STAT_CONCURRENCY = 32;

export interface PeerServiceOptions {
  region: string;
  store: BlobStore;
  view: MetadataView;
  /** Software version reported by Status. */
  version: string;
  /** Where unexpected (INTERNAL) errors are logged. */
  logger?: Logger;
  /** How this peer's heartbeats see the other regions (for Status); `lastSeenAtMs` is wall-clock ms. */
  peerHealth?: () => Array<{ region: string; up: boolean; rttMs?: number; lastSeenAtMs?: number }>;
  /** Bandwidth budgets of the links out of this region (FetchBlob waits on them). */
  budgets?: LinkBudgets;
  /** Why this region must not accept home writes now ("" when it may; control-plane/fence.ts). Default "". */
  fence?: () => string;
  /** This region's home-write lease in ms (config `failover.leaseMs`), reported by Status; default 0. */
  leaseMs?: number;
  /** The other regions, for Locate, FetchFromMesh and WaitReplicated (UNIMPLEMENTED without). */
  meshFetch?: Pick<MeshFetch, "locate" | "fetchFromMesh" | "waitReplicated">;
  /**
   * With mutual TLS, the mesh's region names: callers with these identities
   * may call every RPC, others only NON_REGION_RPCS (control-plane/peer-access.ts).
   * Undefined on a plaintext mesh: no identities, nothing checked.
   */
  regions?: readonly string[] | undefined;
  /**
   * Resolves once this peer's view has applied everything the region's log
   * held when it was called (bounded by the caller; rejects past the bound).
   * A lookup that misses (HasBlobs in a repository, GetManifest) waits for it
   * and looks again: the view follows the log a moment behind the nodes, and
   * another region asking right after a push here must not hear "not here".
   */
  caughtUp?: () => Promise<void>;
  /**
   * True once the peer has begun to shut down (its stores about to close):
   * every failure then answers UNAVAILABLE, so a restart never fails a
   * caller's event for good. Default: never.
   */
  closing?: () => boolean;
  /** Serves WatchStatus (a StatusFeed's `watch`, control-plane/status-feed.ts); UNIMPLEMENTED without. */
  watchStatus?: (call: grpc.ServerWritableStream<WatchStatusRequest__Output, StatusReply>) => void;
  /** Serves PingStatus (a StatusFeed's `pings`); UNIMPLEMENTED without. */
  pingStatus?: (call: grpc.ServerDuplexStream<StatusRequest__Output, StatusReply>) => void;
}

/**
 * Error codes of a store that cannot serve right now but may in a moment:
 * the view's level database closed or closing (abstract-level's codes), the
 * process out of file descriptors or memory, a busy resource.
 */
const UNAVAILABLE_NOW: ReadonlySet<string> = new Set([
  "LEVEL_DATABASE_NOT_OPEN",
  "LEVEL_ITERATOR_NOT_OPEN",
  "EMFILE",
  "ENFILE",
  "ENOMEM",
  "EAGAIN",
  "EBUSY",
]);

/** Is `err` a store's passing trouble (UNAVAILABLE_NOW), itself or as the cause of a wrapper? */
export function unavailableNow(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && UNAVAILABLE_NOW.has(code)) return true;
  }
  return false;
}

/** The handlers to pass to `server.addService(peerPackage().meridian.peer.v1.Peer.service, …)`. */
export function createPeerService(options: PeerServiceOptions): PeerHandlers {
  return authorizeByIdentity(servePeer(options), options.regions, options.logger);
}

function servePeer(options: PeerServiceOptions): PeerHandlers {
  const { region, store, view, logger, budgets, meshFetch } = options;
  /** The view caught up with the log (see `caughtUp`): a second look may find what the first missed. */
  const caughtUpNow = async (): Promise<boolean> => {
    if (options.caughtUp === undefined) return false;
    try {
      await options.caughtUp();
      return true;
    } catch (err) {
      logger?.debug({ err }, "view did not catch up with the log");
      return false;
    }
  };

  const fail = (method: string, err: unknown): GrpcErrorStatus => {
    if (options.closing?.() === true || unavailableNow(err)) {
      logger?.debug({ err, method }, "peer call failed while the peer cannot serve");
      return toGrpcStatus(new PeerUnavailableError(`${region}: peer cannot serve now`, { cause: err }));
    }
    const status = toGrpcStatus(err);
    if (status.code === GRPC_INTERNAL) logger?.error({ err, method }, "peer call failed");
    return status;
  };

  /** A unary handler; `signal` aborts when the caller cancels (or its deadline passes). */
  const unary =
    <Req, Res>(
      method: string,
      fn: (request: Req, signal: AbortSignal) => Promise<Res>,
    ): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      const abort = new AbortController();
      const onCancel = () => abort.abort(new Error("call cancelled"));
      call.once("cancelled", onCancel);
      fn(call.request, abort.signal).then(
        (reply) => {
          call.off("cancelled", onCancel);
          callback(null, reply);
        },
        (err) => {
          call.off("cancelled", onCancel);
          callback(fail(method, err));
        },
      );
    };

  const unimplemented = (method: string) => ({
    code: 12 as grpc.status, // UNIMPLEMENTED
    details: `${method} is not served by this peer (no mesh)`,
  });

  return {
    Status: unary("Status", (request) => statusReply(options, request.sentAtMs)),

    HasBlobs: unary("HasBlobs", async (request) => {
      const digests = request.digests.map((d) => parseDigest(d));
      const repo = request.repo === "" ? undefined : parseRepository(request.repo);
      // With a repository: present only when linked (live) there, and its bytes are here.
      const stat = async (d: Digest) =>
        repo === undefined || (await view.content.blobLink(repo, d)) !== undefined
          ? store.stat(d)
          : undefined;
      const sizes: Array<number | undefined> = new Array(digests.length);
      const statAll = async (indexes: number[]) => {
        for (let i = 0; i < indexes.length; i += STAT_CONCURRENCY) {
          const batch = indexes.slice(i, i + STAT_CONCURRENCY);
          const found = await Promise.all(batch.map((k) => stat(digests[k]!)));
          found.forEach((size, j) => {
            sizes[batch[j]!] = size;
          });
        }
      };
      await statAll(digests.map((_, k) => k));
      const missing = sizes.flatMap((s, k) => (s === undefined ? [k] : []));
      if (repo !== undefined && missing.length > 0 && (await caughtUpNow())) await statAll(missing);
      return { present: sizes.map((s) => s !== undefined), sizes: sizes.map((s) => s ?? 0) };
    }),

    FetchBlob: (call) => {
      fetchBlob(store, view, call, budgets).catch((err) => {
        if (call.cancelled) return;
        call.emit("error", fail("FetchBlob", err));
      });
    },

    GetManifest: unary("GetManifest", async (request) => {
      const repo = parseRepository(request.repo);
      const reference = parseReference(request.reference);
      // The manifest (and the digest a tag names) as the view has it now.
      const lookup = async () => {
        const digest =
          "tag" in reference ? (await view.content.tagRecord(repo, reference.tag))?.digest : reference.digest;
        const record = digest ? await view.content.manifest(repo, digest) : undefined;
        return digest && record ? { digest, record } : undefined;
      };
      const found = (await lookup()) ?? ((await caughtUpNow()) ? await lookup() : undefined);
      if (found === undefined) throw new ManifestNotFoundError("manifest unknown", { detail: { repo } });
      const { digest, record } = found;
      let content: Buffer;
      try {
        content = await store.readAll(digest);
      } catch (err) {
        // Known to the view but its bytes are gone: for the caller, the manifest is not here.
        if (err instanceof BlobNotFoundError)
          throw new ManifestNotFoundError("manifest bytes missing", { cause: err });
        throw err;
      }
      return { digest, mediaType: record.mediaType, content };
    }),

    Summarize: unary("Summarize", async (request) => {
      const prefix = request.prefix;
      if (prefix.length > MAX_NAME_LENGTH) throw new NameInvalidError("prefix longer than a name");
      const repos: RepoDigest[] = [];
      for (const repo of await view.content.repositoriesUnder(prefix)) {
        const summary = await view.content.summarize(repo);
        if (!isEmpty(summary)) repos.push(summary);
      }
      return { repos, root: summaryRoot(repos) };
    }),

    RepoState: unary("RepoState", async (request) => {
      const repo = parseRepository(request.repo);
      return repoStateToWire(await view.content.repoState(repo));
    }),

    Locate:
      meshFetch === undefined
        ? (_call, callback) => callback(unimplemented("Locate"))
        : unary("Locate", (request, signal) =>
            meshFetch.locate(request.repo, request.reference, request.manifest, signal),
          ),

    FetchFromMesh: (call) => {
      if (meshFetch === undefined) {
        call.emit("error", unimplemented("FetchFromMesh"));
        return;
      }
      relayFromMesh(meshFetch, call).catch((err) => {
        if (call.cancelled) return;
        call.emit("error", fail("FetchFromMesh", err));
      });
    },

    WaitReplicated:
      meshFetch === undefined
        ? (_call, callback) => callback(unimplemented("WaitReplicated"))
        : unary("WaitReplicated", (request, signal) =>
            meshFetch.waitReplicated(request.repo, request.digest, request.copies, request.timeoutMs, signal),
          ),

    // Status as pings on one stream (heartbeats, the front door's probes; control-plane/status-feed.ts).
    PingStatus: (call) => {
      if (options.pingStatus === undefined) call.emit("error", unimplemented("PingStatus"));
      else options.pingStatus(call);
    },

    // Status pushed (control-plane/status-feed.ts); UNIMPLEMENTED without a feed.
    WatchStatus: (call) => {
      if (options.watchStatus === undefined) call.emit("error", unimplemented("WatchStatus"));
      else options.watchStatus(call);
    },
  };
}

/**
 * What Status answers now: reads only memory and the view's cached counters
 * (it is the heartbeat, and WatchStatus sends it every keepalive).
 */
export async function statusReply(
  options: Pick<PeerServiceOptions, "region" | "view" | "version" | "peerHealth" | "fence" | "leaseMs">,
  sentAtMs: number,
): Promise<StatusReply> {
  const { region, view, version, peerHealth, fence, leaseMs } = options;
  return {
    region,
    epoch: highestEpoch(view.content.configs()),
    // Own region: the local stream position applied; others: the highest
    // sequence of their stream replicated and applied here.
    applied: { ...(await view.originSeqs()), [region]: view.appliedSeq },
    version,
    sentAtMs,
    peers: (peerHealth?.() ?? []).map((p) => ({
      region: p.region,
      up: p.up,
      rttMs: p.rttMs ?? 0,
      lastSeenAtMs: p.lastSeenAtMs ?? 0,
    })),
    fence: fence?.() ?? "",
    leaseMs: leaseMs ?? 0,
  };
}

type BlobCall = grpc.ServerWritableStream<
  { digest: string; offset: number; fromRegion: string; repo: string },
  BlobChunk
>;

/**
 * Stream a blob from the requested offset in chunks of at most CHUNK_BYTES,
 * each carrying its offset and the blob's size. Waits for 'drain' when the
 * call's buffer is full; a cancelled call destroys the file stream. With a
 * repository, NOT_FOUND unless the blob is linked there.
 */
async function fetchBlob(
  store: BlobStore,
  view: MetadataView,
  call: BlobCall,
  budgets: LinkBudgets | undefined,
): Promise<void> {
  const digest = parseDigest(call.request.digest);
  const offset = call.request.offset;
  if (call.request.repo !== "") {
    const repo = parseRepository(call.request.repo);
    if ((await view.content.blobLink(repo, digest)) === undefined) {
      throw new BlobNotFoundError("blob unknown to repository", { detail: { repo, digest } });
    }
  }
  const size = await store.stat(digest);
  if (size === undefined) throw new BlobNotFoundError("blob unknown", { detail: { digest } });
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
    throw new RangeNotSatisfiableError(`offset ${offset} outside the blob`, size);
  }
  if (offset === size) {
    // Nothing left (or an empty blob): one empty chunk still tells the size.
    call.write({ data: Buffer.alloc(0), offset, size });
    call.end();
    return;
  }
  const abort = new AbortController();
  const onCancel = () => abort.abort(new Error("call cancelled"));
  call.once("cancelled", onCancel);
  if (call.cancelled) return;
  const stream = await store.read(digest, { start: offset, end: size - 1 }, abort.signal);
  const destroy = () => stream.destroy();
  call.once("cancelled", destroy);
  let position = offset;
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      for (let at = 0; at < piece.byteLength; at += CHUNK_BYTES) {
        const data = piece.subarray(at, Math.min(at + CHUNK_BYTES, piece.byteLength));
        await budgets?.take(call.request.fromRegion, data.byteLength, abort.signal);
        if (abort.signal.aborted) return;
        const more = call.write({ data, offset: position, size });
        position += data.byteLength;
        if (!more) await once(call, "drain", { signal: abort.signal });
      }
    }
  } catch (err) {
    if (abort.signal.aborted) return;
    throw err;
  } finally {
    call.off("cancelled", onCancel);
    call.off("cancelled", destroy);
    stream.destroy();
  }
  call.end();
}

/**
 * FetchFromMesh: relay the pieces meshFetch brings from another region as
 * chunks of at most CHUNK_BYTES, waiting for 'drain' when the call's buffer
 * is full (so a slow caller slows the upstream call, through its flow
 * control). A cancelled call stops the iteration, which cancels upstream.
 */
async function relayFromMesh(meshFetch: Pick<MeshFetch, "fetchFromMesh">, call: BlobCall): Promise<void> {
  const abort = new AbortController();
  const onCancel = () => abort.abort(new Error("call cancelled"));
  call.once("cancelled", onCancel);
  if (call.cancelled) return;
  const { repo, digest, offset } = call.request;
  try {
    for await (const piece of meshFetch.fetchFromMesh(repo, digest, offset, abort.signal)) {
      let at = 0;
      do {
        const data = piece.data.subarray(at, Math.min(at + CHUNK_BYTES, piece.data.byteLength));
        if (abort.signal.aborted) return;
        const more = call.write({ data, offset: piece.offset + at, size: piece.size });
        at += data.byteLength;
        if (!more) await once(call, "drain", { signal: abort.signal });
      } while (at < piece.data.byteLength);
    }
  } catch (err) {
    if (abort.signal.aborted) return;
    throw err;
  } finally {
    call.off("cancelled", onCancel);
  }
  call.end();
}
