/**
 * An OCI image layout on disk (what skopeo's `oci:DIR:TAG` reads and writes):
 * one image of gzip'd random layers under a tag.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256 } from "./oci-client.js";

/** Write the layout into `dir` with its image tagged `tag`; the manifest's digest. */
export function writeImageLayout(dir: string, tag: string, layerSizes = [200_000, 70_000]): string {
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  const add = (bytes: Buffer, mediaType: string) => {
    const digest = sha256(bytes);
    writeFileSync(join(blobs, digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.byteLength };
  };
  const config = add(
    Buffer.from(
      JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
    ),
    OCI_CONFIG,
  );
  const layers = layerSizes.map((n) => add(gzipSync(randomBytes(n)), OCI_LAYER));
  const manifest = add(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers })),
    OCI_MANIFEST,
  );
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": tag } }],
    }),
  );
  return manifest.digest;
}

/** The blob file names of a layout, sorted (two layouts holding the same content list the same). */
export function layoutBlobs(dir: string): string[] {
  return readdirSync(join(dir, "blobs", "sha256")).sort();
}
