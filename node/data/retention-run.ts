/**
 * Retention plans and runs on a region (issue 15, item 2): the rules
 * (view.retention) applied to the view's repositories by
 * protocol/retention.ts's pure planner, and a run that carries out the plan
 * of the repositories this region decides.
 *
 * A run's deletions are ordinary `manifest.deleted` events made through the
 * registry's commit step (Registry.deleteManifest), with the actor
 * `retention:<who asked>`: they replicate as any deletion does (each other
 * region's replication policies and delete breaker judge them), tag history
 * and the audit log show them, and `meridian undelete` restores them within
 * the undelete window. A run re-plans when it starts, so it deletes exactly
 * what a plan made at that moment shows; content pushed, tagged or pulled
 * while it runs is judged by the next run.
 *
 * Which region decides: see protocol/retention.ts's header. A run here
 * skips (and reports) every repository another region decides, so a run
 * asked of the wrong region deletes nothing.
 *
 * Runs are held in this node's memory (the last MAX_RUNS), one at a time:
 * `meridian retention run` follows its run on the node that started it.
 */
import { randomUUID } from "node:crypto";
import type { Digest } from "../../protocol/digest.js";
import { ManifestNotFoundError, TagImmutableError, UnsupportedError } from "../../protocol/errors.js";
import {
  type PlanManifest,
  planRepository,
  type RepoPlan,
  type RetentionRule,
  repoGlobMatches,
  rulesFor,
} from "../../protocol/retention.js";
import type { Registry } from "./registry.js";

export interface RetentionPlan {
  /** The time the plan was judged at (ISO-8601). */
  at: string;
  /** The region that made the plan. */
  region: string;
  /** Every repository with live manifests that some rule matches (and `repo` selects), in name order. */
  repositories: RepoPlan[];
}

/** The plan of every repository a rule matches (and, with `repoGlob`, that glob matches). Reads only. */
export async function planRetention(
  reg: Registry,
  options: { repoGlob?: string; nowMs: number },
): Promise<RetentionPlan> {
  const rules = (await reg.view.retention.rules()).map((r) => r.rule);
  const out: RepoPlan[] = [];
  if (rules.length > 0) {
    for (const repo of await reg.view.content.repositoriesUnder("")) {
      if (options.repoGlob !== undefined && !repoGlobMatches(options.repoGlob, repo)) continue;
      const plan = await planOne(reg, rules, repo, options.nowMs);
      // A repository with no live manifest (deleted, or blobs only) has nothing to judge.
      if (plan !== undefined && plan.keep.length + plan.delete.length > 0) out.push(plan);
    }
  }
  return { at: new Date(options.nowMs).toISOString(), region: reg.region, repositories: out };
}

async function planOne(
  reg: Registry,
  rules: readonly RetentionRule[],
  repo: string,
  nowMs: number,
): Promise<RepoPlan | undefined> {
  const matching = rulesFor(rules, repo);
  if (matching.region === undefined) return undefined;
  const content = reg.view.content;
  const tags = new Map<string, string[]>();
  for (const { tag, digest } of await content.liveTags(repo))
    tags.set(digest, [...(tags.get(digest) ?? []), tag]);
  const pulls = await reg.view.retention.pulls(repo);
  const manifests: PlanManifest[] = [];
  for (const digest of await content.manifestDigests(repo)) {
    const register = await content.manifestRegister(repo, digest);
    if (register === undefined || !register.live || register.record === null) continue;
    const m: PlanManifest = {
      digest,
      pushedAtMs: Date.parse(register.w.at),
      pushOrder: { wall: register.w.hlc.wall, logical: register.w.hlc.logical, id: register.w.id },
      tags: tags.get(digest) ?? [],
      manifests: register.record.manifests,
    };
    if (register.record.subject !== undefined) m.subject = register.record.subject;
    const pulled = pulls.get(digest);
    if (pulled !== undefined) m.pulledAtMs = pulled;
    manifests.push(m);
  }
  return planRepository(repo, matching.rules, matching.region, manifests, nowMs);
}

