/**
 * The Peer service against a real grpc.Server on port 0, over data pushed
 * through a real node and a real nats-server: the service opens the node's
 * storage root and its own view of the same region's stream.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { peerPackage } from "../../mesh-client/proto.js";
import type { BlobStore } from "../../node/data/blob-store.js";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import { JetStreamLog } from "../../node/data/jetstream-log.js";
import { Registry } from "../../node/data/registry.js";
import { MetadataView } from "../../node/data/view.js";
import type { Digest } from "../../protocol/digest.js";
import { BlobNotFoundError, ManifestNotFoundError } from "../../protocol/errors.js";
import type { BlobChunk__Output } from "../../protocol/generated/meridian/peer/v1/BlobChunk.js";
import type { PeerClient } from "../../protocol/generated/meridian/peer/v1/Peer.js";
import type { RepoStateReply__Output } from "../../protocol/generated/meridian/peer/v1/RepoStateReply.js";
import type { RepoSummary__Output } from "../../protocol/generated/meridian/peer/v1/RepoSummary.js";
import { fromGrpcError } from "../../protocol/grpc-errors.js";
import { summaryRoot } from "../../protocol/summary.js";
import {
  cleanupStack,
  eventually,
  silentLogger,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { NON_REGION_RPCS, peerMayCall } from "../peer-access.js";
import { CHUNK_BYTES, createPeerService } from "../peer-service.js";

const defer = cleanupStack({ after });
const MiB = 1 << 20;

let client: PeerClient;
let oci: OciClient;
let nodeView: MetadataView;
let peerView: MetadataView;
let image: Awaited<ReturnType<OciClient["pushRandomImage"]>>;
let big: { digest: Digest; bytes: Buffer };
/** Every stream the service opened through the store, to watch cancellation. */
const opened: Readable[] = [];

const ABSENT = `sha256:${"0".repeat(64)}` as Digest;

