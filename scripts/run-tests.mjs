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

const concurrency = Math.max(1, Number(process.env.MERIDIAN_TEST_CONCURRENCY ?? 2) || 2);
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
  child.stdout.on("data", (d) => {
    entry.output += d;
  });
  child.stderr.on("data", (d) => {
    entry.output += d;
  });
  child.once("close", (code, signal) => {
    killGroup(child, "SIGKILL");
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
    if (queue.length > 0) startNext();
    else if (running.size === 0) finish();
  });
}

function finish() {
  clearTimeout(deadline);
  const wall = (Date.now() - started) / 1000;
  const slowest = [...results].sort((x, y) => y.seconds - x.seconds).slice(0, 15);
  process.stdout.write(`\nrun-tests: slowest files (of ${results.length}, ${concurrency} at once):\n`);
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
