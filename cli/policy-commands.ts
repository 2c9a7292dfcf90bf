/**
 * The `policy` commands (list, apply, show, delete, run, plan,
 * reset-breaker) and `alerts`: replication policies through a region's
 * admin API, and `policy plan`, which also asks every region's peer what a
 * run would copy or delete, link by link. Dispatched by cli/admin.ts.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { RepositoryNotFoundError } from "../protocol/errors.js";
import type { Mesh, RegionEndpoints } from "../protocol/mesh.js";
import {
  coversLink,
  endpointRunners,
  isExclusiveLink,
  linkEffect,
  namesLink,
  type Policy,
  parsePolicy,
  selectsRepository,
  type TagMatcher,
  unselectedRepositories,
  validPolicies,
} from "../protocol/policy.js";
import type { RepoState } from "../protocol/registers.js";
import { differingRepositories } from "../protocol/summary.js";
import {
  type Action,
  breakerTrips,
  DEFAULT_BREAKER,
  type Plan,
  planRepository,
  planStats,
} from "../replication/plan.js";
import {
  type Command,
  CommandError,
  type Context,
  cmp,
  JSON_OPT,
  printJson,
  statsText,
} from "./admin-client.js";
import { endpointPlanText, planEndpointLinks } from "./policy-endpoint-plan.js";
import { RunFollower } from "./policy-run-follower.js";
import { progress } from "./progress.js";
import { table } from "./table.js";

export const POLICY_USAGE = `  policy list                     replication policies (a table, or --json)
  policy apply FILE               create or replace the policies in a YAML (or JSON) file
  policy show NAME                a policy as YAML, and its recent runs
  policy delete NAME
  policy run NAME [--wait]        run a policy now; --wait follows it until every destination reports
  policy plan NAME                what a run would do, link by link, endpoints too (changes nothing)
  policy reset-breaker NAME       let a policy's halted deletes through
  alerts                          alerts raised in the mesh
`;

/**
 * How often `policy run --wait` counts the repositories in step: each count
 * asks every region the policy names for its whole summary (one entry per
 * repository), so not at every poll of the run.
 */
const COUNT_EVERY_MS = 2_000;
/** Time `policy run --wait` follows a run before giving up. */
const WAIT_TIMEOUT_MS = 10 * 60_000;
const POLL_MS = 500;
const RECENT_RUNS = 10;

export const POLICY_COMMANDS: Record<string, Command> = {
  "policy list": { args: [], options: JSON_OPT, run: policyList },
  "policy apply": { args: ["FILE"], options: JSON_OPT, run: policyApply },
  "policy show": { args: ["NAME"], options: JSON_OPT, run: policyShow },
  "policy delete": { args: ["NAME"], run: policyDelete },
  "policy run": {
    args: ["NAME"],
    options: { ...JSON_OPT, wait: { type: "boolean", default: false } },
    run: policyRun,
  },
  "policy plan": { args: ["NAME"], options: JSON_OPT, run: policyPlan },
  "policy reset-breaker": { args: ["NAME"], run: policyResetBreaker },
  alerts: { args: [], options: JSON_OPT, run: alerts },
};

// ---------------------------------------------------------------- policies

async function policyList(ctx: Context): Promise<number> {
  const { policies } = await ctx.api().get<{
    policies: Array<{ name: string; policy: Record<string, unknown>; updatedAt: string; origin: string }>;
  }>("/policies");
  if (ctx.json) return printJson({ policies });
  if (policies.length === 0) {
    process.stdout.write("no policies (every link mirrors everything)\n");
    return 0;
  }
  const rows = [["name", "link", "repositories", "tags", "trigger", "deletes", "enabled", "exclusive"]];
  for (const { name, policy: raw } of policies) {
    let p: Policy;
    try {
      p = parsePolicy(raw);
    } catch {
      rows.push([name, "(invalid)", "", "", "", "", "", ""]);
      continue;
    }
    rows.push([
      name,
      `${p.sources.join(",")}→${p.destinations.join(",")}`,
      [...p.repositories.include, ...p.repositories.exclude.map((g) => `!${g}`)].join(","),
      p.tags.include.length + p.tags.exclude.length === 0
        ? "*"
        : [...p.tags.include.map(matcherText), ...p.tags.exclude.map((m) => `!${matcherText(m)}`)].join(","),
      p.trigger.type === "schedule" ? `schedule ${p.trigger.cron}` : p.trigger.type,
      p.deletes ? "on" : "off",
      p.enabled ? "yes" : "no",
      p.exclusive ? "yes" : "no",
    ]);
  }
  process.stdout.write(table(rows));
  return 0;
}

