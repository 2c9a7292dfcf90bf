/**
 * Fetch on miss and sync(k) across real peers: regions a, b and c each run a
 * control-plane peer (real gRPC, mutual TLS from ensureMeshCerts) over one
 * real nats-server holding their streams; b and c also run a registry node
 * that writes their logs and stores. Region d is in the mesh but never
 * starts (a dead region). The nodes of region a would call a's peer: the
 * tests do, with a's credentials, through PeerClient.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { ensureMeshCerts } from "../../cli/certs.js";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import type { RunningNode } from "../../node/server.js";
import type { Digest } from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  ManifestNotFoundError,
  type MeridianError,
  UnsupportedError,
} from "../../protocol/errors.js";
import type { Mesh } from "../../protocol/mesh.js";
import type { RegionHealth } from "../../protocol/routing.js";
import {
  cleanupStack,
  freePort,
  silentLogger,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { OCI_CONFIG, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { loadPeerConfig } from "../config.js";
import { MeshFetch } from "../mesh-fetch.js";
import { type RunningPeer, startPeer } from "../peer.js";

const defer = cleanupStack({ after });
const MiB = 1 << 20;
const ABSENT = `sha256:${"0".repeat(64)}` as Digest;

let mesh: Mesh;
const peers = new Map<string, RunningPeer>();
const nodes = new Map<string, RunningNode>();
const oci = new Map<string, OciClient>();
/** Region a's own peer, as a's nodes reach it. */
let local: PeerClient;
/** An image pushed to b only, and one pushed (the same bytes) to b and c. */
let onlyB: Awaited<ReturnType<OciClient["pushRandomImage"]>>;
let shared: { digest: string; bytes: Buffer };
/** A 5 MiB layer linked in b's team/app only. */
let layer: { digest: Digest; bytes: Buffer };

before(async () => {
  const nats = await startTestNats(defer);
  const root = tempDir(defer);
  const names = ["a", "b", "c", "d"];
  const certs = await ensureMeshCerts(join(root, "certs"), names);
  mesh = {
    regions: await Promise.all(
      names.map(async (name, i) => ({
        name,
        registry: `http://127.0.0.1:${10 + i}`,
        nats: nats.url,
        grpc: `127.0.0.1:${await freePort()}`,
      })),
    ),
    tls: { ca: certs.ca, dir: certs.dir },
  };
  const meshFile = join(root, "mesh.json");
  writeFileSync(meshFile, JSON.stringify(mesh));
  for (const region of ["a", "b", "c"]) {
    const dataDir = join(root, region);
    const config = loadPeerConfig({
      overrides: { region, meshFile, dataDir, heartbeat: { intervalMs: 200 }, logLevel: "silent" },
    });
    const peer = await startPeer(config, silentLogger);
    defer(() => peer.close());
    peers.set(region, peer);
    if (region !== "a") {
      // The region's node: the same data directory, so the same store the peer serves.
      const node = await startTestNode(defer, { nats: nats.url, dataDir, region });
      nodes.set(region, node);
      oci.set(region, new OciClient(node.url));
    }
  }
  local = new PeerClient("a", peers.get("a")!.grpc, peerCredentials(mesh, "a"), "a");
  defer(() => local.close());

  onlyB = await oci.get("b")!.pushRandomImage("team/app", "v1", 1, 1000);
  const bytes = randomBytes(5 * MiB);
  layer = { digest: (await oci.get("b")!.pushBlob("team/app", bytes)).digest as Digest, bytes };
  // The same manifest in b and c.
  for (const region of ["b", "c"]) {
    const client = oci.get(region)!;
    const config = await client.pushBlob("team/shared", Buffer.from('{"shared":true}'), OCI_CONFIG);
    const l = await client.pushBlob("team/shared", Buffer.from("shared layer"));
    const pushed = await client.pushManifest("team/shared", "v1", {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [l],
    });
    shared = { digest: pushed.digest, bytes: pushed.bytes };
  }
  await caughtUp("b");
  await caughtUp("c");
});

