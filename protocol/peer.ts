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
} as const;

export function deadline(ms: number): Date {
  return new Date(Date.now() + ms);
}
