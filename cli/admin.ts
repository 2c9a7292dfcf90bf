/**
 * The admin commands of `meridian`: replication policies (list, apply, show,
 * delete, run, plan, reset-breaker), alerts, tag history and merge rules,
 * repository deletion and undelete, and where one artifact has replicated.
 * They talk to a region's admin API (node/http/admin.ts) at the registry URL
 * in <data>/mesh.json (the first region that answers, or --region:
 * admin-client.ts AdminClient); `policy plan` and
 * `replication status` also ask every region's peer, node and worker.
 *
 * Output is fixed lines and tables on stdout (JSON with --json where it
 * makes sense); problems go to stderr. Exit codes: 0 done, 1 failed, 2 usage.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { RepositoryNotFoundError } from "../protocol/errors.js";
import type { Mesh, RegionEndpoints } from "../protocol/mesh.js";
import {
  coversLink,
  effectivePolicies,
  isExclusiveLink,
  linkEffect,
  namesLink,
  type Policy,
  parsePolicy,
  selectsRepository,
  type TagMatcher,
  unselectedRepositories,
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
  AdminClient,
  type Command,
  CommandError,
  type Context,
  cliAuthorization,
  inMesh,
  JSON_OPT,
  printJson,
  readMesh,
  statsText,
  UsageError,
  useAuthorization,
  useMesh,
} from "./admin-client.js";
import { AUDIT_USAGE } from "./audit.js";
import { DR_COMMANDS, DR_USAGE } from "./dr.js";
import { IDENTITY_COMMANDS, IDENTITY_USAGE } from "./identity.js";
import { table } from "./table.js";

export const ADMIN_USAGE = `  policy list                     replication policies (a table, or --json)
  policy apply FILE               create or replace the policies in a YAML (or JSON) file
  policy show NAME                a policy as YAML, and its recent runs
  policy delete NAME
  policy run NAME [--wait]        run a policy now; --wait follows it until every destination reports
  policy plan NAME                what a run would do, link by link (changes nothing)
  policy reset-breaker NAME       let a policy's halted deletes through
  alerts                          alerts raised in the mesh
  tag history REPO:TAG [--at TIME]  every write to a tag, and what it held at TIME (ISO-8601 or ms)
  tag rule SCOPE RULE [--home REGION] [--epoch N] [--durability async|sync(K)]
                                  set the tag merge rule (lww, first-write, home-region) of a
                                  repository, a prefix ending in "/", or "" for every repository;
                                  sync(K): a push is acknowledged once K other regions hold it
  tag rules                       the tag merge rules in force
  undelete REPO[:TAG|@DIGEST]     restore deleted content (within the undelete window)
  repo delete REPO                delete a repository (restorable with undelete)
  replication status REPO@DIGEST  per region: present, failed, pending or not selected
${DR_USAGE}${IDENTITY_USAGE}${AUDIT_USAGE}    admin commands take --data DIR (default .meridian; reads DIR/mesh.json), --mesh FILE,
    --region NAME (whose registry to ask; default the first that answers), and --json where it applies;
    with authentication on they sign in as MERIDIAN_USER with the password in MERIDIAN_PASSWORD_FILE,
    else as admin with DIR/auth/admin-password (written by \`up --auth\`)
`;

/** Time `policy run --wait` follows a run before giving up. */
const WAIT_TIMEOUT_MS = 10 * 60_000;
const POLL_MS = 500;
const RECENT_RUNS = 10;

const COMMANDS: Record<string, Command> = {
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
  "tag history": { args: ["REPO:TAG"], options: { ...JSON_OPT, at: { type: "string" } }, run: tagHistory },
  "tag rule": {
    args: ["SCOPE", "RULE"],
    options: { home: { type: "string" }, epoch: { type: "string" }, durability: { type: "string" } },
    run: tagRule,
  },
  "tag rules": { args: [], options: JSON_OPT, run: tagRules },
  undelete: { args: ["REPO[:TAG|@DIGEST]"], options: JSON_OPT, run: undelete },
  "repo delete": { args: ["REPO"], run: repoDelete },
  "replication status": { args: ["REPO@DIGEST"], options: JSON_OPT, run: replicationStatus },
  ...DR_COMMANDS,
  ...IDENTITY_COMMANDS,
};

/** Commands without a subcommand. */
const SINGLE = new Set(["alerts", "undelete", "whoami", ...Object.keys(DR_COMMANDS)]);

