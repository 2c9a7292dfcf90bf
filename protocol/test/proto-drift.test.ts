/**
 * The committed generated types (protocol/generated/) must be exactly what
 * scripts/gen-proto.mjs makes from protocol/proto/ now: regenerate into a
 * temporary directory and compare file by file.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../../testing/harness.js";

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  (function walk(d: string) {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, "utf8"));
    }
  })(dir);
  return out;
}

test("protocol/generated matches the .proto files (run `npm run gen:proto` if not)", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "meridian-proto-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "gen-proto.mjs"), dir], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const fresh = files(dir);
  const committed = files(join(REPO_ROOT, "protocol", "generated"));
  assert.ok(fresh.size > 0);
  assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort(), "generated file set differs");
  for (const [name, text] of fresh) assert.equal(committed.get(name), text, `${name} is stale`);
});
