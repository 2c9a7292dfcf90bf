/**
 * The peer service contract in code, beyond `proto/peer.proto` itself: the
 * flow-control window and the deadline of every RPC. Pure: loading the
 * .proto files is IO and lives in mesh-client/proto.ts. The server lives in
 * control-plane/, the client in mesh-client/.
 */
/** HTTP/2 flow-control window for peer channels and servers (bytes); see mesh-client/peer-client.ts. */
export const PEER_FLOW_CONTROL_WINDOW = 16 * 1024 * 1024;

/** Deadlines (ms) for each RPC: every call carries one. */
export const DEADLINES = {
  status: 2_000,
  hasBlobs: 5_000,
  getManifest: 10_000,
  summarize: 30_000,
  /** FetchBlob: a deadline for the first chunk; the stream then has an idle timeout. */
  fetchFirstChunk: 10_000,
  fetchIdle: 30_000,
  /**
   * The byte channel (control-plane/blob-channel.ts): a copy fails when no
   * byte arrives for this long. It has no HTTP/2 PING to notice a frozen
   * peer (PEER_CHANNEL_LIVENESS's 5 s + 3 s), so its idle bound is that
   * bound; a budget never holds its bytes longer (they leave in pieces of a
   * quarter second's worth).
   */
  blobChannelIdle: 8_000,
} as const;

/** ALPN protocol of the peer's byte channel for blob data, beside gRPC's "h2" on the same port. */
export const BLOB_CHANNEL_ALPN = "http/1.1";
/** Path prefix of a blob on the byte channel: `GET /blobs/<digest>?from=<region>[&repo=<name>]`. */
export const BLOB_CHANNEL_PATH = "/blobs/";

export function deadline(ms: number): Date {
  return new Date(Date.now() + ms);
}
