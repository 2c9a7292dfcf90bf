/**
 * The peer's byte channel for blob data (control-plane/blob-channel.ts, issue
 * 14): a real peer of region b with real mutual TLS from ensureMeshCerts, a
 * real nats-server, blobs put in b's store; the client is
 * mesh-client/blob-channel.ts (and raw node:https for what it never sends).
 * Who may fetch (only a region's certificate; no certificate, another CA's
 * and the front door's are refused), gRPC on the same port, resumption from
 * an offset, clear refusals of malformed requests, a corrupt source refused
 * by the copy's digest check, and a frozen source (a peer process under
 * SIGSTOP) failing a copy within the channel's idle bound, after which the
 * copy resumes from the bytes it had.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { type RequestOptions, request } from "node:https";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ensureMeshCerts, type MeshCerts } from "../../cli/certs.js";
import { BlobChannel, blobChannelTls } from "../../mesh-client/blob-channel.js";
import { PeerClient, peerCredentials } from "../../mesh-client/peer-client.js";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import { MetadataView } from "../../node/data/view.js";
import type { Digest } from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  DigestInvalidError,
  DigestMismatchError,
  PeerUnavailableError,
} from "../../protocol/errors.js";
import { parseMesh } from "../../protocol/mesh.js";
import { DEADLINES } from "../../protocol/peer.js";
import { Copier } from "../../replication/copy.js";
import {
  cleanupStack,
  freePort,
  REPO_ROOT,
  silentLogger,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { LinkBudgets } from "../bandwidth.js";
import { createBlobChannel, listenPeer } from "../blob-channel.js";
import { loadPeerConfig } from "../config.js";
import { type RunningPeer, startPeer } from "../peer.js";

const defer = cleanupStack({ after });
const MiB = 1 << 20;

let certs: MeshCerts;
let meshFile: string;
let root: string;
let peerB: RunningPeer;
let bAddress: string;
let small: { digest: Digest; bytes: Buffer };

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}` as Digest;

/** Put `bytes` into the filesystem store at `storeRoot` (as a push would); its digest. */
async function putBlob(storeRoot: string, bytes: Buffer): Promise<Digest> {
  const store = new FsBlobStore(storeRoot);
  await store.init();
  const digest = sha256(bytes);
  const { id } = await store.startUpload("test/repo");
  await store.appendUpload(id, Readable.from([bytes]), 0, undefined);
  await store.commitUpload(id, digest);
  return digest;
}

before(async () => {
  const nats = await startTestNats(defer);
  root = tempDir(defer);
  certs = await ensureMeshCerts(join(root, "certs"), ["a", "b", "front-door"]);
  bAddress = `127.0.0.1:${await freePort()}`;
  meshFile = join(root, "mesh.json");
  writeFileSync(
    meshFile,
    JSON.stringify({
      regions: [
        { name: "a", registry: "http://127.0.0.1:1", nats: nats.url, grpc: `127.0.0.1:${await freePort()}` },
        { name: "b", registry: "http://127.0.0.1:2", nats: nats.url, grpc: bAddress },
      ],
      tls: { ca: certs.ca, dir: certs.dir },
    }),
  );
  const bytes = randomBytes(3 * MiB + 12345);
  small = { digest: await putBlob(join(root, "b", "store"), bytes), bytes };
  peerB = await startPeer(
    loadPeerConfig({ overrides: { region: "b", meshFile, dataDir: join(root, "b"), logLevel: "silent" } }),
    silentLogger,
  );
  defer(() => peerB.close());
});

const mesh = () => parseMesh(JSON.parse(readFileSync(meshFile, "utf8")));
/** A's client of b's byte channel. */
function channel(address = bAddress): BlobChannel {
  const c = new BlobChannel("b", address, blobChannelTls(mesh(), "a")!, "a");
  defer(() => c.close());
  return c;
}

async function drain(stream: Readable): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of stream) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

