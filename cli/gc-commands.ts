/**
 * `meridian gc why DIGEST`: why a blob is missing — every garbage
 * collection of it the region knows of, its own and (replicated) other
 * regions', with the run, the reason and the repositories whose links it
 * dropped (GET /gc/collected/:digest).
 *
 * `meridian gc run`: garbage-collect one region's blob store now
 * (node/data/gc.ts through the admin API's POST /gc/runs), follow the run
 * and print its progress (on stderr: the scan, then the collection, a bar
 * with rate and time left on a terminal, plain lines elsewhere) and its
 * summary (stdout; the run's record with --json). Exit 0 when the run finished ok, 1 when it
 * failed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type Command, CommandError, type Context, JSON_OPT, printJson } from "./admin-client.js";
import { type Progress, progress } from "./progress.js";

export const GC_USAGE = `  gc run [--dry-run] [--now]      garbage-collect a region's blob store (--region R; default the first
                                  that answers), wait for it, print progress and what was reclaimed;
                                  --dry-run lists what would go and changes nothing; --now: grace period
                                  and undelete window 0 for this run (system admin; audited)
  gc why DIGEST                   why a blob is missing: the GC runs that collected it (any region's),
                                  why, and the repositories whose links they dropped
`;

/** How long `gc run` follows a run before giving up. */
const WAIT_TIMEOUT_MS = 60 * 60_000;
const POLL_MS = 500;

export const GC_COMMANDS: Record<string, Command> = {
  "gc run": {
    args: [],
    options: {
      ...JSON_OPT,
      "dry-run": { type: "boolean", default: false },
      now: { type: "boolean", default: false },
    },
    run: gcRun,
  },
  "gc why": { args: ["DIGEST"], options: { ...JSON_OPT }, run: gcWhy },
};

interface Collection {
  region: string;
  runId: string;
  reason: string;
  size: number;
  repos: string[];
  at: string;
  actor: string;
}

async function gcWhy(ctx: Context): Promise<number> {
  const digest = ctx.positionals[0]!;
  const { collections } = await ctx
    .api()
    .get<{ collections: Collection[] }>(`/gc/collected/${encodeURIComponent(digest)}`);
  if (ctx.json) {
    printJson({ digest, collections });
    return 0;
  }
  if (collections.length === 0) {
    process.stdout.write(
      `${digest}: no garbage collection of it is recorded (deleted content stays until one runs)\n`,
    );
    return 0;
  }
  for (const c of collections)
    process.stdout.write(
      `${digest}: collected in region ${c.region} by ${c.runId} at ${c.at} (${c.actor}): ${c.reason}, ${c.size} bytes; links dropped: ${c.repos.length === 0 ? "none" : c.repos.join(", ")}\n`,
    );
  return 0;
}

interface RunState {
  runId: string;
  region: string;
  state: "running" | "ok" | "failed";
  dryRun: boolean;
  progress?: { phase: string; scanned: number; candidates: number; collected: number };
  result?: {
    scanned: number;
    candidates: number;
    candidateBytes: number;
    collected: number;
    collectedBytes: number;
    restored: number;
    durationMs: number;
    items: Array<{ digest: string; size: number; reason: string }>;
  };
  stats?: Record<string, number>;
  error?: string;
}

async function gcRun(ctx: Context): Promise<number> {
  const api = ctx.api();
  const started = await api.send<RunState & { graceMs: number; undeleteWindowMs: number }>(
    "POST",
    "/gc/runs",
    {
      json: { dryRun: ctx.values["dry-run"] === true, now: ctx.values.now === true },
    },
  );
  const say = (line: string) => {
    if (!ctx.json) process.stdout.write(`${line}\n`);
  };
  say(
    `gc run ${started.runId} in region ${started.region}${started.dryRun ? " (dry run)" : ""}: grace ${seconds(started.graceMs)}, undelete window ${seconds(started.undeleteWindowMs)}`,
  );
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  const shown = new GcProgress(started.runId, started.dryRun);
  let run: RunState;
  try {
    for (;;) {
      try {
        run = await api.get<RunState>(`/gc/runs/${encodeURIComponent(started.runId)}`);
      } catch (err) {
        // Unreachable for a moment: keep waiting; a refusal is final.
        if (!(err instanceof CommandError) || (err.status !== undefined && err.status < 500)) throw err;
        await sleep(POLL_MS);
        continue;
      }
      if (run.progress !== undefined) shown.update(run.progress);
      if (run.state !== "running") break;
      if (Date.now() > deadline)
        throw new CommandError(`timed out after an hour waiting for ${started.runId}`);
      await sleep(POLL_MS);
    }
  } finally {
    shown.finish();
  }
  if (ctx.json) printJson(run);
  else if (run.state === "failed") say(`failed: ${run.error ?? "unknown error"}`);
  else {
    const r = run.result;
    const s = run.stats ?? {};
    const collected = r?.collected ?? s.collected ?? 0;
    const bytes = r?.collectedBytes ?? s.collectedBytes ?? 0;
    const duration = r?.durationMs ?? s.durationMs ?? 0;
    if (run.dryRun) {
      for (const item of r?.items ?? [])
        say(`would collect ${item.digest} ${item.size} bytes (${item.reason})`);
      say(
        `done (dry run): ${r?.candidates ?? s.candidates ?? 0} blobs, ${r?.candidateBytes ?? s.candidateBytes ?? 0} bytes collectable of ${r?.scanned ?? s.scanned ?? 0} scanned; nothing changed; ${seconds(duration)}`,
      );
    } else
      say(
        `done: ${collected} blobs, ${bytes} bytes reclaimed of ${r?.scanned ?? s.scanned ?? 0} scanned (${r?.restored ?? s.restored ?? 0} put back for a racing write); ${seconds(duration)}`,
      );
  }
  return run.state === "failed" ? 1 : 0;
}

/**
 * A run's progress as its record tells it (node/data/gc.ts GcProgress), on
 * stderr through cli/progress.ts: first the scan (blobs scanned, no total
 * known: a count and its rate), then, once the candidates are known, the
 * collection (collected of collectable: a bar with rate and time left), the
 * run's phase (sweep, settle, verify) as its note. A dry run only scans.
 */
class GcProgress {
  #scan: Progress | undefined;
  #collect: Progress | undefined;

  constructor(
    readonly runId: string,
    readonly dryRun: boolean,
  ) {}

  update(p: NonNullable<RunState["progress"]>): void {
    if (p.phase === "mark") {
      this.#scan ??= progress(`gc ${this.runId} scan`, undefined, { noun: "blobs scanned" });
      this.#scan.update(p.scanned, `${p.candidates} collectable`);
      return;
    }
    // Past the scan: its last count, then the collection of what it found.
    if (this.#collect === undefined) {
      this.#scan ??= progress(`gc ${this.runId} scan`, undefined, { noun: "blobs scanned" });
      this.#scan.update(p.scanned, `${p.candidates} collectable`);
      this.#scan.finish();
    }
    if (p.candidates === 0 || this.dryRun) return;
    this.#collect ??= progress(`gc ${this.runId} collect`, p.candidates, { noun: "blobs collected" });
    this.#collect.update(p.collected, p.phase, p.candidates);
  }

  finish(): void {
    this.#scan?.finish();
    this.#collect?.finish();
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}
