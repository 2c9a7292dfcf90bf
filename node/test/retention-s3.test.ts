/**
 * Retention on the S3 store with two nodes in one region (`meridian up
 * --regions a --s3 --nodes 2`): a pull served by the second node keeps its
 * image (each node records its own pulls; the plan, asked of the first,
 * sees them through the region's log), the run deletes exactly the plan,
 * both nodes stop serving the deletion, and undelete restores it with its
 * bytes intact from the bucket.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let nodes: string[];
const images: Record<string, { digest: string; layer: string }> = {};

before(async () => {
  process.env.MERIDIAN_PULL_FLUSH_SECONDS = "1";
  mesh = await startMesh(cleanup, ["a"], undefined, ["--s3", "--nodes", "2"]);
  nodes = mesh.regions.get("a")!.nodes!.urls;
  for (const url of nodes) await waitWritable(url);
  for (const tag of ["i1", "i2", "i3"]) {
    const pushed = await new OciClient(nodes[0]!).pushRandomImage("s3/app", tag, 1, 2048);
    images[tag] = { digest: pushed.digest, layer: pushed.layers[0]!.digest };
  }
});

const meridian = async (args: string[]) => {
  const r = await runCli([...args, "--data", mesh.dataDir]);
  assert.equal(r.code, 0, `meridian ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
};
const status = async (node: string, path: string) => {
  const res = await fetch(`${node}${path}`, { headers: { accept: OCI_MANIFEST } });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body };
};
type Plan = { repositories: Array<{ repo: string; delete: Array<{ digest: string }> }> };

test("on S3 with two nodes: a pull on either node keeps, the run deletes the plan, undelete restores the bytes", async () => {
  await meridian(["retention", "set", "s3", "--repos", "s3/**", "--keep-last", "1", "--pulled-days", "1"]);
  // i1 pulled through the second node only.
  assert.equal((await status(nodes[1]!, "/v2/s3/app/manifests/i1")).status, 200);
  let plan: Plan | undefined;
  await eventually(
    async () => {
      plan = JSON.parse(await meridian(["retention", "plan", "--json"])) as Plan;
      return plan.repositories[0]?.delete.length === 1;
    },
    30_000,
    250,
  );
  assert.deepEqual(
    plan!.repositories[0]!.delete.map((d) => d.digest),
    [images.i2!.digest],
  );

  const run = JSON.parse(await meridian(["retention", "run", "--json"])) as {
    runs: Array<{ deleted: string[] }>;
  };
  assert.deepEqual(run.runs[0]!.deleted, [`s3/app@${images.i2!.digest}`]);
  for (const node of nodes)
    await eventually(
      async () => (await status(node, `/v2/s3/app/manifests/${images.i2!.digest}`)).status === 404,
      10_000,
      100,
    );
  for (const tag of ["i1", "i3"])
    assert.equal((await status(nodes[0]!, `/v2/s3/app/manifests/${tag}`)).status, 200, tag);

  await meridian(["undelete", `s3/app@${images.i2!.digest}`]);
  for (const node of nodes) {
    await eventually(
      async () => (await status(node, `/v2/s3/app/manifests/${images.i2!.digest}`)).status === 200,
      10_000,
      100,
    );
    const layer = await status(node, `/v2/s3/app/blobs/${images.i2!.layer}`);
    assert.equal(layer.status, 200);
    assert.equal(sha256(layer.body), images.i2!.layer, "the layer's bytes are intact");
  }
});
