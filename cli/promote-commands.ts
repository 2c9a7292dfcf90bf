/**
 * `meridian promote` and `meridian gate …` (issue 17, item 2;
 * node/http/admin/promotions.ts, protocol/promotion.ts). Dispatched by
 * cli/admin.ts.
 *
 * `promote` asks the SOURCE region's node (`--region`, default the mesh's
 * first region; never another region in its place, since the source tag is
 * read there): it resolves, judges, copies and records. Exit 0 when passed;
 * 1 when refused, printing each failed gate (`[scope] gate: reason`) on
 * stderr, or on any other error.
 *
 * `gate set SCOPE FILE` reads a YAML or JSON gate configuration and checks it
 * here with the same parser the node uses, listing every problem before
 * anything is sent.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { parseGateConfig } from "../protocol/gates.js";
import { parseGateScope } from "../protocol/promotion.js";
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

export const PROMOTE_USAGE = `  promote SRC_REPO:TAG --to DEST[/REPO[:TAG]] [--timeout SEC]
                                  copy SRC (in --region, default the first) with its referrers to DEST
                                  (a region, an external endpoint, or another repository of the same
                                  region) and set the tag there, only if every gate passes; REPO and
                                  TAG default to the source's; waits for the copy up to SEC (600)
  gate set SCOPE FILE             the gates (YAML or JSON) of SCOPE: destination:NAME (a region or
                                  endpoint) or project:NAME (the destination repository's project)
  gate list                       every gate configuration
  gate delete SCOPE
`;

export const PROMOTE_COMMANDS: Record<string, Command> = {
  promote: {
    args: ["SRC_REPO:TAG"],
    options: { ...JSON_OPT, to: { type: "string" }, timeout: { type: "string", default: "600" } },
    run: promote,
  },
  "gate set": { args: ["SCOPE", "FILE"], run: setGate },
  "gate list": { args: [], options: JSON_OPT, run: listGates },
  "gate delete": { args: ["SCOPE"], run: deleteGate },
};

interface GateRow {
  gate: string;
  scope: string;
  ok: boolean;
  reason: string;
}
interface PromotionReply {
  promotionId: string;
  source: { region: string; repository: string; tag: string; digest: string };
  destination: { kind: string; name: string; repository: string; tag: string };
  gates: GateRow[];
  outcome: string;
  repeated: boolean;
  copied?: { blobsCopied: number; bytesCopied: number; manifests: number; referrers: number };
}

async function promote(ctx: Context): Promise<number> {
  const to = ctx.values.to as string | undefined;
  if (to === undefined || to === "") throw new UsageError("--to DEST[/REPO[:TAG]] is required");
  const mesh = ctx.mesh();
  const region = (ctx.values.region as string | undefined) ?? mesh.regions[0]!.name;
  const timeout = Number(ctx.values.timeout);
  if (!Number.isFinite(timeout) || timeout < 1 || timeout > 86_400)
    throw new UsageError("--timeout SEC: seconds to wait for the promotion, 1 to 86400");
  const api = new AdminClient(inMesh(mesh, region));
  // The answer comes after the copy: wait for it as long as asked (never sent to another region).
  api.writeAnswerMs = api.callMs = timeout * 1000;
  let reply: PromotionReply;
  try {
    reply = await api.send<PromotionReply>("POST", "/promotions", {
      json: { source: ctx.positionals[0], to },
    });
  } catch (err) {
    // A refusal lists every failed gate (detail.errors); a 403 without them is a caller's missing right.
    if (err instanceof CommandError && err.status === 403 && err.problems.length > 0)
      throw new CommandError(`promotion refused by ${err.problems.length} gate(s)`, err.problems, 403);
    throw err;
  }
  if (ctx.json) return printJson(reply);
  const d = reply.destination;
  const where =
    d.kind === "repository" ? `${d.repository}:${d.tag}` : `${d.kind} ${d.name} ${d.repository}:${d.tag}`;
  const copy =
    reply.copied === undefined
      ? "already there (a retry: nothing copied)"
      : `${reply.copied.manifests} manifest(s), ${reply.copied.blobsCopied} blob(s), ${reply.copied.bytesCopied} bytes, ${reply.copied.referrers} referrer(s) copied`;
  process.stdout.write(
    `promoted ${reply.source.repository}:${reply.source.tag}@${reply.source.digest} from ${reply.source.region} to ${where}: ${copy}\n` +
      `promotion ${reply.promotionId}\n` +
      (reply.gates.length === 0
        ? "  no gates configured for this destination\n"
        : reply.gates.map((g) => `  ok [${g.scope}] ${g.reason}\n`).join("")),
  );
  return 0;
}

async function setGate(ctx: Context): Promise<number> {
  const [scopeText, file] = ctx.positionals as [string, string];
  try {
    parseGateScope(scopeText);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let value: unknown;
  try {
    value = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CommandError(`gate file ${file}: ${(err as Error).message}`);
  }
  let gates: unknown;
  try {
    gates = parseGateConfig(value, "gates");
  } catch (err) {
    const problems = (err as Error).message.replace(/^invalid gate configuration: /, "").split("; ");
    throw new CommandError(`gate file ${file}: ${problems.length} problem(s)`, problems);
  }
  await ctx.api().send("PUT", `/gates/${encodeURIComponent(scopeText)}`, { json: gates });
  process.stdout.write(`gates of ${scopeText} set\n`);
  return 0;
}

async function listGates(ctx: Context): Promise<number> {
  const reply = await ctx
    .api()
    .get<{ gates: Array<{ scope: string; gates: Record<string, unknown>; updatedAt: string }> }>("/gates");
  if (ctx.json) return printJson(reply);
  if (reply.gates.length === 0) {
    process.stdout.write("no gates\n");
    return 0;
  }
  const rows = [["scope", "gates", "updated"]];
  for (const g of reply.gates) rows.push([g.scope, JSON.stringify(g.gates), g.updatedAt]);
  process.stdout.write(table(rows));
  return 0;
}

async function deleteGate(ctx: Context): Promise<number> {
  const scope = ctx.positionals[0]!;
  await ctx.api().send("DELETE", `/gates/${encodeURIComponent(scope)}`);
  process.stdout.write(`gates of ${scope} deleted\n`);
  return 0;
}