before(async () => {
  const nats = await startTestNats(defer);
  const dataDir = tempDir(defer);
  const node = await startTestNode(defer, { nats: nats.url, dataDir });
  nodeView = node.registry.view;
  oci = new OciClient(node.url);

  // The peer's side: the node's store, its own view of the same stream.
  const store = new FsBlobStore(join(dataDir, "store"));
  await store.init();
  // The real store, with the streams it opens recorded (the service uses only these reads).
  const spyStore = {
    stat: (digest: Digest) => store.stat(digest),
    readAll: (digest: Digest) => store.readAll(digest),
    read: async (...args: Parameters<FsBlobStore["read"]>) => {
      const stream = await store.read(...args);
      opened.push(stream);
      return stream;
    },
  } as unknown as BlobStore;
  peerView = new MetadataView(tempDir(defer, "meridian-peer-view-"));
  await peerView.open();
  defer(() => peerView.close());
  const log = JetStreamLog.open({
    servers: [nats.url],
    region: "test",
    name: "peer-test",
    logger: silentLogger,
  });
  defer(() => log.close());
  const registry = new Registry({
    region: "test",
    store,
    log,
    view: peerView,
    logger: silentLogger,
    maxManifestBytes: 4 * MiB,
  });
  registry.start();
  defer(() => registry.stop());

  const server = new grpc.Server();
  server.addService(
    peerPackage().meridian.peer.v1.Peer.service,
    createPeerService({ region: "test", store: spyStore, view: peerView, version: "9.9.9-test" }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  defer(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  const Peer = peerPackage().meridian.peer.v1.Peer;
  client = new Peer(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as PeerClient;
  defer(() => client.close());

  image = await oci.pushRandomImage("team/app", "v1", 2, 3 * MiB + 123);
  const bigBytes = randomBytes(40 * MiB);
  big = { digest: (await oci.pushBlob("team/big", bigBytes)).digest as Digest, bytes: bigBytes };
  await caughtUp();
});

/** The peer's view has applied everything the node has. */
async function caughtUp(): Promise<void> {
  await peerView.waitFor(nodeView.appliedSeq, 10_000);
}

function unary<Req, Res>(method: keyof PeerClient, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    // biome-ignore lint/suspicious/noExplicitAny: one helper for every generated unary method
    (client[method] as any).call(
      client,
      request,
      { deadline: Date.now() + 10_000 },
      (err: grpc.ServiceError | null, reply: Res) => (err ? reject(err) : resolve(reply)),
    );
  });
}

function fetchAll(digest: string, offset = 0): Promise<BlobChunk__Output[]> {
  return new Promise((resolve, reject) => {
    const chunks: BlobChunk__Output[] = [];
    const call = client.fetchBlob({ digest, offset }, { deadline: Date.now() + 30_000 });
    call.on("data", (c: BlobChunk__Output) => chunks.push(c));
    call.on("error", reject);
    call.on("end", () => resolve(chunks));
  });
}

async function rejectsWith(promise: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    assert.equal((err as grpc.ServiceError).code, code, (err as Error).message);
    return err as grpc.ServiceError;
  }
  assert.fail(`expected ${grpc.status[code]}`);
}

test("Status reports the region, its applied sequence and echoes sent_at_ms", async () => {
  const reply = await unary<
    object,
    { region: string; epoch: number; applied: Record<string, number>; version: string; sentAtMs: number }
  >("status", { fromRegion: "other", sentAtMs: 1234567 });
  assert.equal(reply.region, "test");
  assert.equal(reply.epoch, 0);
  assert.equal(reply.version, "9.9.9-test");
  assert.equal(reply.sentAtMs, 1234567);
  assert.deepEqual(Object.keys(reply.applied), ["test"]);
  assert.ok(reply.applied.test! >= nodeView.appliedSeq - 0 && reply.applied.test! > 0);
});

test("HasBlobs tells present blobs and their sizes, in order", async () => {
  const reply = await unary<object, { present: boolean[]; sizes: number[] }>("hasBlobs", {
    digests: [image.layers[0]!.digest, ABSENT, image.config.digest, big.digest],
  });
  assert.deepEqual(reply.present, [true, false, true, true]);
  assert.deepEqual(reply.sizes, [3 * MiB + 123, 0, image.config.size, 40 * MiB]);
  const empty = await unary<object, { present: boolean[] }>("hasBlobs", { digests: [] });
  assert.deepEqual(empty.present, []);
});

test("HasBlobs with a malformed digest is INVALID_ARGUMENT", async () => {
  const err = await rejectsWith(
    unary("hasBlobs", { digests: [image.config.digest, "sha256:nothex"] }),
    grpc.status.INVALID_ARGUMENT,
  );
  assert.match(err.details, /^DIGEST_INVALID/);
});

test("HasBlobs with a repository counts only blobs linked there", async () => {
  const digests = [image.layers[0]!.digest, big.digest, image.config.digest, ABSENT];
  const inApp = await unary<object, { present: boolean[]; sizes: number[] }>("hasBlobs", {
    digests,
    repo: "team/app",
  });
  assert.deepEqual(inApp.present, [true, false, true, false], "big is in the store, but linked in team/big");
  assert.deepEqual(inApp.sizes, [3 * MiB + 123, 0, image.config.size, 0]);
  const inBig = await unary<object, { present: boolean[] }>("hasBlobs", { digests, repo: "team/big" });
  assert.deepEqual(inBig.present, [false, true, false, false]);
  const nowhere = await unary<object, { present: boolean[] }>("hasBlobs", { digests, repo: "no/such" });
  assert.deepEqual(nowhere.present, [false, false, false, false]);
  await rejectsWith(unary("hasBlobs", { digests, repo: "Bad Name" }), grpc.status.INVALID_ARGUMENT);
});

function fetchIn(repo: string, digest: string): Promise<BlobChunk__Output[]> {
  return new Promise((resolve, reject) => {
    const chunks: BlobChunk__Output[] = [];
    const call = client.fetchBlob({ digest, offset: 0, repo }, { deadline: Date.now() + 30_000 });
    call.on("data", (c: BlobChunk__Output) => chunks.push(c));
    call.on("error", reject);
    call.on("end", () => resolve(chunks));
  });
}

test("FetchBlob with a repository is NOT_FOUND unless the blob is linked there", async () => {
  const { digest, size } = image.config;
  const chunks = await fetchIn("team/app", digest);
  assert.equal(sha256(Buffer.concat(chunks.map((c) => c.data))), digest);
  assert.equal(chunks[0]!.size, size);
  const err = await rejectsWith(fetchIn("team/big", digest), grpc.status.NOT_FOUND);
  assert.ok(fromGrpcError(err, "blob") instanceof BlobNotFoundError);
  await rejectsWith(fetchIn("no/such", digest), grpc.status.NOT_FOUND);
  await rejectsWith(fetchIn("Bad Name", digest), grpc.status.INVALID_ARGUMENT);
});

test("without a mesh, Locate, FetchFromMesh and WaitReplicated are UNIMPLEMENTED; Status is open", async () => {
  await rejectsWith(
    unary("locate", { repo: "team/app", reference: "v1", manifest: true }),
    grpc.status.UNIMPLEMENTED,
  );
  await rejectsWith(
    unary("waitReplicated", { repo: "team/app", digest: image.digest, copies: 1, timeoutMs: 10 }),
    grpc.status.UNIMPLEMENTED,
  );
  await rejectsWith(
    new Promise((resolve, reject) => {
      const call = client.fetchFromMesh({ digest: image.config.digest, offset: 0, repo: "team/app" });
      call.on("data", () => undefined);
      call.on("error", reject);
      call.on("end", resolve);
    }),
    grpc.status.UNIMPLEMENTED,
  );
  const status = await unary<object, { fence: string; peers: unknown[]; leaseMs: number }>("status", {
    fromRegion: "other",
    sentAtMs: 1,
  });
  assert.equal(status.fence, "");
  assert.deepEqual(status.peers, []);
  assert.equal(status.leaseMs, 0);
});

test("FetchBlob streams the whole blob in 1 MiB chunks with offsets and size", async () => {
  const layer = image.layers[1]!;
  const chunks = await fetchAll(layer.digest);
  assert.equal(chunks.length, Math.ceil(layer.size / CHUNK_BYTES));
  let expected = 0;
  for (const c of chunks) {
    assert.equal(c.offset, expected);
    assert.equal(c.size, layer.size);
    assert.ok(c.data.length > 0 && c.data.length <= CHUNK_BYTES);
    expected += c.data.length;
  }
  assert.equal(expected, layer.size);
  assert.equal(sha256(Buffer.concat(chunks.map((c) => c.data))), layer.digest);
});

test("FetchBlob resumes from an offset: the two parts concatenate to the digest", async () => {
  const layer = image.layers[0]!;
  // First attempt: take about 1.5 MiB, then cancel.
  const first = await new Promise<Buffer>((resolve) => {
    const parts: Buffer[] = [];
    let got = 0;
    const call = client.fetchBlob({ digest: layer.digest, offset: 0 });
    call.on("data", (c: BlobChunk__Output) => {
      parts.push(c.data);
      got += c.data.length;
      if (got >= 1.5 * MiB) {
        call.cancel();
        resolve(Buffer.concat(parts));
      }
    });
    call.on("error", () => undefined);
  });
  assert.ok(first.length < layer.size);
  const rest = await fetchAll(layer.digest, first.length);
  assert.equal(rest[0]!.offset, first.length);
  assert.equal(rest[0]!.size, layer.size);
  const whole = Buffer.concat([first, ...rest.map((c) => c.data)]);
  assert.equal(whole.length, layer.size);
  assert.equal(sha256(whole), layer.digest);

  // An odd offset inside a chunk works too.
  const tail = await fetchAll(layer.digest, layer.size - 5);
  assert.equal(tail.length, 1);
  assert.equal(tail[0]!.offset, layer.size - 5);
  assert.equal(tail[0]!.data.length, 5);
});

test("FetchBlob at the end gives one empty chunk with the size; past the end is INVALID_ARGUMENT", async () => {
  const { digest, size } = image.config;
  const chunks = await fetchAll(digest, size);
  assert.equal(chunks.length, 1);
  assert.equal(chunks[0]!.data.length, 0);
  assert.equal(chunks[0]!.offset, size);
  assert.equal(chunks[0]!.size, size);
  await rejectsWith(fetchAll(digest, size + 1), grpc.status.INVALID_ARGUMENT);
  await rejectsWith(fetchAll(digest, -1), grpc.status.INVALID_ARGUMENT);
});

test("FetchBlob of an absent blob is NOT_FOUND, of a bad digest INVALID_ARGUMENT", async () => {
  const err = await rejectsWith(fetchAll(ABSENT), grpc.status.NOT_FOUND);
  assert.ok(fromGrpcError(err, "blob") instanceof BlobNotFoundError);
  await rejectsWith(fetchAll("md5:abc"), grpc.status.INVALID_ARGUMENT);
});

test("FetchBlob respects backpressure and closes the file when the call is cancelled", async () => {
  const before = opened.length;
  const call = client.fetchBlob({ digest: big.digest, offset: 0 });
  let received = 0;
  call.on("data", (c: BlobChunk__Output) => {
    received += c.data.length;
    call.pause(); // a slow reader: take one chunk, then nothing
  });
  call.on("error", () => undefined);
  await eventually(() => opened.length > before && received > 0);
  const stream = opened[opened.length - 1] as Readable & { bytesRead: number };
  // Let the server run into the full window and buffers.
  await new Promise((r) => setTimeout(r, 500));
  const readWhilePaused = stream.bytesRead;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(stream.bytesRead, readWhilePaused, "the server kept reading while the client was stalled");
  assert.ok(readWhilePaused < 40 * MiB, `read ${readWhilePaused} of ${40 * MiB} bytes for a stalled client`);
  assert.equal(stream.destroyed, false);
  call.cancel();
  await eventually(() => stream.destroyed, 5_000);
});

test("GetManifest by tag and by digest returns the exact bytes, digest and media type", async () => {
  const expected = Buffer.from(JSON.stringify(image.manifest));
  assert.equal(sha256(expected), image.digest);
  for (const reference of ["v1", image.digest]) {
    const reply = await unary<object, { digest: string; mediaType: string; content: Buffer }>("getManifest", {
      repo: "team/app",
      reference,
    });
    assert.equal(reply.digest, image.digest);
    assert.equal(reply.mediaType, OCI_MANIFEST);
    assert.ok(reply.content.equals(expected));
  }
});

test("GetManifest of an absent tag, digest or repository is NOT_FOUND; bad names INVALID_ARGUMENT", async () => {
  for (const [repo, reference] of [
    ["team/app", "nope"],
    ["team/app", ABSENT],
    ["team/none", "v1"],
    // a blob's digest is not a manifest
    ["team/app", image.config.digest],
  ] as const) {
    const err = await rejectsWith(unary("getManifest", { repo, reference }), grpc.status.NOT_FOUND);
    assert.ok(fromGrpcError(err, "manifest") instanceof ManifestNotFoundError, `${repo}:${reference}`);
  }
  await rejectsWith(
    unary("getManifest", { repo: "Team/App", reference: "v1" }),
    grpc.status.INVALID_ARGUMENT,
  );
  await rejectsWith(
    unary("getManifest", { repo: "team/app", reference: "-bad" }),
    grpc.status.INVALID_ARGUMENT,
  );
  await rejectsWith(
    unary("getManifest", { repo: "team/app", reference: "sha256:xyz" }),
    grpc.status.INVALID_ARGUMENT,
  );
});

/** Push the same config, layer and manifest bytes to `repo`; returns the manifest digests. */
async function pushFixed(
  repo: string,
  seed: string,
): Promise<{ one: string; two: string; oneBytes: Buffer }> {
  const config = await oci.pushBlob(repo, Buffer.from(`{"seed":"${seed}"}`), OCI_CONFIG);
  const layer = await oci.pushBlob(repo, Buffer.from(`layer of ${seed}`));
  const one = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] };
  const two = { ...one, annotations: { n: "2" } };
  const a = await oci.pushManifest(repo, "one", one);
  const b = await oci.pushManifest(repo, "two", two);
  return { one: a.digest, two: b.digest, oneBytes: a.bytes };
}

