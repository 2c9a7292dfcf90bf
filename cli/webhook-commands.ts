/**
 * The webhook commands (issue 17, item 5): `webhook add|list|delete`,
 * through a region's admin API (node/http/admin/webhooks.ts). Dispatched by
 * cli/admin.ts. A subscription delivers a project's events as signed
 * CloudEvents (protocol/webhook.ts); `--secret-file` names a file that must
 * exist at that path on every region's host (the key never enters the log).
 * `--project '*'` (system admins) reaches every project; `--siem` (system
 * admins, implies project `*`) streams every audit record instead
 * (protocol/siem.ts).
 */

import { isAbsolute, resolve } from "node:path";
import type { DeliveryAttempt } from "../replication/webhook-delivery.js";
import { type Command, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const WEBHOOK_USAGE = `  webhook add NAME --url URL --project P [--events pushed,replicated,deleted,tag,conflict,promotion,scan-gate,failover,quota]
              [--repos GLOB[,GLOB]] [--secret-file F]
                                  deliver P's events as signed CloudEvents to URL (F: the HMAC key,
                                  read from that path on every region's host); P '*': every project
                                  (system admins); failovers reach every subscription asking for them
  webhook add NAME --siem --url URL [--secret-file F]
                                  stream every audit record (pulls, pushes, logins, failed logins,
                                  admin changes) of every region to a SIEM as signed CloudEvents
                                  batches (system admins)
  webhook list                    the subscriptions you may see
  webhook delete NAME             stop and remove a subscription
  webhook replay NAME --from SEQ [--region R]
                                  deliver again from sequence SEQ of R's log (default: the region
                                  reached), with the same event ids
  webhook deliveries NAME         the last delivery attempts of NAME in every region (from each
                                  region's worker: event id, sequence, status or error, duration)
`;

export const WEBHOOK_COMMANDS: Record<string, Command> = {
  "webhook add": {
    args: ["NAME"],
    options: {
      ...JSON_OPT,
      url: { type: "string" },
      project: { type: "string" },
      events: { type: "string" },
      repos: { type: "string" },
      "secret-file": { type: "string" },
      siem: { type: "boolean" },
    },
    run: add,
  },
  "webhook list": { args: [], options: JSON_OPT, run: list },
  "webhook delete": { args: ["NAME"], options: JSON_OPT, run: remove },
  "webhook replay": {
    args: ["NAME"],
    options: { ...JSON_OPT, from: { type: "string" }, region: { type: "string" } },
    run: replay,
  },
  "webhook deliveries": { args: ["NAME"], options: JSON_OPT, run: deliveries },
};

interface WebhookReply {
  name: string;
  url: string;
  project: string;
  events?: string[];
  repos?: string[];
  secretFile?: string;
  siem?: boolean;
  actor?: string;
  at?: string;
  origin?: string;
}

const csv = (s: string | undefined) =>
  s === undefined
    ? undefined
    : s
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "");

async function add(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const v = ctx.values as Record<string, string | undefined>;
  const siem = (ctx.values as { siem?: boolean }).siem === true;
  if (siem && (v.events !== undefined || v.repos !== undefined))
    throw new UsageError("--siem takes no --events or --repos (it streams every audit record)");
  const project = siem ? (v.project ?? "*") : v.project;
  if (v.url === undefined || project === undefined)
    throw new UsageError("--url URL and --project P are required (with --siem, only --url)");
  const file = v["secret-file"];
  const json: Record<string, unknown> = { url: v.url, project };
  if (siem) json.siem = true;
  if (v.events !== undefined) json.events = csv(v.events);
  if (v.repos !== undefined) json.repos = csv(v.repos);
  if (file !== undefined) json.secretFile = isAbsolute(file) ? file : resolve(file);
  const reply = await ctx.api().send<WebhookReply>("PUT", `/webhooks/${encodeURIComponent(name)}`, { json });
  if (ctx.json) return printJson(reply);
  process.stdout.write(`webhook ${name}: ${siem ? "audit (SIEM)" : project} → ${v.url}\n`);
  return 0;
}

async function list(ctx: Context): Promise<number> {
  const reply = await ctx.api().get<{ webhooks: WebhookReply[] }>("/webhooks");
  if (ctx.json) return printJson(reply);
  const rows = [["name", "project", "url", "events", "repos", "signed", "set by", "at"]];
  for (const w of reply.webhooks)
    rows.push([
      w.name,
      w.project,
      w.url,
      w.siem === true ? "audit" : (w.events?.join(",") ?? "all"),
      w.repos?.join(",") ?? "all",
      w.secretFile === undefined ? "no" : "yes",
      w.actor ?? "-",
      w.at ?? "-",
    ]);
  process.stdout.write(table(rows));
  return 0;
}

async function remove(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const reply = await ctx.api().send<{ name: string }>("DELETE", `/webhooks/${encodeURIComponent(name)}`);
  if (ctx.json) return printJson(reply);
  process.stdout.write(`deleted webhook ${name}\n`);
  return 0;
}

/** One delivery attempt, as each region's worker serves its log. */
type Attempt = DeliveryAttempt;

async function deliveries(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const out: Array<Attempt & { region: string }> = [];
  const unreachable: string[] = [];
  for (const region of ctx.mesh().regions) {
    const url = region.metrics?.worker;
    if (url === undefined) continue;
    try {
      const res = await fetch(`${url}/webhooks`, { signal: AbortSignal.timeout(5_000) });
      const body = (await res.json()) as { webhooks: Record<string, Attempt[]> };
      for (const a of body.webhooks[name] ?? []) out.push({ ...a, region: region.name });
    } catch {
      unreachable.push(region.name);
    }
  }
  if (ctx.json) return printJson({ name, deliveries: out, unreachable });
  const rows = [["region", "at", "seq", "event id", "type", "attempt", "status", "ms", "error"]];
  for (const a of out)
    rows.push([
      a.region,
      a.at,
      String(a.seq),
      a.eventId,
      a.type,
      String(a.attempt),
      a.status === undefined ? "-" : String(a.status),
      String(a.durationMs),
      a.error ?? "",
    ]);
  process.stdout.write(table(rows));
  if (unreachable.length > 0) process.stderr.write(`workers not reached: ${unreachable.join(", ")}\n`);
  return 0;
}

async function replay(ctx: Context): Promise<number> {
  const name = ctx.positionals[0]!;
  const { from, region } = ctx.values as { from?: string; region?: string };
  if (from === undefined || !/^\d+$/.test(from) || Number(from) < 1)
    throw new UsageError("--from SEQ (≥ 1) is required");
  const json: Record<string, unknown> = { from: Number(from) };
  if (region !== undefined) json.region = region;
  const reply = await ctx
    .api()
    .send<{ name: string; region: string; from: number }>(
      "POST",
      `/webhooks/${encodeURIComponent(name)}/replay`,
      {
        json,
      },
    );
  if (ctx.json) return printJson(reply);
  process.stdout.write(`webhook ${name}: replaying ${reply.region} from ${reply.from}\n`);
  return 0;
}
