/**
 * The engine of `meridian import` (cli/import-command.ts parses the command
 * line and reaches the two registries): a plan, then the copies.
 *
 * Plan: the repositories (the catalog, or the names `--repos` gives
 * literally), each one's tags, the tags the filter selects, and for each
 * selected tag (2 × concurrency read at once) its manifest upstream (digest, media type, the size of its
 * closure without referrers, children of an index included). A tag is then
 * done already when the checkpoint holds it at that digest, or present when
 * Meridian's tag points at that digest (one HEAD): neither is copied again.
 * Copy: the rest, `concurrency` tags at a time, each tag's closure by
 * digest with mesh-client/oci-copy.ts's `copyClosure` through Meridian's own
 * OCI API (so the region appends its events and replicates by policy, and
 * the CLI user's rights and quotas apply), the tag last. Every tag finished
 * goes into the checkpoint (cli/import-checkpoint.ts).
 *
 * Interruption: `stop()` (the first SIGINT) starts no further tag; the tags
 * in flight finish; the result says `interrupted`.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Readable } from "node:stream";
import PQueue from "p-queue";
import { copyClosure } from "../mesh-client/oci-copy.js";
import {
  ExternalRegistryError,
  type ManifestBytes,
  type OciDescriptor,
  OciRegistryClient,
} from "../mesh-client/oci-registry-client.js";
import { parseDigest } from "../protocol/digest.js";
import {
  classifyFailure,
  destinationRepo,
  type ImportFilter,
  isDone,
  literalRepos,
  mediaTypeProblem,
  nameProblem,
  selectsImportTag,
  selectsRepo,
} from "../protocol/import-plan.js";
import { isIndexType } from "../protocol/media-types.js";

/** One tag's outcome. */
export interface TagOutcome {
  repo: string;
  tag: string;
  /** Where it lands in Meridian. */
  destination: string;
  digest?: string;
  /** Bytes of its closure (config and layers; an index's children's). */
  bytes?: number;
  reason?: string;
}

export interface ImportResult {
  repositories: number;
  copied: TagOutcome[];
  /** Found in Meridian at the same digest (nothing sent). */
  present: TagOutcome[];
  /** Finished by an earlier run at the same digest (the checkpoint). */
  resumed: TagOutcome[];
  skipped: TagOutcome[];
  failed: TagOutcome[];
  /** Dry run: what a run would copy. */
  wouldCopy: TagOutcome[];
  bytesCopied: number;
  interrupted: boolean;
}

export interface ImportHooks {
  /** A tag finished (copied or found present): record it. */
  finished(repo: string, tag: string, digest: string): void;
  /** The plan's progress (repositories listed of the total). */
  planning(done: number, total: number): void;
  /** The copy's progress. */
  copying(state: {
    bytes: number;
    totalBytes: number;
    tags: number;
    totalTags: number;
    repos: number;
    totalRepos: number;
  }): void;
  /** A line to show (a tag copied, failed or skipped while copying). */
  line(text: string): void;
}

export interface ImportOptions {
  source: OciRegistryClient;
  meridian: OciRegistryClient;
  filter: ImportFilter;
  checkpoint: { done: Record<string, string> } & Parameters<typeof isDone>[0];
  concurrency: number;
  dryRun: boolean;
  hooks: ImportHooks;
}

/** The catalog was refused: the caller says to name repositories with --repos. */
export class CatalogRefused extends Error {}

/** The source's errors, told apart from Meridian's. */
const fromSource = new WeakSet<object>();

/** The endpoint's client: every error it throws is marked as the source's. */
export class SourceClient extends OciRegistryClient {
  override getManifest(repository: string, reference: string) {
    return sourced(() => super.getManifest(repository, reference));
  }
  override getBlob(repository: string, digest: string) {
    return sourced(() => super.getBlob(repository, digest));
  }
  override referrers(repository: string, digest: string) {
    return sourced(() => super.referrers(repository, digest));
  }
  override listTags(repository: string, pageSize?: number) {
    return sourced(() => super.listTags(repository, pageSize));
  }
}

async function sourced<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (typeof err === "object" && err !== null) fromSource.add(err);
    throw err;
  }
}

/** The tag a blob upload belongs to (copies of several tags run at once). */
const currentJob = new AsyncLocalStorage<{ uploaded: number }>();

