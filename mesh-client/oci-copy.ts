/**
 * `copyClosure`: copy an image, index or artifact from one OCI registry to
 * another with its whole closure, by digest: an index's children, each
 * manifest's config and layers (whatever their media types: Helm charts and
 * other artifacts come across like images), then the referrers of every
 * manifest where the source lists them (Referrers API or the tag schema).
 *
 * Order is the registry's rule: blobs before the manifest naming them,
 * children before their index, a subject before its referrers, the tag last.
 * A blob the destination already has (HEAD) is not sent; within one registry
 * (same base URL) it is mounted from the source repository. Blob bytes are
 * verified against their digest on the way (the source stream errors on a
 * mismatch, and the destination checks the PUT's ?digest=). When the
 * destination ignores `subject` (no OCI-Subject answer), the referrers tag
 * `sha256-<hex>` is kept there so its clients still find them.
 * At most `concurrency` blobs move at once.
 */
import PQueue from "p-queue";
import { type Digest, digestOf, parseDigest } from "../protocol/digest.js";
import { MediaType } from "../protocol/media-types.js";
import {
  ExternalRegistryError,
  type ManifestBytes,
  type OciDescriptor,
  type OciRegistryClient,
  referrersTag,
} from "./oci-registry-client.js";

/**
 * What a copy needs of either side: an `OciRegistryClient`, or anything
 * answering the same calls the same way (the replication worker's own
 * region, replication/region-registry.ts).
 */
export type OciRegistry = Pick<
  OciRegistryClient,
  "base" | "getManifest" | "putManifest" | "hasBlob" | "getBlob" | "pushBlob" | "referrers"
>;

export interface CopyTarget {
  repository: string;
  /** The source's tag or digest; the destination's tag (a digest sets none). */
  reference: string;
}

export interface CopyResult {
  digest: string;
  manifests: number;
  blobsCopied: number;
  blobsSkipped: number;
  bytesCopied: number;
  referrers: number;
}

export interface CopyOptions {
  concurrency?: number;
  /** Copy referrers too (default true). */
  referrers?: boolean;
}

const INDEX_TYPES = new Set<string>([MediaType.OciIndex, MediaType.DockerManifestList]);

export async function copyClosure(
  from: OciRegistry,
  to: OciRegistry,
  source: CopyTarget,
  destination: CopyTarget = source,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const root = await from.getManifest(source.repository, source.reference);
  if (root === undefined) {
    throw new ExternalRegistryError(
      `${source.repository}:${source.reference} not found at the source`,
      "MANIFEST_UNKNOWN",
      404,
    );
  }
  const copier = new Copier(from, to, source.repository, destination.repository, options);
  await copier.manifest(root);
  if (!destination.reference.includes(":"))
    await to.putManifest(destination.repository, destination.reference, root);
  return { digest: root.digest, ...copier.counts };
}

class Copier {
  readonly counts = { manifests: 0, blobsCopied: 0, blobsSkipped: 0, bytesCopied: 0, referrers: 0 };
  private readonly queue: PQueue;
  private readonly done = new Set<string>();
  private readonly sameRegistry: boolean;

  constructor(
    private readonly from: OciRegistry,
    private readonly to: OciRegistry,
    private readonly src: string,
    private readonly dst: string,
    private readonly options: CopyOptions,
  ) {
    this.queue = new PQueue({ concurrency: options.concurrency ?? 4 });
    this.sameRegistry = from.base.href === to.base.href;
  }

  /** Copy one manifest (already fetched and verified) and everything under and on it. */
  async manifest(m: ManifestBytes): Promise<void> {
    if (this.done.has(m.digest)) return;
    this.done.add(m.digest);
    const parsed = JSON.parse(m.bytes.toString("utf8")) as {
      manifests?: OciDescriptor[];
      config?: OciDescriptor;
      layers?: OciDescriptor[];
      blobs?: OciDescriptor[];
    };
    if (INDEX_TYPES.has(m.mediaType) || Array.isArray(parsed.manifests)) {
      await Promise.all((parsed.manifests ?? []).map((child) => this.byDigest(child.digest)));
    } else {
      const blobs = [...(parsed.config === undefined ? [] : [parsed.config]), ...(parsed.layers ?? [])];
      await Promise.all(blobs.map((b) => this.blob(b)));
    }
    const put = await this.to.putManifest(this.dst, m.digest, m);
    this.counts.manifests++;
    if (this.options.referrers !== false) await this.referrers(m.digest, put.subject);
  }

  private async byDigest(digest: string): Promise<void> {
    if (this.done.has(digest)) return;
    const child = await this.from.getManifest(this.src, parseDigest(digest));
    if (child === undefined)
      throw new ExternalRegistryError(
        `${this.src}@${digest} (a child) not found at the source`,
        "MANIFEST_UNKNOWN",
        404,
      );
    await this.manifest(child);
  }

  private async referrers(digest: Digest, _destinationKeepsSubject: boolean): Promise<void> {
    const listed = await this.from.referrers(this.src, digest);
    if (listed.manifests.length === 0) return;
    const subjects: OciDescriptor[] = [];
    for (const r of listed.manifests) {
      if (!this.done.has(r.digest)) this.counts.referrers++;
      await this.byDigest(r.digest);
      subjects.push(r);
    }
    await this.keepReferrersTag(digest, subjects);
  }

  /** Where the destination has no Referrers API, merge these into its referrers tag. */
  private async keepReferrersTag(digest: Digest, added: OciDescriptor[]): Promise<void> {
    const api = await this.to.referrers(this.dst, digest);
    if (api.api) return;
    const have = api.manifests;
    const merged = [...have, ...added.filter((a) => !have.some((h) => h.digest === a.digest))];
    if (merged.length === have.length) return;
    const bytes = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: merged }),
    );
    await this.to.putManifest(this.dst, referrersTag(digest), {
      bytes,
      mediaType: MediaType.OciIndex,
      digest: digestOf(bytes),
    });
  }

  private blob(d: OciDescriptor): Promise<void> {
    if (this.done.has(d.digest)) return Promise.resolve();
    this.done.add(d.digest);
    return this.queue.add(async () => {
      if (await this.to.hasBlob(this.dst, d.digest)) {
        this.counts.blobsSkipped++;
        return;
      }
      const how = await this.to.pushBlob(
        this.dst,
        { digest: d.digest, size: d.size },
        async () => (await this.from.getBlob(this.src, d.digest)).stream,
        this.sameRegistry && this.src !== this.dst ? this.src : undefined,
      );
      if (how === "uploaded") {
        this.counts.blobsCopied++;
        this.counts.bytesCopied += d.size;
      } else this.counts.blobsSkipped++;
    }) as Promise<void>;
  }
}
