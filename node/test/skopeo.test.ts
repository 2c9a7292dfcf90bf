/**
 * End to end with a real client: skopeo (Debian package) copies images from
 * an OCI layout on disk into a node and back out, and every digest survives.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { cleanupStack, startTestNats, startTestNode, tempDir } from "../../testing/harness.js";
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256 } from "../../testing/oci-client.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
let registry: string;
let work: string;

before(async () => {
  const nats = await startTestNats(cleanup);
  const node = await startTestNode(cleanup, { nats: nats.url });
  registry = node.url.replace(/^http:\/\//, "");
  work = tempDir(cleanup);
});

/** An OCI image layout directory with content-addressed blobs. */
class Layout {
  readonly blobs: string;
  readonly manifests: Array<Record<string, unknown>> = [];
  constructor(readonly dir: string) {
    this.blobs = join(dir, "blobs", "sha256");
    mkdirSync(this.blobs, { recursive: true });
    writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  }
  add(bytes: Buffer, mediaType: string): { mediaType: string; digest: string; size: number } {
    const digest = sha256(bytes);
    writeFileSync(join(this.blobs, digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.byteLength };
  }
  /** A gzip'd tar layer holding one random file, made by the real tar. */
  async layer(name: string, size: number) {
    const src = join(this.dir, "..", `src-${name}-${randomBytes(4).toString("hex")}`);
    mkdirSync(src);
    writeFileSync(join(src, name), randomBytes(size));
    const out = `${src}.tgz`;
    await run("tar", ["-czf", out, "-C", src, "."]);
    return this.add(readFileSync(out), OCI_LAYER);
  }
  async image(arch: string, layers: number) {
    const config = this.add(
      Buffer.from(
        JSON.stringify({ architecture: arch, os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
      ),
      OCI_CONFIG,
    );
    const ls = [];
    for (let i = 0; i < layers; i++) ls.push(await this.layer(`${arch}-${i}`, 50_000 + i * 1000));
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: ls }),
    );
    return { ...this.add(manifest, OCI_MANIFEST), platform: { architecture: arch, os: "linux" } };
  }
  tag(ref: string, descriptor: Record<string, unknown>) {
    this.manifests.push({ ...descriptor, annotations: { "org.opencontainers.image.ref.name": ref } });
    writeFileSync(
      join(this.dir, "index.json"),
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: this.manifests }),
    );
  }
}

function blobNames(dir: string): string[] {
  return readdirSync(join(dir, "blobs", "sha256")).sort();
}

async function inspectDigest(ref: string): Promise<string> {
  const { stdout } = await run("skopeo", [
    "inspect",
    "--raw",
    "--tls-verify=false",
    `docker://${registry}/${ref}`,
  ]);
  return sha256(Buffer.from(stdout));
}

test("skopeo copies a multi-layer image in and out with identical digests", async () => {
  const layout = new Layout(join(work, "single"));
  const image = await layout.image("amd64", 4);
  layout.tag("v1", image);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout.dir}:v1`,
    `docker://${registry}/e2e/single:v1`,
  ]);
  assert.equal(await inspectDigest("e2e/single:v1"), image.digest);
  const out = join(work, "single-out");
  await run("skopeo", [
    "copy",
    "--src-tls-verify=false",
    `docker://${registry}/e2e/single:v1`,
    `oci:${out}:v1`,
  ]);
  assert.deepEqual(blobNames(out), blobNames(layout.dir));
  const outIndex = JSON.parse(readFileSync(join(out, "index.json"), "utf8"));
  assert.equal(outIndex.manifests[0].digest, image.digest);
  for (const name of blobNames(out)) {
    assert.equal(sha256(readFileSync(join(out, "blobs", "sha256", name))), `sha256:${name}`);
  }
});

test("skopeo copies a multi-arch index (--all) in and out with identical digests", async () => {
  const layout = new Layout(join(work, "multi"));
  const amd = await layout.image("amd64", 2);
  const arm = await layout.image("arm64", 3);
  const index = layout.add(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [amd, arm] })),
    OCI_INDEX,
  );
  layout.tag("v2", index);
  await run("skopeo", [
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${layout.dir}:v2`,
    `docker://${registry}/e2e/multi:v2`,
  ]);
  assert.equal(await inspectDigest("e2e/multi:v2"), index.digest);
  assert.equal(await inspectDigest(`e2e/multi@${amd.digest}`), amd.digest);
  assert.equal(await inspectDigest(`e2e/multi@${arm.digest}`), arm.digest);
  const out = join(work, "multi-out");
  await run("skopeo", [
    "copy",
    "--all",
    "--src-tls-verify=false",
    `docker://${registry}/e2e/multi:v2`,
    `oci:${out}:v2`,
  ]);
  assert.deepEqual(blobNames(out), blobNames(layout.dir));
  // skopeo can also list the tags it pushed.
  const { stdout } = await run("skopeo", [
    "list-tags",
    "--tls-verify=false",
    `docker://${registry}/e2e/multi`,
  ]);
  assert.deepEqual(JSON.parse(stdout).Tags, ["v2"]);
});

test("skopeo copies an index between two repositories of the node", async () => {
  await run("skopeo", [
    "copy",
    "--all",
    "--src-tls-verify=false",
    "--dest-tls-verify=false",
    `docker://${registry}/e2e/multi:v2`,
    `docker://${registry}/e2e/copy:v2`,
  ]);
  assert.equal(await inspectDigest("e2e/copy:v2"), await inspectDigest("e2e/multi:v2"));
  const { stdout } = await run("skopeo", [
    "list-tags",
    "--tls-verify=false",
    `docker://${registry}/e2e/copy`,
  ]);
  assert.deepEqual(JSON.parse(stdout).Tags, ["v2"]);
});
