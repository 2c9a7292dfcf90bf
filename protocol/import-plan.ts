/**
 * The decisions of `meridian import` (issue 17, item 4; cli/import-command.ts
 * does the IO): which repositories and tags an import selects, where each
 * lands in Meridian, which manifests it can carry, why a tag was skipped or
 * failed, and the checkpoint that makes a run resumable. Pure: no IO, no
 * clock.
 *
 * Choices where the issue is silent:
 * - `--repos` are picomatch globs over the full repository name, read as a
 *   replication policy reads `repositories.include` (`team/**`); none given
 *   selects every repository the catalog lists.
 * - `--tags` take the forms a policy's `tags.include` takes (`v*`,
 *   `glob:…`, `regex:…`, `semver:…`); a tag is selected when any matches.
 *   Prefix one with `!` to exclude (an exclude always wins, as in policies).
 * - `--to-prefix P` puts repository R at `P/R` in Meridian.
 * - A Docker schema 1 manifest and any media type other than the OCI and
 *   Docker v2 manifests and indexes are skipped with the reason, never
 *   converted: converting would change the digest.
 * - A failure the other side states for one tag (blob unknown upstream, quota
 *   exceeded, denied, name invalid) is a skip with that reason when it is
 *   about content or rights, a failure otherwise (transport, 5xx, a digest
 *   mismatch): the report and the exit code tell the two apart.
 */
import { MANIFEST_MEDIA_TYPES } from "./media-types.js";
import { isTag, parseRepository } from "./names.js";
import { globMatch, tagMatches } from "./policy-match.js";
import { checkGlob, tagMatcher } from "./policy-parse.js";
import type { TagMatcher } from "./policy-types.js";

export interface ImportFilter {
  /** picomatch globs over the full repository name; empty selects every repository. */
  repos: string[];
  /** Tags selected (any matches); empty selects every tag. */
  include: TagMatcher[];
  /** Tags never selected (an exclude wins). */
  exclude: TagMatcher[];
  /** Destination prefix without a trailing slash, or "" for none. */
  prefix: string;
}

/** The filter from the command line's options; every problem listed (a usage error when any). */
export function parseImportFilter(
  repos: readonly string[],
  tags: readonly string[],
  prefix: string | undefined,
): { filter: ImportFilter; problems: string[] } {
  const problems: string[] = [];
  const bad = (field: string, problem: string) => problems.push(`${field}: ${problem}`);
  const filter: ImportFilter = { repos: [], include: [], exclude: [], prefix: "" };
  for (const r of repos) if (checkGlob(r, `--repos ${r}`, bad)) filter.repos.push(r);
  for (const t of tags) {
    const negated = t.startsWith("!");
    const m = tagMatcher(negated ? t.slice(1) : t, `--tags ${t}`, bad);
    if (m !== undefined) (negated ? filter.exclude : filter.include).push(m);
  }
  if (prefix !== undefined) {
    const p = prefix.replace(/\/+$/, "");
    if (!isRepositoryName(p)) bad("--to-prefix", `${JSON.stringify(prefix)} is not a repository name prefix`);
    else filter.prefix = p;
  }
  return { filter, problems };
}

/** Whether the filter selects a repository (by its name at the source). */
export function selectsRepo(filter: ImportFilter, repo: string): boolean {
  return filter.repos.length === 0 || filter.repos.some((g) => globMatch(g, repo));
}

/** Whether the filter selects a tag. */
export function selectsImportTag(filter: ImportFilter, tag: string): boolean {
  if (filter.exclude.some((m) => tagMatches(m, tag))) return false;
  return filter.include.length === 0 || filter.include.some((m) => tagMatches(m, tag));
}

/** Whether `--repos` names repositories literally (no glob characters): the catalog is then not needed. */
export function literalRepos(filter: ImportFilter): string[] | undefined {
  if (filter.repos.length === 0) return undefined;
  return filter.repos.every((r) => !/[*?[\]{}()!+@]/.test(r)) ? [...filter.repos] : undefined;
}

/** Where a source repository lands in Meridian. */
export function destinationRepo(filter: ImportFilter, repo: string): string {
  return filter.prefix === "" ? repo : `${filter.prefix}/${repo}`;
}

/** A repository name Meridian accepts (protocol/names.ts's grammar, without throwing). */
export function isRepositoryName(name: string): boolean {
  try {
    parseRepository(name);
    return true;
  } catch {
    return false;
  }
}

/** Why a tag is not copied before anything is asked of Meridian (undefined: copy it). */
export function nameProblem(destination: string, tag: string): string | undefined {
  if (!isRepositoryName(destination)) return `name invalid in Meridian: ${destination}`;
  if (!isTag(tag)) return `tag invalid in Meridian: ${tag}`;
  return undefined;
}

const SCHEMA1 = new Set([
  "application/vnd.docker.distribution.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
]);

