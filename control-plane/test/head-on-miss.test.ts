/**
 * HEAD on miss against real processes (issue 11, finding 8): regions a and b
 * (nats-server, node, peer, worker each), b's replication cut off by a
 * partition so that what is pushed to a never reaches b by replication.
 * containerd (and so kubelet) resolves a tag with HEAD before its GET: b's
 * node must answer a HEAD from a's metadata (through b's peer's Locate) and
 * the GET must then succeed. A pushing client that heard "present" from such
 * a HEAD skips the upload; the manifest it pushes must still be accepted.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type After, cleanupStack, eventually } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { errorCode, OCI_INDEX, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

let mesh: ProxiedMesh;
let cleanup: After;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

/**
 * Wait until b can locate a's new manifest through the mesh: a's peer answers
 * Locate from its own view of a's log, a moment behind a's node (CI saw a 404
 * right after a push). Once it can, every answer the tests check must hold.
 */
async function meshSees(repo: string, digest: string): Promise<void> {
  await eventually(
    async () =>
      (
        await client("b").fetch(`/v2/${repo}/manifests/${digest}`, {
          method: "HEAD",
          headers: { accept: OCI_MANIFEST },
        })
      ).status === 200,
    10_000,
    50,
  );
}

describe("HEAD on miss", () => {
  cleanup = cleanupStack({ after });

  before(async () => {
    mesh = await startProxiedMesh(cleanup, ["a", "b"], { node: { MERIDIAN_FETCH_ON_MISS: "proxy" } });
    mesh.partition("b");
    // b's peer locates through its heartbeats' view of a: wait until it has one (a GET on miss works).
    const warm = await client("a").pushRandomImage("head/warm", "v1");
    await eventually(
      async () => (await client("b").fetch(`/v2/head/warm/manifests/${warm.digest}`)).ok,
      30_000,
      100,
    );
  });

  test("HEAD of a manifest by tag and by digest, and of a blob, answers from a; GET then succeeds", async () => {
    const image = await client("a").pushRandomImage("head/app", "v1");
    const bytes = Buffer.from(await (await client("a").fetch("/v2/head/app/manifests/v1")).arrayBuffer());
    await meshSees("head/app", image.digest);
    for (const ref of ["v1", image.digest]) {
      const head = await client("b").fetch(`/v2/head/app/manifests/${ref}`, {
        method: "HEAD",
        headers: { accept: OCI_MANIFEST },
      });
      assert.equal(head.status, 200, ref);
      assert.equal(head.headers.get("docker-content-digest"), image.digest);
      assert.equal(head.headers.get("content-type"), OCI_MANIFEST);
      assert.equal(head.headers.get("content-length"), String(bytes.byteLength));
      assert.equal(head.headers.get("meridian-fetched-from"), "a");
      const get = await client("b").fetch(`/v2/head/app/manifests/${ref}`);
      assert.equal(get.status, 200, ref);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), bytes);
    }
    const layer = image.layers[0]!;
    const head = await client("b").fetch(`/v2/head/app/blobs/${layer.digest}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("docker-content-digest"), layer.digest);
    assert.equal(head.headers.get("content-length"), String(layer.size));
    assert.equal(head.headers.get("content-type"), "application/octet-stream");
    const get = await client("b").fetch(`/v2/head/app/blobs/${layer.digest}`);
    assert.equal(get.status, 200);
    assert.equal(sha256(Buffer.from(await get.arrayBuffer())), layer.digest);
  });

  test("a HEAD of a blob copies no bytes into b", async () => {
    const image = await client("a").pushRandomImage("head/cold", "v1", 1, 64 << 10);
    await meshSees("head/cold", image.digest);
    const layer = image.layers[0]!;
    const head = await client("b").fetch(`/v2/head/cold/blobs/${layer.digest}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    // b's store still lacks the bytes: another repository of b cannot mount them.
    const mount = await client("b").fetch(
      `/v2/head/other/blobs/uploads/?mount=${layer.digest}&from=head/cold`,
      {
        method: "POST",
      },
    );
    assert.equal(mount.status, 202, "a mount from content b does not hold starts an upload instead");
  });

  test("content in no region (or in another repository) is still 404 MANIFEST_UNKNOWN / BLOB_UNKNOWN", async () => {
    const image = await client("a").pushRandomImage("head/only", "v1");
    const cases: [string, string][] = [
      ["/v2/head/only/manifests/nope", "MANIFEST_UNKNOWN"],
      [`/v2/head/only/manifests/sha256:${"0".repeat(64)}`, "MANIFEST_UNKNOWN"],
      [`/v2/head/only/blobs/sha256:${"0".repeat(64)}`, "BLOB_UNKNOWN"],
      [`/v2/head/elsewhere/blobs/${image.layers[0]!.digest}`, "BLOB_UNKNOWN"],
    ];
    for (const [path, code] of cases) {
      const head = await client("b").fetch(path, { method: "HEAD" });
      assert.equal(head.status, 404, path);
      // A HEAD has no body: the code is checked on the GET of the same path.
      const get = await client("b").fetch(path);
      assert.equal(get.status, 404, path);
      assert.equal(await errorCode(get), code, path);
    }
  });

  test("a push that skipped uploads because HEAD answered from a is accepted, index and child included", async () => {
    const image = await client("a").pushRandomImage("head/promote", "v1");
    await meshSees("head/promote", image.digest);
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: image.digest,
          size: Buffer.byteLength(JSON.stringify(image.manifest)),
          platform: { architecture: "amd64", os: "linux" },
        },
      ],
    };
    // What a pushing client does: HEAD every blob and the child, upload only what is missing (nothing here).
    for (const d of [image.config.digest, ...image.layers.map((l) => l.digest)]) {
      assert.equal((await client("b").fetch(`/v2/head/promote/blobs/${d}`, { method: "HEAD" })).status, 200);
    }
    assert.equal(
      (await client("b").fetch(`/v2/head/promote/manifests/${image.digest}`, { method: "HEAD" })).status,
      200,
    );
    const pushed = await client("b").pushManifest("head/promote", "multi", index, OCI_INDEX);
    assert.equal(pushed.response.status, 201);
    // b now holds all of it itself (its own tag list, its own blobs), with the partition still on.
    const tags = await client("b").fetch("/v2/head/promote/tags/list");
    assert.equal(tags.status, 200);
    assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, ["multi"]);
    const child = await client("b").fetch(`/v2/head/promote/manifests/${image.digest}`);
    assert.equal(child.status, 200);
    assert.equal(child.headers.get("meridian-fetched-from"), null);
    for (const d of [image.config.digest, ...image.layers.map((l) => l.digest)]) {
      const blob = await client("b").fetch(`/v2/head/promote/blobs/${d}`);
      assert.equal(blob.status, 200);
      assert.equal(blob.headers.get("meridian-fetched-from"), null);
      assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), d);
    }
  });
});