export interface RunRecord {
  runId: string;
  region: string;
  state: "running" | "done" | "failed";
  startedAt: string;
  finishedAt?: string;
  actor: string;
  repoGlob?: string;
  /** Progress lines, in order. */
  lines: string[];
  /** What the run deleted, as repo@digest. */
  deleted: string[];
  /** Repositories skipped because another region decides them, with that region. */
  skipped: Array<{ repo: string; decidedBy: string }>;
  summary?: { repositories: number; deleted: number; alreadyGone: number; kept: number; seconds: number };
  error?: string;
}

const MAX_RUNS = 20;

/** This node's retention runs (see the header). */
export class RetentionRuns {
  readonly #reg: Registry;
  readonly #runs = new Map<string, RunRecord>();
  #running: string | undefined;

  constructor(reg: Registry) {
    this.#reg = reg;
  }

  get(runId: string): RunRecord | undefined {
    return this.#runs.get(runId);
  }

  /** Start a run (UnsupportedError while another runs on this node); resolves once it has started. */
  start(actor: string, repoGlob?: string): RunRecord {
    if (this.#running !== undefined)
      throw new UnsupportedError(`a retention run is in progress on this node (${this.#running})`, {
        detail: { runId: this.#running },
      });
    const run: RunRecord = {
      runId: randomUUID(),
      region: this.#reg.region,
      state: "running",
      startedAt: new Date().toISOString(),
      actor,
      lines: [],
      deleted: [],
      skipped: [],
    };
    if (repoGlob !== undefined) run.repoGlob = repoGlob;
    this.#runs.set(run.runId, run);
    for (const old of this.#runs.keys()) if (this.#runs.size > MAX_RUNS) this.#runs.delete(old);
    this.#running = run.runId;
    void this.#execute(run).finally(() => {
      this.#running = undefined;
    });
    return run;
  }

  /** The run itself: one plan, then its deletions in order, a line per repository and per deletion. */
  async #execute(run: RunRecord): Promise<void> {
    const started = Date.now();
    let gone = 0;
    let kept = 0;
    let repositories = 0;
    try {
      const plan = await planRetention(this.#reg, {
        nowMs: started,
        ...(run.repoGlob === undefined ? {} : { repoGlob: run.repoGlob }),
      });
      for (const repo of plan.repositories) {
        if (repo.decidedBy !== this.#reg.region) {
          run.skipped.push({ repo: repo.repo, decidedBy: repo.decidedBy });
          run.lines.push(`${repo.repo}: skipped, decided by region ${repo.decidedBy}`);
          continue;
        }
        repositories++;
        kept += repo.keep.length;
        run.lines.push(`${repo.repo}: deleting ${repo.delete.length}, keeping ${repo.keep.length}`);
        for (const d of repo.delete) {
          try {
            await this.#reg.deleteManifest(
              repo.repo,
              { digest: d.digest as Digest },
              `retention:${run.actor}`,
            );
            run.deleted.push(`${repo.repo}@${d.digest}`);
            const tags = d.tags.length === 0 ? "" : ` (tags ${d.tags.join(", ")})`;
            run.lines.push(`${repo.repo}: deleted ${d.digest}${tags}: ${d.reasons.join("; ")}`);
          } catch (err) {
            // An immutable tag rule outranks retention (as in Harbor): the manifest a protected
            // tag points at is kept, said so, and the run goes on.
            if (err instanceof TagImmutableError) {
              kept++;
              run.lines.push(`${repo.repo}: kept ${d.digest}: ${err.message}`);
              continue;
            }
            if (!(err instanceof ManifestNotFoundError)) throw err;
            gone++;
            run.lines.push(`${repo.repo}: ${d.digest} already gone`);
          }
        }
      }
      run.state = "done";
    } catch (err) {
      run.state = "failed";
      run.error = err instanceof Error ? err.message : String(err);
      run.lines.push(`failed: ${run.error}`);
    }
    run.finishedAt = new Date().toISOString();
    run.summary = {
      repositories,
      deleted: run.deleted.length,
      alreadyGone: gone,
      kept,
      seconds: (Date.now() - started) / 1000,
    };
  }
}
