/**
 * `meridian status --watch [--interval S]`: `status` again and again until
 * Ctrl-C. On a terminal the screen is cleared and the snapshot drawn from
 * the top each time (the problems `status` prints on stderr are drawn under
 * the table, so nothing scrolls); elsewhere (a log, a pipe) each snapshot is
 * printed whole, after a blank line and a line with its time, problems
 * included, so the log reads as a history. With --json each snapshot is one
 * line: `{"at": ISO time, "regions": …}`.
 *
 * A refresh starts every S seconds (default 2; from MIN_INTERVAL_S to
 * MAX_INTERVAL_S), or at once when the last one took longer; each is bounded
 * by collectStatus's deadlines (about 3 s with a region frozen), so a frozen
 * region slows the refresh, never stops it. SIGINT (or SIGTERM) ends the
 * watch at once with exit 0, whatever is in flight: nothing is held open
 * that needs closing (a frozen peer's connection attempt dies with the
 * process). A reader that goes away (`status --watch | head`) ends it too.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { readStatusMesh, type StatusOptions, snapshot } from "./status.js";

export const MIN_INTERVAL_S = 0.5;
export const MAX_INTERVAL_S = 3_600;
export const DEFAULT_INTERVAL_S = 2;

/** The interval of --interval (seconds), or a message saying what is allowed. */
export function watchInterval(value: string | undefined): number | string {
  if (value === undefined) return DEFAULT_INTERVAL_S;
  const s = Number(value);
  if (value.trim() === "" || !Number.isFinite(s) || s < MIN_INTERVAL_S || s > MAX_INTERVAL_S)
    return `--interval must be a number of seconds from ${MIN_INTERVAL_S} to ${MAX_INTERVAL_S} (got "${value}")`;
  return s;
}

export async function statusWatch(options: StatusOptions & { intervalS: number }): Promise<number> {
  const mesh = readStatusMesh("status", options);
  if (mesh === undefined) return 2;
  const out = process.stdout;
  const tty = out.isTTY === true;
  const stop = new AbortController();
  const end = () => {
    stop.abort();
    if (tty) out.write("\n");
    // At once: a collection in flight is abandoned (its sockets die with the process).
    process.exit(0);
  };
  process.once("SIGINT", end);
  process.once("SIGTERM", end);
  // The reader went away (`| head`): the watch is over, as with Ctrl-C.
  out.on("error", () => process.exit(0));
  const every = options.intervalS * 1000;
  for (let n = 0; !stop.signal.aborted; n++) {
    const started = Date.now();
    const snap = await snapshot(mesh, options);
    const at = new Date().toISOString();
    if (options.json) out.write(`${JSON.stringify({ at, ...JSON.parse(snap.text) })}\n`);
    else {
      const body = `${snap.text}${snap.problems.map((p) => `${p}\n`).join("")}`;
      const head = `meridian status at ${at} (every ${options.intervalS} s; Ctrl-C to stop)\n`;
      // Home, clear: the snapshot replaces the last one on a terminal; elsewhere one follows the other.
      out.write(tty ? `\x1b[H\x1b[2J${head}${body}` : `${n === 0 ? "" : "\n"}${head}${body}`);
    }
    await sleep(Math.max(0, started + every - Date.now()), undefined, { signal: stop.signal }).catch(
      () => undefined,
    );
  }
  return 0;
}
