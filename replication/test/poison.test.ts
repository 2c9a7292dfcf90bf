/**
 * Issue 12, item 5: a poison event is not retried forever. Regions a and c
 * as separate processes (startProxiedMesh, default event deadline of 15
 * minutes): an image is pushed to a while c cannot reach a's peer, and one
 * of its layers is then corrupted on a's disk (its file replaced by a
 * directory: a's peer still finds it, reading it fails). When the link heals,
 * c's worker asks a's peer for the layer and gets INTERNAL, with its code
 * in the trailing metadata: terminal. The image is recorded as a failed
 * replication with its reason at once (not after the deadline), visible in
 * `meridian replication status` and `meridian alerts`, and a later image
 * still arrives.
 * (Before the fix INTERNAL was a retryable "peer unavailable": the event was
 * retried until its 15-minute deadline and held a's stream behind it.)
 */
import assert from "node:assert/strict";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { startProxiedMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });

test("an event the source's peer fails with INTERNAL is recorded as failed at once; later events replicate", async () => {
  const mesh = await startProxiedMesh(cleanup, ["a", "c"]);
  const a = new OciClient(mesh.regions.get("a")!.registry);
  const c = new OciClient(mesh.regions.get("c")!.registry);
  const present = async (repo: string, ref: string) =>
    (
      await c.fetch(`/v2/${repo}/manifests/${ref}`, {
        method: "HEAD",
        headers: { accept: "application/vnd.oci.image.manifest.v1+json", "cache-control": "only-if-cached" },
      })
    ).status === 200;

  // c's worker sees a's events but cannot copy their content until the link heals.
  const link = mesh.proxies.get("c")!.get("a")!;
  link.grpc.blackhole();
  const poison = await a.pushRandomImage("poison/app", "v1");
  const layer = poison.layers[0]!.digest;
  const encoded = layer.slice("sha256:".length);
  const path = join(mesh.regions.get("a")!.dir, "store", "blobs", "sha256", encoded.slice(0, 2), encoded);
  await rm(path);
  await mkdir(join(path, "not-a-file"), { recursive: true });
  link.grpc.heal();

  const status = async () => {
    const r = await runCli([
      "replication",
      "status",
      `poison/app@${poison.digest}`,
      "--mesh",
      mesh.meshFile,
      "--region",
      "c",
      "--json",
    ]);
    if (r.code !== 0) return undefined;
    const { regions } = JSON.parse(r.stdout) as {
      regions: Array<{ region: string; state: string; detail: string }>;
    };
    return regions.find((x) => x.region === "c");
  };
  // Well inside the 15-minute deadline that bounded the retries before.
  await eventually(async () => (await status())?.state === "failed", 45_000, 500);
  const c1 = (await status())!;
  assert.equal(c1.state, "failed");
  assert.match(c1.detail, /internal error/);
  assert.equal(await present("poison/app", "v1"), false);
  // The same record as an alert: `meridian alerts`.
  const alerts = await runCli(["alerts", "--json", "--mesh", mesh.meshFile, "--region", "c"]);
  assert.equal(alerts.code, 0, alerts.stderr);
  const raised = (
    JSON.parse(alerts.stdout) as { alerts: Array<{ kind: string; detail?: Record<string, unknown> }> }
  ).alerts.filter((x) => x.kind === "replication-failed" && x.detail?.digest === poison.digest);
  assert.equal(raised.length, 1);
  assert.match(String(raised[0]!.detail?.reason), /internal error/);

  // The stream goes on: a later image from a arrives at c.
  await a.pushRandomImage("poison/app", "v2");
  await eventually(() => present("poison/app", "v2"), 30_000, 200);
});
