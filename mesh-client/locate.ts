/**
 * Where an artifact is in the mesh (`meridian replication status`, the
 * dashboard's search): REPO@DIGEST or REPO:TAG → per region present,
 * pending, failed, deleted, not selected, absent or unknown, with the digest
 * each region serves for a tag.
 *
 * From every region's admin API, asked at once, each within `timeoutMs`:
 *   GET /artifacts/<repo>@<digest> | /artifacts/<repo>:<tag>
 *       what the region holds (node/http/admin/repositories.ts);
 * then, only when some region does not hold it, from one region that answered:
 *   GET /policies                  which policies would send it there;
 *   GET /activity?kind=replication-failed
 *       the replications given up on (replication/worker.ts REPLICATION_FAILED);
 * and from each such region's worker its own failure report (`/failures` on
 * its metrics port, when mesh.json names it). A region that does not answer
 * within the deadline is `unknown`: the whole call takes about two deadlines
 * at most, whatever the regions do.
 *
 * A tag's states are relative to one digest: the one the repository's home
 * region serves (rule home-region), else the one most regions serve (a tie:
 * the most recently written). A region serving another digest, or none, is
 * then failed, pending or not selected for that digest, as a region without
 * a digest is.
 */
import { type Digest, parseDigest } from "../protocol/digest.js";
import { NameInvalidError } from "../protocol/errors.js";
import type { Mesh, RegionEndpoints } from "../protocol/mesh.js";
import { parseRepository, parseTag } from "../protocol/names.js";
import { effectivePolicies, type Policy, selectsRepository, validPolicies } from "../protocol/policy.js";
import { AdminReadError, adminGet } from "./admin-read.js";

export type RegionState =
  | "present"
  | "pending"
  | "failed"
  | "deleted"
  | "not selected"
  | "absent"
  | "unknown";

export interface RegionLocation {
  region: string;
  state: RegionState;
  /** The digest the region serves (for a tag: whatever it serves, even another one). */
  digest?: string;
  /** Why, in words: the tags it has, the policies sending it, the failure's reason, the error. */
  detail: string;
}

export interface Location {
  reference: string;
  repository: string;
  tag?: string;
  /** The digest asked for, or the one the tag's states are relative to (absent: no region serves the tag). */
  digest?: string;
  /** Every region of the mesh, in mesh.json's order. */
  regions: RegionLocation[];
}

export interface LocateOptions {
  /** The caller's `authorization` header for the admin APIs (a system admin's or an operator's). */
  authorization?: string;
  /** Each region's answer, at most (default 5 s). */
  timeoutMs?: number;
}

/** A reference: REPO@DIGEST or REPO:TAG. Throws NameInvalidError, TagInvalidError or DigestInvalidError (400s). */
export function parseReference(reference: string): { repository: string; tag?: string; digest?: Digest } {
  const at = reference.lastIndexOf("@");
  if (at >= 0)
    return {
      repository: parseRepository(reference.slice(0, at)),
      digest: parseDigest(reference.slice(at + 1)),
    };
  const colon = reference.lastIndexOf(":");
  // A name has no ":" (protocol/names.ts): without one the reference names no artifact.
  if (colon < 0)
    throw new NameInvalidError(
      `want REPO:TAG or REPO@DIGEST, got ${JSON.stringify(reference.slice(0, 300))}`,
    );
  return {
    repository: parseRepository(reference.slice(0, colon)),
    tag: parseTag(reference.slice(colon + 1)),
  };
}

/** What a region answers for a digest or a tag (node/http/admin/repositories.ts). */
interface Artifact {
  present: boolean;
  /** For a tag: the digest served (null: none). */
  digest?: string | null;
  tags?: string[];
  home?: string;
  at?: string;
  deleted?: { at: string };
}

interface Failure {
  reason: string;
  at: string;
  from: string;
}

