/**
 * One run of an endpoint link (issue 17): read both sides' tags for the
 * repositories asked (or every one the policy selects at the source side:
 * this region's repositories for an export, the endpoint's `/v2/_catalog`
 * for an import), plan (./endpoint-plan.ts), and copy each tag's closure
 * with mesh-client/oci-copy.ts `copyClosure` — blobs the destination holds
 * are skipped (HEAD) or, in this region, linked without a transfer;
 * referrers come along (the Referrers API, or the referrers tag schema on a
 * registry without one, such as Distribution 2.8). Everything is verified by
 * digest on the way (the endpoint client checks what it reads, this region's
 * store and manifest push check what it writes).
 *
 * The bytes read from the source side are charged to the link's budget
 * (`take`, mesh-client/bandwidth.ts's token bucket) before they go on.
 * Export deletions (`deletes`: tags deleted in this region, from its
 * on-push events) remove the endpoint's tag by deleting its manifest there,
 * only when no tag of the region's repository still shows that manifest
 * (a registry deletes every tag on a manifest with it).
 */
import { Transform } from "node:stream";
import { copyClosure, type OciRegistry } from "../mesh-client/oci-copy.js";
import type { OciRegistryClient } from "../mesh-client/oci-registry-client.js";
import { type EndpointLink, isSignatureReferrer, selectsRepository } from "../protocol/policy.js";
import {
  candidateTags,
  type EndpointPlan,
  endpointPlanStats,
  planEndpointRepository,
  type SourceTag,
} from "./endpoint-plan.js";
import type { RegionRegistry } from "./region-registry.js";

export interface TransferContext {
  link: EndpointLink;
  endpoint: OciRegistryClient;
  region: RegionRegistry;
  /** Charge bytes read from the source side to the link's budget; resolves when they may go. */
  take(bytes: number, signal: AbortSignal): Promise<void>;
  /** Told of every blob byte read from the source side. */
  onBytes(bytes: number): void;
  signal: AbortSignal;
  /** Plan only. */
  dryRun?: boolean;
}

export interface TransferResult {
  plans: EndpointPlan[];
  stats: Record<string, number>;
}

/** Tags deleted in this region, for an export that carries deletes. */
export interface TagDeletion {
  repo: string;
  tag: string;
}

/** Run the link for `repos` (undefined: every repository the policy selects at the source side). */
export async function runEndpointLink(
  ctx: TransferContext,
  repos: readonly string[] | undefined,
  deletions: readonly TagDeletion[] = [],
): Promise<TransferResult> {
  const { link } = ctx;
  const exporting = link.direction === "export";
  const source = exporting ? regionSide(ctx.region) : endpointSide(ctx.endpoint);
  const destination = exporting ? endpointSide(ctx.endpoint) : regionSide(ctx.region);
  const from = metered(exporting ? ctx.region : ctx.endpoint, ctx);
  const to: OciRegistry = exporting ? ctx.endpoint : ctx.region;
  const stats: Record<string, number> = {};
  const count = (k: string, n = 1) => {
    stats[k] = (stats[k] ?? 0) + n;
  };
  const plans: EndpointPlan[] = [];
  const names = (repos ?? (await source.repositories())).filter((r) => selectsRepository(link.policy, r));
  for (const repo of [...new Set(names)].sort()) {
    ctx.signal.throwIfAborted();
    const plan = await planRepository(link, source, destination, repo);
    if (ctx.dryRun) {
      if (plan.actions.some((a) => a.kind !== "in-step")) plans.push(plan);
      continue;
    }
    for (const action of plan.actions) {
      ctx.signal.throwIfAborted();
      count(action.kind);
      let reference: string | undefined;
      if (action.kind === "copy") reference = action.tag;
      else if (action.kind === "in-step") {
        // Same digest on both sides: referrers pushed since (a signature) still travel.
        const have = new Set(await destination.referrers(repo, action.digest));
        const missing = (await source.referrers(repo, action.digest)).filter((d) => !have.has(d));
        if (missing.length > 0) reference = action.digest;
      }
      if (reference === undefined) continue;
      const copied = await copyClosure(from, to, { repository: repo, reference });
      count("manifests", copied.manifests);
      count("referrers", copied.referrers);
      count("blobsCopied", copied.blobsCopied);
      count("blobsSkipped", copied.blobsSkipped);
      count("bytes", copied.bytesCopied);
    }
    if (plan.actions.some((a) => a.kind !== "in-step")) plans.push(plan);
  }
  if (exporting && !ctx.dryRun && link.policy.deletes && link.policy.events.includes("delete")) {
    for (const d of deletions) if (await deleteAtEndpoint(ctx, d)) count("deleted");
  }
  return { plans, stats: ctx.dryRun ? endpointPlanStats(plans) : stats };
}

