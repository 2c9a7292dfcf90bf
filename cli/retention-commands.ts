/**
 * The `retention` commands (issue 15, item 2): rules (set, list, delete),
 * `retention plan` (what a run would delete, changing nothing) and
 * `retention run` (carries out the plan, following it with progress lines
 * and a summary), through a region's admin API (node/http/admin/retention.ts).
 * Dispatched by cli/admin.ts.
 *
 * `retention run` without --region runs in every region that decides some
 * rule (each rule's `region`), one after the other: only the deciding
 * region deletes a repository's content (protocol/retention.ts), so a run
 * asked of any other region would skip it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  AdminClient,
  type Command,
  CommandError,
  type Context,
  inMesh,
  JSON_OPT,
  printJson,
  UsageError,
} from "./admin-client.js";
import { table } from "./table.js";

export const RETENTION_USAGE = `  retention set NAME --repos GLOB[,GLOB] [--keep-last N] [--keep-tags M[,M]] [--untagged-days D]
                [--pulled-days D] [--deciding-region R]
                                  create or replace a retention rule: keep the last N pushed, tags
                                  matching M (a glob, regex:…, semver:RANGE), untagged images for D
                                  days, anything pulled in the last D days; R decides (default: the
                                  region asked)
  retention list                  the retention rules
  retention delete NAME
  retention plan [--repo GLOB] [--at TIME]
                                  what a run would delete and keep, and why (changes nothing)
  retention run [--repo GLOB]     delete what the plan shows, in each deciding region (or --region),
                                  following the run with progress lines and a summary
`;

/** Longest `retention run` follows one run. */
const RUN_TIMEOUT_MS = 30 * 60_000;
const POLL_MS = 300;

export const RETENTION_COMMANDS: Record<string, Command> = {
  "retention set": {
    args: ["NAME"],
    options: {
      repos: { type: "string" },
      "keep-last": { type: "string" },
      "keep-tags": { type: "string" },
      "untagged-days": { type: "string" },
      "pulled-days": { type: "string" },
      "deciding-region": { type: "string" },
    },
    run: setRule,
  },
  "retention list": { args: [], options: JSON_OPT, run: listRules },
  "retention delete": { args: ["NAME"], run: deleteRule },
  "retention plan": {
    args: [],
    options: { ...JSON_OPT, repo: { type: "string" }, at: { type: "string" } },
    run: plan,
  },
  "retention run": { args: [], options: { ...JSON_OPT, repo: { type: "string" } }, run: runRetention },
};

interface Decision {
  digest: string;
  tags: string[];
  reasons: string[];
  follows?: string;
}
interface RepoPlan {
  repo: string;
  decidedBy: string;
  rules: string[];
  keep: Decision[];
  delete: Decision[];
}
interface RunRecord {
  runId: string;
  region: string;
  state: "running" | "done" | "failed";
  lines: string[];
  deleted: string[];
  skipped: Array<{ repo: string; decidedBy: string }>;
  summary?: { repositories: number; deleted: number; alreadyGone: number; kept: number; seconds: number };
  error?: string;
}

/** A comma-separated list, commas inside `{…}` (a glob's alternatives) kept. */
function list(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "{") depth++;
    if (ch === "}") depth = Math.max(0, depth - 1);
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  out.push(cur.trim());
  return out.filter((s) => s !== "");
}

function numberOption(ctx: Context, name: string): number | undefined {
  const raw = ctx.values[name] as string | undefined;
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n))
    throw new UsageError(`--${name}: want a number, got "${raw}"`);
  return n;
}

async function setRule(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const repos = ctx.values.repos as string | undefined;
  if (repos === undefined) throw new UsageError("--repos GLOB[,GLOB] is required");
  const rule: Record<string, unknown> = { repositories: list(repos) };
  const keepLast = numberOption(ctx, "keep-last");
  if (keepLast !== undefined) rule.keepLast = keepLast;
  if (ctx.values["keep-tags"] !== undefined) rule.keepTags = list(ctx.values["keep-tags"] as string);
  const untagged = numberOption(ctx, "untagged-days");
  if (untagged !== undefined) rule.untaggedDays = untagged;
  const pulled = numberOption(ctx, "pulled-days");
  if (pulled !== undefined) rule.pulledDays = pulled;
  if (ctx.values["deciding-region"] !== undefined) rule.region = ctx.values["deciding-region"];
  const reply = await ctx
    .api()
    .send<{ rule: { region: string } }>("PUT", `/retention/rules/${encodeURIComponent(name)}`, {
      json: rule,
    });
  process.stdout.write(`retention rule ${name} set (decided by region ${reply.rule.region})\n`);
  return 0;
}