function summarize(prefix: string): Promise<RepoSummary__Output[]> {
  return unary<object, { repos: RepoSummary__Output[] }>("summarize", { prefix }).then((r) => r.repos);
}

test("Summarize: identical content gives equal digests, a tag move changes one", async () => {
  const a = await pushFixed("sum/a", "same");
  const b = await pushFixed("sum/b", "same");
  await pushFixed("sum/c", "other");
  assert.equal(a.one, b.one);
  await caughtUp();

  const first = await summarize("sum/");
  assert.deepEqual(
    first.map((r) => r.repo),
    ["sum/a", "sum/b", "sum/c"],
  );
  const [sa, sb, sc] = first as [RepoSummary__Output, RepoSummary__Output, RepoSummary__Output];
  assert.equal(sa.digest, sb.digest);
  assert.notEqual(sa.digest, sc.digest);
  assert.match(sa.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(sa.tags, 2);
  assert.equal(sa.manifests, 2);

  // Move sum/b's "two" onto the first manifest: same manifests, different tags.
  await oci.pushManifest("sum/b", "two", a.oneBytes.toString());
  await caughtUp();
  const [sa2, sb2] = (await summarize("sum/")) as [RepoSummary__Output, RepoSummary__Output];
  assert.equal(sa2.digest, sa.digest);
  assert.notEqual(sb2.digest, sa2.digest);
  assert.equal(sb2.tags, 2);
  assert.equal(sb2.manifests, 2);

  // Only names under the prefix; the empty prefix is every repository.
  assert.deepEqual(
    (await summarize("team/")).map((r) => r.repo),
    ["team/app", "team/big"],
  );
  const all = (await summarize("")).map((r) => r.repo);
  for (const repo of ["sum/a", "sum/b", "sum/c", "team/app", "team/big"]) assert.ok(all.includes(repo));
  assert.deepEqual(await summarize("zzz/"), []);
});

test("Summarize agrees with an independent computation", async () => {
  const [app] = await summarize("team/app");
  const blobs = [image.config.digest, ...image.layers.map((l) => l.digest)].sort();
  const lines = `tag v1 ${image.digest}\nmanifest ${image.digest}\n${blobs.map((b) => `blob ${b}\n`).join("")}`;
  assert.equal(app!.digest, `sha256:${createHash("sha256").update(lines).digest("hex")}`);
  assert.equal(app!.tags, 1);
  assert.equal(app!.manifests, 1);
  assert.equal(app!.blobs, 3);
});

test("Summarize carries a root over the repositories; RepoState the registers with their writes", async () => {
  const reply = await unary<object, { repos: RepoSummary__Output[]; root: string }>("summarize", {
    prefix: "team/",
  });
  assert.equal(reply.root, summaryRoot(reply.repos));
  const state = await unary<object, RepoStateReply__Output>("repoState", { repo: "team/app" });
  assert.deepEqual(
    state.tags.map((t) => [t.tag, t.digest]),
    [["v1", image.digest]],
  );
  const v1 = state.tags[0]!.write!;
  assert.equal(v1.origin, "test");
  assert.ok(v1.wall > 0 && v1.id.length > 0);
  assert.deepEqual(
    state.manifests.map((m) => [m.digest, m.live, JSON.parse(m.recordJson).blobs.length]),
    [[image.digest, true, 3]],
  );
  assert.equal(state.blobs.length, 3);
  assert.ok(state.blobs.every((b) => b.live && b.size > 0));
  await assert.rejects(unary("repoState", { repo: "Bad Name" }), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    return true;
  });
});

test("who may call what: regions everything, other mesh identities Status (and its ping form) only, a plaintext mesh unchecked", () => {
  const regions = ["a", "b"];
  const rpcs = Object.keys(
    createPeerService({ region: "t", store: {} as BlobStore, view: {} as MetadataView, version: "0" }),
  );
  assert.ok(rpcs.includes("FetchBlob") && rpcs.includes("Status"));
  for (const rpc of rpcs) {
    assert.equal(peerMayCall("a", rpc, regions), true, `a: ${rpc}`);
    const statusOnly = rpc === "Status" || rpc === "PingStatus";
    assert.equal(peerMayCall("front-door", rpc, regions), statusOnly, `front-door: ${rpc}`);
    assert.equal(peerMayCall("", rpc, regions), statusOnly, `no name: ${rpc}`);
    assert.equal(peerMayCall("front-door", rpc, undefined), true, `plaintext: ${rpc}`);
  }
  assert.deepEqual([...NON_REGION_RPCS], ["Status", "PingStatus"]);
  assert.ok(
    rpcs.includes("WatchStatus") && !NON_REGION_RPCS.has("WatchStatus"),
    "the status stream is the region's",
  );
});