/** Meridian's client: counts the bytes each tag's copy uploads, for the progress. */
export class MeridianClient extends OciRegistryClient {
  override async pushBlob(
    repository: string,
    descriptor: { digest: string; size: number },
    body: () => Promise<Buffer | Readable>,
    mountFrom?: string,
  ): Promise<"mounted" | "uploaded"> {
    const how = await super.pushBlob(repository, descriptor, body, mountFrom);
    const job = currentJob.getStore();
    if (job !== undefined && how === "uploaded") job.uploaded += descriptor.size;
    return how;
  }
}

interface Job extends TagOutcome {
  digest: string;
  bytes: number;
  uploaded: number;
  state: "queued" | "copying" | "done";
}

export async function runImport(o: ImportOptions, signal: AbortSignal): Promise<ImportResult> {
  const result: ImportResult = {
    repositories: 0,
    copied: [],
    present: [],
    resumed: [],
    skipped: [],
    failed: [],
    wouldCopy: [],
    bytesCopied: 0,
    interrupted: false,
  };
  const repos = await repositories(o);
  result.repositories = repos.length;
  const jobs: Job[] = [];
  // Repositories listed a few at a time; their tags' manifests read by a shared, wider queue
  // (a repository of thousands of tags is not planned one request after another).
  const lister = new PQueue({ concurrency: o.concurrency });
  const reader = new PQueue({ concurrency: 2 * o.concurrency });
  let planned = 0;
  o.hooks.planning(0, repos.length);
  for (const repo of repos)
    void lister.add(async () => {
      if (signal.aborted) return;
      await planRepo(o, repo, result, jobs, reader, signal);
      o.hooks.planning(++planned, repos.length);
    });
  await lister.onIdle();
  await reader.onIdle();
  for (const list of [result.present, result.resumed, result.skipped, result.failed, jobs])
    list.sort(byRepoTag);
  if (signal.aborted) {
    result.interrupted = true;
    return result;
  }
  if (o.dryRun) {
    result.wouldCopy = jobs.map(outcome);
    return result;
  }
  if (jobs.length === 0) return result;

  const totalBytes = jobs.reduce((n, j) => n + j.bytes, 0);
  const jobRepos = new Set(jobs.map((j) => j.repo));
  const report = () => {
    let bytes = 0;
    let tags = 0;
    for (const j of jobs) {
      bytes += j.state === "done" ? j.bytes : Math.min(j.uploaded, j.bytes);
      if (j.state === "done") tags++;
    }
    const open = new Set(jobs.filter((j) => j.state !== "done").map((j) => j.repo));
    o.hooks.copying({
      bytes,
      totalBytes,
      tags,
      totalTags: jobs.length,
      repos: jobRepos.size - open.size,
      totalRepos: jobRepos.size,
    });
  };
  const ticker = setInterval(report, 250);
  const copier = new PQueue({ concurrency: o.concurrency });
  signal.addEventListener("abort", () => copier.clear(), { once: true });
  for (const job of jobs) void copier.add(() => copyJob(o, job, result).finally(report));
  report();
  try {
    await copier.onIdle();
  } finally {
    clearInterval(ticker);
  }
  report();
  result.interrupted = signal.aborted && jobs.some((j) => j.state === "queued");
  return result;
}

async function copyJob(o: ImportOptions, job: Job, result: ImportResult): Promise<void> {
  job.state = "copying";
  try {
    const copied = await currentJob.run(job, () =>
      copyClosure(
        o.source,
        o.meridian,
        { repository: job.repo, reference: job.tag },
        { repository: job.destination, reference: job.tag },
        { concurrency: 4 },
      ),
    );
    job.digest = copied.digest;
    result.bytesCopied += copied.bytesCopied;
    result.copied.push({ ...outcome(job), bytes: copied.bytesCopied });
    o.hooks.finished(job.repo, job.tag, copied.digest);
    o.hooks.line(`copied ${job.repo}:${job.tag} ${copied.digest} (${copied.blobsCopied} blobs sent)\n`);
  } catch (err) {
    const c = classify(err);
    (c.outcome === "skipped" ? result.skipped : result.failed).push({ ...outcome(job), reason: c.reason });
    o.hooks.line(`${c.outcome} ${job.repo}:${job.tag}: ${c.reason}\n`);
  } finally {
    job.state = "done";
  }
}

/** The repositories to import: named literally, or the catalog's that the filter selects. */
async function repositories(o: ImportOptions): Promise<string[]> {
  const named = literalRepos(o.filter);
  if (named !== undefined) return named;
  let all: string[];
  try {
    all = await o.source.catalog();
  } catch (err) {
    if (err instanceof ExternalRegistryError && err.status !== 0 && err.status < 500)
      throw new CatalogRefused(`${err.message}`);
    throw err;
  }
  return all.filter((r) => selectsRepo(o.filter, r)).sort();
}