export async function locate(mesh: Mesh, reference: string, options: LocateOptions = {}): Promise<Location> {
  const ref = parseReference(reference);
  const { repository: repo, tag } = ref;
  const read = { authorization: options.authorization, timeoutMs: options.timeoutMs };
  const path = `/artifacts/${repo}${tag === undefined ? `@${ref.digest}` : `:${tag}`}`;
  const answers = await Promise.all(
    mesh.regions.map((r) => adminGet<Artifact>(mesh, r, path, read).catch((err: Error) => err)),
  );
  const served = (a: Artifact | Error) =>
    a instanceof Error ? undefined : tag === undefined ? undefined : a.digest;
  const digest = tag === undefined ? ref.digest : tagDigest(mesh, answers);
  const holds = (a: Artifact | Error): boolean =>
    !(a instanceof Error) && a.present && (tag === undefined || a.digest === digest);
  const holders = mesh.regions.filter((_, i) => holds(answers[i]!)).map((r) => r.name);

  // What it takes to tell pending from failed and not selected, only when some region lacks it.
  const lacking = mesh.regions.filter((_, i) => {
    const a = answers[i]!;
    return !(a instanceof Error) && !holds(a) && a.deleted === undefined;
  });
  const answered = mesh.regions.filter((_, i) => !(answers[i] instanceof Error));
  const [policies, gaveUp, reports] =
    lacking.length > 0 && digest !== undefined
      ? await Promise.all([
          // Asked of regions that answered a moment ago; if none answers now, no policy and no
          // failure is known (the lacking regions read as not selected) rather than no result at all.
          firstAnswer(answered, (r) => policiesOf(mesh, r, read)).catch((): Policy[] => []),
          firstAnswer(answered, (r) => failuresOf(mesh, r, repo, digest, read)).catch(
            () => new Map<string, Failure>(),
          ),
          Promise.all(lacking.map((r) => workerFailure(r, `${repo}@${digest}`, options.timeoutMs))),
        ])
      : [[], new Map<string, Failure>(), []];

  const regions: RegionLocation[] = mesh.regions.map((r, i): RegionLocation => {
    const a = answers[i]!;
    if (a instanceof Error) return { region: r.name, state: "unknown", detail: a.message };
    const serving = served(a) ?? undefined;
    const withDigest = (out: RegionLocation): RegionLocation =>
      serving === undefined || serving === null ? out : { ...out, digest: serving };
    if (holds(a))
      return {
        region: r.name,
        state: "present",
        digest: digest!,
        detail: a.tags !== undefined && a.tags.length > 0 ? `tags: ${a.tags.join(", ")}` : "",
      };
    if (a.deleted !== undefined)
      return withDigest({ region: r.name, state: "deleted", detail: `deleted ${a.deleted.at}` });
    const absent = (): RegionLocation =>
      withDigest({
        region: r.name,
        state: "absent",
        detail: tag === undefined ? "no region holds it" : "no region serves the tag",
      });
    if (digest === undefined) return absent();
    const given = gaveUp.get(r.name);
    if (given !== undefined)
      return withDigest({ region: r.name, state: "failed", detail: `${given.reason} (gave up ${given.at})` });
    const report = reports[lacking.indexOf(r)];
    if (report !== undefined)
      return withDigest({ region: r.name, state: "failed", detail: `${report.reason} (${report.from})` });
    if (holders.length === 0) return absent();
    const by = new Set<string>();
    for (const source of holders)
      for (const p of effectivePolicies(policies, source, r.name))
        if (selectsRepository(p, repo)) by.add(p.name);
    const other = serving !== undefined && serving !== null ? `; serves ${serving}` : "";
    return withDigest(
      by.size > 0
        ? { region: r.name, state: "pending", detail: `policy ${[...by].sort(cmp).join(", ")}${other}` }
        : { region: r.name, state: "not selected", detail: other.slice(2) },
    );
  });
  return {
    reference,
    repository: repo,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
    regions,
  };
}

/**
 * The digest a tag's states are relative to: the home region's (when the
 * repository has one and it answered), else the most served (a tie: the
 * most recently written). Pure.
 */
export function tagDigest(mesh: Mesh, answers: ReadonlyArray<Artifact | Error>): string | undefined {
  const home = answers.find((a): a is Artifact => !(a instanceof Error) && a.home !== undefined)?.home;
  const homeIndex = mesh.regions.findIndex((r) => r.name === home);
  const homeAnswer = homeIndex < 0 ? undefined : answers[homeIndex];
  if (homeAnswer !== undefined && !(homeAnswer instanceof Error) && typeof homeAnswer.digest === "string")
    return homeAnswer.digest;
  const votes = new Map<string, { count: number; at: string }>();
  for (const a of answers) {
    if (a instanceof Error || typeof a.digest !== "string") continue;
    const v = votes.get(a.digest) ?? { count: 0, at: "" };
    v.count++;
    if ((a.at ?? "") > v.at) v.at = a.at ?? "";
    votes.set(a.digest, v);
  }
  let best: [string, { count: number; at: string }] | undefined;
  for (const entry of votes)
    if (
      best === undefined ||
      entry[1].count > best[1].count ||
      (entry[1].count === best[1].count && entry[1].at > best[1].at)
    )
      best = entry;
  return best?.[0];
}

/** `ask` of each region in turn until one answers; the last failure when none did. */
async function firstAnswer<T>(
  regions: RegionEndpoints[],
  ask: (r: RegionEndpoints) => Promise<T>,
): Promise<T> {
  let failure: unknown = new AdminReadError("no region answered");
  for (const r of regions) {
    try {
      return await ask(r);
    } catch (err) {
      failure = err;
    }
  }
  throw failure;
}

async function policiesOf(mesh: Mesh, region: RegionEndpoints, read: ReadOptions): Promise<Policy[]> {
  const { policies } = await adminGet<{ policies: Array<{ policy: unknown }> }>(
    mesh,
    region,
    "/policies",
    read,
  );
  return validPolicies(policies);
}

/** The replications of `repo@digest` given up on, by destination region (the newest). */
async function failuresOf(
  mesh: Mesh,
  region: RegionEndpoints,
  repo: string,
  digest: string,
  read: ReadOptions,
): Promise<Map<string, Failure>> {
  const { items } = await adminGet<{
    items: Array<{ at: string; summary: string; detail?: Record<string, unknown> }>;
  }>(mesh, region, "/activity?kind=replication-failed&limit=500", read);
  const out = new Map<string, Failure>();
  for (const item of items) {
    const d = item.detail ?? {};
    if (d.repo !== repo || d.digest !== digest || typeof d.destination !== "string") continue;
    if (!out.has(d.destination))
      out.set(d.destination, { at: item.at, reason: String(d.reason ?? item.summary), from: region.name });
  }
  return out;
}

type ReadOptions = { authorization?: string | undefined; timeoutMs?: number | undefined };

/** A region's worker's own report of a failing replication (its metrics port's /failures). */
async function workerFailure(
  region: RegionEndpoints,
  key: string,
  timeoutMs = 5_000,
): Promise<Failure | undefined> {
  if (region.metrics?.worker === undefined) return undefined;
  try {
    const res = await fetch(`${region.metrics.worker}/failures`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as {
      failures?: Record<string, { source: string; reason: string; attempts: number; at: string }>;
    };
    const f = body.failures?.[key];
    return f === undefined
      ? undefined
      : { reason: f.reason, at: f.at, from: `from ${f.source}, ${f.attempts} attempts, last ${f.at}` };
  } catch {
    return undefined; // a worker that does not answer says nothing about failures
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
