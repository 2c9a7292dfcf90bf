/**
 * This region as one side of a copy with an external endpoint (issue 17):
 * the calls mesh-client/oci-copy.ts `copyClosure` makes of a registry
 * (`OciRegistry`), answered by the region's own data layer instead of HTTP.
 *
 * Reads come from the worker's view and the blob store; writes go through
 * node/data/registry.ts `Registry`, the region's normal write path: a blob is
 * stored (its digest verified while it streams) and linked with
 * `blob.pushed`, a manifest is validated (its references present), stored
 * and committed with `manifest.pushed` (and `tag.set` by tag), each event
 * appended to this region's log under `actor` — so imported content is
 * audited like a push, counts against project quotas, obeys immutable-tag
 * rules, and replicates on to the other regions by their policies.
 *
 * A blob the store already holds (another repository's, a replica) is linked
 * without its bytes being fetched (`linkStored`): what the endpoint sends is
 * only what this region lacks.
 */
import { Readable } from "node:stream";
import type { OciRegistry } from "../mesh-client/oci-copy.js";
import type { ManifestBytes, OciDescriptor } from "../mesh-client/oci-registry-client.js";
import { parseReference, type Registry } from "../node/data/registry.js";
import { type Digest, parseDigest } from "../protocol/digest.js";
import { ManifestNotFoundError, RepositoryNotFoundError } from "../protocol/errors.js";

/** Tags and repositories are read a page of this many at a time. */
const PAGE = 1000;

export class RegionRegistry implements OciRegistry {
  /** Never an endpoint's URL: a copy between the region and an endpoint never mounts across them. */
  readonly base: URL;

  constructor(
    private readonly registry: Registry,
    /** Who the region's log says wrote what this side receives (`endpoint:NAME`). */
    private readonly actor: string,
  ) {
    this.base = new URL(`meridian://${registry.region}/`);
  }

  async getManifest(repository: string, reference: string): Promise<ManifestBytes | undefined> {
    try {
      const m = await this.registry.resolveManifest(repository, parseReference(reference));
      return { bytes: m.bytes, mediaType: m.record.mediaType, digest: m.digest };
    } catch (err) {
      if (err instanceof ManifestNotFoundError || err instanceof RepositoryNotFoundError) return undefined;
      throw err;
    }
  }

  async putManifest(repository: string, reference: string, manifest: ManifestBytes) {
    const put = await this.registry.putManifest(
      repository,
      parseReference(reference),
      manifest.bytes,
      manifest.mediaType,
      this.actor,
    );
    return { subject: put.subject !== undefined };
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    return (await this.registry.linkedBlobSize(repository, parseDigest(digest))) !== undefined;
  }

  async getBlob(repository: string, digest: string): Promise<{ size: number; stream: Readable }> {
    const blob = await this.registry.openBlob(repository, parseDigest(digest), () => undefined);
    return { size: blob.size, stream: blob.stream };
  }

  async pushBlob(
    repository: string,
    descriptor: { digest: string; size: number },
    body: () => Promise<Buffer | Readable>,
  ): Promise<"mounted" | "uploaded"> {
    const digest = parseDigest(descriptor.digest);
    if ((await this.registry.linkStored(repository, digest, this.actor)) !== undefined) return "mounted";
    const bytes = await body();
    const stream = Buffer.isBuffer(bytes) ? Readable.from([bytes]) : bytes;
    await this.registry.pushBlob(repository, stream, digest, descriptor.size, this.actor);
    return "uploaded";
  }

  /** The region keeps a referrers index (its Referrers API): `api` is always true. */
  async referrers(repository: string, digest: string): Promise<{ api: boolean; manifests: OciDescriptor[] }> {
    const list = await this.registry.referrers(repository, parseDigest(digest));
    return {
      api: true,
      manifests: list.map((r) => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType === undefined ? {} : { artifactType: r.artifactType }),
        ...(r.annotations === undefined ? {} : { annotations: r.annotations }),
      })),
    };
  }

  /** The digest a tag shows here (its manifest live), or undefined. */
  visibleTag(repository: string, tag: string): Promise<Digest | undefined> {
    return this.registry.view.content.visibleTag(repository, tag);
  }

  /** Every tag of a repository (none when it does not exist). */
  async tags(repository: string): Promise<string[]> {
    const out: string[] = [];
    let last: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      const items = (await this.registry.view.content.tags(repository, PAGE, last)).items;
      out.push(...items);
      if (items.length < PAGE) break;
      last = items[items.length - 1];
    }
    return out;
  }

  /** Every repository with anything in it. */
  repositories(): Promise<string[]> {
    return this.registry.view.content.repositoriesUnder("");
  }
}
