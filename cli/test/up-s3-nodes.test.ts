/**
 * `meridian up --s3 --nodes 3` (issue 13, items 3 and 7): one region of three
 * registry nodes that share nothing on local disk (each its own data
 * directory: view, locks), its blobs in the S3 server `up` runs and its log
 * in NATS. An upload started on node 1, continued on node 2 and finished on
 * node 3 gives the right blob, which every node serves; a manifest pushed
 * through node 1 is pulled by tag from the others (each view catches up from
 * the log); no blob bytes land under any node's data directory; a node
 * whose data directory is deleted and that is killed comes back (restarted by
 * the supervisor) with its view rebuilt from the log.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseMesh, registriesOf } from "../../protocol/mesh.js";
import { processAlive } from "../../testing/faults.js";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import type { ControlState } from "../supervisor.js";
import { bucketOf } from "../up-s3.js";

const cleanup = cleanupStack({ after });
const MiB = 1 << 20;
let mesh: RunningMesh;
let urls: string[];

/** Every file under `dir` with its size. */
function filesUnder(dir: string): { path: string; size: number }[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const path = join(e.parentPath, e.name);
      return { path, size: statSync(path).size };
    });
}

before(async () => {
  mesh = await startMesh(cleanup, ["a"], undefined, ["--s3", "--nodes", "3"]);
  urls = mesh.regions.get("a")!.nodes!.urls;
});

test("the ready line, mesh.json and the data directories of a three-node region on S3", () => {
  const a = mesh.regions.get("a")!;
  assert.equal(urls.length, 3);
  assert.equal(a.registry, urls[0]);
  assert.equal(new Set(urls).size, 3);
  assert.equal(a.nodes!.pids.length, 3);
  for (const pid of [...a.nodes!.pids, mesh.pids.s3!]) assert.ok(processAlive(pid), `pid ${pid} runs`);
  assert.match(mesh.s3!, /^http:\/\/127\.0\.0\.1:\d+$/);
  const written = JSON.parse(readFileSync(join(mesh.dataDir, "mesh.json"), "utf8"));
  assert.deepEqual(written.regions[0].registry, urls);
  assert.deepEqual(registriesOf(parseMesh(written).regions[0]!), urls);
  const credentials = join(mesh.dataDir, "s3", "credentials.json");
  assert.equal(statSync(credentials).mode & 0o777, 0o600);
  const keys = JSON.parse(readFileSync(credentials, "utf8"));
  assert.equal(typeof keys.accessKeyId, "string");
  assert.equal(typeof keys.secretAccessKey, "string");
  assert.ok(existsSync(join(mesh.dataDir, "s3", "data", bucketOf("a"))), "the region's bucket exists");
  const state = JSON.parse(readFileSync(join(mesh.dataDir, "up.json"), "utf8")) as ControlState;
  assert.equal(state.s3?.pids.s3, mesh.pids.s3);
  assert.deepEqual(state.regions.a!.pids.node, a.nodes!.pids);
  for (const dir of [join(mesh.dataDir, "a", "node-2"), join(mesh.dataDir, "a", "node-3")])
    assert.ok(existsSync(join(dir, "view")), `${dir} holds its node's own view`);
});

test("an upload started on node 1, continued on node 2 and finished on node 3 is the right blob on every node; a manifest pushed on node 1 is pulled by tag from the others", async () => {
  const [n1, n2, n3] = urls as [string, string, string];
  const repo = "stateless/app";
  const blob = randomBytes(6 * MiB + 4321);
  const digest = sha256(blob);
  let res = await fetch(`${n1}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  assert.equal(res.status, 202);
  let location = res.headers.get("location")!;
  // On node 2: a part-sized chunk (≥ 5 MiB), then a small one.
  const cut = 5 * MiB + 17;
  for (const [start, end] of [
    [0, cut],
    [cut, blob.length - 1000],
  ] as const) {
    res = await fetch(new URL(location, n2), {
      method: "PATCH",
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `${start}-${end - 1}`,
      },
      body: blob.subarray(start, end),
    });
    assert.equal(res.status, 202, await res.text());
    location = res.headers.get("location")!;
  }
  // On node 3: the last bytes with the closing PUT.
  const put = new URL(location, n3);
  put.searchParams.set("digest", digest);
  res = await fetch(put, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: blob.subarray(blob.length - 1000),
  });
  assert.equal(res.status, 201, await res.text());
  // Node 3 committed it and serves it at once; the others once their views have applied its event.
  const served = async (url: string) => {
    const got = await fetch(`${url}/v2/${repo}/blobs/${digest}`);
    return got.status === 200 && sha256(Buffer.from(await got.arrayBuffer())) === digest;
  };
  assert.ok(await served(n3), "the node that committed the blob serves it at once");
  for (const url of [n1, n2]) await eventually(() => served(url), 15_000);
  const config = await new OciClient(n1).pushBlob(repo, Buffer.from('{"os":"linux"}'), OCI_CONFIG);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [{ mediaType: OCI_LAYER, digest, size: blob.length }],
  };
  const pushed = await new OciClient(n1).pushManifest(repo, "v1", manifest);
  for (const url of [n2, n3]) {
    await eventually(
      async () => (await fetch(`${url}/v2/${repo}/manifests/v1`, { method: "HEAD" })).ok,
      15_000,
    );
    const got = await fetch(`${url}/v2/${repo}/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
    assert.equal(got.status, 200);
    assert.equal(sha256(Buffer.from(await got.arrayBuffer())), pushed.digest, url);
  }
  // The bytes are in the bucket, not on the nodes' disks: no file under the
  // region's directory (node 1's data directory, holding node-2/ and node-3/) is as large.
  const region = filesUnder(join(mesh.dataDir, "a"));
  const large = region.filter((f) => f.size >= blob.length);
  assert.deepEqual(large, [], "no node keeps the blob's bytes");
  assert.ok(
    filesUnder(join(mesh.dataDir, "s3", "data")).some((f) => f.size === blob.length),
    "the S3 server holds the blob",
  );
});

test("a node whose data directory is deleted and that is killed is restarted and rebuilds its view from the log", async () => {
  const repo = "stateless/rebuilt";
  const image = await new OciClient(urls[0]!).pushRandomImage(repo, "v1");
  const dir = join(mesh.dataDir, "a", "node-3");
  const old = mesh.regions.get("a")!.nodes!.pids[2]!;
  await eventually(
    async () => (await fetch(`${urls[2]}/v2/${repo}/manifests/v1`, { method: "HEAD" })).ok,
    15_000,
  );
  rmSync(dir, { recursive: true, force: true });
  process.kill(old, "SIGKILL");
  const upJson = join(mesh.dataDir, "up.json");
  await eventually(() => {
    const state = JSON.parse(readFileSync(upJson, "utf8")) as ControlState;
    const pid = (state.regions.a!.pids.node as (number | null)[])[2];
    return typeof pid === "number" && pid !== old;
  }, 30_000);
  await eventually(async () => {
    const res = await fetch(`${urls[2]}/v2/${repo}/manifests/v1`, {
      headers: { accept: OCI_MANIFEST },
    }).catch(() => undefined);
    return res?.status === 200 && sha256(Buffer.from(await res.arrayBuffer())) === image.digest;
  }, 30_000);
  assert.ok(existsSync(join(dir, "view")), "the node made a new view in its data directory");
  const layer = await fetch(`${urls[2]}/v2/${repo}/blobs/${image.layers[0]!.digest}`);
  assert.equal(layer.status, 200);
  assert.equal(sha256(Buffer.from(await layer.arrayBuffer())), image.layers[0]!.digest);
});