/** Region's peer has applied everything its node wrote. */
async function caughtUp(region: string): Promise<void> {
  await peers.get(region)!.view.waitFor(nodes.get(region)!.registry.view.appliedSeq, 10_000);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

function isInvalidArgument(err: MeridianError): boolean {
  return (err.cause as { code?: number } | undefined)?.code === 3;
}

test("Locate finds a manifest in another region by tag and by digest, with its bytes and registry", async () => {
  const expected = Buffer.from(JSON.stringify(onlyB.manifest));
  for (const reference of ["v1", onlyB.digest]) {
    const found = await local.locate("team/app", reference, true);
    assert.equal(found.region, "b");
    assert.equal(found.registry, "http://127.0.0.1:11");
    assert.equal(found.digest, onlyB.digest);
    assert.equal(found.mediaType, OCI_MANIFEST);
    assert.ok(found.content.equals(expected));
    assert.equal(sha256(found.content), onlyB.digest);
    assert.equal(found.size, expected.length);
  }
});

test("Locate finds a blob only where it is linked in the repository asked about", async () => {
  const found = await local.locate("team/app", layer.digest, false);
  assert.equal(found.region, "b");
  assert.equal(found.digest, layer.digest);
  assert.equal(found.size, 5 * MiB);
  assert.equal(found.content.length, 0);
  // b's store holds the bytes, but team/shared never linked them.
  await assert.rejects(local.locate("team/shared", layer.digest, false), BlobNotFoundError);
  await assert.rejects(local.locate("no/such", layer.digest, false), BlobNotFoundError);
});

test("Locate answers NOT_FOUND when nobody holds it, INVALID_ARGUMENT for bad input", async () => {
  await assert.rejects(local.locate("team/app", "nope", true), ManifestNotFoundError);
  await assert.rejects(local.locate("team/app", ABSENT, true), ManifestNotFoundError);
  // A blob's digest is not a manifest.
  await assert.rejects(local.locate("team/app", layer.digest, true), ManifestNotFoundError);
  await assert.rejects(local.locate("team/app", ABSENT, false), BlobNotFoundError);
  for (const [repo, reference, manifest] of [
    ["Team/App", "v1", true],
    ["team/app", "-bad", true],
    ["team/app", "v1", false],
    ["team/app", "sha256:xyz", false],
  ] as const) {
    await assert.rejects(local.locate(repo, reference, manifest), isInvalidArgument, `${repo} ${reference}`);
  }
});

test("MeshFetch: nearest healthy holder first, known-down regions skipped, a dead nearest one tried past", async (t) => {
  const clients = new Map<string, PeerClient>();
  for (const r of ["b", "c", "d"]) {
    const client = new PeerClient(
      r,
      mesh.regions.find((x) => x.name === r)!.grpc,
      peerCredentials(mesh, "a"),
      "a",
    );
    clients.set(r, client);
  }
  cleanupStack(t)(() => {
    for (const c of clients.values()) c.close();
  });
  let health: RegionHealth[] = [];
  const fetcher = new MeshFetch({
    region: "a",
    mesh,
    peers: clients,
    health: () => health,
    callTimeoutMs: 1_000,
  });
  const where = async () => (await fetcher.locate("team/shared", "v1", true)).region;

  health = [
    { region: "b", up: true, rttMs: 50 },
    { region: "c", up: true, rttMs: 5 },
    { region: "d", up: false },
  ];
  assert.deepEqual(fetcher.candidates(), ["c", "b"]);
  assert.equal(await where(), "c");
  health = [
    { region: "b", up: true, rttMs: 5 },
    { region: "c", up: true, rttMs: 50 },
    { region: "d", up: false },
  ];
  assert.equal(await where(), "b");
  // b known down: skipped although it holds the manifest and answers.
  health = [
    { region: "b", up: false },
    { region: "c", up: true, rttMs: 50 },
  ];
  assert.deepEqual(fetcher.candidates(), ["c", "d"], "d never measured: after the measured ones");
  assert.equal(await where(), "c");
  // d, dead but not known to be, looks nearest: its failure costs one call, then the next holder answers.
  health = [
    { region: "d", up: true, rttMs: 1 },
    { region: "c", up: true, rttMs: 50 },
    { region: "b", up: true, rttMs: 60 },
  ];
  assert.equal(await where(), "c");
  // Only holders count: b alone holds team/app.
  assert.equal((await fetcher.locate("team/app", "v1", true)).region, "b");

  // A blob: d cannot be asked, c does not hold it linked in team/app, b sends it.
  const pieces: Buffer[] = [];
  for await (const piece of fetcher.fetchFromMesh("team/app", layer.digest, 0)) {
    assert.equal(piece.size, 5 * MiB);
    pieces.push(piece.data);
  }
  assert.equal(sha256(Buffer.concat(pieces)), layer.digest);
  // Every region down: nobody to ask.
  health = ["b", "c", "d"].map((region) => ({ region, up: false }));
  await assert.rejects(where(), ManifestNotFoundError);
});

test("FetchFromMesh relays a blob from the region holding it: identical bytes, verified digest", async () => {
  const bytes = await readAll(local.fetchFromMesh("team/app", layer.digest));
  assert.equal(bytes.length, layer.bytes.length);
  assert.equal(sha256(bytes), layer.digest);
  assert.ok(bytes.equals(layer.bytes));
});

test("FetchFromMesh resumes from an offset; at the end it sends nothing more", async () => {
  const offset = 1_234_567;
  const tail = await readAll(local.fetchFromMesh("team/app", layer.digest, offset));
  assert.ok(tail.equals(layer.bytes.subarray(offset)));
  assert.equal(sha256(Buffer.concat([layer.bytes.subarray(0, offset), tail])), layer.digest);
  const none = await readAll(local.fetchFromMesh("team/app", layer.digest, layer.bytes.length));
  assert.equal(none.length, 0);
  await assert.rejects(
    readAll(local.fetchFromMesh("team/app", layer.digest, layer.bytes.length + 1)),
    isInvalidArgument,
  );
});

test("FetchFromMesh is NOT_FOUND for a blob not linked in the repository, or held nowhere", async () => {
  await assert.rejects(readAll(local.fetchFromMesh("team/shared", layer.digest)), BlobNotFoundError);
  await assert.rejects(readAll(local.fetchFromMesh("team/app", ABSENT)), BlobNotFoundError);
});

test("FetchFromMesh: a caller that stops early cancels the relay; the next fetch is whole", async () => {
  const stream = local.fetchFromMesh("team/app", layer.digest);
  let got = 0;
  for await (const part of stream) {
    got += (part as Buffer).length;
    if (got >= MiB) break;
  }
  assert.ok(stream.destroyed);
  const again = await readAll(local.fetchFromMesh("team/app", layer.digest));
  assert.equal(sha256(again), layer.digest);
});

test("WaitReplicated is satisfied once the manifest appears in enough other regions", async () => {
  // Pushed to b now; c gets the same manifest after the wait has begun.
  const client = oci.get("b")!;
  const config = await client.pushBlob("sync/app", Buffer.from('{"sync":1}'), OCI_CONFIG);
  const l = await client.pushBlob("sync/app", Buffer.from("sync layer"));
  const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [l] };
  const { digest } = await client.pushManifest("sync/app", "v1", manifest);

  const waiting = local.waitReplicated("sync/app", digest as Digest, 2, 20_000);
  let settled = false;
  void waiting.then(() => {
    settled = true;
  });
  // b alone is not enough for two copies: the wait is still on once b certainly has it.
  await caughtUp("b");
  assert.deepEqual((await local.waitReplicated("sync/app", digest as Digest, 1, 10_000)).regions, ["b"]);
  assert.equal(settled, false);
  const c = oci.get("c")!;
  await c.pushBlob("sync/app", Buffer.from('{"sync":1}'), OCI_CONFIG);
  await c.pushBlob("sync/app", Buffer.from("sync layer"));
  await c.pushManifest("sync/app", "v1", manifest);
  assert.deepEqual(await waiting, { regions: ["b", "c"], satisfied: true });
});