/** Why a manifest of this media type is not copied (undefined: it is). */
export function mediaTypeProblem(mediaType: string): string | undefined {
  if (SCHEMA1.has(mediaType))
    return "schema1 manifest (Docker schema 1 is not carried; re-push it as v2/OCI)";
  if (!MANIFEST_MEDIA_TYPES.has(mediaType))
    return `manifest media type unsupported: ${mediaType === "" ? "(none)" : mediaType}`;
  return undefined;
}

/** An error one side of a copy answered, as the CLI saw it. */
export interface CopyFailure {
  /** Which registry answered: the source (upstream) or Meridian. */
  side: "source" | "meridian";
  /** The OCI error code (or a transport reason: TIMEOUT, CONNECT, DIGEST_MISMATCH). */
  ociCode: string;
  /** HTTP status, 0 for none. */
  status: number;
  message: string;
}

/** A failure as the report shows it: a skip (content or rights) or a failure (retry may help). */
export function classifyFailure(f: CopyFailure): { outcome: "skipped" | "failed"; reason: string } {
  // Bytes that are not their digest: upstream sent them (the OCI client checks), wherever it surfaced.
  if (f.ociCode === "DIGEST_MISMATCH") return { outcome: "failed", reason: `digest mismatch: ${f.message}` };
  if (f.side === "source") {
    if (f.ociCode === "BLOB_UNKNOWN") return { outcome: "skipped", reason: "blob unknown upstream" };
    if (f.ociCode === "MANIFEST_UNKNOWN")
      return { outcome: "skipped", reason: "manifest unknown upstream (deleted meanwhile?)" };
    if (f.ociCode === "UNAUTHORIZED" || f.ociCode === "DENIED" || f.status === 403)
      return { outcome: "skipped", reason: `denied upstream: ${f.message}` };
    return { outcome: "failed", reason: `upstream: ${f.message}` };
  }
  if (f.ociCode === "DENIED" && /quota/i.test(f.message))
    return { outcome: "skipped", reason: `quota exceeded: ${f.message}` };
  if (f.ociCode === "DENIED" || f.ociCode === "UNAUTHORIZED" || f.status === 403)
    return { outcome: "skipped", reason: `denied by Meridian: ${f.message}` };
  if (f.ociCode === "NAME_INVALID")
    return { outcome: "skipped", reason: `name invalid in Meridian: ${f.message}` };
  if (
    f.ociCode === "MANIFEST_INVALID" ||
    f.ociCode === "MANIFEST_BLOB_UNKNOWN" ||
    f.ociCode === "UNSUPPORTED"
  )
    return { outcome: "skipped", reason: `refused by Meridian (${f.ociCode}): ${f.message}` };
  return { outcome: "failed", reason: `Meridian: ${f.message}` };
}

/**
 * The checkpoint of an import: where it copies from and to, and every
 * (repository, tag) finished with the digest it had. A tag is done when
 * the checkpoint holds it with the digest upstream has now; a tag that
 * moved upstream is copied again.
 */
export interface ImportCheckpoint {
  version: 1;
  /** The endpoint's name and URL, the region, the prefix: a checkpoint is for one import. */
  endpoint: string;
  url: string;
  region: string;
  prefix: string;
  /** "repo:tag" → digest, finished (copied, or found already present). */
  done: Record<string, string>;
}

export function emptyCheckpoint(of: Omit<ImportCheckpoint, "version" | "done">): ImportCheckpoint {
  return { version: 1, ...of, done: {} };
}

/** A checkpoint read back; throws with what is wrong (not JSON, wrong shape). */
export function parseCheckpoint(text: string): ImportCheckpoint {
  const v = JSON.parse(text) as Partial<ImportCheckpoint>;
  if (
    v === null ||
    typeof v !== "object" ||
    v.version !== 1 ||
    typeof v.endpoint !== "string" ||
    typeof v.url !== "string" ||
    typeof v.region !== "string" ||
    typeof v.prefix !== "string" ||
    v.done === null ||
    typeof v.done !== "object" ||
    Object.values(v.done).some((d) => typeof d !== "string")
  )
    throw new Error("not a meridian import checkpoint (version 1)");
  return v as ImportCheckpoint;
}

/** Why a checkpoint written for another import does not fit this one (undefined: it fits). */
export function checkpointMismatch(
  c: ImportCheckpoint,
  of: Omit<ImportCheckpoint, "version" | "done">,
): string | undefined {
  for (const k of ["endpoint", "url", "region", "prefix"] as const)
    if (c[k] !== of[k])
      return `it was written for ${k} ${JSON.stringify(c[k])}, not ${JSON.stringify(of[k])}`;
  return undefined;
}

export function checkpointKey(repo: string, tag: string): string {
  return `${repo}:${tag}`;
}

/** Whether the checkpoint already finished this tag at this digest. */
export function isDone(c: ImportCheckpoint, repo: string, tag: string, digest: string): boolean {
  return c.done[checkpointKey(repo, tag)] === digest;
}
