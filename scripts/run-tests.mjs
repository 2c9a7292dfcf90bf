#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js), each with node's test
// runner (`node --test FILE`, as `node --test` runs each file in a process of
// its own), at most MERIDIAN_TEST_CONCURRENCY (default 2) files at once.
// Extra arguments are substrings that select test files (e.g. `npm test -- view`).
//
// Longest first: the files start in the order of their last recorded
// durations (scripts/test-durations.json, seconds per test file), so the
// long mesh and chaos files do not end up last, running alone while the other
// slot idles. A file not recorded there (a new one) counts as long and starts
// early. After a run of every file the measured durations are written to
// dist/test-durations.json and the slowest 15 printed; copy that file over
// scripts/test-durations.json when the order has drifted.
//
// Each file's output is printed as a whole when it ends (two files at once
// would interleave line by line), headed by its path, result and seconds;
// the totals and every failed file are repeated at the end.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const filters = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else if (entry.name.endsWith(".test.js")) files.push(path);
  }
})(join(root, "dist"));
const selected = files.filter(
  (f) => filters.length === 0 || filters.some((s) => relative(root, f).includes(s)),
);
if (selected.length === 0) {
  process.stderr.write("run-tests: no test files found\n");
  process.exit(1);
}

/** A test file's name in the durations file: its source path, e.g. "chaos/test/gc-race.test.ts". */
const sourceName = (file) => relative(join(root, "dist"), file).split("\\").join("/").replace(/\.js$/, ".ts");
const recordedFile = join(root, "scripts", "test-durations.json");
let recorded = {};
try {
  recorded = JSON.parse(readFileSync(recordedFile, "utf8"));
} catch {
  // no record (or an unreadable one): every file counts as new; the order is still complete
}
/** Unrecorded files are assumed long, so a new slow file never starts last. */
const UNRECORDED_S = 60;
const expected = (file) => {
  const s = recorded[sourceName(file)];
  return typeof s === "number" && Number.isFinite(s) ? s : UNRECORDED_S;
};
const queue = selected
  .map((file) => ({ file, expected: expected(file) }))
  .sort((x, y) => y.expected - x.expected || x.file.localeCompare(y.file));

// MERIDIAN_TEST_CONCURRENCY files always run at once (default 2; three at once
// made the runs 2-3 min shorter but started timing flakes on 2 cores: a log
// tail called stalled, a peer reading an epoch a tick late). Many files
// spend most of their time waiting (a partition held 30 s, a backoff run out,
// a peer's lease): while the CPU has been mostly idle for a few seconds, one
// more file starts, up to MERIDIAN_TEST_MAX_CONCURRENCY (default 3); set it
// to the same number to run exactly that many.
const concurrency = Math.max(1, Number(process.env.MERIDIAN_TEST_CONCURRENCY ?? 2) || 2);
const maxConcurrency = Math.max(
  concurrency,
  Number(process.env.MERIDIAN_TEST_MAX_CONCURRENCY ?? 3) || concurrency,
);
/** Idle share of the CPU above which one more file may start, and how long it must have lasted. */
const IDLE_TO_ADD = 0.5;
const IDLE_WINDOW_MS = 4_000;
// A run that outlives its deadline is stopped with a message instead of hanging CI.
const deadlineMinutes = Number(process.env.MERIDIAN_TEST_DEADLINE_MINUTES ?? 30);
const started = Date.now();
/** file → { child, output, start } while it runs */
const running = new Map();
const results = [];
const totals = { tests: 0, suites: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
let stopping = false;

// Each file is its own process group: when it ends, every process it left
// behind (it should leave none) is killed with it; on a deadline or a signal
// every running file's group is.
const killGroup = (child, signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is already gone
  }
};