/** The repositories a link's run looks at: those the policy selects at the source side. */
export async function linkRepositories(link: EndpointLink, source: Side): Promise<string[]> {
  return [...new Set((await source.repositories()).filter((r) => selectsRepository(link.policy, r)))].sort();
}

/** Plan one repository of a link from both sides' tags (./endpoint-plan.ts). */
export async function planRepository(
  link: EndpointLink,
  source: Side,
  destination: Side,
  repo: string,
): Promise<EndpointPlan> {
  const shown: SourceTag[] = [];
  for (const tag of candidateTags(link.policy, await source.tags(repo))) {
    const digest = await source.digestOf(repo, tag);
    if (digest === undefined) continue;
    const signed = link.policy.signedOnly ? await source.signed(repo, digest) : false;
    shown.push({ tag, digest, signed });
  }
  const there = new Map<string, string>();
  for (const { tag } of shown) {
    const d = await destination.digestOf(repo, tag);
    if (d !== undefined) there.set(tag, d);
  }
  return planEndpointRepository(link.policy, repo, shown, there);
}

/** Remove a tag deleted here from the endpoint (see the header); true when something was deleted. */
async function deleteAtEndpoint(ctx: TransferContext, { repo, tag }: TagDeletion): Promise<boolean> {
  if (!selectsRepository(ctx.link.policy, repo) || candidateTags(ctx.link.policy, [tag]).length === 0)
    return false;
  if ((await ctx.region.visibleTag(repo, tag)) !== undefined) return false; // set again since
  const there = (await ctx.endpoint.headManifest(repo, tag))?.digest;
  if (there === undefined || there === "") return false;
  for (const other of await ctx.region.tags(repo))
    if ((await ctx.region.visibleTag(repo, other)) === there) return false;
  return ctx.endpoint.deleteManifest(repo, there);
}

/** What a run (or `meridian policy plan`) reads of either side. */
export interface Side {
  repositories(): Promise<string[]>;
  tags(repo: string): Promise<string[]>;
  digestOf(repo: string, tag: string): Promise<string | undefined>;
  referrers(repo: string, digest: string): Promise<string[]>;
  signed(repo: string, digest: string): Promise<boolean>;
}

function regionSide(region: RegionRegistry): Side {
  return {
    repositories: () => region.repositories(),
    tags: (repo) => region.tags(repo),
    digestOf: (repo, tag) => region.visibleTag(repo, tag),
    referrers: async (repo, digest) => (await region.referrers(repo, digest)).manifests.map((m) => m.digest),
    signed: async (repo, digest) =>
      (await region.referrers(repo, digest)).manifests.some((m) =>
        isSignatureReferrer(m.artifactType, m.mediaType),
      ),
  };
}

/** An endpoint as a side of a link, through its OCI API. */
export function endpointSide(endpoint: OciRegistryClient): Side {
  return {
    repositories: () => endpoint.catalog(),
    tags: (repo) => endpoint.listTags(repo),
    digestOf: async (repo, tag) => {
      const head = await endpoint.headManifest(repo, tag);
      if (head === undefined) return undefined;
      // A registry that names no digest on HEAD: the bytes say (and are verified).
      return head.digest !== "" ? head.digest : (await endpoint.getManifest(repo, tag))?.digest;
    },
    referrers: async (repo, digest) =>
      (await endpoint.referrers(repo, digest)).manifests.map((m) => m.digest),
    signed: async (repo, digest) =>
      (await endpoint.referrers(repo, digest)).manifests.some((m) =>
        isSignatureReferrer(m.artifactType, m.mediaType),
      ),
  };
}

/** `from` with every blob stream charged to the link's budget and counted. */
function metered(from: OciRegistry, ctx: TransferContext): OciRegistry {
  return {
    base: from.base,
    getManifest: (repo, ref) => from.getManifest(repo, ref),
    putManifest: (repo, ref, m) => from.putManifest(repo, ref, m),
    hasBlob: (repo, digest) => from.hasBlob(repo, digest),
    pushBlob: (repo, d, body, mountFrom) => from.pushBlob(repo, d, body, mountFrom),
    referrers: (repo, digest) => from.referrers(repo, digest),
    async getBlob(repo, digest) {
      const blob = await from.getBlob(repo, digest);
      const out = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          ctx.take(chunk.byteLength, ctx.signal).then(() => {
            if (ctx.signal.aborted) return done(ctx.signal.reason as Error);
            ctx.onBytes(chunk.byteLength);
            done(null, chunk);
          }, done);
        },
      });
      blob.stream.once("error", (err) => out.destroy(err));
      blob.stream.pipe(out);
      return { size: blob.size, stream: out };
    },
  };
}