/** A raw GET on b's byte channel presenting `identity`'s certificate (undefined: none). */
function rawGet(
  path: string,
  identity: { cert: string; key: string } | undefined,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const [host, port] = bAddress.split(":");
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        path,
        method,
        headers,
        agent: false,
        ca: readFileSync(certs.ca),
        ...(identity === undefined
          ? {}
          : { cert: readFileSync(identity.cert), key: readFileSync(identity.key) }),
        servername: "localhost",
        ALPNProtocols: ["http/1.1"],
      } as RequestOptions,
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
    req.end();
  });
}

test("a region's certificate fetches a blob whole, and from an offset (a resumed copy)", async () => {
  assert.deepEqual(await drain(channel().fetch(small.digest, 0)), small.bytes);
  const at = 2 * MiB + 7;
  assert.deepEqual(await drain(channel().fetch(small.digest, at)), small.bytes.subarray(at));
  // A resume with every byte already there: nothing left, no error.
  assert.equal((await drain(channel().fetch(small.digest, small.bytes.length))).length, 0);
});

test("a caller that goes away mid-blob leaves the peer serving (its read of the file ends quietly)", async () => {
  const big = randomBytes(32 * MiB);
  const digest = await putBlob(join(root, "b", "store"), big);
  for (let i = 0; i < 3; i++) {
    const abort = new AbortController();
    const stream = channel().fetch(digest, 0, abort.signal);
    let got = 0;
    await assert.rejects(
      (async () => {
        for await (const piece of stream) {
          got += (piece as Buffer).length;
          if (got >= 2 * MiB) abort.abort(new Error("caller gone"));
        }
      })(),
      /caller gone/,
    );
  }
  // The peer is still there and serves the whole blob.
  assert.deepEqual(await drain(channel().fetch(digest, 0)), big);
});

test("gRPC is still served on the same port (ALPN h2), beside the byte channel", async () => {
  const client = new PeerClient("b", bAddress, peerCredentials(mesh(), "a"), "a");
  defer(() => client.close());
  assert.equal((await client.status("a")).region, "b");
  assert.deepEqual(await client.blobSizes([small.digest]), [small.bytes.length]);
  // The worker's client reads blobs through the byte channel when given its TLS material.
  const worker = new PeerClient(
    "b",
    bAddress,
    peerCredentials(mesh(), "a"),
    "a",
    {},
    blobChannelTls(mesh(), "a"),
  );
  defer(() => worker.close());
  assert.deepEqual(await drain(worker.fetchBlob(small.digest, MiB)), small.bytes.subarray(MiB));
});

test("without a client certificate, or with one of another CA, the handshake is refused", async (t) => {
  await assert.rejects(rawGet(`/blobs/${small.digest}?from=a`, undefined));
  const foreign = await ensureMeshCerts(tempDir(cleanupStack(t)), ["a"]);
  await assert.rejects(rawGet(`/blobs/${small.digest}?from=a`, foreign.regions.a!));
});

test("a mesh certificate that is not a region's (the front door's) may not fetch blobs", async () => {
  const res = await rawGet(`/blobs/${small.digest}?from=a`, certs.regions["front-door"]!);
  assert.equal(res.status, 403);
  assert.equal(res.headers["grpc-status"], String(grpc.status.PERMISSION_DENIED));
  assert.match(res.body, /front-door may not call FetchBlob/);
});

