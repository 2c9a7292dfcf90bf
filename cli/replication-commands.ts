/**
 * `replication status REPO@DIGEST`: where one artifact has replicated, per
 * region (present, deleted, failed, pending, not selected), from every
 * region's admin API, the replication-failed alerts (replication/worker.ts
 * REPLICATION_FAILED) and each worker's own failure report. Dispatched by
 * cli/admin.ts.
 */
import type { RegionEndpoints } from "../protocol/mesh.js";
import { effectivePolicies, type Policy, parsePolicy, selectsRepository } from "../protocol/policy.js";
import {
  AdminClient,
  type Command,
  CommandError,
  type Context,
  cmp,
  JSON_OPT,
  printJson,
  segments,
  UsageError,
} from "./admin-client.js";
import { table } from "./table.js";

export const REPLICATION_USAGE = `  replication status REPO@DIGEST  per region: present, failed, pending or not selected
`;

export const REPLICATION_COMMANDS: Record<string, Command> = {
  "replication status": { args: ["REPO@DIGEST"], options: JSON_OPT, run: replicationStatus },
};

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