async function listRules(ctx: Context): Promise<number> {
  type Row = {
    name: string;
    rule: { repositories: string[]; region: string };
    summary: string;
    updatedAt: string;
  };
  const reply = await ctx.api().get<{ rules: Row[] }>("/retention/rules");
  if (ctx.json) return printJson(reply);
  if (reply.rules.length === 0) {
    process.stdout.write("no retention rules\n");
    return 0;
  }
  const rows = [["name", "repositories", "decided by", "rule", "updated"]];
  for (const r of reply.rules)
    rows.push([r.name, r.rule.repositories.join(", "), r.rule.region, r.summary, r.updatedAt]);
  process.stdout.write(table(rows));
  return 0;
}

async function deleteRule(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  await ctx.api().send("DELETE", `/retention/rules/${encodeURIComponent(name)}`);
  process.stdout.write(`retention rule ${name} deleted\n`);
  return 0;
}

async function plan(ctx: Context): Promise<number> {
  const query = new URLSearchParams();
  if (ctx.values.repo !== undefined) query.set("repo", ctx.values.repo as string);
  if (ctx.values.at !== undefined) query.set("at", ctx.values.at as string);
  const q = query.size === 0 ? "" : `?${query}`;
  const reply = await ctx
    .api()
    .get<{ at: string; region: string; repositories: RepoPlan[] }>(`/retention/plan${q}`);
  if (ctx.json) return printJson(reply);
  const out: string[] = [];
  let deletes = 0;
  for (const r of reply.repositories) {
    deletes += r.delete.length;
    out.push(`${r.repo}  (rules ${r.rules.join(", ")}; decided by region ${r.decidedBy})`);
    const rows = [["", "digest", "tags", "why"]];
    for (const d of r.delete) rows.push(["delete", d.digest, d.tags.join(",") || "-", d.reasons.join("; ")]);
    for (const d of r.keep) rows.push(["keep", d.digest, d.tags.join(",") || "-", d.reasons.join("; ")]);
    if (rows.length > 1) out.push(table(rows).trimEnd().replace(/^/gm, "  "));
  }
  out.push(
    `plan as of ${reply.at}: ${deletes} manifest(s) to delete in ${reply.repositories.length} repositor${reply.repositories.length === 1 ? "y" : "ies"}; nothing changed`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

async function runRetention(ctx: Context): Promise<number> {
  const body: Record<string, string> = {};
  if (ctx.values.repo !== undefined) body.repo = ctx.values.repo as string;
  let clients: AdminClient[];
  if (ctx.values.region !== undefined) clients = [ctx.api()];
  else {
    const rules = await ctx.api().get<{ rules: Array<{ rule: { region: string } }> }>("/retention/rules");
    const regions = [...new Set(rules.rules.map((r) => r.rule.region))].sort();
    if (regions.length === 0) {
      process.stdout.write("no retention rules: nothing to run\n");
      return 0;
    }
    const mesh = ctx.mesh();
    clients = regions.map((name) => new AdminClient(inMesh(mesh, name)));
  }
  const records: RunRecord[] = [];
  let failed = false;
  for (const client of clients) {
    let run = await client.send<RunRecord>("POST", "/retention/runs", { json: body });
    if (!ctx.json) process.stdout.write(`retention run ${run.runId} in region ${run.region}\n`);
    let shown = 0;
    const deadline = Date.now() + RUN_TIMEOUT_MS;
    for (;;) {
      if (!ctx.json)
        for (; shown < run.lines.length; shown++) process.stdout.write(`  ${run.lines[shown]}\n`);
      if (run.state !== "running") break;
      if (Date.now() > deadline)
        throw new CommandError(
          `retention run ${run.runId} did not finish within ${RUN_TIMEOUT_MS / 60_000} minutes`,
        );
      await sleep(POLL_MS);
      run = await client.get<RunRecord>(`/retention/runs/${run.runId}`);
    }
    records.push(run);
    failed ||= run.state === "failed";
    const s = run.summary;
    if (!ctx.json && s !== undefined)
      process.stdout.write(
        `region ${run.region}: ${run.state}; deleted ${s.deleted} manifest(s) in ${s.repositories} repositor${s.repositories === 1 ? "y" : "ies"}, kept ${s.kept}, ${s.alreadyGone} already gone, ${run.skipped.length} skipped (decided elsewhere), in ${s.seconds.toFixed(1)} s\n`,
      );
  }
  if (ctx.json) printJson({ runs: records });
  return failed ? 1 : 0;
}