async function policyApply(ctx: Context): Promise<number> {
  const file = ctx.positionals[0]!;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new CommandError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const type = extname(file).toLowerCase() === ".json" ? "application/json" : "application/yaml";
  let result: { applied: string[]; seq: number };
  try {
    result = await ctx.api().send("POST", "/policies", { text, type });
  } catch (err) {
    if (err instanceof CommandError && err.problems.length > 0)
      throw new CommandError(`${file} is invalid (nothing applied)`, err.problems);
    throw err;
  }
  // What the policies now in force mean for each link the applied ones name: an
  // exclusive policy stops everything else on its link, and that is said here.
  const effects = linkEffects(ctx.mesh(), await storedPolicies(ctx), new Set(result.applied));
  if (ctx.json) return printJson({ ...result, links: effects });
  for (const name of result.applied) process.stdout.write(`applied policy ${name}\n`);
  for (const line of effects) process.stdout.write(`${line}\n`);
  return 0;
}

/** Every stored policy that parses (an invalid one governs nothing in the workers either). */
async function storedPolicies(ctx: Context): Promise<Policy[]> {
  const { policies } = await ctx.api().get<{ policies: Array<{ policy: unknown }> }>("/policies");
  return validPolicies(policies);
}

/** linkEffect for every link of the mesh that one of the named policies names. */
function linkEffects(mesh: Mesh, policies: Policy[], names: Set<string>): string[] {
  const named = policies.filter((p) => names.has(p.name));
  const out: string[] = [];
  for (const src of mesh.regions)
    for (const dst of mesh.regions)
      if (named.some((p) => namesLink(p, src.name, dst.name)))
        out.push(linkEffect(policies, src.name, dst.name));
  return out;
}

interface RunRecord {
  name: string;
  runId: string;
  requested?: { at: string; actor: string; origin: string };
  results: Record<string, { outcome: string; stats: Record<string, number>; error?: string; at: string }>;
}

