/**
 * The immutable-tag commands: `immutable add|list|delete`, through a
 * region's admin API (node/http/admin/immutability.ts). Dispatched by
 * cli/admin.ts. A rule protects tags matching TAGS in repositories matching
 * REPOS (globs) from being moved or deleted once set, in every region
 * (protocol/immutable-tags.ts has the semantics).
 */
import { type Command, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const IMMUTABLE_USAGE = `  immutable add NAME --repos GLOB --tags GLOB
                                  make matching tags immutable (e.g. --repos 'prod/*' --tags 'v*'):
                                  once set, a push or delete that would move them is refused (403 DENIED)
  immutable list                  the immutable-tag rules in force
  immutable delete NAME           remove a rule (tags it covered can be moved again)
`;

export const IMMUTABLE_COMMANDS: Record<string, Command> = {
  "immutable add": {
    args: ["NAME"],
    options: { ...JSON_OPT, repos: { type: "string" }, tags: { type: "string" } },
    run: add,
  },
  "immutable list": { args: [], options: JSON_OPT, run: list },
  "immutable delete": { args: ["NAME"], options: JSON_OPT, run: remove },
};

interface RuleReply {
  name: string;
  repositories: string;
  tags: string;
  actor?: string;
  at?: string;
  origin?: string;
  seq?: number;
}

async function add(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const { repos, tags } = ctx.values as { repos?: string; tags?: string };
  if (repos === undefined || tags === undefined)
    throw new UsageError("--repos GLOB and --tags GLOB are required");
  const reply = await ctx.api().send<RuleReply>("PUT", `/immutability/${encodeURIComponent(name)}`, {
    json: { repositories: repos, tags },
  });
  if (ctx.json) return printJson(reply);
  process.stdout.write(`immutable rule ${name}: tags ${tags} in ${repos}\n`);
  return 0;
}

async function list(ctx: Context): Promise<number> {
  const reply = await ctx.api().get<{ rules: RuleReply[] }>("/immutability");
  if (ctx.json) return printJson(reply);
  const rows = [["name", "repositories", "tags", "set by", "at", "in"]];
  for (const r of reply.rules)
    rows.push([r.name, r.repositories, r.tags, r.actor ?? "-", r.at ?? "-", r.origin ?? "-"]);
  process.stdout.write(table(rows));
  return 0;
}

async function remove(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const reply = await ctx
    .api()
    .send<{ name: string; seq: number }>("DELETE", `/immutability/${encodeURIComponent(name)}`);
  if (ctx.json) return printJson(reply);
  process.stdout.write(`deleted immutable rule ${name}\n`);
  return 0;
}
