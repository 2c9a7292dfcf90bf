/**
 * skopeo through a two-node region on S3 (issue 13, item 3): `meridian up
 * --s3 --nodes 2 --auth --tls`, an image copied into node 1 and out of node
 * 2 with the same digests; and the S3 server `up` runs takes only the key
 * pair of <data>/s3/credentials.json (an unsigned request or another key is
 * refused).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { sha256 } from "../../testing/oci-client.js";
import { layoutBlobs, writeImageLayout } from "../../testing/oci-layout.js";
import { skopeoCertDir } from "../../testing/tls.js";
import { bucketOf } from "../up-s3.js";

const run = promisify(execFile);

test("skopeo copies an image into node 1 of a two-node region on S3 and out of node 2 (with --auth and --tls)", async (t) => {
  const after = cleanupStack(t);
  const mesh = await startMesh(after, ["a"], undefined, ["--s3", "--nodes", "2", "--auth", "--tls"]);
  const [n1, n2] = mesh.regions.get("a")!.nodes!.urls as [string, string];
  assert.match(n1, /^https:/);
  const work = tempDir(after);
  const certDir = skopeoCertDir(after, join(mesh.dataDir, "certs", "ca.crt"));
  const creds = `admin:${readFileSync(mesh.adminPasswordFile!, "utf8").trim()}`;
  const src = join(work, "src");
  const digest = writeImageLayout(src, "v1", [300_000, 6 * 1024 * 1024]);
  const host = (u: string) => u.replace(/^https:\/\//, "");
  await run("skopeo", [
    "copy",
    "--dest-cert-dir",
    certDir,
    "--dest-creds",
    creds,
    `oci:${src}:v1`,
    `docker://${host(n1)}/two/app:v1`,
  ]);
  const out = join(work, "out");
  // Node 2's view follows the log: retried until it has the tag.
  let copied = false;
  for (let attempt = 0; attempt < 40 && !copied; attempt++) {
    copied = await run("skopeo", [
      "copy",
      "--src-cert-dir",
      certDir,
      "--src-creds",
      creds,
      `docker://${host(n2)}/two/app:v1`,
      `oci:${out}:v1`,
    ]).then(
      () => true,
      async () => {
        await new Promise((r) => setTimeout(r, 250));
        return false;
      },
    );
  }
  assert.ok(copied, "skopeo copied the image out of node 2");
  const index = JSON.parse(readFileSync(join(out, "index.json"), "utf8"));
  assert.equal(index.manifests[0].digest, digest);
  assert.deepEqual(layoutBlobs(out), layoutBlobs(src));
  for (const name of layoutBlobs(out))
    assert.equal(sha256(readFileSync(join(out, "blobs", "sha256", name))), `sha256:${name}`);

  // The S3 server: the generated key pair lists the region's objects; nothing else gets in.
  const s3 = mesh.s3!;
  const keys = JSON.parse(readFileSync(join(mesh.dataDir, "s3", "credentials.json"), "utf8"));
  const client = (credentials: { accessKeyId: string; secretAccessKey: string }) =>
    new S3Client({ endpoint: s3, region: "us-east-1", forcePathStyle: true, credentials });
  const listed = await client(keys).send(new ListObjectsV2Command({ Bucket: bucketOf("a") }));
  assert.ok((listed.KeyCount ?? 0) >= 3, "the image's blobs are in the region's bucket");
  const unsigned = await fetch(`${s3}/${bucketOf("a")}`);
  assert.equal(unsigned.status, 403, "an unsigned request is refused");
  await assert.rejects(
    client({ accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }).send(
      new ListObjectsV2Command({ Bucket: bucketOf("a") }),
    ),
    /access key|InvalidAccessKeyId/i,
    "s3rver's default key pair is not accepted",
  );
});
