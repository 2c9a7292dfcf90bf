/**
 * The quota commands: `quota set PROJECT SIZE|none` and `quota show
 * [PROJECT]`, through a region's admin API (node/http/admin/quotas.ts).
 * Usage is the asked region's (each region counts what it stores; --region
 * picks one). Dispatched by cli/admin.ts.
 */
import { type Command, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const QUOTA_USAGE = `  quota set PROJECT SIZE|none     a project's storage quota in each region (system admin): bytes, or
                                  with a unit (KB MB GB TB, KiB MiB GiB TiB); none removes it
  quota show [PROJECT]            a project's (or every project's) quota and its usage in the region:
                                  distinct bytes live, blobs, bytes deleted but not yet collected
`;

export const QUOTA_COMMANDS: Record<string, Command> = {
  "quota set": { args: ["PROJECT", "SIZE"], options: JSON_OPT, run: quotaSet },
  "quota show": { args: ["[PROJECT]"], options: JSON_OPT, run: quotaShow },
};

interface QuotaRow {
  project: string;
  limitBytes: number | null;
  usedBytes: number;
  blobs: number;
  reclaimableBytes: number;
}

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** "10GiB", "500 MB", "1048576" → bytes; "none" → null. */
export function parseSize(text: string): number | null {
  if (text.toLowerCase() === "none") return null;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = UNITS[(m?.[2] ?? "").toLowerCase() || "b"];
  const bytes = m === null || unit === undefined ? Number.NaN : Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 0)
    throw new UsageError(`SIZE: want bytes, a size with a unit (e.g. 10GiB, 500MB) or none, got "${text}"`);
  return bytes;
}

/** Bytes for people: 1.5 GiB (binary units). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[i]}`;
}

async function quotaSet(ctx: Context): Promise<number> {
  const [project, size] = ctx.positionals as [string, string];
  const limitBytes = parseSize(size);
  const reply = await ctx
    .api()
    .send<{ project: string; limitBytes: number | null; seq: number }>(
      "PUT",
      `/quotas/${encodeURIComponent(project)}`,
      { json: { limitBytes } },
    );
  if (ctx.json) return printJson(reply);
  process.stdout.write(
    limitBytes === null
      ? `quota of ${project}: none\n`
      : `quota of ${project}: ${formatBytes(limitBytes)} (${limitBytes} bytes) in each region\n`,
  );
  return 0;
}

async function quotaShow(ctx: Context): Promise<number> {
  const project = ctx.positionals[0];
  const api = ctx.api();
  const reply =
    project === undefined
      ? await api.get<{ region: string; quotas: QuotaRow[] }>("/quotas")
      : await api.get<QuotaRow & { region: string }>(`/quotas/${encodeURIComponent(project)}`);
  if (ctx.json) return printJson(reply);
  const rows: QuotaRow[] = "quotas" in reply ? reply.quotas : [reply];
  const lines = [["project", "quota", "used", "used %", "blobs", "reclaimable"]];
  for (const q of rows)
    lines.push([
      q.project,
      q.limitBytes === null ? "none" : formatBytes(q.limitBytes),
      formatBytes(q.usedBytes),
      q.limitBytes === null || q.limitBytes === 0
        ? "-"
        : `${((100 * q.usedBytes) / q.limitBytes).toFixed(1)}%`,
      String(q.blobs),
      formatBytes(q.reclaimableBytes),
    ]);
  process.stdout.write(`region ${reply.region}\n${table(lines)}`);
  return 0;
}