test("malformed requests get clear refusals, never bytes", async () => {
  const a = certs.regions.a!;
  for (const path of ["/blobs/sha256:nothex?from=a", "/blobs/%E0%A4%A?from=a"]) {
    const bad = await rawGet(path, a);
    assert.equal(bad.status, 400, path);
    assert.equal(bad.headers["meridian-error-code"], "DIGEST_INVALID", path);
  }
  const range = await rawGet(`/blobs/${small.digest}?from=a`, a, { range: "bytes=0-10" });
  assert.equal(range.status, 416);
  assert.equal(range.headers["meridian-error-code"], "RANGE_NOT_SATISFIABLE");
  assert.match(range.body, /only bytes=N- is served/);
  const past = await rawGet(`/blobs/${small.digest}?from=a`, a, {
    range: `bytes=${small.bytes.length + 1}-`,
  });
  assert.equal(past.status, 416);
  assert.equal(past.headers["meridian-error-code"], "RANGE_NOT_SATISFIABLE");
  assert.equal(past.headers["content-range"], `bytes */${small.bytes.length}`);
  assert.equal((await rawGet(`/blobs/${small.digest}?from=a`, a, {}, "POST")).status, 405);
  assert.equal((await rawGet("/elsewhere", a)).status, 404);
  // Through the client, as domain errors.
  await assert.rejects(drain(channel().fetch(`sha256:${"0".repeat(64)}` as Digest, 0)), BlobNotFoundError);
  await assert.rejects(drain(channel().fetch("sha256:nothex" as Digest, 0)), DigestInvalidError);
  // A blob not linked in the repository asked for is not there.
  await assert.rejects(
    drain(channel().fetch(small.digest, 0, undefined, undefined, "other/repo")),
    BlobNotFoundError,
  );
});

test("the link's bandwidth budget paces the byte channel, charged to the caller's certificate; a link without one is not held", async (t) => {
  const cleanup = cleanupStack(t);
  const storeRoot = tempDir(cleanup);
  const bytes = randomBytes(MiB + 256 * 1024);
  const digest = await putBlob(storeRoot, bytes);
  const store = new FsBlobStore(storeRoot);
  await store.init();
  const view = new MetadataView(tempDir(cleanup));
  await view.open();
  cleanup(() => view.close());
  const rate = 512 * 1024;
  const budgets = new LinkBudgets((to) => (to === "a" ? rate : undefined));
  const server = new grpc.Server();
  const blobs = createBlobChannel({ store, view, budgets, regions: ["a", "b", "c"] });
  const listener = await listenPeer(server, blobs, mesh(), "b", "127.0.0.1:0");
  cleanup(async () => {
    await listener.close();
    server.forceShutdown();
  });
  const address = `127.0.0.1:${listener.port}`;
  // The budget is charged to the certificate's region, whatever `from` the caller claims.
  const timed = async (identity: string) => {
    const c = new BlobChannel("b", address, blobChannelTls(mesh(), identity)!, "c");
    cleanup(() => c.close());
    const started = performance.now();
    assert.deepEqual(await drain(c.fetch(digest, 0)), bytes);
    return performance.now() - started;
  };
  // One second's worth goes at once; the other 768 KiB wait for the refill at 512 KiB/s (1.5 s).
  const paced = await timed("a");
  assert.ok(paced >= 1_200, `a's copy took ${Math.round(paced)} ms under a budget of 512 KiB/s`);
  const free = await timed("b");
  assert.ok(free < paced, `b's copy (no budget) took ${Math.round(free)} ms`);
});

test("a copy of corrupt bytes (the source's file no longer matches its digest) is refused at commit", async (t) => {
  const bytes = randomBytes(MiB + 3);
  const digest = await putBlob(join(root, "b", "store"), bytes);
  const encoded = digest.slice("sha256:".length);
  const file = join(root, "b", "store", "blobs", "sha256", encoded.slice(0, 2), encoded);
  const corrupt = Buffer.from(bytes);
  corrupt[1000] = corrupt[1000]! ^ 0xff;
  writeFileSync(file, corrupt);
  const local = new FsBlobStore(tempDir(cleanupStack(t)));
  await local.init();
  const copier = new Copier({ store: local, stateDir: tempDir(cleanupStack(t)), logger: silentLogger });
  const source = new PeerClient(
    "b",
    bAddress,
    peerCredentials(mesh(), "a"),
    "a",
    {},
    blobChannelTls(mesh(), "a"),
  );
  defer(() => source.close());
  await assert.rejects(copier.ensureBlob(digest, [source], AbortSignal.timeout(20_000)), DigestMismatchError);
  assert.equal(await local.stat(digest), undefined);
});

