/**
 * Nodes, peers and workers open the blob store `storage.type` names (one
 * factory, node/data/open-blob-store.ts). Two node processes of one region
 * on one s3rver bucket, with separate data directories and nothing shared on
 * disk: an upload started on one, continued on the other and finished on the
 * first gives the right blob, which either serves (ranges too); skopeo pushes
 * an image through one and pulls it through the other.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { loadPeerConfig } from "../../control-plane/config.js";
import { loadWorkerConfig } from "../../replication/config.js";
import {
  cleanupStack,
  eventually,
  freePort,
  type MeridianProcess,
  spawnMeridian,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import {
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_MANIFEST,
  OciClient,
  sha256,
} from "../../testing/oci-client.js";
import { S3RVER_CREDENTIALS, startTestS3 } from "../../testing/s3.js";
import { ConfigError, loadNodeConfig } from "../config.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const BUCKET = "meridian-a";
const MiB = 1 << 20;
let nodes: string[] = [];
let dataDirs: string[] = [];
let work: string;
let redirectNode: string;
let authNode: string;
let spawnS3Node: (dataDir: string) => Promise<MeridianProcess>;
const ADMIN_PASSWORD = "s3-admin-secret";
let s3Endpoint: string;

before(async () => {
  const s3 = await startTestS3([BUCKET]);
  cleanup(() => s3.stop());
  const nats = await startTestNats(cleanup);
  work = tempDir(cleanup);
  const credentials = join(work, "s3-credentials.json");
  writeFileSync(credentials, JSON.stringify(S3RVER_CREDENTIALS));
  spawnS3Node = async (dataDir: string) =>
    spawnMeridian(cleanup, "node/server.js", {
      MERIDIAN_REGION: "a",
      MERIDIAN_DATA_DIR: dataDir,
      MERIDIAN_LISTEN_PORT: String(await freePort()),
      MERIDIAN_NATS_SERVERS: nats.url,
      MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
      MERIDIAN_STORAGE_TYPE: "s3",
      MERIDIAN_S3_BUCKET: BUCKET,
      MERIDIAN_S3_PREFIX: "registry/",
      MERIDIAN_S3_ENDPOINT: s3.endpoint,
      MERIDIAN_S3_FORCE_PATH_STYLE: "true",
      MERIDIAN_S3_CREDENTIALS_FILE: credentials,
    });
  const started = await Promise.all(
    [0, 1].map(async (i) => {
      const dataDir = join(work, `node-${i}`);
      const node = await spawnS3Node(dataDir);
      return { url: node.info.registry!, dataDir };
    }),
  );
  nodes = started.map((n) => n.url);
  dataDirs = started.map((n) => n.dataDir);
  s3Endpoint = s3.endpoint;
  // A third node of the region, in this process, that redirects blob GETs to the bucket.
  const node = await startTestNode(cleanup, {
    nats: nats.url,
    region: "a",
    storage: {
      type: "s3",
      s3: {
        bucket: BUCKET,
        prefix: "registry/",
        endpoint: s3.endpoint,
        forcePathStyle: true,
        credentialsFile: credentials,
        redirect: true,
      },
    },
  });
  redirectNode = node.url;
  // And one region "b" node with auth on, redirecting too (its own prefix and log).
  const passwordFile = join(work, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`);
  const authNats = await startTestNats(cleanup);
  authNode = (
    await startTestNode(cleanup, {
      nats: authNats.url,
      region: "b",
      auth: { enabled: true, adminPasswordFile: passwordFile, loginFailures: 1000 },
      storage: {
        type: "s3",
        s3: {
          bucket: BUCKET,
          prefix: "auth/",
          endpoint: s3.endpoint,
          forcePathStyle: true,
          credentialsFile: credentials,
          redirect: true,
        },
      },
    })
  ).url;
});

test("every process's loader reads storage.type and storage.s3, and s3 without a bucket is an error", () => {
  const mesh = join(work, "mesh.json");
  writeFileSync(
    mesh,
    JSON.stringify({
      insecure: true,
      regions: [
        { name: "a", registry: "http://127.0.0.1:1", grpc: "127.0.0.1:2", nats: "nats://127.0.0.1:3" },
      ],
    }),
  );
  const env = {
    MERIDIAN_REGION: "a",
    MERIDIAN_MESH: mesh,
    MERIDIAN_STORAGE_TYPE: "s3",
    MERIDIAN_S3_BUCKET: "bucket-1",
    MERIDIAN_S3_ENDPOINT: "http://127.0.0.1:9000",
    MERIDIAN_S3_FORCE_PATH_STYLE: "true",
  };
  const expected = {
    type: "s3",
    bucket: "bucket-1",
    endpoint: "http://127.0.0.1:9000",
    forcePathStyle: true,
  };
  for (const storage of [
    loadNodeConfig({ env }).storage,
    loadPeerConfig({ env }).storage,
    loadWorkerConfig({ env }).storage,
  ]) {
    const { type, s3 } = storage;
    assert.deepEqual(
      { type, bucket: s3?.bucket, endpoint: s3?.endpoint, forcePathStyle: s3?.forcePathStyle },
      expected,
    );
  }
  assert.equal(loadNodeConfig({ env: {} }).storage.type, "fs", "the default stays the filesystem");
  const { MERIDIAN_S3_BUCKET: _, ...noBucket } = env;
  for (const load of [loadNodeConfig, loadPeerConfig, loadWorkerConfig]) {
    assert.throws(
      () => load({ env: noBucket }),
      (err: unknown) => err instanceof ConfigError && /storage\.s3\.bucket/.test(err.message),
    );
  }
});

test("disk metrics: the view's filesystem only, a bucket has no size to read (node/disk-metrics.ts)", async () => {
  const text = await (await fetch(`${nodes[0]}/metrics`)).text();
  const volumes = (name: string) =>
    [...text.matchAll(new RegExp(`^${name}\\{[^}]*volume="(\\w+)"`, "gm"))].map((m) => m[1]);
  assert.deepEqual(volumes("meridian_node_filesystem_avail_bytes"), ["view"]);
  assert.deepEqual(volumes("meridian_node_filesystem_size_bytes"), ["view"]);
});

test("an upload started on one node, continued on the other and finished on the first", async () => {
  const [a, b] = nodes as [string, string];
  const repo = "team/app";
  // 7 MiB in two PATCHes: the first (6 MiB) fills a 5 MiB part, the second one lands in the tail.
  const blob = randomBytes(7 * MiB);
  const digest = sha256(blob);
  let res = await fetch(`${a}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  assert.equal(res.status, 202);
  let location = res.headers.get("location")!;
  const pieces = [blob.subarray(0, 6 * MiB), blob.subarray(6 * MiB)];
  let offset = 0;
  for (const [i, piece] of pieces.entries()) {
    res = await fetch(new URL(location, i === 0 ? b : a), {
      method: "PATCH",
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `${offset}-${offset + piece.length - 1}`,
      },
      body: piece,
    });
    assert.equal(res.status, 202, await res.text());
    offset += piece.length;
    location = res.headers.get("location")!;
  }
  const put = new URL(location, b);
  put.searchParams.set("digest", digest);
  res = await fetch(put, { method: "PUT" });
  assert.equal(res.status, 201, await res.text());
  for (const node of [a, b]) {
    await eventually(
      async () => (await fetch(`${node}/v2/${repo}/blobs/${digest}`, { method: "HEAD" })).ok,
      10_000,
    );
    const got = Buffer.from(await (await fetch(`${node}/v2/${repo}/blobs/${digest}`)).arrayBuffer());
    assert.equal(sha256(got), digest);
    const ranged = await fetch(`${node}/v2/${repo}/blobs/${digest}`, {
      headers: { range: "bytes=5242870-5242889" },
    });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(blob.subarray(5_242_870, 5_242_890)));
  }
  // Nothing of the blob on either node's disk: the bytes are in the bucket only.
  for (const dir of dataDirs) {
    const store = join(dir, "store");
    const files = existsSync(store) ? readdirSync(store, { recursive: true }) : [];
    assert.ok(!files.some((f) => String(f).includes(digest.slice(7))), `${store}: ${files.join()}`);
  }
});

test("skopeo pushes an image through one node and pulls it through the other", async () => {
  const [a, b] = nodes.map((u) => u.replace(/^http:\/\//, "")) as [string, string];
  const layout = join(work, "layout");
  const blobs = join(layout, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  const add = (bytes: Buffer, mediaType: string) => {
    writeFileSync(join(blobs, sha256(bytes).slice(7)), bytes);
    return { mediaType, digest: sha256(bytes), size: bytes.length };
  };
  const config = add(
    Buffer.from(
      JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
    ),
    OCI_CONFIG,
  );
  // Real gzip'd tars (skopeo rewrites a manifest whose layers do not decompress).
  const layer = async (name: string, size: number) => {
    const src = join(work, `src-${name}`);
    mkdirSync(src);
    writeFileSync(join(src, name), randomBytes(size));
    await run("tar", ["-czf", `${src}.tgz`, "-C", src, "."]);
    return add(readFileSync(`${src}.tgz`), OCI_LAYER);
  };
  const layers = [await layer("big", 6 * MiB + 123), await layer("small", 40_000)];
  const manifest = add(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers })),
    OCI_MANIFEST,
  );
  writeFileSync(
    join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": "v1" } }],
    }),
  );
  await run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:v1`, `docker://${a}/s3/app:v1`]);
  const out = join(work, "out");
  await eventually(
    async () => (await fetch(`http://${b}/v2/s3/app/manifests/v1`, { method: "HEAD" })).ok,
    10_000,
  );
  await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${b}/s3/app:v1`, `oci:${out}:v1`]);
  const outIndex = JSON.parse(readFileSync(join(out, "index.json"), "utf8"));
  assert.equal(outIndex.manifests[0].digest, manifest.digest);
  for (const d of [config, ...layers]) {
    assert.equal(sha256(readFileSync(join(out, "blobs", "sha256", d.digest.slice(7)))), d.digest);
  }
});

test("redirect: a blob GET is a 307 to a presigned URL of at most a minute; HEAD and unknown blobs stay local", async () => {
  const [a] = nodes as [string];
  const blob = randomBytes(100_000);
  const digest = sha256(blob);
  const res = await fetch(`${a}/v2/team/redirect/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: blob,
  });
  assert.equal(res.status, 201, await res.text());
  const url = `${redirectNode}/v2/team/redirect/blobs/${digest}`;
  await eventually(async () => (await fetch(url, { method: "HEAD" })).ok, 10_000);
  const head = await fetch(url, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), String(blob.length));
  const get = await fetch(url, { redirect: "manual" });
  assert.equal(get.status, 307);
  const location = new URL(get.headers.get("location")!);
  assert.equal(location.origin, s3Endpoint);
  assert.equal(location.searchParams.get("X-Amz-Expires"), "60");
  assert.ok(location.searchParams.get("X-Amz-Signature"), "signed, not carrying a secret");
  const direct = await fetch(location);
  assert.equal(direct.status, 200);
  assert.equal(sha256(Buffer.from(await direct.arrayBuffer())), digest);
  // Followed by a client, with a Range: the bucket answers the range.
  const ranged = await fetch(url, { headers: { range: "bytes=10-19" } });
  assert.equal(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(blob.subarray(10, 20)));
  // Not linked into this repository: the view says no, no URL is handed out.
  const other = await fetch(`${redirectNode}/v2/team/other/blobs/${digest}`, { redirect: "manual" });
  assert.equal(other.status, 404);
});

test("redirect with auth: pulls need credentials; the 307 URL carries none of them, and a client following it with its credentials gets the bytes", async () => {
  const basic = `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString("base64")}`;
  const admin = new OciClient(authNode, basic);
  const blob = randomBytes(50_000);
  const { digest } = await admin.pushBlob("team/private", blob);
  const path = `/v2/team/private/blobs/${digest}`;
  assert.equal((await fetch(`${authNode}${path}`, { redirect: "manual" })).status, 401);
  const get = await admin.fetch(path, { redirect: "manual" });
  assert.equal(get.status, 307);
  const location = get.headers.get("location")!;
  for (const secret of [ADMIN_PASSWORD, basic.slice(6), "Bearer", "token"]) {
    assert.ok(!location.includes(secret), `the URL carries ${secret}`);
  }
  assert.equal(new URL(location).searchParams.get("X-Amz-Expires"), "60");
  // It names this one object (s3rver does not check presigned signatures, so
  // refusing a tampered URL is left to real S3 services).
  assert.ok(
    new URL(location).pathname.endsWith(`/auth/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`),
  );
  // A client that follows the redirect with its credentials gets the bytes (they are not forwarded cross-origin).
  const followed = await admin.fetch(path);
  assert.equal(followed.status, 200);
  assert.equal(sha256(Buffer.from(await followed.arrayBuffer())), digest);
});

test("an upload survives kill -9 of the node that held it: another node continues and commits it", async () => {
  const doomed = await spawnS3Node(join(work, "node-doomed"));
  const url = doomed.info.registry!;
  const [, b] = nodes as [string, string];
  const blob = randomBytes(6 * MiB + 321);
  const digest = sha256(blob);
  let res = await fetch(`${url}/v2/team/crash/blobs/uploads/`, { method: "POST" });
  assert.equal(res.status, 202);
  const first = blob.subarray(0, 5 * MiB + 100);
  res = await fetch(new URL(res.headers.get("location")!, url), {
    method: "PATCH",
    headers: { "content-type": "application/octet-stream", "content-range": `0-${first.length - 1}` },
    body: first,
  });
  assert.equal(res.status, 202);
  const location = res.headers.get("location")!;
  await doomed.kill();
  // The client asks another node where the upload stands, and goes on from there.
  const status = await fetch(new URL(location, b));
  assert.equal(status.status, 204);
  assert.equal(status.headers.get("range"), `0-${first.length - 1}`);
  res = await fetch(new URL(location, b), {
    method: "PATCH",
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${first.length}-${blob.length - 1}`,
    },
    body: blob.subarray(first.length),
  });
  assert.equal(res.status, 202, await res.text());
  const put = new URL(res.headers.get("location")!, b);
  put.searchParams.set("digest", digest);
  res = await fetch(put, { method: "PUT" });
  assert.equal(res.status, 201, await res.text());
  const got = Buffer.from(await (await fetch(`${b}/v2/team/crash/blobs/${digest}`)).arrayBuffer());
  assert.equal(sha256(got), digest);
});
