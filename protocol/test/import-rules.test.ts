/**
 * The import rules (import-rules.jsonc, checked in CI by `biome check .`)
 * refuse what they must and let through what they must: a small tree of
 * allowed and forbidden imports, one per line, is linted with the rule file
 * as it is, and the lines flagged must be exactly the forbidden ones. Then
 * the real tree must pass. A rule weakened by accident (a pattern that no
 * longer matches, an override that no longer applies) fails here.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../../testing/harness.js";

const BIOME = join(REPO_ROOT, "node_modules", ".bin", "biome");

/** file → [import statement, forbidden?] */
const CASES: Record<string, Array<[string, boolean]>> = {
  "protocol/a.ts": [
    ['import "./digest.js";', false],
    ['import { BlockList } from "node:net";', false],
    ['import { createHash } from "node:crypto";', false],
    ['import "../node/data/view.js";', true],
    ['import "../mesh-client/proto.js";', true],
    ['import { readFileSync } from "node:fs";', true],
    ['import { readFile } from "node:fs/promises";', true],
    ['import * as protoLoader from "@grpc/proto-loader";', true],
  ],
  "mesh-client/a.ts": [
    ['import "../protocol/peer.js";', false],
    ['import "./tokens.js";', false],
    ['import "../node/data/view.js";', true],
    ['import "../control-plane/tls.js";', true],
  ],
  "node/a.ts": [
    ['import "../mesh-client/peer-client.js";', false],
    ['import "../protocol/digest.js";', false],
    ['import "./data/view.js";', false],
    ['import "../control-plane/peer-client.js";', true],
    ['import "../replication/worker.js";', true],
    ['import "./http/app.js";', true],
    ['import "../testing/harness.js";', true],
  ],
  "node/auth/a.ts": [
    ['import "../data/view.js";', false],
    ['import "../http/forwarded.js";', true],
  ],
  "node/data/a.ts": [
    ['import "../http/app.js";', true],
    ['import "../http/oci/paths.js";', true],
  ],
  "node/server.ts": [
    ['import "./http/app.js";', false],
    ['import "../cli/main.js";', true],
  ],
  "node/http/a.ts": [
    ['import "./forwarded.js";', false],
    ['import "../data/view.js";', false],
    ['import "../../control-plane/config.js";', true],
  ],
  "node/http/oci/a.ts": [
    ['import "../forwarded.js";', false],
    ['import "../../data/registry.js";', false],
    ['import "../../../control-plane/config.js";', true],
    ['import "../../../replication/worker.js";', true],
  ],
  "control-plane/a.ts": [
    ['import "../node/data/view.js";', false],
    ['import "../node/parent-watch.js";', false],
    ['import "../node/lifecycle.js";', false],
    ['import "../mesh-client/peer-client.js";', false],
    ['import "../replication/worker.js";', true],
    ['import "../node/http/app.js";', true],
    ['import "../node/auth/authenticator.js";', true],
    ['import "../cli/main.js";', true],
    ['import "../chaos/tcp-proxy.js";', true],
  ],
  "replication/a.ts": [
    ['import "../node/data/event-log.js";', false],
    ['import type { PeerClient } from "../mesh-client/peer-client.js";', false],
    ['import type { RunningPeer } from "../control-plane/peer.js";', true],
    ['export const p = import("../control-plane/peer.js");', true],
    ['export { auditRoutes } from "../node/http/audit-routes.js";', true],
  ],
  "cli/a.ts": [
    ['import "../control-plane/config.js";', false],
    ['import "../replication/config.js";', false],
    ['import "../node/config.js";', false],
    ['import "../node/http/audit-routes.js";', true],
    ['import "../benchmarks/run.js";', true],
  ],
  // Tests and test support may import anything.
  "node/test/a.ts": [
    ['import "../../control-plane/peer.js";', false],
    ['import "../http/app.js";', false],
  ],
  "chaos/a.ts": [['import "../node/http/app.js";', false]],
  "security/a.ts": [['import "../node/http/app.js";', false]],
};

test("import-rules.jsonc flags exactly the forbidden imports", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "meridian-import-rules-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(join(REPO_ROOT, "import-rules.jsonc"), join(dir, "import-rules.jsonc"));
  writeFileSync(
    join(dir, "biome.json"),
    JSON.stringify({ extends: ["./import-rules.jsonc"], formatter: { enabled: false } }),
  );
  const expected: string[] = [];
  for (const [file, lines] of Object.entries(CASES)) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), `${lines.map(([code]) => code).join("\n")}\n`);
    lines.forEach(([, forbidden], i) => {
      if (forbidden) expected.push(`${file}:${i + 1}`);
    });
  }
  const r = spawnSync(
    BIOME,
    ["lint", "--only=style/noRestrictedImports", "--max-diagnostics=none", "--colors=off", "."],
    { cwd: dir, encoding: "utf8" },
  );
  const output = `${r.stdout}${r.stderr}`;
  const flagged = [...output.matchAll(/^(\S+\.ts):(\d+):\d+ lint\/style\/noRestrictedImports/gm)].map(
    (m) => `${m[1]}:${m[2]}`,
  );
  assert.deepEqual(flagged.sort(), expected.sort(), output);
  assert.notEqual(r.status, 0, "biome must fail on a forbidden import");
});

test("the tree keeps the import rules", () => {
  const r = spawnSync(BIOME, ["lint", "--only=style/noRestrictedImports", "--colors=off", "."], {
    cwd: REPO_ROOT,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
