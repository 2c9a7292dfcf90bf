/**
 * `meridian audit`: the audit log of every region (or of --region R), asked
 * of each region's admin API (`GET /admin/v1/audit`) in parallel and merged
 * by time, oldest first. Relative times (`--since 2h`) are resolved here,
 * once, so every region is asked for the same window.
 *
 * Output is a table on stdout (or --json: {records, unreachable}); a region
 * that cannot be reached or answers with an error is named on stderr and the
 * others are still printed. Exit codes: 0 every region answered, 1 some did
 * not, 2 usage.
 */
import { parseArgs } from "node:util";
import { AUDIT_ACTIONS, type AuditRecord, MAX_AUDIT_LIMIT } from "../node/audit.js";
import { parseAuditTime } from "../protocol/audit-time.js";
import type { Mesh, RegionEndpoints } from "../protocol/mesh.js";
import {
  AdminClient,
  CommandError,
  cliAuthorization,
  inMesh,
  readMesh,
  UsageError,
  useAuthorization,
  useMesh,
} from "./admin-client.js";
import { table } from "./table.js";

export const AUDIT_USAGE = `  audit [--since T] [--until T] [--actor NAME] [--action A] [--repo REPO] [--limit N]
                                  pushes, pulls, deletes, logins and admin changes of every region
                                  (or --region R), merged by time; T is ISO-8601 or a duration ago
                                  (15m, 2h, 7d); A is ${AUDIT_ACTIONS.join(", ")};
                                  the newest N records (default 1000, at most ${MAX_AUDIT_LIMIT}), listed oldest first
`;

export interface AuditCliDeps {
  /** The admin client of one region (default: `new AdminClient(region)`). */
  client?: (region: RegionEndpoints) => AdminClient;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  /** The clock relative times are resolved against. */
  now?: () => Date;
}

const OPTIONS = {
  data: { type: "string", default: ".meridian" },
  mesh: { type: "string" },
  region: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
  actor: { type: "string" },
  action: { type: "string" },
  repo: { type: "string" },
  limit: { type: "string" },
  json: { type: "boolean", default: false },
} as const;

/** Run `meridian audit …`; returns the exit code. */
export async function audit(argv: string[], deps: AuditCliDeps = {}): Promise<number> {
  const out = deps.stdout ?? ((text: string) => void process.stdout.write(text));
  const err = deps.stderr ?? ((text: string) => void process.stderr.write(text));
  const label = "meridian audit";
  try {
    const values = parseOptions(argv);
    useAuthorization(cliAuthorization(values.data));
    const search = auditSearch(values, (deps.now ?? (() => new Date()))());
    const limit = Number(search.get("limit"));
    const mesh: Mesh = readMesh(values.mesh, values.data);
    useMesh(mesh);
    const regions = values.region === undefined ? mesh.regions : [inMesh(mesh, values.region)];
    const clientFor = deps.client ?? ((r: RegionEndpoints) => new AdminClient(r));
    const path = `/audit?${search}`;
    const replies = await Promise.allSettled(
      regions.map((r) => clientFor(r).get<{ region: string; records: AuditRecord[] }>(path)),
    );
    const answered: AuditRecord[][] = [];
    const unreachable: Array<{ region: string; error: string }> = [];
    for (const [i, reply] of replies.entries()) {
      if (reply.status === "fulfilled") answered.push(reply.value.records);
      else {
        const e = reply.reason as Error;
        const problems = e instanceof CommandError && e.problems.length > 1 ? e.problems : [];
        unreachable.push({ region: regions[i]!.name, error: e.message });
        err(`${label}: ${e.message}\n${problems.map((p) => `  - ${p}\n`).join("")}`);
      }
    }
    const records = mergeAuditRecords(answered, limit);
    if (values.json) out(`${JSON.stringify({ records, unreachable }, null, 2)}\n`);
    else out(auditTable(records));
    return unreachable.length === 0 ? 0 : 1;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`${label}: ${e.message}\n  see 'meridian help audit'\n`);
      return 2;
    }
    err(`${label}: ${(e as Error)?.message ?? e}\n`);
    return 1;
  }
}

function parseOptions(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: false, strict: true }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * The query string every region is asked with: relative times resolved
 * against `now`, every value checked (UsageError naming the option).
 */
export function auditSearch(
  values: { [k in "since" | "until" | "actor" | "action" | "repo" | "limit"]?: string },
  now: Date,
): URLSearchParams {
  const search = new URLSearchParams();
  for (const key of ["since", "until"] as const) {
    const text = values[key];
    if (text === undefined) continue;
    try {
      search.set(key, parseAuditTime(text, now, `--${key}`).toISOString());
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  if (search.has("since") && search.has("until") && search.get("since")! > search.get("until")!)
    throw new UsageError("--since is after --until");
  if (values.action !== undefined && !(AUDIT_ACTIONS as readonly string[]).includes(values.action))
    throw new UsageError(`--action: want one of ${AUDIT_ACTIONS.join(", ")}`);
  for (const key of ["actor", "action", "repo"] as const) {
    const v = values[key];
    if (v === undefined) continue;
    if (v === "") throw new UsageError(`--${key}: empty`);
    search.set(key, v);
  }
  const limit = values.limit === undefined ? 1000 : /^\d{1,6}$/.test(values.limit) ? Number(values.limit) : 0;
  if (!(limit >= 1 && limit <= MAX_AUDIT_LIMIT))
    throw new UsageError(`--limit: a whole number from 1 to ${MAX_AUDIT_LIMIT}`);
  search.set("limit", String(limit));
  return search;
}

/**
 * Every region's records in one list, oldest first (by `at`, then region),
 * cut to the newest `limit`. Each region answered its newest `limit`
 * matches, so the last `limit` of the merge are the newest matches of the
 * whole mesh.
 */
export function mergeAuditRecords(perRegion: AuditRecord[][], limit: number): AuditRecord[] {
  const all = perRegion
    .flat()
    .sort((a, b) => cmp(Date.parse(a.at), Date.parse(b.at)) || cmp(a.region, b.region));
  return all.slice(Math.max(0, all.length - limit));
}

/** The records as a table (a line saying so when there are none). */
export function auditTable(records: AuditRecord[]): string {
  if (records.length === 0) return "no audit records\n";
  const rows = [["time", "region", "actor", "action", "artifact", "status", "address", "detail"]];
  for (const r of records)
    rows.push([
      r.at,
      r.region,
      r.kind === "user" || r.kind === "anonymous" ? r.actor : `${r.actor} (${r.kind})`,
      r.action,
      artifact(r),
      String(r.status),
      r.address,
      r.detail ?? "",
    ]);
  return table(rows);
}

/** repo:tag, repo@digest, or the repository alone. */
function artifact(r: AuditRecord): string {
  if (r.repo === undefined) return "";
  if (r.reference === undefined) return r.repo;
  return `${r.repo}${r.reference.includes(":") ? "@" : ":"}${r.reference}`;
}

function cmp<T extends string | number>(a: T, b: T): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
