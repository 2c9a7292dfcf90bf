/**
 * `meridian rebuild` against real processes: a node process takes a history of
 * pushes, tag moves and deletes, a referrer and a blob delete; after it stops,
 * the view rebuilt from the JetStream stream by the CLI is key-for-key the view
 * the node built live, and a restarted node serves the same answers from it.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, runCli, spawnNodeProcess, startTestNats, tempDir } from "../../testing/harness.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { MetadataView } from "../data/view.js";

const EMPTY_CONFIG = "application/vnd.oci.empty.v1+json";
const SBOM = "application/vnd.example.sbom.v1";

async function dumpView(dir: string): Promise<Array<[string, string]>> {
  const view = new MetadataView(dir);
  await view.open();
  try {
    return await view.dump();
  } finally {
    await view.close();
  }
}

test("rebuild replays the stream into a view identical to the live one", async (t) => {
  const after = cleanupStack(t);
  const nats = await startTestNats(after);
  const dataDir = tempDir(after, "meridian-rebuild-");
  const viewDir = join(dataDir, "view");
  let node = await spawnNodeProcess(after, { nats: nats.url, dataDir, region: "west" });
  await waitWritable(node.url);
  let client = new OciClient(node.url);

  // Two images in one repository, one in another.
  const a = await client.pushRandomImage("app/web", "v1");
  const b = await client.pushRandomImage("app/web", "v2");
  const other = await client.pushRandomImage("tools/cli", "stable", 1);
  // A tag move: latest → a, then latest → b.
  const aBytes = Buffer.from(JSON.stringify(a.manifest));
  const bBytes = Buffer.from(JSON.stringify(b.manifest));
  await client.pushManifest("app/web", "latest", aBytes.toString());
  await client.pushManifest("app/web", "latest", bBytes.toString());
  // A tag delete.
  await client.pushManifest("app/web", "old", aBytes.toString());
  let res = await client.fetch("/v2/app/web/manifests/old", { method: "DELETE" });
  assert.equal(res.status, 202);
  // A manifest delete (takes its tag with it).
  const c = await client.pushRandomImage("app/web", "tmp", 1);
  res = await client.fetch(`/v2/app/web/manifests/${c.digest}`, { method: "DELETE" });
  assert.equal(res.status, 202);
  // A blob delete.
  const orphan = await client.pushBlob("app/web", randomBytes(512));
  res = await client.fetch(`/v2/app/web/blobs/${orphan.digest}`, { method: "DELETE" });
  assert.equal(res.status, 202);
  // A referrer of `a`, pushed by digest.
  const emptyConfig = await client.pushBlob("app/web", Buffer.from("{}"), EMPTY_CONFIG);
  const sbomLayer = await client.pushBlob("app/web", Buffer.from('{"sbom":true}'));
  const referrer = await client.pushManifest("app/web", "placeholder", {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: SBOM,
    config: emptyConfig,
    layers: [sbomLayer],
    subject: { mediaType: OCI_MANIFEST, digest: a.digest, size: aBytes.byteLength },
    annotations: { "org.example.kind": "sbom" },
  });
  assert.equal(referrer.response.headers.get("oci-subject"), a.digest);
  res = await client.fetch("/v2/app/web/manifests/placeholder", { method: "DELETE" });
  assert.equal(res.status, 202);

  await node.stop();
  assert.equal(node.child.exitCode, 0, "the node stops cleanly on SIGTERM");
  const live = await dumpView(viewDir);
  assert.ok(live.length > 20, `the live view has content (${live.length} keys)`);
  assert.ok(
    live.some(([k]) => k === "t!app/web!latest"),
    "the live view holds the moved tag",
  );

  const run = await runCli(["rebuild", "--region", "west", "--nats", nats.url, "--view", viewDir], 20_000);
  assert.equal(run.code, 0, `rebuild exits 0 (stderr: ${run.stderr})`);
  const lines = run.stdout.trim().split("\n");
  assert.equal(lines.length, 1, `one JSON line on stdout: ${run.stdout}`);
  const summary = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(summary.rebuilt, true);
  assert.equal(summary.region, "west");
  assert.equal(summary.view, resolve(viewDir));
  assert.equal(typeof summary.seq, "number");
  assert.ok((summary.seq as number) > 10, `the stream has the history (seq ${summary.seq})`);
  assert.equal(summary.events, summary.seq, "every event of the stream was replayed");
  const seqKey = live.find(([k]) => k === "m!seq");
  assert.equal(seqKey?.[1], String(summary.seq), "the live view had applied the whole stream");

  const rebuilt = await dumpView(viewDir);
  assert.deepEqual(rebuilt, live);

  // A node on the rebuilt view answers as before.
  node = await spawnNodeProcess(after, { nats: nats.url, dataDir, region: "west" });
  await waitWritable(node.url);
  client = new OciClient(node.url);
  const expectManifest = async (repo: string, ref: string, bytes: Buffer | undefined) => {
    const r = await client.fetch(`/v2/${repo}/manifests/${ref}`, {
      headers: { accept: OCI_MANIFEST },
    });
    if (bytes === undefined) {
      assert.equal(r.status, 404, `${repo}:${ref} is gone`);
      await r.arrayBuffer();
      return;
    }
    assert.equal(r.status, 200, `${repo}:${ref} is pullable`);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), bytes, `${repo}:${ref} bytes`);
    assert.equal(r.headers.get("docker-content-digest"), sha256(bytes));
  };
  await expectManifest("app/web", "v1", aBytes);
  await expectManifest("app/web", "v2", bBytes);
  await expectManifest("app/web", "latest", bBytes);
  await expectManifest("app/web", a.digest, aBytes);
  await expectManifest("tools/cli", "stable", Buffer.from(JSON.stringify(other.manifest)));
  await expectManifest("app/web", "old", undefined);
  await expectManifest("app/web", "tmp", undefined);
  await expectManifest("app/web", c.digest, undefined);
  await expectManifest("app/web", "placeholder", undefined);
  await expectManifest("app/web", referrer.digest, referrer.bytes);

  for (const layer of [...a.layers, a.config, ...b.layers]) {
    const r = await client.fetch(`/v2/app/web/blobs/${layer.digest}`);
    assert.equal(r.status, 200);
    assert.equal(sha256(Buffer.from(await r.arrayBuffer())), layer.digest);
  }
  res = await client.fetch(`/v2/app/web/blobs/${orphan.digest}`, { method: "HEAD" });
  assert.equal(res.status, 404, "the deleted blob stays deleted");

  res = await client.fetch("/v2/app/web/tags/list");
  assert.equal(res.status, 200);
  assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ["latest", "v1", "v2"]);

  res = await client.fetch(`/v2/app/web/referrers/${a.digest}`);
  assert.equal(res.status, 200);
  const index = (await res.json()) as { manifests: Array<Record<string, unknown>> };
  assert.deepEqual(index.manifests, [
    {
      mediaType: OCI_MANIFEST,
      digest: referrer.digest,
      size: referrer.bytes.byteLength,
      artifactType: SBOM,
      annotations: { "org.example.kind": "sbom" },
    },
  ]);

  // And it still takes writes on top of the rebuilt view.
  const d = await client.pushRandomImage("app/web", "v3", 1);
  await expectManifest("app/web", "v3", Buffer.from(JSON.stringify(d.manifest)));
});
