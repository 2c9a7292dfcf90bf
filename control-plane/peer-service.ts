/**
 * The Peer service (protocol/proto/peer.proto) over one region's data: its
 * blob store (shared with the region's nodes) and a MetadataView the peer
 * materializes from the region's log. Read-only: nothing here writes.
 *
 * Every failure leaves through `toGrpcStatus` (protocol/grpc-errors.ts), so a
 * caller's `fromGrpcError` turns it back into the same domain error; an
 * unexpected error becomes INTERNAL without its message.
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
  RangeNotSatisfiableError,
} from "../protocol/errors.js";
import type { BlobChunk } from "../protocol/generated/meridian/peer/v1/BlobChunk.js";
import type { PeerHandlers } from "../protocol/generated/meridian/peer/v1/Peer.js";
import { toGrpcStatus } from "../protocol/grpc-errors.js";
import { MAX_NAME_LENGTH, parseRepository } from "../protocol/names.js";
import { repoStateToWire } from "../protocol/registers.js";
import { isEmpty, type RepoDigest, summaryRoot } from "../protocol/summary.js";
import type { LinkBudgets } from "./bandwidth.js";

/** Largest `data` in one BlobChunk. */
export const CHUNK_BYTES = 1 << 20;
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
  /** How this peer's heartbeats see the other regions (for Status). */
  peerHealth?: () => Array<{ region: string; up: boolean; rttMs?: number }>;
  /** Bandwidth budgets of the links out of this region (FetchBlob waits on them). */
  budgets?: LinkBudgets;
}

/** The handlers to pass to `server.addService(peerPackage().meridian.peer.v1.Peer.service, …)`. */
export function createPeerService(options: PeerServiceOptions): PeerHandlers {
  const { region, store, view, version, logger, peerHealth, budgets } = options;

  const fail = (method: string, err: unknown): { code: grpc.status; details: string } => {
    const status = toGrpcStatus(err);
    if (status.details === "internal error") logger?.error({ err, method }, "peer call failed");
    return status;
  };

  const unary =
    <Req, Res>(method: string, fn: (request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      fn(call.request).then(
        (reply) => callback(null, reply),
        (err) => callback(fail(method, err)),
      );
    };

  return {
    Status: unary("Status", async (request) => ({
      region,
      epoch: 0,
      // Own region: the local stream position applied; others: the highest
      // sequence of their stream replicated and applied here.
      applied: { ...(await view.originSeqs()), [region]: view.appliedSeq },
      version,
      sentAtMs: request.sentAtMs,
      peers: (peerHealth?.() ?? []).map((p) => ({ region: p.region, up: p.up, rttMs: p.rttMs ?? 0 })),
    })),

    HasBlobs: unary("HasBlobs", async (request) => {
      const digests = request.digests.map((d) => parseDigest(d));
      const sizes: Array<number | undefined> = new Array(digests.length);
      for (let i = 0; i < digests.length; i += STAT_CONCURRENCY) {
        const batch = digests.slice(i, i + STAT_CONCURRENCY);
        const found = await Promise.all(batch.map((d) => store.stat(d)));
        found.forEach((size, j) => {
          sizes[i + j] = size;
        });
      }
      return { present: sizes.map((s) => s !== undefined), sizes: sizes.map((s) => s ?? 0) };
    }),

    FetchBlob: (call) => {
      fetchBlob(store, call, budgets).catch((err) => {
        if (call.cancelled) return;
        call.emit("error", fail("FetchBlob", err));
      });
    },

    GetManifest: unary("GetManifest", async (request) => {
      const repo = parseRepository(request.repo);
      const reference = parseReference(request.reference);
      let digest: Digest;
      if ("tag" in reference) {
        const tag = await view.tagRecord(repo, reference.tag);
        if (!tag?.digest) throw new ManifestNotFoundError("manifest unknown", { detail: { repo } });
        digest = tag.digest;
      } else {
        digest = reference.digest;
      }
      const record = await view.manifest(repo, digest);
      if (record === undefined) throw new ManifestNotFoundError("manifest unknown", { detail: { repo } });
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
      for (const repo of await view.repositoriesUnder(prefix)) {
        const summary = await view.summarize(repo);
        if (!isEmpty(summary)) repos.push(summary);
      }
      return { repos, root: summaryRoot(repos) };
    }),

    RepoState: unary("RepoState", async (request) => {
      const repo = parseRepository(request.repo);
      return repoStateToWire(await view.repoState(repo));
    }),

    // Placeholders until the mesh calls are served (control-plane/mesh-fetch.ts).
    Locate: (_call, callback) => callback({ code: 12, details: "Locate is not served yet" }),
    FetchFromMesh: (call) =>
      call.destroy(Object.assign(new Error("FetchFromMesh is not served yet"), { code: 12 })),
    WaitReplicated: (_call, callback) => callback({ code: 12, details: "WaitReplicated is not served yet" }),
  };
}

/**
 * Stream a blob from the requested offset in chunks of at most CHUNK_BYTES,
 * each carrying its offset and the blob's size. Waits for 'drain' when the
 * call's buffer is full; a cancelled call destroys the file stream.
 */
async function fetchBlob(
  store: BlobStore,
  call: grpc.ServerWritableStream<{ digest: string; offset: number; fromRegion: string }, BlobChunk>,
  budgets: LinkBudgets | undefined,
): Promise<void> {
  const digest = parseDigest(call.request.digest);
  const offset = call.request.offset;
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
