/**
 * Manifest push: the write path of `PUT /v2/<name>/manifests/<reference>`.
 * A manifest is accepted when its digest matches, it parses, and everything
 * it references is already in the repository (looked at again once the view
 * has caught up with the log, for content pushed through another node of
 * the region a moment ago); its exact bytes are stored, then
 * `manifest.pushed` (by tag, with the tag in the same event) or `tag.set` is
 * committed through the commit step (./commit-step.ts). For a `sync(k)`
 * repository the push returns only once k other regions hold it.
 * Registry.putManifest (./registry.ts) calls it.
 */
import { algorithmOf, type Digest, digestOf } from "../../protocol/digest.js";
import {
  DigestMismatchError,
  ManifestReferenceError,
  ManifestTooLargeError,
  ReplicationPendingError,
} from "../../protocol/errors.js";
import { type EventBody, type ManifestPushed, parseDurability } from "../../protocol/events.js";
import { parseManifest } from "../../protocol/manifest.js";
import type { BlobStore } from "./blob-store.js";
import type { CommitStep } from "./commit-step.js";
import type { CatchUpOnMiss } from "./log-follow.js";
import type { QuotaGate } from "./quota-gate.js";
import type { Reference, RegionLink } from "./registry.js";
import type { MetadataView } from "./view.js";

export interface ManifestPushContext {
  region: string;
  store: BlobStore;
  view: MetadataView;
  commits: CommitStep;
  /** Brings the view up to what the log holds (a second look at missing references). */
  catchUp: Pick<CatchUpOnMiss, "request">;
  /** Largest manifest accepted, in bytes (larger: ManifestTooLargeError). */
  maxManifestBytes: number;
  /** The other regions, for `sync(k)`; undefined for a region on its own. */
  mesh: Pick<RegionLink, "waitReplicated"> | undefined;
  /** How long a `sync(k)` push waits for k other regions. */
  syncTimeoutMs: number;
  /** Project quotas (./quota-gate.ts): a new manifest's bytes are admitted before they are stored. */
  quota?: QuotaGate;
}

/**
 * Accept a manifest: verify its digest, validate it, check that everything
 * it references is in the repository, store its exact bytes, then commit
 * `manifest.pushed` (unless already present) and, by tag, `tag.set`.
 * Resolves with its digest, its subject and the sequence of the commit (this
 * view's position when nothing was new).
 */
export async function pushManifest(
  ctx: ManifestPushContext,
  repo: string,
  reference: Reference,
  bytes: Buffer,
  contentType: string | undefined,
  actor: string,
): Promise<{ digest: Digest; subject?: Digest; seq: number }> {
  if (bytes.byteLength > ctx.maxManifestBytes) {
    throw new ManifestTooLargeError(`manifest larger than ${ctx.maxManifestBytes} bytes`);
  }
  const digest =
    "digest" in reference ? digestOf(bytes, algorithmOf(reference.digest)) : digestOf(bytes, "sha256");
  if ("digest" in reference && digest !== reference.digest) {
    throw new DigestMismatchError("manifest does not match digest", {
      detail: { expected: reference.digest, actual: digest },
    });
  }
  const parsed = parseManifest(bytes, contentType);
  let missing = await missingReferences(ctx.view, repo, parsed);
  if (missing.length > 0) {
    // Pushed through another node of the region a moment ago? Look again once caught up.
    await ctx.catchUp.request();
    missing = await missingReferences(ctx.view, repo, parsed);
  }
  if (missing.length > 0) {
    throw new ManifestReferenceError("manifest references unknown blobs or manifests", {
      detail: { missing },
    });
  }
  // Its references are linked into the repository already (checked above): only its own bytes can be new.
  const isNew = (await ctx.view.content.manifest(repo, digest)) === undefined;
  const release =
    isNew && ctx.quota !== undefined ? await ctx.quota.admit(repo, digest, bytes.byteLength) : undefined;
  try {
    return await commitManifest(ctx, repo, reference, bytes, digest, parsed, isNew, actor);
  } finally {
    release?.();
  }
}

/** Store the manifest's bytes and commit it (and its tag), then wait for its durability. */
async function commitManifest(
  ctx: ManifestPushContext,
  repo: string,
  reference: Reference,
  bytes: Buffer,
  digest: Digest,
  parsed: ReturnType<typeof parseManifest>,
  isNew: boolean,
  actor: string,
): Promise<{ digest: Digest; subject?: Digest; seq: number }> {
  await ctx.store.writeAll(bytes, digest);
  const tag = "tag" in reference ? reference.tag : undefined;
  let seq = ctx.view.appliedSeq;
  if (isNew) {
    const body: EventBody<ManifestPushed> = {
      type: "manifest.pushed",
      repo,
      digest,
      mediaType: parsed.mediaType,
      size: bytes.byteLength,
      blobs: parsed.blobs,
      manifests: parsed.manifests,
      subject: parsed.subject,
      artifactType: parsed.artifactType,
      annotations: parsed.annotations,
      platforms: parsed.platforms,
      tag,
    };
    // By tag, manifest and tag are one event (on the tag's subject): never one without the other.
    seq =
      tag === undefined
        ? await ctx.commits.commit(body, actor)
        : await ctx.commits.commitTag({ ...body, tag }, actor);
  } else if (tag !== undefined) {
    seq = await ctx.commits.commitTag({ type: "tag.set", repo, tag, digest }, actor);
  }
  await awaitDurability(ctx, repo, digest);
  return { digest, subject: parsed.subject, seq };
}

/** What a manifest refers to that `repo` does not hold (blobs, then child manifests). */
async function missingReferences(
  view: MetadataView,
  repo: string,
  parsed: { blobs: Digest[]; manifests: Digest[] },
): Promise<Digest[]> {
  const missing: Digest[] = [];
  for (const blob of parsed.blobs) {
    if ((await view.content.blobLink(repo, blob)) === undefined) missing.push(blob);
  }
  for (const child of parsed.manifests) {
    if ((await view.content.manifest(repo, child)) === undefined) missing.push(child);
  }
  return missing;
}

/**
 * For a `sync(k)` repository, return only once k other regions hold the
 * manifest (and so everything it references). Runs on every push,
 * including a repeated one, so a client retrying after a timeout is
 * acknowledged exactly when the condition holds.
 */
async function awaitDurability(ctx: ManifestPushContext, repo: string, digest: Digest): Promise<void> {
  const copies = parseDurability(ctx.view.content.configFor(repo).durability) ?? 0;
  if (copies === 0) return;
  if (ctx.mesh === undefined) {
    throw new ReplicationPendingError(`${repo} is sync(${copies}) but this region has no mesh to copy to`, {
      detail: { repo, digest, required: copies, held: [] },
    });
  }
  const { regions, satisfied } = await ctx.mesh.waitReplicated(repo, digest, copies, ctx.syncTimeoutMs);
  if (!satisfied) {
    throw new ReplicationPendingError(
      `${repo}@${digest} is stored in region ${ctx.region} but ${regions.length} of the ${copies} other regions sync(${copies}) requires hold it after ${ctx.syncTimeoutMs} ms; not acknowledged, retry the push`,
      { detail: { repo, digest, required: copies, held: regions } },
    );
  }
}
