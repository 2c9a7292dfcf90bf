/**
 * "No file of product code over ~500 lines unless its header note says why"
 * (issue 12): a file that long does several things, and a newcomer cannot
 * tell which part to change. The check covers every product folder (the
 * layers of import-rules.jsonc); test support (testing/, chaos/,
 * benchmarks/, security/) is not product code.
 * A file that is truly better whole says so in its header comment with the
 * words "over 500 lines" and the reason.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../../testing/harness.js";

const FOLDERS = ["protocol", "mesh-client", "node", "control-plane", "replication", "cli"];
const MAX_LINES = 500;

test(`product files are at most ${MAX_LINES} lines, or their header says why`, () => {
  const tooLong: string[] = [];
  let seen = 0;
  for (const folder of FOLDERS) {
    for (const file of sources(join(REPO_ROOT, folder))) {
      seen++;
      const text = readFileSync(file, "utf8");
      const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
      if (lines <= MAX_LINES) continue;
      const header = /^\s*\/\*\*?([\s\S]*?)\*\//.exec(text)?.[1] ?? "";
      if (!/over 500 lines/i.test(header)) tooLong.push(`${relative(REPO_ROOT, file)}: ${lines} lines`);
    }
  }
  assert.ok(seen > 20, `found the product files (${seen})`);
  assert.deepEqual(tooLong, []);
});

/** The .ts files of a folder, tests and generated code excluded. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "test" && entry.name !== "generated") out.push(...sources(path));
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}
