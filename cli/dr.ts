/**
 * Disaster-recovery commands of `meridian` (README "Operations"):
 *
 *   failover --from A --to B [--force]   re-home every repository homed in A to B
 *                                        at a new failover epoch (asked of B's admin API)
 *   rebuild-region --region A            fill region A (empty, or missing content)
 *                                        from its peers, with progress, until its
 *                                        workers report the rebuild done
 *
 * `failover` is refused while B's peer still sees A, or saw it less than A's
 * lease ago (A may still be accepting writes as home); `--force` overrides
 * that for an operator who knows A is dead. `rebuild-region` asks A's admin
 * API for a rebuild run (every policy into A, from every source), then shows,
 * per source, how many of its repositories A holds in the same state, until
 * A's workers record the run's outcome.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import { differingRepositories, type RepoDigest } from "../protocol/summary.js";
import {
  AdminClient,
  type Command,
  CommandError,
  type Context,
  inMesh,
  JSON_OPT,
  printJson,
  statsText,
  UsageError,
} from "./admin-client.js";
import { progress } from "./progress.js";

export const DR_USAGE = `  failover --from A --to B [--force]
                                  re-home every repository homed in A to B (a new failover
                                  epoch); refused while A is up or its lease runs, unless --force
  rebuild-region --region A       fill region A from its peers (after its data was lost),
                                  showing progress until its workers report the rebuild done
`;

/** How long `rebuild-region` follows a rebuild before giving up. */
const REBUILD_TIMEOUT_MS = 60 * 60_000;
const POLL_MS = 1_000;

export const DR_COMMANDS: Record<string, Command> = {
  failover: {
    args: [],
    options: {
      ...JSON_OPT,
      from: { type: "string" },
      to: { type: "string" },
      force: { type: "boolean", default: false },
    },
    run: failover,
  },
  "rebuild-region": { args: [], options: JSON_OPT, run: rebuildRegion },
};

async function failover(ctx: Context): Promise<number> {
  const from = ctx.values.from as string | undefined;
  const to = ctx.values.to as string | undefined;
  if (from === undefined || to === undefined)
    throw new UsageError("usage: meridian failover --from A --to B [--force]");
  const mesh = ctx.mesh();
  inMesh(mesh, from);
  // Asked of the new home: it must be up, and it is the region whose peer judges the old one.
  const api = ctx.values.region === undefined ? new AdminClient(inMesh(mesh, to)) : ctx.api();
  const reply = await api.send<{ from: string; to: string; epoch: number; scopes: string[] }>(
    "POST",
    "/failover",
    {
      json: { from, to, ...(ctx.values.force === true ? { force: true } : {}) },
    },
  );
  if (ctx.json) return printJson(reply);
  if (reply.scopes.length === 0) {
    process.stdout.write(`no repository is homed in ${from}; nothing to fail over\n`);
    return 0;
  }
  const names = reply.scopes.map((s) => (s === "" ? '"" (every repository)' : s));
  process.stdout.write(
    `failed over ${reply.scopes.length} scope(s) from ${from} to ${to} at epoch ${reply.epoch}: ${names.join(", ")}\n` +
      `${from} refuses home writes once it sees epoch ${reply.epoch}; point writers at ${to} (the front door already does)\n`,
  );
  return 0;
}

interface RunRecord {
  results: Record<string, { outcome: string; stats: Record<string, number>; error?: string; at: string }>;
}

async function rebuildRegion(ctx: Context): Promise<number> {
  const name = ctx.values.region as string | undefined;
  if (name === undefined) throw new UsageError("usage: meridian rebuild-region --region A");
  const mesh = ctx.mesh();
  const target = inMesh(mesh, name);
  const api = new AdminClient(target);
  const { runId } = await api.send<{ runId: string }>("POST", "/rebuild", { json: { region: name } });
  const credentials = peerCredentials(mesh, name);
  const here = new PeerClient(name, target.grpc, credentials);
  const sources = mesh.regions
    .filter((r) => r.name !== name)
    .map((r) => new PeerClient(r.name, r.grpc, credentials));
  const started = Date.now();
  // A bar with rate and time left on a terminal, plain lines elsewhere (cli/progress.ts).
  const shown = progress(`rebuilding ${name}`, undefined, { noun: "repositories in step" });
  try {
    for (;;) {
      let run: RunRecord | undefined;
      try {
        run = await api.get<RunRecord>(`/rebuild/${encodeURIComponent(runId)}`);
      } catch (err) {
        // 404 until the run finishes; a region unreachable for a moment: keep following.
        if (
          !(err instanceof CommandError) ||
          (err.status !== undefined && err.status !== 404 && err.status < 500)
        )
          throw err;
      }
      const step = await inStep(here, sources);
      shown.update(step.done, step.note, step.total);
      const result = run?.results[name];
      if (result !== undefined) {
        shown.finish();
        if (ctx.json) printJson({ region: name, runId, ...result });
        else
          process.stdout.write(
            `rebuild of ${name}: ${result.outcome} after ${((Date.now() - started) / 1000).toFixed(1)} s; ${statsText(result.stats)}${result.error === undefined ? "" : `; ${result.error}`}\n`,
          );
        return result.outcome === "ok" ? 0 : 1;
      }
      if (Date.now() - started > REBUILD_TIMEOUT_MS)
        throw new CommandError(`no outcome from ${name}'s workers after an hour; is its worker running?`);
      await sleep(POLL_MS);
    }
  } finally {
    // An error ends the \r progress line too, before its message (issue 11, finding 10).
    shown.finish();
    here.close();
    for (const s of sources) s.close();
  }
}

/**
 * How far the target is: per source, how many of its repositories the target
 * holds in the same state ("with b 37/40, c 12/12"), and their sums (policies
 * may keep some out on purpose, so 100% is not promised; the run's outcome is
 * what counts).
 */
async function inStep(
  here: PeerClient,
  sources: PeerClient[],
): Promise<{ done: number; total: number; note: string }> {
  let done = 0;
  let total = 0;
  const mine = await here.summarize("").catch(() => undefined);
  const parts: string[] = [];
  for (const source of sources) {
    const theirs = await source.summarize("").catch(() => undefined);
    if (theirs === undefined) {
      parts.push(`${source.region} unreachable`);
      continue;
    }
    const differing = new Set(differingRepositories(mine?.repos ?? [], theirs.repos));
    const same = theirs.repos.filter((r: RepoDigest) => !differing.has(r.repo)).length;
    done += same;
    total += theirs.repos.length;
    parts.push(`${source.region} ${same}/${theirs.repos.length}`);
  }
  return { done, total, note: `with ${parts.join(", ")}` };
}
