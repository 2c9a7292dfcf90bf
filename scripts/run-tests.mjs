#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js) with node's test runner.
// File names are passed explicitly: `node --test DIR` differs between Node 20 and 22+.
// Extra arguments are substrings that select test files (e.g. `npm test -- view`).
import { spawnSync } from "node:child_process";
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
const r = spawnSync(
  process.execPath,
  ["--test", "--test-concurrency=2", "--test-reporter=spec", ...selected],
  { cwd: root, stdio: "inherit" },
);
process.exit(r.status ?? 1);
