/**
 * `meridian up --nodes 2` without --s3 (issue 13, item 3; cli/up.ts's
 * header): the nodes keep their own data directories (view, locks) and
 * share the region's filesystem store, as the region's peer and worker do.
 * An upload started on node 1 and finished on node 2 is one blob, in the
 * region's store only, served by both; a manifest pushed on node 2 is pulled
 * by tag from node 1.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

test("up --nodes 2 on the filesystem store: two nodes, their own views, one shared store", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["a"], undefined, ["--nodes", "2"]);
  const a = mesh.regions.get("a")!;
  assert.equal(mesh.s3, undefined);
  const [n1, n2] = a.nodes!.urls as [string, string];
  assert.equal(a.nodes!.pids.length, 2);
  const repo = "fsnodes/app";
  const blob = randomBytes(300_000);
  const digest = sha256(blob);
  let res = await fetch(`${n1}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  assert.equal(res.status, 202);
  res = await fetch(new URL(res.headers.get("location")!, n1), {
    method: "PATCH",
    headers: { "content-type": "application/octet-stream", "content-range": "0-99999" },
    body: blob.subarray(0, 100_000),
  });
  assert.equal(res.status, 202);
  const put = new URL(res.headers.get("location")!, n2);
  put.searchParams.set("digest", digest);
  res = await fetch(put, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: blob.subarray(100_000),
  });
  assert.equal(res.status, 201, await res.text());
  const encoded = digest.slice("sha256:".length);
  assert.ok(
    existsSync(join(mesh.dataDir, "a", "store", "blobs", "sha256", encoded.slice(0, 2), encoded)),
    "the blob is in the region's store",
  );
  const node2 = join(mesh.dataDir, "a", "node-2");
  assert.ok(existsSync(join(node2, "view")), "node 2 has its own view");
  const node2Files = readdirSync(node2, { recursive: true }).map(String);
  assert.ok(!node2Files.some((f) => f.includes(encoded)), "node 2 keeps no store of its own");
  // Node 2 committed it; node 1 serves it once its view has applied the blob's event from the log.
  const served = async (url: string) => {
    const got = await fetch(`${url}/v2/${repo}/blobs/${digest}`);
    return got.status === 200 && sha256(Buffer.from(await got.arrayBuffer())) === digest;
  };
  assert.ok(await served(n2), "the node that committed the blob serves it at once");
  await eventually(() => served(n1), 15_000);
  const config = await new OciClient(n2).pushBlob(repo, Buffer.from('{"os":"linux"}'), OCI_CONFIG);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [{ mediaType: OCI_LAYER, digest, size: blob.length }],
  };
  const pushed = await new OciClient(n2).pushManifest(repo, "v1", manifest);
  await eventually(async () => {
    const got = await fetch(`${n1}/v2/${repo}/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
    return got.status === 200 && sha256(Buffer.from(await got.arrayBuffer())) === pushed.digest;
  }, 15_000);
});

test("up refuses --nodes outside 1..5 before starting anything", async (t) => {
  const after = cleanupStack(t);
  for (const n of ["0", "6", "two"]) {
    const dir = tempDir(after);
    const r = await runCli(["up", "--regions", "a", "--nodes", n, "--data", dir], 20_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--nodes takes 1 to 5/);
    assert.deepEqual(readdirSync(dir), [], "nothing written");
  }
});