/** Run `meridian <command> …`; returns the exit code. */
export async function admin(command: string, argv: string[]): Promise<number> {
  const grouped = !SINGLE.has(command);
  const key = grouped ? `${command} ${argv[0] ?? ""}` : command;
  const spec = COMMANDS[key];
  const label = `meridian ${spec === undefined ? command : key}`;
  try {
    if (spec === undefined) {
      const subs = Object.keys(COMMANDS)
        .filter((k) => k.startsWith(`${command} `))
        .map((k) => k.slice(command.length + 1));
      throw new UsageError(
        argv[0] === undefined
          ? `a subcommand is required (${subs.join(", ")})`
          : `unknown subcommand "${argv[0]}" (want ${subs.join(", ")})`,
      );
    }
    let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
    try {
      parsed = parseArgs({
        args: grouped ? argv.slice(1) : argv,
        options: {
          data: { type: "string", default: ".meridian" },
          mesh: { type: "string" },
          region: { type: "string" },
          ...spec.options,
        },
        allowPositionals: true,
        strict: true,
      });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    if (parsed.positionals.length !== spec.args.length)
      throw new UsageError(`usage: ${label}${spec.args.map((a) => ` ${a}`).join("")}`);
    useAuthorization(cliAuthorization(parsed.values.data as string));
    let mesh: Mesh | undefined;
    const loadMesh = () => {
      mesh ??= readMesh(parsed.values.mesh as string | undefined, parsed.values.data as string);
      useMesh(mesh);
      return mesh;
    };
    const ctx: Context = {
      values: parsed.values,
      positionals: parsed.positionals,
      mesh: loadMesh,
      api: () => {
        const m = loadMesh();
        const name = parsed.values.region as string | undefined;
        // Without --region: the first region, then the others when it does not answer (admin-client.ts).
        return name === undefined
          ? new AdminClient(m.regions[0]!, undefined, m.regions.slice(1))
          : new AdminClient(inMesh(m, name));
      },
      json: parsed.values.json === true,
    };
    return await spec.run(ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${label}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CommandError) {
      // A single problem is usually the message itself.
      const list = err.problems.filter((p) => err.problems.length > 1 || !err.message.includes(p));
      process.stderr.write(`${label}: ${err.message}\n${list.map((p) => `  - ${p}\n`).join("")}`);
      return 1;
    }
    process.stderr.write(`${label}: ${(err as Error)?.message ?? err}\n`);
    return 1;
  }
}

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
  const out: Policy[] = [];
  for (const { policy } of policies) {
    try {
      out.push(parsePolicy(policy));
    } catch {
      // listed as invalid by `policy list`
    }
  }
  return out;
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
  if (ctx.values.wait === true) {
    const policy = parsePolicy((await api.get<{ policy: unknown }>(path)).policy);
    const names = ctx.mesh().regions.map((r) => r.name);
    destinations = names.filter((d) => names.some((s) => coversLink(policy, s, d)));
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
      if (!ctx.json) process.stdout.write(`${resultLine(region, r)}\n`);
    }
    if (destinations.every((d) => seen.has(d))) break;
    if (Date.now() > deadline) {
      const missing = destinations.filter((d) => !seen.has(d));
      throw new CommandError(`timed out after 10 minutes waiting for ${missing.join(", ")}`);
    }
    await sleep(POLL_MS);
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
  if (ctx.json) return printJson({ policy: name, links: links.map((l, i) => ({ ...l, ...effects[i] })) });
  if (links.length === 0) {
    process.stdout.write(`policy ${name} covers no link between the regions of this mesh\n`);
    return 0;
  }
  const out: string[] = [];
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

// ---------------------------------------------------------------- tags

interface HistoryReply {
  repo: string;
  tag: string;
  rule: string;
  scope: string;
  writes: Array<{
    digest: string | null;
    origin: string;
    at: string;
    actor: string;
    via: string;
    id: string;
  }>;
  current: string | null;
  at?: { time: string; digest: string | null; deleted: boolean };
  conflicts: Array<{
    winner: { origin: string; digest: string | null };
    loser: { origin: string; digest: string | null };
    origin: string;
    at: string;
  }>;
}

async function tagHistory(ctx: Context): Promise<number> {
  const ref = ctx.positionals[0]!;
  const cut = ref.lastIndexOf(":");
  if (cut <= 0 || cut === ref.length - 1) throw new UsageError(`want REPO:TAG, got "${ref}"`);
  const [repo, tag] = [ref.slice(0, cut), ref.slice(cut + 1)];
  const at = ctx.values.at as string | undefined;
  const query = at === undefined ? "" : `?at=${encodeURIComponent(at)}`;
  const h = await ctx
    .api()
    .get<HistoryReply>(`/repositories/${segments(repo)}/tags/${encodeURIComponent(tag)}/history${query}`);
  if (ctx.json) return printJson(h);
  const out = [`${h.repo}:${h.tag}  rule ${h.rule}${h.scope === "" ? "" : ` (scope ${h.scope})`}`];
  const rows = [["time", "origin", "digest", "actor", "via"]];
  for (const w of h.writes) rows.push([w.at, w.origin, w.digest ?? "deleted", w.actor, w.via]);
  out.push(table(rows).trimEnd());
  out.push(`now: ${h.current ?? "(not set)"}`);
  if (h.at !== undefined)
    out.push(`at ${h.at.time}: ${h.at.digest ?? (h.at.deleted ? "deleted" : "(not set yet)")}`);
  if (h.conflicts.length === 0) out.push("conflicts: none");
  for (const c of h.conflicts)
    out.push(
      `conflict recorded ${c.at} in ${c.origin}: ${c.winner.digest ?? "deleted"} (${c.winner.origin}) won over ${c.loser.digest ?? "deleted"} (${c.loser.origin})`,
    );
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

async function tagRule(ctx: Context): Promise<number> {
  const [scope, rule] = ctx.positionals as [string, string];
  const body: Record<string, unknown> = { scope, tagMerge: rule };
  if (ctx.values.home !== undefined) body.home = ctx.values.home;
  if (ctx.values.durability !== undefined) body.durability = ctx.values.durability;
  if (ctx.values.epoch !== undefined) {
    const epoch = Number(ctx.values.epoch);
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new UsageError(`--epoch: a non-negative integer`);
    body.epoch = epoch;
  }
  await ctx.api().send("PUT", "/rules", { json: body });
  const home =
    body.home === undefined
      ? ""
      : ` (home ${body.home}${body.epoch === undefined ? "" : ` at epoch ${body.epoch}`})`;
  const durability = body.durability === undefined ? "" : `, durability ${body.durability}`;
  process.stdout.write(
    `tag rule of ${scope === "" ? "every repository" : scope}: ${rule}${home}${durability}\n`,
  );
  return 0;
}

async function tagRules(ctx: Context): Promise<number> {
  type Rule = { scope: string; tagMerge: string; homes: Record<string, string>; durability?: string };
  const reply = await ctx.api().get<{ default: Rule; rules: Rule[] }>("/rules");
  if (ctx.json) return printJson(reply);
  const homes = (r: Rule) =>
    Object.entries(r.homes)
      .map(([epoch, region]) => `${region}@${epoch}`)
      .join(" ") || "-";
  const rows = [["scope", "rule", "homes (region@epoch)", "durability"]];
  if (!reply.rules.some((r) => r.scope === ""))
    rows.push(["(default)", reply.default.tagMerge, "-", "async"]);
  for (const r of [...reply.rules].sort((a, b) => cmp(a.scope, b.scope)))
    rows.push([
      r.scope === "" ? '"" (every repository)' : r.scope,
      r.tagMerge,
      homes(r),
      r.durability ?? "async",
    ]);
  process.stdout.write(table(rows));
  return 0;
}

// ---------------------------------------------------------------- repositories

async function undelete(ctx: Context): Promise<number> {
  const ref = ctx.positionals[0]!;
  const body: Record<string, string> = {};
  const at = ref.indexOf("@");
  const colon = ref.lastIndexOf(":");
  if (at >= 0) Object.assign(body, { repo: ref.slice(0, at), digest: ref.slice(at + 1) });
  else if (colon >= 0) Object.assign(body, { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) });
  else body.repo = ref;
  const reply = await ctx.api().send<{ restored: string[] }>("POST", "/undelete", { json: body });
  if (ctx.json) return printJson(reply);
  for (const line of reply.restored) process.stdout.write(`restored ${line}\n`);
  return 0;
}

async function repoDelete(ctx: Context): Promise<number> {
  const repo = ctx.positionals[0]!;
  await ctx.api().send("DELETE", `/repositories/${segments(repo)}`);
  process.stdout.write(
    `deleted repository ${repo} (restore it within the undelete window: meridian undelete ${repo})\n`,
  );
  return 0;
}

// ---------------------------------------------------------------- replication status

interface RegionState {
  region: string;
  state: "present" | "deleted" | "failed" | "pending" | "not selected" | "absent" | "unknown";
  detail: string;
}

async function replicationStatus(ctx: Context): Promise<number> {
  const ref = ctx.positionals[0]!;
  const cut = ref.lastIndexOf("@");
  if (cut <= 0 || cut === ref.length - 1) throw new UsageError(`want REPO@DIGEST, got "${ref}"`);
  const [repo, digest] = [ref.slice(0, cut), ref.slice(cut + 1)];
  const mesh = ctx.mesh();
  const { policies: stored } = await ctx
    .api()
    .get<{ policies: Array<{ name: string; policy: unknown }> }>("/policies");
  const policies: Policy[] = [];
  for (const { policy } of stored) {
    try {
      policies.push(parsePolicy(policy));
    } catch {
      // the workers leave an invalid policy out too
    }
  }
  type Artifact = { present: boolean; tags: string[]; deleted?: { at: string } };
  const artifacts = await Promise.all(
    mesh.regions.map(async (r) => {
      try {
        return await new AdminClient(r).get<Artifact>(
          `/artifacts/${segments(repo)}@${encodeURIComponent(digest)}`,
        );
      } catch (err) {
        // A malformed name or digest is the same everywhere: say so once.
        if (err instanceof CommandError && err.status === 400) throw err;
        return err as Error;
      }
    }),
  );
  // Events a region's worker gave up on (replication/worker.ts REPLICATION_FAILED), last one per region.
  const gaveUp = new Map<string, { at: string; message: string }>();
  try {
    const { alerts } = await ctx.api().get<{
      alerts: Array<{
        kind: string;
        repo?: string;
        message: string;
        at: string;
        detail?: Record<string, unknown>;
      }>;
    }>("/alerts");
    for (const a of alerts)
      if (a.kind === "replication-failed" && a.repo === repo && a.detail?.digest === digest)
        gaveUp.set(String(a.detail.destination), { at: a.at, message: String(a.detail.reason ?? a.message) });
  } catch {
    // without alerts, the workers' own reports below still say what is failing
  }
  const holders = mesh.regions
    .filter((_, i) => (artifacts[i] as Artifact).present === true)
    .map((r) => r.name);
  const states: RegionState[] = [];
  for (const [i, r] of mesh.regions.entries()) {
    const a = artifacts[i]!;
    if (a instanceof Error) {
      states.push({ region: r.name, state: "unknown", detail: a.message });
      continue;
    }
    if (a.present) {
      states.push({
        region: r.name,
        state: "present",
        detail: a.tags.length > 0 ? `tags: ${a.tags.join(", ")}` : "",
      });
      continue;
    }
    if (a.deleted !== undefined) {
      states.push({ region: r.name, state: "deleted", detail: `deleted ${a.deleted.at}` });
      continue;
    }
    const given = gaveUp.get(r.name);
    if (given !== undefined) {
      states.push({ region: r.name, state: "failed", detail: `${given.message} (gave up ${given.at})` });
      continue;
    }
    const failure = await workerFailure(r, `${repo}@${digest}`);
    if (failure !== undefined) {
      states.push({
        region: r.name,
        state: "failed",
        detail: `${failure.reason} (from ${failure.source}, ${failure.attempts} attempts, last ${failure.at})`,
      });
      continue;
    }
    if (holders.length === 0) {
      states.push({ region: r.name, state: "absent", detail: "no region holds it" });
      continue;
    }
    const by = new Set<string>();
    for (const source of holders)
      for (const p of effectivePolicies(policies, source, r.name))
        if (selectsRepository(p, repo)) by.add(p.name);
    states.push(
      by.size > 0
        ? { region: r.name, state: "pending", detail: `policy ${[...by].sort(cmp).join(", ")}` }
        : { region: r.name, state: "not selected", detail: "" },
    );
  }
  if (ctx.json) printJson({ repo, digest, regions: states });
  else {
    const rows = [["region", "state", "detail"]];
    for (const s of states) rows.push([s.region, s.state, s.detail]);
    process.stdout.write(table(rows));
  }
  return states.some((s) => s.state === "unknown") ? 1 : 0;
}

async function workerFailure(
  region: RegionEndpoints,
  key: string,
): Promise<{ source: string; reason: string; attempts: number; at: string } | undefined> {
  if (region.metrics?.worker === undefined) return undefined;
  try {
    const res = await fetch(`${region.metrics.worker}/failures`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as {
      failures?: Record<string, { source: string; reason: string; attempts: number; at: string }>;
    };
    return body.failures?.[key];
  } catch {
    return undefined; // a worker that does not answer says nothing about failures
  }
}

// ---------------------------------------------------------------- plumbing

/** A repository name as URL path segments: whatever was typed reaches the server as the name. */
function segments(repo: string): string {
  return repo.split("/").map(encodeURIComponent).join("/");
}

function resultLine(
  region: string,
  r: { outcome: string; stats: Record<string, number>; error?: string; at: string },
): string {
  return `${region}: ${r.outcome} at ${r.at}; ${statsText(r.stats)}${r.error === undefined ? "" : `; ${r.error}`}`;
}

function matcherText(m: TagMatcher): string {
  return m.kind === "glob" ? m.pattern : m.kind === "regex" ? `regex:${m.pattern}` : `semver:${m.range}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
