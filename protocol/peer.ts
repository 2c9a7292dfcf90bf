/**
 * The peer service contract in code: how every component loads
 * `proto/peer.proto` (one set of loader options, the same the type generator
 * uses), the typed service definition, and deadlines. The server lives in
 * control-plane/, callers in control-plane/ and replication/.
 *
 * Generated types (protocol/generated/, do not edit) come from
 * `npm run gen:proto`; a test fails when they drift from the .proto.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType } from "./generated/peer.js";

/** Loader options shared by run time and `scripts/gen-proto.mjs` (keep them equal). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** protocol/proto/peer.proto, found from the source tree or from dist/. */
export function peerProtoPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [
    join(here, "proto", "peer.proto"),
    join(here, "..", "..", "protocol", "proto", "peer.proto"),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error("protocol/proto/peer.proto not found");
}

let loaded: ProtoGrpcType | undefined;

/** The loaded package (cached): `.meridian.peer.v1.Peer` is the client constructor and `.service`. */
export function peerPackage(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(peerProtoPath(), LOADER_OPTIONS),
  ) as unknown as ProtoGrpcType;
  return loaded;
}

/** HTTP/2 flow-control window for peer channels and servers (bytes); see replication/peer-client.ts. */
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