async function policyShow(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const found = await ctx.api().get<{
    yaml: string;
    updatedAt: string;
    origin: string;
    breakerReset: string | null;
    runs: RunRecord[];
  }>(`/policies/${encodeURIComponent(name)}`);
  if (ctx.json) return printJson(found);
  const out = [found.yaml.trimEnd(), "", `# updated ${found.updatedAt} in region ${found.origin}`];
  if (found.breakerReset !== null) out.push(`# delete breaker last reset ${found.breakerReset}`);
  const runs = found.runs.slice(-RECENT_RUNS);
  out.push(runs.length === 0 ? "# no runs" : `# recent runs (${runs.length} of ${found.runs.length}):`);
  for (const run of runs) {
    const req = run.requested;
    out.push(
      `#   ${run.runId}  ${req ? `requested ${req.at} by ${req.actor} in ${req.origin}` : "(request not seen)"}`,
    );
    for (const [region, r] of Object.entries(run.results).sort(([a], [b]) => cmp(a, b)))
      out.push(`#     ${resultLine(region, r)}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

async function policyDelete(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const path = `/policies/${encodeURIComponent(name)}`;
  let before: Policy | undefined;
  try {
    before = parsePolicy((await ctx.api().get<{ policy: unknown }>(path)).policy);
  } catch {
    // not found or unparsable: the DELETE below says which
  }
  await ctx.api().send("DELETE", path);
  process.stdout.write(`deleted policy ${name}\n`);
  // The links it named, as they are now (a link given back to the mirror catches up at once).
  if (before !== undefined) {
    const after = (await storedPolicies(ctx)).filter((p) => p.name !== name);
    for (const src of ctx.mesh().regions)
      for (const dst of ctx.mesh().regions)
        if (namesLink(before, src.name, dst.name))
          process.stdout.write(`${linkEffect(after, src.name, dst.name)}\n`);
  }
  return 0;
}

async function policyResetBreaker(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  await ctx.api().send("POST", `/policies/${encodeURIComponent(name)}/reset-breaker`);
  process.stdout.write(`delete breaker of policy ${name} reset\n`);
  return 0;
}

async function policyRun(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const api = ctx.api();
  const path = `/policies/${encodeURIComponent(name)}`;
  // The destinations to wait for, known before asking (a run is only ever reported by those).
  let destinations: string[] = [];
  let policy: Policy | undefined;
  if (ctx.values.wait === true) {
    policy = parsePolicy((await api.get<{ policy: unknown }>(path)).policy);
    const names = ctx.mesh().regions.map((r) => r.name);
    destinations = names.filter((d) => names.some((s) => coversLink(policy!, s, d)));
    // Endpoint links are run (and reported) by the region at their Meridian end.
    for (const r of endpointRunners(policy, names)) if (!destinations.includes(r)) destinations.push(r);
    if (destinations.length === 0)
      throw new CommandError(
        `policy ${name} covers no link between the regions of this mesh; nothing would run`,
      );
  }
  const { runId } = await api.send<{ runId: string }>("POST", `${path}/run`);
  if (ctx.values.wait !== true) {
    if (ctx.json) return printJson({ name, runId });
    process.stdout.write(`run ${runId} of policy ${name} requested in region ${api.region.name}\n`);
    return 0;
  }
  if (!ctx.json)
    process.stdout.write(
      `run ${runId} of policy ${name} requested; waiting for ${destinations.join(", ")}\n`,
    );
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  const seen = new Set<string>();
  let run: RunRecord = { name, runId, results: {} };
  // Progress on stderr (cli/progress.ts): how many of the repositories the policy selects
  // in its sources each destination holds in the same state, and the regions reported.
  const follow = new RunFollower(ctx.mesh(), policy!);
  const shown = progress(`policy run ${name}`, undefined, { noun: "repositories in step" });
  let counted = { done: 0, total: 0, at: Number.NEGATIVE_INFINITY };
  try {
    for (;;) {
      try {
        run = await api.get<RunRecord>(`${path}/runs/${encodeURIComponent(runId)}`);
      } catch (err) {
        // The region unreachable or unavailable for a moment: keep waiting; a refusal is final.
        if (!(err instanceof CommandError) || (err.status !== undefined && err.status < 500)) throw err;
      }
      for (const [region, r] of Object.entries(run.results).sort(([a], [b]) => cmp(a, b))) {
        if (seen.has(region)) continue;
        seen.add(region);
        if (!ctx.json) shown.log(`${resultLine(region, r)}\n`, process.stdout);
      }
      const finished = destinations.every((d) => seen.has(d));
      // The peers' summaries at most every COUNT_EVERY_MS, and once more at the end.
      if (finished || Date.now() - counted.at >= COUNT_EVERY_MS)
        counted = { ...(await follow.inStep()), at: Date.now() };
      shown.update(counted.done, `${seen.size}/${destinations.length} region(s) reported`, counted.total);
      if (finished) break;
      if (Date.now() > deadline) {
        const missing = destinations.filter((d) => !seen.has(d));
        throw new CommandError(`timed out after 10 minutes waiting for ${missing.join(", ")}`);
      }
      await sleep(POLL_MS);
    }
  } finally {
    shown.finish();
    follow.close();
  }
  const results = Object.values(run.results);
  const failed = Object.entries(run.results).filter(([, r]) => r.outcome !== "ok");
  if (ctx.json) printJson(run);
  else {
    const totals: Record<string, number> = {};
    for (const r of results) for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
    process.stdout.write(
      `done: ${results.length - failed.length} of ${results.length} region(s) ok; totals: ${statsText(totals)}\n`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

interface LinkPlan {
  source: string;
  destination: string;
  /** The source's repositories no policy governing the link selects (an exclusive link's leftovers). */
  stopped: string[];
  plans: Plan[];
  stats: Record<string, number>;
}

async function policyPlan(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const policy = parsePolicy(
    (await ctx.api().get<{ policy: unknown }>(`/policies/${encodeURIComponent(name)}`)).policy,
  );
  const mesh = ctx.mesh();
  const links: LinkPlan[] = [];
  const all = await storedPolicies(ctx);
  for (const dst of mesh.regions) {
    for (const src of mesh.regions) {
      if (!coversLink(policy, src.name, dst.name)) continue;
      links.push(await planLink(mesh, policy, src, dst, all));
    }
  }
  // What stops (or keeps) flowing on each link the policy names, beyond what its own run would copy.
  const effects = links.map((l) => ({
    effect: linkEffect(all, l.source, l.destination),
    stopped: l.stopped,
  }));
  // Links to external endpoints (issue 17): ./policy-endpoint-plan.ts.
  const endpointLinks = await planEndpointLinks(ctx, policy);
  if (ctx.json)
    return printJson({ policy: name, links: links.map((l, i) => ({ ...l, ...effects[i] })), endpointLinks });
  if (links.length === 0 && endpointLinks.length === 0) {
    process.stdout.write(`policy ${name} covers no link between the regions of this mesh\n`);
    return 0;
  }
  const out: string[] = endpointLinks.flatMap(endpointPlanText);
  for (const [i, link] of links.entries()) {
    const head = `${link.source} → ${link.destination}`;
    out.push(effects[i]!.effect);
    if (link.stopped.length > 0) out.push(`  not replicated on this link: ${link.stopped.join(", ")}`);
    if (link.plans.length === 0) {
      out.push(`${head}: nothing to do`);
      continue;
    }
    out.push(`${head}: ${link.plans.length} repositor${link.plans.length === 1 ? "y" : "ies"}`);
    for (const plan of link.plans) {
      out.push(`  ${plan.repo}`);
      for (const action of plan.actions) out.push(`    ${actionText(action)}`);
      if (breakerTrips(plan.tagsRemoved, plan.visibleTags, DEFAULT_BREAKER))
        out.push(
          `    WARNING: the delete breaker would halt this: ${plan.tagsRemoved} of ${plan.visibleTags} tags removed`,
        );
    }
    out.push(`  total: ${statsText(link.stats)}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

/** What `policy` would do from `src` to `dst` now: the differing repositories it selects, planned. */
async function planLink(
  mesh: Mesh,
  policy: Policy,
  src: RegionEndpoints,
  dst: RegionEndpoints,
  all: Policy[],
): Promise<LinkPlan> {
  // Ask both peers as the destination region does when it runs the policy.
  const credentials = peerCredentials(mesh, dst.name);
  const source = new PeerClient(src.name, src.grpc, credentials);
  const destination = new PeerClient(dst.name, dst.grpc, credentials);
  try {
    const [theirs, ours] = await Promise.all([source.summarize(""), destination.summarize("")]);
    const plans: Plan[] = [];
    for (const repo of differingRepositories(ours.repos, theirs.repos)) {
      if (!selectsRepository(policy, repo)) continue;
      const [s, d] = await Promise.all([stateOf(source, repo), stateOf(destination, repo)]);
      const plan = planRepository(policy, s, d, src.name, dst.name);
      if (plan.actions.length > 0) plans.push(plan);
    }
    const stopped = isExclusiveLink(all, src.name, dst.name)
      ? unselectedRepositories(
          all,
          src.name,
          dst.name,
          theirs.repos.map((r) => r.repo),
        ).sort(cmp)
      : [];
    return { source: src.name, destination: dst.name, stopped, plans, stats: planStats(plans) };
  } finally {
    source.close();
    destination.close();
  }
}

async function stateOf(peer: PeerClient, repo: string): Promise<RepoState> {
  try {
    return await peer.repoState(repo);
  } catch (err) {
    if (err instanceof RepositoryNotFoundError) return { repo, tags: [], manifests: [], blobs: [] };
    throw err;
  }
}

function actionText(a: Action): string {
  switch (a.kind) {
    case "copy-manifest":
      return `copy manifest ${a.digest}`;
    case "link-blob":
      return `copy blob ${a.digest} (${a.size} bytes)`;
    case "set-tag":
      return `set tag ${a.tag} → ${a.digest}`;
    case "delete-tag":
      return `delete tag ${a.tag}`;
    case "delete-manifest":
      return `delete manifest ${a.digest}`;
    case "delete-blob":
      return `delete blob ${a.digest}`;
    case "delete-repository":
      return `delete repository (deleted ${a.w.at} in ${a.w.origin})`;
    case "hold-tag":
      return `hold tag ${a.tag} → ${a.digest} (waiting for referrers: ${a.missing.join(", ")})`;
    case "keep-tag":
      return `keep tag ${a.tag} (not moved to ${a.digest}: ${a.reason})`;
  }
}
// ---------------------------------------------------------------- alerts

async function alerts(ctx: Context): Promise<number> {
  const { alerts } = await ctx.api().get<{
    alerts: Array<{
      kind: string;
      message: string;
      policy?: string;
      repo?: string;
      origin: string;
      at: string;
    }>;
  }>("/alerts");
  if (ctx.json) return printJson({ alerts });
  if (alerts.length === 0) {
    process.stdout.write("no alerts\n");
    return 0;
  }
  const rows = [["time", "region", "kind", "policy", "repository", "message"]];
  for (const a of alerts) rows.push([a.at, a.origin, a.kind, a.policy ?? "-", a.repo ?? "-", a.message]);
  process.stdout.write(table(rows));
  return 0;
}

// ---------------------------------------------------------------- plumbing

function resultLine(
  region: string,
  r: { outcome: string; stats: Record<string, number>; error?: string; at: string },
): string {
  return `${region}: ${r.outcome} at ${r.at}; ${statsText(r.stats)}${r.error === undefined ? "" : `; ${r.error}`}`;
}

function matcherText(m: TagMatcher): string {
  return m.kind === "glob" ? m.pattern : m.kind === "regex" ? `regex:${m.pattern}` : `semver:${m.range}`;
}