test("WaitReplicated times out unsatisfied with the regions found; refuses impossible requests", async () => {
  assert.deepEqual(await local.waitReplicated("team/app", onlyB.digest as Digest, 2, 300), {
    regions: ["b"],
    satisfied: false,
  });
  assert.deepEqual(await local.waitReplicated("team/app", ABSENT, 1, 200), { regions: [], satisfied: false });
  assert.deepEqual(await local.waitReplicated("team/shared", shared.digest as Digest, 2, 10_000), {
    regions: ["b", "c"],
    satisfied: true,
  });
  // Three other regions (b, c, d): four copies cannot be had.
  await assert.rejects(local.waitReplicated("team/app", onlyB.digest as Digest, 4, 1_000), UnsupportedError);
  await assert.rejects(
    local.waitReplicated("team/app", onlyB.digest as Digest, 1, 60 * 60_000),
    UnsupportedError,
  );
  await assert.rejects(local.waitReplicated("Bad", onlyB.digest as Digest, 1, 1_000), isInvalidArgument);
});

test("a region of several nodes: its located registry turns over them (redirects spread)", async (t) => {
  const client = new PeerClient(
    "b",
    mesh.regions.find((x) => x.name === "b")!.grpc,
    peerCredentials(mesh, "a"),
    "a",
  );
  cleanupStack(t)(() => client.close());
  const nodes = ["http://127.0.0.1:11", "http://127.0.0.1:21", "http://127.0.0.1:31"];
  const fetcher = new MeshFetch({
    region: "a",
    mesh: {
      ...mesh,
      regions: mesh.regions.map((r) => (r.name === "b" ? { ...r, registries: nodes } : r)),
    },
    peers: new Map([["b", client]]),
    health: () => [{ region: "b", up: true, rttMs: 1 }],
  });
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) seen.push((await fetcher.locate("team/app", "v1", true)).registry);
  assert.deepEqual(seen, [...nodes, ...nodes]);
});
