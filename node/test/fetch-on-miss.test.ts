/**
 * Fetch on miss against real processes: regions a and b (nats-server, node,
 * peer, worker each), b's replication cut off by a partition so that what is
 * pushed to a never reaches b by replication; b's node asks its peer, which
 * fetches from a. A second node of region b runs in redirect mode.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type After, cleanupStack, eventually, spawnMeridian } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { errorCode, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { freePort } from "../../testing/ports.js";

let mesh: ProxiedMesh;
let cleanup: After;
let redirecting: OciClient;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

/** A counter's value from a node's /metrics (0 when absent). */
async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

describe("fetch on miss", () => {
  cleanup = cleanupStack({ after });

  before(async () => {
    mesh = await startProxiedMesh(cleanup, ["a", "b"], { node: { MERIDIAN_FETCH_ON_MISS: "proxy" } });
    // Region b's worker no longer reaches a: nothing pushed to a from now on is replicated to b.
    mesh.partition("b");
    const b = mesh.regions.get("b")!;
    const port = await freePort();
    await spawnMeridian(cleanup, "node/server.js", {
      MERIDIAN_REGION: "b",
      MERIDIAN_DATA_DIR: b.dir,
      MERIDIAN_VIEW_DIR: join(b.dir, "view-redirect"),
      MERIDIAN_MESH: mesh.meshFile,
      MERIDIAN_NATS_SERVERS: b.nats.url,
      MERIDIAN_LISTEN_PORT: String(port),
      MERIDIAN_STORAGE_FSYNC: "false",
      MERIDIAN_FETCH_ON_MISS: "redirect",
    });
    redirecting = new OciClient(`http://127.0.0.1:${port}`);
  });

  test("a manifest b lacks is relayed from a by tag and by digest; only-if-cached answers what b holds", async () => {
    const pushed = await client("a").pushRandomImage("miss/app", "v1");
    const sent = await client("a").fetch("/v2/miss/app/manifests/v1");
    const bytes = Buffer.from(await sent.arrayBuffer());
    for (const ref of ["v1", pushed.digest]) {
      const res = await client("b").fetch(`/v2/miss/app/manifests/${ref}`);
      assert.equal(res.status, 200, ref);
      assert.equal(res.headers.get("meridian-fetched-from"), "a");
      assert.equal(res.headers.get("docker-content-digest"), pushed.digest);
      assert.equal(res.headers.get("content-type"), OCI_MANIFEST);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    }
    // Cache-Control: only-if-cached asks what b holds itself (control-plane/test/head-on-miss.test.ts: a plain HEAD answers from a).
    const head = await client("b").fetch("/v2/miss/app/manifests/v1", {
      method: "HEAD",
      headers: { "cache-control": "only-if-cached" },
    });
    assert.equal(head.status, 404);
    // Nothing was replicated: b's own view still lacks it (only fetching made it answer).
    const tags = await client("b").fetch("/v2/miss/app/tags/list");
    assert.equal(tags.status, 404);
  });

  test("a blob is relayed and verified, and six clients asking at once share one fetch", async () => {
    const layer = randomBytes(6 << 20);
    const desc = await client("a").pushBlob("miss/big", layer);
    const b = mesh.regions.get("b")!.registry;
    const before = await metric(b, "meridian_node_fetch_on_miss_bytes_total");
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => client("b").fetch(`/v2/miss/big/blobs/${desc.digest}`)),
    );
    for (const res of responses) {
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("docker-content-digest"), desc.digest);
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), desc.digest);
    }
    assert.equal(
      await metric(b, "meridian_node_fetch_on_miss_requests_total", { kind: "blob", result: "proxied" }),
      1,
    );
    assert.equal(
      await metric(b, "meridian_node_fetch_on_miss_requests_total", { kind: "blob", result: "shared" }),
      5,
    );
    assert.equal((await metric(b, "meridian_node_fetch_on_miss_bytes_total")) - before, layer.byteLength);
    // Later requests, ranges included, are served from the bytes kept in b's store.
    const ranged = await client("b").fetch(`/v2/miss/big/blobs/${desc.digest}`, {
      headers: { range: "bytes=1000-1999" },
    });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get("content-range"), `bytes 1000-1999/${layer.byteLength}`);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), layer.subarray(1000, 2000));
    assert.equal((await metric(b, "meridian_node_fetch_on_miss_bytes_total")) - before, layer.byteLength);
  });

  test("a push to b of an image a holds, every blob uploaded anyway, is accepted", async () => {
    const image = await client("a").pushRandomImage("miss/promote", "v1");
    const blob = image.layers[0]!.digest;
    // A client that uploads without asking first (HEAD now answers from a: head-on-miss.test.ts).
    const bClient = client("b");
    const layerBytes = Buffer.from(
      await (await client("a").fetch(`/v2/miss/promote/blobs/${blob}`)).arrayBuffer(),
    );
    const configBytes = Buffer.from(
      await (await client("a").fetch(`/v2/miss/promote/blobs/${image.config.digest}`)).arrayBuffer(),
    );
    await bClient.pushBlob("miss/promote", configBytes);
    for (const layer of image.layers) {
      const bytes = Buffer.from(
        await (await client("a").fetch(`/v2/miss/promote/blobs/${layer.digest}`)).arrayBuffer(),
      );
      await bClient.pushBlob("miss/promote", bytes);
    }
    assert.equal(sha256(layerBytes), blob);
    const put = await bClient.pushManifest("miss/promote", "v1", image.manifest);
    assert.equal(put.digest, image.digest);
  });

  test("absence stays absence: content in no region, or in another repository, is 404", async () => {
    const desc = await client("a").pushBlob("miss/owner", randomBytes(512));
    const elsewhere = await client("b").fetch(`/v2/miss/other/blobs/${desc.digest}`);
    assert.equal(elsewhere.status, 404);
    assert.equal(await errorCode(elsewhere), "BLOB_UNKNOWN");
    const nowhere = await client("b").fetch(`/v2/miss/owner/blobs/${sha256("never pushed")}`);
    assert.equal(nowhere.status, 404);
    assert.equal(await errorCode(nowhere), "BLOB_UNKNOWN");
    const noTag = await client("b").fetch("/v2/miss/owner/manifests/never");
    assert.equal(noTag.status, 404);
    assert.equal(await errorCode(noTag), "MANIFEST_UNKNOWN");
  });

  test("in redirect mode the client is sent to the region holding it", async () => {
    const pushed = await client("a").pushRandomImage("miss/redirect", "v1");
    const a = mesh.regions.get("a")!.registry;
    const manifest = await redirecting.fetch("/v2/miss/redirect/manifests/v1", { redirect: "manual" });
    assert.equal(manifest.status, 307);
    assert.equal(manifest.headers.get("location"), `${a}/v2/miss/redirect/manifests/v1`);
    const layer = (pushed.layers[0] as { digest: string }).digest;
    const blob = await redirecting.fetch(`/v2/miss/redirect/blobs/${layer}`, { redirect: "manual" });
    assert.equal(blob.status, 307);
    assert.equal(blob.headers.get("location"), `${a}/v2/miss/redirect/blobs/${layer}`);
    // Followed, the redirect yields the content.
    const followed = await redirecting.fetch(`/v2/miss/redirect/blobs/${layer}`);
    assert.equal(followed.status, 200);
    assert.equal(sha256(Buffer.from(await followed.arrayBuffer())), layer);
  });

  test("every write answers with its Meridian-Seq token, later writes with later positions", async () => {
    const c = client("a");
    const desc = await c.pushBlob("miss/seq", randomBytes(64));
    const config = await c.pushBlob("miss/seq", Buffer.from("{}"));
    const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [desc] };
    const put = await c.pushManifest("miss/seq", "v1", manifest);
    const token = put.response.headers.get("meridian-seq") ?? "";
    assert.match(token, /^a:\d+$/);
    const del = await c.fetch("/v2/miss/seq/manifests/v1", { method: "DELETE" });
    assert.equal(del.status, 202);
    const later = del.headers.get("meridian-seq") ?? "";
    assert.match(later, /^a:\d+$/);
    assert.ok(Number(later.slice(2)) > Number(token.slice(2)));
  });

  test("after the partition heals, replication brings what was fetched and b answers from its own view", async () => {
    mesh.heal("b");
    await eventually(async () => {
      const res = await client("b").fetch("/v2/miss/app/tags/list");
      return res.status === 200;
    }, 30_000);
  });
});
