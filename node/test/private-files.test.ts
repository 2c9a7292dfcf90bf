/**
 * privateDirs (issue 10, finding 10): a process's own directories end up
 * 0700 even when an older version left them open, and what it creates after
 * is private.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { privateDirs } from "../data/private-files.js";

const cleanup = cleanupStack({ after });

test("tightens existing directories, makes missing ones, and new files are 0600", () => {
  const root = tempDir(cleanup);
  const old = join(root, "view");
  mkdirSync(old);
  chmodSync(old, 0o755);
  const missing = join(root, "store", "blobs");
  privateDirs([old, missing]);
  assert.equal(statSync(old).mode & 0o777, 0o700);
  assert.equal(statSync(missing).mode & 0o777, 0o700);
  writeFileSync(join(old, "CURRENT"), "x");
  mkdirSync(join(missing, "sha256"));
  assert.equal(statSync(join(old, "CURRENT")).mode & 0o777, 0o600);
  assert.equal(statSync(join(missing, "sha256")).mode & 0o777, 0o700);
});
