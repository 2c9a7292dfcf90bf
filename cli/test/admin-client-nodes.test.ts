/**
 * The admin commands against a region of several registry nodes (mesh.json
 * `registry` as a list, no load balancer): when the region's first node is
 * down, the call goes to its next node (cli/admin-client.ts), with or
 * without `--region`, and says so on stderr. Real processes: a nats-server
 * and one registry node (the region's second), the first node's address
 * refusing connections; bin/meridian as an operator runs it.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  cleanupStack,
  freePort,
  type NodeProcess,
  runCli,
  spawnNodeProcess,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
let dir: string;
let meshFile: string;
let dead: string;
let node: NodeProcess;

before(async () => {
  dir = tempDir(cleanup, "meridian-admin-nodes-");
  const nats = await startTestNats(cleanup);
  node = await spawnNodeProcess(cleanup, { nats: nats.url, dataDir: join(dir, "a"), region: "a" });
  // Nothing listens there: the region's first node is down.
  dead = `http://127.0.0.1:${await freePort()}`;
  meshFile = join(dir, "mesh.json");
  writeFileSync(
    meshFile,
    JSON.stringify({
      regions: [{ name: "a", registry: [dead, node.url], nats: nats.url, grpc: "127.0.0.1:1" }],
      insecure: true,
    }),
  );
});

const meridian = (args: string[]) => runCli([...args, "--mesh", meshFile, "--data", dir], 30_000);

test("an admin read succeeds through the region's next node when its first is down", async () => {
  for (const region of [["--region", "a"], []]) {
    const r = await meridian(["policy", "list", "--json", ...region]);
    assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.ok(Array.isArray(JSON.parse(r.stdout).policies), r.stdout);
    assert.match(
      r.stderr,
      new RegExp(`region a's node ${dead} could not be reached .*trying its node ${node.url}`),
    );
  }
});

test("an admin write too (nothing reached the dead node: safe to send to the next)", async () => {
  const policy = join(dir, "p.yaml");
  writeFileSync(
    policy,
    'policies:\n  - name: keep\n    source: a\n    destination: b\n    repositories: ["team/**"]\n    trigger: manual\n',
  );
  const r = await meridian(["policy", "apply", policy, "--region", "a"]);
  assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const list = await meridian(["policy", "list", "--json", "--region", "a"]);
  assert.equal(list.code, 0);
  assert.ok(
    (JSON.parse(list.stdout).policies as Array<{ name: string }>).some((p) => p.name === "keep"),
    list.stdout,
  );
});
