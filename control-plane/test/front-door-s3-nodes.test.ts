/**
 * A region of two stateless registry nodes on S3 behind the front door
 * (issue 13 item 3): the nodes share nothing on local disk (separate data
 * directories; the bucket and the region's NATS only), mesh.json lists both,
 * and the front door spreads the region's requests over them with no load
 * balancer. An upload session's chunks land on both nodes and the blob comes
 * out whole; a pull right after a push through the front door sees it.
 * Real processes: s3rver (testing/s3.ts), startProxiedMesh, a second node
 * (testing/region-nodes.ts), the front door.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupStack, eventually, spawnMeridian, tempDir } from "../../testing/harness.js";
import { startProxiedMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import { addRegionNode, meshWithNodes, requestsAnswered } from "../../testing/region-nodes.js";
import { S3RVER_CREDENTIALS, startTestS3 } from "../../testing/s3.js";

const cleanup = cleanupStack({ after });
const BUCKET = "meridian-a";
let nodes: string[];
let url: string;

before(async () => {
  const s3 = await startTestS3([BUCKET]);
  cleanup(() => s3.stop());
  const credentials = join(tempDir(cleanup), "s3-credentials.json");
  writeFileSync(credentials, JSON.stringify(S3RVER_CREDENTIALS));
  const onS3 = {
    MERIDIAN_STORAGE_TYPE: "s3",
    MERIDIAN_S3_BUCKET: BUCKET,
    MERIDIAN_S3_PREFIX: "registry/",
    MERIDIAN_S3_ENDPOINT: s3.endpoint,
    MERIDIAN_S3_FORCE_PATH_STYLE: "true",
    MERIDIAN_S3_CREDENTIALS_FILE: credentials,
  };
  const mesh = await startProxiedMesh(cleanup, ["a"], { node: onS3 });
  const a = mesh.regions.get("a")!;
  // Nothing shared on local disk: its own data directory.
  const second = await addRegionNode(cleanup, a, 2, {
    MERIDIAN_DATA_DIR: tempDir(cleanup, "meridian-node2-"),
  });
  nodes = [a.registry, second.url];
  const frontDoor = await spawnMeridian(cleanup, "control-plane/front-door.js", {
    MERIDIAN_MESH: meshWithNodes(mesh.meshFile, { a: nodes }, "mesh-s3-nodes.json"),
    MERIDIAN_CLIENT_REGIONS: "127.0.0.0/8=a",
    MERIDIAN_HEARTBEAT_INTERVAL_MS: "500",
  });
  url = frontDoor.info.frontDoor!;
  await eventually(
    async () => {
      const h = (await (await fetch(`${url}/healthz`)).json()) as {
        regions: Array<{ up: boolean; nodes: Array<{ up: boolean }> }>;
      };
      return h.regions.every((r) => r.up && r.nodes.length === 2 && r.nodes.every((n) => n.up));
    },
    30_000,
    50,
  );
});

test("S3 nodes: an upload spread over both nodes, a pull right after the push, reads on both", async () => {
  const client = new OciClient(url);
  const image = await client.pushRandomImage("team/s3", "v1");
  const pulled = await fetch(`${url}/v2/team/s3/manifests/v1`);
  assert.equal(pulled.status, 200, "the pull right after the push sees it");
  assert.equal(pulled.headers.get("docker-content-digest"), image.digest);

  // Once both views have the push, requests alternate between the nodes.
  await eventually(
    async () =>
      (await Promise.all(nodes.map((n) => fetch(`${n}/v2/team/s3/manifests/v1`)))).every((r) => r.ok),
    10_000,
    50,
  );
  // ...and the front door knows it (their probes): the push's floor no longer orders them.
  const written = Math.max(
    ...(await Promise.all(
      nodes.map(
        async (n) => ((await (await fetch(`${n}/healthz`)).json()) as { appliedSeq: number }).appliedSeq,
      ),
    )),
  );
  await eventually(
    async () => {
      const h = (await (await fetch(`${url}/healthz`)).json()) as {
        regions: Array<{ nodes: Array<{ applied: Record<string, number> | null }> }>;
      };
      return h.regions[0]!.nodes.every((n) => (n.applied?.a ?? 0) >= written);
    },
    10_000,
    50,
  );
  const before = await Promise.all(nodes.map(requestsAnswered));
  const bytes = randomBytes(6 << 20);
  const blob = await client.pushBlobChunked("team/s3", bytes, 1 << 20);
  const parts = (await Promise.all(nodes.map(requestsAnswered))).map((n, i) => n - before[i]!);
  assert.ok(
    parts.every((n) => n >= 2),
    `both nodes took part in the upload: ${parts}`,
  );
  for (let i = 0; i < 4; i++) {
    const got = await fetch(`${url}/v2/team/s3/blobs/${blob.digest}`);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes), "the blob is whole, from either node");
  }
});