test("a frozen source fails the copy within the idle bound; the copy then resumes from its bytes", async (t) => {
  // A 64 MiB blob in a second region's store, served by a peer process we can freeze.
  const cDir = join(root, "c");
  mkdirSync(cDir, { recursive: true });
  const big = randomBytes(64 * MiB);
  const digest = await putBlob(join(cDir, "store"), big);
  const peer = await spawnPeer(t, "b", cDir);
  const address = peer.grpc;
  const local = new FsBlobStore(tempDir(cleanupStack(t)));
  await local.init();
  const stateDir = tempDir(cleanupStack(t));
  let resumedBytes = 0;
  const copier = new Copier({
    store: local,
    stateDir,
    logger: silentLogger,
    onBytes: (_src, n) => {
      resumedBytes += n;
    },
  });
  const source = new PeerClient(
    "b",
    address,
    peerCredentials(mesh(), "a"),
    "a",
    {},
    blobChannelTls(mesh(), "a"),
  );
  defer(() => source.close());
  // Freeze the source as soon as its first bytes arrived (the consumer reads slowly until then).
  let received = 0;
  let frozenAt = 0;
  const slow = new Copier({
    store: local,
    stateDir,
    logger: silentLogger,
    onBytes: (_src, n) => {
      received += n;
      if (frozenAt === 0 && received >= 8 * MiB) {
        frozenAt = performance.now();
        peer.process.kill("SIGSTOP");
      }
    },
  });
  await assert.rejects(slow.ensureBlob(digest, [source], AbortSignal.timeout(60_000)), PeerUnavailableError);
  const failedAfterMs = performance.now() - frozenAt;
  assert.ok(frozenAt > 0, "the source was frozen mid-blob");
  // The bound is the channel's idle bound (plus the bytes already in flight and a loaded machine).
  assert.ok(
    failedAfterMs < DEADLINES.blobChannelIdle + 10_000,
    `the copy failed ${Math.round(failedAfterMs)} ms after the freeze`,
  );
  peer.process.kill("SIGCONT");
  // Resumed: the partial bytes stay, the next copy asks only for the rest, and the digest verifies.
  await copier.ensureBlob(digest, [source], AbortSignal.timeout(60_000));
  assert.ok(
    resumedBytes > 0 && resumedBytes < big.length,
    `the resumed copy fetched ${resumedBytes} of ${big.length} bytes`,
  );
  assert.equal(await local.stat(digest), big.length);
  assert.deepEqual(await local.readAll(digest), big);
});

async function spawnPeer(
  t: { after(fn: () => Promise<void>): void },
  region: string,
  dataDir: string,
): Promise<{ process: ChildProcess; grpc: string }> {
  const address = `127.0.0.1:${await freePort()}`;
  // Its own mesh file: the same regions, b's address is this process's.
  const file = join(dataDir, "mesh.json");
  const doc = JSON.parse(readFileSync(meshFile, "utf8"));
  doc.regions = doc.regions.map((r: { name: string }) => (r.name === region ? { ...r, grpc: address } : r));
  writeFileSync(file, JSON.stringify(doc));
  const child = spawn(process.execPath, [join(REPO_ROOT, "dist", "control-plane", "peer.js")], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      MERIDIAN_REGION: region,
      MERIDIAN_MESH: file,
      MERIDIAN_DATA_DIR: dataDir,
      MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
    },
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  cleanupStack(t)(async () => {
    child.kill("SIGCONT");
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`peer did not start: ${stderr}`)), 20_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`peer exited with ${code}: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.includes('"listening"')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { process: child, grpc: address };
}
