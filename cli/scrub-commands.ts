/**
 * `meridian scrub run [--region R] [--no-repair]` (README "Scrubbing"):
 * start a scrub of region R's blob store on one of its nodes (POST
 * /admin/v1/scrub/runs; node/scrub.ts), or join the one going on there, and
 * follow it: its progress on stderr (cli/progress.ts: bytes read of the
 * store's, a bar with rate and time left on a terminal, a plain line at most
 * once a second elsewhere), then a summary on
 * stdout (or the run's record with --json). Exit 0 when the run finished,
 * read every blob and repaired every corrupt one found (or nothing links it);
 * 1 when some stay quarantined or unread, or the run failed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { ScrubRun } from "../node/scrub.js";
import { type Command, CommandError, type Context, JSON_OPT, printJson } from "./admin-client.js";
import { progress } from "./progress.js";

export const SCRUB_USAGE = `  scrub run [--no-repair]         re-hash every stored blob of a region (--region; default the first),
                                  quarantine and repair from a peer those not matching their digest;
                                  progress on stderr, a summary at the end
`;

/** How long `scrub run` follows a run before giving up (the run goes on). */
const FOLLOW_MS = 24 * 3_600_000;
const POLL_MS = 1_000;

export const SCRUB_COMMANDS: Record<string, Command> = {
  "scrub run": {
    args: [],
    options: { ...JSON_OPT, "no-repair": { type: "boolean", default: false } },
    run: scrubRun,
  },
};

async function scrubRun(ctx: Context): Promise<number> {
  const api = ctx.api();
  let run = await api.send<ScrubRun>("POST", "/scrub/runs", {
    json: ctx.values["no-repair"] === true ? { repair: false } : {},
  });
  process.stderr.write(
    `scrub ${run.runId} of region ${run.region} (${run.trigger === "manual" ? "started" : "joined a background run"}, ${mib(run.bytesPerSecond)}/s)\n`,
  );
  const until = Date.now() + FOLLOW_MS;
  // Bytes read of the store's total: a bar with rate and time left on a terminal, plain lines elsewhere.
  const shown = progress(`scrub ${run.runId}`, run.totalBytes, { unit: "bytes" });
  try {
    while (run.state === "running") {
      if (Date.now() > until)
        throw new CommandError(`scrub ${run.runId} still running; stopped following it`);
      await sleep(POLL_MS);
      run = await api.get<ScrubRun>(`/scrub/runs/${run.runId}`);
      shown.update(run.bytes, `${run.checked}/${run.blobs} blobs, ${run.corrupt} corrupt`, run.totalBytes);
    }
  } finally {
    shown.finish();
  }
  const unrepaired = run.findings.filter((f) => f.outcome === "unrepaired");
  if (ctx.json) {
    printJson(run);
  } else {
    process.stdout.write(`${summary(run)}\n`);
    for (const f of run.findings)
      process.stdout.write(
        `  ${f.digest}${f.repo === undefined ? "" : ` (${f.repo})`}: ${f.outcome}${f.from === undefined ? "" : ` from ${f.from}`}${f.error === undefined ? "" : `: ${f.error}`}\n`,
      );
  }
  return run.state === "finished" && unrepaired.length === 0 && run.errors === 0 ? 0 : 1;
}

function counts(run: ScrubRun): string {
  return `checked ${run.checked}/${run.blobs} blobs, ${mib(run.bytes)}/${mib(run.totalBytes)}, ${run.corrupt} corrupt`;
}

function summary(run: ScrubRun): string {
  const seconds = (Date.parse(run.finishedAt ?? run.startedAt) - Date.parse(run.startedAt)) / 1000;
  const head =
    run.state === "failed"
      ? `scrub ${run.runId} of region ${run.region} failed: ${run.error}`
      : `scrub ${run.runId} of region ${run.region} finished`;
  return `${head}: ${counts(run)}, ${run.repaired} repaired, ${run.vanished} vanished, ${run.errors} unreadable, in ${seconds.toFixed(1)} s`;
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}
