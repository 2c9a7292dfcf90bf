/**
 * Block-pull policies from the command line (README "Block-pull policies";
 * node/http/admin/pull-policies.ts): `pull-policy set PROJECT FILE` reads a
 * YAML or JSON document `{gates, exempt}` and checks it here with the same
 * parser the node uses, listing every problem before anything is sent.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { parsePullPolicy } from "../protocol/pull-policy.js";
import { type Command, CommandError, type Context, JSON_OPT, printJson } from "./admin-client.js";
import { table } from "./table.js";

export const PULL_POLICY_USAGE = `  pull-policy set PROJECT FILE    refuse pulls of PROJECT's manifests that fail FILE's gates (YAML or
                                  JSON: gates: signature, vulnerabilities, annotations; exempt:
                                  systemAdmins (default true), robots); system admins only
  pull-policy list                every project's pull policy
  pull-policy delete PROJECT
`;

interface PolicyRow {
  project: string;
  gates: Record<string, unknown>;
  exempt: { systemAdmins: boolean; robots: string[] };
  updatedAt: string;
}

async function setPolicy(ctx: Context): Promise<number> {
  const [project, file] = ctx.positionals as [string, string];
  let value: unknown;
  try {
    value = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CommandError(`pull policy file ${file}: ${(err as Error).message}`);
  }
  let policy: ReturnType<typeof parsePullPolicy>;
  try {
    policy = parsePullPolicy(project, value);
  } catch (err) {
    const problems = (err as Error).message.replace(/^invalid pull policy: /, "").split("; ");
    throw new CommandError(`pull policy file ${file}: ${problems.length} problem(s)`, problems);
  }
  await ctx.api().send("PUT", `/pull-policies/${encodeURIComponent(project)}`, {
    json: { gates: policy.gates, exempt: policy.exempt },
  });
  process.stdout.write(`pull policy of project ${project} set: ${Object.keys(policy.gates).join(", ")}\n`);
  return 0;
}

async function listPolicies(ctx: Context): Promise<number> {
  const reply = await ctx.api().get<{ policies: PolicyRow[] }>("/pull-policies");
  if (ctx.json) return printJson(reply);
  if (reply.policies.length === 0) {
    process.stdout.write("no pull policies\n");
    return 0;
  }
  const rows = [["PROJECT", "GATES", "EXEMPT", "UPDATED"]];
  for (const p of reply.policies) {
    const exempt = [p.exempt.systemAdmins ? "system admins" : "", ...p.exempt.robots].filter((x) => x !== "");
    rows.push([p.project, JSON.stringify(p.gates), exempt.join(", ") || "nobody", p.updatedAt]);
  }
  process.stdout.write(table(rows));
  return 0;
}

async function deletePolicy(ctx: Context): Promise<number> {
  const [project] = ctx.positionals as [string];
  await ctx.api().send("DELETE", `/pull-policies/${encodeURIComponent(project)}`);
  process.stdout.write(`pull policy of project ${project} deleted\n`);
  return 0;
}

export const PULL_POLICY_COMMANDS: Record<string, Command> = {
  "pull-policy set": { args: ["PROJECT", "FILE"], run: setPolicy },
  "pull-policy list": { args: [], options: JSON_OPT, run: listPolicies },
  "pull-policy delete": { args: ["PROJECT"], run: deletePolicy },
};
