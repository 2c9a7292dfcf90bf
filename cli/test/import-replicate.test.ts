/**
 * What `meridian import` writes is a push like any other (issue 17, item 4):
 * imported into region a of a two-region mesh with authentication, as a
 * system admin other than `admin` (MERIDIAN_USER), a Helm chart and an
 * image arrive in region b by the default policy, byte-identical by digest,
 * and region a's audit log names that user as the pusher.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { gzipSync } from "node:zlib";
import { OciRegistryClient } from "../../mesh-client/oci-registry-client.js";
import { digestOf } from "../../protocol/digest.js";
import { startDistribution } from "../../testing/distribution.js";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";

const cleanup = cleanupStack({ after });
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

test("imported content replicates by policy, and the audit log names who imported it", async () => {
  const dist = await startDistribution(cleanup);
  const mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
  const work = tempDir(cleanup, "meridian-import-repl-");
  const adminPassword = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  const meridian = (args: string[], env?: Record<string, string>) =>
    runCli([...args, "--data", mesh.dataDir], 120_000, env);

  const upstream = new OciRegistryClient({ url: dist.url });
  const pushed = new Map<string, Buffer>();
  for (const [repo, tag, configType, layerType] of [
    [
      "charts/web",
      "1.2.0",
      "application/vnd.cncf.helm.config.v1+json",
      "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    ],
    [
      "apps/web",
      "v1",
      "application/vnd.oci.image.config.v1+json",
      "application/vnd.oci.image.layer.v1.tar+gzip",
    ],
  ] as const) {
    const config = Buffer.from(JSON.stringify({ name: repo, version: tag }));
    const layer = gzipSync(randomBytes(5000));
    for (const b of [config, layer])
      await upstream.pushBlob(repo, { digest: digestOf(b), size: b.length }, async () => b);
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: configType, digest: digestOf(config), size: config.length },
        layers: [{ mediaType: layerType, digest: digestOf(layer), size: layer.length }],
      }),
    );
    await upstream.putManifest(repo, tag, { bytes, mediaType: OCI_MANIFEST, digest: digestOf(bytes) });
    pushed.set(`${repo}:${tag}`, bytes);
  }

  const password = join(work, "migrator-password");
  writeFileSync(password, "migrator-password-1\n", { mode: 0o600 });
  const user = await meridian(["user", "add", "migrator", "--admin", "--password-file", password]);
  assert.equal(user.code, 0, user.stderr);
  const env = { MERIDIAN_USER: "migrator", MERIDIAN_PASSWORD_FILE: password };
  assert.equal((await meridian(["endpoint", "add", "onprem", "--url", dist.url], env)).code, 0);
  const r = await meridian(
    ["import", "--from", "onprem", "--region", "a", "--checkpoint", join(work, "cp.json")],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /2 copied, 0 already present, 0 skipped, 0 failed/);

  const regionB = new OciRegistryClient({
    url: mesh.regions.get("b")!.registry,
    credentials: { username: "admin", password: adminPassword },
  });
  for (const [ref, bytes] of pushed) {
    const [repo, tag] = ref.split(":") as [string, string];
    await eventually(
      async () => (await regionB.headManifest(repo, tag))?.digest === digestOf(bytes),
      30_000,
      200,
    );
    assert.ok((await regionB.getManifest(repo, digestOf(bytes)))!.bytes.equals(bytes), `${ref} in b`);
  }
  const audit = await meridian([
    "audit",
    "--region",
    "a",
    "--actor",
    "migrator",
    "--action",
    "push",
    "--json",
  ]);
  assert.equal(audit.code, 0, audit.stderr);
  const artifacts = (
    JSON.parse(audit.stdout) as { records: Array<{ artifact?: string; repo?: string }> }
  ).records
    .map((x) => JSON.stringify(x))
    .join("\n");
  assert.match(artifacts, /charts\/web/);
  assert.match(artifacts, /apps\/web/);
});
