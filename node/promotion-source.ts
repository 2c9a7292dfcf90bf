/**
 * The source side of a promotion's copy: this node's own store seen through
 * the OCI client's reads (`getManifest`, `getBlob`, `referrers`), so
 * mesh-client/oci-copy.ts `copyClosure` copies from the region's data
 * without a loopback HTTP round trip or a token for itself. Only those reads
 * are served; the writes of the client are never called on a source.
 *
 * `base` is the URL the region answers at when the destination is in the
 * same region, so the copy mounts blobs across repositories there instead
 * of uploading them again (copyClosure mounts when both bases are equal).
 */
import type { Readable } from "node:stream";
import {
  ExternalRegistryError,
  type ManifestBytes,
  type OciDescriptor,
  OciRegistryClient,
} from "../mesh-client/oci-registry-client.js";
import { type Digest, isDigest, parseDigest } from "../protocol/digest.js";
import { ManifestNotFoundError } from "../protocol/errors.js";
import type { Registry } from "./data/registry.js";

export class RegistrySource extends OciRegistryClient {
  constructor(
    private readonly registry: Registry,
    base: string,
  ) {
    super({ url: base });
  }

  override async getManifest(repository: string, reference: string): Promise<ManifestBytes | undefined> {
    try {
      const m = await this.registry.resolveManifest(
        repository,
        isDigest(reference) ? { digest: parseDigest(reference) } : { tag: reference },
      );
      return { bytes: m.bytes, mediaType: m.record.mediaType, digest: m.digest };
    } catch (err) {
      if (err instanceof ManifestNotFoundError) return undefined;
      throw err;
    }
  }

  override async getBlob(repository: string, digest: string): Promise<{ size: number; stream: Readable }> {
    try {
      const { size, stream } = await this.registry.openBlob(repository, parseDigest(digest), () => undefined);
      return { size, stream };
    } catch (err) {
      throw new ExternalRegistryError(
        `blob ${repository}@${digest}: ${(err as Error).message}`,
        "BLOB_UNKNOWN",
        404,
      );
    }
  }

  override async referrers(
    repository: string,
    digest: string,
  ): Promise<{ api: boolean; manifests: OciDescriptor[] }> {
    const listed = await this.registry.referrers(repository, parseDigest(digest) as Digest);
    return {
      api: true,
      manifests: listed.map((r) => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType === undefined ? {} : { artifactType: r.artifactType }),
        ...(r.annotations === undefined ? {} : { annotations: r.annotations }),
      })),
    };
  }
}
