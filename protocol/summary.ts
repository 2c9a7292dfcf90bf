/**
 * State summaries for anti-entropy: a two-level hash tree. Each repository's
 * summary is a sha256 over its visible state (live tags with their digests,
 * live manifests, live blob links, as sorted lines); the root is a sha256
 * over the sorted (repository, summary) pairs. Two regions that agree on the
 * root agree on everything; where they differ, comparing the leaves names the
 * repositories to reconcile. Pure: the caller reads the state.
 */
import { createHash } from "node:crypto";

export interface RepoContent {
  tags: ReadonlyArray<{ tag: string; digest: string }>;
  manifests: readonly string[];
  blobs: readonly string[];
}

export interface RepoDigest {
  repo: string;
  /** "sha256:<hex>" over the repository's visible state. */
  digest: string;
  tags: number;
  manifests: number;
  blobs: number;
}

export function summarizeRepository(repo: string, content: RepoContent): RepoDigest {
  const hash = createHash("sha256");
  for (const t of [...content.tags].sort((a, b) => cmp(a.tag, b.tag)))
    hash.update(`tag ${t.tag} ${t.digest}\n`);
  for (const m of [...content.manifests].sort()) hash.update(`manifest ${m}\n`);
  for (const b of [...content.blobs].sort()) hash.update(`blob ${b}\n`);
  return {
    repo,
    digest: `sha256:${hash.digest("hex")}`,
    tags: content.tags.length,
    manifests: content.manifests.length,
    blobs: content.blobs.length,
  };
}

/** True when a repository holds nothing visible (such repositories are left out of summaries). */
export function isEmpty(summary: RepoDigest): boolean {
  return summary.tags === 0 && summary.manifests === 0 && summary.blobs === 0;
}

/** The root over repository summaries (any order in, same root out). */
export function summaryRoot(repos: ReadonlyArray<Pick<RepoDigest, "repo" | "digest">>): string {
  const hash = createHash("sha256");
  for (const r of [...repos].sort((a, b) => cmp(a.repo, b.repo))) hash.update(`${r.repo} ${r.digest}\n`);
  return `sha256:${hash.digest("hex")}`;
}

/** Repositories whose summaries differ between `here` and `there` (either side missing counts). */
export function differingRepositories(
  here: ReadonlyArray<Pick<RepoDigest, "repo" | "digest">>,
  there: ReadonlyArray<Pick<RepoDigest, "repo" | "digest">>,
): string[] {
  const mine = new Map(here.map((r) => [r.repo, r.digest]));
  const theirs = new Map(there.map((r) => [r.repo, r.digest]));
  const out = new Set<string>();
  for (const [repo, digest] of theirs) if (mine.get(repo) !== digest) out.add(repo);
  for (const [repo, digest] of mine) if (theirs.get(repo) !== digest) out.add(repo);
  return [...out].sort(cmp);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