async function planRepo(
  o: ImportOptions,
  repo: string,
  result: ImportResult,
  jobs: Job[],
  reader: PQueue,
  signal: AbortSignal,
): Promise<void> {
  const destination = destinationRepo(o.filter, repo);
  let tags: string[];
  try {
    tags = await o.source.listTags(repo);
  } catch (err) {
    const c = classify(err);
    (c.outcome === "skipped" ? result.skipped : result.failed).push({
      repo,
      tag: "*",
      destination,
      reason: `listing its tags: ${c.reason}`,
    });
    return;
  }
  if (tags.length === 0) {
    result.skipped.push({ repo, tag: "*", destination, reason: "no tags upstream (or repository unknown)" });
    return;
  }
  const reads: Array<Promise<void>> = [];
  for (const tag of new Set(tags)) {
    const base = { repo, tag, destination };
    if (!selectsImportTag(o.filter, tag)) {
      result.skipped.push({ ...base, reason: "tag excluded by --tags" });
      continue;
    }
    const bad = nameProblem(destination, tag);
    if (bad !== undefined) {
      result.skipped.push({ ...base, reason: bad });
      continue;
    }
    reads.push(
      reader.add(() =>
        signal.aborted ? Promise.resolve() : planTag(o, base, result, jobs),
      ) as Promise<void>,
    );
  }
  await Promise.all(reads);
}

/** One selected tag: its manifest upstream, then done before, present, or a job. */
async function planTag(
  o: ImportOptions,
  base: { repo: string; tag: string; destination: string },
  result: ImportResult,
  jobs: Job[],
): Promise<void> {
  const { repo, tag, destination } = base;
  try {
    const root = await o.source.getManifest(repo, tag);
    if (root === undefined) {
      result.skipped.push({ ...base, reason: "manifest unknown upstream (deleted meanwhile?)" });
      return;
    }
    const unsupported = mediaTypeProblem(root.mediaType);
    if (unsupported !== undefined) {
      result.skipped.push({ ...base, digest: root.digest, reason: unsupported });
      return;
    }
    if (isDone(o.checkpoint, repo, tag, root.digest)) {
      result.resumed.push({ ...base, digest: root.digest });
      return;
    }
    const there = await o.meridian.headManifest(destination, tag);
    if (there?.digest === root.digest) {
      result.present.push({ ...base, digest: root.digest });
      if (!o.dryRun) o.hooks.finished(repo, tag, root.digest);
      return;
    }
    const bytes = await closureBytes(o.source, repo, root);
    jobs.push({ ...base, digest: root.digest, bytes, uploaded: 0, state: "queued" });
  } catch (err) {
    const c = classify(err);
    (c.outcome === "skipped" ? result.skipped : result.failed).push({ ...base, reason: c.reason });
  }
}

function byRepoTag(a: { repo: string; tag: string }, b: { repo: string; tag: string }): number {
  return a.repo < b.repo ? -1 : a.repo > b.repo ? 1 : a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0;
}

/** The bytes of a manifest's config and layers, an index's children's included (referrers not). */
async function closureBytes(source: OciRegistryClient, repo: string, m: ManifestBytes): Promise<number> {
  const parsed = JSON.parse(m.bytes.toString("utf8")) as {
    manifests?: OciDescriptor[];
    config?: OciDescriptor;
    layers?: OciDescriptor[];
  };
  const size = (d: OciDescriptor | undefined) => (typeof d?.size === "number" && d.size > 0 ? d.size : 0);
  if (isIndexType(m.mediaType) || Array.isArray(parsed.manifests)) {
    let n = 0;
    for (const child of (parsed.manifests ?? []).slice(0, 1000)) {
      const c = await source.getManifest(repo, parseDigest(child.digest));
      if (c !== undefined && !isIndexType(c.mediaType)) n += await closureBytes(source, repo, c);
    }
    return n;
  }
  return size(parsed.config) + (parsed.layers ?? []).reduce((n, l) => n + size(l), 0);
}

function outcome(j: Job): TagOutcome {
  return { repo: j.repo, tag: j.tag, destination: j.destination, digest: j.digest, bytes: j.bytes };
}

function classify(err: unknown): { outcome: "skipped" | "failed"; reason: string } {
  if (err instanceof ExternalRegistryError)
    return classifyFailure({
      side: fromSource.has(err) ? "source" : "meridian",
      ociCode: err.ociCode,
      status: err.status,
      message: err.message,
    });
  return { outcome: "failed", reason: (err as Error)?.message ?? String(err) };
}
