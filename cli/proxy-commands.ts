/**
 * The pull-through cache commands (issue 17, item 3): a project made a
 * proxy of an upstream registry named by an external endpoint
 * (node/http/admin/proxies.ts; protocol/proxy.ts; node/pull-through.ts).
 * Dispatched by cli/admin.ts.
 */
import { parseDuration } from "../protocol/proxy.js";
import { type Command, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const PROXY_USAGE = `  project proxy PROJECT --endpoint NAME [--upstream-prefix P] [--freshness 5m]
                                  make PROJECT a pull-through cache of endpoint NAME: a pull that
                                  misses is fetched from there, stored and served (PROJECT/rest is
                                  upstream's rest, or P/rest); a cached tag older than --freshness
                                  (s, m, h, d; default 5m) is checked with upstream; pushes refused
  project proxy PROJECT --off     an ordinary project again (what it cached stays)
  project proxy PROJECT           show its proxy setting
  project proxies                 the pull-through cache projects
`;

export const PROXY_COMMANDS: Record<string, Command> = {
  "project proxy": {
    args: ["PROJECT"],
    options: {
      endpoint: { type: "string" },
      "upstream-prefix": { type: "string" },
      freshness: { type: "string" },
      off: { type: "boolean", default: false },
      ...JSON_OPT,
    },
    run: proxyCommand,
  },
  "project proxies": { args: [], options: JSON_OPT, run: listProxies },
};

interface ProxyRow {
  project: string;
  endpoint: string;
  upstreamPrefix?: string;
  freshnessSeconds: number;
  updatedAt: string;
}

async function proxyCommand(ctx: Context): Promise<number> {
  const project = ctx.positionals[0]!;
  const path = `/proxies/${encodeURIComponent(project)}`;
  const endpoint = ctx.values.endpoint as string | undefined;
  const prefix = ctx.values["upstream-prefix"] as string | undefined;
  const freshness = ctx.values.freshness as string | undefined;
  if (ctx.values.off === true) {
    if (endpoint !== undefined || prefix !== undefined || freshness !== undefined)
      throw new UsageError("--off takes no other option");
    await ctx.api().send("DELETE", path);
    process.stdout.write(`project ${project} is no longer a proxy (what it cached stays)\n`);
    return 0;
  }
  if (endpoint === undefined) {
    if (prefix !== undefined || freshness !== undefined)
      throw new UsageError("--endpoint NAME is required to set a proxy");
    const row = await ctx.api().get<ProxyRow>(path);
    if (ctx.json) return printJson(row);
    process.stdout.write(`${describe(row)}\n`);
    return 0;
  }
  const body: Record<string, unknown> = { endpoint };
  if (prefix !== undefined) body.upstreamPrefix = prefix;
  if (freshness !== undefined) {
    const seconds = parseDuration(freshness);
    if (seconds === undefined)
      throw new UsageError(
        `--freshness ${JSON.stringify(freshness)}: want a duration such as 90s, 5m, 2h, 1d`,
      );
    body.freshnessSeconds = seconds;
  }
  const reply = await ctx.api().send<{ proxy: ProxyRow }>("PUT", path, { json: body });
  process.stdout.write(`${describe(reply.proxy)}\n`);
  return 0;
}

async function listProxies(ctx: Context): Promise<number> {
  const reply = await ctx.api().get<{ proxies: ProxyRow[] }>("/proxies");
  if (ctx.json) return printJson(reply);
  if (reply.proxies.length === 0) {
    process.stdout.write("no proxy projects\n");
    return 0;
  }
  const rows = [["project", "endpoint", "upstream", "freshness", "updated"]];
  for (const p of reply.proxies)
    rows.push([
      p.project,
      p.endpoint,
      p.upstreamPrefix === undefined ? `${p.project}/X → X` : `${p.project}/X → ${p.upstreamPrefix}/X`,
      `${p.freshnessSeconds}s`,
      p.updatedAt,
    ]);
  process.stdout.write(table(rows));
  return 0;
}

function describe(p: ProxyRow): string {
  const upstream = p.upstreamPrefix === undefined ? "X" : `${p.upstreamPrefix}/X`;
  return `project ${p.project} proxies endpoint ${p.endpoint}: ${p.project}/X → ${upstream}, tags checked after ${p.freshnessSeconds}s`;
}
