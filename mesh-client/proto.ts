/**
 * Loading the `.proto` files of protocol/proto/ at run time: file IO, so it
 * lives here and not in protocol/ (which stays pure). One set of loader
 * options, the same the type generator uses (scripts/gen-proto.mjs); the
 * generated types (protocol/generated/, do not edit) come from
 * `npm run gen:proto`, and a test fails when they drift from the .proto.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType } from "../protocol/generated/peer.js";

/** Loader options shared by run time and `scripts/gen-proto.mjs` (keep them equal). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** protocol/proto/`name` (e.g. `peer.proto`, `health.proto`), found from the source tree or from dist/. */
export function protoPath(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [
    join(here, "..", "protocol", "proto", name),
    join(here, "..", "..", "protocol", "proto", name),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`protocol/proto/${name} not found`);
}

let loaded: ProtoGrpcType | undefined;

/** The loaded peer package (cached): `.meridian.peer.v1.Peer` is the client constructor and `.service`. */
export function peerPackage(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(protoPath("peer.proto"), LOADER_OPTIONS),
  ) as unknown as ProtoGrpcType;
  return loaded;
}
