/**
 * Deletions that would take away an immutable tag (protocol/immutable-tags.ts):
 * deleting the manifest a protected tag points at hides the tag (a tag is
 * visible only while its manifest is live), and deleting the repository
 * hides all of them, so both are refused like a tag delete (403 DENIED
 * naming the rule), as Harbor refuses deleting an artifact that carries an
 * immutable tag. Checked where the write is made, like the tag check in
 * ./commit-step.ts; nothing is read unless a rule covers the repository.
 *
 * Only this region's rules as they are now count: a deletion made in a
 * region that had not heard of a rule yet still replicates (the view does
 * not refuse `manifest.deleted`); the undelete window brings it back.
 */
import { TagImmutableError } from "../../protocol/errors.js";
import type { MetadataView } from "./view.js";

/** Throw TagImmutableError if deleting `digest` (or, without it, the whole repository) would hide a protected tag. */
export async function refuseProtectedDelete(
  view: MetadataView,
  repo: string,
  digest?: string,
): Promise<void> {
  const rules = view.content.immutability;
  if (rules.rules().length === 0) return;
  for (const { tag, digest: tagged } of await view.content.liveTags(repo)) {
    if (digest !== undefined && tagged !== digest) continue;
    const rule = rules.protectingNow(repo, tag);
    if (rule === undefined) continue;
    const what = digest === undefined ? `repository ${repo}` : `manifest ${digest} of ${repo}`;
    throw new TagImmutableError(
      `${what} carries tag ${tag}, which is immutable (rule ${rule}): delete refused`,
      { detail: { repo, tag, rule, digest: tagged } },
    );
  }
}
