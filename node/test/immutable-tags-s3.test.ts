/**
 * Immutable tags on the S3 blob store (`meridian up --s3`, one region, no
 * authentication): the refusal is decided on metadata before anything is
 * committed, so it must read the same whatever holds the bytes: 403 DENIED
 * naming the rule, the refused manifest not visible by digest (its bytes may
 * sit in the bucket unreferenced, for GC), the first push and a re-push of
 * the same digest accepted. node/test/immutable-tags.test.ts covers the rest
 * on the filesystem store across two regions.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let client: OciClient;

before(async () => {
  mesh = await startMesh(cleanup, ["a"], undefined, ["--s3"]);
  client = new OciClient(mesh.regions.get("a")!.registry);
});

async function image(repo: string): Promise<unknown> {
  const config = await client.pushBlob(
    repo,
    Buffer.from(JSON.stringify({ os: "linux", architecture: "amd64", nonce: Math.random() })),
    "application/vnd.oci.image.config.v1+json",
  );
  const layer = await client.pushBlob(repo, Buffer.from(`layer ${Math.random()}`));
  return { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] };
}

const put = (repo: string, tag: string, manifest: unknown) =>
  client.fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: JSON.stringify(manifest),
  });

describe("immutable tags on the S3 store", () => {
  test("first push, refused move (403 DENIED naming the rule, nothing visible), idempotent re-push", async () => {
    const admin = `${mesh.regions.get("a")!.registry}/admin/v1/immutability/prod-v`;
    const rule = await fetch(admin, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ repositories: "prod/*", tags: "v*" }),
    });
    assert.equal(rule.status, 200, await rule.text());
    await eventually(async () => {
      const list = (await (await fetch(admin.replace(/\/prod-v$/, ""))).json()) as { rules: unknown[] };
      return list.rules.length === 1;
    });
    const one = await image("prod/api");
    assert.equal((await put("prod/api", "v1", one)).status, 201);
    const two = await image("prod/api");
    const refused = await put("prod/api", "v1", two);
    assert.equal(refused.status, 403);
    const body = (await refused.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]!.code, "DENIED");
    assert.match(body.errors[0]!.message, /tag v1 of prod\/api is immutable \(rule prod-v\)/);
    assert.equal((await client.fetch(`/v2/prod/api/manifests/${sha256(JSON.stringify(two))}`)).status, 404);
    const head = await client.fetch("/v2/prod/api/manifests/v1", {
      method: "HEAD",
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(head.headers.get("docker-content-digest"), sha256(JSON.stringify(one)));
    assert.equal((await put("prod/api", "v1", one)).status, 201);
  });
});
