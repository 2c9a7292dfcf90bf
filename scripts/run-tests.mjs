#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js) with node's test runner.
// File names are passed explicitly: `node --test DIR` differs between Node 20 and 22+.
// Extra arguments are substrings that select test files (e.g. `npm test -- view`).
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
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
const selected = files
  .filter((f) => filters.length === 0 || filters.some((s) => relative(root, f).includes(s)))
  .sort();
if (selected.length === 0) {
  process.stderr.write("run-tests: no test files found\n");
  process.exit(1);
}
// The run is its own process group: at the end every process a test left
// behind (it should leave none) is killed with it, and a run that outlives its
// deadline is stopped with a message instead of hanging CI.
const deadlineMinutes = Number(process.env.MERIDIAN_TEST_DEADLINE_MINUTES ?? 30);
const child = spawn(
  process.execPath,
  ["--test", "--test-concurrency=2", "--test-reporter=spec", ...selected],
  { cwd: root, stdio: "inherit", detached: true },
);
const killGroup = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is already gone
  }
};
let timedOut = false;
const deadline = setTimeout(() => {
  timedOut = true;
  process.stderr.write(
    `run-tests: still running after ${deadlineMinutes} minutes; stopping every test process\n`,
  );
  killGroup("SIGKILL");
}, deadlineMinutes * 60_000);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => killGroup(signal));
child.once("exit", (code, signal) => {
  clearTimeout(deadline);
  killGroup("SIGKILL");
  process.exit(timedOut ? 124 : (code ?? (signal ? 1 : 0)));
});
