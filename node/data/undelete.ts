/**
 * Undelete: deleted content restored within the undelete window, as new
 * writes through the commit step (./commit-step.ts). Registry.undelete
 * (./registry.ts) calls it; the admin API's `POST .../undelete` reaches it.
 */
import type { Digest } from "../../protocol/digest.js";
import { UndeleteError } from "../../protocol/errors.js";
import type { EventBody, ManifestPushed } from "../../protocol/events.js";
import type { BlobStore } from "./blob-store.js";
import type { CommitStep } from "./commit-step.js";
import type { MetadataView } from "./view.js";

/** What to restore: a whole repository, one tag, or one manifest. */
export type UndeleteTarget = { tag: string } | { digest: Digest } | Record<string, never>;

export interface UndeleteContext {
  store: BlobStore;
  view: MetadataView;
  commits: CommitStep;
  /** How long deleted content stays restorable. */
  undeleteWindowMs: number;
}

/**
 * Restore deleted content within the undelete window, as new writes (so
 * they replicate, and win over the deletion everywhere): a manifest (its
 * tags come back with it), a tag (at the digest it last had, its manifest
 * too if that was deleted), or a repository (everything its deletion
 * removed). The bytes must still be in the blob store.
 */
export async function undelete(
  ctx: UndeleteContext,
  repo: string,
  target: UndeleteTarget,
  actor: string,
  now = Date.now(),
): Promise<{ restored: string[] }> {
  const restored: string[] = [];
  const recent = (at: string) => now - Date.parse(at) <= ctx.undeleteWindowMs;
  const restoreManifest = async (digest: Digest) => {
    const register = await ctx.view.content.manifestRegister(repo, digest);
    if (register === undefined || register.live) return;
    if (register.record === null || (await ctx.store.stat(digest)) === undefined)
      throw new UndeleteError(`manifest ${digest} cannot be restored: its content is gone`);
    if (!recent(register.w.at))
      throw new UndeleteError(`manifest ${digest} was deleted outside the undelete window`);
    for (const blob of register.record.blobs) {
      const size = await ctx.store.stat(blob);
      if (size === undefined)
        throw new UndeleteError(`manifest ${digest} cannot be restored: blob ${blob} is gone`);
      if ((await ctx.view.content.blobLink(repo, blob)) === undefined)
        await ctx.commits.commit({ type: "blob.pushed", repo, digest: blob, size }, actor);
    }
    for (const child of register.record.manifests) await restoreManifest(child);
    const r = register.record;
    const body: EventBody<ManifestPushed> = {
      type: "manifest.pushed",
      repo,
      digest,
      mediaType: r.mediaType,
      size: r.size,
      blobs: r.blobs,
      manifests: r.manifests,
      subject: r.subject,
      artifactType: r.artifactType,
      annotations: r.annotations,
      platforms: r.platforms,
    };
    await ctx.commits.commit(body, actor);
    restored.push(`manifest ${digest}`);
  };
  const restoreTag = async (tag: string, deletedAfter?: string) => {
    if ((await ctx.view.content.visibleTag(repo, tag)) !== undefined) return;
    const history = await ctx.view.content.tagHistory(repo, tag);
    const record = await ctx.view.content.tagRecord(repo, tag);
    // The deletion: the tombstone standing now, else the repository's barrier.
    const deletion = record?.digest === null ? record.at : deletedAfter;
    const last = history
      .filter((h) => h.digest !== null && (deletion === undefined || h.w.at <= deletion))
      .at(-1);
    if (last === undefined || last.digest === null)
      throw new UndeleteError(`tag ${tag} has no earlier value to restore`);
    if (deletion !== undefined && !recent(deletion))
      throw new UndeleteError(`tag ${tag} was deleted outside the undelete window`);
    await restoreManifest(last.digest);
    if ((await ctx.view.content.visibleTag(repo, tag)) === last.digest) return;
    await ctx.commits.commitTag({ type: "tag.set", repo, tag, digest: last.digest }, actor);
    restored.push(`tag ${tag} → ${last.digest}`);
  };
  if ("tag" in target) await restoreTag(target.tag as string);
  else if ("digest" in target) await restoreManifest(target.digest as Digest);
  else {
    const state = await ctx.view.content.repoState(repo);
    const barrier = state.deleted;
    if (barrier === undefined) throw new UndeleteError(`repository ${repo} was not deleted`);
    if (!recent(barrier.at))
      throw new UndeleteError(`repository ${repo} was deleted outside the undelete window`);
    for (const m of state.manifests)
      if (!m.register.live && m.register.w.id === barrier.id) await restoreManifest(m.digest);
    const tags = new Set(state.tags.map((t) => t.tag));
    for (const raw of await ctx.view.content.historicTags(repo)) tags.add(raw);
    for (const tag of tags) await restoreTag(tag, barrier.at).catch(() => undefined);
  }
  if (restored.length === 0) throw new UndeleteError("nothing to restore");
  return { restored };
}
