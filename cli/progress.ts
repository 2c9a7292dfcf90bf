/**
 * Progress of a long command (backup, restore, and the other long CLI
 * operations as they adopt it): on a terminal one line redrawn in place —
 * a bar, done/total, the rate and the time left — at most every 100 ms; when
 * the output is not a terminal (a log, CI, a pipe) plain lines, at most one
 * a second, each complete, so a log shows how it went without control
 * characters. `finish` always prints the last state and ends the line, so
 * whatever is printed next (a result, an error) starts on a line of its own.
 *
 * The rate is over the whole run so far (a copy's rate swings chunk to
 * chunk; the average is what predicts the rest). The time left is shown
 * once something is done and a total is known.
 */

export interface ProgressOptions {
  /** Where to draw (default process.stderr). */
  stream?: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  /** "bytes" shows MiB and MiB/s; "items" counts (default). */
  unit?: "bytes" | "items";
  /** The item's name in plain lines, e.g. "blobs" (default "done"). */
  noun?: string;
  /** Milliseconds since an arbitrary start (tests pass their own clock). */
  now?: () => number;
}

export interface Progress {
  /**
   * `done` so far (of `total` when known); `note` replaces the line's tail (e.g. "37 new");
   * `total` replaces the total when the work turns out larger or smaller (a poll learnt it).
   */
  update(done: number, note?: string, total?: number): void;
  /**
   * Print `text` (whole lines, newline included) on `to` (default the
   * progress's own stream) without tearing the bar: on a terminal the bar is
   * cleared first and drawn again under the text.
   */
  log(text: string, to?: { write(text: string): unknown }): void;
  /** Print the last state and end the line. */
  finish(): void;
}

const TTY_EVERY_MS = 100;
const LINE_EVERY_MS = 1_000;

export function progress(
  label: string,
  initialTotal: number | undefined,
  options: ProgressOptions = {},
): Progress {
  let total = initialTotal;
  const stream = options.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let last = Number.NEGATIVE_INFINITY;
  let done = 0;
  let note: string | undefined;
  let open = false;
  let finished = false;
  /** What the last drawn line showed (a plain line is not printed twice for the same state). */
  let drawn: { done: number; note: string | undefined } | undefined;

  const render = (): string => {
    const elapsed = (now() - started) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const parts: string[] = [];
    const amount =
      options.unit === "bytes"
        ? `${mib(done)}${total === undefined ? "" : `/${mib(total)}`} MiB`
        : `${done}${total === undefined ? "" : `/${total}`}${options.noun === undefined ? "" : ` ${options.noun}`}`;
    parts.push(amount);
    if (total !== undefined && total > 0) parts.push(`${Math.floor((100 * done) / total)}%`);
    if (elapsed >= 0.5 && rate > 0)
      parts.push(options.unit === "bytes" ? `${mib(rate)} MiB/s` : `${rate.toFixed(rate < 10 ? 1 : 0)}/s`);
    if (total !== undefined && done > 0 && done < total && rate > 0)
      parts.push(`ETA ${clock((total - done) / rate)}`);
    if (note !== undefined) parts.push(note);
    if (!tty) return `${label}: ${parts.join(", ")}`;
    const width = 24;
    const filled = total !== undefined && total > 0 ? Math.min(width, Math.round((width * done) / total)) : 0;
    const bar = total === undefined ? "" : `[${"#".repeat(filled)}${".".repeat(width - filled)}] `;
    const line = `${label} ${bar}${parts.join("  ")}`;
    const columns = stream.columns ?? 120;
    return line.length >= columns ? line.slice(0, columns - 1) : line;
  };

  const draw = (force: boolean) => {
    const t = now();
    if (!force && t - last < (tty ? TTY_EVERY_MS : LINE_EVERY_MS)) return;
    last = t;
    drawn = { done, note };
    if (tty) {
      stream.write(`\r\x1b[2K${render()}`);
      open = true;
    } else stream.write(`${render()}\n`);
  };

  return {
    update(value, tail, newTotal) {
      if (finished) return;
      done = value;
      if (newTotal !== undefined) total = newTotal;
      if (tail !== undefined) note = tail;
      draw(false);
    },
    log(text, to) {
      const redraw = tty && open && !finished;
      if (redraw) stream.write("\r\x1b[2K");
      (to ?? stream).write(text);
      if (redraw) draw(true);
    },
    finish() {
      if (finished) return;
      finished = true;
      if (!tty && drawn?.done === done && drawn.note === note) return;
      draw(true);
      if (open) stream.write("\n");
    },
  };
}

/** Bytes as MiB with one decimal (progress lines and command summaries). */
export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** Seconds as m:ss (h:mm:ss past an hour). */
function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
