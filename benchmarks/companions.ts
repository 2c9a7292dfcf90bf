/**
 * The benchmarks that run as their own scripts, reached from `npm run bench`
 * too, so that one command measures every target of the issues side by side:
 *
 *   pull         pull.ts: the 256 MiB pull with curl, Meridian and Distribution
 *   perblob      perblob.ts: CPU per pushed blob, Meridian, Distribution, bare servers
 *   rest         rest.ts: a resting `meridian up` mesh, CPU and memory per process kind
 *   convergence  convergence.ts: agreement after a partition heal, anti-entropy backfill
 *   scale        scale.ts: lag and convergence with 2, 3, 4 and 6 regions
 *
 * Each is started as a child process (`node dist/benchmarks/<name>.js`) with
 * the run count of `run.ts` mapped onto its own option, its output going to
 * this process's stdout and stderr, and its results files written where it
 * writes them alone. They run after run.ts's own suites, in the order above.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "../testing/harness.js";

export const COMPANIONS = ["pull", "perblob", "rest", "convergence", "scale"] as const;
export type CompanionName = (typeof COMPANIONS)[number];

/** The arguments of one companion for `runs` runs, or its smoke sizes with `quick`. */
export function companionArgs(name: CompanionName, runs: number, quick: boolean): string[] {
  switch (name) {
    case "pull":
      return quick ? ["--quick", "--rounds", "1"] : ["--rounds", String(runs)];
    case "perblob":
      return quick ? ["--runs", "1", "--small", "300"] : ["--runs", String(runs)];
    case "rest":
      return quick
        ? ["--rounds", "1", "--window", "10", "--settle", "5"]
        : ["--rounds", String(runs), "--window", "30", "--settle", "20"];
    case "convergence":
      return quick ? ["--runs", "1", "--writes", "100", "--images", "100"] : ["--runs", String(runs)];
    case "scale":
      return quick ? ["--regions", "2,3", "--runs", "1", "--writes", "50"] : ["--runs", String(runs)];
  }
}

/**
 * Run one companion to its end; rejects when it exits other than 0. A signal
 * to this process reaches the child through the process group (the terminal)
 * or through `stop`, which the caller wires to its own SIGINT/SIGTERM.
 */
export function runCompanion(
  name: CompanionName,
  args: readonly string[],
  say: (msg: string) => void,
): { done: Promise<void>; stop: () => void } {
  const script = join(REPO_ROOT, "dist", "benchmarks", `${name}.js`);
  say(`${name}: node dist/benchmarks/${name}.js ${args.join(" ")}`);
  const child = spawn(process.execPath, [script, ...args], { stdio: "inherit" });
  const done = new Promise<void>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${name} exited with ${signal ?? `code ${code}`}`)),
    );
  });
  return { done, stop: () => child.kill("SIGTERM") };
}
