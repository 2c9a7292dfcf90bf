/**
 * The content commands: `tag history`, `tag rule`, `tag rules` (the tag
 * merge rules), `undelete` and `repo delete`, through a region's admin API
 * (node/http/admin.ts). Dispatched by cli/admin.ts.
 */
import {
  type Command,
  type Context,
  cmp,
  JSON_OPT,
  printJson,
  segments,
  UsageError,
} from "./admin-client.js";
import { table } from "./table.js";

export const REPOSITORY_USAGE = `  tag history REPO:TAG [--at TIME]  every write to a tag, and what it held at TIME (ISO-8601 or ms)
  tag rule SCOPE RULE [--home REGION] [--epoch N] [--durability async|sync(K)]
                                  set the tag merge rule (lww, first-write, home-region) of a
                                  repository, a prefix ending in "/", or "" for every repository;
                                  sync(K): a push is acknowledged once K other regions hold it
  tag rules                       the tag merge rules in force
  undelete REPO[:TAG|@DIGEST]     restore deleted content (within the undelete window)
  repo delete REPO                delete a repository (restorable with undelete)
`;

export const REPOSITORY_COMMANDS: Record<string, Command> = {
  "tag history": { args: ["REPO:TAG"], options: { ...JSON_OPT, at: { type: "string" } }, run: tagHistory },
  "tag rule": {
    args: ["SCOPE", "RULE"],
    options: { home: { type: "string" }, epoch: { type: "string" }, durability: { type: "string" } },
    run: tagRule,
  },
  "tag rules": { args: [], options: JSON_OPT, run: tagRules },
  undelete: { args: ["REPO[:TAG|@DIGEST]"], options: JSON_OPT, run: undelete },
  "repo delete": { args: ["REPO"], run: repoDelete },
};

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
  immutable?: string | null;
  at?: { time: string; digest: string | null; deleted: boolean };
  conflicts: Array<{
    winner: { origin: string; digest: string | null };
    loser: { origin: string; digest: string | null };
    origin: string;
    at: string;
  }>;
  /** Promotions from or to this tag (node/http/admin/repositories.ts), oldest first. */
  promotions?: Array<{
    promotionId: string;
    outcome: string;
    at: string;
    actor: string;
    source: { region: string; repository: string; tag: string; digest: string };
    destination: { kind: string; name: string; repository: string; tag: string };
    gates: Array<{ ok: boolean; reason: string }>;
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
  const immutable = h.immutable ? `, immutable (rule ${h.immutable})` : "";
  const out = [
    `${h.repo}:${h.tag}  rule ${h.rule}${h.scope === "" ? "" : ` (scope ${h.scope})`}${immutable}`,
  ];
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
  for (const p of h.promotions ?? [])
    out.push(
      `promotion ${p.promotionId} ${p.outcome} ${p.at} by ${p.actor}: ${p.source.region}/${p.source.repository}:${p.source.tag} (${p.source.digest}) to ${p.destination.kind} ${p.destination.name} ${p.destination.repository}:${p.destination.tag}${p.gates
        .filter((g) => !g.ok)
        .map((g) => `; ${g.reason}`)
        .join("")}`,
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
