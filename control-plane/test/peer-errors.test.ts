/**
 * Structured errors over a real gRPC connection (issue 12, item 5): the
 * peer service puts the domain error's code in the trailing metadata and the
 * mesh client rebuilds the same error from it. An unexpected failure (a
 * blob's file on disk that cannot be read) is INTERNAL, and terminal for the
 * caller's event; the same failure while the peer is closing, or a store
 * already closed, is UNAVAILABLE, which callers retry.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { PeerClient } from "../../mesh-client/peer-client.js";
import { peerPackage } from "../../mesh-client/proto.js";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import { MetadataView } from "../../node/data/view.js";
import { algorithmOf, type Digest, encodedOf } from "../../protocol/digest.js";
import {
  isTerminal,
  ManifestNotFoundError,
  type MeridianError,
  NameInvalidError,
  PeerInternalError,
  PeerUnavailableError,
} from "../../protocol/errors.js";
import type { PeerClient as GeneratedPeerClient } from "../../protocol/generated/meridian/peer/v1/Peer.js";
import { ERROR_CODE_KEY } from "../../protocol/grpc-errors.js";
import { cleanupStack, silentLogger, tempDir } from "../../testing/harness.js";
import { sha256 } from "../../testing/oci-client.js";
import { createPeerService, type PeerServiceOptions } from "../peer-service.js";

const defer = cleanupStack({ after });

let store: FsBlobStore;
let view: MetadataView;
let corrupt: Digest;

before(async () => {
  const root = tempDir(defer);
  store = new FsBlobStore(join(root, "store"));
  await store.init();
  view = new MetadataView(join(root, "view"));
  await view.open();
  defer(() => view.close());
  // A blob whose file is replaced by a directory: stat finds it, reading it fails (EISDIR).
  const bytes = randomBytes(1000);
  corrupt = sha256(bytes) as Digest;
  await store.write(Readable.from([bytes]), corrupt);
  const encoded = encodedOf(corrupt);
  const path = join(root, "store", "blobs", algorithmOf(corrupt), encoded.slice(0, 2), encoded);
  await rm(path);
  await mkdir(join(path, "not-a-file"), { recursive: true });
});

/** A real server with the peer service over `store` and `view`; its address. */
async function serve(options: Partial<PeerServiceOptions> = {}): Promise<string> {
  const server = new grpc.Server();
  server.addService(
    peerPackage().meridian.peer.v1.Peer.service,
    createPeerService({ region: "src", store, view, version: "test", logger: silentLogger, ...options }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  defer(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return `127.0.0.1:${port}`;
}

function meshClient(address: string): PeerClient {
  const client = new PeerClient("src", address, grpc.credentials.createInsecure(), "dst");
  defer(() => client.close());
  return client;
}

/** The raw status of a GetManifest, as grpc-js hands it to any caller. */
async function rawGetManifest(address: string, repo: string): Promise<grpc.ServiceError> {
  const Peer = peerPackage().meridian.peer.v1.Peer;
  const raw = new Peer(address, grpc.credentials.createInsecure()) as unknown as GeneratedPeerClient;
  defer(() => raw.close());
  return new Promise((resolve, reject) =>
    raw.getManifest({ repo, reference: "v1" }, (err) =>
      err ? resolve(err) : reject(new Error("GetManifest succeeded")),
    ),
  );
}

/** The error a blob copy from the peer fails with. */
async function fetchFails(client: PeerClient, digest: Digest): Promise<MeridianError> {
  try {
    await pipeline(client.fetchBlob(digest, 0), async (source: AsyncIterable<Buffer>) => {
      for await (const _ of source);
    });
  } catch (err) {
    return err as MeridianError;
  }
  throw new Error("the copy succeeded");
}

test("the domain error's code travels in the trailing metadata, and comes back as the same error", async () => {
  const address = await serve();
  const missing = await rawGetManifest(address, "team/app");
  assert.equal(missing.code, grpc.status.NOT_FOUND);
  assert.deepEqual(missing.metadata.get(ERROR_CODE_KEY), ["MANIFEST_NOT_FOUND"]);
  const invalid = await rawGetManifest(address, "Not/A/Valid/Name");
  assert.equal(invalid.code, grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(invalid.metadata.get(ERROR_CODE_KEY), ["NAME_INVALID"]);

  const client = meshClient(address);
  await assert.rejects(client.getManifest("team/app", "v1"), ManifestNotFoundError);
  const err = await client.getManifest("Not/A/Valid/Name", "v1").catch((e: MeridianError) => e);
  assert.ok(err instanceof NameInvalidError, String(err));
  assert.equal(isTerminal(err), true);
});

test("a stored blob the peer cannot read is INTERNAL with its code, terminal for the caller", async () => {
  const client = meshClient(await serve());
  // Present by its size: the fault shows only when the bytes are read, mid-stream.
  assert.deepEqual(await client.hasBlobs([corrupt]), [true]);
  const err = await fetchFails(client, corrupt);
  assert.ok(err instanceof PeerInternalError, String(err));
  assert.equal(isTerminal(err), true);
  assert.equal(err.recoverable, false);
  assert.doesNotMatch(err.message, /EISDIR|not-a-file/, "the peer's own message stays home");
  const cause = err.cause as grpc.ServiceError;
  assert.equal(cause.code, grpc.status.INTERNAL);
  assert.deepEqual(cause.metadata.get(ERROR_CODE_KEY), ["PEER_INTERNAL"]);
});

test("a peer that is closing answers UNAVAILABLE, not INTERNAL: callers retry", async () => {
  const client = meshClient(await serve({ closing: () => true }));
  const err = await fetchFails(client, corrupt);
  assert.ok(err instanceof PeerUnavailableError, String(err));
  assert.equal(isTerminal(err), false);
  assert.equal((err.cause as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
});

test("a store already closed answers UNAVAILABLE, not INTERNAL", async () => {
  const closed = new MetadataView(tempDir(defer, "meridian-closed-view-"));
  await closed.open();
  await closed.close();
  const address = await serve({ view: closed });
  const raw = await rawGetManifest(address, "team/app");
  assert.equal(raw.code, grpc.status.UNAVAILABLE, raw.details);
  const err = await meshClient(address)
    .getManifest("team/app", "v1")
    .catch((e: MeridianError) => e);
  assert.ok(err instanceof PeerUnavailableError, String(err));
  assert.equal(isTerminal(err), false);
});
