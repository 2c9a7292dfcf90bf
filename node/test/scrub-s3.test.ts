/**
 * Scrubbing with repair on the S3 store (issue 15, item 5): `meridian up
 * --s3` with regions a and b (one bucket each on the bundled S3 server). An
 * image pushed to a replicates to b; b's copy of a layer is overwritten in
 * its bucket with one byte flipped (as a backend returning wrong bytes
 * would). `meridian scrub run --region b` finds it, moves it under
 * quarantine/ and copies it back from a, verified; b's object holds the right
 * bytes again, and a pull from b returns them. (The filesystem store's
 * version, with the pull before the repair: scrub.test.ts.)
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import { makeS3Client } from "../data/s3-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let s3: S3Client;
const REPO = "scrub/s3";
const BUCKET = "meridian-b";
const sha = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const keyOf = (digest: string) => {
  const hex = digest.slice("sha256:".length);
  return `blobs/sha256/${hex.slice(0, 2)}/${hex}`;
};

async function object(key: string): Promise<Buffer | undefined> {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } catch {
    return undefined;
  }
}

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--s3"], {
    MERIDIAN_FETCH_ON_MISS: "proxy",
    MERIDIAN_SCRUB_INTERVAL_HOURS: "0",
    MERIDIAN_SCRUB_BYTES_PER_SECOND: String(64 << 20),
  });
  s3 = makeS3Client({
    bucket: BUCKET,
    endpoint: mesh.s3!,
    forcePathStyle: true,
    credentialsFile: join(mesh.dataDir, "s3", "credentials.json"),
  });
  cleanup(() => s3.destroy());
});

test("S3 store: a corrupt object is quarantined and repaired from a by a scrub run; b serves the right bytes", async () => {
  const a = new OciClient(mesh.regions.get("a")!.registry);
  const b = new OciClient(mesh.regions.get("b")!.registry);
  const pushed = await a.pushRandomImage(REPO, "v1", 1, 200_000);
  const layer = pushed.layers[0]!.digest;
  await eventually(async () => (await object(keyOf(layer))) !== undefined, 30_000, 100);

  const good = (await object(keyOf(layer)))!;
  const bad = Buffer.from(good);
  bad[100] = bad[100]! ^ 0xff;
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: keyOf(layer), Body: bad }));
  assert.notEqual(sha((await object(keyOf(layer)))!), layer, "b's object is corrupt now");

  const r = await runCli(["scrub", "run", "--region", "b", "--data", mesh.dataDir], 60_000);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /1 corrupt, 1 repaired/);
  assert.match(r.stdout, new RegExp(`${layer} \\(${REPO}\\): repaired from a`));
  assert.equal(sha((await object(keyOf(layer)))!), layer, "the object holds the right bytes again");
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "quarantine/sha256/" }));
  const kept = (listed.Contents ?? []).filter((o) => o.Key?.includes(layer.slice("sha256:".length)));
  assert.equal(kept.length, 1, "the corrupt bytes are kept under quarantine/");
  assert.equal(sha((await object(kept[0]!.Key!))!), sha(bad));

  const res = await b.fetch(`/v2/${REPO}/blobs/${layer}`, { headers: { "cache-control": "only-if-cached" } });
  assert.equal(res.status, 200);
  assert.equal(sha(Buffer.from(await res.arrayBuffer())), layer);
});
