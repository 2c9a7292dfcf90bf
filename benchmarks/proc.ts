/**
 * Reading a process's CPU time and resident memory from /proc (Linux only).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

let clockTicks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`, almost always 100). */
export function clkTck(): number {
  if (clockTicks === undefined) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(r.stdout?.trim());
    clockTicks = r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100;
  }
  return clockTicks;
}

/** utime + stime of a whole process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may contain spaces and parentheses: fields start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / clkTck();
}

export interface Memory {
  /** Current resident set, MiB. */
  rssMiB: number;
  /** Peak resident set since the process started (VmHWM), MiB. */
  hwmMiB: number;
}

export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) : Number.NaN;
  };
  return { rssMiB: kib("VmRSS") / 1024, hwmMiB: kib("VmHWM") / 1024 };
}

/**
 * Proportional set size (MiB, /proc/<pid>/smaps_rollup): the process's
 * resident pages with each shared page divided among the processes mapping
 * it. Ten Node processes map the same `node` binary; VmRSS counts its
 * resident pages (~45 MiB) in each of them, PSS once over all of them, so
 * summed over processes PSS is what the machine spends. NaN when unreadable.
 */
export function pssMiB(pid: number): number {
  return smapsRollup(pid).pssMiB;
}

/**
 * From /proc/<pid>/smaps_rollup (MiB; NaN when unreadable): `pssMiB` (see
 * above), `anonMiB`, the process's own anonymous memory (heap, stacks,
 * malloc), and `fileMiB`, its resident file-backed pages (Rss − Anonymous:
 * mostly its executable's, which every process of that executable shares).
 */
export function smapsRollup(pid: number): { pssMiB: number; anonMiB: number; fileMiB: number } {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  } catch {
    return { pssMiB: Number.NaN, anonMiB: Number.NaN, fileMiB: Number.NaN };
  }
  const kib = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) / 1024 : Number.NaN;
  };
  return { pssMiB: kib("Pss"), anonMiB: kib("Anonymous"), fileMiB: kib("Rss") - kib("Anonymous") };
}

/** Samples VmRSS every `everyMs` until stopped; keeps the peak. */
export class RssSampler {
  peakMiB = 0;
  samples = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly pid: number,
    everyMs = 50,
  ) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), everyMs);
  }

  #sample(): void {
    try {
      const { rssMiB } = memory(this.pid);
      this.samples++;
      if (rssMiB > this.peakMiB) this.peakMiB = rssMiB;
    } catch {
      // the process is gone; the caller notices elsewhere
    }
  }

  stop(): number {
    clearInterval(this.#timer);
    this.#sample();
    return this.peakMiB;
  }
}

/** CPU seconds a set of processes spent while `work` ran. */
export async function measureCpu<T>(
  pids: Record<string, number | undefined>,
  work: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number> }> {
  const before: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) if (pid !== undefined) before[name] = cpuSeconds(pid);
  const result = await work();
  const cpu: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    if (pid !== undefined) cpu[name] = cpuSeconds(pid) - before[name]!;
  }
  return { result, cpu };
}