/** The spec reporter's closing counts ("ℹ tests 12" …), the last of each in the output. */
function countsOf(output) {
  const counts = {};
  for (const m of output.matchAll(/^ℹ (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) {
    counts[m[1]] = Number(m[2]);
  }
  return counts;
}

function startNext() {
  const next = queue.shift();
  if (next === undefined || stopping) return;
  const { file } = next;
  const child = spawn(process.execPath, ["--test", "--test-reporter=spec", file], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const entry = { child, output: "", start: Date.now() };
  running.set(file, entry);
  peak = Math.max(peak, running.size);
  child.stdout.on("data", (d) => {
    entry.output += d;
  });
  child.stderr.on("data", (d) => {
    entry.output += d;
  });
  // At its exit, not at its pipes' close: a process it left holding them would hold the close.
  child.once("exit", () => killGroup(child, "SIGKILL"));
  child.once("close", (code, signal) => {
    running.delete(file);
    if (stopping) {
      if (running.size === 0) process.exit(130);
      return;
    }
    const seconds = (Date.now() - entry.start) / 1000;
    const counts = countsOf(entry.output);
    for (const key of Object.keys(totals)) totals[key] += counts[key] ?? 0;
    // A file that exits non-zero failed, whatever its counts say (a crash before any test ran).
    const ok = code === 0 && (counts.fail ?? 0) === 0;
    results.push({ file, seconds, ok, code, signal });
    const name = relative(root, file);
    process.stdout.write(
      `\n── ${name}: ${ok ? "ok" : `FAILED (exit ${code ?? signal})`}, ${seconds.toFixed(1)} s ──\n${entry.output}`,
    );
    if (queue.length > 0) {
      if (running.size < concurrency) startNext();
    } else if (running.size === 0) finish();
  });
}

function finish() {
  clearTimeout(deadline);
  const wall = (Date.now() - started) / 1000;
  const slowest = [...results].sort((x, y) => y.seconds - x.seconds).slice(0, 15);
  clearInterval(sampler);
  process.stdout.write(
    `\nrun-tests: slowest files (of ${results.length}; ${concurrency} at once, up to ${peak} while the CPU idled):\n`,
  );
  for (const r of slowest)
    process.stdout.write(`${r.seconds.toFixed(1).padStart(8)} s  ${relative(root, r.file)}\n`);
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) process.stdout.write(`run-tests: FAILED ${relative(root, r.file)}\n`);
  for (const [key, n] of Object.entries(totals)) process.stdout.write(`ℹ ${key} ${n}\n`);
  process.stdout.write(`ℹ files ${results.length}, failed ${failed.length}\nℹ duration_ms ${wall * 1000}\n`);
  if (filters.length === 0) {
    const measured = {};
    for (const r of [...results].sort((x, y) => sourceName(x.file).localeCompare(sourceName(y.file)))) {
      measured[sourceName(r.file)] = Math.round(r.seconds * 10) / 10;
    }
    try {
      writeFileSync(join(root, "dist", "test-durations.json"), `${JSON.stringify(measured, null, 1)}\n`);
    } catch (err) {
      process.stderr.write(`run-tests: could not write dist/test-durations.json: ${err.message}\n`);
    }
  }
  process.exit(failed.length > 0 ? 1 : 0);
}

/**
 * Cumulative CPU time used and available, in any one unit: the cgroup's
 * (cgroup v2: cpu.stat and its cpu.max quota, as a container limited to two
 * CPUs of a larger host sees it), else the whole machine's (/proc/stat).
 * Undefined where neither can be read: then exactly MERIDIAN_TEST_CONCURRENCY run.
 */
function cpuCounters() {
  try {
    const usage = Number(/^usage_usec (\d+)$/m.exec(readFileSync("/sys/fs/cgroup/cpu.stat", "utf8"))?.[1]);
    const [quota, period] = readFileSync("/sys/fs/cgroup/cpu.max", "utf8").trim().split(/\s+/);
    const cpus = quota === "max" ? availableParallelism() : Number(quota) / Number(period);
    if (Number.isFinite(usage) && cpus > 0)
      return { used: usage, total: Number(process.hrtime.bigint() / 1000n) * cpus };
  } catch {
    // no cgroup v2 here
  }
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    const idle = fields[3] + (fields[4] ?? 0); // idle, iowait
    return { used: total - idle, total };
  } catch {
    return undefined;
  }
}
const samples = [];
let lastAdded = 0;
const sampler =
  maxConcurrency > concurrency && cpuCounters() !== undefined
    ? setInterval(() => {
        const now = Date.now();
        samples.push({ at: now, ...cpuCounters() });
        while (samples.length > 1 && samples[0].at < now - IDLE_WINDOW_MS) samples.shift();
        const first = samples[0];
        const last = samples.at(-1);
        if (now - first.at < IDLE_WINDOW_MS - 1_500 || last.total === first.total) return;
        const idle = 1 - (last.used - first.used) / (last.total - first.total);
        // One start per window: a file's own start (a mesh coming up) shows before the next.
        if (idle >= IDLE_TO_ADD && running.size < maxConcurrency && now - lastAdded >= IDLE_WINDOW_MS) {
          lastAdded = now;
          startNext();
        }
      }, 1_000)
    : undefined;
sampler?.unref();
let peak = 0;

const deadline = setTimeout(() => {
  stopping = true;
  process.stderr.write(
    `run-tests: still running after ${deadlineMinutes} minutes; stopping every test process\n`,
  );
  for (const [file, { child, output }] of running) {
    process.stdout.write(`\n── ${relative(root, file)}: STOPPED at the deadline ──\n${output}`);
    killGroup(child, "SIGKILL");
  }
  process.exit(124);
}, deadlineMinutes * 60_000);

// Interrupted: the signal goes to every running file's processes, and
// whatever has not exited 5 s later is killed.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stopping = true; // nothing more starts, and no result is counted
    for (const { child } of running.values()) killGroup(child, signal);
    setTimeout(() => {
      for (const { child } of running.values()) killGroup(child, "SIGKILL");
      process.exit(130);
    }, 5_000);
  });
}

for (let i = 0; i < concurrency; i++) startNext();
